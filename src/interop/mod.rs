//! Models of other tools, read (and later written) as theirs: `diffusers` directories.

pub mod diffusers;
