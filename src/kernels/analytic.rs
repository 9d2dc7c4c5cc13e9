//! Wrapper of shaders/analytic.wgsl: the exact model of Gaussian-mixture data (src/diffusion/analytic.rs) as a GPU
//! kernel, so a sampler's whole loop runs on the GPU with no network. Reference: src/reference/analytic.rs.

use crate::diffusion::analytic::GaussianMixture;
use crate::diffusion::samplers::{NoiseLevel, Prediction};
use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::{check_f32, same_shape};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    d: u32,
    k: u32,
    factorized: u32,
    prediction: u32,
    alpha: f32,
    sigma: f32,
    steps: u32,
}

/// A mixture uploaded as the kernel's table, [K, 2 + D] rows (log w_k, s_k², μ_k).
pub struct MixtureTable {
    pub table: Tensor,
    pub components: usize,
    pub dim: usize,
    pub factorized: bool,
}

impl MixtureTable {
    pub fn upload(gpu: &Gpu, data: &GaussianMixture) -> Result<MixtureTable> {
        let (k, d) = (data.components(), data.dim());
        let rows: Vec<f32> = (0..k)
            .flat_map(|c| {
                [data.weights[c].ln() as f32, data.variances[c] as f32]
                    .into_iter()
                    .chain(data.means[c].iter().map(|&m| m as f32))
            })
            .collect();
        Ok(MixtureTable {
            table: Tensor::from_f32(gpu, &[k, 2 + d], &rows)?,
            components: k,
            dim: d,
            factorized: data.factorized,
        })
    }
}

/// The kernel's code for a prediction kind.
pub fn prediction_code(prediction: Prediction) -> u32 {
    match prediction {
        Prediction::Epsilon => 0,
        Prediction::Sample => 1,
        Prediction::Velocity => 2,
        Prediction::Score => 3,
    }
}

/// out = the exact prediction of kind `prediction` for x at `level`. x, out: [N, …] with D elements per sample
/// (D = the mixture's dimension).
pub fn analytic_predict(
    gpu: &Gpu,
    mixture: &MixtureTable,
    x: &Tensor,
    level: &NoiseLevel,
    prediction: Prediction,
    out: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "analytic_predict";
    check_f32(OP, &[x, out, &mixture.table])?;
    same_shape(OP, x, out)?;
    let n = x.shape()[0];
    ensure_shape!(
        x.len() == n * mixture.dim,
        OP,
        "samples of the mixture have {} elements, but x {:?} has {} per sample",
        mixture.dim,
        x.shape(),
        x.len() / n
    );
    ensure_shape!(
        level.sigma > 0.0 && level.alpha >= 0.0,
        OP,
        "the noise level needs σ > 0 and α ≥ 0, got α = {}, σ = {}",
        level.alpha,
        level.sigma
    );
    let params = Params {
        len: x.len() as u32,
        d: mixture.dim as u32,
        k: mixture.components as u32,
        factorized: mixture.factorized as u32,
        prediction: prediction_code(prediction),
        alpha: level.alpha as f32,
        sigma: level.sigma as f32,
        steps: 0,
    };
    let kernel = gpu.kernel("analytic", OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("mixture", &mixture.table), ("x", x), ("out", out)],
        kernel.grid_for(x.len()),
    )
}

/// As [`analytic_predict`], with each sample n at the level of its own timestep index t[n] (clamped to T − 1):
/// `levels` is a [2, T] table of rows α_t, σ_t (e.g. √ᾱ_t, √(1 − ᾱ_t), all σ_t > 0); t: [N] u32.
pub fn analytic_predict_indexed(
    gpu: &Gpu,
    mixture: &MixtureTable,
    x: &Tensor,
    t: &Tensor,
    levels: &Tensor,
    prediction: Prediction,
    out: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "analytic_predict_indexed";
    check_f32(OP, &[x, out, levels, &mixture.table])?;
    same_shape(OP, x, out)?;
    let n = x.shape()[0];
    ensure_shape!(
        x.len() == n * mixture.dim,
        OP,
        "samples of the mixture have {} elements, but x {:?} has {} per sample",
        mixture.dim,
        x.shape(),
        x.len() / n
    );
    ensure_shape!(
        t.dtype() == DType::U32 && t.shape() == [n],
        OP,
        "timesteps for a batch of {n} must be a [{n}] u32 tensor, got a {:?} tensor of shape {:?}",
        t.dtype(),
        t.shape()
    );
    ensure_shape!(
        levels.shape().len() == 2 && levels.shape()[0] == 2,
        OP,
        "the level table must be [2, T] (rows α_t and σ_t), got {:?}",
        levels.shape()
    );
    let params = Params {
        len: x.len() as u32,
        d: mixture.dim as u32,
        k: mixture.components as u32,
        factorized: mixture.factorized as u32,
        prediction: prediction_code(prediction),
        steps: levels.shape()[1] as u32,
        ..Params::default()
    };
    let kernel = gpu.kernel("analytic", OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[
            ("mixture", &mixture.table),
            ("x", x),
            ("out", out),
            ("t", t),
            ("levels", levels),
        ],
        kernel.grid_for(x.len()),
    )
}
