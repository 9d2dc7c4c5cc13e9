//! Wrapper of shaders/noise.wgsl: x_t = a[t]·x_0 + b[t]·ε per sample, and the training target.
//! Reference: src/reference/noise.rs.

use crate::diffusion::samplers::Prediction;
use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::{check_f32, same_shape};

/// The [2, T] f32 table `noise_forward` reads, from a schedule's f64 rows (e.g. `Schedule::noise_table`).
pub fn upload_table(gpu: &Gpu, rows: &[Vec<f64>; 2]) -> Result<Tensor> {
    let values: Vec<f32> = rows.concat().iter().map(|&v| v as f32).collect();
    Tensor::from_f32(gpu, &[2, rows[0].len()], &values)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    d: u32,
    steps: u32,
    prediction: u32,
}

/// x0, eps, x_t, target: [N, …] (same shape); t: [N] u32; table: [2, T] = (a_t, b_t) rows, e.g.
/// (√ᾱ_t, √(1 − ᾱ_t)) for DDPM or (1, σ_t) for NCSN. `target_kind` is what the network is trained to predict, with
/// (alpha, sigma) = (a_t, b_t): ε, x_0 or v = a·ε − b·x_0; the shader has no score target (an error).
#[allow(clippy::too_many_arguments)]
pub fn noise_forward(
    gpu: &Gpu,
    x0: &Tensor,
    eps: &Tensor,
    t: &Tensor,
    table: &Tensor,
    target_kind: Prediction,
    x_t: &Tensor,
    target: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "noise_forward";
    check_f32(OP, &[x0, eps, table, x_t, target])?;
    for other in [eps, x_t, target] {
        same_shape(OP, x0, other)?;
    }
    let n = x0.shape()[0];
    ensure_shape!(
        t.dtype() == DType::U32,
        OP,
        "timesteps must be a u32 tensor, got {:?}",
        t.dtype()
    );
    ensure_shape!(
        t.shape() == [n],
        OP,
        "timesteps for a batch of {n} must have shape [{n}], got {:?}",
        t.shape()
    );
    ensure_shape!(
        table.shape().len() == 2 && table.shape()[0] == 2,
        OP,
        "the coefficient table must be [2, T] (rows a_t and b_t), got {:?}",
        table.shape()
    );
    let prediction = match target_kind {
        Prediction::Epsilon => 0,
        Prediction::Sample => 1,
        Prediction::Velocity => 2,
        Prediction::Score => return Err(Error::shape(
            OP,
            "the score −ε/b is not a training target of shaders/noise.wgsl (it has ε, x_0 and v); \
             train for ε and convert the output with Prediction::convert",
        )),
    };
    let params = Params {
        len: x0.len() as u32,
        d: (x0.len() / n) as u32,
        steps: table.shape()[1] as u32,
        prediction,
    };
    let kernel = gpu.kernel("noise", OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[
            ("x0", x0),
            ("eps", eps),
            ("t", t),
            ("table", table),
            ("x_t", x_t),
            ("target_out", target),
        ],
        kernel.grid_for(x0.len()),
    )
}
