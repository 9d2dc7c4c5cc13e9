//! `diffuse eval`'s estimator (src/eval.rs): the stratified plan of timesteps is unbiased and exact when it covers
//! every timestep, and the GPU's per-row terms of a U-Net equal the f64 reference terms of src/reference/vlb.rs.

use crate::common;

use common::{gpu, uniform};
use diffuse::diffusion::samplers::{DdpmVariance, Prediction};
use diffuse::diffusion::vlb::VlbCoefficients;
use diffuse::diffusion::{BetaSchedule, NamedSchedule, NoiseLevel, Schedule};
use diffuse::eval::{plan_terms, TermEvaluator};
use diffuse::model::{ParamBuffers, ParamLayout};
use diffuse::reference::vlb::{rounded, vlb_terms, vlb_terms_bound};
use diffuse::reference::{gamma, to_f64};

fn counter() -> impl FnMut() -> f64 {
    let mut state = 0u64;
    move || {
        state += 1;
        ((state * 0x9E37_79B9) % 1000) as f64 / 1000.0
    }
}

#[test]
fn a_plan_covering_every_timestep_is_the_exact_sum() {
    for (t_max, k) in [(2, 2), (10, 10), (10, 50), (1000, 1000)] {
        let plan = plan_terms(t_max, k, &mut counter()).unwrap();
        let t: Vec<u32> = plan.iter().map(|p| p.t).collect();
        assert_eq!(t, (0..t_max as u32).collect::<Vec<_>>());
        assert!(plan.iter().all(|p| p.weight == 1.0));
    }
}

#[test]
fn a_stratified_plan_has_the_end_terms_and_one_draw_per_stratum() {
    // K − 2 = 7 strata over 998 middle timesteps: sizes 142 or 143, contiguous, weights their sizes.
    let plan = plan_terms(1000, 9, &mut counter()).unwrap();
    assert_eq!(plan.len(), 9);
    assert_eq!((plan[0].t, plan[0].weight), (0, 1.0));
    assert_eq!((plan[8].t, plan[8].weight), (999, 1.0));
    let mut lo = 1u32;
    for p in &plan[1..8] {
        let hi = lo + p.weight as u32;
        assert!(
            p.t >= lo && p.t < hi,
            "t {} outside its stratum {lo}..{hi}",
            p.t
        );
        assert!(p.weight == 142.0 || p.weight == 143.0);
        lo = hi;
    }
    assert_eq!(lo, 999, "the strata cover 1..=998");
    assert!(plan_terms(1000, 2, &mut counter()).is_err());
    assert!(plan_terms(1, 5, &mut counter()).is_err());
}

#[test]
fn the_stratified_estimate_is_unbiased() {
    // For a fixed f(t), E[Σ weight·f(t)] = Σ_t f(t). 40,000 plans with K = 5 on T = 50: the mean estimate must
    // be within 5 standard errors of the exact sum.
    let f = |t: u32| ((t as f64) * 0.37).sin() + 0.01 * t as f64;
    let exact: f64 = (0..50).map(f).sum();
    let mut state = 12345u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let n = 40_000;
    let estimates: Vec<f64> = (0..n)
        .map(|_| {
            plan_terms(50, 5, &mut uniform)
                .unwrap()
                .iter()
                .map(|p| p.weight * f(p.t))
                .sum()
        })
        .collect();
    let mean = estimates.iter().sum::<f64>() / n as f64;
    let sd = (estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let se = sd / (n as f64).sqrt();
    assert!(sd > 0.0, "the draws must vary");
    assert!(
        (mean - exact).abs() < 5.0 * se,
        "mean estimate {mean} vs exact {exact} (standard error {se})"
    );
}

#[test]
fn the_gpu_terms_of_a_unet_equal_the_reference_terms() {
    // A tiny class-conditional U-Net as initialised: its output conv is zero, so the network's output is exactly 0
    // and the terms depend only on x₀, the x_t the GPU drew and t, which the f64 reference recomputes. Rows: an odd
    // batch with the decoder term, small and large KL terms and the last term (with the prior). Every output kind
    // `diffuse train` makes (a zero x₀ or v output is a different x̂₀ from a zero ε̂), on the linear schedule and
    // on its zero-terminal-SNR rescale, whose last term (ᾱ = 0, where x_t = ε) x₀- and v-models can evaluate.
    let linear = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    let zero_snr = NamedSchedule::Linear.build(1000, true).unwrap();
    for (schedule, prediction) in [
        (&linear, Prediction::Epsilon),
        (&linear, Prediction::Sample),
        (&linear, Prediction::Velocity),
        (&zero_snr, Prediction::Sample),
        (&zero_snr, Prediction::Velocity),
    ] {
        check_terms_of_a_zero_output_unet(schedule, prediction);
    }
}

fn check_terms_of_a_zero_output_unet(schedule: &Schedule, prediction: Prediction) {
    let gpu = gpu();
    let config = common::tiny_unet();
    let flat = ParamLayout::new(&config).init(5);
    let params = ParamBuffers::upload(gpu, &ParamLayout::new(&config), &flat).unwrap();
    let t = [0u32, 1, 417, 998, 999];
    let rows = t.len();
    // x₀ on the 8-bit grid in [−1, 1], the edge bins included.
    let x0: Vec<f32> = uniform(rows * 64, 8)
        .iter()
        .enumerate()
        .map(|(i, v)| match i % 9 {
            0 => -1.0,
            1 => 1.0,
            _ => ((((v + 1.0) * 127.5).round() / 127.5) - 1.0).clamp(-1.0, 1.0),
        })
        .collect();
    for variance in [DdpmVariance::PosteriorBeta, DdpmVariance::Beta] {
        let evaluator = TermEvaluator::new(
            gpu, &config, &params, schedule, variance, prediction, rows, 3,
        )
        .unwrap();
        let got = evaluator
            .evaluate(gpu, &x0, &t, Some(&[0, 1, 2, 3, 1]))
            .unwrap();
        let x_t = to_f64(&evaluator.x_t.read_f32(gpu).unwrap());
        let c = rounded(&VlbCoefficients::new(schedule, variance, prediction).unwrap());
        let zero = vec![0.0; rows * 64];
        let ones = vec![1.0; rows];
        let x0 = to_f64(&x0);
        let want = vlb_terms(&c, &x0, &x_t, &zero, &t, &ones);
        let bound = vlb_terms_bound(&c, &x0, &x_t, &zero, &t, &ones);
        for r in 0..rows {
            // Each element within its kernel bound; the host's f64 sum of 64 f32 terms adds < 64·2⁻⁵³ relative.
            let range = r * 64..(r + 1) * 64;
            let want_row: f64 = want[range.clone()].iter().sum();
            let tolerance: f64 = bound[range.clone()].iter().sum::<f64>()
                + 64.0 * f64::EPSILON * want[range].iter().map(|v| v.abs()).sum::<f64>();
            assert!(
                (got[r] - want_row).abs() <= tolerance,
                "{prediction:?} {variance:?} row {r} (t = {}): GPU {} vs reference {want_row} (tolerance \
                 {tolerance})",
                t[r],
                got[r]
            );
        }
    }
}

#[test]
fn eval_feeds_the_drawn_x_t_and_the_networks_output_into_the_terms() {
    // The wiring the zero-output test above cannot see, checked link by link against references that share nothing
    // with the evaluator: (1) x_t against a·x₀ + b·ε with ε the f64 Philox/Box–Muller reference of the evaluator's
    // seed and stream (wrong seed, stream, table or t: fails); (2) the network's ε̂ against the f64 reference U-Net
    // run on that x_t, t and labels, with every layer non-zero (t or labels not reaching the network: fails);
    // (3) the terms against the f64 terms of (x₀, x_t, ε̂) (ε̂ not reaching the terms: fails, since ε̂ ≠ 0).
    let gpu = gpu();
    let config = common::tiny_unet();
    let layout = ParamLayout::new(&config);
    // The default initialisation, with the zero-initialised layers (the output conv among them) given small random
    // values, as in tests/it/unet.rs.
    let mut flat = layout.init(5);
    let noise = uniform(layout.padded_len, 77);
    for p in &layout.params {
        let range = p.offset..p.offset + p.len();
        if flat[range.clone()].iter().all(|&v| v == 0.0) {
            for i in range {
                flat[i] = 0.2 * noise[i];
            }
        }
    }
    let params = ParamBuffers::upload(gpu, &layout, &flat).unwrap();
    let schedule = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    let t = [0u32, 417, 999];
    let labels = [2u32, 0, 3]; // 3 = "no class"
    let rows = t.len();
    let d = 64;
    let x0: Vec<f32> = uniform(rows * d, 9)
        .iter()
        .map(|v| ((((v + 1.0) * 127.5).round() / 127.5) - 1.0).clamp(-1.0, 1.0))
        .collect();
    let seed = 11;
    let variance = DdpmVariance::PosteriorBeta;
    let evaluator = TermEvaluator::new(
        gpu,
        &config,
        &params,
        &schedule,
        variance,
        Prediction::Epsilon,
        rows,
        seed,
    )
    .unwrap();
    let got = evaluator.evaluate(gpu, &x0, &t, Some(&labels)).unwrap();

    // (1) x_t. The evaluator's ε is stream 0 of its seed at offset 0; the table is the schedule's, rounded to f32
    // as the GPU holds it. The GPU's ε is within crate::random::normal_bound(r) of the reference; x_t = a·x₀ + b·ε
    // then rounds twice (γ₂ of its products' magnitudes) and carries b times ε's error.
    let (eps, radius) = diffuse::reference::random::normal_with_radius(seed, 0, 0, rows * d);
    let [a, b] = schedule
        .noise_table()
        .map(|row| row.iter().map(|&v| v as f32 as f64).collect::<Vec<_>>());
    let x0_64 = to_f64(&x0);
    let want_x_t =
        diffuse::reference::noise::noise_forward(&x0_64, &eps, &t, &a, &b, Prediction::Epsilon).0;
    let x_t32 = evaluator.x_t.read_f32(gpu).unwrap();
    common::assert_close("x_t", &x_t32, &want_x_t, |i| {
        let s = t[i / d] as usize;
        let d_eps = crate::random::normal_bound(radius[i]);
        gamma(2) * (a[s] * x0_64[i].abs() + b[s] * (eps[i].abs() + d_eps)) + b[s] * d_eps
    });

    // (2) ε̂ against the reference U-Net on the GPU's x_t (just checked), within tests/it/unet.rs's forward bound
    // for this configuration: 40·γ₂₈₈·max|ε̂|.
    let x_t = to_f64(&x_t32);
    let t64: Vec<f64> = t.iter().map(|&v| v as f64).collect();
    let want_eps_hat =
        diffuse::reference::unet::forward(&config, &to_f64(&flat), &x_t, &t64, Some(&labels));
    let scale = want_eps_hat.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(scale > 1e-3, "ε̂ must not be trivially zero ({scale})");
    let eps_hat32 = evaluator.network_output().read_f32(gpu).unwrap();
    common::assert_close("ε̂", &eps_hat32, &want_eps_hat, |_| {
        40.0 * gamma(288) * scale
    });

    // (3) The terms of (x₀, x_t, ε̂), each element within its kernel bound; the host's f64 sum of 64 f32 terms adds
    // < 64·2⁻⁵³ relative.
    let eps_hat = to_f64(&eps_hat32);
    let c = rounded(&VlbCoefficients::new(&schedule, variance, Prediction::Epsilon).unwrap());
    let ones = vec![1.0; rows];
    let want = vlb_terms(&c, &x0_64, &x_t, &eps_hat, &t, &ones);
    let bound = vlb_terms_bound(&c, &x0_64, &x_t, &eps_hat, &t, &ones);
    for r in 0..rows {
        let range = r * d..(r + 1) * d;
        let want_row: f64 = want[range.clone()].iter().sum();
        let tolerance: f64 = bound[range.clone()].iter().sum::<f64>()
            + 64.0 * f64::EPSILON * want[range].iter().map(|v| v.abs()).sum::<f64>();
        assert!(
            (got[r] - want_row).abs() <= tolerance,
            "row {r} (t = {}): GPU {} vs reference {want_row} (tolerance {tolerance})",
            t[r],
            got[r]
        );
    }
}

#[test]
fn the_bound_of_x0_and_v_models_reads_x0_in_closed_form_and_refuses_eps_at_zero_snr() {
    // x̂₀ from a v output in closed form (α·x − σ·v)/(α² + σ²) equals the conversion through ε wherever α > 0,
    // to rounding, and stays finite at α = 0, where the conversion is ∞ − ∞.
    let zero_snr = NamedSchedule::Linear.build(1000, true).unwrap();
    for t in [0usize, 1, 500, 998] {
        let level = NoiseLevel::vp(&zero_snr, t);
        for prediction in [
            Prediction::Sample,
            Prediction::Velocity,
            Prediction::Epsilon,
        ] {
            let (cx, co) = diffuse::diffusion::vlb::x0_from(prediction, &level);
            let (wx, wo) = prediction.convert(Prediction::Sample, &level);
            // Through ε the coefficients are sums of terms as large as 1/α² (k_x·e_x with k_x ~ 1/α) that cancel
            // down to O(1): a few roundings of that size, so 8ε/α² absolute (≈ 4·10⁻⁷ at t = 998, ᾱ = 4·10⁻⁹).
            let tol = 8.0 * f64::EPSILON / (level.alpha * level.alpha);
            assert!(
                (cx - wx).abs() <= tol && (co - wo).abs() <= tol,
                "{prediction:?} t={t}: ({cx}, {co}) vs ({wx}, {wo})"
            );
        }
    }
    let last = NoiseLevel::vp(&zero_snr, 999);
    assert_eq!(last.alpha, 0.0);
    assert_eq!(
        diffuse::diffusion::vlb::x0_from(Prediction::Velocity, &last),
        (0.0, -1.0),
        "at α = 0, x̂₀ = −v"
    );
    let err = VlbCoefficients::new(&zero_snr, DdpmVariance::Beta, Prediction::Epsilon)
        .expect_err("an ε-model's x̂₀ is undefined at ᾱ = 0")
        .to_string();
    assert!(
        err.contains("timestep 999") && err.contains("v or x₀"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// `diffuse eval --exact`: the GPU flow against the same flow in f64 with the reference network.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn the_exact_likelihoods_flow_on_the_gpu_matches_the_reference_network_in_f64() {
    // The right-hand side the solver integrates (whose f64 solution tests/it/likelihood.rs holds to closed forms):
    // a tiny conditional U-Net with every layer live, two 8×8 images and their Rademacher probes, at three σ̃ of
    // each process. ε̂ against `ModelFlow::epsilon` with the reference network in f64; the divergence against the
    // central difference of that ε̂ along the same probe, vᵀ·(ε̂(x̃ + hv) − ε̂(x̃ − hv))/2h, a computation
    // independent of the GPU's α·(e_x·D + e_f·s·vᵀJᵀv). Bound: the U-Net tests' 40·γ₂₈₈ times the magnitudes (for
    // ε̂, |ε̂| + 2|x̃| + 1, which covers e_x·x and e_f·F at these constants; for the divergence, its D terms
    // summed), + 1e-6 for the differences' truncation. Measured: at most 0.3 % of the bound.
    // Objectives: DDPM (fractional timesteps), VP (999·t), EDM (x₀ prediction: c_in and c_skip in play).
    use diffuse::diffusion::process::{Objective, Trained};
    use diffuse::eval::exact::{ModelFlow, NetPass, Network};
    use diffuse::reference::unet as reference;
    let gpu = gpu();
    let config = diffuse::model::UNetConfig {
        num_classes: Some(3),
        ..common::tiny_unet()
    };
    let layout = ParamLayout::new(&config);
    let mut flat = layout.init(5);
    let noise = uniform(layout.padded_len, 77);
    for p in &layout.params {
        if flat[p.offset..p.offset + p.len()].iter().all(|&v| v == 0.0) {
            for i in p.offset..p.offset + p.len() {
                flat[i] = 0.2 * noise[i];
            }
        }
    }
    let params = ParamBuffers::upload(gpu, &layout, &flat).unwrap();
    let p64 = to_f64(&flat);
    let labels = [2u32, 0];
    let network = Network {
        config: &config,
        params: &params,
        labels: Some(&labels),
    };
    let x_tilde: Vec<f64> = to_f64(&uniform(128, 41));
    let probes: Vec<f32> = uniform(128, 42)
        .iter()
        .map(|&u| if u < 0.0 { -1.0 } else { 1.0 })
        .collect();
    let pass = NetPass::new(gpu, &network, probes.clone(), 2).unwrap();
    let bound = 40.0 * gamma(288);
    let linear = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    let cases = [
        (Trained::from(Prediction::Epsilon), Some(linear)),
        (
            Trained {
                objective: "vp".parse().unwrap(),
                target: Prediction::Epsilon,
            },
            None,
        ),
        (
            Trained {
                objective: Objective::EDM,
                target: Prediction::Epsilon,
            },
            None,
        ),
    ];
    for (trained, schedule) in cases {
        let flow = ModelFlow::new(trained, schedule).unwrap();
        let net = |input: &[f64], cond: f64| {
            reference::forward_training(&config, &p64, input, &[cond, cond], Some(&labels), None)
        };
        for ratio in [flow.lo * 3.0, 1.0, flow.hi / 2.0] {
            let case = format!("{} at σ̃ = {ratio}", trained.objective);
            let (eps, div) = pass.evaluate(gpu, &flow, &x_tilde, ratio).unwrap();
            let want = flow.epsilon(&x_tilde, ratio, &net);
            // ε̂'s two terms, e_x·x and e_f·F, bound its error; |ε̂| + |x| covers both up to the constants' size.
            let scale = |i: usize| want[i].abs() + 2.0 * x_tilde[i].abs() + 1.0;
            for i in 0..128 {
                assert!(
                    (eps[i] - want[i]).abs() <= bound * scale(i),
                    "{case}: ε̂[{i}] = {} vs {}",
                    eps[i],
                    want[i]
                );
            }
            let h = 1e-5;
            let moved = |sign: f64| -> Vec<f64> {
                let x: Vec<f64> = x_tilde
                    .iter()
                    .zip(&probes)
                    .map(|(x, v)| x + sign * h * *v as f64)
                    .collect();
                flow.epsilon(&x, ratio, &net)
            };
            let (up, down) = (moved(1.0), moved(-1.0));
            for (image, &got) in div.iter().enumerate() {
                let terms: Vec<f64> = (image * 64..(image + 1) * 64)
                    .map(|j| probes[j] as f64 * (up[j] - down[j]) / (2.0 * h))
                    .collect();
                let numeric: f64 = terms.iter().sum();
                let magnitude: f64 = terms.iter().map(|t| t.abs()).sum();
                assert!(
                    (got - numeric).abs() <= bound * magnitude + 1e-6,
                    "{case}, image {image}: divergence {got} vs the f64 difference {numeric}"
                );
            }
        }
    }
}
