//! GPU plumbing, no math: the device, tensors, pipelines and dispatch recording.

pub mod buffer;
pub mod context;
pub mod future;
pub mod memory;
pub mod pipeline;
pub mod readback;
pub mod shaders;
pub mod tensor;
#[cfg(not(target_arch = "wasm32"))]
pub mod timer;
pub mod upload;

#[cfg(not(target_arch = "wasm32"))]
pub use context::list_adapters;
pub use context::{
    list_adapters_async, AdapterSummary, Capabilities, Gpu, Tuning, ADAPTER_ENV, TUNING_ENV,
};
pub use pipeline::{
    buffer_growth, footprint, grid_1d, Dispatch, Footprint, Kernel, Recorder, UsedBinding,
};
pub use readback::{PendingRead, StagedRead};
pub use tensor::{DType, Tensor};
#[cfg(not(target_arch = "wasm32"))]
pub use timer::{Clock, Timer};
