//! Wrapper of shaders/batch.wgsl: a training batch gathered on the GPU from a dataset resident on the GPU.
//! Reference: src/reference/batch.rs.

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::check_f32;

const SHADER: &str = "batch";

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    d: u32,
    rows: u32,
    null_class: u32,
    p_uncond: f32,
    value: u32,
    width: u32,
    _pad: u32,
}

fn check_index(op: &'static str, index: &Tensor, n: usize) -> Result<()> {
    ensure_shape!(
        index.dtype() == DType::U32,
        op,
        "the index must be a u32 tensor, got {:?}",
        index.dtype()
    );
    ensure_shape!(
        index.shape() == [n],
        op,
        "the index must have shape [{n}], got {:?}",
        index.shape()
    );
    Ok(())
}

/// x0[n] = data[index[n]]: data [M, …], index [N] u32, x0 [N, …] (same trailing shape).
pub fn gather_rows(gpu: &Gpu, data: &Tensor, index: &Tensor, x0: &Tensor) -> Result<Dispatch> {
    gather("gather_rows", gpu, data, index, None, x0)
}

/// As [`gather_rows`], each image mirrored left–right where u[n] < 0.5 (random horizontal flips: data
/// augmentation). data [M, C, H, W], index [N] u32, u [N] f32 uniforms in [0, 1), x0 [N, C, H, W].
pub fn gather_rows_flip(
    gpu: &Gpu,
    data: &Tensor,
    index: &Tensor,
    u: &Tensor,
    x0: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "gather_rows_flip";
    check_f32(OP, &[u])?;
    ensure_shape!(
        data.shape().len() == 4,
        OP,
        "data {:?} must be images [M, C, H, W]",
        data.shape()
    );
    let n = x0.shape()[0];
    ensure_shape!(
        u.shape() == [n],
        OP,
        "the flip draws must have shape [{n}], got {:?}",
        u.shape()
    );
    gather(OP, gpu, data, index, Some(u), x0)
}

/// The checks, parameters and dispatch of both gathers (`flip`: the per-row uniforms of gather_rows_flip).
fn gather(
    op: &'static str,
    gpu: &Gpu,
    data: &Tensor,
    index: &Tensor,
    flip: Option<&Tensor>,
    x0: &Tensor,
) -> Result<Dispatch> {
    check_f32(op, &[data, x0])?;
    ensure_shape!(
        data.shape().len() >= 2 && data.shape()[1..] == x0.shape()[1..],
        op,
        "data {:?} and batch {:?} must agree past the first dimension",
        data.shape(),
        x0.shape()
    );
    let n = x0.shape()[0];
    check_index(op, index, n)?;
    let params = Params {
        len: x0.len() as u32,
        d: (x0.len() / n) as u32,
        rows: data.shape()[0] as u32,
        width: data.shape()[data.shape().len() - 1] as u32,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, op)?;
    let mut bindings = vec![("data", data), ("index", index), ("x0", x0)];
    if let Some(u) = flip {
        bindings.push(("u", u));
    }
    Dispatch::new(gpu, &kernel, &params, &bindings, kernel.grid_for(x0.len()))
}

/// label[n] = labels[index[n]], replaced by `null_class` where u[n] < p_uncond (classifier-free guidance
/// training). labels [M] u32, index [N] u32, u [N] f32 uniforms in [0, 1), label [N] u32.
pub fn gather_labels(
    gpu: &Gpu,
    labels: &Tensor,
    index: &Tensor,
    u: &Tensor,
    p_uncond: f32,
    null_class: u32,
    label: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "gather_labels";
    let n = label.shape()[0];
    ensure_shape!(
        labels.dtype() == DType::U32 && label.dtype() == DType::U32 && labels.shape().len() == 1,
        OP,
        "labels [M] and label [N] must be u32 vectors"
    );
    check_index(OP, index, n)?;
    check_f32(OP, &[u])?;
    ensure_shape!(
        u.shape() == [n],
        OP,
        "the uniforms must have shape [{n}], got {:?}",
        u.shape()
    );
    ensure_shape!(
        (0.0..=1.0).contains(&p_uncond),
        OP,
        "p_uncond {p_uncond} must lie in [0, 1]"
    );
    let params = Params {
        len: n as u32,
        rows: labels.len() as u32,
        null_class,
        p_uncond,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[
            ("index", index),
            ("labels", labels),
            ("u", u),
            ("label", label),
        ],
        [kernel.workgroups_for(n), 1, 1],
    )
}

/// y[n] = value for every n (u32): a sampling step's timestep, or a batch's class label.
pub fn fill_u32(gpu: &Gpu, y: &Tensor, value: u32) -> Result<Dispatch> {
    const OP: &str = "fill_u32";
    ensure_shape!(
        y.dtype() == DType::U32,
        OP,
        "expected a u32 tensor, got {:?}",
        y.dtype()
    );
    let params = Params {
        len: y.len() as u32,
        value,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("label", y)],
        [kernel.workgroups_for(y.len()), 1, 1],
    )
}
