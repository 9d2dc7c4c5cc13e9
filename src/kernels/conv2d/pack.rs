//! The packing passes of shaders/conv2d.wgsl: a zero-bordered, vec4-aligned copy of an activation (read by the
//! direct and Winograd main passes and by the weight gradient) and the re-laid-out weights of a direct main pass.

use super::{check_saved, elementwise, scratch, Params};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};

/// Output channels per invocation of the direct forward pass: the packed weights come in blocks of this many.
pub(super) const CO_BLOCK: usize = 8;

/// A zero-bordered, vec4-aligned copy of src [N, C, H, W] as [N, C, rows, cols]: packed[r, q] = src[r − pad,
/// q − pad] inside the source plane, else 0. `into`: the tensor to pack into (a forward's saved input), else a new
/// scratch tensor.
pub(super) fn input(
    gpu: &Gpu,
    src: &Tensor,
    pad: usize,
    (rows, cols): (usize, usize),
    into: Option<&Tensor>,
) -> Result<(Tensor, Vec<Dispatch>)> {
    debug_assert_eq!(cols % 4, 0);
    let &[n, c, src_h, src_w] = src.shape() else {
        unreachable!("the caller checked a 4-D shape")
    };
    let len = n * c * rows * cols;
    let packed = match into {
        Some(t) => {
            check_saved(t, len)?;
            t.clone()
        }
        None => scratch(gpu, len)?,
    };
    let params = Params {
        xp_h: rows as u32,
        xp_w4: (cols / 4) as u32,
        src_h: src_h as u32,
        src_w: src_w as u32,
        pad: pad as u32,
        len: (n * c * rows) as u32,
        ..Params::default()
    };
    // Rows of whole vec4s (or vec2s) read as such (about twice as fast on lavapipe as value by value).
    let (entry, src_binding) = match src_w % 4 {
        0 if pad <= 1 => ("pack_input_vec4", "src4"),
        2 if pad <= 1 => ("pack_input_vec2", "src2"),
        _ => ("pack_input", "src"),
    };
    let kernel = gpu.kernel(super::SHADER, entry)?;
    let d = Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[(src_binding, src), ("packed4", &packed)],
        kernel.grid_for(n * c * rows),
    )?;
    Ok((packed, vec![d]))
}

/// The weights of a direct main pass with `m` output and `kc` input channels as [⌈m/8⌉, kc, taps, 8];
/// `transpose` gives the backward-input weights (w[o, c, u, v] as channel m = c, kc = o, flipped taps).
pub(super) fn weight(
    gpu: &Gpu,
    w: &Tensor,
    m: usize,
    kc: usize,
    taps: usize,
    transpose: bool,
) -> Result<(Tensor, Dispatch)> {
    let packed = scratch(gpu, m.div_ceil(CO_BLOCK) * CO_BLOCK * kc * taps)?;
    let params = Params {
        in_c: kc as u32,
        out_c: m as u32,
        taps: taps as u32,
        transpose: transpose as u32,
        len: packed.len() as u32,
        ..Params::default()
    };
    let d = elementwise(
        gpu,
        "pack_weight",
        &params,
        &[("src", w), ("packed", &packed)],
    )?;
    Ok((packed, d))
}
