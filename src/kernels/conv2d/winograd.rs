//! Wrapper of shaders/conv2d_winograd.wgsl: the main pass of a 3×3, stride-1, padding-1 convolution (forward,
//! or backward input with the flipped, transposed weights) as Winograd's F(4×4, 3×3): weight and input
//! transforms, one batched product per transform position on the matmul kernels, and the output transform; and
//! its weight gradient through the same transforms run backwards (`weight_grad_pass`).
//! src/kernels/select.rs decides when to take it and the caller packs the input first (the same zero-bordered
//! packing as the direct kernels', which the weight gradient can then reuse).
//! Reference: src/reference/conv2d_winograd.rs.

use super::output_flags;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::matmul;

const SHADER: &str = "conv2d_winograd";
/// Output rows and columns per tile.
const TILE: usize = 4;
/// Positions of a transformed 6×6 tile: one matrix product each.
const POSITIONS: usize = 36;

/// The bytes of the largest scratch tensor of a pass over N planes of h × w with ci and co channels: the
/// transformed tiles (36 per tile and channel) or the transformed weights (36 per channel pair), which must each
/// fit one storage binding.
pub(super) fn scratch_bytes(n: usize, ci: usize, co: usize, h: usize, w: usize) -> u64 {
    let per_position = (ci.max(co) * tiles_padded(n, h, w)).max(ci * co);
    (POSITIONS * per_position * 4) as u64
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    in_c: u32,
    out_c: u32,
    h: u32,
    w: u32,
    row_blocks: u32,
    col_blocks: u32,
    tiles_pad: u32,
    xp_h: u32,
    xp_w4: u32,
    flags: u32,
    transpose: u32,
    len: u32,
    _pad: [u32; 3],
}

impl Params {
    /// The geometry of one pass, `[n, kc, m, h, w]` and the packed input planes (see [`main_pass`]).
    fn new([n, kc, m, h, w]: [usize; 5], (xp_h, xp_w): (usize, usize)) -> Params {
        let (row_blocks, col_blocks) = (h.div_ceil(TILE), w.div_ceil(TILE));
        debug_assert_eq!((xp_h, xp_w), (TILE * row_blocks + 2, TILE * col_blocks + 4));
        Params {
            n: n as u32,
            in_c: kc as u32,
            out_c: m as u32,
            h: h as u32,
            w: w as u32,
            row_blocks: row_blocks as u32,
            col_blocks: col_blocks as u32,
            tiles_pad: tiles_padded(n, h, w) as u32,
            xp_h: xp_h as u32,
            xp_w4: (xp_w / 4) as u32,
            ..Params::default()
        }
    }
}

/// The tile count of N planes of h × w, rounded up to a multiple of 4 (the matmul kernels read vec4s of tiles).
fn tiles_padded(n: usize, h: usize, w: usize) -> usize {
    (n * h.div_ceil(TILE) * w.div_ceil(TILE)).next_multiple_of(4)
}

/// A transform pass of `len` invocations.
fn transform(
    gpu: &Gpu,
    params: &Params,
    entry: &'static str,
    len: usize,
    tensors: &[(&str, &Tensor)],
) -> Result<Dispatch> {
    let params = Params {
        len: len as u32,
        ..*params
    };
    let kernel = gpu.kernel(SHADER, entry)?;
    Dispatch::new(gpu, &kernel, &params, tensors, kernel.grid_for(len))
}

/// One pass: `[n, kc, m, h, w]` are the batch, the channels read and written, and the plane (input and output
/// planes are the same size). `xp` is the input packed with a 1-pixel border into planes of `(xp_h, xp_w)` =
/// (4·⌈h/4⌉ + 2, 4·⌈w/4⌉ + 4) (conv2d.rs `pack_input`); `w` is [Co, Ci, 3, 3], read transposed and flipped when
/// `transpose` (then kc = Co, m = Ci). The output `out` is overwritten, or added to with `accumulate`. The caller
/// has checked every shape.
#[allow(clippy::too_many_arguments)]
pub(super) fn main_pass(
    gpu: &Gpu,
    variant: matmul::Variant,
    [n, kc, m, h, w_]: [usize; 5],
    xp: &Tensor,
    (xp_h, xp_w): (usize, usize),
    w: &Tensor,
    transpose: bool,
    bias: Option<&Tensor>,
    (out, accumulate): (&Tensor, bool),
) -> Result<Vec<Dispatch>> {
    let tiles_pad = tiles_padded(n, h, w_);
    let flags = output_flags(bias.is_some(), accumulate);
    let params = Params {
        flags,
        transpose: transpose as u32,
        ..Params::new([n, kc, m, h, w_], (xp_h, xp_w))
    };
    // The transformed weights and tiles live only from this pass's first dispatch to its last: shared workspace.
    let u = gpu.workspace("winograd_u", &[POSITIONS, m, kc])?;
    let v = gpu.workspace("winograd_v", &[POSITIONS, kc, tiles_pad])?;
    let z = gpu.workspace("winograd_z", &[POSITIONS, m, tiles_pad])?;
    let pass = |entry, len, tensors: &[_]| transform(gpu, &params, entry, len, tensors);
    let product = matmul::matmul(
        gpu,
        &u,
        &v,
        &z,
        matmul::MatmulOptions {
            variant,
            ..Default::default()
        },
    )?;
    // Without a bias the binding is never read (flag clear); z stands in.
    // Planes of whole vec4s store each tile row as one vec4 (yv), of even width as two vec2s (yh), others value by
    // value (y).
    let (entry, y_binding) = if w_.is_multiple_of(4) {
        ("output_transform_vec4", "yv")
    } else if w_.is_multiple_of(2) {
        ("output_transform_vec2", "yh")
    } else {
        ("output_transform", "y")
    };
    let quads = tiles_pad / 4;
    Ok(vec![
        pass("weight_transform", m * kc, &[("w", w), ("u", &u)])?,
        pass(
            "input_transform",
            kc * quads,
            &[("xp4", xp), ("xp2", xp), ("v4", &v)],
        )?,
        product,
        pass(
            entry,
            m * quads,
            &[("z4", &z), ("bias", bias.unwrap_or(&z)), (y_binding, out)],
        )?,
    ])
}

/// The weight gradient d_w [M, K, 3, 3] (overwritten) of a forward pass with `[n, kc, m, h, w]` as in
/// [`main_pass`] (not transposed: K = Ci, M = Co), from that pass's packed input `xp` and d_y [N, M, h, w]. The
/// caller has checked every shape.
pub(super) fn weight_grad_pass(
    gpu: &Gpu,
    variant: matmul::Variant,
    [n, kc, m, h, w]: [usize; 5],
    xp: &Tensor,
    xp_size: (usize, usize),
    d_y: &Tensor,
    d_w: &Tensor,
) -> Result<Vec<Dispatch>> {
    let params = Params::new([n, kc, m, h, w], xp_size);
    let tiles_pad = params.tiles_pad as usize;
    let quads = tiles_pad / 4;
    // Shared workspace, as in main_pass (the slots hold the same kinds of tiles: V, dZ beside Z, dU beside U).
    let du = gpu.workspace("winograd_u", &[POSITIONS, m, kc])?;
    let v = gpu.workspace("winograd_v", &[POSITIONS, kc, tiles_pad])?;
    let dz = gpu.workspace("winograd_z", &[POSITIONS, m, tiles_pad])?;
    // dU[ξ] = dZ[ξ]·V[ξ]ᵀ: a sum over the tiles (the padding tiles' dZ is zero).
    let product = matmul::matmul(
        gpu,
        &dz,
        &v,
        &du,
        matmul::MatmulOptions {
            variant,
            trans_b: true,
            ..Default::default()
        },
    )?;
    Ok(vec![
        transform(
            gpu,
            &params,
            "input_transform",
            kc * quads,
            &[("xp4", xp), ("xp2", xp), ("v4", &v)],
        )?,
        // d_y is read as vec4s (dy4) where its rows are whole vec4s, else as f32 (dy); the other view
        // is never read, and where d_y may be too short for a vec4 view dU stands in for it.
        transform(
            gpu,
            &params,
            "grad_output_transform",
            m * quads,
            &[
                ("dy4", if w.is_multiple_of(4) { d_y } else { &du }),
                ("dy", d_y),
                ("v4", &dz),
            ],
        )?,
        product,
        transform(
            gpu,
            &params,
            "weight_grad_transform",
            m * kc,
            &[("du", &du), ("d_w", d_w)],
        )?,
    ])
}
