//! The direct main passes of shaders/conv2d.wgsl and conv2d_subgroup.wgsl (same entry points in both): the
//! register-blocked forward (which with transposed weights is also the stride-1 backward input), the stride-2
//! backward input, the weight gradient, and the bias gradient.

use super::{
    check_f32, check_shape, output_flags, pack, scratch, Geometry, Kind, Params, FLAG_BIAS, SHADER,
    TILE,
};
use crate::error::Result;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

const SHADER_SUBGROUP: &str = "conv2d_subgroup";
/// Output channels per invocation of the weight-gradient pass (DW_CO_BLOCK in conv2d_common.wgsl).
const DW_CO_BLOCK: usize = 16;

fn shader(subgroup: bool) -> &'static str {
    if subgroup {
        SHADER_SUBGROUP
    } else {
        SHADER
    }
}

impl Kind {
    fn entry(self) -> &'static str {
        match self {
            Kind::K3S1 => "forward_k3s1",
            Kind::K3S2 => "forward_k3s2",
            Kind::K1 => "forward_k1",
            Kind::K3S2Transposed => "backward_input_k3s2",
        }
    }

    /// The weight-gradient pass's entry point for this geometry (stride 2 has one, transposed or not).
    fn weight_grad_entry(self) -> &'static str {
        match self {
            Kind::K3S1 => "backward_weight_k3s1",
            Kind::K3S2 | Kind::K3S2Transposed => "backward_weight_k3s2",
            Kind::K1 => "backward_weight_k1",
        }
    }
}

/// The weights packed, then the main pass: conv(packed input `xp` with kc channels, w) into `out` [n, m, out_h,
/// out_w] (`+=` where its flag is set). `transpose`: w is read as the backward input's flipped, transposed weights.
#[allow(clippy::too_many_arguments)]
pub(super) fn main_pass(
    gpu: &Gpu,
    subgroup: bool,
    kind: Kind,
    [n, kc, m, out_h, out_w]: [usize; 5],
    xp: &Tensor,
    w: &Tensor,
    transpose: bool,
    bias: Option<&Tensor>,
    (out, accumulate): (&Tensor, bool),
) -> Result<Vec<Dispatch>> {
    let (wp, pack_w) = pack::weight(gpu, w, m, kc, kind.k() * kind.k(), transpose)?;
    let (row_blocks, col_blocks) = (out_h.div_ceil(TILE), out_w.div_ceil(kind.block_cols()));
    let (rows, cols) = kind.packed_size(row_blocks, col_blocks);
    let flags = output_flags(bias.is_some(), accumulate);
    let params = Params {
        n: n as u32,
        in_c: kc as u32,
        out_c: m as u32,
        out_h: out_h as u32,
        out_w: out_w as u32,
        xp_h: rows as u32,
        xp_w4: (cols / 4) as u32,
        row_blocks: row_blocks as u32,
        col_blocks: col_blocks as u32,
        flags,
        ..Params::default()
    };
    let kernel = gpu.kernel(shader(subgroup), kind.entry())?;
    let blocks = n * row_blocks * col_blocks;
    let [x, y, _] = kernel.grid_for(blocks);
    // Without a bias the binding is never read (flag clear); the packed weights stand in for it.
    let bias = bias.unwrap_or(&wp);
    let tensors = [
        ("xp", xp),
        ("xp2", xp),
        ("wp", &wp),
        ("bias", bias),
        ("y", out),
    ];
    let grid = [x, y, m.div_ceil(pack::CO_BLOCK) as u32];
    Ok(vec![
        pack_w,
        Dispatch::new(gpu, &kernel, &params, &tensors, grid)?,
    ])
}

/// The weight gradient (and the bias gradient where `d_b` is given, summed from the same d_y tiles) from the
/// packed input `xp` of planes `packed`: d_y is packed without a border, the sum over output tiles runs in
/// chunks of partial sums, as many as make about `split` workgroups, which a reduction adds in order.
#[allow(clippy::too_many_arguments)]
pub(super) fn weight_grad_pass(
    gpu: &Gpu,
    subgroup: bool,
    split: usize,
    g: &Geometry,
    xp: &Tensor,
    packed: (usize, usize),
    d_y: &Tensor,
    d_w: &Tensor,
    d_b: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let taps = g.kind.k() * g.kind.k();
    let (row_blocks, col_blocks) = (g.ho.div_ceil(TILE), g.wo.div_ceil(TILE));
    // Tiles past Ho, Wo read zeros and add nothing.
    let dy_size = (TILE * row_blocks, TILE * col_blocks);
    let (dyp, mut out) = pack::input(gpu, d_y, 0, dy_size, None)?;

    let wg = weight_grad_workgroup(g.ci);
    let chunks = weight_grad_chunks(split, g, wg);
    let params = weight_grad_params(g, packed, dy_size, chunks, d_b.is_some());
    let kernel = gpu.kernel_with(
        shader(subgroup),
        g.kind.weight_grad_entry(),
        &[("WG", wg as f64)],
    )?;
    let grid = [
        g.ci.div_ceil(wg) as u32,
        g.co.div_ceil(DW_CO_BLOCK) as u32,
        chunks as u32,
    ];
    // The bias sums go to bias_out: d_b itself for one chunk, else partial sums per chunk. Without a bias nothing
    // is written there, but the binding must hold a buffer. The partial sums are scratch that this pass writes
    // and its reduction reads: workspaces shared by every weight gradient of a step (up to 38 MB each on a GPU's
    // split; a buffer per layer made a `small` step's fixed memory 934 MB).
    let bias_sums = match d_b.is_some() && chunks > 1 {
        true => bias_partial_sums(gpu, chunks, g.co)?,
        false => scratch(gpu, 1)?,
    };
    let bias_out = match d_b {
        Some(d_b) if chunks == 1 => d_b,
        _ => &bias_sums,
    };
    // One chunk: its partial sums are the result.
    let partial = match chunks {
        1 => None,
        _ => Some(partial_sums(gpu, split, chunks * g.co * g.ci * taps)?),
    };
    let tensors = [
        ("xp", xp),
        ("xp2", xp),
        ("dyp", &dyp),
        ("partial", partial.as_ref().unwrap_or(d_w)),
        ("bias_out", bias_out),
    ];
    out.push(Dispatch::new(gpu, &kernel, &params, &tensors, grid)?);
    if let Some(partial) = &partial {
        out.push(reduce_chunks(
            gpu,
            chunks,
            (g.co, params.len as usize),
            (partial, d_w),
            (&bias_sums, d_b),
        )?);
    }
    Ok(out)
}

/// The chunks' partial sums, `len` values in a workspace that every weight gradient of a step shares. It is first
/// sized for the most a split of `split` workgroups of 16 × 64 channels × 9 taps fills, so that the layers do not
/// grow it one after the other (each size a buffer of its own in the record, and in the memory estimate). The
/// implicit GEMM's split stays within it: its chunks × tiles are at most 2·split workgroups (⌈split / tiles⌉
/// chunks), each of a 64 × 64 tile, 4,096 of the 9,216 values per workgroup allowed here.
pub(super) fn partial_sums(gpu: &Gpu, split: usize, len: usize) -> Result<Tensor> {
    const SLOT: &str = "conv2d_weight_grad_partial";
    gpu.workspace(SLOT, &[split * DW_CO_BLOCK * 64 * 9])?;
    gpu.workspace(SLOT, &[len])
}

/// The chunks' bias sums, [chunks, co], in the workspace every weight gradient of a step shares.
pub(super) fn bias_partial_sums(gpu: &Gpu, chunks: usize, co: usize) -> Result<Tensor> {
    gpu.workspace("conv2d_weight_grad_bias_partial", &[chunks * co])
}

/// The weight-gradient pass's workgroup size (invocations are input channels; a workgroup of WG covers WG of
/// them). Three sizes only: each is its own compiled pipeline, and compiling is slow on CPU drivers.
fn weight_grad_workgroup(ci: usize) -> usize {
    match ci {
        0..=8 => 8,
        9..=32 => 32,
        _ => 64,
    }
}

/// The weight-gradient pass's uniforms: the packed planes' sizes and the chunking of the sum over tiles.
fn weight_grad_params(
    g: &Geometry,
    packed: (usize, usize),
    dy_size: (usize, usize),
    chunks: usize,
    bias: bool,
) -> Params {
    let taps = g.kind.k() * g.kind.k();
    let (row_blocks, col_blocks) = (g.ho.div_ceil(TILE), g.wo.div_ceil(TILE));
    Params {
        n: g.n as u32,
        in_c: g.ci as u32,
        out_c: g.co as u32,
        xp_h: packed.0 as u32,
        xp_w4: (packed.1 / 4) as u32,
        row_blocks: row_blocks as u32,
        col_blocks: col_blocks as u32,
        dy_h: dy_size.0 as u32,
        dy_w4: (dy_size.1 / 4) as u32,
        chunks: chunks as u32,
        flags: if bias { FLAG_BIAS } else { 0 },
        len: (g.co * g.ci * taps) as u32,
        ..Params::default()
    }
}

/// How many chunks the sum over output tiles is cut into: about `split` workgroups in all. Not bounded by the
/// number of tiles (a chunk past the last tile adds zeros): the partial sums' memory must not depend on the batch,
/// which the batch plan models as affine in it (a count capped by the tiles grew with the batch up to the cap, and
/// the plan, extrapolating from batches 1 and 2, split a `small` step that fits).
fn weight_grad_chunks(split: usize, g: &Geometry, wg: usize) -> usize {
    let groups = g.ci.div_ceil(wg) * g.co.div_ceil(DW_CO_BLOCK);
    split.div_ceil(groups).max(1)
}

/// Adds the `chunks` slabs of partial sums in order, in one dispatch: `partial` ([chunks, len]) into d_w and,
/// with a bias, `bias_sums` ([chunks, co]) into d_b (the reduction's last Co invocations). The implicit GEMM's
/// weight gradient shares it.
pub(super) fn reduce_chunks(
    gpu: &Gpu,
    chunks: usize,
    (co, len): (usize, usize),
    (partial, d_w): (&Tensor, &Tensor),
    (bias_sums, d_b): (&Tensor, Option<&Tensor>),
) -> Result<Dispatch> {
    let params = &Params {
        out_c: co as u32,
        chunks: chunks as u32,
        flags: if d_b.is_some() { FLAG_BIAS } else { 0 },
        len: len as u32,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, "backward_weight_reduce")?;
    // Without a bias nothing is read or written there, but the bindings must hold buffers (d_b's the 1-value
    // scratch: a buffer written here may not be bound twice).
    let (bias_in, bias_out) = match d_b {
        Some(d_b) => (bias_sums, d_b),
        None => (partial, bias_sums),
    };
    let invocations = params.len as usize + d_b.map_or(0, |_| params.out_c as usize);
    Dispatch::new(
        gpu,
        &kernel,
        params,
        &[
            ("partial_in", partial),
            ("y", d_w),
            ("bias", bias_in),
            ("bias_out", bias_out),
        ],
        kernel.grid_for(invocations),
    )
}

/// d_b[o] = Σ_{n,i,j} d_y[n, o, i, j]: d_y [N, Co, Ho, Wo], d_b [Co] (overwritten).
pub fn backward_bias(gpu: &Gpu, d_y: &Tensor, d_b: &Tensor) -> Result<Dispatch> {
    const OP: &str = "conv2d_backward_bias";
    check_f32(OP, &[d_y, d_b])?;
    let &[n, co, ho, wo] = d_y.shape() else {
        return Err(crate::Error::shape(
            OP,
            format!(
                "expected d_y of shape [N, Co, Ho, Wo], got {:?}",
                d_y.shape()
            ),
        ));
    };
    check_shape(OP, "d_b", d_b, &[co])?;
    let params = Params {
        n: n as u32,
        out_c: co as u32,
        len: (ho * wo) as u32,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, "backward_bias")?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("src", d_y), ("y", d_b)],
        grid_1d(co as u32),
    )
}
