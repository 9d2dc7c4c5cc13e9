//! The network: the U-Net's configuration, presets, layers and parameter layout. No diffusion math here.

pub mod config;
pub mod param_buffers;
pub mod params;
pub mod unet;

pub use config::{Conventions, Preset, UNetConfig};
pub use param_buffers::ParamBuffers;
pub use params::{forward_flops, Architecture, Block, ParamLayout, ParamSpec, SplitMix64};
