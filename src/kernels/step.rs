//! Wrapper of shaders/step.wgsl: the reverse step of every sampler, y = a·x + b·o + c·z and its Heun and
//! x₀-clipped variants, with the scalars of a [`FoldedStep`](crate::diffusion::samplers::FoldedStep).
//! Reference: src/reference/step.rs. The equations of the samplers are in src/diffusion/samplers.rs.

use crate::diffusion::samplers::FoldedStep;
use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{check_f32, same_shape};

const SHADER: &str = "step";

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    _pad: [u32; 3],
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
    _pad2: [f32; 2],
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

/// The scalars of an x₀-clipped step: x̂₀ = clamp(p·x + q·o, lo, hi); y = u·x̂₀ + w·x + c·z.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClippedCoefficients {
    pub p: f64,
    pub q: f64,
    pub lo: f64,
    pub hi: f64,
    pub u: f64,
    pub w: f64,
    pub c: f64,
}

/// x̂₀ = clamp(p·x + q·o, lo, hi); y = u·x̂₀ + w·x + c·z (`z` may be `None` where c = 0).
pub fn step_clipped(
    gpu: &Gpu,
    x: &Tensor,
    o: &Tensor,
    z: Option<&Tensor>,
    k: &ClippedCoefficients,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "step_clipped";
    check_f32(OP, &[x, o, y])?;
    same_shape(OP, x, o)?;
    same_shape(OP, x, y)?;
    let ordered = k.lo <= k.hi;
    ensure_shape!(ordered, OP, "the clip range [{}, {}] is empty", k.lo, k.hi);
    let z = noise_binding(OP, k.c, z, o)?;
    let params = Params {
        len: x.len() as u32,
        c: k.c as f32,
        p: k.p as f32,
        q: k.q as f32,
        lo: k.lo as f32,
        hi: k.hi as f32,
        u: k.u as f32,
        w: k.w as f32,
        ..Params::default()
    };
    dispatch(gpu, OP, params, &[("x", x), ("o", o), ("z", z), ("y", y)])
}

/// The update of a folded sampler step (Heun: the corrector; its predictor is `step` with (a1, b1, 0)).
pub fn folded(
    gpu: &Gpu,
    step_kind: &FoldedStep,
    x: &Tensor,
    o: &Tensor,
    o2: Option<&Tensor>,
    z: Option<&Tensor>,
    y: &Tensor,
) -> Result<Dispatch> {
    match *step_kind {
        FoldedStep::Linear { a, b, c } => step(gpu, x, o, z, (a, b, c), y),
        FoldedStep::Clipped {
            p,
            q,
            u,
            w,
            c,
            lo,
            hi,
        } => step_clipped(
            gpu,
            x,
            o,
            z,
            &ClippedCoefficients {
                p,
                q,
                lo,
                hi,
                u,
                w,
                c,
            },
            y,
        ),
        FoldedStep::Heun { a, b, b2, .. } => {
            let o2 = o2.ok_or_else(|| {
                crate::error::Error::shape(
                    "step_heun",
                    "Heun's corrector needs o2, the model's output at the predictor",
                )
            })?;
            step_heun(gpu, x, o, o2, (a, b, b2), y)
        }
    }
}
