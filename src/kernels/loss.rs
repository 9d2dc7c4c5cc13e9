//! Wrapper of shaders/loss.wgsl: mean-squared error, L = (1/n)·Σ (pred − target)², reduced on the GPU into a
//! one-element tensor, and its gradient. Reference: src/reference/loss.rs.

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::{check_f32, same_shape};

const SHADER: &str = "loss";
/// Invocations per workgroup of every entry point: loss.wgsl's WG, which this sets.
pub const WORKGROUP: usize = 256;
/// The most workgroups (partial sums) of the forward's first stage; larger inputs loop.
pub const MAX_PARTIALS: usize = 1024;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    partials: u32,
    inv_n: f32,
    two_over_n: f32,
}

/// The number of partial sums G the forward uses for n elements: min(⌈n/256⌉, 1024).
pub fn partials(n: usize) -> usize {
    n.div_ceil(WORKGROUP).min(MAX_PARTIALS)
}

fn params(n: usize) -> Params {
    Params {
        n: n as u32,
        partials: partials(n) as u32,
        // Rounded once from f64 (f32(n) alone is inexact past 2²⁴).
        inv_n: (1.0 / n as f64) as f32,
        two_over_n: (2.0 / n as f64) as f32,
    }
}

/// loss[0] = (1/n)·Σ (pred − target)² over all n elements of `pred` and `target` (same shape, any rank);
/// `loss` is a one-element f32 tensor. Two dispatches, in order: partial sums, then the final sum. They own a
/// scratch buffer of [`partials`]`(n)` floats. Deterministic: the same inputs give the same bits every run.
pub fn mse_forward(
    gpu: &Gpu,
    pred: &Tensor,
    target: &Tensor,
    loss: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "mse_forward";
    check_f32(OP, &[pred, target, loss])?;
    same_shape(OP, pred, target)?;
    ensure_shape!(
        loss.len() == 1,
        OP,
        "the loss must be a one-element tensor, got shape {:?}",
        loss.shape()
    );
    let n = pred.len();
    let params = params(n);
    let partial = Tensor::zeros(gpu, &[partials(n)], DType::F32)?;
    let first = gpu.kernel_sized(SHADER, "mse_partial", WORKGROUP)?;
    let last = gpu.kernel_sized(SHADER, "mse_final", WORKGROUP)?;
    Ok(vec![
        Dispatch::new(
            gpu,
            &first,
            &params,
            &[("pred", pred), ("tgt", target), ("partial", &partial)],
            [params.partials, 1, 1],
        )?,
        Dispatch::new(
            gpu,
            &last,
            &params,
            &[("partial_in", &partial), ("loss", loss)],
            [1, 1, 1],
        )?,
    ])
}

/// d_pred = (2/n)·(pred − target)·g, overwritten; g = d_loss[0] (a one-element f32 tensor, ∂(objective)/∂L, read
/// on the GPU when the dispatch runs) or 1 when `d_loss` is `None`.
pub fn mse_backward(
    gpu: &Gpu,
    pred: &Tensor,
    target: &Tensor,
    d_loss: Option<&Tensor>,
    d_pred: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "mse_backward";
    check_f32(OP, &[pred, target, d_pred])?;
    same_shape(OP, pred, target)?;
    same_shape(OP, pred, d_pred)?;
    let params = params(pred.len());
    match d_loss {
        None => {
            let kernel = gpu.kernel_sized(SHADER, "mse_backward", WORKGROUP)?;
            let groups = kernel.grid_for(pred.len());
            Dispatch::new(
                gpu,
                &kernel,
                &params,
                &[("pred", pred), ("tgt", target), ("d_pred", d_pred)],
                groups,
            )
        }
        Some(g) => {
            check_f32(OP, &[g])?;
            ensure_shape!(
                g.len() == 1,
                OP,
                "d_loss must be a one-element tensor, got shape {:?}",
                g.shape()
            );
            let kernel = gpu.kernel_sized(SHADER, "mse_backward_scaled", WORKGROUP)?;
            let groups = kernel.grid_for(pred.len());
            Dispatch::new(
                gpu,
                &kernel,
                &params,
                &[
                    ("pred", pred),
                    ("tgt", target),
                    ("d_loss", g),
                    ("d_pred", d_pred),
                ],
                groups,
            )
        }
    }
}
