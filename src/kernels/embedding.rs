//! Wrapper of shaders/embedding.wgsl: sinusoidal timestep embedding and class-label embedding (lookup and its
//! gradient). Reference: src/reference/embedding.rs.

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::check_f32;

const SHADER: &str = "embedding";

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    dim: u32,
    half: u32,
    classes: u32,
    rows: u32,
    _pad: [u32; 3],
}

/// freq_i = exp(−ln(max_period)·i/(half − shift)), i < half, in f64 and rounded once to f32 (shift: the
/// `Conventions::freq_shift` of the model, 0 or 1).
pub fn timestep_frequencies(half: usize, max_period: f64, shift: usize) -> Vec<f32> {
    (0..half)
        .map(|i| (-max_period.ln() * i as f64 / (half - shift) as f64).exp() as f32)
        .collect()
}

/// emb [N, D] = [cos(t·freq), sin(t·freq)] (plus a zero column for odd D) for t [N], u32 or f32, with
/// freq_i = exp(−ln(max_period)·i/(⌊D/2⌋ − shift)) (improved-diffusion's layout, cos half first; Ho et al.'s
/// frequencies with shift 1). The frequency table is uploaded once here and owned by the dispatch. D must be at
/// least 2 (4 with a shift), `max_period` positive and finite, and the shift 0 or 1.
pub fn timestep_embedding(
    gpu: &Gpu,
    t: &Tensor,
    (max_period, shift): (f64, usize),
    emb: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "timestep_embedding";
    check_f32(OP, &[emb])?;
    ensure_shape!(
        t.shape().len() == 1,
        OP,
        "timesteps must be a [N] tensor, got shape {:?}",
        t.shape()
    );
    let n = t.len();
    ensure_shape!(
        emb.shape().len() == 2 && emb.shape()[0] == n && emb.shape()[1] >= 2,
        OP,
        "the embedding of {n} timesteps must have shape [{n}, D] with D ≥ 2, got {:?}",
        emb.shape()
    );
    ensure_shape!(
        max_period.is_finite() && max_period > 0.0,
        OP,
        "max_period must be positive and finite, got {max_period}"
    );
    let dim = emb.shape()[1];
    let half = dim / 2;
    ensure_shape!(
        shift <= 1 && half > shift,
        OP,
        "the frequency shift {shift} must be 0 or 1 and below half the embedding width {dim}"
    );
    let freqs = Tensor::from_f32(gpu, &[half], &timestep_frequencies(half, max_period, shift))?;
    let params = Params {
        len: emb.len() as u32,
        dim: dim as u32,
        half: half as u32,
        ..Params::default()
    };
    let (entry, t_binding) = match t.dtype() {
        DType::U32 => ("timestep_embedding_u32", "index_u32"),
        DType::F32 => ("timestep_embedding_f32", "t_f32"),
    };
    let kernel = gpu.kernel(SHADER, entry)?;
    let groups = kernel.grid_for(emb.len());
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[(t_binding, t), ("table", &freqs), ("out", emb)],
        groups,
    )
}

/// Checks a class embedding's shapes (labels [N] u32, table [classes, D], rows [N, D]: y or d_y) into Params.
fn class_shapes(
    op: &'static str,
    labels: &Tensor,
    table: &Tensor,
    rows: &Tensor,
) -> Result<Params> {
    check_f32(op, &[table, rows])?;
    ensure_shape!(
        labels.dtype() == DType::U32 && labels.shape().len() == 1,
        op,
        "labels must be a [N] u32 tensor, got a {:?} tensor of shape {:?}",
        labels.dtype(),
        labels.shape()
    );
    ensure_shape!(
        table.shape().len() == 2,
        op,
        "the table must have shape [classes, D], got {:?}",
        table.shape()
    );
    let (n, classes, dim) = (labels.len(), table.shape()[0], table.shape()[1]);
    ensure_shape!(
        rows.shape() == [n, dim],
        op,
        "{n} labels into a [{classes}, {dim}] table need rows of shape [{n}, {dim}], got {:?}",
        rows.shape()
    );
    Ok(Params {
        dim: dim as u32,
        classes: classes as u32,
        rows: n as u32,
        ..Params::default()
    })
}

/// y[n, :] = table[labels[n], :] for labels [N] u32, table [classes, D], y [N, D]. A label ≥ classes (which the
/// host cannot check once labels live on the GPU) reads nothing and yields a zero row.
pub fn class_embedding_forward(
    gpu: &Gpu,
    labels: &Tensor,
    table: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "class_embedding_forward";
    let params = Params {
        len: y.len() as u32,
        ..class_shapes(OP, labels, table, y)?
    };
    let kernel = gpu.kernel(SHADER, OP)?;
    let groups = kernel.grid_for(y.len());
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("index_u32", labels), ("table", table), ("out", y)],
        groups,
    )
}

/// d_table[c, :] = Σ_{n: labels[n] = c} d_y[n, :], overwritten (no float atomics: deterministic). Labels ≥ classes
/// contribute nothing, matching the zero rows of the forward.
pub fn class_embedding_backward(
    gpu: &Gpu,
    labels: &Tensor,
    d_y: &Tensor,
    d_table: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "class_embedding_backward";
    let params = Params {
        len: d_table.len() as u32,
        ..class_shapes(OP, labels, d_table, d_y)?
    };
    let kernel = gpu.kernel(SHADER, OP)?;
    let groups = kernel.grid_for(d_table.len());
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("index_u32", labels), ("d_y", d_y), ("out", d_table)],
        groups,
    )
}
