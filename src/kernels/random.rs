//! Wrapper of shaders/random.wgsl: counter-based random numbers (Philox4x32-10) for noise and timestep draws.
//! Reference: src/reference/random.rs.
//!
//! A draw is named by (seed, stream, offset): `seed` (64 bits, the Philox key) and `stream` (which draw within a
//! step: noise, timesteps, …) are fixed when the dispatch is built; `offset` (64 bits) is the per-step part and
//! lives on the GPU in an *rng state* tensor, `[2]` u32 = (offset lo, offset hi), so a training step recorded once
//! draws new numbers at every submission. Two ways to move it:
//! - on the GPU: record [`advance`] after the step's last draw (offset += by each time the step is submitted);
//! - on the host: [`set_offset`] before submitting (e.g. to resume a run at step k: offset = k).
//!
//! Counter layout: block b of a draw is `philox4x32_10((b, stream, offset_lo, offset_hi), (seed_lo, seed_hi))`,
//! and element i reads word i % 4 of block ⌊i/4⌋. Distinct (stream, offset) pairs never share a counter; two draws
//! of one step with the same seed and stream would give the same numbers, so give each draw its own stream.

use crate::dropout::dropout_threshold;
use crate::ensure_shape;
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::check_f32;

const SHADER: &str = "random";

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    stream: u32,
    by_lo: u32,
    by_hi: u32,
    scale: f32,
    first: u32,
    _pad: [u32; 3],
}

/// Which numbers a draw takes: elements [first, first + len) of stream `id`. Streams are told apart by `id` (noise,
/// timesteps, …); `first` > 0 draws a part of a larger draw (a micro-batch of a batch) with the numbers the whole
/// would give it. A bare `u32` is stream `id` from element 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream {
    pub id: u32,
    pub first: u32,
}

impl From<u32> for Stream {
    fn from(id: u32) -> Stream {
        Stream { id, first: 0 }
    }
}

impl Stream {
    /// Elements from `first` on.
    pub fn from_element(id: u32, first: usize) -> Stream {
        Stream {
            id,
            first: first as u32,
        }
    }
}

/// The most stream elements a draw reaches (first + len): the shader's indices stay below 2³².
const MAX_ELEMENT: usize = 1 << 31;

/// A new rng state tensor (`[2]` u32) holding `offset`.
pub fn rng_state(gpu: &Gpu, offset: u64) -> Result<Tensor> {
    Tensor::from_u32(gpu, &[2], &split(offset))
}

/// Overwrites the offset held by `state` from the host (takes effect at the next submission).
pub fn set_offset(gpu: &Gpu, state: &Tensor, offset: u64) -> Result<()> {
    check_state("set_offset", state)?;
    gpu.queue.write_buffer(
        state.buffer(),
        state.byte_offset(),
        bytemuck::cast_slice(&split(offset)),
    );
    Ok(())
}

/// offset += `by` (64-bit, wrapping), on the GPU. Record it after the last draw of a step.
pub fn advance(gpu: &Gpu, state: &Tensor, by: u64) -> Result<Dispatch> {
    check_state("advance", state)?;
    let [by_lo, by_hi] = split(by);
    let params = Params {
        by_lo,
        by_hi,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, "rng_advance")?;
    Dispatch::new(gpu, &kernel, &params, &[("state_rw", state)], [1, 1, 1])
}

/// y[i] = word i of the Philox stream (u32): the raw bits every other draw is made from.
pub fn fill_bits(
    gpu: &Gpu,
    y: &Tensor,
    seed: u64,
    stream: impl Into<Stream>,
    state: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "fill_bits";
    check_u32(OP, y)?;
    fill(gpu, OP, y, 1, seed, stream, state)
}

/// y[i] = (w >> 8)·2⁻²⁴ ∈ [0, 1) (f32): 0 can occur, 1 cannot. Exact: every adapter gives the same bits.
pub fn fill_uniform(
    gpu: &Gpu,
    y: &Tensor,
    seed: u64,
    stream: impl Into<Stream>,
    state: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "fill_uniform";
    check_f32(OP, &[y])?;
    fill(gpu, OP, y, 1, seed, stream, state)
}

/// y[i] ~ N(0, 1) (f32), by Box–Muller, four per Philox block (see shaders/random.wgsl for the exact mapping).
/// |y| ≤ 5.77: 24-bit uniforms cut the tails beyond (probability 8·10⁻⁹).
pub fn fill_normal(
    gpu: &Gpu,
    y: &Tensor,
    seed: u64,
    stream: impl Into<Stream>,
    state: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "fill_normal";
    check_f32(OP, &[y])?;
    fill(gpu, OP, y, 1, seed, stream, state)
}

/// y[i] = ⌊w·n / 2³²⌋ ∈ [0, n) (u32), e.g. timesteps t ~ U{0, …, T−1} with n = T. No rejection step: each value's
/// probability is within a relative n/2³² of 1/n (2.4·10⁻⁷ for n = 1000).
pub fn fill_uniform_int(
    gpu: &Gpu,
    y: &Tensor,
    n: u32,
    seed: u64,
    stream: impl Into<Stream>,
    state: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "fill_uniform_int";
    check_u32(OP, y)?;
    ensure_shape!(
        n >= 1,
        OP,
        "the number of values n must be at least 1, got 0"
    );
    fill(gpu, OP, y, n, seed, stream, state)
}

/// y[i] = x[i]/(1 − p) or 0, each element dropped with probability p, by the draw (seed, stream, offset) (see
/// shaders/random.wgsl). The backward pass is this same call on ∂L/∂y with the same draw.
pub fn dropout(
    gpu: &Gpu,
    x: &Tensor,
    p: f64,
    seed: u64,
    stream: impl Into<Stream>,
    state: &Tensor,
    y: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "dropout";
    check_f32(OP, &[x, y])?;
    check_state(OP, state)?;
    ensure_shape!(
        x.shape() == y.shape(),
        OP,
        "x {:?} and y {:?} must have the same shape",
        x.shape(),
        y.shape()
    );
    if !(0.0..1.0).contains(&p) {
        return Err(Error::Usage(format!(
            "dropout probability {p} must be in [0, 1)"
        )));
    }
    let stream = stream.into();
    let [seed_lo, seed_hi] = split(seed);
    let (n, scale) = dropout_threshold(p);
    let params = Params {
        len: x.len() as u32,
        n,
        seed_lo,
        seed_hi,
        stream: stream.id,
        scale,
        first: stream.first,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("state", state), ("y_f32", y), ("x_f32", x)],
        kernel.grid_for(blocks(OP, stream, x.len())?),
    )
}

/// Philox blocks a draw of `len` elements from `stream.first` touches.
fn blocks(op: &'static str, stream: Stream, len: usize) -> Result<usize> {
    let first = stream.first as usize;
    ensure_shape!(
        first + len <= MAX_ELEMENT,
        op,
        "elements {first}..{} of a stream: draws reach at most element 2³¹",
        first + len
    );
    Ok((first % 4 + len).div_ceil(4))
}

fn fill(
    gpu: &Gpu,
    entry: &'static str,
    y: &Tensor,
    n: u32,
    seed: u64,
    stream: impl Into<Stream>,
    state: &Tensor,
) -> Result<Dispatch> {
    check_state(entry, state)?;
    let stream = stream.into();
    let [seed_lo, seed_hi] = split(seed);
    let params = Params {
        len: y.len() as u32,
        n,
        seed_lo,
        seed_hi,
        stream: stream.id,
        first: stream.first,
        ..Params::default()
    };
    let kernel = gpu.kernel(SHADER, entry)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[("state", state), ("y_f32", y), ("y_u32", y)],
        kernel.grid_for(blocks(entry, stream, y.len())?),
    )
}

fn split(x: u64) -> [u32; 2] {
    [x as u32, (x >> 32) as u32]
}

fn check_u32(op: &'static str, t: &Tensor) -> Result<()> {
    ensure_shape!(
        t.dtype() == DType::U32,
        op,
        "expected a u32 tensor, got a {:?} tensor of shape {:?}",
        t.dtype(),
        t.shape()
    );
    Ok(())
}

fn check_state(op: &'static str, state: &Tensor) -> Result<()> {
    if state.dtype() != DType::U32 || state.shape() != [2] {
        return Err(Error::shape(
            op,
            format!(
                "the rng state must be a [2] u32 tensor (offset lo, hi), got a {:?} tensor of shape {:?}",
                state.dtype(),
                state.shape()
            ),
        ));
    }
    Ok(())
}
