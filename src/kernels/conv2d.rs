//! Wrapper of shaders/conv2d.wgsl and shaders/conv2d_subgroup.wgsl: 2-D convolution over NCHW f32 with PyTorch
//! semantics, weight [Co, Ci, k, k], optional bias [Co]. Supported: k = 3 with padding 1 and stride 1 or 2
//! (stride 2 gives ⌈H/2⌉ × ⌈W/2⌉), and k = 1 with padding 0 and stride 1. Reference: src/reference/conv2d.rs.
//!
//! Each function returns the dispatches of one operation, in order: packing passes (a zero-bordered copy of the
//! activation and a re-laid-out copy of the weights, see the shader header) and the main pass. The packed
//! copies live in scratch tensors that the dispatches keep alive; they are written and read anew each time the
//! dispatches are recorded, so the dispatches stay valid when the inputs change. A 1×1 convolution whose planes
//! and channel counts are whole vec4s runs on the matmul kernels instead (one product per image, see
//! `on_matmul`); `forward_saving_input` keeps the forward's packed input for the weight gradient. The 3×3
//! stride-1 forward, backward input and weight gradient run through Winograd's F(4×4, 3×3) where that pays
//! (`winograd_pays`, src/kernels/conv2d_winograd.rs): after the same packing, transforms and one batched product
//! per transform position, whose scratch is the GPU's shared workspace (`Gpu::workspace`); the dispatches of one
//! call must therefore run together, in order, as every caller records them.
//!
//! The `*_concat` / `*_split` forms take the input as the channel concatenation of two tensors [a; b] without
//! materialising it (the U-Net's skip connections): the packing pass copies each part into its channel range.
//!
//! Gradient contract: `backward_weight` and `backward_bias` overwrite their outputs; `backward_input`
//! overwrites `d_x`, or with `accumulate = true` adds to it (`d_x += …`), for inputs that feed several
//! consumers (the U-Net's skip connections); `backward_input_split` has that flag per part.
//!
//! Results are deterministic: every sum is taken in a fixed order (no atomics).

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::tensor::max_tensor_bytes;
use crate::gpu::{grid_1d, DType, Dispatch, Gpu, Tensor};
use crate::kernels::{check_f32, conv2d_winograd as winograd, has_subgroups_of_at_least, matmul};

const SHADER: &str = "conv2d";
const SHADER_SUBGROUP: &str = "conv2d_subgroup";

/// Output channels per invocation of the forward pass, output rows and columns per invocation (both passes).
const CO_BLOCK: usize = 8;
const TILE: usize = 4;
/// Output channels per invocation of the backward-weight pass.
const DW_CO_BLOCK: usize = 16;
/// Backward weight splits its reduction over output tiles into chunks until about this many workgroups run: few
/// on a CPU adapter, where each workgroup has a fixed cost and a handful of threads share them (8 measured
/// fastest on lavapipe: up to 1.6× faster than 32 on 7×7 planes), more on a GPU, which needs many in flight.
fn dw_target_workgroups(gpu: &Gpu) -> usize {
    if gpu.info.device_type == wgpu::DeviceType::Cpu {
        8
    } else {
        64
    }
}

/// Which kernels to record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Path {
    /// The subgroup kernels where the adapter has subgroups of at least 8 invocations, else the portable ones.
    #[default]
    Auto,
    /// Only the portable direct kernels (no subgroups, no Winograd): what WebGPU's baseline and wgpu's GL backend
    /// run.
    Portable,
    /// The 3×3 stride-1 forward, backward input and weight gradient through Winograd's F(4×4, 3×3) whatever the
    /// adapter and the channel counts (see `winograd_pays` for where `Auto` takes it); every other pass as
    /// `Auto`.
    Winograd,
}

impl Path {
    /// The shader holding this path's main passes (same entry points in both).
    fn shader(self, gpu: &Gpu) -> &'static str {
        if self != Path::Portable && has_subgroups_of_at_least(gpu, 8) {
            SHADER_SUBGROUP
        } else {
            SHADER
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    in_c: u32,
    out_c: u32,
    out_h: u32,
    out_w: u32,
    xp_h: u32,
    xp_w4: u32,
    row_blocks: u32,
    col_blocks: u32,
    flags: u32,
    split: u32,
    src_h: u32,
    src_w: u32,
    pad: u32,
    channel_offset: u32,
    taps: u32,
    transpose: u32,
    dy_h: u32,
    dy_w4: u32,
    chunks: u32,
    len: u32,
    _pad: [u32; 3],
}

const FLAG_BIAS: u32 = 1;
const FLAG_ACCUMULATE: u32 = 2;
const FLAG_ACCUMULATE_2: u32 = 4;

/// What a main pass (direct or Winograd) needs to write `outs`, one or two (tensor, accumulate) parts of its
/// output along channels: the flags word of its params (bias, and `+=` per part) and the tensor to bind as the
/// second part. Without a second part that is a 4-element stand-in that is never written (never y itself: WebGPU
/// forbids aliasing writable bindings; 4 elements so that a vec4 view can bind it too).
pub(crate) fn output_parts(
    gpu: &Gpu,
    bias: bool,
    outs: &[(&Tensor, bool)],
) -> Result<(u32, Tensor)> {
    let mut flags = 0;
    if bias {
        flags |= FLAG_BIAS;
    }
    if outs[0].1 {
        flags |= FLAG_ACCUMULATE;
    }
    let second = match outs.get(1) {
        Some(&(t, accumulate)) => {
            if accumulate {
                flags |= FLAG_ACCUMULATE_2;
            }
            t.clone()
        }
        None => scratch(gpu, 4)?,
    };
    Ok((flags, second))
}

/// The kernel variants of the main passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    K3S1,
    K3S2,
    K1,
    /// The backward input of K3S2: a transposed convolution.
    K3S2Transposed,
}

impl Kind {
    fn k(self) -> usize {
        if self == Kind::K1 {
            1
        } else {
            3
        }
    }

    /// Output columns per block of the main pass.
    fn block_cols(self) -> usize {
        if self == Kind::K3S2Transposed {
            2 * TILE
        } else {
            TILE
        }
    }

    fn entry(self) -> &'static str {
        match self {
            Kind::K3S1 => "forward_k3s1",
            Kind::K3S2 => "forward_k3s2",
            Kind::K1 => "forward_k1",
            Kind::K3S2Transposed => "backward_input_k3s2",
        }
    }

    fn pad(self) -> usize {
        self.k() / 2
    }

    fn stride(self) -> usize {
        if self == Kind::K3S2 {
            2
        } else {
            1
        }
    }

    /// (rows, columns) of the packed input plane that a pass with `row_blocks` × `col_blocks` output blocks
    /// reads, including the border and the over-read of the last block.
    fn packed_size(self, row_blocks: usize, col_blocks: usize) -> (usize, usize) {
        let (rows, cols) = (TILE * row_blocks, self.block_cols() * col_blocks);
        match self {
            Kind::K3S1 => (rows + 2, cols + 4),
            Kind::K3S2 => (2 * rows + 1, 2 * cols + 4),
            Kind::K1 => (rows, cols),
            // Blocks of 8 columns read packed d_y rows up to r0/2 + 3 and columns up to c0/2 + 7.
            Kind::K3S2Transposed => (rows / 2 + 2, cols / 2 + 4),
        }
    }
}

/// Whether a pass runs on the matmul kernels instead: a 1×1 convolution of one input (or into one output) is a
/// product per image, W·X[n], with the weight shared across the batch. Where planes and channel counts are whole
/// vec4s the register-blocked matmul kernels take it at 2-4× the rate of forward_k1 on lavapipe, with no packing
/// pass; other shapes (the 7×7 planes) stay on the convolution kernels.
fn on_matmul(g: &Geometry, parts: usize) -> bool {
    g.kind == Kind::K1
        && parts == 1
        && (g.h * g.w).is_multiple_of(4)
        && g.ci.is_multiple_of(4)
        && g.co.is_multiple_of(4)
}

/// Whether the 3×3 stride-1 pass `kind` with `kc` input and `m` output channels runs through Winograd's
/// F(4×4, 3×3) (src/kernels/conv2d_winograd.rs) rather than the direct kernels. `Auto` takes it on CPU adapters
/// where both channel counts are multiples of 4 (the products then run on the register-blocked matmul kernels)
/// and at least 64: its transforms are element-wise passes over the activations and its products have only as
/// many terms as channels, so with few channels they cost what the 4× fewer multiplies save (on lavapipe a
/// `small` training step is 5% faster with the 32-channel convolutions left direct: docs/benchmarks.md). On
/// GPUs the direct kernels stay until Winograd is measured there. On every path the transformed tiles of the
/// pass (36 per tile and channel) and the transformed weights (36 per channel pair) must each fit in one
/// storage binding of the adapter, else the direct kernels run. The weight gradient of a forward pass takes the
/// same route as that forward pass (same `kc`, `m`, same scratch).
fn winograd_pays(path: Path, gpu: &Gpu, g: &Geometry, kc: usize, m: usize) -> bool {
    if g.kind != Kind::K3S1 {
        return false;
    }
    let tiles = g.n * g.h.div_ceil(winograd::TILE) * g.w.div_ceil(winograd::TILE);
    let per_position = (kc.max(m) * tiles.next_multiple_of(4)).max(kc * m);
    let scratch_bytes = winograd::POSITIONS * per_position * 4;
    if scratch_bytes as u64 > max_tensor_bytes(gpu) {
        return false;
    }
    match path {
        Path::Winograd => true,
        Path::Portable => false,
        Path::Auto => {
            gpu.info.device_type == wgpu::DeviceType::Cpu
                && kc.is_multiple_of(4)
                && m.is_multiple_of(4)
                && kc.min(m) >= 64
        }
    }
}

/// Whether the forward of x [N, Ci, H, W] with w [Co, Ci, k, k] and its weight gradient (`backward_input =
/// false`), or its backward input, run through Winograd's F(4×4, 3×3) on `path`. For tests and benchmarks, which
/// hold the two algorithms to different error bounds and report which one ran.
pub fn takes_winograd(
    path: Path,
    gpu: &Gpu,
    x: [usize; 4],
    w: &Tensor,
    stride: usize,
    backward_input: bool,
) -> Result<bool> {
    let g = Geometry::new("conv2d_takes_winograd", x, w, stride)?;
    let (kc, m) = if backward_input {
        (g.co, g.ci)
    } else {
        (g.ci, g.co)
    };
    Ok(winograd_pays(path, gpu, &g, kc, m))
}

/// The matmul kernels matching a conv `path`: the portable path takes no subgroup kernels.
fn matmul_options(path: Path, gpu: &Gpu, accumulate: bool) -> matmul::MatmulOptions {
    let variant = match path {
        Path::Auto | Path::Winograd => matmul::Variant::Auto,
        Path::Portable if gpu.info.device_type == wgpu::DeviceType::Cpu => {
            matmul::Variant::RegisterBlocked
        }
        Path::Portable => matmul::Variant::Tiled,
    };
    matmul::MatmulOptions {
        accumulate,
        variant,
        ..Default::default()
    }
}

/// The geometry of one convolution, read off x [N, Ci, H, W] and w [Co, Ci, k, k].
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    kind: Kind,
}

impl Geometry {
    /// `xs`: the input shape [N, Ci, H, W] (see [`input_shape`]).
    fn new(op: &'static str, xs: [usize; 4], w: &Tensor, stride: usize) -> Result<Geometry> {
        ensure_shape!(
            w.shape().len() == 4 && w.shape()[2] == w.shape()[3],
            op,
            "expected a weight of shape [Co, Ci, k, k], got {:?}",
            w.shape()
        );
        let ws = w.shape();
        ensure_shape!(
            ws[1] == xs[1],
            op,
            "the weight {:?} expects {} input channels but the input {:?} has {}",
            ws,
            ws[1],
            xs,
            xs[1]
        );
        let kind = match (ws[2], stride) {
            (3, 1) => Kind::K3S1,
            (3, 2) => Kind::K3S2,
            (1, 1) => Kind::K1,
            (k, s) => {
                return Err(crate::Error::shape(
                    op,
                    format!(
                        "unsupported kernel size {k} with stride {s}; supported are 3×3 with stride 1 or 2 \
                         (padding 1) and 1×1 with stride 1 (padding 0)"
                    ),
                ))
            }
        };
        let (k, s, pad) = (kind.k(), kind.stride(), kind.pad());
        let (h, wd) = (xs[2], xs[3]);
        Ok(Geometry {
            n: xs[0],
            ci: xs[1],
            co: ws[0],
            h,
            w: wd,
            ho: (h + 2 * pad - k) / s + 1,
            wo: (wd + 2 * pad - k) / s + 1,
            kind,
        })
    }

    /// (rows, columns) of the packed input plane of the forward and of the weight gradient: both walk the output
    /// in 4×4 blocks, so they pack the input alike (which is what lets the weight gradient read the forward's
    /// copy, see [`forward_saving_input`]).
    fn input_packing(&self) -> (usize, usize) {
        self.kind
            .packed_size(self.ho.div_ceil(TILE), self.wo.div_ceil(TILE))
    }

    fn y_shape(&self) -> [usize; 4] {
        [self.n, self.co, self.ho, self.wo]
    }
}

/// The shape [N, ΣC, H, W] of the channel concatenation of `parts` (one part: its own shape).
fn input_shape(op: &'static str, parts: &[&Tensor]) -> Result<[usize; 4]> {
    let mut shape = [0; 4];
    for (i, t) in parts.iter().enumerate() {
        let s = t.shape();
        ensure_shape!(
            s.len() == 4,
            op,
            "expected an input of shape [N, Ci, H, W], got {s:?}"
        );
        if i == 0 {
            shape = [s[0], s[1], s[2], s[3]];
        } else {
            ensure_shape!(
                [s[0], s[2], s[3]] == [shape[0], shape[2], shape[3]],
                op,
                "the parts of a channel concatenation must agree in N, H and W, got {:?} and {s:?}",
                parts[0].shape()
            );
            shape[1] += s[1];
        }
    }
    Ok(shape)
}

fn check_shape(op: &'static str, what: &str, t: &Tensor, want: &[usize]) -> Result<()> {
    ensure_shape!(
        t.shape() == want,
        op,
        "{what} must have shape {want:?}, got {:?}",
        t.shape()
    );
    Ok(())
}

fn scratch(gpu: &Gpu, len: usize) -> Result<Tensor> {
    Tensor::zeros(gpu, &[len], DType::F32)
}

fn elementwise(
    gpu: &Gpu,
    entry: &'static str,
    params: &Params,
    tensors: &[(u32, &Tensor)],
) -> Result<Dispatch> {
    let kernel = gpu.kernel(SHADER, entry)?;
    Dispatch::new(
        gpu,
        &kernel,
        params,
        tensors,
        grid_1d((params.len as usize).div_ceil(256) as u32),
    )
}

/// A zero-bordered, vec4-aligned copy of the channel concatenation of `parts` (each [N, Cᵢ, H, W]) as
/// [N, ΣCᵢ, rows, cols]: packed[r, q] = src[r − pad, q − pad] inside the source plane, else 0. One
/// dispatch per part, each writing its channel range.
/// `into`: the tensor to pack into (a forward's saved input, see [`forward_saving_input`]), else a new scratch
/// tensor.
fn pack_input(
    gpu: &Gpu,
    parts: &[&Tensor],
    pad: usize,
    (rows, cols): (usize, usize),
    into: Option<&Tensor>,
) -> Result<(Tensor, Vec<Dispatch>)> {
    debug_assert_eq!(cols % 4, 0);
    let [n, channels, _, _] = input_shape("pack_input", parts)?;
    let len = n * channels * rows * cols;
    let packed = match into {
        Some(t) => {
            check_saved(t, len)?;
            t.clone()
        }
        None => scratch(gpu, len)?,
    };
    let mut dispatches = Vec::with_capacity(parts.len());
    let mut offset = 0;
    for src in parts {
        let [_, c, src_h, src_w] = [
            src.shape()[0],
            src.shape()[1],
            src.shape()[2],
            src.shape()[3],
        ];
        let params = Params {
            in_c: c as u32,
            out_c: channels as u32,
            channel_offset: offset as u32,
            xp_h: rows as u32,
            xp_w4: (cols / 4) as u32,
            src_h: src_h as u32,
            src_w: src_w as u32,
            pad: pad as u32,
            len: (n * c * rows) as u32,
            ..Params::default()
        };
        let grid = grid_1d((n * c * rows).div_ceil(64) as u32);
        // Rows of whole vec4s (or vec2s) read as such (about twice as fast on lavapipe as value by value).
        let (entry, src_binding) = match src_w % 4 {
            0 if pad <= 1 => ("pack_input_vec4", 12),
            2 if pad <= 1 => ("pack_input_vec2", 14),
            _ => ("pack_input", 1),
        };
        let kernel = gpu.kernel(SHADER, entry)?;
        dispatches.push(Dispatch::new(
            gpu,
            &kernel,
            &params,
            &[(src_binding, src), (10, &packed)],
            grid,
        )?);
        offset += c;
    }
    Ok((packed, dispatches))
}

/// The weights of a main pass with `m` output and `kc` input channels as [⌈m/8⌉, kc, k·k, 8]; `transpose`
/// gives the backward-input weights (w[o, c, u, v] as channel m = c, kc = o, flipped taps).
fn pack_weight(
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
    let d = elementwise(gpu, "pack_weight", &params, &[(1, w), (2, &packed)])?;
    Ok((packed, d))
}

/// The main pass: conv(packed input with kc channels, packed weights) into [n, m, out_h, out_w], which is
/// `outs` concatenated along channels (one or two (tensor, accumulate) pairs).
#[allow(clippy::too_many_arguments)]
fn main_pass(
    gpu: &Gpu,
    path: Path,
    kind: Kind,
    [n, kc, m, out_h, out_w]: [usize; 5],
    xp: &Tensor,
    wp: &Tensor,
    bias: Option<&Tensor>,
    outs: &[(&Tensor, bool)],
) -> Result<Dispatch> {
    let (row_blocks, col_blocks) = (out_h.div_ceil(TILE), out_w.div_ceil(kind.block_cols()));
    let (rows, cols) = kind.packed_size(row_blocks, col_blocks);
    let (flags, second) = output_parts(gpu, bias.is_some(), outs)?;
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
        split: outs[0].0.shape()[1] as u32,
        ..Params::default()
    };
    let kernel = gpu.kernel(path.shader(gpu), kind.entry())?;
    let blocks = n * row_blocks * col_blocks;
    let [x, y, _] = grid_1d(blocks.div_ceil(64) as u32);
    // Without a bias the binding is never read (flag clear); the packed weights stand in for it.
    let bias = bias.unwrap_or(wp);
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[
            (3, xp),
            (15, xp),
            (4, wp),
            (5, bias),
            (6, outs[0].0),
            (11, &second),
        ],
        [x, y, m.div_ceil(CO_BLOCK) as u32],
    )
}

/// y = conv(x, w) + bias: x [N, Ci, H, W], w [Co, Ci, k, k], bias [Co], y [N, Co, Ho, Wo].
pub fn forward(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    forward_via(Path::Auto, gpu, x, w, bias, y, stride)
}

/// [`forward`] on the kernels `path` selects.
pub fn forward_via(
    path: Path,
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    conv_forward("conv2d_forward", path, gpu, &[x], w, bias, y, stride, None)
}

/// y = conv([a; b], w) + bias for the channel concatenation of a [N, Ca, H, W] and b [N, Cb, H, W], without
/// materialising it: w [Co, Ca + Cb, k, k], y [N, Co, Ho, Wo].
pub fn forward_concat(
    gpu: &Gpu,
    [a, b]: [&Tensor; 2],
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    forward_concat_via(Path::Auto, gpu, [a, b], w, bias, y, stride)
}

/// [`forward_concat`] on the kernels `path` selects.
pub fn forward_concat_via(
    path: Path,
    gpu: &Gpu,
    [a, b]: [&Tensor; 2],
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    conv_forward(
        "conv2d_forward_concat",
        path,
        gpu,
        &[a, b],
        w,
        bias,
        y,
        stride,
        None,
    )
}

/// The length of the packed copy of the input that [`forward_saving_input`] writes and
/// [`backward_weight_and_bias_from_saved`] reads back, for x [N, Ci, H, W] and w [Co, Ci, k, k]; `None` where the
/// forward packs nothing (1×1 convolutions on the matmul kernels).
pub fn saved_input_len(x: &[usize], w: &Tensor, stride: usize) -> Result<Option<usize>> {
    const OP: &str = "conv2d_saved_input_len";
    ensure_shape!(
        x.len() == 4,
        OP,
        "expected an input shape [N, Ci, H, W], got {x:?}"
    );
    let g = Geometry::new(OP, [x[0], x[1], x[2], x[3]], w, stride)?;
    if on_matmul(&g, 1) {
        return Ok(None);
    }
    let (rows, cols) = g.input_packing();
    Ok(Some(g.n * g.ci * rows * cols))
}

fn check_saved(t: &Tensor, len: usize) -> Result<()> {
    ensure_shape!(
        t.len() == len && t.dtype() == DType::F32,
        "conv2d_saved_input",
        "the saved input must be {len} f32 values (saved_input_len), got {:?} {:?}",
        t.dtype(),
        t.shape()
    );
    Ok(())
}

/// [`forward`], keeping the packed copy of x it makes in `saved` (of [`saved_input_len`] values, `None` there when
/// that is `None`), so that [`backward_weight_and_bias_from_saved`] need not pack x again. Like an activation,
/// `saved` must stay untouched between the forward and the backward pass.
pub fn forward_saving_input(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    stride: usize,
    saved: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    conv_forward(
        "conv2d_forward",
        Path::Auto,
        gpu,
        &[x],
        w,
        bias,
        y,
        stride,
        saved,
    )
}

#[allow(clippy::too_many_arguments)]
fn conv_forward(
    op: &'static str,
    path: Path,
    gpu: &Gpu,
    parts: &[&Tensor],
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    stride: usize,
    saved: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    check_f32(op, parts)?;
    check_f32(op, &[w, y])?;
    let g = Geometry::new(op, input_shape(op, parts)?, w, stride)?;
    check_shape(op, "the output", y, &g.y_shape())?;
    if let Some(b) = bias {
        check_f32(op, &[b])?;
        check_shape(op, "the bias", b, &[g.co])?;
    }
    if on_matmul(&g, parts.len()) {
        let dims = [g.n, g.ci, g.co, g.h * g.w];
        let opts = matmul_options(path, gpu, false);
        return Ok(vec![matmul::conv1x1(
            gpu, w, parts[0], bias, y, dims, false, opts,
        )?]);
    }
    let kind = g.kind;
    let packed = g.input_packing();
    let (xp, mut out) = pack_input(gpu, parts, kind.pad(), packed, saved)?;
    if winograd_pays(path, gpu, &g, g.ci, g.co) {
        let variant = matmul_options(path, gpu, false).variant;
        let dims = [g.n, g.ci, g.co, g.h, g.w];
        let outs = [(y, false)];
        out.extend(winograd::main_pass(
            gpu, variant, dims, &xp, packed, w, false, bias, &outs,
        )?);
        return Ok(out);
    }
    let (wp, pack_w) = pack_weight(gpu, w, g.co, g.ci, kind.k() * kind.k(), false)?;
    out.push(pack_w);
    let dims = [g.n, g.ci, g.co, g.ho, g.wo];
    out.push(main_pass(
        gpu,
        path,
        kind,
        dims,
        &xp,
        &wp,
        bias,
        &[(y, false)],
    )?);
    Ok(out)
}

/// d_x = ∂L/∂x from d_y [N, Co, Ho, Wo] and w [Co, Ci, k, k]; d_x [N, Ci, H, W] (the forward's x shape).
/// With `accumulate` the result is added to d_x (`d_x += …`), otherwise d_x is overwritten.
pub fn backward_input(
    gpu: &Gpu,
    d_y: &Tensor,
    w: &Tensor,
    d_x: &Tensor,
    stride: usize,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    backward_input_via(Path::Auto, gpu, d_y, w, d_x, stride, accumulate)
}

/// [`backward_input`] on the kernels `path` selects.
pub fn backward_input_via(
    path: Path,
    gpu: &Gpu,
    d_y: &Tensor,
    w: &Tensor,
    d_x: &Tensor,
    stride: usize,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    conv_backward_input(
        "conv2d_backward_input",
        path,
        gpu,
        d_y,
        w,
        &[(d_x, accumulate)],
        stride,
    )
}

/// The backward input of [`forward_concat`], split into its parts: d_a [N, Ca, H, W] and d_b [N, Cb, H, W],
/// each given with its `accumulate` flag (`true`: += , `false`: overwrite).
pub fn backward_input_split(
    gpu: &Gpu,
    d_y: &Tensor,
    w: &Tensor,
    [d_a, d_b]: [(&Tensor, bool); 2],
    stride: usize,
) -> Result<Vec<Dispatch>> {
    backward_input_split_via(Path::Auto, gpu, d_y, w, [d_a, d_b], stride)
}

/// [`backward_input_split`] on the kernels `path` selects.
pub fn backward_input_split_via(
    path: Path,
    gpu: &Gpu,
    d_y: &Tensor,
    w: &Tensor,
    [d_a, d_b]: [(&Tensor, bool); 2],
    stride: usize,
) -> Result<Vec<Dispatch>> {
    conv_backward_input(
        "conv2d_backward_input_split",
        path,
        gpu,
        d_y,
        w,
        &[d_a, d_b],
        stride,
    )
}

fn conv_backward_input(
    op: &'static str,
    path: Path,
    gpu: &Gpu,
    d_y: &Tensor,
    w: &Tensor,
    outs: &[(&Tensor, bool)],
    stride: usize,
) -> Result<Vec<Dispatch>> {
    check_f32(op, &[d_y, w])?;
    let parts: Vec<&Tensor> = outs.iter().map(|o| o.0).collect();
    check_f32(op, &parts)?;
    let g = Geometry::new(op, input_shape(op, &parts)?, w, stride)?;
    check_shape(op, "d_y", d_y, &g.y_shape())?;
    if on_matmul(&g, outs.len()) {
        let dims = [g.n, g.co, g.ci, g.h * g.w];
        let opts = matmul_options(path, gpu, outs[0].1);
        return Ok(vec![matmul::conv1x1(
            gpu, w, d_y, None, outs[0].0, dims, true, opts,
        )?]);
    }
    // Stride 1: d_x is the convolution of d_y with the flipped, transposed weights (the forward pass).
    // Stride 2: a transposed convolution with the same weights and its own kernel.
    let kind = match g.kind {
        Kind::K3S2 => Kind::K3S2Transposed,
        k => k,
    };
    let packed = kind.packed_size(g.h.div_ceil(TILE), g.w.div_ceil(kind.block_cols()));
    let (dyp, mut out) = pack_input(gpu, &[d_y], kind.pad(), packed, None)?;
    if winograd_pays(path, gpu, &g, g.co, g.ci) {
        let variant = matmul_options(path, gpu, false).variant;
        let dims = [g.n, g.co, g.ci, g.h, g.w];
        out.extend(winograd::main_pass(
            gpu, variant, dims, &dyp, packed, w, true, None, outs,
        )?);
        return Ok(out);
    }
    let (wp, pack_w) = pack_weight(gpu, w, g.ci, g.co, kind.k() * kind.k(), true)?;
    out.push(pack_w);
    let dims = [g.n, g.co, g.ci, g.h, g.w];
    out.push(main_pass(gpu, path, kind, dims, &dyp, &wp, None, outs)?);
    Ok(out)
}

/// d_w = ∂L/∂w from the forward's x [N, Ci, H, W] and d_y [N, Co, Ho, Wo]; d_w [Co, Ci, k, k] is overwritten.
pub fn backward_weight(
    gpu: &Gpu,
    x: &Tensor,
    d_y: &Tensor,
    d_w: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    backward_weight_via(Path::Auto, gpu, x, d_y, d_w, stride)
}

/// [`backward_weight`] on the kernels `path` selects.
pub fn backward_weight_via(
    path: Path,
    gpu: &Gpu,
    x: &Tensor,
    d_y: &Tensor,
    d_w: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    conv_backward_weight(
        "conv2d_backward_weight",
        path,
        gpu,
        &[x],
        d_y,
        (d_w, None),
        stride,
        None,
    )
}

/// [`backward_weight`] and [`backward_bias`] in one pass: the bias gradient d_b [Co] (overwritten) is summed from
/// the d_y the weight-gradient kernel already reads, which saves a whole pass over d_y.
pub fn backward_weight_and_bias(
    gpu: &Gpu,
    x: &Tensor,
    d_y: &Tensor,
    d_w: &Tensor,
    d_b: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    backward_weight_and_bias_via(Path::Auto, gpu, x, d_y, d_w, d_b, stride)
}

/// [`backward_weight_and_bias`] on the kernels `path` selects.
pub fn backward_weight_and_bias_via(
    path: Path,
    gpu: &Gpu,
    x: &Tensor,
    d_y: &Tensor,
    d_w: &Tensor,
    d_b: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    conv_backward_weight(
        "conv2d_backward_weight_and_bias",
        path,
        gpu,
        &[x],
        d_y,
        (d_w, Some(d_b)),
        stride,
        None,
    )
}

/// [`backward_weight_and_bias`] reading the packed copy of x that [`forward_saving_input`] kept in `saved`
/// (`None` where [`saved_input_len`] is `None`: then x is read as usual).
pub fn backward_weight_and_bias_from_saved(
    gpu: &Gpu,
    x: &Tensor,
    saved: Option<&Tensor>,
    d_y: &Tensor,
    (d_w, d_b): (&Tensor, &Tensor),
    stride: usize,
) -> Result<Vec<Dispatch>> {
    conv_backward_weight(
        "conv2d_backward_weight_and_bias",
        Path::Auto,
        gpu,
        &[x],
        d_y,
        (d_w, Some(d_b)),
        stride,
        saved,
    )
}

/// The backward weight of [`forward_concat`]: x = [a; b], d_w [Co, Ca + Cb, k, k] is overwritten.
pub fn backward_weight_concat(
    gpu: &Gpu,
    [a, b]: [&Tensor; 2],
    d_y: &Tensor,
    d_w: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    backward_weight_concat_via(Path::Auto, gpu, [a, b], d_y, d_w, stride)
}

/// [`backward_weight_concat`] on the kernels `path` selects.
pub fn backward_weight_concat_via(
    path: Path,
    gpu: &Gpu,
    [a, b]: [&Tensor; 2],
    d_y: &Tensor,
    d_w: &Tensor,
    stride: usize,
) -> Result<Vec<Dispatch>> {
    conv_backward_weight(
        "conv2d_backward_weight_concat",
        path,
        gpu,
        &[a, b],
        d_y,
        (d_w, None),
        stride,
        None,
    )
}

/// `saved`: the forward's packed copy of x ([`forward_saving_input`]), used instead of packing x again.
#[allow(clippy::too_many_arguments)]
fn conv_backward_weight(
    op: &'static str,
    path: Path,
    gpu: &Gpu,
    parts: &[&Tensor],
    d_y: &Tensor,
    (d_w, d_b): (&Tensor, Option<&Tensor>),
    stride: usize,
    saved: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    check_f32(op, parts)?;
    check_f32(op, &[d_y, d_w])?;
    let g = Geometry::new(op, input_shape(op, parts)?, d_w, stride)?;
    check_shape(op, "d_y", d_y, &g.y_shape())?;
    if let Some(d_b) = d_b {
        check_f32(op, &[d_b])?;
        check_shape(op, "d_b", d_b, &[g.co])?;
    }
    if on_matmul(&g, parts.len()) {
        let dims = [g.n, g.ci, g.co, g.h * g.w];
        let opts = matmul_options(path, gpu, false);
        if let Some(d) = matmul::conv1x1_weight_grad(gpu, d_y, parts[0], d_w, dims, opts)? {
            let mut out = vec![d];
            if let Some(d_b) = d_b {
                out.push(backward_bias(gpu, d_y, d_b)?);
            }
            return Ok(out);
        }
    }
    let kind = g.kind;
    let taps = kind.k() * kind.k();
    let (row_blocks, col_blocks) = (g.ho.div_ceil(TILE), g.wo.div_ceil(TILE));
    let packed = g.input_packing();
    let (xp, mut out) = match saved {
        // The forward's packed copy of x: the same layout.
        Some(t) => {
            check_saved(t, g.n * g.ci * packed.0 * packed.1)?;
            (t.clone(), Vec::new())
        }
        None => pack_input(gpu, parts, kind.pad(), packed, None)?,
    };
    if winograd_pays(path, gpu, &g, g.ci, g.co) {
        let variant = matmul_options(path, gpu, false).variant;
        let dims = [g.n, g.ci, g.co, g.h, g.w];
        out.extend(winograd::weight_grad_pass(
            gpu, variant, dims, &xp, packed, d_y, d_w,
        )?);
        if let Some(d_b) = d_b {
            out.push(backward_bias(gpu, d_y, d_b)?);
        }
        return Ok(out);
    }
    // d_y packed without a border: tiles past Ho, Wo read zeros and add nothing.
    let dy_size = (TILE * row_blocks, TILE * col_blocks);
    let (dyp, pack_dy) = pack_input(gpu, &[d_y], 0, dy_size, None)?;
    out.extend(pack_dy);

    // Invocations are input channels; a workgroup of WG covers WG of them. Three sizes only: each is its own
    // compiled pipeline, and compiling is slow on CPU drivers.
    let wg = match g.ci {
        0..=8 => 8,
        9..=32 => 32,
        _ => 64,
    };
    let groups = g.ci.div_ceil(wg) * g.co.div_ceil(DW_CO_BLOCK);
    let tiles = g.n * row_blocks * col_blocks;
    let chunks = dw_target_workgroups(gpu).div_ceil(groups).clamp(1, tiles);
    let params = Params {
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
        flags: if d_b.is_some() { FLAG_BIAS } else { 0 },
        len: (g.co * g.ci * taps) as u32,
        ..Params::default()
    };
    let entry = match kind {
        Kind::K3S1 => "backward_weight_k3s1",
        Kind::K3S2 | Kind::K3S2Transposed => "backward_weight_k3s2",
        Kind::K1 => "backward_weight_k1",
    };
    let kernel = gpu.kernel_with(path.shader(gpu), entry, &[("WG", wg as f64)])?;
    let grid = [
        g.ci.div_ceil(wg) as u32,
        g.co.div_ceil(DW_CO_BLOCK) as u32,
        chunks as u32,
    ];
    // The bias sums go to bias_out (binding 13): d_b itself for one chunk, else partial sums per chunk. Without
    // a bias nothing is written there, but the binding must hold a buffer.
    let bias_sums = scratch(
        gpu,
        if d_b.is_some() && chunks > 1 {
            chunks * g.co
        } else {
            1
        },
    )?;
    let bias_out = match d_b {
        Some(d_b) if chunks == 1 => d_b,
        _ => &bias_sums,
    };
    if chunks == 1 {
        // One chunk: its partial sums are the result.
        let tensors = [(3, &xp), (15, &xp), (7, &dyp), (8, d_w), (13, bias_out)];
        out.push(Dispatch::new(gpu, &kernel, &params, &tensors, grid)?);
    } else {
        let partial = scratch(gpu, chunks * g.co * g.ci * taps)?;
        let tensors = [
            (3, &xp),
            (15, &xp),
            (7, &dyp),
            (8, &partial),
            (13, bias_out),
        ];
        out.push(Dispatch::new(gpu, &kernel, &params, &tensors, grid)?);
        let tensors = [(9, &partial), (6, d_w)];
        out.push(elementwise(
            gpu,
            "backward_weight_reduce",
            &params,
            &tensors,
        )?);
        if let Some(d_b) = d_b {
            let params = Params {
                len: g.co as u32,
                ..params
            };
            let tensors = [(9, &bias_sums), (6, d_b)];
            out.push(elementwise(
                gpu,
                "backward_weight_reduce",
                &params,
                &tensors,
            )?);
        }
    }
    Ok(out)
}

/// d_b[o] = Σ_{n,i,j} d_y[n, o, i, j]: d_y [N, Co, Ho, Wo], d_b [Co] (overwritten).
pub fn backward_bias(gpu: &Gpu, d_y: &Tensor, d_b: &Tensor) -> Result<Dispatch> {
    const OP: &str = "conv2d_backward_bias";
    check_f32(OP, &[d_y, d_b])?;
    ensure_shape!(
        d_y.shape().len() == 4,
        OP,
        "expected d_y of shape [N, Co, Ho, Wo], got {:?}",
        d_y.shape()
    );
    let [n, co, ho, wo] = [
        d_y.shape()[0],
        d_y.shape()[1],
        d_y.shape()[2],
        d_y.shape()[3],
    ];
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
        &[(1, d_y), (6, d_b)],
        grid_1d(co as u32),
    )
}
