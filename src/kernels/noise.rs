//! Wrapper of shaders/noise.wgsl: x_t = a[t]·x_0 + b[t]·ε per sample, and the training target; and the same at a
//! level drawn per image for the score-based objectives. Reference: src/reference/noise.rs.

use crate::diffusion::process::{ncsn_sigmas, Objective, Sde, Weighting};
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
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    d: u32,
    steps: u32,
    prediction: u32,
    family: u32,
    likelihood: u32,
    t_min: f32,
    c0: f32,
    c1: f32,
    c2: f32,
    _pad: [u32; 2],
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
        ..Params::default()
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

/// An objective's constants as `noise_forward_drawn` reads them, and its table: NCSN's [2, L] rows (σ_i, ln σ_i),
/// rounded from f64 once; a placeholder for the others.
pub struct DrawnLevels {
    family: u32,
    likelihood: u32,
    t_min: f32,
    c: [f32; 3],
    table: Tensor,
}

impl DrawnLevels {
    /// The constants of `objective`; DDPM has none (its levels are `noise_forward`'s table): an error.
    pub fn new(gpu: &Gpu, objective: &Objective) -> Result<DrawnLevels> {
        objective.validate()?;
        let placeholder = || Tensor::zeros(gpu, &[2, 1], DType::F32);
        let continuous = |family, sde_constants: [f64; 3], weighting, t_min: f64| {
            Ok::<_, Error>(DrawnLevels {
                family,
                likelihood: (weighting == Weighting::Likelihood) as u32,
                t_min: t_min as f32,
                c: sde_constants.map(|v| v as f32),
                table: placeholder()?,
            })
        };
        match *objective {
            Objective::Ddpm => Err(Error::shape(
                "noise_forward_drawn",
                "DDPM draws integer timesteps: noise it with noise_forward and the schedule's table",
            )),
            Objective::Ncsn {
                sigma_min,
                sigma_max,
                levels,
            } => {
                let sigmas = ncsn_sigmas(sigma_min, sigma_max, levels)?;
                let logs: Vec<f64> = sigmas.iter().map(|s| s.ln()).collect();
                Ok(DrawnLevels {
                    family: 0,
                    likelihood: 0,
                    t_min: 0.0,
                    c: [0.0; 3],
                    table: upload_table(gpu, &[sigmas, logs])?,
                })
            }
            Objective::Sde {
                sde,
                weighting,
                t_min,
            } => match sde {
                Sde::Ve {
                    sigma_min,
                    sigma_max,
                } => {
                    let c = [sigma_min, (sigma_max / sigma_min).ln(), sigma_min.ln()];
                    continuous(1, c, weighting, t_min)
                }
                Sde::Vp { beta_min, beta_max } => {
                    continuous(2, [beta_min, beta_max - beta_min, 0.0], weighting, t_min)
                }
                Sde::SubVp { beta_min, beta_max } => {
                    continuous(3, [beta_min, beta_max - beta_min, 0.0], weighting, t_min)
                }
            },
            Objective::Edm {
                sigma_data,
                p_mean,
                p_std,
            } => continuous(4, [sigma_data, p_mean, p_std], Weighting::Sigma2, 0.0),
        }
    }
}

/// The noising of the score-based objectives: image n at the level of its draw `draw[n]` (uniform on [0, 1), or
/// standard normal for EDM: `Objective::draw`). x0, eps, x_in, target: [N, …]; draw, cond, weight: [N] f32.
/// Writes x_in = c_in·(α·x₀ + σ·ε), target = k₀·x₀ + k_ε·ε, cond = c_noise and weight = w
/// (`Objective::point`).
#[allow(clippy::too_many_arguments)]
pub fn noise_forward_drawn(
    gpu: &Gpu,
    levels: &DrawnLevels,
    x0: &Tensor,
    eps: &Tensor,
    draw: &Tensor,
    x_in: &Tensor,
    target: &Tensor,
    cond: &Tensor,
    weight: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "noise_forward_drawn";
    check_f32(OP, &[x0, eps, draw, x_in, target, cond, weight])?;
    for other in [eps, x_in, target] {
        same_shape(OP, x0, other)?;
    }
    let n = x0.shape()[0];
    for per_image in [draw, cond, weight] {
        ensure_shape!(
            per_image.shape() == [n],
            OP,
            "draws, conditioning and weights for a batch of {n} must have shape [{n}], got {:?}",
            per_image.shape()
        );
    }
    let params = Params {
        len: x0.len() as u32,
        d: (x0.len() / n) as u32,
        steps: levels.table.shape()[1] as u32,
        family: levels.family,
        likelihood: levels.likelihood,
        t_min: levels.t_min,
        c0: levels.c[0],
        c1: levels.c[1],
        c2: levels.c[2],
        ..Params::default()
    };
    let kernel = gpu.kernel("noise", OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[
            ("x0", x0),
            ("eps", eps),
            ("draw", draw),
            ("table", &levels.table),
            ("x_t", x_in),
            ("target_out", target),
            ("cond", cond),
            ("weight", weight),
        ],
        kernel.grid_for(x0.len()),
    )
}
