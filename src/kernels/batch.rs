//! Wrapper of shaders/batch.wgsl: a training batch gathered on the GPU from 8-bit images (the dataset resident on
//! the GPU, or the rows uploaded for a step). Reference: src/reference/batch.rs.

use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::check_f32;

/// 8-bit images on the GPU: `rows` images of `d` bytes each, packed little-endian 4 to a u32 word, with the
/// table of their training values ([`crate::data::unit`]).
#[derive(Clone, Debug)]
pub struct PackedImages {
    pub words: Tensor,
    pub rows: usize,
    pub d: usize,
    unit: Tensor,
}

/// `bytes` packed little-endian 4 to a word, the last word padded with zeros.
pub fn pack(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

impl PackedImages {
    /// Words needed for `rows` images of `d` bytes.
    pub fn words_for(rows: usize, d: usize) -> usize {
        (rows * d).div_ceil(4)
    }

    /// `bytes` ([rows, d]) uploaded whole.
    pub fn upload(gpu: &Gpu, bytes: &[u8], d: usize) -> Result<PackedImages> {
        let rows = bytes.len() / d.max(1);
        Self::check(rows, d)?;
        let words = Tensor::from_u32(gpu, &[Self::words_for(rows, d)], &pack(bytes))?;
        Self::with_words(gpu, words, rows, d)
    }

    /// Room for `rows` images of `d` bytes, to be filled by uploads (zeros until then).
    pub fn zeros(gpu: &Gpu, rows: usize, d: usize) -> Result<PackedImages> {
        Self::check(rows, d)?;
        let words = Tensor::zeros(gpu, &[Self::words_for(rows, d)], DType::U32)?;
        Self::with_words(gpu, words, rows, d)
    }

    fn check(rows: usize, d: usize) -> Result<()> {
        // The shader addresses bytes with u32s.
        if rows == 0 || d == 0 || rows.checked_mul(d).is_none_or(|b| b > u32::MAX as usize) {
            return Err(Error::shape(
                "PackedImages",
                format!(
                    "{rows} images of {d} bytes: need at least one byte and at most 2³² − 1 in all"
                ),
            ));
        }
        Ok(())
    }

    fn with_words(gpu: &Gpu, words: Tensor, rows: usize, d: usize) -> Result<PackedImages> {
        let unit = Tensor::from_f32(gpu, &[256], &crate::data::unit_table())?;
        Ok(PackedImages {
            words,
            rows,
            d,
            unit,
        })
    }
}

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

/// x0[n] = unit(data[index[n]]): the training values of the indexed images. index [N] u32, x0 [N, C, H, W] with
/// C·H·W = data.d.
pub fn gather_rows(
    gpu: &Gpu,
    data: &PackedImages,
    index: &Tensor,
    x0: &Tensor,
) -> Result<Dispatch> {
    gather("gather_rows", gpu, data, index, None, x0)
}

/// As [`gather_rows`], each image mirrored left–right where u[n] < 0.5 (random horizontal flips: data
/// augmentation). u [N] f32 uniforms in [0, 1).
pub fn gather_rows_flip(
    gpu: &Gpu,
    data: &PackedImages,
    index: &Tensor,
    u: &Tensor,
    x0: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "gather_rows_flip";
    check_f32(OP, &[u])?;
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
    data: &PackedImages,
    index: &Tensor,
    flip: Option<&Tensor>,
    x0: &Tensor,
) -> Result<Dispatch> {
    check_f32(op, &[x0])?;
    ensure_shape!(
        x0.shape().len() == 4 && x0.len() / x0.shape()[0] == data.d,
        op,
        "the batch {:?} must be images [N, C, H, W] of the data's {} values each",
        x0.shape(),
        data.d
    );
    ensure_shape!(
        data.words.dtype() == DType::U32
            && data.words.len() == PackedImages::words_for(data.rows, data.d),
        op,
        "the packed data must be {} u32 words, got {:?}",
        PackedImages::words_for(data.rows, data.d),
        data.words.shape()
    );
    let n = x0.shape()[0];
    check_index(op, index, n)?;
    let params = Params {
        len: x0.len() as u32,
        d: data.d as u32,
        rows: data.rows as u32,
        width: x0.shape()[3] as u32,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, op)?;
    let mut bindings = vec![
        ("data", &data.words),
        ("unit", &data.unit),
        ("index", index),
        ("x0", x0),
    ];
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
    ensure_shape!(
        y.dtype() == DType::U32,
        "fill_u32",
        "expected a u32 tensor, got {:?}",
        y.dtype()
    );
    fill_bits(gpu, y, value)
}

/// y[n] = value for every n (f32): a sampling step's real noise level. The kernel copies 32 bits, whatever they
/// mean.
pub fn fill_f32(gpu: &Gpu, y: &Tensor, value: f32) -> Result<Dispatch> {
    ensure_shape!(
        y.dtype() == DType::F32,
        "fill_f32",
        "expected an f32 tensor, got {:?}",
        y.dtype()
    );
    fill_bits(gpu, y, value.to_bits())
}

fn fill_bits(gpu: &Gpu, y: &Tensor, value: u32) -> Result<Dispatch> {
    const OP: &str = "fill_u32";
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
