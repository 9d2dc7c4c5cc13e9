//! shaders/noise.wgsl against src/reference/noise.rs.
//! Tolerance: x_t = a·x + b·ε is two products and a sum in f32, so |Δ| ≤ γ₂·(|a·x| + |b·ε|) (reference::gamma);
//! the v target likewise; ε and x_0 targets are copies (exact). The table is rounded to f32 once, on upload, and
//! the reference reads the same rounded values.

use crate::common;

use common::{assert_close, gpu, uniform};
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
