//! diffuse: a diffusion-model trainer and sampler whose every number-crunching step is a WGSL compute shader.
//!
//! - `gpu`: device, tensors, pipelines, dispatch recording (plumbing, no math).
//! - `kernels`: one wrapper per `shaders/<family>.wgsl`: shape checks, params, dispatch geometry; which variant
//!   runs where is decided in `kernels::select`.
//! - `reference`: the CPU reference of every kernel, in f64, that the tests hold the kernels to.
//! - `diffusion`: schedules, timesteps, samplers as per-step scalars, the exact model (math only, no wgpu).
//! - `dropout`: a dropout probability as a threshold on random bits, and the dropout layers' RNG streams.
//! - `optim`: the optimizer's settings (`AdamConfig`), shared by its kernel and its reference.
//! - `model`, `train`, `sample`, `eval`: the U-Net, its training (the settings table, the step, the run loop every
//!   front end drives), sampling and the variational bound, each recorded into GPU submissions; `data`,
//!   `checkpoint`, `image_io`: files (and bytes) in and out; `interop`: other tools' models (diffusers); `plot`: a run's loss curve as PNG; `bench`: `diffuse
//!   bench`; `distributed`: data-parallel training over ranks (MPI with the `mpi` feature); `fnv`: the 64-bit
//!   fingerprint of the decode cache and of the replicas' checksum; `time`: the one clock; `values`: the numeric
//!   parsers flags and checkpoint keys share.
//!
//! Every wait is an `async fn` with a blocking twin for native targets (docs/library.md): the library builds for
//! wasm32 without the command line's crates. The command-line interface is the binary's (src/main.rs, src/cli/).

// Timing needs a native clock and blocking waits: `diffuse bench` is a native command.
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod diffusion;
pub mod distributed;
pub mod dropout;
pub mod error;
pub mod eval;
pub mod fnv;
pub mod gpu;
pub mod image_io;
pub mod interop;
pub mod kernels;
pub mod model;
pub mod optim;
pub mod plot;
pub mod reference;
pub mod sample;
pub mod time;
pub mod train;
pub mod values;

pub use error::{Error, Result};
