//! Wrapper of shaders/vlb.wgsl: the terms of the variational bound (src/diffusion/vlb.rs) for rows of
//! (x₀, x_t, model output, t), their weighted sum on the GPU, and [`vlb_run`], the whole bound in one recording.
//! Reference: src/reference/vlb.rs.

use crate::diffusion::samplers::Prediction;
use crate::diffusion::vlb::VlbCoefficients;
use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::noise::noise_forward;
use crate::kernels::{check_f32, same_shape};

const SHADER: &str = "vlb";
/// Invocations per workgroup of every entry point: vlb.wgsl's WG, which this sets.
const WG: usize = 256;
/// The most partial sums of the reduction's first stage.
pub const MAX_PARTIALS: usize = 1024;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    d: u32,
    steps: u32,
    partials: u32,
    decoder_inv_std: f32,
    prior_const: f32,
    prior_scale: f32,
    scale: f32,
}

/// The coefficients as the kernel reads them: a [4, T] table (kl_const, kl_scale, x̂₀-from-x_t, x̂₀-from-o) and
/// three scalars, all rounded to f32 once.
pub struct VlbTable {
    pub table: Tensor,
    pub decoder_inv_std: f32,
    pub prior_const: f32,
    pub prior_scale: f32,
}

impl VlbTable {
    pub fn upload(gpu: &Gpu, c: &VlbCoefficients) -> Result<VlbTable> {
        let rows: Vec<f32> = [&c.kl_const, &c.kl_scale, &c.x0_from_x, &c.x0_from_output]
            .iter()
            .flat_map(|row| row.iter().map(|&v| v as f32))
            .collect();
        Ok(VlbTable {
            table: Tensor::from_f32(gpu, &[4, c.num_steps()], &rows)?,
            decoder_inv_std: (1.0 / c.decoder_std) as f32,
            prior_const: c.prior_const as f32,
            prior_scale: c.prior_scale as f32,
        })
    }

    pub fn num_steps(&self) -> usize {
        self.table.shape()[1]
    }
}

/// terms = weight[row]·(the bound's term of index t[row], nats) per element. x0, x_t, o, terms: [M, …] (the same
/// shape, D elements per row); t: [M] u32; weight: [M] f32.
#[allow(clippy::too_many_arguments)]
pub fn vlb_terms(
    gpu: &Gpu,
    table: &VlbTable,
    x0: &Tensor,
    x_t: &Tensor,
    o: &Tensor,
    t: &Tensor,
    weight: &Tensor,
    terms: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "vlb_terms";
    check_f32(OP, &[x0, x_t, o, weight, terms, &table.table])?;
    for other in [x_t, o, terms] {
        same_shape(OP, x0, other)?;
    }
    let m = x0.shape()[0];
    ensure_shape!(
        t.dtype() == DType::U32 && t.shape() == [m],
        OP,
        "timesteps for {m} rows must be a [{m}] u32 tensor, got a {:?} tensor of shape {:?}",
        t.dtype(),
        t.shape()
    );
    ensure_shape!(
        weight.shape() == [m],
        OP,
        "weights for {m} rows must have shape [{m}], got {:?}",
        weight.shape()
    );
    let params = Params {
        len: x0.len() as u32,
        d: (x0.len() / m) as u32,
        steps: table.num_steps() as u32,
        decoder_inv_std: table.decoder_inv_std,
        prior_const: table.prior_const,
        prior_scale: table.prior_scale,
        ..Params::default()
    };
    let kernel = gpu.kernel_sized(SHADER, OP, WG)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[
            ("x0", x0),
            ("x_t", x_t),
            ("o", o),
            ("t", t),
            ("weight", weight),
            ("table", &table.table),
            ("terms", terms),
        ],
        kernel.grid_for(x0.len()),
    )
}

/// The number of partial sums G for n terms: min(⌈n/256⌉, 1024).
pub fn partials(n: usize) -> usize {
    n.div_ceil(WG).min(MAX_PARTIALS)
}

/// total[0] = scale·Σ terms (any shape; `total` one element). Two dispatches, in order, owning a scratch of
/// [`partials`]`(n)` floats. Deterministic: the same n gives the same summation order.
pub fn weighted_sum(
    gpu: &Gpu,
    terms: &Tensor,
    scale: f32,
    total: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "vlb_sum";
    check_f32(OP, &[terms, total])?;
    ensure_shape!(
        total.len() == 1,
        OP,
        "the total must be a one-element tensor, got shape {:?}",
        total.shape()
    );
    let n = terms.len();
    let params = Params {
        len: n as u32,
        partials: partials(n) as u32,
        scale,
        ..Params::default()
    };
    let partial = Tensor::zeros(gpu, &[partials(n)], DType::F32)?;
    let first = gpu.kernel_sized(SHADER, "vlb_partial", WG)?;
    let last = gpu.kernel_sized(SHADER, "vlb_final", WG)?;
    Ok(vec![
        Dispatch::new(
            gpu,
            &first,
            &params,
            &[("terms_in", terms), ("partial", &partial)],
            [params.partials, 1, 1],
        )?,
        Dispatch::new(
            gpu,
            &last,
            &params,
            &[("partial_in", &partial), ("total", total)],
            [1, 1, 1],
        )?,
    ])
}

/// A model evaluated at each row's own timestep: `model(x_t, t, out)` returns the dispatches that write its output.
pub type IndexedModel<'a> = dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Vec<Dispatch>> + 'a;

/// The tensors of a [`vlb_run`]: x_t, the model output, the weighted terms and the total.
pub struct VlbRun {
    pub dispatches: Vec<Dispatch>,
    pub x_t: Tensor,
    pub output: Tensor,
    pub terms: Tensor,
    pub total: Tensor,
}

/// The whole bound in one recording: x_t = a[t]·x₀ + b[t]·ε (shaders/noise.wgsl with `noise_table` [2, T], e.g.
/// √ᾱ_t and √(1 − ᾱ_t)), the model's output at each row's own t (`model(x_t, t, out)` returns its dispatches), the
/// terms, and total = scale·Σ weight·term (scale = 1/(D·ln 2) and weights summing to 1 over the rows of one data
/// point give its bound in bits per dimension). ε is given: draw it with `random::fill_normal` for a Monte Carlo
/// estimate, or write quadrature nodes.
#[allow(clippy::too_many_arguments)]
pub fn vlb_run(
    gpu: &Gpu,
    table: &VlbTable,
    noise_table: &Tensor,
    x0: &Tensor,
    eps: &Tensor,
    t: &Tensor,
    weight: &Tensor,
    scale: f32,
    model: &IndexedModel,
) -> Result<VlbRun> {
    let shape = x0.shape().to_vec();
    let x_t = Tensor::zeros(gpu, &shape, DType::F32)?;
    let target = Tensor::zeros(gpu, &shape, DType::F32)?;
    let output = Tensor::zeros(gpu, &shape, DType::F32)?;
    let terms = Tensor::zeros(gpu, &shape, DType::F32)?;
    let total = Tensor::zeros(gpu, &[1], DType::F32)?;
    let mut dispatches = vec![noise_forward(
        gpu,
        x0,
        eps,
        t,
        noise_table,
        Prediction::Epsilon,
        &x_t,
        &target,
    )?];
    dispatches.extend(model(&x_t, t, &output)?);
    dispatches.push(vlb_terms(gpu, table, x0, &x_t, &output, t, weight, &terms)?);
    dispatches.extend(weighted_sum(gpu, &terms, scale, &total)?);
    Ok(VlbRun {
        dispatches,
        x_t,
        output,
        terms,
        total,
    })
}
