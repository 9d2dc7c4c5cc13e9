//! Wrapper of shaders/loss.wgsl: mean-squared error, L = (1/n)·Σ (pred − target)², reduced on the GPU into a
//! one-element tensor, and its gradient; and the same with a per-sample weight gathered by timestep
//! ([`SampleWeights`], Min-SNR-γ). Reference: src/reference/loss.rs.

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
    d: u32,
    steps: u32,
    _pad: [u32; 2],
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
        ..Params::default()
    }
}

/// Per-sample loss weights: sample n of the batch is weighted by `table[t[n]]` (an index ≥ T is clamped to T − 1).
#[derive(Clone, Copy)]
pub struct SampleWeights<'a> {
    /// [N] u32, each sample's timestep (the batch's first dimension is N).
    pub t: &'a Tensor,
    /// [T] f32, the weight of each timestep (e.g. [`upload_weights`] of `Schedule::min_snr_weights`).
    pub table: &'a Tensor,
}

/// The [T] f32 weight table of [`SampleWeights`], rounded from f64.
pub fn upload_weights(gpu: &Gpu, weights: &[f64]) -> Result<Tensor> {
    let values: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    Tensor::from_f32(gpu, &[values.len()], &values)
}

/// Checks `w` against `pred` ([N, …]) and fills the weighted fields of `params`.
fn weighted_params(op: &'static str, pred: &Tensor, w: &SampleWeights) -> Result<Params> {
    check_f32(op, &[w.table])?;
    let n = pred.shape().first().copied().unwrap_or(0);
    ensure_shape!(
        w.t.dtype() == DType::U32,
        op,
        "the timesteps must be a u32 tensor, got {:?}",
        w.t.dtype()
    );
    ensure_shape!(
        n > 0 && w.t.shape() == [n],
        op,
        "the timesteps of a batch of {n} must have shape [{n}], got {:?}",
        w.t.shape()
    );
    ensure_shape!(
        w.table.shape().len() == 1 && !w.table.is_empty(),
        op,
        "the weight table must be [T] (one weight per timestep), got {:?}",
        w.table.shape()
    );
    Ok(Params {
        d: (pred.len() / n) as u32,
        steps: w.table.len() as u32,
        ..params(pred.len())
    })
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
    forward(gpu, pred, target, None, loss)
}

/// loss[0] = (1/n)·Σ_i w[t[i/d]]·(pred_i − target_i)², d = elements per sample: [`mse_forward`] with each sample's
/// squared errors weighted by its timestep's weight. The same two dispatches and scratch buffer; deterministic.
pub fn mse_forward_weighted(
    gpu: &Gpu,
    pred: &Tensor,
    target: &Tensor,
    weights: SampleWeights,
    loss: &Tensor,
) -> Result<Vec<Dispatch>> {
    forward(gpu, pred, target, Some(weights), loss)
}

fn forward(
    gpu: &Gpu,
    pred: &Tensor,
    target: &Tensor,
    weights: Option<SampleWeights>,
    loss: &Tensor,
) -> Result<Vec<Dispatch>> {
    let op = if weights.is_some() {
        "mse_forward_weighted"
    } else {
        "mse_forward"
    };
    check_f32(op, &[pred, target, loss])?;
    same_shape(op, pred, target)?;
    ensure_shape!(
        loss.len() == 1,
        op,
        "the loss must be a one-element tensor, got shape {:?}",
        loss.shape()
    );
    let n = pred.len();
    let params = match &weights {
        Some(w) => weighted_params(op, pred, w)?,
        None => params(n),
    };
    let partial = Tensor::zeros(gpu, &[partials(n)], DType::F32)?;
    let last = gpu.kernel_sized(SHADER, "mse_final", WORKGROUP)?;
    let first = match weights {
        None => Dispatch::new(
            gpu,
            &gpu.kernel_sized(SHADER, "mse_partial", WORKGROUP)?,
            &params,
            &[("pred", pred), ("tgt", target), ("partial", &partial)],
            [params.partials, 1, 1],
        )?,
        Some(w) => Dispatch::new(
            gpu,
            &gpu.kernel_sized(SHADER, "mse_weighted_partial", WORKGROUP)?,
            &params,
            &[
                ("pred", pred),
                ("tgt", target),
                ("t", w.t),
                ("weights", w.table),
                ("partial", &partial),
            ],
            [params.partials, 1, 1],
        )?,
    };
    Ok(vec![
        first,
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
    backward(gpu, pred, target, None, d_loss, d_pred)
}

/// d_pred_i = ((2/n)·(pred_i − target_i))·w[t[i/d]]·g, overwritten: the gradient of [`mse_forward_weighted`]
/// (g as in [`mse_backward`]).
pub fn mse_backward_weighted(
    gpu: &Gpu,
    pred: &Tensor,
    target: &Tensor,
    weights: SampleWeights,
    d_loss: Option<&Tensor>,
    d_pred: &Tensor,
) -> Result<Dispatch> {
    backward(gpu, pred, target, Some(weights), d_loss, d_pred)
}

fn backward(
    gpu: &Gpu,
    pred: &Tensor,
    target: &Tensor,
    weights: Option<SampleWeights>,
    d_loss: Option<&Tensor>,
    d_pred: &Tensor,
) -> Result<Dispatch> {
    let op = if weights.is_some() {
        "mse_backward_weighted"
    } else {
        "mse_backward"
    };
    check_f32(op, &[pred, target, d_pred])?;
    same_shape(op, pred, target)?;
    same_shape(op, pred, d_pred)?;
    let params = match &weights {
        Some(w) => weighted_params(op, pred, w)?,
        None => params(pred.len()),
    };
    if let Some(g) = d_loss {
        check_f32(op, &[g])?;
        ensure_shape!(
            g.len() == 1,
            op,
            "d_loss must be a one-element tensor, got shape {:?}",
            g.shape()
        );
    }
    let entry = match (weights.is_some(), d_loss.is_some()) {
        (false, false) => "mse_backward",
        (false, true) => "mse_backward_scaled",
        (true, false) => "mse_weighted_backward",
        (true, true) => "mse_weighted_backward_scaled",
    };
    let mut bound = vec![("pred", pred), ("tgt", target)];
    if let Some(w) = &weights {
        bound.push(("t", w.t));
        bound.push(("weights", w.table));
    }
    if let Some(g) = d_loss {
        bound.push(("d_loss", g));
    }
    bound.push(("d_pred", d_pred));
    let kernel = gpu.kernel_sized(SHADER, entry, WORKGROUP)?;
    let groups = kernel.grid_for(pred.len());
    Dispatch::new(gpu, &kernel, &params, &bound, groups)
}
