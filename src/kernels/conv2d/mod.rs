//! Wrapper of shaders/conv2d.wgsl, conv2d_subgroup.wgsl and conv2d_winograd.wgsl: 2-D convolution over NCHW f32
//! with PyTorch semantics, weight [Co, Ci, k, k], optional bias [Co]. Supported: k = 3 with padding 1 and stride 1
//! or 2 (stride 2 gives ⌈H/2⌉ × ⌈W/2⌉), and k = 1 with padding 0 and stride 1. Reference: src/reference/conv2d.rs.
//!
//! The API is the gradients: [`forward`], [`backward_input`], [`backward_weight`] (with the bias gradient when
//! asked) and [`backward_bias`], each taking [`Conv2dOptions`]. Each returns the dispatches of one operation, in
//! order; which kernels they are is [`select::conv2d`]'s choice (the direct kernels in `direct`, Winograd's in
//! `winograd`, the tiled implicit GEMM in `gemm`, 1×1 products on the matmul kernels), and every packing pass
//! they need is in `pack`. Scratch
//! tensors live as long as the dispatches; Winograd's live in the GPU's shared workspace, so the dispatches of
//! one call must run together and in order, as every caller records them.
//!
//! Gradient contract: `backward_weight` and `backward_bias` overwrite their outputs; `backward_input` overwrites
//! `d_x`, or with [`Conv2dOptions::accumulate`] adds to it (`d_x += …`), for inputs that feed several consumers.
//! Results are deterministic: every sum is taken in a fixed order (no atomics).

mod direct;
mod gemm;
mod pack;
mod winograd;

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::tensor::max_tensor_bytes;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::select::{self, ConvFacts, ConvKernel, ConvPass};
use crate::kernels::{check_f32, matmul};

pub use crate::kernels::select::ConvPath as Path;
pub use direct::backward_bias;

/// The choices of one call beyond the tensors.
#[derive(Clone, Copy, Debug, Default)]
pub struct Conv2dOptions<'a> {
    /// Which kernels may run ([`select::conv2d`] decides within it).
    pub path: Path,
    /// `backward_input` only: `d_x += …` instead of `d_x = …`.
    pub accumulate: bool,
    /// The forward's packed copy of x, of [`saved_input_len`] values: `forward` writes it, `backward_weight` reads
    /// it instead of packing x again. Like an activation, it must stay untouched between the two.
    pub saved_input: Option<&'a Tensor>,
    /// `backward_weight` on the direct kernels or the implicit GEMM: about how many workgroups the split of its sum
    /// over output pixels aims for (None: [`select::conv2d_weight_grad_workgroups`] for the adapter). Every count gives the same sum
    /// in another order; the tests sweep it.
    pub weight_grad_workgroups: Option<usize>,
    /// `forward` only, on the implicit GEMM ([`fuses_epilogue`]): e [N, Co] added to every pixel of image n,
    /// channel o (a residual block's time embedding), in the epilogue instead of a pass of its own.
    pub channel_bias: Option<&'a Tensor>,
    /// `forward` only, on the implicit GEMM: a tensor of y's shape added to y in the epilogue (a residual
    /// connection), y = conv + bias + channel_bias + residual.
    pub residual: Option<&'a Tensor>,
}

const SHADER: &str = "conv2d";

/// Bits of the main passes' flags word (conv2d_common.wgsl, conv2d_winograd.wgsl and conv2d_gemm.wgsl agree on
/// them; the last two are the implicit GEMM forward's alone).
const FLAG_BIAS: u32 = 1;
const FLAG_ACCUMULATE: u32 = 2;
const FLAG_CHANNEL_BIAS: u32 = 4;
const FLAG_RESIDUAL: u32 = 8;

/// The flags word of a main pass (direct or Winograd) that adds a bias and/or accumulates into its output.
fn output_flags(bias: bool, accumulate: bool) -> u32 {
    (if bias { FLAG_BIAS } else { 0 }) | (if accumulate { FLAG_ACCUMULATE } else { 0 })
}

/// The uniform of shaders/conv2d.wgsl (conv2d_common.wgsl's `Params`).
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
    src_h: u32,
    src_w: u32,
    pad: u32,
    taps: u32,
    transpose: u32,
    dy_h: u32,
    dy_w4: u32,
    chunks: u32,
    len: u32,
    _pad: u32,
}

/// The variants of the direct main passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    K3S1,
    K3S2,
    K1,
    /// The backward input of K3S2: a transposed convolution.
    K3S2Transposed,
}

/// Output rows and columns per block of the direct passes (columns: [`Kind::block_cols`]).
const TILE: usize = 4;

impl Kind {
    fn k(self) -> usize {
        if self == Kind::K1 {
            1
        } else {
            3
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

    /// Output columns per block of the main pass.
    fn block_cols(self) -> usize {
        if self == Kind::K3S2Transposed {
            2 * TILE
        } else {
            TILE
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
    fn new(op: &'static str, xs: &[usize], w: &Tensor, stride: usize) -> Result<Geometry> {
        ensure_shape!(
            xs.len() == 4,
            op,
            "expected an input of shape [N, Ci, H, W], got {xs:?}"
        );
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
    /// copy, see [`Conv2dOptions::saved_input`]).
    fn input_packing(&self) -> (usize, usize) {
        self.kind
            .packed_size(self.ho.div_ceil(TILE), self.wo.div_ceil(TILE))
    }

    fn y_shape(&self) -> [usize; 4] {
        [self.n, self.co, self.ho, self.wo]
    }

    /// What [`select::conv2d`] needs to know.
    fn facts(&self, gpu: &Gpu) -> ConvFacts {
        ConvFacts {
            k: self.kind.k(),
            stride: self.kind.stride(),
            ci: self.ci,
            co: self.co,
            plane: self.h * self.w,
            winograd_fits: self.kind == Kind::K3S1
                && winograd::scratch_bytes(self.n, self.ci, self.co, self.h, self.w)
                    <= max_tensor_bytes(gpu),
        }
    }

    fn choose(&self, gpu: &Gpu, path: Path, pass: ConvPass) -> Result<ConvKernel> {
        select::conv2d(path, gpu, pass, &self.facts(gpu))
    }
}

/// The kernels `pass` of the convolution of x [N, Ci, H, W] with w [Co, Ci, k, k] records on `path`: for tests and
/// benchmarks, which hold the algorithms to different error bounds and report which one ran.
pub fn choice(
    gpu: &Gpu,
    path: Path,
    pass: ConvPass,
    x: &[usize],
    w: &Tensor,
    stride: usize,
) -> Result<ConvKernel> {
    Geometry::new("conv2d_choice", x, w, stride)?.choose(gpu, path, pass)
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

/// A pass of shaders/conv2d.wgsl with one invocation per element of `params.len`, 256 per workgroup.
fn elementwise(
    gpu: &Gpu,
    entry: &'static str,
    params: &Params,
    tensors: &[(&str, &Tensor)],
) -> Result<Dispatch> {
    let kernel = gpu.kernel(SHADER, entry)?;
    Dispatch::new(
        gpu,
        &kernel,
        params,
        tensors,
        kernel.grid_for(params.len as usize),
    )
}

/// The length of the packed copy of x that [`forward`] keeps in [`Conv2dOptions::saved_input`] for
/// [`backward_weight`], for x [N, Ci, H, W] and w [Co, Ci, k, k]; `None` where the forward packs nothing (1×1
/// convolutions on the matmul kernels, the implicit GEMM), on the same `path` as the forward.
pub fn saved_input_len(
    gpu: &Gpu,
    path: Path,
    x: &[usize],
    w: &Tensor,
    stride: usize,
) -> Result<Option<usize>> {
    let g = Geometry::new("conv2d_saved_input_len", x, w, stride)?;
    if let ConvKernel::Matmul(_) | ConvKernel::Gemm = g.choose(gpu, path, ConvPass::Forward)? {
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

/// Labels every dispatch of a pass with the choice that produced it (those of products keep their own).
fn labelled(kernel: ConvKernel, dispatches: Vec<Dispatch>) -> Vec<Dispatch> {
    dispatches
        .into_iter()
        .map(|d| d.chosen_if_unlabelled(kernel.name()))
        .collect()
}

/// y = conv(x, w) + bias: x [N, Ci, H, W], w [Co, Ci, k, k], bias [Co], y [N, Co, Ho, Wo] (overwritten).
pub fn forward(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    stride: usize,
    opts: Conv2dOptions,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "conv2d_forward";
    ensure_shape!(
        !opts.accumulate,
        OP,
        "the forward overwrites y: accumulate is for the backward input"
    );
    check_f32(OP, &[x, w, y])?;
    let g = Geometry::new(OP, x.shape(), w, stride)?;
    check_shape(OP, "the output", y, &g.y_shape())?;
    if let Some(b) = bias {
        check_f32(OP, &[b])?;
        check_shape(OP, "the bias", b, &[g.co])?;
    }
    let kernel = g.choose(gpu, opts.path, ConvPass::Forward)?;
    let epilogue = gemm::Epilogue {
        bias,
        channel_bias: opts.channel_bias,
        residual: opts.residual,
    };
    check_epilogue(OP, &g, &epilogue, kernel)?;
    if kernel == ConvKernel::Gemm {
        return Ok(labelled(
            kernel,
            gemm::forward(gpu, &g, x, w, &epilogue, y)?,
        ));
    }
    let matmul_opts = matmul_options(opts.path, gpu, false);
    if let ConvKernel::Matmul(_) = kernel {
        let dims = [g.n, g.ci, g.co, g.h * g.w];
        let d = matmul::conv1x1(gpu, w, x, bias, y, dims, false, matmul_opts)?;
        return Ok(labelled(kernel, vec![d]));
    }
    let packed = g.input_packing();
    let (xp, mut out) = pack::input(gpu, x, g.kind.pad(), packed, opts.saved_input)?;
    let dims = [g.n, g.ci, g.co, g.h, g.w];
    out.extend(match kernel {
        ConvKernel::Winograd => winograd::main_pass(
            gpu,
            matmul_opts.variant,
            dims,
            &xp,
            packed,
            w,
            false,
            bias,
            (y, false),
        )?,
        ConvKernel::Direct { subgroup } => {
            let dims = [g.n, g.ci, g.co, g.ho, g.wo];
            direct::main_pass(gpu, subgroup, g.kind, dims, &xp, w, false, bias, (y, false))?
        }
        ConvKernel::Matmul(_) | ConvKernel::Gemm => unreachable!("returned above"),
    });
    Ok(labelled(kernel, out))
}

/// Whether `forward` of x [N, Ci, H, W] with w [Co, Ci, k, k] on `path` can add a channel bias and a residual
/// in its epilogue ([`Conv2dOptions::channel_bias`], [`Conv2dOptions::residual`]): where it runs on the implicit
/// GEMM. Elsewhere the caller adds them with passes of their own.
pub fn fuses_epilogue(
    gpu: &Gpu,
    path: Path,
    x: &[usize],
    w: &Tensor,
    stride: usize,
) -> Result<bool> {
    Ok(choice(gpu, path, ConvPass::Forward, x, w, stride)? == ConvKernel::Gemm)
}

/// The fused epilogue's tensors: f32 of the right shapes, and only on the implicit GEMM.
fn check_epilogue(
    op: &'static str,
    g: &Geometry,
    e: &gemm::Epilogue,
    kernel: ConvKernel,
) -> Result<()> {
    if e.channel_bias.is_none() && e.residual.is_none() {
        return Ok(());
    }
    ensure_shape!(
        kernel == ConvKernel::Gemm,
        op,
        "a channel bias or residual in the epilogue needs the implicit GEMM, not {} (see conv2d::fuses_epilogue)",
        kernel.name()
    );
    if let Some(t) = e.channel_bias {
        check_f32(op, &[t])?;
        check_shape(op, "the channel bias", t, &[g.n, g.co])?;
    }
    if let Some(t) = e.residual {
        check_f32(op, &[t])?;
        check_shape(op, "the residual", t, &g.y_shape())?;
    }
    Ok(())
}

/// The matmul options of a convolution's products on `path`.
fn matmul_options(path: Path, gpu: &Gpu, accumulate: bool) -> matmul::MatmulOptions {
    matmul::MatmulOptions {
        accumulate,
        variant: select::conv2d_matmul_variant(path, gpu),
        ..Default::default()
    }
}

/// d_x = ∂L/∂x from d_y [N, Co, Ho, Wo] and w [Co, Ci, k, k]; d_x [N, Ci, H, W] (the forward's x shape) is
/// overwritten, or added to with [`Conv2dOptions::accumulate`].
pub fn backward_input(
    gpu: &Gpu,
    d_y: &Tensor,
    w: &Tensor,
    d_x: &Tensor,
    stride: usize,
    opts: Conv2dOptions,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "conv2d_backward_input";
    ensure_shape!(
        opts.saved_input.is_none() && opts.channel_bias.is_none() && opts.residual.is_none(),
        OP,
        "the backward input reads no saved input and has no fused epilogue"
    );
    check_f32(OP, &[d_y, w, d_x])?;
    let g = Geometry::new(OP, d_x.shape(), w, stride)?;
    check_shape(OP, "d_y", d_y, &g.y_shape())?;
    let kernel = g.choose(gpu, opts.path, ConvPass::BackwardInput)?;
    if kernel == ConvKernel::Gemm {
        let d = gemm::backward_input(gpu, &g, d_y, w, d_x, opts.accumulate)?;
        return Ok(labelled(kernel, d));
    }
    let matmul_opts = matmul_options(opts.path, gpu, opts.accumulate);
    if let ConvKernel::Matmul(_) = kernel {
        let dims = [g.n, g.co, g.ci, g.h * g.w];
        let d = matmul::conv1x1(gpu, w, d_y, None, d_x, dims, true, matmul_opts)?;
        return Ok(labelled(kernel, vec![d]));
    }
    // Stride 1: d_x is the convolution of d_y with the flipped, transposed weights (the forward pass).
    // Stride 2: a transposed convolution with the same weights and its own kernel.
    let kind = match g.kind {
        Kind::K3S2 => Kind::K3S2Transposed,
        k => k,
    };
    let packed = kind.packed_size(g.h.div_ceil(TILE), g.w.div_ceil(kind.block_cols()));
    let (dyp, mut out) = pack::input(gpu, d_y, kind.pad(), packed, None)?;
    let dims = [g.n, g.co, g.ci, g.h, g.w];
    let d_x = (d_x, opts.accumulate);
    out.extend(match kernel {
        ConvKernel::Winograd => winograd::main_pass(
            gpu,
            matmul_opts.variant,
            dims,
            &dyp,
            packed,
            w,
            true,
            None,
            d_x,
        )?,
        ConvKernel::Direct { subgroup } => {
            direct::main_pass(gpu, subgroup, kind, dims, &dyp, w, true, None, d_x)?
        }
        ConvKernel::Matmul(_) | ConvKernel::Gemm => unreachable!("returned above"),
    });
    Ok(labelled(kernel, out))
}

/// d_w = ∂L/∂w from the forward's x [N, Ci, H, W] and d_y [N, Co, Ho, Wo]: d_w [Co, Ci, k, k] is overwritten, and
/// so is d_b [Co] = Σ d_y over all but channels where given (summed from the d_y the weight gradient reads
/// anyway, where the kernels can). With [`Conv2dOptions::saved_input`] the forward's packed x is read instead of
/// packing x again.
pub fn backward_weight(
    gpu: &Gpu,
    x: &Tensor,
    d_y: &Tensor,
    d_w: &Tensor,
    d_b: Option<&Tensor>,
    stride: usize,
    opts: Conv2dOptions,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "conv2d_backward_weight";
    ensure_shape!(
        !opts.accumulate,
        OP,
        "the weight gradient overwrites d_w: accumulate is for the backward input"
    );
    ensure_shape!(
        opts.channel_bias.is_none() && opts.residual.is_none(),
        OP,
        "the weight gradient has no fused epilogue: channel_bias and residual are the forward's"
    );
    check_f32(OP, &[x, d_y, d_w])?;
    let g = Geometry::new(OP, x.shape(), d_w, stride)?;
    check_shape(OP, "d_y", d_y, &g.y_shape())?;
    if let Some(d_b) = d_b {
        check_f32(OP, &[d_b])?;
        check_shape(OP, "d_b", d_b, &[g.co])?;
    }
    let kernel = g.choose(gpu, opts.path, ConvPass::BackwardWeight)?;
    let split = opts
        .weight_grad_workgroups
        .unwrap_or_else(|| select::conv2d_weight_grad_workgroups(gpu));
    if kernel == ConvKernel::Gemm {
        // x itself is read: the forward saved no packed copy.
        let d = gemm::weight_grad(gpu, &g, split, x, d_y, d_w, d_b)?;
        return Ok(labelled(kernel, d));
    }
    let matmul_opts = matmul_options(opts.path, gpu, false);
    let mut out = Vec::new();
    if let ConvKernel::Matmul(_) = kernel {
        let dims = [g.n, g.ci, g.co, g.h * g.w];
        out.push(matmul::conv1x1_weight_grad(
            gpu,
            d_y,
            x,
            d_w,
            dims,
            matmul_opts,
        )?);
        out.extend(d_b.map(|d_b| backward_bias(gpu, d_y, d_b)).transpose()?);
        return Ok(labelled(kernel, out));
    }
    let packed = g.input_packing();
    let xp = match opts.saved_input {
        // The forward's packed copy of x: the same layout.
        Some(t) => {
            check_saved(t, g.n * g.ci * packed.0 * packed.1)?;
            t.clone()
        }
        None => {
            let (xp, pack) = pack::input(gpu, x, g.kind.pad(), packed, None)?;
            out.extend(pack);
            xp
        }
    };
    match kernel {
        ConvKernel::Winograd => {
            let dims = [g.n, g.ci, g.co, g.h, g.w];
            out.extend(winograd::weight_grad_pass(
                gpu,
                matmul_opts.variant,
                dims,
                &xp,
                packed,
                d_y,
                d_w,
            )?);
            out.extend(d_b.map(|d_b| backward_bias(gpu, d_y, d_b)).transpose()?);
        }
        ConvKernel::Direct { subgroup } => {
            out.extend(direct::weight_grad_pass(
                gpu, subgroup, split, &g, &xp, packed, d_y, d_w, d_b,
            )?);
        }
        ConvKernel::Matmul(_) | ConvKernel::Gemm => unreachable!("returned above"),
    }
    Ok(labelled(kernel, out))
}
