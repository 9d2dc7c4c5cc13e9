//! End to end: every sampler's whole loop on the GPU (src/sample/mod.rs: one submission, no readback until the end),
//! with the exact model of the data (shaders/analytic.wgsl) in place of a network.
//!
//! Statistical tolerances. Each test uses fixed seeds, so it always passes or always fails; the thresholds are
//! 5 standard errors (a two-sided false alarm of 5.7·10⁻⁷ per statistic for a correct sampler).
//!
//! - Gaussian data N(μ, s²I), D = 4, N = 16384 samples. With the exact model every step is affine in x plus
//!   independent Gaussian noise, so the samples are exactly Gaussian with a mean m_d and variance v_d that
//!   `diffusion::analytic::gaussian_moments_after` computes in f64 (what the discretised sampler converges to).
//!   The GPU's empirical mean of coordinate d must lie within 5·√(v_d/N) of m_d (0.02·s), and the empirical
//!   variances, pooled over the D coordinates as the mean of v̂_d/v_d, within 5·√(2/(N−1))/√D = 2.8 % of 1.
//!   Separately, m_d and v_d must lie within the sampler's stated discretisation error of (μ_d, s²), so the samples
//!   reproduce the data's mean and variance within 5 SE + that error.
//! - A mixture of two Gaussians (D = 2, weights 0.3 / 0.7, modes 2.4 apart with s ≤ 0.3, so a sample's mode is
//!   unambiguous): the fraction of samples in mode 1 must lie within 5·√(w(1−w)/N) + 0.01 = 0.028 of w = 0.3, and
//!   the mean within 5 SE + 0.01. The 0.01 allows for the samplers' discretisation error, which f64 runs of each
//!   configuration below with 2¹⁶ samples (src/reference/step.rs::sample) measured at |Δw| ≤ 0.0035 and
//!   |Δmean| ≤ 0.0063 (1.7 of that run's SE).
//!
//! f32 rounding in the GPU loop is orders of magnitude below these (≈ 10⁻⁶ relative per step).

use crate::common;

use common::gpu;
use diffuse::diffusion::analytic::{gaussian_flow_map, gaussian_moments_after, GaussianMixture};
use diffuse::diffusion::samplers::{
    self, timesteps, Clip, DdpmVariance, FoldedStep, NoiseLevel, Plan, Prediction, Process,
    Spacing, Start, X0Bound,
};

/// The probability-flow ODE sampler over a timestep list: Heun on the list's VP levels, to clean data, from the
/// N(0, I) prior.
fn ode(schedule: &Schedule, list: &[usize]) -> Result<Plan, diffuse::Error> {
    samplers::heun(
        &samplers::vp_levels(schedule, list)?,
        NoiseLevel::CLEAN,
        Start::Prior,
    )
}

use diffuse::diffusion::{BetaSchedule, Schedule, VeSchedule};
use diffuse::gpu::Tensor;
use diffuse::kernels::analytic::MixtureTable;
use diffuse::reference::analytic::analytic_predict_bound;
use diffuse::reference::gamma;
use diffuse::sample::{AnalyticModel, Sampler};

const N: usize = 16384;

fn gaussian() -> GaussianMixture {
    GaussianMixture::gaussian(vec![0.5, -0.3, 0.25, -1.0], 0.25).unwrap()
}

fn mixture() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.3, 0.7],
        vec![vec![-1.0, -0.8], vec![1.0, 0.5]],
        vec![0.04, 0.09],
        false,
    )
    .unwrap()
}

fn sample(plan: &Plan, data: &GaussianMixture, prediction: Prediction, seed: u64) -> Vec<f32> {
    let gpu = gpu();
    let model = AnalyticModel {
        table: MixtureTable::upload(gpu, data).unwrap(),
        prediction,
    };
    let sampler = Sampler::new(gpu, plan, &model, &[N, data.dim()], seed).unwrap();
    sampler.run(gpu).unwrap()
}

/// Per-coordinate mean and (unbiased) variance of [N, D] samples.
fn moments(x: &[f32], d: usize) -> Vec<(f64, f64)> {
    (0..d)
        .map(|j| {
            let v: Vec<f64> = x.iter().skip(j).step_by(d).map(|&v| v as f64).collect();
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (mean, var)
        })
        .collect()
}

/// A sampler's run on Gaussian data: GPU samples against the exact moments of the discretised sampler (5 SE), and
/// those against the data within the stated discretisation error (`mean_bias` in units of s, `var_bias` relative).
fn check_gaussian(plan: &Plan, prediction: Prediction, mean_bias: f64, var_bias: f64) {
    let data = gaussian();
    let d = data.dim();
    let exact = gaussian_moments_after(&data, plan).unwrap();
    let s2 = data.variances[0];
    for (j, &(m, v)) in exact.iter().enumerate() {
        assert!(
            (m - data.means[0][j]).abs() <= mean_bias * s2.sqrt() && (v / s2 - 1.0).abs() <= var_bias,
            "{}: the discretised sampler's moments ({m}, {v}) are not within ({mean_bias}·s, {var_bias}) of ({}, {s2})",
            plan.name,
            data.means[0][j]
        );
    }
    let x = sample(plan, &data, prediction, 11);
    assert!(
        x.iter().all(|v| v.is_finite()),
        "{}: non-finite samples",
        plan.name
    );
    let got = moments(&x, d);
    let n = N as f64;
    for (j, (&(m_hat, _), &(m, v))) in got.iter().zip(&exact).enumerate() {
        let se = (v / n).sqrt();
        assert!(
            (m_hat - m).abs() <= 5.0 * se,
            "{}: coordinate {j}: mean {m_hat} vs {m} (SE {se:.2e})",
            plan.name
        );
    }
    let ratio = got.iter().zip(&exact).map(|(g, e)| g.1 / e.1).sum::<f64>() / d as f64;
    let se = (2.0 / (n - 1.0)).sqrt() / (d as f64).sqrt();
    assert!(
        (ratio - 1.0).abs() <= 5.0 * se,
        "{}: variance ratio {ratio} (SE {se:.2e})",
        plan.name
    );
}

/// A sampler's run on the two-Gaussian mixture: the weight of mode 1 and the mean.
fn check_mixture(plan: &Plan, prediction: Prediction) {
    let data = mixture();
    let x = sample(plan, &data, prediction, 23);
    assert!(
        x.iter().all(|v| v.is_finite()),
        "{}: non-finite samples",
        plan.name
    );
    let n = N as f64;
    // The mode of a sample: the component of larger posterior weight at the clean data.
    let log_p = |k: usize, s: &[f32]| {
        let sq: f64 = (0..2)
            .map(|j| (s[j] as f64 - data.means[k][j]).powi(2))
            .sum();
        data.weights[k].ln() - data.variances[k].ln() - 0.5 * sq / data.variances[k]
    };
    let first = x.chunks(2).filter(|s| log_p(0, s) > log_p(1, s)).count() as f64 / n;
    let w = data.weights[0];
    let se = (w * (1.0 - w) / n).sqrt();
    assert!(
        (first - w).abs() <= 5.0 * se + 0.01,
        "{}: weight of mode 1 is {first}, want {w} (SE {se:.2e})",
        plan.name
    );
    let (mean, var) = (data.mean(), data.variance());
    for (j, &(m_hat, _)) in moments(&x, 2).iter().enumerate() {
        let se = (var[j] / n).sqrt();
        assert!(
            (m_hat - mean[j]).abs() <= 5.0 * se + 0.01,
            "{}: coordinate {j}: mean {m_hat} vs {} (SE {se:.2e})",
            plan.name,
            mean[j]
        );
    }
}

fn linear() -> Schedule {
    Schedule::new(BetaSchedule::LINEAR, 1000).unwrap()
}

fn cosine() -> Schedule {
    Schedule::new(BetaSchedule::COSINE, 1000).unwrap()
}

fn trailing(s: usize) -> Vec<usize> {
    timesteps(1000, s, Spacing::Trailing).unwrap()
}

// Each sampler: the plan, the model's prediction kind (varied, so the GPU runs every folding), and the stated
// discretisation error of its moments on the Gaussian data (mean in units of s, variance relative), from
// `gaussian_moments_after` rounded up.

#[test]
fn ddpm_ancestral_samples_reproduce_the_data() {
    // σ² = β over 200 trailing steps: variance +1.4 %.
    let plan = samplers::ddpm(&linear(), &trailing(200), DdpmVariance::Beta, Clip::None).unwrap();
    check_gaussian(&plan, Prediction::Epsilon, 0.001, 0.02);
    check_mixture(&plan, Prediction::Epsilon);
    // The paper's sampler: σ² = β̃ over all 1000 steps, with an x₀-predicting model: variance −1.6 %.
    let full: Vec<usize> = (0..1000).rev().collect();
    let plan = samplers::ddpm(&linear(), &full, DdpmVariance::PosteriorBeta, Clip::None).unwrap();
    check_gaussian(&plan, Prediction::Sample, 0.001, 0.02);
    check_mixture(&plan, Prediction::Sample);
}

#[test]
fn ddim_samples_reproduce_the_data() {
    // Cosine schedule, 200 trailing steps: η = 0 variance −1.6 %, η = 0.5 −2.0 %.
    let plan = samplers::ddim(&cosine(), &trailing(200), 0.0, Clip::None).unwrap();
    check_gaussian(&plan, Prediction::Velocity, 0.001, 0.02);
    check_mixture(&plan, Prediction::Velocity);
    let plan = samplers::ddim(&cosine(), &trailing(200), 0.5, Clip::None).unwrap();
    check_gaussian(&plan, Prediction::Epsilon, 0.001, 0.025);
    check_mixture(&plan, Prediction::Epsilon);
}

#[test]
fn reverse_sde_euler_maruyama_samples_reproduce_the_data() {
    // 200 trailing steps, a score model: mean 0.003·s, variance +2.1 %.
    let plan = samplers::euler_maruyama(&linear(), &trailing(200)).unwrap();
    check_gaussian(&plan, Prediction::Score, 0.005, 0.025);
    check_mixture(&plan, Prediction::Score);
}

#[test]
fn probability_flow_heun_samples_reproduce_the_data() {
    // 100 timesteps (199 model evaluations), an x₀ model: mean 0.007·s (the N(0, I) prior vs ᾱ_T > 0), variance −0.6 %.
    let plan = ode(&linear(), &trailing(100)).unwrap();
    check_gaussian(&plan, Prediction::Sample, 0.01, 0.01);
    check_mixture(&plan, Prediction::Sample);
}

#[test]
fn annealed_langevin_samples_reproduce_the_data() {
    // σ 10 → 0.05 over 50 levels, 10 steps each, ε = 0.8·σ_L² (so ε_i/σ_i² = 0.8 at every level), with the final
    // denoising step: variance +2.4 %. (Larger steps mix faster but bias the mixture's weights: ε = 3.2·σ_L² gives
    // 0.23 for 0.3.)
    let levels = VeSchedule::geometric(10.0, 0.05, 50).unwrap();
    let plan = samplers::annealed_langevin(&levels, 10, 0.8 * 0.05 * 0.05, true).unwrap();
    check_gaussian(&plan, Prediction::Score, 0.001, 0.03);
    check_mixture(&plan, Prediction::Score);
}

#[test]
fn annealed_langevin_on_vp_levels_samples_reproduce_the_data() {
    // 100 trailing VP timesteps, 20 Langevin steps each at ε_t = σ_t², then Tweedie's denoising step: mean
    // 0.015·s, variance +2.9 %. The chains lag behind the marginal's mean √ᾱ_t·μ as it moves between levels
    // (slow to mix where σ_t is small), hence a larger mean bias than the VE sampler's at the same cost.
    let plan = samplers::annealed_langevin_vp(&linear(), &trailing(100), 20, 1.0, true).unwrap();
    check_gaussian(&plan, Prediction::Epsilon, 0.02, 0.04);
    check_mixture(&plan, Prediction::Epsilon);
}

#[test]
fn predictor_corrector_samples_reproduce_the_data() {
    // VP: 200 trailing steps, one corrector step each at r = 0.16: mean 0.002·s, variance +1.6 %.
    let (s, list) = (linear(), trailing(200));
    let plan = samplers::predictor_corrector(
        Process::Vp {
            schedule: &s,
            timesteps: &list,
        },
        1,
        0.16,
    )
    .unwrap();
    check_gaussian(&plan, Prediction::Epsilon, 0.005, 0.02);
    check_mixture(&plan, Prediction::Epsilon);
    // VE: σ 10 → 0.01 over 200 levels: variance +1.2 %.
    let levels = VeSchedule::geometric(10.0, 0.01, 200).unwrap();
    let plan = samplers::predictor_corrector(Process::Ve { levels: &levels }, 1, 0.16).unwrap();
    check_gaussian(&plan, Prediction::Score, 0.001, 0.015);
    check_mixture(&plan, Prediction::Score);
}

// ---------------------------------------------------------------------------------------------------------------
// DDIM η = 0: deterministic, matches the f64 loop, converges to the exact flow map.
// ---------------------------------------------------------------------------------------------------------------

fn r(v: f64) -> f64 {
    v as f32 as f64
}

/// `gaussian()` with f32 means (what the GPU's table holds), and a starting x of f32 values in [−2, 2).
fn rounded_gaussian_and_start(n: usize) -> (GaussianMixture, Vec<f32>) {
    let mut data = gaussian();
    data.means[0] = data.means[0].iter().map(|&m| r(m)).collect();
    let x: Vec<f32> = common::uniform(n * data.dim(), 5)
        .iter()
        .map(|v| 2.0 * v)
        .collect();
    (data, x)
}

fn run_from(
    plan: &Plan,
    data: &GaussianMixture,
    prediction: Prediction,
    x: &[f32],
) -> (Sampler, Vec<f32>) {
    let gpu = gpu();
    let model = AnalyticModel {
        table: MixtureTable::upload(gpu, data).unwrap(),
        prediction,
    };
    let initial = Tensor::from_f32(gpu, &[x.len() / data.dim(), data.dim()], x).unwrap();
    let sampler = Sampler::from_initial(gpu, plan, &model, &initial, 99).unwrap();
    let out = sampler.run(gpu).unwrap();
    (sampler, out)
}

#[test]
fn deterministic_ddim_gives_the_same_bits_at_every_run_and_eta_brings_fresh_noise() {
    let (data, x) = rounded_gaussian_and_start(256);
    let gpu = gpu();
    let plan = samplers::ddim(&cosine(), &trailing(50), 0.0, Clip::None).unwrap();
    let (sampler, first) = run_from(&plan, &data, Prediction::Velocity, &x);
    let second = sampler.run(gpu).unwrap();
    // The rng offset moved on between the runs (2 runs → offset 2), and η = 0 never read it.
    assert_eq!(sampler.rng_state().read_u32(gpu).unwrap(), [2, 0]);
    assert_eq!(first, second, "DDIM η = 0 must be deterministic");
    // The same recording with η = 0.5 draws new noise at every run: the samples differ.
    let plan = samplers::ddim(&cosine(), &trailing(50), 0.5, Clip::None).unwrap();
    let (sampler, first) = run_from(&plan, &data, Prediction::Velocity, &x);
    let second = sampler.run(gpu).unwrap();
    let same = first.iter().zip(&second).filter(|(a, b)| a == b).count();
    assert!(
        same < first.len() / 100,
        "{same} of {} samples repeated",
        first.len()
    );
}

#[test]
fn deterministic_ddim_on_the_gpu_matches_the_f64_loop() {
    // The GPU loop against src/reference/step.rs::sample from the same x, with the f32-rounded levels the kernel
    // sees. Bound, propagated along the f64 trajectory: each step y = a·x + b·o adds γ₃·(|a·x| + |b·o|) (two
    // roundings and the f32 scalars) and |b|·B(x) (B = the analytic kernel's bound); an error δ already in x is
    // mapped by the exact affine step to |a + b·∂o/∂x|·δ.
    let (data, x) = rounded_gaussian_and_start(64);
    let plan = samplers::ddim(&linear(), &trailing(50), 0.0, Clip::None).unwrap();
    let (_, got) = run_from(&plan, &data, Prediction::Epsilon, &x);
    let round = |l: &NoiseLevel| NoiseLevel {
        alpha: r(l.alpha),
        sigma: r(l.sigma),
        ..*l
    };
    let mut xs = diffuse::reference::to_f64(&x);
    let mut err = vec![0.0; xs.len()];
    for step in &plan.steps {
        let level = round(step.level());
        let FoldedStep::Linear { a, b, .. } = step.fold(Prediction::Epsilon) else {
            panic!("DDIM steps are linear")
        };
        let o = data.predict_batch(&xs, &level, Prediction::Epsilon);
        let model_bound = analytic_predict_bound(&data, &xs, &level, Prediction::Epsilon);
        let (slope, _) = data.coefficients(0, &level, Prediction::Epsilon);
        for i in 0..xs.len() {
            err[i] = (a + b * slope).abs() * err[i]
                + gamma(3) * ((a * xs[i]).abs() + (b * o[i]).abs())
                + b.abs() * model_bound[i];
            xs[i] = a * xs[i] + b * o[i];
        }
    }
    common::assert_close("ddim η=0 GPU vs f64", &got, &xs, |i| err[i]);
}

#[test]
fn deterministic_ddim_converges_to_the_exact_flow_map_as_steps_grow() {
    // For Gaussian data the probability-flow ODE maps x at index T−1 to μ + s·(x − α·μ)/√(α²s² + σ²) exactly;
    // DDIM η = 0 is its Euler method, so the error must fall with the number of steps, about like 1/S.
    let (data, x) = rounded_gaussian_and_start(256);
    let start = NoiseLevel::vp(&linear(), 999);
    let want = gaussian_flow_map(&data, &start, &diffuse::reference::to_f64(&x));
    let mut errors = Vec::new();
    for s in [5, 10, 20, 50, 100, 200] {
        let plan = samplers::ddim(&linear(), &trailing(s), 0.0, Clip::None).unwrap();
        let (_, got) = run_from(&plan, &data, Prediction::Sample, &x);
        let err = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (*g as f64 - w).abs())
            .fold(0.0, f64::max);
        errors.push((s, err));
    }
    for pair in errors.windows(2) {
        assert!(pair[1].1 < pair[0].1, "not converging: {errors:?}");
    }
    // From 20 to 200 steps the error of a first-order method falls 10×; ask for 5×.
    let (e20, e200) = (errors[2].1, errors[5].1);
    assert!(e200 < e20 / 5.0, "{errors:?}");
    assert!(e200 < 0.02, "{errors:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Clipping, recording, refusals.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn clipped_ddpm_samples_end_inside_the_clip_range() {
    // Data N(0, 1) spills over [−1, 1]; with x̂₀-clipping the last step (to ᾱ = 1: coef1 = 1, coef2 = 0) returns the
    // clipped x̂₀ itself, so every sample lies in [−1, 1] exactly and some sit on the bounds. (Fewer than the
    // 2·Φ(−1) = 32 % of the data: the clip at earlier steps also pulls the samples inwards.)
    let data = GaussianMixture::gaussian(vec![0.0, 0.0], 1.0).unwrap();
    let clip = Clip::Clamp { lo: -1.0, hi: 1.0 };
    let plan = samplers::ddpm(&linear(), &trailing(100), DdpmVariance::Beta, clip).unwrap();
    let x = sample(&plan, &data, Prediction::Epsilon, 3);
    assert!(
        x.iter().all(|v| v.abs() <= 1.0),
        "samples outside the clip range"
    );
    let on_bounds = x.iter().filter(|v| v.abs() == 1.0).count() as f64 / x.len() as f64;
    assert!(
        (0.05..0.32).contains(&on_bounds),
        "{on_bounds} on the bounds"
    );
}

#[test]
fn a_sampler_records_its_whole_loop_once() {
    let gpu = gpu();
    let data = gaussian();
    let model = AnalyticModel {
        table: MixtureTable::upload(gpu, &data).unwrap(),
        prediction: Prediction::Epsilon,
    };
    // Per step: model, noise, update; the last step draws no noise; plus the initial draw and scale and the rng
    // advance: 3·S − 1 + 3 dispatches, recorded once and submitted once by `run`.
    let plan = samplers::ddpm(&linear(), &trailing(20), DdpmVariance::Beta, Clip::None).unwrap();
    let sampler = Sampler::new(gpu, &plan, &model, &[8, 4], 1).unwrap();
    assert_eq!(sampler.dispatch_count(), 3 * 20 - 1 + 3);
    let heun = ode(&linear(), &trailing(20)).unwrap();
    let sampler = Sampler::new(gpu, &heun, &model, &[8, 4], 1).unwrap();
    // 19 Heun steps of 4 dispatches (model, predictor, model, corrector), a final Euler step of 2, and 3.
    assert_eq!(sampler.dispatch_count(), 19 * 4 + 2 + 3);
}

/// Submitting the steps one by one (a page showing each step) is one run: the same samples, bit for bit, with
/// noisy steps (DDPM) and two model evaluations per step (Heun); x after each step is where `x_after` says.
#[test]
fn submitting_step_by_step_gives_the_samples_of_one_run() {
    let gpu = gpu();
    let data = gaussian();
    let model = AnalyticModel {
        table: MixtureTable::upload(gpu, &data).unwrap(),
        prediction: Prediction::Epsilon,
    };
    let ddpm = samplers::ddpm(&linear(), &trailing(7), DdpmVariance::Beta, Clip::None).unwrap();
    let heun = ode(&linear(), &trailing(5)).unwrap();
    for plan in [ddpm, heun] {
        let whole = Sampler::new(gpu, &plan, &model, &[5, 4], 3).unwrap();
        let want = whole.run(gpu).unwrap();
        let stepped = Sampler::new(gpu, &plan, &model, &[5, 4], 3).unwrap();
        assert_eq!(stepped.steps(), plan.steps.len());
        let mut previous = stepped.initial().read_f32(gpu).unwrap();
        for k in 0..stepped.steps() {
            stepped.submit_step(gpu, k).unwrap();
            let x = stepped.x_after(k).unwrap().read_f32(gpu).unwrap();
            assert_ne!(x, previous, "{}: step {k} left x as it was", plan.name);
            previous = x;
        }
        assert_eq!(previous, want, "{}: stepping gave other samples", plan.name);
        assert!(stepped.submit_step(gpu, stepped.steps()).is_err());
        assert!(stepped.x_after(stepped.steps()).is_none());
    }
}

#[test]
fn samplers_refuse_mismatched_inputs() {
    let gpu = gpu();
    let data = gaussian();
    let model = AnalyticModel {
        table: MixtureTable::upload(gpu, &data).unwrap(),
        prediction: Prediction::Epsilon,
    };
    let plan = samplers::ddpm(&linear(), &trailing(5), DdpmVariance::Beta, Clip::None).unwrap();
    let e = Sampler::new(gpu, &plan, &model, &[8, 3], 1).err().unwrap();
    assert!(e.to_string().contains("4 elements"), "{e}");
    let empty = Plan {
        name: "empty".to_string(),
        init_scale: 1.0,
        steps: vec![],
    };
    let e = Sampler::new(gpu, &empty, &model, &[8, 4], 1).err().unwrap();
    assert!(e.to_string().contains("no steps"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------------
// Multistep solvers and Karras σ: the same checks, and the GPU loop (state on the GPU) against the f64 loop.
// ---------------------------------------------------------------------------------------------------------------

/// Each new sampler on Gaussian data, ε, x₀ and v models: the exact moments of the discretised sampler within
/// 5 SE, and those within the stated bias of the data. The biases are the f64 moments' distance from (μ, s²)
/// (gaussian_moments_after) rounded up; all have the same mean bias on the linear schedule, 0.32 % of μ (0.0064·s
/// for μ = −1), which is their start's: N(0, I) stands for the marginal at T−1, whose mean is √ᾱ·μ ≠ 0. Measured variance biases with 50
/// levels: Karras σ on the linear schedule, DPM-Solver++(2M) +1.4 %, UniPC +0.4 %, Euler −11.6 %, Heun (25
/// levels) +6.1 %; over 50 trailing timesteps DPM-Solver++(2M) +0.2 %, UniPC −0.4 % (linear) and +0.3 %, −0.1 %
/// (cosine). Karras σ on the cosine schedule start at σ̃ ≈ 2·10⁴ and do worse at 50 levels (Heun +41 %), as the
/// note on `samplers::heun` says of a timestep list's levels.
///
/// Fewer steps are what these samplers are for, but on Gaussian data they show the cost of the last jump to
/// clean data: over a list of S timesteps it starts at index T/S − 1, where x̂₀ is the posterior mean and short of
/// the data's variance (S = 10, linear: −35 %); Karras σ end at σ_min, and there the cost is the coarse first
/// levels (10 levels: DPM-Solver++(2M) +22 %).
#[test]
fn multistep_and_karras_samples_reproduce_the_data() {
    let end = NoiseLevel::CLEAN;
    let lin = linear();
    let karras = samplers::karras_levels(&lin, 50).unwrap();
    let karras_plans = [
        (
            samplers::dpm_solver_2m(&karras, end, true, X0Bound::None).unwrap(),
            Prediction::Epsilon,
            0.02,
        ),
        (
            samplers::unipc_bh2(&karras, end, true, X0Bound::None).unwrap(),
            Prediction::Velocity,
            0.01,
        ),
        (
            samplers::euler(&karras, end, Start::Sigma).unwrap(),
            Prediction::Sample,
            0.12,
        ),
        (
            samplers::heun(
                &samplers::karras_levels(&lin, 25).unwrap(),
                end,
                Start::Sigma,
            )
            .unwrap(),
            Prediction::Epsilon,
            0.07,
        ),
    ];
    for (plan, prediction, var_bias) in karras_plans {
        check_gaussian(&plan, prediction, 0.007, var_bias);
    }
    for schedule in [linear(), cosine()] {
        let levels = samplers::vp_levels(&schedule, &trailing(50)).unwrap();
        let plans = [
            samplers::dpm_solver_2m(&levels, end, true, X0Bound::None).unwrap(),
            samplers::unipc_bh2(&levels, end, true, X0Bound::None).unwrap(),
        ];
        for (plan, prediction) in plans.iter().zip([Prediction::Velocity, Prediction::Sample]) {
            check_gaussian(plan, prediction, 0.007, 0.01);
        }
    }
}

/// The GPU loop of the multistep solvers (their state s, m₁, m₂ in one GPU buffer) against
/// src/reference/step.rs::sample_in from the same x, with the f32-rounded levels the analytic kernel sees. Bound,
/// propagated along the f64 trajectory as for DDIM above, with the state's errors (e_x, e_s, e₁, e₂) per element:
/// m = p·x + q·o gains |p + q·∂o/∂x|·e_x + γ₃·(|p·x| + |q·o|) + |q|·B (B the analytic kernel's bound; γ₃ counts
/// the f32 scalars too); x_c and y, each four products summed, gain the weighted errors of what they sum plus
/// γ₅ of the sum of their terms' magnitudes.
#[test]
fn multistep_solvers_on_the_gpu_match_the_f64_loop() {
    let (data, x) = rounded_gaussian_and_start(64);
    let lin = linear();
    let levels = samplers::vp_levels(&lin, &trailing(12)).unwrap();
    let end = NoiseLevel::CLEAN;
    let round = |l: &NoiseLevel| NoiseLevel {
        alpha: r(l.alpha),
        sigma: r(l.sigma),
        ..*l
    };
    for plan in [
        samplers::dpm_solver_2m(&levels, end, true, X0Bound::None).unwrap(),
        samplers::unipc_bh2(&levels, end, false, X0Bound::None).unwrap(),
    ] {
        let (_, got) = run_from(&plan, &data, Prediction::Epsilon, &x);
        let mut xs = diffuse::reference::to_f64(&x);
        let n = xs.len();
        let mut state = diffuse::reference::step::MultistepState::zeros(n);
        // Errors of x, s, m₁, m₂.
        let (mut ex, mut es, mut e1, mut e2) =
            (vec![0.0; n], vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for step in &plan.steps {
            let level = round(step.level());
            let FoldedStep::Multistep(k) = step.fold(Prediction::Epsilon) else {
                panic!("multistep plans hold multistep steps")
            };
            let o = data.predict_batch(&xs, &level, Prediction::Epsilon);
            let model_bound = analytic_predict_bound(&data, &xs, &level, Prediction::Epsilon);
            let (slope, _) = data.coefficients(0, &level, Prediction::Epsilon);
            let old = state.clone();
            let y = diffuse::reference::step::step_multistep(&xs, &o, &k, &mut state, data.dim());
            let c = k.corrector;
            for i in 0..n {
                let m = state.m1[i];
                let em = (k.p + k.q * slope).abs() * ex[i]
                    + gamma(3) * ((k.p * xs[i]).abs() + (k.q * o[i]).abs())
                    + k.q.abs() * model_bound[i];
                let exc = match c {
                    Some(c) => {
                        let w = c.history;
                        c.s.abs() * es[i]
                            + w.m.abs() * em
                            + w.m1.abs() * e1[i]
                            + w.m2.abs() * e2[i]
                            + gamma(5)
                                * ((c.s * old.s[i]).abs()
                                    + (w.m * m).abs()
                                    + (w.m1 * old.m1[i]).abs()
                                    + (w.m2 * old.m2[i]).abs())
                    }
                    None => ex[i],
                };
                let b = k.b;
                let ey = k.a.abs() * exc
                    + b.m.abs() * em
                    + b.m1.abs() * e1[i]
                    + b.m2.abs() * e2[i]
                    + gamma(5)
                        * ((k.a * state.s[i]).abs()
                            + (b.m * m).abs()
                            + (b.m1 * old.m1[i]).abs()
                            + (b.m2 * old.m2[i]).abs());
                (ex[i], es[i], e2[i], e1[i]) = (ey, exc, e1[i], em);
            }
            xs = y;
        }
        let widest = ex.iter().cloned().fold(0.0, f64::max);
        // 3·10⁻⁵ and 2·10⁻⁵ on samples of size ~1: tight enough that a wrong state or weight cannot hide in it.
        assert!(
            widest < 1e-4,
            "{}: the bound {widest:e} is too wide to test",
            plan.name
        );
        common::assert_close(&format!("{} GPU vs f64", plan.name), &got, &xs, |i| ex[i]);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Zero terminal SNR (Lin et al. 2024): a v-model on the rescaled schedule, sampled by every VP sampler.
// ---------------------------------------------------------------------------------------------------------------

/// Every VP sampler's plan on `schedule` with `s` trailing steps (DDPM also with clipping, DDIM deterministic and
/// stochastic), and the multistep and Karras solvers over those steps or as many Karras levels.
fn vp_plans(schedule: &Schedule, s: usize) -> Vec<Plan> {
    let list = timesteps(schedule.num_steps(), s, Spacing::Trailing).unwrap();
    let clip = Clip::Clamp { lo: -3.0, hi: 3.0 };
    let levels = samplers::vp_levels(schedule, &list).unwrap();
    let karras = samplers::karras_levels(schedule, s).unwrap();
    let end = NoiseLevel::CLEAN;
    vec![
        samplers::dpm_solver_2m(&levels, end, true, X0Bound::None).unwrap(),
        samplers::unipc_bh2(&levels, end, true, X0Bound::None).unwrap(),
        samplers::dpm_solver_2m(&karras, end, true, X0Bound::Fixed { lo: -3.0, hi: 3.0 }).unwrap(),
        // (Heun's last step is Euler's; Euler itself is first order, −25 % in the variance here at 50 levels.)
        samplers::heun(&karras, end, Start::Sigma).unwrap(),
        samplers::ddpm(schedule, &list, DdpmVariance::Beta, Clip::None).unwrap(),
        samplers::ddpm(schedule, &list, DdpmVariance::PosteriorBeta, clip).unwrap(),
        samplers::ddim(schedule, &list, 0.0, Clip::None).unwrap(),
        samplers::ddim(schedule, &list, 1.0, clip).unwrap(),
        samplers::euler_maruyama(schedule, &list).unwrap(),
        ode(schedule, &list).unwrap(),
        samplers::predictor_corrector(
            Process::Vp {
                schedule,
                timesteps: &list,
            },
            1,
            0.16,
        )
        .unwrap(),
    ]
}

#[test]
fn every_sampler_gives_finite_samples_of_a_v_model_on_a_zero_terminal_snr_schedule() {
    // The samplers see the rescaled schedule with its terminal ᾱ = 0 raised to a tiny positive value
    // (`Schedule::for_sampling`); folded for a v output, every scalar must be finite, and so every sample. The
    // affine plans must also reproduce the Gaussian data: their exact moments (`gaussian_moments_after`) lie within
    // 0.02·s of the mean and 12 % of the variance (the worst, rounded up: DDIM η = 0 with 50 steps on the linear
    // rescale, −11.2 %; the mean's worst, predictor–corrector, 0.017·s), and the GPU's samples within 5 SE of them.
    use diffuse::diffusion::NamedSchedule;
    // 50 trailing steps jump from T−1; on the linear rescale 1000 steps also walk T−1 → T−2, where ᾱ_998 is
    // below diffusers' 2⁻²⁴ (the case `for_sampling` halves ᾱ_998 for).
    for (named, s) in [
        (NamedSchedule::Linear, 50),
        (NamedSchedule::Cosine, 50),
        (NamedSchedule::Linear, 1000),
    ] {
        let exact = named.build(1000, true).unwrap();
        assert_eq!(exact.alphas_cumprod[999], 0.0);
        for plan in vp_plans(&exact.for_sampling(), s) {
            for step in &plan.steps {
                let finite = match step.fold(Prediction::Velocity) {
                    FoldedStep::Linear { a, b, c } => [a, b, c].iter().all(|v| v.is_finite()),
                    FoldedStep::Clipped(k) => {
                        [k.p, k.q, k.u, k.w, k.v, k.c].iter().all(|v| v.is_finite())
                    }
                    FoldedStep::Multistep(m) => {
                        let c = m
                            .corrector
                            .map_or([0.0; 4], |c| [c.s, c.history.m, c.history.m1, c.history.m2]);
                        [m.p, m.q, m.a, m.b.m, m.b.m1, m.b.m2]
                            .iter()
                            .chain(&c)
                            .all(|v| v.is_finite())
                    }
                    FoldedStep::Heun { a1, b1, a, b, b2 } => {
                        [a1, b1, a, b, b2].iter().all(|v| v.is_finite())
                    }
                };
                assert!(
                    finite,
                    "{named} {}: {step:?} folds to non-finite scalars",
                    plan.name
                );
            }
            let data = gaussian();
            if gaussian_moments_after(&data, &plan).is_ok() {
                check_gaussian(&plan, Prediction::Velocity, 0.02, 0.12);
            } else {
                // Clipped plans are not affine: no exact moments, but the samples must be finite.
                let x = sample(&plan, &data, Prediction::Velocity, 5);
                assert!(
                    x.iter().all(|v| v.is_finite()),
                    "{named} {}: non-finite samples",
                    plan.name
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The score-based models' own processes: the plans `diffuse sample` builds for them, with the exact model
// predicting what the wrapped network predicts (ε; x₀ for EDM's denoiser).
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn score_based_processes_sample_the_data_on_their_own_levels() {
    use diffuse::diffusion::process::Objective;
    use diffuse::sample::spec::{LangevinStep, SamplerKind, SamplerSpec};
    // (objective, sampler, steps, mean bias in s, variance bias): the discretised samplers' errors, measured by
    // gaussian_moments_after and rounded up. The mean's is the prior's: N(0, σ_max²·I) (VE-type) or N(0, I) (VP)
    // in place of the marginal at the first level, whose mean the flow carries down (VE 0.020·s, EDM 0.013·s,
    // VP α(1)·μ = 0.007·s). The variance's is each grid's: Karras's coarse first levels for EDM's 18-level Heun
    // (+11 %, as for DDPM models in `multistep_and_karras_samples_reproduce_the_data`), Euler's first order.
    let cases = [
        ("ncsn", SamplerKind::Heun, 60, 0.025, 0.03),
        ("ncsn", SamplerKind::Ode, 40, 0.025, 0.015),
        ("ve", SamplerKind::Heun, 60, 0.025, 0.03),
        ("ve", SamplerKind::DpmSolver, 40, 0.025, 0.007),
        ("vp", SamplerKind::Ode, 40, 0.008, 0.012),
        ("vp", SamplerKind::Unipc, 30, 0.008, 0.013),
        ("vp", SamplerKind::DpmSolver, 20, 0.008, 0.05),
        ("subvp", SamplerKind::Euler, 200, 0.008, 0.045),
        ("subvp", SamplerKind::DpmSolver, 40, 0.008, 0.033),
        ("edm", SamplerKind::Heun, 36, 0.016, 0.13),
        ("edm", SamplerKind::Euler, 200, 0.016, 0.035),
        // The stochastic samplers: reverse diffusion (VE-type) or Euler–Maruyama (VP-type), alone or with one
        // corrector step; annealed Langevin at ε = σ² (VP-type: the chains lag the moving mean, as on DDPM models).
        ("ncsn", SamplerKind::Sde, 200, 0.002, 0.055),
        ("ve", SamplerKind::Pc, 100, 0.002, 0.06),
        ("vp", SamplerKind::Sde, 200, 0.008, 0.01),
        ("subvp", SamplerKind::Pc, 100, 0.02, 0.01),
        ("edm", SamplerKind::Sde, 200, 0.002, 0.07),
        ("ncsn", SamplerKind::Langevin, 1000, 0.002, 0.03),
        ("vp", SamplerKind::Langevin, 1000, 0.035, 0.09),
        ("edm", SamplerKind::Langevin, 1000, 0.002, 0.05),
    ];
    for (name, kind, steps, mean_bias, var_bias) in cases {
        let objective: Objective = name.parse().unwrap();
        let mut plan = SamplerSpec::new(kind, steps)
            .plan_on_process(&objective)
            .unwrap();
        plan.name = format!("{name}: {}", plan.name);
        check_gaussian(&plan, objective.prediction().unwrap(), mean_bias, var_bias);
        check_mixture(&plan, objective.prediction().unwrap());
    }
    // NCSNv2's step rule (ε = 0.082·σ² here) sizes the steps for the noise's many directions: along the data's few,
    // whose variance s² dwarfs σ² at the small levels, the chains mix in about s²/ε steps, so the variance they
    // had where σ ~ s stays: +27 % on this data, which Tweedie's final step does not remove.
    let spec = SamplerSpec {
        langevin_step: LangevinStep::Ncsnv2,
        ..SamplerSpec::new(SamplerKind::Langevin, 1000)
    };
    let plan = spec.plan_on_process(&Objective::NCSN).unwrap();
    check_gaussian(&plan, Prediction::Epsilon, 0.002, 0.33);
}

#[test]
fn heun_with_churn_samples_the_data() {
    use diffuse::diffusion::process::Objective;
    use diffuse::diffusion::samplers::ChurnSettings;
    use diffuse::sample::spec::{SamplerKind, SamplerSpec};
    // EDM's stochastic sampler with their ImageNet-64 settings, 36 levels, on an EDM model's levels and on a DDPM
    // model's Karras levels: the exact moments (gaussian_moments_after adds each churn's variance) against the
    // data, and the GPU's samples against those (so a churn the loop dropped or misplaced fails by many SE). The
    // churn removes the prior's mean bias (0.006·s without it, 10⁻⁵·s with), and at γ = √2 − 1 over 36 levels adds
    // variance: +9.4 % (EDM), +10.2 % (DDPM), of which S_noise = 1.003 is 0.6 % (without churn: +2.5 %, +2.7 %).
    let spec = SamplerSpec {
        churn: ChurnSettings {
            s_churn: 40.0,
            s_min: 0.05,
            s_max: 50.0,
            s_noise: 1.003,
        },
        ..SamplerSpec::new(SamplerKind::Heun, 72)
    };
    for plan in [
        spec.plan_on_process(&Objective::EDM).unwrap(),
        spec.plan(&linear()).unwrap(),
    ] {
        assert!(
            plan.steps.iter().any(|s| s.churn().is_some()),
            "{}",
            plan.name
        );
        check_gaussian(&plan, Prediction::Sample, 0.001, 0.12);
        check_mixture(&plan, Prediction::Sample);
    }
    // Churn is Heun's: another sampler refuses it.
    let euler = SamplerSpec {
        kind: SamplerKind::Euler,
        ..spec
    };
    assert!(euler
        .plan(&linear())
        .unwrap_err()
        .to_string()
        .contains("--sampler heun"));
}
