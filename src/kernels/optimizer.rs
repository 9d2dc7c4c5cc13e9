//! Wrapper of shaders/optimizer.wgsl: the global gradient norm and clip scale, Adam/AdamW, and the EMA of the
//! weights, each one pass (or two) over the model's flat parameter vector, held as one or more shards (buffers
//! that each fit one binding; see model::param_buffers). Reference: src/reference/optimizer.rs.
//!
//! A training step is recorded once and resubmitted, so what changes per step lives in three small f32 tensors,
//! never in the uniform params (which are fixed when a [`Dispatch`] is built):
//! - `hyper`, [`HYPER_LEN`] elements, written by the host before each submission ([`Hyper::write`]):
//!   `[lr, ema_decay, 1 − ema_decay, 0]` (the last is reserved).
//! - `step`, [`STEP_LEN`] elements ([`AdamState::step`]), owned by the GPU:
//!   `[t, lr/(1 − β1ᵗ), 1/√(1 − β2ᵗ), 1 − lr·λ]`. Each recorded Adam step first adds 1 to `t` on the GPU and
//!   recomputes the rest from lr in `hyper`, so the same dispatches submitted (or recorded) k times take k steps.
//!   Zeros for a fresh optimizer; to resume, write `[t, 0, 0, 0]`. `t` is an f32 integer, exact up to 2²⁴ steps.
//!   The bias corrections 1 − βᵗ are formed as −expm1(t·ln β) (ln β from the host in f64), to about 10 u at any t.
//! - `norm`, [`NORM_LEN`] elements, written by [`grad_norm`]: `[‖g‖, clip scale]`; [`adam_step`] reads the scale in
//!   the same submission, and the host may read ‖g‖ back for logging.

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::{check_f32, same_shape};
use crate::optim::AdamConfig;

const SHADER: &str = "optimizer";
/// Invocations per workgroup of the element-wise passes and the grad-norm reduction: optimizer.wgsl's WG, which
/// this sets.
const WG: usize = 256;
/// Workgroups of the first grad-norm stage at most: enough to fill a large GPU, few enough that one workgroup
/// finishes the sum with 4 serial adds per thread.
const MAX_PARTIALS: usize = 1024;

/// Elements of the host-written `hyper` tensor: `[lr, ema_decay, 1 − ema_decay, 0]`.
pub const HYPER_LEN: usize = 4;
/// How error messages name the `hyper` tensor's layout.
const HYPER_LAYOUT: &str = "hyper [lr, ema_decay, 1 − ema_decay, 0]";
/// Elements of the GPU-owned Adam step tensor: `[t, lr/(1 − β1ᵗ), 1/√(1 − β2ᵗ), 1 − lr·λ_decoupled]`.
pub const STEP_LEN: usize = 4;
/// Elements of the grad-norm output: `[‖g‖, clip scale]`.
pub const NORM_LEN: usize = 2;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    partials: u32,
    clip: u32,
    max_norm: f32,
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    ln_beta1: f32,
    ln_beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled_weight_decay: f32,
    _pad: [u32; 3],
}

/// The per-step scalars the host writes into `hyper` before each submission.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    /// The learning rate of this step (warm-up and schedules applied by the trainer).
    pub lr: f64,
    /// The EMA decay d of this step (its warm-up is the trainer's business).
    pub ema_decay: f64,
}

impl Hyper {
    /// `[lr, d, 1 − d, 0]`, with 1 − d rounded from f64 so that decays near 1 keep their digits.
    pub fn to_f32(&self) -> [f32; HYPER_LEN] {
        [
            self.lr as f32,
            self.ema_decay as f32,
            (1.0 - self.ema_decay) as f32,
            0.0,
        ]
    }

    /// Writes these values into `hyper` (queued before the next submission).
    pub fn write(&self, gpu: &Gpu, hyper: &Tensor) -> Result<()> {
        check_scalars("Hyper::write", hyper, HYPER_LEN, HYPER_LAYOUT)?;
        hyper.write_f32(gpu, &self.to_f32())
    }
}

/// Adam's state for one flat parameter vector: the moments m, v (shard by shard, shaped as the parameters' shards)
/// and the step tensor [`STEP_LEN`]. All three belong in a checkpoint.
pub struct AdamState {
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    pub step: Tensor,
}

impl AdamState {
    /// A fresh optimizer (t = 0, moments zero) for parameters in shards of these shapes.
    pub fn zeros(gpu: &Gpu, shards: &[&[usize]]) -> Result<AdamState> {
        let zeros = || {
            shards
                .iter()
                .map(|shape| Tensor::zeros(gpu, shape, DType::F32))
                .collect::<Result<Vec<_>>>()
        };
        Ok(AdamState {
            m: zeros()?,
            v: zeros()?,
            step: Tensor::zeros(gpu, &[STEP_LEN], DType::F32)?,
        })
    }
}

/// `t` must be an f32 tensor of exactly `len` elements, laid out as `layout`.
fn check_scalars(op: &'static str, t: &Tensor, len: usize, layout: &str) -> Result<()> {
    check_f32(op, &[t])?;
    ensure_shape!(
        t.len() == len,
        op,
        "{layout} must hold {len} elements, got shape {:?}",
        t.shape()
    );
    Ok(())
}

fn per_element(
    gpu: &Gpu,
    entry: &'static str,
    params: Params,
    tensors: &[(&str, &Tensor)],
) -> Result<Dispatch> {
    let kernel = gpu.kernel_sized(SHADER, entry, WG)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        tensors,
        kernel.grid_for(params.len as usize),
    )
}

/// Workgroups of the first grad-norm stage for `len` elements.
fn partials(len: usize) -> usize {
    len.div_ceil(WG).clamp(1, MAX_PARTIALS)
}

/// Where each shard's partial sums start in the grad-norm scratch (64-element aligned, so each is a bindable
/// view; the gaps stay zero and add nothing), and the scratch's length.
fn partial_offsets(lens: &[usize]) -> (Vec<usize>, usize) {
    let mut at = 0;
    let offsets = lens
        .iter()
        .map(|&len| {
            let o = at;
            at += partials(len).div_ceil(64) * 64;
            o
        })
        .collect();
    (offsets, at)
}

/// The longest chain of f32 roundings that any gᵢ² passes through in [`grad_norm`] over shards of `lens` elements
/// (the squaring, the serial adds of a thread, two 8-level trees and the serial adds of the final workgroup), so
/// that the computed Σgᵢ² is within γ(chain)·Σgᵢ² of the exact sum: far tighter than γ(len) for long vectors.
pub fn grad_norm_chain(lens: &[usize]) -> usize {
    let (_, total) = partial_offsets(lens);
    let first = lens
        .iter()
        .map(|&len| 1 + len.div_ceil(partials(len) * WG) + 8)
        .max()
        .unwrap_or(1);
    first + total.div_ceil(WG) + 8
}

/// `norm` ← [‖g‖₂, s] over all the shards of `grads`, with s = min(1, max_norm / (‖g‖ + 1e-6))
/// (torch.nn.utils.clip_grad_norm_), or s = 1 when `max_norm` is None. Two stages (partial sums of squares per
/// workgroup of each shard, then one workgroup over all of them), in a fixed order so the result is
/// deterministic; the scratch for the partial sums is allocated here and kept by the dispatches.
pub fn grad_norm(
    gpu: &Gpu,
    grads: &[Tensor],
    max_norm: Option<f64>,
    norm: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "grad_norm";
    ensure_shape!(!grads.is_empty(), OP, "no gradient shards");
    check_f32(OP, &grads.iter().collect::<Vec<_>>())?;
    check_scalars(OP, norm, NORM_LEN, "norm [‖g‖, clip scale]")?;
    if let Some(max) = max_norm {
        ensure_shape!(
            max.is_finite() && max > 0.0,
            OP,
            "max_norm must be finite and > 0, got {max}"
        );
    }
    let lens: Vec<usize> = grads.iter().map(Tensor::len).collect();
    let (offsets, total) = partial_offsets(&lens);
    let scratch = Tensor::zeros(gpu, &[total], DType::F32)?;
    let params = Params {
        clip: max_norm.is_some() as u32,
        max_norm: max_norm.unwrap_or(0.0) as f32,
        ..Params::default()
    };
    let partial = gpu.kernel_sized(SHADER, "grad_norm_partial", WG)?;
    let finalize = gpu.kernel_sized(SHADER, "grad_norm_finalize", WG)?;
    let mut d = Vec::with_capacity(grads.len() + 1);
    for (grad, offset) in grads.iter().zip(offsets) {
        let w = partials(grad.len());
        d.push(Dispatch::new(
            gpu,
            &partial,
            &Params {
                len: grad.len() as u32,
                partials: w as u32,
                ..params
            },
            &[
                ("grad", grad),
                ("partials", &scratch.view(gpu, offset, &[w])?),
            ],
            [w as u32, 1, 1],
        )?);
    }
    d.push(Dispatch::new(
        gpu,
        &finalize,
        &Params {
            partials: total as u32,
            ..params
        },
        &[("partials_in", &scratch), ("norm", norm)],
        [1, 1, 1],
    )?);
    Ok(d)
}

/// One Adam/AdamW step (torch.optim semantics, see shaders/optimizer.wgsl): `adam_advance` (t += 1 and the
/// bias-corrected step size, from lr in `hyper`) once, then the update of each shard of `params` with its m and v.
/// With `clip` (the `norm` tensor of [`grad_norm`], recorded before this), the gradient is first multiplied by the
/// clip scale; without it, it is used as it is. A shard's param, grad, m and v must have one shape and be distinct
/// buffers.
pub fn adam_step(
    gpu: &Gpu,
    config: &AdamConfig,
    params: &[Tensor],
    grads: &[Tensor],
    state: &AdamState,
    hyper: &Tensor,
    clip: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "adam_step";
    config.validate(OP)?;
    check_adam_operands(OP, params, grads, state, hyper, clip)?;
    let uniforms = adam_uniforms(config);
    let advance = gpu.kernel_sized(SHADER, "adam_advance", WG)?;
    let mut d = vec![Dispatch::new(
        gpu,
        &advance,
        &uniforms,
        &[("hyper", hyper), ("step", &state.step)],
        [1, 1, 1],
    )?];
    for (((param, grad), m), v) in params.iter().zip(grads).zip(&state.m).zip(&state.v) {
        let mut tensors = vec![
            ("grad", grad),
            ("step_in", &state.step),
            ("param", param),
            ("m", m),
            ("v", v),
        ];
        let entry = match clip {
            Some(norm) => {
                tensors.push(("norm_in", norm));
                "adam_update_clipped"
            }
            None => "adam_update",
        };
        let params = Params {
            len: param.len() as u32,
            ..uniforms
        };
        d.push(per_element(gpu, entry, params, &tensors)?);
    }
    Ok(d)
}

/// Refuses shards that disagree in count, dtype or shape, and scalar tensors of the wrong length, before anything
/// is recorded.
fn check_adam_operands(
    op: &'static str,
    params: &[Tensor],
    grads: &[Tensor],
    state: &AdamState,
    hyper: &Tensor,
    clip: Option<&Tensor>,
) -> Result<()> {
    ensure_shape!(
        !params.is_empty()
            && grads.len() == params.len()
            && state.m.len() == params.len()
            && state.v.len() == params.len(),
        op,
        "{} parameter shards, {} gradient shards, {} and {} moment shards: they must be as many, and at least one",
        params.len(),
        grads.len(),
        state.m.len(),
        state.v.len()
    );
    for (((param, grad), m), v) in params.iter().zip(grads).zip(&state.m).zip(&state.v) {
        check_f32(op, &[param, grad, m, v])?;
        same_shape(op, param, grad)?;
        same_shape(op, param, m)?;
        same_shape(op, param, v)?;
    }
    check_scalars(
        op,
        &state.step,
        STEP_LEN,
        "the step tensor [t, lr/(1 − β1ᵗ), 1/√(1 − β2ᵗ), 1 − lr·λ]",
    )?;
    check_scalars(op, hyper, HYPER_LEN, HYPER_LAYOUT)?;
    if let Some(norm) = clip {
        check_scalars(op, norm, NORM_LEN, "the clip tensor [‖g‖, clip scale]")?;
    }
    Ok(())
}

/// The uniforms every Adam pass shares: the configuration's constants in f32, weight decay put on the coupled
/// (Adam) or decoupled (AdamW) side.
fn adam_uniforms(config: &AdamConfig) -> Params {
    // ln 0 = −∞; below −104, e^(t·ln β) is 0 in f32 for every t ≥ 1 anyway.
    let ln = |beta: f64| (beta.ln().max(-104.0)) as f32;
    let (coupled, decoupled) = if config.decoupled {
        (0.0, config.weight_decay)
    } else {
        (config.weight_decay, 0.0)
    };
    Params {
        beta1: config.beta1 as f32,
        one_minus_beta1: (1.0 - config.beta1) as f32,
        beta2: config.beta2 as f32,
        one_minus_beta2: (1.0 - config.beta2) as f32,
        ln_beta1: ln(config.beta1),
        ln_beta2: ln(config.beta2),
        eps: config.eps as f32,
        weight_decay: coupled as f32,
        decoupled_weight_decay: decoupled as f32,
        ..Params::default()
    }
}

/// ema ← d·ema + (1 − d)·weights, with d and 1 − d read from `hyper` at submission time.
pub fn ema_update(gpu: &Gpu, weights: &Tensor, ema: &Tensor, hyper: &Tensor) -> Result<Dispatch> {
    const OP: &str = "ema_update";
    check_f32(OP, &[weights, ema])?;
    same_shape(OP, weights, ema)?;
    check_scalars(OP, hyper, HYPER_LEN, HYPER_LAYOUT)?;
    let params = Params {
        len: ema.len() as u32,
        ..Params::default()
    };
    per_element(
        gpu,
        OP,
        params,
        &[("hyper", hyper), ("weights", weights), ("ema", ema)],
    )
}
