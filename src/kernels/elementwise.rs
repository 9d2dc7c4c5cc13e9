//! Wrapper of shaders/elementwise.wgsl: SiLU, add, scale, axpy, channel concat/split, nearest ×2 upsampling,
//! the diagonal shift of a plane (zero border or crop), and the per-(n, c) bias add used for time embeddings. Reference: src/reference/elementwise.rs.

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{check_f32, same_shape};

const SHADER: &str = "elementwise";
/// Elements per invocation of the pointwise entry points (PER_THREAD in the shader).
const PER_THREAD: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    alpha: f32,
    a_channels: u32,
    b_channels: u32,
    hw: u32,
    h: u32,
    w: u32,
    shift: i32,
    out_h: u32,
    out_w: u32,
    _pad: u32,
}

fn pointwise(
    gpu: &Gpu,
    entry: &'static str,
    params: Params,
    tensors: &[(&str, &Tensor)],
    elements: usize,
) -> Result<Dispatch> {
    let kernel = gpu.kernel(SHADER, entry)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        tensors,
        kernel.grid_for(elements.div_ceil(PER_THREAD)),
    )
}

/// [`pointwise`] on the `_vec4` form of an entry point where p.len and p.hw (the plane size of the NCHW ops, 0 for
/// the others) are multiples of 4: each tensor moves from its scalar view to its vec4 one (a → a4, b → b4, y → y4,
/// y2 → y24, see the shader header) unless listed in `keep_scalar`, and p.len, p.hw and the element count are
/// counted in vec4s.
fn pointwise_or_vec4(
    gpu: &Gpu,
    (entry, entry_vec4): (&'static str, &'static str),
    mut params: Params,
    tensors: &[(&str, &Tensor)],
    keep_scalar: &[&str],
    elements: usize,
) -> Result<Dispatch> {
    if !(params.len.is_multiple_of(4) && params.hw.is_multiple_of(4)) {
        return pointwise(gpu, entry, params, tensors, elements);
    }
    params.len /= 4;
    params.hw /= 4;
    let tensors: Vec<(&str, &Tensor)> = tensors
        .iter()
        .map(|&(name, t)| {
            (
                if keep_scalar.contains(&name) {
                    name
                } else {
                    vec4_view(name)
                },
                t,
            )
        })
        .collect();
    pointwise(gpu, entry_vec4, params, &tensors, elements / 4)
}

/// The vec4 view of a scalar binding of shaders/elementwise.wgsl.
fn vec4_view(name: &str) -> &'static str {
    match name {
        "a" => "a4",
        "b" => "b4",
        "y" => "y4",
        "y2" => "y24",
        other => unreachable!("elementwise.wgsl has no vec4 view of `{other}`"),
    }
}

fn len_params(t: &Tensor) -> Params {
    Params {
        len: t.len() as u32,
        ..Params::default()
    }
}

/// y = x·σ(x).
pub fn silu_forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "silu_forward";
    check_f32(OP, &[x, y])?;
    same_shape(OP, x, y)?;
    pointwise(gpu, OP, len_params(x), &[("a", x), ("y", y)], x.len())
}

/// d_x = d_y·σ(x)·(1 + x·(1 − σ(x))), from the forward input `x`.
pub fn silu_backward(gpu: &Gpu, x: &Tensor, d_y: &Tensor, d_x: &Tensor) -> Result<Dispatch> {
    const OP: &str = "silu_backward";
    check_f32(OP, &[x, d_y, d_x])?;
    same_shape(OP, x, d_y)?;
    same_shape(OP, x, d_x)?;
    pointwise(
        gpu,
        OP,
        len_params(x),
        &[("a", x), ("b", d_y), ("y", d_x)],
        x.len(),
    )
}

/// y = a + alpha·b. With alpha = 1 this is `add`, whose backward passes d_y to both inputs unchanged.
pub fn add_scaled(gpu: &Gpu, a: &Tensor, b: &Tensor, alpha: f32, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "add_scaled";
    check_f32(OP, &[a, b, y])?;
    same_shape(OP, a, b)?;
    same_shape(OP, a, y)?;
    let params = Params {
        alpha,
        ..len_params(a)
    };
    let tensors = [("a", a), ("b", b), ("y", y)];
    pointwise_or_vec4(gpu, (OP, "add_scaled_vec4"), params, &tensors, &[], a.len())
}

/// y = alpha·x; also the backward of scaling (d_x = alpha·d_y).
pub fn scale(gpu: &Gpu, x: &Tensor, alpha: f32, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "scale";
    check_f32(OP, &[x, y])?;
    same_shape(OP, x, y)?;
    let params = Params {
        alpha,
        ..len_params(x)
    };
    pointwise_or_vec4(
        gpu,
        (OP, "scale_vec4"),
        params,
        &[("a", x), ("y", y)],
        &[],
        x.len(),
    )
}

/// y += alpha·x, in place: how gradients from several consumers of one tensor are summed.
pub fn axpy(gpu: &Gpu, alpha: f32, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "axpy";
    check_f32(OP, &[x, y])?;
    same_shape(OP, x, y)?;
    let params = Params {
        alpha,
        ..len_params(x)
    };
    pointwise_or_vec4(
        gpu,
        (OP, "axpy_vec4"),
        params,
        &[("a", x), ("y", y)],
        &[],
        x.len(),
    )
}

/// (N, C, H·W) of an NCHW tensor.
fn nchw(op: &'static str, t: &Tensor) -> Result<[usize; 4]> {
    ensure_shape!(
        t.shape().len() == 4,
        op,
        "expected an [N, C, H, W] tensor, got shape {:?}",
        t.shape()
    );
    let s = t.shape();
    Ok([s[0], s[1], s[2], s[3]])
}

fn concat_params(op: &'static str, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<Params> {
    check_f32(op, &[a, b, y])?;
    let [n, ca, h, w] = nchw(op, a)?;
    let [nb, cb, hb, wb] = nchw(op, b)?;
    ensure_shape!(
        (nb, hb, wb) == (n, h, w),
        op,
        "a {:?} and b {:?} must agree in N, H and W",
        a.shape(),
        b.shape()
    );
    ensure_shape!(
        y.shape() == [n, ca + cb, h, w],
        op,
        "the concatenation of {:?} and {:?} along C is {:?}, got {:?}",
        a.shape(),
        b.shape(),
        [n, ca + cb, h, w],
        y.shape()
    );
    Ok(Params {
        len: y.len() as u32,
        a_channels: ca as u32,
        b_channels: cb as u32,
        hw: (h * w) as u32,
        ..Params::default()
    })
}

/// y = [a; b] along channels: a [N, Ca, H, W], b [N, Cb, H, W] → y [N, Ca+Cb, H, W].
pub fn concat_channels(gpu: &Gpu, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<Dispatch> {
    let params = concat_params("concat_channels", a, b, y)?;
    pointwise_or_vec4(
        gpu,
        ("concat_channels", "concat_channels_vec4"),
        params,
        &[("a", a), ("b", b), ("y", y)],
        &[],
        y.len(),
    )
}

/// The backward of concat: d_y [N, Ca+Cb, H, W] → d_a [N, Ca, H, W], d_b [N, Cb, H, W].
pub fn split_channels(gpu: &Gpu, d_y: &Tensor, d_a: &Tensor, d_b: &Tensor) -> Result<Dispatch> {
    let params = concat_params("split_channels", d_a, d_b, d_y)?;
    pointwise_or_vec4(
        gpu,
        ("split_channels", "split_channels_vec4"),
        params,
        &[("a", d_y), ("y", d_a), ("y2", d_b)],
        &[],
        d_y.len(),
    )
}

fn upsample_params(op: &'static str, x: &Tensor, y: &Tensor) -> Result<Params> {
    check_f32(op, &[x, y])?;
    let [n, c, h, w] = nchw(op, x)?;
    ensure_shape!(
        y.shape() == [n, c, 2 * h, 2 * w],
        op,
        "upsampling {:?} by 2 gives {:?}, got {:?}",
        x.shape(),
        [n, c, 2 * h, 2 * w],
        y.shape()
    );
    Ok(Params {
        h: h as u32,
        w: w as u32,
        ..Params::default()
    })
}

/// Nearest-neighbour ×2 upsampling: x [N, C, H, W] → y [N, C, 2H, 2W].
pub fn upsample_nearest2x_forward(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "upsample_nearest2x_forward";
    let params = Params {
        len: y.len() as u32,
        ..upsample_params(OP, x, y)?
    };
    pointwise(gpu, OP, params, &[("a", x), ("y", y)], y.len())
}

/// d_x [N, C, H, W] = the sum of each 2×2 block of d_y [N, C, 2H, 2W].
pub fn upsample_nearest2x_backward(gpu: &Gpu, d_y: &Tensor, d_x: &Tensor) -> Result<Dispatch> {
    const OP: &str = "upsample_nearest2x_backward";
    let params = Params {
        len: d_x.len() as u32,
        ..upsample_params(OP, d_x, d_y)?
    };
    pointwise(gpu, OP, params, &[("a", d_y), ("y", d_x)], d_x.len())
}

/// y[n, c, r, q] = x[n, c, r + s, q + s] inside x's plane, else 0: x [N, C, H, W] → y [N, C, Hy, Wy] of any plane
/// size. With s = −1 and a larger y it borders x with zeros at the top and left; with s = 1 and a smaller y it
/// crops the first row and column. Its backward is `shift(d_y, −s, d_x)`.
pub fn shift(gpu: &Gpu, x: &Tensor, s: i32, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "shift";
    check_f32(OP, &[x, y])?;
    let [n, c, h, w] = nchw(OP, x)?;
    let [yn, yc, out_h, out_w] = nchw(OP, y)?;
    ensure_shape!(
        (yn, yc) == (n, c),
        OP,
        "a shift keeps the batch and channels of {:?}, got {:?}",
        x.shape(),
        y.shape()
    );
    let params = Params {
        len: y.len() as u32,
        h: h as u32,
        w: w as u32,
        shift: s,
        out_h: out_h as u32,
        out_w: out_w as u32,
        ..Params::default()
    };
    pointwise(gpu, OP, params, &[("a", x), ("y", y)], y.len())
}

fn channel_bias_params(op: &'static str, x: &Tensor, e: &Tensor) -> Result<Params> {
    check_f32(op, &[x, e])?;
    let [n, c, h, w] = nchw(op, x)?;
    ensure_shape!(
        e.shape() == [n, c],
        op,
        "a bias for {:?} must have shape {:?}, got {:?}",
        x.shape(),
        [n, c],
        e.shape()
    );
    Ok(Params {
        hw: (h * w) as u32,
        ..Params::default()
    })
}

/// y[n,c,h,w] = x[n,c,h,w] + e[n,c]: how a block adds its projected time embedding to a feature map.
pub fn add_channel_bias(gpu: &Gpu, x: &Tensor, e: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "add_channel_bias";
    same_shape(OP, x, y)?;
    let params = Params {
        len: x.len() as u32,
        ..channel_bias_params(OP, x, e)?
    };
    pointwise_or_vec4(
        gpu,
        (OP, "add_channel_bias_vec4"),
        params,
        &[("a", x), ("b", e), ("y", y)],
        &["b"],
        x.len(),
    )
}

/// d_e[n,c] = Σ_hw d_y[n,c,h,w] (d_x is d_y itself).
pub fn channel_bias_backward(gpu: &Gpu, d_y: &Tensor, d_e: &Tensor) -> Result<Dispatch> {
    const OP: &str = "channel_bias_backward";
    let params = Params {
        len: d_e.len() as u32,
        ..channel_bias_params(OP, d_y, d_e)?
    };
    let kernel = gpu.kernel(SHADER, OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("a", d_y), ("y", d_e)],
        kernel.grid_for(d_e.len()),
    )
}

/// y = [x; x] along the first dimension: x [N, …] → y [2N, …] (both halves of a guided batch).
pub fn repeat2(gpu: &Gpu, x: &Tensor, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "repeat2";
    check_f32(OP, &[x, y])?;
    let mut doubled = x.shape().to_vec();
    doubled[0] *= 2;
    ensure_shape!(
        y.shape() == doubled,
        OP,
        "repeating {:?} gives {doubled:?}, got {:?}",
        x.shape(),
        y.shape()
    );
    let params = Params {
        len: y.len() as u32,
        hw: x.len() as u32,
        ..Params::default()
    };
    pointwise(gpu, OP, params, &[("a", x), ("y", y)], y.len())
}

/// Classifier-free guidance: y = (1 + w)·o_c − w·o_u for o = [o_c; o_u] [2N, …] and y [N, …].
pub fn guidance(gpu: &Gpu, o: &Tensor, w: f32, y: &Tensor) -> Result<Dispatch> {
    const OP: &str = "guidance";
    check_f32(OP, &[o, y])?;
    let mut doubled = y.shape().to_vec();
    doubled[0] *= 2;
    ensure_shape!(
        o.shape() == doubled,
        OP,
        "guiding {:?} needs o of shape {doubled:?}, got {:?}",
        y.shape(),
        o.shape()
    );
    let params = Params {
        len: y.len() as u32,
        alpha: w,
        ..Params::default()
    };
    pointwise(gpu, OP, params, &[("a", o), ("y", y)], y.len())
}
