//! Wrapper of shaders/conv2d_winograd.wgsl: the main pass of a 3×3, stride-1, padding-1 convolution (forward,
//! or backward input with the flipped, transposed weights) as Winograd's F(4×4, 3×3): weight and input
//! transforms, one batched product per transform position on the matmul kernels, and the output transform.
//! src/kernels/conv2d.rs decides when to take it ([`conv2d::Path`](super::conv2d::Path)) and packs the input
//! first (the same zero-bordered packing as its direct kernels, which the weight gradient can then reuse).
//! Reference: src/reference/conv2d_winograd.rs.

use crate::error::Result;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};
use crate::kernels::{conv2d, matmul};

const SHADER: &str = "conv2d_winograd";
/// Output rows and columns per tile.
pub(crate) const TILE: usize = 4;
/// Positions of a transformed 6×6 tile: one matrix product each.
pub(crate) const POSITIONS: usize = 36;

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
    split: u32,
    transpose: u32,
    len: u32,
    _pad: [u32; 2],
}

/// One pass: `[n, kc, m, h, w]` are the batch, the channels read and written, and the plane (input and output
/// planes are the same size). `xp` is the input packed with a 1-pixel border into planes of `(xp_h, xp_w)` =
/// (4·⌈h/4⌉ + 2, 4·⌈w/4⌉ + 4) (conv2d.rs `pack_input`); `w` is [Co, Ci, 3, 3], read transposed and flipped when
/// `transpose` (then kc = Co, m = Ci). The output is `outs` concatenated along channels, each with its
/// accumulate flag. The caller has checked every shape.
#[allow(clippy::too_many_arguments)]
pub(crate) fn main_pass(
    gpu: &Gpu,
    variant: matmul::Variant,
    [n, kc, m, h, w_]: [usize; 5],
    xp: &Tensor,
    (xp_h, xp_w): (usize, usize),
    w: &Tensor,
    transpose: bool,
    bias: Option<&Tensor>,
    outs: &[(&Tensor, bool)],
) -> Result<Vec<Dispatch>> {
    let (row_blocks, col_blocks) = (h.div_ceil(TILE), w_.div_ceil(TILE));
    debug_assert_eq!((xp_h, xp_w), (TILE * row_blocks + 2, TILE * col_blocks + 4));
    let tiles = n * row_blocks * col_blocks;
    let tiles_pad = tiles.next_multiple_of(4);
    // The same flags word as the direct kernels' (conv2d.wgsl and conv2d_winograd.wgsl agree on its bits).
    let (flags, second) = conv2d::output_parts(gpu, bias.is_some(), outs)?;
    let params = Params {
        n: n as u32,
        in_c: kc as u32,
        out_c: m as u32,
        h: h as u32,
        w: w_ as u32,
        row_blocks: row_blocks as u32,
        col_blocks: col_blocks as u32,
        tiles_pad: tiles_pad as u32,
        xp_h: xp_h as u32,
        xp_w4: (xp_w / 4) as u32,
        flags,
        split: outs[0].0.shape()[1] as u32,
        transpose: transpose as u32,
        len: 0,
        _pad: [0; 2],
    };
    // The transformed weights and tiles live only from this pass's first dispatch to its last: shared workspace.
    let u = gpu.workspace("winograd_u", &[POSITIONS, m, kc])?;
    let v = gpu.workspace("winograd_v", &[POSITIONS, kc, tiles_pad])?;
    let z = gpu.workspace("winograd_z", &[POSITIONS, m, tiles_pad])?;
    let pass = |entry: &'static str, len: usize, tensors: &[(u32, &Tensor)]| -> Result<Dispatch> {
        let params = Params {
            len: len as u32,
            ..params
        };
        let kernel = gpu.kernel(SHADER, entry)?;
        Dispatch::new(
            gpu,
            &kernel,
            &params,
            tensors,
            grid_1d(len.div_ceil(64) as u32),
        )
    };
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
    // Planes of whole vec4s store each tile row as one vec4 (bindings 10, 11), others value by value (8, 9).
    let (entry, y_binding) = if w_.is_multiple_of(4) {
        ("output_transform_vec4", 10)
    } else {
        ("output_transform", 8)
    };
    let quads = tiles_pad / 4;
    Ok(vec![
        pass("weight_transform", m * kc, &[(1, w), (2, &u)])?,
        pass("input_transform", kc * quads, &[(3, xp), (4, xp), (5, &v)])?,
        product,
        pass(
            entry,
            m * quads,
            &[
                (6, &z),
                (7, bias.unwrap_or(&z)),
                (y_binding, outs[0].0),
                (y_binding + 1, &second),
            ],
        )?,
    ])
}
