//! The tiled implicit-GEMM passes of shaders/conv2d_gemm.wgsl: each pass is one dispatch that gathers its operands
//! straight from x, w and d_y (no packing passes), plus, for a weight gradient split into chunks, the direct
//! kernels' reduction of the chunks' partial sums.

use super::{direct, output_flags, scratch, Geometry, FLAG_CHANNEL_BIAS, FLAG_RESIDUAL};
use crate::error::Result;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

const SHADER: &str = "conv2d_gemm";
/// Rows and columns of C per workgroup (TILE in the shader).
const TILE: usize = 64;
/// K per staged slice (SLICE in the shader).
const SLICE: usize = 8;

/// The uniform of shaders/conv2d_gemm.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    ci: u32,
    co: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    m: u32,
    cols: u32,
    k: u32,
    tiles_n: u32,
    tiles: u32,
    flags: u32,
    slices: u32,
    _pad: [u32; 2],
}

/// The product C [m, cols] with depth k of one pass of `g`.
fn params(g: &Geometry, [m, cols, k]: [usize; 3], flags: u32) -> Params {
    let tiles_n = cols.div_ceil(TILE);
    Params {
        n: g.n as u32,
        ci: g.ci as u32,
        co: g.co as u32,
        h: g.h as u32,
        w: g.w as u32,
        ho: g.ho as u32,
        wo: g.wo as u32,
        m: m as u32,
        cols: cols as u32,
        k: k as u32,
        tiles_n: tiles_n as u32,
        tiles: (m.div_ceil(TILE) * tiles_n) as u32,
        flags,
        ..Params::default()
    }
}

fn kernel_for(
    gpu: &Gpu,
    entry: &'static str,
    g: &Geometry,
) -> Result<std::sync::Arc<crate::gpu::Kernel>> {
    let (k, s) = (g.kind.k() as f64, g.kind.stride() as f64);
    gpu.kernel_with(SHADER, entry, &[("KS", k), ("STRIDE", s)])
}

/// The tiles of C on x and y (`grid_1d`), `layers` on z: the weight gradient's chunks, the backward input's classes.
fn grid(params: &Params, layers: usize) -> [u32; 3] {
    let [x, y, _] = grid_1d(params.tiles);
    [x, y, layers as u32]
}

/// What the forward adds to the product, each optional: bias [Co], channel_bias [N, Co], residual (y's shape).
pub(super) struct Epilogue<'a> {
    pub bias: Option<&'a Tensor>,
    pub channel_bias: Option<&'a Tensor>,
    pub residual: Option<&'a Tensor>,
}

/// y = conv(x, w) + the epilogue's terms, y overwritten: M = Co, N = N·Ho·Wo, K = Ci·k².
pub(super) fn forward(
    gpu: &Gpu,
    g: &Geometry,
    x: &Tensor,
    w: &Tensor,
    e: &Epilogue,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    let taps = g.kind.k() * g.kind.k();
    let flags = output_flags(e.bias.is_some(), false)
        | (if e.channel_bias.is_some() {
            FLAG_CHANNEL_BIAS
        } else {
            0
        })
        | (if e.residual.is_some() {
            FLAG_RESIDUAL
        } else {
            0
        });
    let params = params(g, [g.co, g.n * g.ho * g.wo, g.ci * taps], flags);
    let kernel = kernel_for(gpu, "forward", g)?;
    // A term that is absent is never read (its flag is clear); w stands in for its binding.
    let tensors = [
        ("a_src", w),
        ("b_src", x),
        ("bias", e.bias.unwrap_or(w)),
        ("time", e.channel_bias.unwrap_or(w)),
        ("residual", e.residual.unwrap_or(w)),
        ("out", y),
    ];
    Ok(vec![Dispatch::new(
        gpu,
        &kernel,
        &params,
        &tensors,
        grid(&params, 1),
    )?])
}

/// d_x = ∂L/∂x (or d_x += … with `accumulate`): M = Ci, N = N·H·W, K = Co·k²; at stride 2 one product per parity
/// class of (h, w), grid z, each over the taps that reach its pixels (the shader sizes each class; the grid covers
/// the largest, class (0, 0), of ⌈H/2⌉ × ⌈W/2⌉ pixels and one tap in each direction).
pub(super) fn backward_input(
    gpu: &Gpu,
    g: &Geometry,
    d_y: &Tensor,
    w: &Tensor,
    d_x: &Tensor,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let (k, s) = (g.kind.k(), g.kind.stride());
    let (classes, taps) = if s == 2 { (4, 1) } else { (1, k * k) };
    let cols = g.n * g.h.div_ceil(s) * g.w.div_ceil(s);
    let params = params(
        g,
        [g.ci, cols, g.co * taps],
        output_flags(false, accumulate),
    );
    let kernel = kernel_for(gpu, "backward_input", g)?;
    let tensors = [("a_src", w), ("b_src", d_y), ("out", d_x)];
    Ok(vec![Dispatch::new(
        gpu,
        &kernel,
        &params,
        &tensors,
        grid(&params, classes),
    )?])
}

/// d_w (and d_b where given) from x and d_y: M = Co, N = Ci·k², K = N·Ho·Wo, split into as many chunks of K as
/// make about `split` workgroups (at least one), their partial sums then added in order by one reduction.
pub(super) fn weight_grad(
    gpu: &Gpu,
    g: &Geometry,
    split: usize,
    x: &Tensor,
    d_y: &Tensor,
    d_w: &Tensor,
    d_b: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let taps = g.kind.k() * g.kind.k();
    let mut params = params(
        g,
        [g.co, g.ci * taps, g.n * g.ho * g.wo],
        output_flags(d_b.is_some(), false),
    );
    // Not bounded by K's slices (a chunk past the end adds zeros): the partial sums' memory must not depend on the
    // batch (see direct::weight_grad_chunks). The slices per chunk are read by this pass alone.
    let chunks = split.div_ceil(params.tiles as usize).max(1);
    params.slices = (params.k as usize).div_ceil(SLICE).div_ceil(chunks) as u32;
    let len = g.co * g.ci * taps;
    let (partial, bias_sums) = match chunks {
        1 => (None, None),
        _ => (
            Some(direct::partial_sums(gpu, split, chunks * len)?),
            d_b.map(|_| direct::bias_partial_sums(gpu, chunks, g.co))
                .transpose()?,
        ),
    };
    // Without a bias nothing is written to bias_out, but the binding must hold a buffer of its own.
    let unused = scratch(gpu, 1)?;
    let bias_out = bias_sums.as_ref().or(d_b).unwrap_or(&unused);
    let kernel = kernel_for(gpu, "weight_grad", g)?;
    let tensors = [
        ("a_src", d_y),
        ("b_src", x),
        ("out", partial.as_ref().unwrap_or(d_w)),
        ("bias_out", bias_out),
    ];
    let mut out = vec![Dispatch::new(
        gpu,
        &kernel,
        &params,
        &tensors,
        grid(&params, chunks),
    )?];
    if let Some(partial) = &partial {
        out.push(direct::reduce_chunks(
            gpu,
            chunks,
            (g.co, len),
            (partial, d_w),
            (bias_sums.as_ref().unwrap_or(&unused), d_b),
        )?);
    }
    Ok(out)
}
