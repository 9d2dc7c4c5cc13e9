//! One module per `shaders/<family>.wgsl`: shape checks, uniform params and dispatch geometry. Each function
//! validates its tensors and returns a [`Dispatch`](crate::gpu::Dispatch) (or several, in order) that can be
//! recorded any number of times; nothing runs until it is recorded and submitted.
//!
//! Which variant of a family runs for a shape on an adapter is decided in one place: [`select`].
//!
//! Gradient contract: a backward kernel *overwrites* its outputs (`d_x = …`). Where a tensor feeds several
//! consumers, their gradients are summed explicitly with [`elementwise::axpy`], or by the kernels that take an
//! `accumulate` flag (then `d_x += …`), which say so in their documentation.

pub mod analytic;
pub mod attention;
pub mod batch;
pub mod conv2d;
pub mod elementwise;
pub mod embedding;
pub mod group_norm;
pub mod loss;
pub mod matmul;
pub mod noise;
pub mod optimizer;
pub mod pairwise;
pub mod random;
pub mod select;
pub mod step;
pub mod vlb;

pub use select::SubgroupPath;

use crate::error::{Error, Result};
use crate::gpu::{DType, Tensor};

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
