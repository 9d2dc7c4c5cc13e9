//! shaders/noise.wgsl against src/reference/noise.rs.
//! Tolerance: x_t = a·x + b·ε is two products and a sum in f32, so |Δ| ≤ γ₂·(|a·x| + |b·ε|) (reference::gamma);
//! the v target likewise; ε and x_0 targets are copies (exact). The table is rounded to f32 once, on upload, and
//! the reference reads the same rounded values.

use crate::common;

use common::{assert_close, gpu, uniform};
use diffuse::diffusion::process::{Objective, Sde, Weighting};
use diffuse::diffusion::Prediction;
use diffuse::diffusion::{BetaSchedule, Schedule};
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::noise;
use diffuse::reference::{gamma, noise as reference, to_f64};

#[test]
fn noise_forward_matches_reference_for_every_target() {
    let gpu = gpu();
    let schedule = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    let a: Vec<f32> = schedule
        .sqrt_alphas_cumprod
        .iter()
        .map(|&v| v as f32)
        .collect();
    let b: Vec<f32> = schedule
        .sqrt_one_minus_alphas_cumprod
        .iter()
        .map(|&v| v as f32)
        .collect();
    let table = Tensor::from_f32(gpu, &[2, 1000], &[a.clone(), b.clone()].concat()).unwrap();
    // Batch 1 with one element; odd sizes; a 28×28 batch straddling workgroups. Index 5000 checks the clamp.
    for (n, d) in [(1, 1), (3, 7), (5, 784)] {
        let x0 = uniform(n * d, 1);
        let eps = uniform(n * d, 2);
        let steps: Vec<u32> = [0u32, 999, 5000, 417, 1]
            .iter()
            .copied()
            .cycle()
            .take(n)
            .collect();
        let x0t = Tensor::from_f32(gpu, &[n, d], &x0).unwrap();
        let et = Tensor::from_f32(gpu, &[n, d], &eps).unwrap();
        let tt = Tensor::from_u32(gpu, &[n], &steps).unwrap();
        for kind in [
            Prediction::Epsilon,
            Prediction::Sample,
            Prediction::Velocity,
        ] {
            // NaN first: the kernel overwrites both outputs.
            let x_t = common::nan_tensor(&[n, d]);
            let target = common::nan_tensor(&[n, d]);
            gpu.run([
                &noise::noise_forward(gpu, &x0t, &et, &tt, &table, kind, &x_t, &target).unwrap(),
            ])
            .unwrap();
            let (a64, b64) = (to_f64(&a), to_f64(&b));
            let (want_x, want_target) =
                reference::noise_forward(&to_f64(&x0), &to_f64(&eps), &steps, &a64, &b64, kind);
            // x_t = a·x + b·ε and v = a·ε − b·x: γ₂ times the magnitudes of their own two products.
            let bound = |i: usize, first: f32, second: f32| {
                let s = (steps[i / d] as usize).min(999);
                gamma(2) * (a64[s] * (first as f64).abs() + b64[s] * (second as f64).abs())
            };
            let case = format!("n{n} d{d} {kind:?}");
            assert_close(&case, &x_t.read_f32(gpu).unwrap(), &want_x, |i| {
                bound(i, x0[i], eps[i])
            });
            let exact = kind != Prediction::Velocity;
            assert_close(&case, &target.read_f32(gpu).unwrap(), &want_target, |i| {
                if exact {
                    0.0
                } else {
                    bound(i, eps[i], x0[i])
                }
            });
        }
    }
}

#[test]
fn noise_forward_refuses_bad_shapes() {
    let gpu = gpu();
    let x = Tensor::zeros(gpu, &[2, 4], DType::F32).unwrap();
    let t_f32 = Tensor::zeros(gpu, &[2], DType::F32).unwrap();
    let t_wrong = Tensor::zeros(gpu, &[3], DType::U32).unwrap();
    let t = Tensor::zeros(gpu, &[2], DType::U32).unwrap();
    let table = Tensor::zeros(gpu, &[2, 10], DType::F32).unwrap();
    let bad_table = Tensor::zeros(gpu, &[3, 10], DType::F32).unwrap();
    let run = |t: &Tensor, table: &Tensor| {
        noise::noise_forward(gpu, &x, &x, t, table, Prediction::Epsilon, &x, &x)
            .err()
            .map(|e| e.to_string())
    };
    assert!(run(&t_f32, &table).unwrap().contains("u32"));
    assert!(run(&t_wrong, &table).unwrap().contains("[2]"));
    assert!(run(&t, &bad_table).unwrap().contains("[2, T]"));
    // The shader has targets ε, x_0 and v; a score target must be refused, not computed as v by its default arm.
    let score = noise::noise_forward(gpu, &x, &x, &t, &table, Prediction::Score, &x, &x)
        .err()
        .map(|e| e.to_string())
        .unwrap();
    assert!(
        score.contains("noise_forward") && score.contains("score"),
        "{score}"
    );
}

#[test]
fn noised_samples_have_the_closed_form_mean_and_variance() {
    // For fixed x_0 and t, x_t ~ N(√ᾱ_t·x_0, (1 − ᾱ_t)·I). With GPU normals for ε and m = 2¹⁸ samples, the
    // empirical mean must lie within 5 standard errors (SE = √((1 − ᾱ_t)/m)) and the empirical variance within 5
    // of its standard errors (SE ≈ (1 − ᾱ_t)·√(2/(m − 1)) for a normal): a false alarm has probability < 10⁻⁶.
    let gpu = gpu();
    let schedule = Schedule::new(BetaSchedule::COSINE, 1000).unwrap();
    let a: Vec<f32> = schedule
        .sqrt_alphas_cumprod
        .iter()
        .map(|&v| v as f32)
        .collect();
    let b: Vec<f32> = schedule
        .sqrt_one_minus_alphas_cumprod
        .iter()
        .map(|&v| v as f32)
        .collect();
    let table = Tensor::from_f32(gpu, &[2, 1000], &[a.clone(), b.clone()].concat()).unwrap();
    let (n, d) = (256, 1024);
    let m = (n * d) as f64;
    for (t, x0_value) in [(0u32, 0.5f32), (300, -0.8), (999, 1.0)] {
        let x0 = Tensor::from_f32(gpu, &[n, d], &vec![x0_value; n * d]).unwrap();
        // NaN first: the kernels overwrite their outputs.
        let eps = common::nan_tensor(&[n, d]);
        let steps = Tensor::from_u32(gpu, &[n], &vec![t; n]).unwrap();
        let x_t = common::nan_tensor(&[n, d]);
        let target = common::nan_tensor(&[n, d]);
        let state = diffuse::kernels::random::rng_state(gpu, 0).unwrap();
        gpu.run([
            &diffuse::kernels::random::fill_normal(gpu, &eps, 42, 0, &state).unwrap(),
            &noise::noise_forward(
                gpu,
                &x0,
                &eps,
                &steps,
                &table,
                Prediction::Epsilon,
                &x_t,
                &target,
            )
            .unwrap(),
        ])
        .unwrap();
        let xs = x_t.read_f32(gpu).unwrap();
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / m;
        let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / (m - 1.0);
        let (want_mean, want_var) = (
            a[t as usize] as f64 * x0_value as f64,
            (b[t as usize] as f64).powi(2),
        );
        let se_mean = (want_var / m).sqrt();
        let se_var = want_var * (2.0 / (m - 1.0)).sqrt();
        assert!(
            (mean - want_mean).abs() <= 5.0 * se_mean,
            "t={t}: mean {mean} vs {want_mean} (SE {se_mean:e})"
        );
        assert!(
            (var - want_var).abs() <= 5.0 * se_var,
            "t={t}: variance {var} vs {want_var} (SE {se_var:e})"
        );
    }
}

/// The score-based objectives the drawn-level kernel serves, with the largest |A| of an exp argument it computes
/// for draws of magnitude ≤ 5 (shaders/noise.wgsl's precision note): VE ln(σ_max/σ_min), VP 4·|l(1)| (the
/// likelihood weight's expm1(4l)), EDM |P_mean| + 5·P_std.
fn drawn_objectives() -> Vec<(Objective, f64)> {
    let vp_l1: f64 = 0.25 * 19.9 + 0.5 * 0.1;
    let likely = |sde| Objective::Sde {
        sde,
        weighting: Weighting::Likelihood,
        t_min: 1e-5,
    };
    vec![
        (
            Objective::Ncsn {
                sigma_min: 0.01,
                sigma_max: 50.0,
                levels: 10,
            },
            0.0,
        ),
        (Objective::sde(Sde::VE), (50.0f64 / 0.01).ln()),
        (likely(Sde::VE), (50.0f64 / 0.01).ln()),
        (Objective::sde(Sde::VP), 4.0 * vp_l1),
        (likely(Sde::VP), 4.0 * vp_l1),
        (Objective::sde(Sde::SUB_VP), 4.0 * vp_l1),
        (likely(Sde::SUB_VP), 4.0 * vp_l1),
        (Objective::EDM, 1.2 + 5.0 * 1.2),
    ]
}

#[test]
fn noise_forward_drawn_matches_reference_for_every_objective() {
    // Tolerance (shaders/noise.wgsl): each coefficient is within K·u of its f64 value, K = 6·A + 11 (A the
    // largest exp argument; + 5 for the table's and constants' roundings); x_in's product c_in·α (or c_in·σ) has
    // 2K, plus γ₄ for its three products and a sum; the target K + γ₂; cond's c_noise sums at most 3 rounded terms
    // of magnitude ≤ A + |ln σ_min| (|Δ| ≤ 4u·(|c_noise| + 2A + 5), σ_min ≥ 0.01 here); the weight's quotient 2K + 4.
    let gpu = gpu();
    let u = gamma(1);
    for (objective, a_max) in drawn_objectives() {
        let levels = noise::DrawnLevels::new(gpu, &objective).unwrap();
        let k = 6.0 * a_max + 16.0;
        for (n, d) in [(1, 1), (3, 7), (9, 784)] {
            let x0 = uniform(n * d, 3);
            let eps = uniform(n * d, 4);
            // Both ends of the draw's range, for the uniforms 0 and the largest f32 below 1; EDM draws ±5.
            let edges: &[f32] = match objective {
                Objective::Edm { .. } => &[0.0, -5.0, 5.0, 1.3, -0.7],
                _ => &[0.0, 0.999_999_94, 0.5, 0.123, 0.77],
            };
            let draw: Vec<f32> = edges.iter().copied().cycle().take(n).collect();
            let tensor = |v: &[f32], shape: &[usize]| Tensor::from_f32(gpu, shape, v).unwrap();
            let (x0t, et, drawt) = (
                tensor(&x0, &[n, d]),
                tensor(&eps, &[n, d]),
                tensor(&draw, &[n]),
            );
            let outputs = [&[n, d][..], &[n, d], &[n], &[n]].map(common::nan_tensor);
            let [x_in, target, cond, weight] = &outputs;
            gpu.run([&noise::noise_forward_drawn(
                gpu, &levels, &x0t, &et, &drawt, x_in, target, cond, weight,
            )
            .unwrap()])
                .unwrap();
            let want = reference::noise_forward_drawn(
                &objective,
                &to_f64(&x0),
                &to_f64(&eps),
                &to_f64(&draw),
            );
            let point = |i: usize| objective.point(draw[i] as f64).unwrap();
            let case = format!("{objective:?} n{n} d{d}");
            assert_close(&case, &x_in.read_f32(gpu).unwrap(), &want.0, |i| {
                let q = point(i / d);
                (2.0 * k * u + gamma(4))
                    * q.c_in
                    * (q.alpha * (x0[i] as f64).abs() + q.sigma * (eps[i] as f64).abs())
            });
            assert_close(&case, &target.read_f32(gpu).unwrap(), &want.1, |i| {
                let q = point(i / d);
                (k * u + gamma(2))
                    * ((q.k_x0 * x0[i] as f64).abs() + (q.k_eps * eps[i] as f64).abs())
            });
            assert_close(&case, &cond.read_f32(gpu).unwrap(), &want.2, |i| {
                let q = point(i);
                4.0 * u * (q.c_noise.abs() + 2.0 * a_max + 5.0)
            });
            assert_close(&case, &weight.read_f32(gpu).unwrap(), &want.3, |i| {
                (2.0 * k + 4.0) * u * point(i).weight
            });
        }
    }
}

#[test]
fn noise_forward_drawn_refuses_ddpm_and_bad_shapes() {
    let gpu = gpu();
    let ddpm = noise::DrawnLevels::new(gpu, &Objective::Ddpm)
        .err()
        .unwrap()
        .to_string();
    assert!(ddpm.contains("noise_forward"), "{ddpm}");
    let levels = noise::DrawnLevels::new(gpu, &Objective::EDM).unwrap();
    let x = Tensor::zeros(gpu, &[2, 4], DType::F32).unwrap();
    let per_image = Tensor::zeros(gpu, &[2], DType::F32).unwrap();
    let wrong = Tensor::zeros(gpu, &[3], DType::F32).unwrap();
    let error =
        noise::noise_forward_drawn(gpu, &levels, &x, &x, &wrong, &x, &x, &per_image, &per_image)
            .err()
            .unwrap()
            .to_string();
    assert!(error.contains("[2]"), "{error}");
}
