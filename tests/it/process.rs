//! The score-based processes of src/diffusion/process/ against constants computed independently in Python
//! (`math` in f64, from score_sde's `sde_lib.py` and EDM's table 1 formulas), and their training points.

use diffuse::diffusion::process::{edm_preconditioning, ncsn_sigmas, Objective, Sde, Weighting};

/// Relative agreement to 1e-12: the Rust and Python f64 computations differ only in rounding order.
fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
        "{what}: {got:e} vs Python's {want:e}"
    );
}

#[test]
fn sde_marginals_diffusions_and_priors_match_score_sde() {
    // (t, VP mean coefficient, VP std, sub-VP std, β(t), sub-VP g²)
    let vp = [
        (
            1e-5,
            0.9999994995026252,
            0.0010004971259352385,
            1.0009944990046723e-06,
            0.10019900000000001,
            2.005971952131436e-07,
        ),
        (
            0.5,
            0.2811828807967524,
            0.9596542020680363,
            0.9209361875468394,
            10.049999999999999,
            9.987176581281732,
        ),
        (
            1.0,
            0.006571586494929619,
            0.9999784068923386,
            0.9999568142509396,
            20.0,
            19.99999996269982,
        ),
    ];
    for (t, mean, std, sub_std, beta, sub_g2) in vp {
        let at = format!("t = {t}");
        let (a, s) = Sde::VP.marginal(t);
        close(&format!("VP mean {at}"), a, mean);
        close(&format!("VP std {at}"), s, std);
        let (a, s) = Sde::SUB_VP.marginal(t);
        close(&format!("sub-VP mean {at}"), a, mean);
        close(&format!("sub-VP std {at}"), s, sub_std);
        let (f, g2) = Sde::VP.drift_diffusion2(t);
        close(&format!("VP β {at}"), g2, beta);
        close(&format!("VP drift {at}"), f, -0.5 * beta);
        close(
            &format!("sub-VP g² {at}"),
            Sde::SUB_VP.drift_diffusion2(t).1,
            sub_g2,
        );
    }
    // (t, σ(t), g²(t)) of the VE SDE with σ ∈ [0.01, 50] (Python gave σ(½) = 0.7071067811865476 = 1/√2).
    for (t, sigma, g2) in [
        (1e-5, 0.010000851755591462, 0.0017037288333184577),
        (0.5, std::f64::consts::FRAC_1_SQRT_2, 8.51719319141624),
        (1.0, 50.0, 42585.96595708119),
    ] {
        close(&format!("VE σ t = {t}"), Sde::VE.marginal(t).1, sigma);
        close(&format!("VE g² t = {t}"), Sde::VE.drift_diffusion2(t).1, g2);
    }
    let z = [0.5, -1.25, 2.0];
    close("VP prior", Sde::VP.prior_logp(&z), -5.6630655996140185);
    close(
        "sub-VP prior",
        Sde::SUB_VP.prior_logp(&z),
        -5.6630655996140185,
    );
    close("VE prior", Sde::VE.prior_logp(&z), -14.494047115898455);
}

#[test]
fn edm_preconditioning_and_ncsn_levels_match_the_papers() {
    // (σ, c_skip, c_out, c_in, c_noise, λ) with σ_d = 0.5.
    for (sigma, skip, out, c_in, noise, lambda) in [
        (
            0.002,
            0.9999840002559959,
            0.0019999840001919972,
            1.9999840001919975,
            -1.5536520246055479,
            250004.00000000003,
        ),
        (
            2.5,
            0.038461538461538464,
            0.4902903378454601,
            0.3922322702763681,
            0.22907268296853878,
            4.16,
        ),
        (
            80.0,
            3.906097418069607e-05,
            0.49999023466109294,
            0.012499755866527323,
            1.0955066586684703,
            4.00015625,
        ),
    ] {
        let (s, o, i, n) = edm_preconditioning(sigma, 0.5);
        close(&format!("c_skip σ = {sigma}"), s, skip);
        close(&format!("c_out σ = {sigma}"), o, out);
        close(&format!("c_in σ = {sigma}"), i, c_in);
        close(&format!("c_noise σ = {sigma}"), n, noise);
        // EDM's weight makes the F-space loss unweighted: λ·c_out² = 1.
        close(&format!("λ·c_out² σ = {sigma}"), lambda * o * o, 1.0);
    }
    let sigmas = ncsn_sigmas(0.01, 50.0, 10).unwrap();
    close("σ_1", sigmas[0], 50.0);
    close("σ_5", sigmas[4], 1.1349672651536735);
    close("σ_10", sigmas[9], 0.01);
}

#[test]
fn training_points_are_the_papers_losses() {
    // EDM at the draw n = 1 (σ = e⁰ = 1): F's target is (x₀ − c_skip·x)/c_out with x = x₀ + σ·ε.
    let q = Objective::EDM.point(1.0).unwrap();
    let (skip, out, c_in, noise) = edm_preconditioning(1.0, 0.5);
    close("EDM σ", q.sigma, 1.0);
    close("EDM c_in", q.c_in, c_in);
    close("EDM c_noise", q.c_noise, noise);
    close("EDM k₀", q.k_x0, (1.0 - skip) / out);
    close("EDM k_ε", q.k_eps, -skip * q.sigma / out);
    // The VP likelihood weight is g²/σ² = β(t)/(1 − e^{2l}); σ² weighting is 1; t = t_min + (1 − t_min)·u.
    let likely = Objective::Sde {
        sde: Sde::VP,
        weighting: Weighting::Likelihood,
        t_min: 1e-5,
    };
    let t = 1e-5 + (1.0 - 1e-5) * 0.5;
    let (alpha, sigma) = Sde::VP.marginal(t);
    let q = likely.point(0.5).unwrap();
    close("VP α", q.alpha, alpha);
    close(
        "VP weight",
        q.weight,
        Sde::VP.drift_diffusion2(t).1 / (sigma * sigma),
    );
    close("VP c_noise", q.c_noise, 999.0 * t);
    assert_eq!(Objective::sde(Sde::VP).point(0.5).unwrap().weight, 1.0);
    // NCSN draws level ⌊u·L⌋: u = 0.45 of 10 levels is σ_5.
    let ncsn = Objective::Ncsn {
        sigma_min: 0.01,
        sigma_max: 50.0,
        levels: 10,
    };
    close(
        "NCSN σ",
        ncsn.point(0.45).unwrap().sigma,
        1.1349672651536735,
    );
    assert!(Objective::Ddpm.point(0.5).is_none());
}

// ---------------------------------------------------------------------------------------------------------------
// On Gaussian data the optimum of each objective is known: training's target must have, given the network's
// input, the conditional mean that the sampler's reading of the output needs.
// ---------------------------------------------------------------------------------------------------------------

use crate::common::gpu;
use diffuse::diffusion::NoiseLevel;
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::{loss, noise, random};

/// Data x₀ ~ N(μ, s²) per coordinate.
const MU: f64 = 0.3;
const S: f64 = 0.5;

/// z-scores of the loss gradient at F: (its mean, its correlation with x) over the batch, each divided by its
/// standard error. Both are 0 in expectation exactly when F is E[target | input].
fn gradient_z_scores(d_pred: &[f32], x: &[f64]) -> (f64, f64) {
    let n = d_pred.len() as f64;
    let g: Vec<f64> = d_pred.iter().map(|&v| v as f64).collect();
    let x_mean = x.iter().sum::<f64>() / n;
    let z = |terms: Vec<f64>| {
        let mean = terms.iter().sum::<f64>() / n;
        let var = terms.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (n - 1.0);
        mean / (var / n).sqrt()
    };
    (
        z(g.clone()),
        z(g.iter().zip(x).map(|(g, x)| g * (x - x_mean)).collect()),
    )
}

#[test]
fn each_objective_trains_the_output_its_sampler_reads() {
    // For every objective and a few levels: image batches noised by the GPU kernel; the exact prediction P*(x)
    // (E[ε | x], or E[x₀ | x] for EDM) at the sampler's level (α, σ) turned into the network output
    // F* = (P* − out_x·x)/out_f by `Objective::evaluation`, the very map sampling applies; the loss kernel's
    // gradient at F* must then be pure noise (|z| < 5 for its mean and its correlation with x, a false alarm
    // < 10⁻⁵ each), and at F* + 0.1 it must not (|z| > 10: the targets have standard deviation ≈ 1, so the shift
    // is ≈ 25 SE over 65,536 elements). The network input the sampler makes, input_scale·x,
    // must be the one training made (to f32 rounding, 1e-5 relative).
    let gpu = gpu();
    let (images, d) = (4096, 16);
    let len = images * d;
    let state = random::rng_state(gpu, 0).unwrap();
    let normals = |seed: u64| {
        let t = Tensor::zeros(gpu, &[images, d], DType::F32).unwrap();
        gpu.run([&random::fill_normal(gpu, &t, seed, 0, &state).unwrap()])
            .unwrap();
        t.read_f32(gpu).unwrap()
    };
    let x0: Vec<f32> = normals(1)
        .iter()
        .map(|&z| (MU + S * z as f64) as f32)
        .collect();
    let eps = normals(2);
    let x0t = Tensor::from_f32(gpu, &[images, d], &x0).unwrap();
    let et = Tensor::from_f32(gpu, &[images, d], &eps).unwrap();
    let identity: Vec<u32> = (0..images as u32).collect();
    let identity = Tensor::from_u32(gpu, &[images], &identity).unwrap();
    for name in ["ncsn", "ve", "vp", "subvp:weighting=likelihood", "edm"] {
        let objective: Objective = name.parse().unwrap();
        let levels = noise::DrawnLevels::new(gpu, &objective).unwrap();
        let draws: &[f32] = match objective {
            Objective::Edm { .. } => &[-1.5, 0.0, 2.0],
            _ => &[0.05, 0.5, 0.95],
        };
        for &r in draws {
            let draw = Tensor::from_f32(gpu, &[images], &vec![r; images]).unwrap();
            let [x_in, target] =
                [0; 2].map(|_| Tensor::zeros(gpu, &[images, d], DType::F32).unwrap());
            let [cond, weight] = [0; 2].map(|_| Tensor::zeros(gpu, &[images], DType::F32).unwrap());
            gpu.run([&noise::noise_forward_drawn(
                gpu, &levels, &x0t, &et, &draw, &x_in, &target, &cond, &weight,
            )
            .unwrap()])
                .unwrap();
            let q = objective.point(r as f64).unwrap();
            let level = NoiseLevel {
                t: 0.0,
                alpha: q.alpha,
                sigma: q.sigma,
            };
            let e = objective.evaluation(&level).unwrap();
            let case = format!("{name} at draw {r}");
            assert!(
                (e.c_noise - q.c_noise).abs() <= 1e-9 * (1.0 + q.c_noise.abs()),
                "{case}: sampling conditions on {} where training did on {}",
                e.c_noise,
                q.c_noise
            );
            let x: Vec<f64> = (0..len)
                .map(|i| q.alpha * x0[i] as f64 + q.sigma * eps[i] as f64)
                .collect();
            for (i, &u) in x_in.read_f32(gpu).unwrap().iter().enumerate() {
                let want = e.input_scale * x[i];
                assert!(
                    (u as f64 - want).abs() <= 1e-5 * (want.abs() + q.c_in * q.sigma),
                    "{case}: input {u} vs the sampler's {want}"
                );
            }
            // N(αμ, α²s² + σ²) marginal: E[ε | x] = σ(x − αμ)/v, E[x₀ | x] = μ + αs²(x − αμ)/v.
            let v = q.alpha * q.alpha * S * S + q.sigma * q.sigma;
            let exact = |x: f64| match objective.prediction().unwrap() {
                diffuse::diffusion::Prediction::Sample => {
                    MU + q.alpha * S * S * (x - q.alpha * MU) / v
                }
                _ => q.sigma * (x - q.alpha * MU) / v,
            };
            let gradient_at = |shift: f64| {
                let f: Vec<f32> = x
                    .iter()
                    .map(|&x| ((exact(x) - e.out_x * x) / e.out_f + shift) as f32)
                    .collect();
                let pred = Tensor::from_f32(gpu, &[images, d], &f).unwrap();
                let d_pred = Tensor::zeros(gpu, &[images, d], DType::F32).unwrap();
                let weights = loss::SampleWeights {
                    t: &identity,
                    table: &weight,
                };
                gpu.run([&loss::mse_backward_weighted(
                    gpu, &pred, &target, weights, None, &d_pred,
                )
                .unwrap()])
                    .unwrap();
                gradient_z_scores(&d_pred.read_f32(gpu).unwrap(), &x)
            };
            let (mean, slope) = gradient_at(0.0);
            assert!(
                mean.abs() < 5.0 && slope.abs() < 5.0,
                "{case}: the gradient at the exact output has z-scores {mean:.1} (mean), {slope:.1} (slope)"
            );
            let (mean, slope) = gradient_at(0.1);
            assert!(
                mean.abs().max(slope.abs()) > 10.0,
                "{case}: an output 0.1 off goes unnoticed (z {mean:.1}, {slope:.1})"
            );
        }
    }
}

#[test]
fn every_objective_round_trips_through_its_recorded_text() {
    // Parameters away from their defaults, values whose shortest decimal form is long: the text a checkpoint
    // records reads back as the same objective, bit for bit.
    for text in [
        "ddpm",
        "ncsn:sigma_min=0.013,sigma_max=37.21,levels=77",
        "ve:sigma_min=0.1,sigma_max=348,weighting=likelihood,t_min=0.001",
        "vp:beta_min=0.2,beta_max=19.900000000000002,weighting=sigma2,t_min=0.00001",
        "subvp:beta_min=0.1,beta_max=20,weighting=likelihood,t_min=0.00002",
        "edm:sigma_data=0.3333333333333333,p_mean=-1.1,p_std=1.3",
    ] {
        let objective: Objective = text.parse().unwrap();
        assert_eq!(objective.to_string(), text);
        assert_eq!(
            objective.to_string().parse::<Objective>().unwrap(),
            objective
        );
    }
    // A bare name takes the papers' defaults; a parameter another objective owns is refused by name.
    assert_eq!("edm".parse::<Objective>().unwrap(), Objective::EDM);
    let err = "vp:sigma_max=3".parse::<Objective>().unwrap_err();
    assert!(err.contains("belongs to --objective ncsn or ve"), "{err}");
}
