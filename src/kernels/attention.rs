//! Wrapper of shaders/attention.wgsl (and shaders/attention_subgroup.wgsl's products on CPU adapters): multi-head
//! self-attention over the positions of a feature map, reading q, k, v straight from the [N, 3C, H, W] output of a
//! 1×1 convolution and writing [N, C, H, W] for the next one. Reference: src/reference/attention.rs.

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::check_f32;
use crate::kernels::select::{self, AttentionKernel};

const SHADER: &str = "attention";
const SHADER_SUBGROUP: &str = "attention_subgroup";
/// Rows and columns of C per workgroup of attention_matmul (its tiles) and of attention_matmul_subgroup (its
/// blocks).
const TILE: usize = 64;
const SUBGROUP_BLOCK: usize = 32;

/// Which kernels compute the five products: see [`select::attention`].
pub use crate::kernels::select::SubgroupPath as Path;

/// Invocations per score row in the row kernels (softmax and its backward) for L = H·W positions: 8 (8 rows per
/// workgroup of 64) where L ≤ 64, else 64. Each sums a serial share of ⌈k/lanes⌉ terms, then log₂ lanes tree
/// levels combine them: the tests derive their bounds from this order.
pub fn row_lanes(l: usize) -> usize {
    if l <= 64 {
        8
    } else {
        64
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    heads: u32,
    a: Operand,
    b: Operand,
    c: Operand,
    alpha: f32,
    rows: u32,
    len: u32,
    head_dim: u32,
    channels: u32,
    row_lanes: u32,
    pad: [u32; 3],
}

/// Where element (r, s) of one batch entry's matrix lives: base + n·batch + h·head + r·rows + s·cols.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Operand {
    base: u32,
    batch: u32,
    head: u32,
    rows: u32,
    cols: u32,
}

impl Operand {
    /// The same storage seen transposed.
    fn t(self) -> Operand {
        Operand {
            rows: self.cols,
            cols: self.rows,
            ..self
        }
    }
}

/// The sizes of one attention call, checked.
#[derive(Clone, Copy)]
struct Layout {
    n: usize,
    c: usize,
    heads: usize,
    d: usize,
    l: usize,
    /// The kernels of the five products.
    products: AttentionKernel,
}

impl Layout {
    /// q (part 0), k (1) or v (2) of a head as a [d, L] matrix inside qkv [N, 3C, H, W].
    fn qkv(&self, part: usize) -> Operand {
        let (c, d, l) = (self.c as u32, self.d as u32, self.l as u32);
        Operand {
            base: part as u32 * c * l,
            batch: 3 * c * l,
            head: d * l,
            rows: l,
            cols: 1,
        }
    }

    /// A head of out or d_out [N, C, H, W] as a [d, L] matrix.
    fn out(&self) -> Operand {
        let (c, d, l) = (self.c as u32, self.d as u32, self.l as u32);
        Operand {
            base: 0,
            batch: c * l,
            head: d * l,
            rows: l,
            cols: 1,
        }
    }

    /// A head's [L, L] block of a [N, heads, L, L] scratch tensor.
    fn scores(&self) -> Operand {
        let (h, l) = (self.heads as u32, self.l as u32);
        Operand {
            base: 0,
            batch: h * l * l,
            head: l * l,
            rows: l,
            cols: 1,
        }
    }

    fn scratch(&self, gpu: &Gpu) -> Result<Tensor> {
        Tensor::zeros(gpu, &[self.n, self.heads, self.l, self.l], DType::F32)
    }

    fn params(&self) -> Params {
        Params {
            heads: self.heads as u32,
            rows: (self.n * self.heads * self.l) as u32,
            len: self.l as u32,
            head_dim: self.d as u32,
            channels: self.c as u32,
            row_lanes: row_lanes(self.l) as u32,
            ..Params::default()
        }
    }

    /// C = alpha·A·B for every (n, head), A [m, k], B [k, n_cols].
    fn matmul(
        &self,
        gpu: &Gpu,
        (a, a_view): (&Tensor, Operand),
        (b, b_view): (&Tensor, Operand),
        (c, c_view): (&Tensor, Operand),
        [m, n_cols, k]: [usize; 3],
        alpha: f32,
    ) -> Result<Dispatch> {
        let params = Params {
            m: m as u32,
            n: n_cols as u32,
            k: k as u32,
            a: a_view,
            b: b_view,
            c: c_view,
            alpha,
            ..self.params()
        };
        let (kernel, block) = if self.products == AttentionKernel::SubgroupBlocks {
            (
                gpu.kernel(SHADER_SUBGROUP, "attention_matmul_subgroup")?,
                SUBGROUP_BLOCK,
            )
        } else {
            // The shader writes its workgroup memory before reading it (see its header).
            let kernel = gpu.kernel_uninit_workgroup(SHADER, "attention_matmul", &[])?;
            (kernel, TILE)
        };
        let grid = [
            n_cols.div_ceil(block) as u32,
            m.div_ceil(block) as u32,
            (self.n * self.heads) as u32,
        ];
        Ok(
            Dispatch::new(gpu, &kernel, &params, &[("a", a), ("b", b), ("c", c)], grid)?
                .chosen(self.products.name()),
        )
    }

    fn rows(
        &self,
        gpu: &Gpu,
        entry: &'static str,
        tensors: &[(&str, &Tensor)],
    ) -> Result<Dispatch> {
        let kernel = gpu.kernel_uninit_workgroup(SHADER, entry, &[])?;
        Dispatch::new(
            gpu,
            &kernel,
            &self.params(),
            tensors,
            kernel.grid_for(self.n * self.heads * self.l * row_lanes(self.l)),
        )
    }

    fn scale(&self) -> f32 {
        (1.0 / (self.d as f64).sqrt()) as f32
    }
}

/// Checks qkv [N, 3C, H, W], heads, out [N, C, H, W] and lse [N, heads, H·W].
fn layout(
    op: &'static str,
    path: Path,
    gpu: &Gpu,
    qkv: &Tensor,
    heads: usize,
    out: &Tensor,
    lse: &Tensor,
) -> Result<Layout> {
    check_f32(op, &[qkv, out, lse])?;
    let s = qkv.shape();
    ensure_shape!(
        s.len() == 4,
        op,
        "expected qkv as [N, 3C, H, W], got shape {s:?}"
    );
    ensure_shape!(
        s[1].is_multiple_of(3),
        op,
        "qkv's {} channels are not 3·C (q, k, v), shape {s:?}",
        s[1]
    );
    let (n, c, l) = (s[0], s[1] / 3, s[2] * s[3]);
    ensure_shape!(heads >= 1, op, "heads must be at least 1, got 0");
    ensure_shape!(
        c.is_multiple_of(heads),
        op,
        "heads ({heads}) must divide the channels C ({c}) of qkv {s:?}"
    );
    let want = [n, c, s[2], s[3]];
    ensure_shape!(
        out.shape() == want,
        op,
        "out for qkv {s:?} must have shape {want:?}, got {:?}",
        out.shape()
    );
    let want = [n, heads, l];
    ensure_shape!(
        lse.shape() == want,
        op,
        "lse for qkv {s:?} and {heads} heads must have shape {want:?} (N, heads, H·W), got {:?}",
        lse.shape()
    );
    Ok(Layout {
        n,
        c,
        heads,
        d: c / heads,
        l,
        products: select::attention(path, gpu)?,
    })
}

/// out = softmax(qᵀk/√d)·v per head, from qkv [N, 3C, H, W] (channels: q, k, v; head h on h·d .. (h+1)·d with
/// d = C/heads) into out [N, C, H, W]; saves lse [N, heads, H·W], each score row's log-sum-exp, for the backward.
/// Three dispatches, in order; the scores live in a scratch tensor [N, heads, L, L] allocated here (L = H·W).
pub fn attention_forward(
    gpu: &Gpu,
    qkv: &Tensor,
    heads: usize,
    out: &Tensor,
    lse: &Tensor,
) -> Result<Vec<Dispatch>> {
    attention_forward_via(Path::Auto, gpu, qkv, heads, out, lse)
}

/// [`attention_forward`] with the products of `path`.
pub fn attention_forward_via(
    path: Path,
    gpu: &Gpu,
    qkv: &Tensor,
    heads: usize,
    out: &Tensor,
    lse: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "attention_forward";
    let lay = layout(OP, path, gpu, qkv, heads, out, lse)?;
    let (d, l) = (lay.d, lay.l);
    let scores = lay.scratch(gpu)?;
    Ok(vec![
        // S = qᵀ·k/√d
        lay.matmul(
            gpu,
            (qkv, lay.qkv(0).t()),
            (qkv, lay.qkv(1)),
            (&scores, lay.scores()),
            [l, l, d],
            lay.scale(),
        )?,
        lay.rows(
            gpu,
            "attention_softmax",
            &[("scores", &scores), ("lse_out", lse)],
        )?,
        // out = v·Pᵀ
        lay.matmul(
            gpu,
            (qkv, lay.qkv(2)),
            (&scores, lay.scores().t()),
            (out, lay.out()),
            [d, l, l],
            1.0,
        )?,
    ])
}

/// The gradient of [`attention_forward`]: d_qkv [N, 3C, H, W] (overwritten) from the forward's qkv, heads, out and
/// lse, and d_out [N, C, H, W]. The probabilities are recomputed from lse. Six dispatches, in order, with two scratch
/// tensors [N, heads, L, L] allocated here.
pub fn attention_backward(
    gpu: &Gpu,
    qkv: &Tensor,
    heads: usize,
    out: &Tensor,
    lse: &Tensor,
    d_out: &Tensor,
    d_qkv: &Tensor,
) -> Result<Vec<Dispatch>> {
    attention_backward_via(Path::Auto, gpu, qkv, heads, out, lse, d_out, d_qkv)
}

/// [`attention_backward`] with the products of `path` (the forward's path, so that S is recomputed bit for bit).
#[allow(clippy::too_many_arguments)] // one argument per bound tensor reads best at the call site
pub fn attention_backward_via(
    path: Path,
    gpu: &Gpu,
    qkv: &Tensor,
    heads: usize,
    out: &Tensor,
    lse: &Tensor,
    d_out: &Tensor,
    d_qkv: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "attention_backward";
    let lay = layout(OP, path, gpu, qkv, heads, out, lse)?;
    check_f32(OP, &[d_out, d_qkv])?;
    ensure_shape!(
        d_out.shape() == out.shape(),
        OP,
        "d_out must have out's shape {:?}, got {:?}",
        out.shape(),
        d_out.shape()
    );
    ensure_shape!(
        d_qkv.shape() == qkv.shape(),
        OP,
        "d_qkv must have qkv's shape {:?}, got {:?}",
        qkv.shape(),
        d_qkv.shape()
    );
    let (d, l, scale) = (lay.d, lay.l, lay.scale());
    let (p, d_s) = (lay.scratch(gpu)?, lay.scratch(gpu)?);
    let (q, k, v, o, s) = (lay.qkv(0), lay.qkv(1), lay.qkv(2), lay.out(), lay.scores());
    Ok(vec![
        // S = qᵀ·k/√d, exactly as in the forward.
        lay.matmul(gpu, (qkv, q.t()), (qkv, k), (&p, s), [l, l, d], scale)?,
        // d_P = d_outᵀ·v
        lay.matmul(gpu, (d_out, o.t()), (qkv, v), (&d_s, s), [l, l, d], 1.0)?,
        // S → P, d_P → d_S = P ⊙ (d_P − D)
        lay.rows(
            gpu,
            "attention_softmax_backward",
            &[
                ("scores", &p),
                ("lse", lse),
                ("d_scores", &d_s),
                ("d_out", d_out),
                ("out", out),
            ],
        )?,
        // d_v = d_out·P
        lay.matmul(gpu, (d_out, o), (&p, s), (d_qkv, v), [d, l, l], 1.0)?,
        // d_q = k·d_Sᵀ/√d
        lay.matmul(gpu, (qkv, k), (&d_s, s.t()), (d_qkv, q), [d, l, l], scale)?,
        // d_k = q·d_S/√d
        lay.matmul(gpu, (qkv, q), (&d_s, s), (d_qkv, k), [d, l, l], scale)?,
    ])
}
