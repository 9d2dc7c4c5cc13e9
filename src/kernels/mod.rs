//! One module per `shaders/<family>.wgsl`: shape checks, uniform params and dispatch geometry. Each function
//! validates its tensors and returns a [`Dispatch`](crate::gpu::Dispatch) (or several, in order) that can be
//! recorded any number of times; nothing runs until it is recorded and submitted.
//!
//! Gradient contract: a backward kernel *overwrites* its outputs (`d_x = …`). Where a tensor feeds several
//! consumers, their gradients are summed explicitly with [`elementwise::axpy`], or by the kernels that take an
//! `accumulate` flag (then `d_x += …`), which say so in their documentation.

pub mod analytic;
pub mod attention;
pub mod batch;
pub mod conv2d;
pub(crate) mod conv2d_winograd;
pub mod elementwise;
pub mod embedding;
pub mod group_norm;
pub mod loss;
pub mod matmul;
pub mod noise;
pub mod optimizer;
pub mod random;
pub mod step;
pub mod vlb;

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};

/// True where the adapter has subgroup operations and every subgroup it makes holds at least `lanes` invocations:
/// what the subgroup kernels whose workgroup of 8 must be one subgroup (conv2d, matmul, attention) need.
pub(crate) fn has_subgroups_of_at_least(gpu: &Gpu, lanes: u32) -> bool {
    gpu.caps.subgroups && gpu.info.subgroup_min_size >= lanes
}

/// Which kernels a family with a subgroup variant for CPU adapters records (GroupNorm's reductions, attention's
/// products); each family re-exports it as its `Path`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SubgroupPath {
    /// The subgroup kernels on CPU adapters that can run them (where they were measured faster:
    /// docs/benchmarks.md), else the portable ones.
    #[default]
    Auto,
    /// The portable kernels (any adapter).
    Portable,
    /// The subgroup kernels; refused where the adapter cannot run them.
    Subgroup,
}

/// Whether `path` takes `op`'s subgroup kernels on this adapter, given whether it can run them (`available`) and
/// what they need (`needs`, for the refusal), or why it cannot.
pub(crate) fn takes_subgroup_kernels(
    path: SubgroupPath,
    gpu: &Gpu,
    op: &'static str,
    available: bool,
    needs: &str,
) -> Result<bool> {
    Ok(match path {
        SubgroupPath::Portable => false,
        SubgroupPath::Auto => available && gpu.info.device_type == wgpu::DeviceType::Cpu,
        SubgroupPath::Subgroup => {
            crate::ensure_shape!(
                available,
                op,
                "the subgroup kernels need {needs}; {} has {} (sizes {} to {}): use Path::Portable or Path::Auto",
                gpu.describe(),
                if gpu.caps.subgroups { "subgroups" } else { "no subgroups" },
                gpu.info.subgroup_min_size,
                gpu.info.subgroup_max_size
            );
            true
        }
    })
}

/// Every tensor must hold f32.
pub(crate) fn check_f32(op: &'static str, tensors: &[&Tensor]) -> Result<()> {
    for t in tensors {
        if t.dtype() != DType::F32 {
            return Err(Error::shape(
                op,
                format!(
                    "expected f32 tensors, got a {:?} tensor of shape {:?}",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
    }
    Ok(())
}

/// `a` and `b` must have the same shape.
pub(crate) fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::shape(
            op,
            format!("shapes {:?} and {:?} must be equal", a.shape(), b.shape()),
        ));
    }
    Ok(())
}
