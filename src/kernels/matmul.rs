//! Wrapper of shaders/matmul.wgsl: the batched product C = op(A)·op(B) (op = identity or transpose), and `linear`
//! (PyTorch layout: weight [out, in], y = x·wᵀ + b) with its three gradients. Reference: src/reference/matmul.rs.
//!
//! Two kernel families compute the product; which one runs for a shape on an adapter is [`select::matmul`]'s
//! choice:
//! - register-blocked (`matmul_nn/nt/tn/tt`): for CPU adapters (lavapipe, llvmpipe), where per-lane loads dominate.
//!   Needs K and N, and M when A is transposed, to be multiples of 4. Where the adapter has subgroups of at least
//!   8 invocations (lavapipe's Vulkan driver, not GL), the same kernels from shaders/matmul_subgroup.wgsl share
//!   the A operand across lanes and run about 1.7 times faster.
//! - tiled (`matmul_tiled`): workgroup-memory tiling for real GPUs, and the fallback for any other shape.
//!
//! Gradient contract: `linear_backward_*` overwrite their outputs. [`MatmulOptions::accumulate`] turns a product
//! into `C += op(A)·op(B)` (each element of C is read once and written once by one invocation, so this is safe);
//! use it to sum a gradient from several consumers without a separate [`axpy`](crate::kernels::elementwise::axpy).

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};
use crate::kernels::check_f32;
use crate::kernels::select::{self, MatmulKernel};

const SHADER: &str = "matmul";
/// The register-blocked kernels with the A operand broadcast across a subgroup.
const SUBGROUP_SHADER: &str = "matmul_subgroup";

/// Rows × columns of C owned by one workgroup of the register-blocked kernels (32 rows; 8 lanes × 16 columns).
const BLOCKED_TILE: (usize, usize) = (32, 128);
/// Rows × columns of C owned by one workgroup of the tiled kernel.
const TILED_TILE: (usize, usize) = (64, 64);
/// Columns of d_y summed by one workgroup of `bias_grad`.
const BIAS_COLUMNS: usize = 64;

/// Which kernel family computes a product: see [`select::matmul`].
pub use crate::kernels::select::MatmulVariant as Variant;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatmulOptions {
    /// A is stored transposed: [K, M] (or [batch, K, M]).
    pub trans_a: bool,
    /// B is stored transposed: [N, K] (or [batch, N, K]).
    pub trans_b: bool,
    /// C += op(A)·op(B) instead of C = op(A)·op(B).
    pub accumulate: bool,
    pub variant: Variant,
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    a_batch_stride: u32,
    b_batch_stride: u32,
    c_batch_stride: u32,
    trans_a: u32,
    trans_b: u32,
    _pad: [u32; 3],
}

/// (batch, rows, cols) of a [rows, cols] or [batch, rows, cols] tensor.
fn matrix_dims(op: &'static str, name: &str, t: &Tensor) -> Result<(usize, usize, usize)> {
    match *t.shape() {
        [r, c] => Ok((1, r, c)),
        [b, r, c] => Ok((b, r, c)),
        _ => Err(crate::Error::shape(
            op,
            format!("{name} must be a matrix [rows, cols] or a batch [batch, rows, cols], got shape {:?}", t.shape()),
        )),
    }
}

/// The output must not share a buffer with an input: a dispatch cannot bind one buffer as both read-only and
/// read-write storage.
fn check_distinct(op: &'static str, out: &Tensor, inputs: &[&Tensor]) -> Result<()> {
    for t in inputs {
        ensure_shape!(
            out.buffer() != t.buffer(),
            op,
            "the output {:?} shares a buffer with the input {:?}; give it its own tensor",
            out.shape(),
            t.shape()
        );
    }
    Ok(())
}

/// The kernels, entry point and grid for the product described by `params`.
fn plan(
    gpu: &Gpu,
    op: &'static str,
    params: &Params,
    variant: Variant,
) -> Result<(MatmulKernel, &'static str, [u32; 3])> {
    let (m, n, k) = (params.m as usize, params.n as usize, params.k as usize);
    let (trans_a, trans_b) = (params.trans_a == 1, params.trans_b == 1);
    // Every operand is read in vec4s along its contiguous dimension and k advances 4 at a time, so K, N (C's rows),
    // and M where A is stored [K, M], must be multiples of 4.
    let vec4_ok = k.is_multiple_of(4) && n.is_multiple_of(4) && (!trans_a || m.is_multiple_of(4));
    let choice = select::matmul(variant, gpu, vec4_ok, op)?;
    if choice == MatmulKernel::Tiled {
        let grid = [
            n.div_ceil(TILED_TILE.1) as u32,
            m.div_ceil(TILED_TILE.0) as u32,
            params.batch,
        ];
        return Ok((choice, "matmul_tiled", grid));
    }
    let entry = match (trans_a, trans_b) {
        (false, false) => "matmul_nn",
        (false, true) => "matmul_nt",
        (true, false) => "matmul_tn",
        (true, true) => "matmul_tt",
    };
    let grid = [
        n.div_ceil(BLOCKED_TILE.1) as u32,
        m.div_ceil(BLOCKED_TILE.0) as u32,
        params.batch,
    ];
    Ok((choice, entry, grid))
}

/// Whether a planned product runs matmul_subgroup.wgsl's matmul_nt with NARROW (each lane skips its column groups
/// past column 64): where C has at most 64 columns, which the 128-column block would half waste. The grid is one
/// workgroup wide either way.
fn narrow(kernel: MatmulKernel, entry: &str, n: usize) -> bool {
    kernel == MatmulKernel::RegisterBlockedSubgroup
        && entry == "matmul_nt"
        && n <= BLOCKED_TILE.1 / 2
}

/// Validates and builds C = op(A)·op(B) (+ C) (+ bias).
fn product(
    gpu: &Gpu,
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    bias: Option<&Tensor>,
    opts: MatmulOptions,
) -> Result<Dispatch> {
    check_f32(op, &[a, b, c])?;
    let [batch, m, n, k] = product_dims(op, a, b, c, opts)?;
    if let Some(bias) = bias {
        check_f32(op, &[bias])?;
        ensure_shape!(
            bias.shape() == [n],
            op,
            "bias must be [{n}], got {:?}",
            bias.shape()
        );
    }
    let mut inputs = vec![a, b];
    inputs.extend(bias);
    check_distinct(op, c, &inputs)?;

    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        batch: batch as u32,
        a_batch_stride: (m * k) as u32,
        b_batch_stride: (k * n) as u32,
        c_batch_stride: (m * n) as u32,
        trans_a: opts.trans_a as u32,
        trans_b: opts.trans_b as u32,
        _pad: [0; 3],
    };
    let planned = plan(gpu, op, &params, opts.variant)?;
    record(
        gpu,
        planned,
        &params,
        [a, b, c],
        bias,
        opts,
        Form::default(),
    )
}

/// [batch, m, n, k] of C[m, n] = op(A)[m, k]·op(B)[k, n], once A, B and C are checked to agree on them (the
/// errors name each operand's shape and transposition).
fn product_dims(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    opts: MatmulOptions,
) -> Result<[usize; 4]> {
    let (batch, a_rows, a_cols) = matrix_dims(op, "A", a)?;
    let (b_batch, b_rows, b_cols) = matrix_dims(op, "B", b)?;
    let (c_batch, c_rows, c_cols) = matrix_dims(op, "C", c)?;
    ensure_shape!(
        a.shape().len() == b.shape().len() && a.shape().len() == c.shape().len(),
        op,
        "A {:?}, B {:?} and C {:?} must all be matrices or all be batches",
        a.shape(),
        b.shape(),
        c.shape()
    );
    ensure_shape!(
        b_batch == batch && c_batch == batch,
        op,
        "batch sizes differ: A {:?}, B {:?}, C {:?}",
        a.shape(),
        b.shape(),
        c.shape()
    );
    let (m, k) = if opts.trans_a {
        (a_cols, a_rows)
    } else {
        (a_rows, a_cols)
    };
    let (k_b, n) = if opts.trans_b {
        (b_cols, b_rows)
    } else {
        (b_rows, b_cols)
    };
    let t = |x: bool| if x { "ᵀ" } else { "" };
    ensure_shape!(
        k == k_b,
        op,
        "inner dimensions differ: op(A) = A{} is [{m}, {k}] (A {:?}), op(B) = B{} is [{k_b}, {n}] (B {:?})",
        t(opts.trans_a),
        a.shape(),
        t(opts.trans_b),
        b.shape()
    );
    ensure_shape!(
        (c_rows, c_cols) == (m, n),
        op,
        "C must be [{m}, {n}] for A{} {:?} · B{} {:?}, got {:?}",
        t(opts.trans_a),
        a.shape(),
        t(opts.trans_b),
        b.shape(),
        c.shape()
    );
    ensure_shape!(
        batch <= u16::MAX as usize,
        op,
        "batch {batch} exceeds the 65535 matrices one dispatch can cover"
    );
    Ok([batch, m, n, k])
}

/// The forms of product beyond [`product`]'s (pipeline constants of the shaders).
#[derive(Clone, Copy, Default)]
struct Form {
    /// Add bias[m] to row m instead of bias[n] to column n.
    bias_per_row: bool,
    /// Sum the batch's products into one C (matmul_nt, register-blocked kernels only; one workgroup layer).
    sum_batch: bool,
}

/// The dispatch of a checked product: `params` describes it, `planned` is [`plan`]'s answer for it.
fn record(
    gpu: &Gpu,
    (choice, entry, mut grid): (MatmulKernel, &'static str, [u32; 3]),
    params: &Params,
    [a, b, c]: [&Tensor; 3],
    bias: Option<&Tensor>,
    opts: MatmulOptions,
    form: Form,
) -> Result<Dispatch> {
    if form.sum_batch {
        grid[2] = 1;
    }
    let narrow = narrow(choice, entry, params.n as usize);
    let shader = match choice {
        MatmulKernel::RegisterBlockedSubgroup => SUBGROUP_SHADER,
        MatmulKernel::RegisterBlocked | MatmulKernel::Tiled => SHADER,
    };
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    let constants = [
        ("ACCUMULATE", flag(opts.accumulate)),
        ("HAS_BIAS", flag(bias.is_some())),
        ("BIAS_PER_ROW", flag(form.bias_per_row)),
        ("SUM_BATCH", flag(form.sum_batch)),
        ("NARROW", flag(narrow)),
    ];
    let kernel = gpu.kernel_with(shader, entry, &constants)?;
    // Without a bias the kernels never read the bias binding, but it must be bound: B stands in.
    let bias = bias.unwrap_or(b);
    // The register-blocked kernels read the vec4 views (a4, b4, c4, bias4), the tiled kernel the scalar ones.
    Dispatch::new(
        gpu,
        &kernel,
        params,
        &[
            ("a4", a),
            ("b4", b),
            ("c4", c),
            ("bias4", bias),
            ("a", a),
            ("b", b),
            ("c", c),
            ("bias", bias),
        ],
        grid,
    )
    .map(|d| d.chosen(choice.name()))
}

/// A 1×1 convolution as one batched product whose weight is shared across the batch (batch stride 0):
/// y[n] = w·x[n] + bias, w [Co, Ci], x [N, Ci, H·W], y [N, Co, H·W], bias [Co] per output channel (row). With
/// `transpose_w` the product is wᵀ·x[n]: the backward input, x = d_y with Co channels, y = d_x with Ci. The caller
/// (src/kernels/conv2d/) has checked the shapes; `[n, k, m, hw]` are the batch, the channels read and written,
/// and the plane size.
#[allow(clippy::too_many_arguments)]
pub fn conv1x1(
    gpu: &Gpu,
    w: &Tensor,
    x: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    [n, k, m, hw]: [usize; 4],
    transpose_w: bool,
    opts: MatmulOptions,
) -> Result<Dispatch> {
    const OP: &str = "conv2d 1×1";
    ensure_shape!(
        n <= u16::MAX as usize,
        OP,
        "batch {n} exceeds the 65535 matrices one dispatch can cover"
    );
    let params = Params {
        m: m as u32,
        n: hw as u32,
        k: k as u32,
        batch: n as u32,
        a_batch_stride: 0,
        b_batch_stride: (k * hw) as u32,
        c_batch_stride: (m * hw) as u32,
        trans_a: transpose_w as u32,
        trans_b: 0,
        _pad: [0; 3],
    };
    let opts = MatmulOptions {
        trans_a: transpose_w,
        trans_b: false,
        ..opts
    };
    let planned = plan(gpu, OP, &params, opts.variant)?;
    let form = Form {
        bias_per_row: true,
        ..Form::default()
    };
    record(gpu, planned, &params, [w, x, y], bias, opts, form)
}

/// The weight gradient of a 1×1 convolution as one product summed over the batch: d_w = Σ_n d_y[n]·x[n]ᵀ, d_y
/// [N, Co, H·W], x [N, Ci, H·W], d_w [Co, Ci] (overwritten; any shape holding Co·Ci values). Only the
/// register-blocked kernels sum over the batch (SUM_BATCH): where `opts.variant` takes the tiled kernel this is
/// refused, and select::conv2d sends such convolutions to the convolution kernels instead. The caller
/// (src/kernels/conv2d/) has checked the shapes; `[n, ci, co, hw]` as named.
pub fn conv1x1_weight_grad(
    gpu: &Gpu,
    d_y: &Tensor,
    x: &Tensor,
    d_w: &Tensor,
    [n, ci, co, hw]: [usize; 4],
    opts: MatmulOptions,
) -> Result<Dispatch> {
    const OP: &str = "conv2d 1×1 weight gradient";
    let params = Params {
        m: co as u32,
        n: ci as u32,
        k: hw as u32,
        batch: n as u32,
        a_batch_stride: (co * hw) as u32,
        b_batch_stride: (ci * hw) as u32,
        c_batch_stride: 0,
        trans_a: 0,
        trans_b: 1,
        _pad: [0; 3],
    };
    let planned = plan(gpu, OP, &params, opts.variant)?;
    ensure_shape!(
        planned.1 == "matmul_nt",
        OP,
        "only the register-blocked kernels sum over the batch; {} was chosen (src/kernels/select.rs)",
        planned.0.name()
    );
    let form = Form {
        sum_batch: true,
        ..Form::default()
    };
    let opts = MatmulOptions {
        accumulate: false,
        ..opts
    };
    record(gpu, planned, &params, [d_y, x, d_w], None, opts, form)
}

/// C = op(A)·op(B), or C += op(A)·op(B) with `opts.accumulate`. A, B and C are all matrices ([rows, cols]) or all
/// batches ([batch, rows, cols], one product per batch entry): A is [M, K] ([K, M] with `trans_a`), B is [K, N]
/// ([N, K] with `trans_b`), C is [M, N]. C must not share a buffer with A or B.
pub fn matmul(
    gpu: &Gpu,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    opts: MatmulOptions,
) -> Result<Dispatch> {
    product(gpu, "matmul", a, b, c, None, opts)
}

/// (rows, in, out) of a linear layer, checked: x [rows, in], w [out, in], y [rows, out].
fn linear_dims(
    op: &'static str,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
    names: [&str; 3],
) -> Result<(usize, usize, usize)> {
    check_f32(op, &[x, w, y])?;
    let [xn, wn, yn] = names;
    ensure_shape!(
        x.shape().len() == 2,
        op,
        "{xn} must be [rows, in], got {:?}",
        x.shape()
    );
    ensure_shape!(
        w.shape().len() == 2,
        op,
        "{wn} must be [out, in], got {:?}",
        w.shape()
    );
    let (rows, inp, out) = (x.shape()[0], x.shape()[1], w.shape()[0]);
    ensure_shape!(
        w.shape()[1] == inp,
        op,
        "{wn} {:?} must be [out, {inp}] to match {xn} {:?}",
        w.shape(),
        x.shape()
    );
    ensure_shape!(
        y.shape() == [rows, out],
        op,
        "{yn} must be [{rows}, {out}] for {xn} {:?} and {wn} {:?}, got {:?}",
        x.shape(),
        w.shape(),
        y.shape()
    );
    Ok((rows, inp, out))
}

/// y = x·wᵀ + bias: x [rows, in], w [out, in], bias [out] (optional), y [rows, out].
pub fn linear_forward(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "linear_forward";
    linear_dims(OP, x, w, y, ["x", "w", "y"])?;
    let opts = MatmulOptions {
        trans_b: true,
        ..MatmulOptions::default()
    };
    product(gpu, OP, x, w, y, bias, opts)
}

/// d_x = d_y·w: d_y [rows, out], w [out, in], d_x [rows, in]. Overwrites d_x.
pub fn linear_backward_input(
    gpu: &Gpu,
    d_y: &Tensor,
    w: &Tensor,
    d_x: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "linear_backward_input";
    linear_dims(OP, d_x, w, d_y, ["d_x", "w", "d_y"])?;
    product(gpu, OP, d_y, w, d_x, None, MatmulOptions::default())
}

/// d_w = d_yᵀ·x: d_y [rows, out], x [rows, in], d_w [out, in]. Overwrites d_w.
pub fn linear_backward_weight(
    gpu: &Gpu,
    d_y: &Tensor,
    x: &Tensor,
    d_w: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "linear_backward_weight";
    linear_dims(OP, x, d_w, d_y, ["x", "d_w", "d_y"])?;
    let opts = MatmulOptions {
        trans_a: true,
        ..MatmulOptions::default()
    };
    product(gpu, OP, d_y, x, d_w, None, opts)
}

/// d_b[j] = Σ_r d_y[r, j]: d_y [rows, out], d_b [out]. Overwrites d_b.
pub fn linear_backward_bias(gpu: &Gpu, d_y: &Tensor, d_b: &Tensor) -> Result<Dispatch> {
    const OP: &str = "linear_backward_bias";
    check_f32(OP, &[d_y, d_b])?;
    ensure_shape!(
        d_y.shape().len() == 2,
        OP,
        "d_y must be [rows, out], got {:?}",
        d_y.shape()
    );
    let (rows, out) = (d_y.shape()[0], d_y.shape()[1]);
    ensure_shape!(
        d_b.shape() == [out],
        OP,
        "d_b must be [{out}] for d_y {:?}, got {:?}",
        d_y.shape(),
        d_b.shape()
    );
    check_distinct(OP, d_b, &[d_y])?;
    let params = Params {
        m: rows as u32,
        n: out as u32,
        batch: 1,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, "bias_grad")?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("a", d_y), ("c", d_b)],
        grid_1d(out.div_ceil(BIAS_COLUMNS) as u32),
    )
}
