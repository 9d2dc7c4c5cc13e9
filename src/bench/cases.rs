//! The benchmark cases: each kernel family on the shapes the U-Net presets use (`small`/`medium` at 28×28×1 with
//! batch 32; quick mode shrinks the batch so CI can afford it). Inputs are random; only the timing matters here,
//! correctness is the tests' job.

use crate::error::Result;
use crate::gpu::{DType, Gpu, Tensor};
use crate::kernels::elementwise;

use super::{Case, CaseSpec, Work};

fn random(gpu: &Gpu, shape: &[usize], seed: u32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            // xorshift32: any values will do for timing.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_f32(gpu, shape, &data)
}

fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
    Tensor::zeros(gpu, shape, DType::F32)
}

fn nchw(n: usize, c: usize, h: usize, w: usize) -> String {
    format!("n{n} c{c} {h}x{w}")
}

pub fn all(quick: bool) -> Vec<CaseSpec> {
    let batch = if quick { 4 } else { 32 };
    let mut specs = Vec::new();

    let (n, c, h, w) = (batch, 64, 28, 28);
    specs.push(CaseSpec {
        name: "silu_forward",
        shape: nchw(n, c, h, w),
        build: Box::new(move |gpu| {
            let x = random(gpu, &[n, c, h, w], 1)?;
            let y = zeros(gpu, &[n, c, h, w])?;
            Ok(Case {
                dispatches: vec![elementwise::silu_forward(gpu, &x, &y)?],
                work: Work::Bytes((2 * x.byte_size()) as f64),
                formula: "read x + write y",
            })
        }),
    });
    specs.push(CaseSpec {
        name: "concat_channels",
        shape: format!("n{n} c{c}+{c} {h}x{w}"),
        build: Box::new(move |gpu| {
            let a = random(gpu, &[n, c, h, w], 2)?;
            let b = random(gpu, &[n, c, h, w], 3)?;
            let y = zeros(gpu, &[n, 2 * c, h, w])?;
            Ok(Case {
                dispatches: vec![elementwise::concat_channels(gpu, &a, &b, &y)?],
                work: Work::Bytes((2 * y.byte_size()) as f64),
                formula: "read a, b + write y",
            })
        }),
    });
    specs
}
