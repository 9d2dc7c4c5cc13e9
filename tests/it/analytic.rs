//! shaders/analytic.wgsl (the exact model of Gaussian-mixture data) against src/reference/analytic.rs (f64).
//! Tolerance: `reference::analytic::analytic_predict_bound`, a first-order bound derived from the f32 roundings of
//! the log-weights, the squared distances and the softmax, and WGSL's stated accuracy of exp and log (see its doc).
//! For a single Gaussian the softmax drops out and the bound is a few ulps of the affine prediction. The data's
//! parameters and the noise level are f32 values, so the kernel and the reference see the same numbers.

use crate::common;

use common::{assert_close, gpu, uniform};
use diffuse::diffusion::analytic::GaussianMixture;
use diffuse::diffusion::samplers::{NoiseLevel, Prediction};
use diffuse::diffusion::{BetaSchedule, Schedule};
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::analytic::{analytic_predict, analytic_predict_indexed, MixtureTable};
use diffuse::reference::{analytic as reference, to_f64};

const KINDS: [Prediction; 4] = [
    Prediction::Epsilon,
    Prediction::Sample,
    Prediction::Velocity,
    Prediction::Score,
];

fn r(v: f64) -> f64 {
    v as f32 as f64
}

/// The mixture with every mean and variance rounded to f32.
fn rounded(data: GaussianMixture) -> GaussianMixture {
    GaussianMixture {
        means: data
            .means
            .iter()
            .map(|m| m.iter().map(|&v| r(v)).collect())
            .collect(),
        variances: data.variances.iter().map(|&v| r(v)).collect(),
        ..data
    }
}

fn levels() -> Vec<NoiseLevel> {
    let s = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    [0, 40, 500, 999]
        .iter()
        .map(|&t| NoiseLevel::vp(&s, t))
        .chain([NoiseLevel::ve(0.05), NoiseLevel::ve(7.0)])
        .map(|l| NoiseLevel {
            alpha: r(l.alpha),
            sigma: r(l.sigma),
            ..l
        })
        .collect()
}

/// Checks every prediction kind at every level on `n` samples of x = spread·uniform.
fn check(data: &GaussianMixture, n: usize, spread: f32, what: &str) {
    let gpu = gpu();
    let table = MixtureTable::upload(gpu, data).unwrap();
    let d = data.dim();
    let x: Vec<f32> = uniform(n * d, n as u64 + d as u64)
        .iter()
        .map(|v| v * spread)
        .collect();
    let xt = Tensor::from_f32(gpu, &[n, d], &x).unwrap();
    let out = common::nan_tensor(&[n, d]); // must be overwritten
    let x64 = to_f64(&x);
    for level in levels() {
        for kind in KINDS {
            gpu.run([&analytic_predict(gpu, &table, &xt, &level, kind, &out).unwrap()])
                .unwrap();
            let want = reference::analytic_predict(data, &x64, &level, kind);
            let bound = reference::analytic_predict_bound(data, &x64, &level, kind);
            assert_close(
                &format!("{what} n{n} {kind:?} α={} σ={}", level.alpha, level.sigma),
                &out.read_f32(gpu).unwrap(),
                &want,
                |i| bound[i],
            );
        }
    }
}

#[test]
fn exact_model_of_one_gaussian_matches_reference() {
    let data = rounded(GaussianMixture::gaussian(vec![0.5, -0.3, 1.25], 0.25).unwrap());
    for n in [1, 86, 300] {
        // 86·3 = 258 elements: one past a workgroup.
        check(&data, n, 3.0, "gaussian");
    }
}

#[test]
fn exact_model_of_two_gaussians_matches_reference() {
    let joint = rounded(
        GaussianMixture::new(
            vec![0.3, 0.7],
            vec![vec![-1.0, 0.5], vec![1.0, -0.25]],
            vec![0.01, 0.04],
            false,
        )
        .unwrap(),
    );
    check(&joint, 257, 2.0, "two gaussians, joint");
    let factorized = GaussianMixture {
        factorized: true,
        ..joint
    };
    check(&factorized, 129, 2.0, "two gaussians, factorized");
}

#[test]
fn exact_model_of_8_bit_data_matches_reference() {
    // 256 point masses per coordinate at (2k + 1)/256 − 1 (exact in f32), with a bell-shaped weight.
    let weights: Vec<f64> = (0..256)
        .map(|k| (-(((k as f64) - 140.0) / 30.0).powi(2) / 2.0).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let data = GaussianMixture::new(
        weights.iter().map(|w| w / total).collect(),
        (0..256)
            .map(|k| vec![(2 * k + 1) as f64 / 256.0 - 1.0; 2])
            .collect(),
        vec![0.0; 256],
        true,
    )
    .unwrap();
    check(&data, 65, 1.2, "8-bit");
}

#[test]
fn indexed_exact_model_reads_each_samples_level_from_the_table() {
    // Each sample at its own timestep index (one clamped), against the reference at that f32 level.
    let gpu = gpu();
    let data = rounded(
        GaussianMixture::new(
            vec![0.4, 0.6],
            vec![vec![-0.5, 0.25], vec![0.75, -1.0]],
            vec![0.0625, 0.0],
            false,
        )
        .unwrap(),
    );
    let s = Schedule::new(BetaSchedule::COSINE, 1000).unwrap();
    let (a, b): (Vec<f32>, Vec<f32>) = (0..1000)
        .map(|t| {
            (
                s.sqrt_alphas_cumprod[t] as f32,
                s.sqrt_one_minus_alphas_cumprod[t] as f32,
            )
        })
        .unzip();
    let levels = Tensor::from_f32(gpu, &[2, 1000], &[a.clone(), b.clone()].concat()).unwrap();
    let table = MixtureTable::upload(gpu, &data).unwrap();
    let n = 131;
    let steps: Vec<u32> = (0..n as u32)
        .map(|i| (i * 97) % 1000)
        .chain([7000])
        .collect();
    let n = steps.len();
    let x = uniform(n * 2, 9);
    let xt = Tensor::from_f32(gpu, &[n, 2], &x).unwrap();
    let tt = Tensor::from_u32(gpu, &[n], &steps).unwrap();
    let out = common::nan_tensor(&[n, 2]); // must be overwritten
    for kind in KINDS {
        let d = analytic_predict_indexed(gpu, &table, &xt, &tt, &levels, kind, &out).unwrap();
        gpu.run([&d]).unwrap();
        let (mut want, mut bound) = (Vec::new(), Vec::new());
        for (i, &t) in steps.iter().enumerate() {
            let t = (t as usize).min(999);
            let level = NoiseLevel {
                t: t as f64,
                alpha: a[t] as f64,
                sigma: b[t] as f64,
            };
            let xs = to_f64(&x[2 * i..2 * i + 2]);
            want.extend(reference::analytic_predict(&data, &xs, &level, kind));
            bound.extend(reference::analytic_predict_bound(&data, &xs, &level, kind));
        }
        assert_close(
            &format!("indexed {kind:?}"),
            &out.read_f32(gpu).unwrap(),
            &want,
            |i| bound[i],
        );
    }
}

#[test]
fn analytic_predict_refuses_bad_inputs() {
    let gpu = gpu();
    let data = GaussianMixture::gaussian(vec![0.0, 0.0], 1.0).unwrap();
    let table = MixtureTable::upload(gpu, &data).unwrap();
    let x = Tensor::zeros(gpu, &[4, 3], DType::F32).unwrap();
    let level = NoiseLevel::ve(1.0);
    let e = analytic_predict(gpu, &table, &x, &level, Prediction::Epsilon, &x)
        .err()
        .unwrap();
    assert!(e.to_string().contains("2 elements"), "{e}");
    let x = Tensor::zeros(gpu, &[4, 2], DType::F32).unwrap();
    let clean = NoiseLevel {
        sigma: 0.0,
        ..level
    };
    let e = analytic_predict(gpu, &table, &x, &clean, Prediction::Epsilon, &x)
        .err()
        .unwrap();
    assert!(e.to_string().contains("σ > 0"), "{e}");
    assert!(GaussianMixture::new(vec![0.5, 0.6], vec![vec![0.0]; 2], vec![1.0; 2], false).is_err());
}
