//! The integration tests, one crate: a module per kernel family (shader against its CPU reference) and per
//! subsystem (diffusion math, model, training, data, checkpoints, the CLI). One binary links wgpu and naga once.

mod common;

mod analytic;
mod attention;
mod batch;
mod bench;
mod checkpoint;
mod cli;
mod cli_fuzz;
mod conv2d;
mod data;
mod diffusers;
mod diffusion_schedule;
// Runs `mpirun`: only with `--features mpi` (`.ci/run` installs OpenMPI and runs it).
#[cfg(feature = "mpi")]
mod distributed;
mod elementwise;
mod embedding;
mod eval;
mod fuzz;
mod group_norm;
mod image_io;
mod layering;
mod likelihood;
mod loss;
mod matmul;
mod model_layout;
mod noise;
mod optimizer;
mod pairwise;
mod plot;
mod process;
mod random;
mod samplers;
mod sampling;
mod select;
mod shaders;
mod step;
mod tensor;
mod train;
mod train_table;
mod unet;
mod vlb;
