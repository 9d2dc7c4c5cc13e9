//! Wrapper of shaders/step.wgsl: the reverse step of every sampler, y = a·x + b·o + c·z and its Heun, x₀-bounded
//! and multistep variants, with the scalars of a [`FoldedStep`](crate::diffusion::samplers::FoldedStep), and the
//! per-sample threshold of dynamic thresholding.
//! Reference: src/reference/step.rs. The equations of the samplers are in src/diffusion/samplers/.

use crate::diffusion::samplers::{Clipped, FoldedStep, Multistep, X0Bound};
use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{check_f32, same_shape};

const SHADER: &str = "step";

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    sample_len: u32,
    bound: u32,
    corrector: u32,
    a: f32,
    b: f32,
    b2: f32,
    c: f32,
    p: f32,
    q: f32,
    lo: f32,
    hi: f32,
    u: f32,
    w: f32,
    v: f32,
    ratio: f32,
    max: f32,
    m1: f32,
    m2: f32,
    cs: f32,
    cm: f32,
    cm1: f32,
    cm2: f32,
    _pad: f32,
}

fn dispatch(
    gpu: &Gpu,
    entry: &'static str,
    params: Params,
    tensors: &[(&str, &Tensor)],
) -> Result<Dispatch> {
    let kernel = gpu.kernel(SHADER, entry)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        tensors,
        kernel.grid_for(params.len as usize),
    )
}

/// The noise tensor to bind: `z` where the step adds noise, else `o` (the kernel does not read it when c = 0).
fn noise_binding<'a>(
    op: &'static str,
    c: f64,
    z: Option<&'a Tensor>,
    o: &'a Tensor,
) -> Result<&'a Tensor> {
    match z {
        Some(z) => {
            check_f32(op, &[z])?;
            same_shape(op, o, z)?;
            Ok(z)
        }
        None => {
            ensure_shape!(
                c == 0.0,
                op,
                "the step adds noise (c = {c}) but no noise tensor z was given"
            );
            Ok(o)
        }
    }
}

/// Elements per sample of x ([N, …]: all but the first axis; a 1-D x is one sample).
fn sample_len(x: &Tensor) -> usize {
    match x.shape() {
        [] | [_] => x.len(),
        [n, ..] => x.len() / (*n).max(1),
    }
}

/// Fills the bound's fields of `params`, and returns the tensor to bind as `scale` (the dynamic thresholds where
/// the bound is dynamic, else `o`, which the kernel then does not read as such).
fn bound_params<'a>(
    op: &'static str,
    bound: X0Bound,
    x: &Tensor,
    scale: Option<&'a Tensor>,
    o: &'a Tensor,
    params: &mut Params,
) -> Result<&'a Tensor> {
    params.sample_len = sample_len(x).max(1) as u32;
    match bound {
        X0Bound::None => Ok(o),
        X0Bound::Fixed { lo, hi } => {
            let ordered = lo <= hi;
            ensure_shape!(ordered, op, "the clip range [{lo}, {hi}] is empty");
            params.bound = 1;
            params.lo = lo as f32;
            params.hi = hi as f32;
            Ok(o)
        }
        X0Bound::Dynamic { .. } => {
            let scale = scale.ok_or_else(|| {
                crate::error::Error::shape(
                    op,
                    "dynamic thresholding needs the per-sample thresholds (x0_threshold's output)",
                )
            })?;
            check_f32(op, &[scale])?;
            let samples = x.len() / params.sample_len as usize;
            ensure_shape!(
                scale.len() == samples,
                op,
                "the thresholds hold {} values for {samples} samples",
                scale.len()
            );
            params.bound = 2;
            Ok(scale)
        }
    }
}

/// y = a·x + b·o + c·z (`z` may be `None` where c = 0). x, o, z, y: the same shape, any rank; y must not be x.
pub fn step(
    gpu: &Gpu,
    x: &Tensor,
    o: &Tensor,
    z: Option<&Tensor>,
    (a, b, c): (f64, f64, f64),
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "step";
    check_f32(OP, &[x, o, y])?;
    same_shape(OP, x, o)?;
    same_shape(OP, x, y)?;
    let z = noise_binding(OP, c, z, o)?;
    let params = Params {
        len: x.len() as u32,
        a: a as f32,
        b: b as f32,
        c: c as f32,
        ..Params::default()
    };
    dispatch(gpu, OP, params, &[("x", x), ("o", o), ("z", z), ("y", y)])
}

/// Heun's corrector: y = a·x + b·o + b2·o2, with o the model's output at x and o2 at the predictor x'.
pub fn step_heun(
    gpu: &Gpu,
    x: &Tensor,
    o: &Tensor,
    o2: &Tensor,
    (a, b, b2): (f64, f64, f64),
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "step_heun";
    check_f32(OP, &[x, o, o2, y])?;
    for t in [o, o2, y] {
        same_shape(OP, x, t)?;
    }
    let params = Params {
        len: x.len() as u32,
        a: a as f32,
        b: b as f32,
        b2: b2 as f32,
        ..Params::default()
    };
    dispatch(gpu, OP, params, &[("x", x), ("o", o), ("o2", o2), ("y", y)])
}

/// x̂₀ = bound(p·x + q·o); y = u·x̂₀ + w·x + v·o + c·z (`z` may be `None` where c = 0; `scale`: the thresholds of
/// [`x0_threshold`] where the bound is dynamic). Samples are x's first axis.
pub fn step_clipped(
    gpu: &Gpu,
    x: &Tensor,
    o: &Tensor,
    z: Option<&Tensor>,
    scale: Option<&Tensor>,
    k: &Clipped,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "step_clipped";
    check_f32(OP, &[x, o, y])?;
    same_shape(OP, x, o)?;
    same_shape(OP, x, y)?;
    let z = noise_binding(OP, k.c, z, o)?;
    let mut params = Params {
        len: x.len() as u32,
        c: k.c as f32,
        p: k.p as f32,
        q: k.q as f32,
        u: k.u as f32,
        w: k.w as f32,
        v: k.v as f32,
        ..Params::default()
    };
    let scale = bound_params(OP, k.bound, x, scale, o, &mut params)?;
    dispatch(
        gpu,
        OP,
        params,
        &[("x", x), ("o", o), ("z", z), ("scale", scale), ("y", y)],
    )
}

/// A multistep step (see [`Multistep`]): y from x, o and `state` ([3·len]: s, m₁, m₂), which it advances in
/// place. `scale`: the thresholds of [`x0_threshold`] where the bound is dynamic.
pub fn step_multistep(
    gpu: &Gpu,
    x: &Tensor,
    o: &Tensor,
    scale: Option<&Tensor>,
    k: &Multistep,
    state: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "step_multistep";
    check_f32(OP, &[x, o, state, y])?;
    same_shape(OP, x, o)?;
    same_shape(OP, x, y)?;
    ensure_shape!(
        state.len() == 3 * x.len(),
        OP,
        "the state must hold 3 values per element ({}), got {}",
        3 * x.len(),
        state.len()
    );
    let corrector = k
        .corrector
        .unwrap_or(crate::diffusion::samplers::Corrector {
            s: 0.0,
            history: Default::default(),
        });
    let mut params = Params {
        len: x.len() as u32,
        corrector: k.corrector.is_some() as u32,
        a: k.a as f32,
        b: k.b.m as f32,
        m1: k.b.m1 as f32,
        m2: k.b.m2 as f32,
        p: k.p as f32,
        q: k.q as f32,
        cs: corrector.s as f32,
        cm: corrector.history.m as f32,
        cm1: corrector.history.m1 as f32,
        cm2: corrector.history.m2 as f32,
        ..Params::default()
    };
    let scale = bound_params(OP, k.bound, x, scale, o, &mut params)?;
    dispatch(
        gpu,
        OP,
        params,
        &[
            ("x", x),
            ("o", o),
            ("scale", scale),
            ("state", state),
            ("y", y),
        ],
    )
}

/// Dynamic thresholding's per-sample s = min(max(quantile(|p·x + q·o|, ratio), 1), max) (torch.quantile's linear
/// interpolation) into `scale` ([N] for x's N samples along its first axis).
pub fn x0_threshold(
    gpu: &Gpu,
    x: &Tensor,
    o: &Tensor,
    (p, q): (f64, f64),
    (ratio, max): (f64, f64),
    scale: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "x0_threshold";
    check_f32(OP, &[x, o, scale])?;
    same_shape(OP, x, o)?;
    let per = sample_len(x);
    ensure_shape!(per > 0, OP, "x is empty");
    let samples = x.len() / per;
    ensure_shape!(
        scale.len() == samples,
        OP,
        "scale must hold one value per sample ({samples}), got {}",
        scale.len()
    );
    ensure_shape!(
        (0.0..=1.0).contains(&ratio) && max >= 1.0,
        OP,
        "the quantile ratio must lie in [0, 1] and the maximum be ≥ 1, got {ratio} and {max}"
    );
    let params = Params {
        len: x.len() as u32,
        sample_len: per as u32,
        p: p as f32,
        q: q as f32,
        ratio: ratio as f32,
        max: max as f32,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("x", x), ("o", o), ("scale_out", scale)],
        [samples as u32, 1, 1],
    )
}

/// The update of a folded sampler step (Heun: the corrector; its predictor is `step` with (a1, b1, 0)).
/// `scale`: dynamic thresholding's per-sample thresholds, `state`: a multistep solver's, where the step has them.
#[allow(clippy::too_many_arguments)]
pub fn folded(
    gpu: &Gpu,
    step_kind: &FoldedStep,
    x: &Tensor,
    o: &Tensor,
    o2: Option<&Tensor>,
    z: Option<&Tensor>,
    scale: Option<&Tensor>,
    state: Option<&Tensor>,
    y: &Tensor,
) -> Result<Dispatch> {
    match *step_kind {
        FoldedStep::Linear { a, b, c } => step(gpu, x, o, z, (a, b, c), y),
        FoldedStep::Clipped(ref k) => step_clipped(gpu, x, o, z, scale, k, y),
        FoldedStep::Heun { a, b, b2, .. } => {
            let o2 = o2.ok_or_else(|| {
                crate::error::Error::shape(
                    "step_heun",
                    "Heun's corrector needs o2, the model's output at the predictor",
                )
            })?;
            step_heun(gpu, x, o, o2, (a, b, b2), y)
        }
        FoldedStep::Multistep(ref k) => {
            let state = state.ok_or_else(|| {
                crate::error::Error::shape(
                    "step_multistep",
                    "a multistep step needs its state (s, m₁, m₂)",
                )
            })?;
            step_multistep(gpu, x, o, scale, k, state, y)
        }
    }
}
