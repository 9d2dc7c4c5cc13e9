//! Stochastic samplers of the score SDEs (Song et al. 2021): Euler–Maruyama on the reverse VP SDE, annealed
//! Langevin dynamics, and predictor–corrector. (Their probability-flow ODE is solved in `ode.rs`.)

use super::level::NoiseLevel;
use super::plan::{Plan, Step};
use super::spacing::{alpha_bar_pairs, check_timesteps};
use crate::diffusion::process::Sde;
use crate::diffusion::schedule::{Schedule, VeSchedule};
use crate::error::{Error, Result};

/// Euler–Maruyama on the reverse-time VP SDE (Song et al. 2021, eq. 6 with the VP drift):
///
/// ```text
///   forward:  dx = −½β(t)·x dt + √β(t) dW           (the Ornstein–Uhlenbeck form of DDPM)
///   reverse:  dx = [−½β(t)·x − β(t)·s(x, t)] dt + √β(t) dW̄,   s = ∇ log p_t = −ε̂/√(1 − ᾱ_t)
///   one step back over an interval whose integrated rate is B = ∫β dt = ln(ᾱ_prev/ᾱ_t) (≈ β_t for one index):
///   x_prev = x + (B/2)·x + B·s + √B·z
///   ⇒ a = 1 + B/2,  b = −B/√(1 − ᾱ_t),  c = √B  (c = 0 for the last step: Song's samplers return the mean)
/// ```
/// B from ᾱ makes any discrete schedule a continuous one (ᾱ(t) = exp(−∫β)); for the linear schedule it is
/// Song's VP SDE with β(t) = T·β_t. First order: the bias shrinks like the step, so give it 100+ steps.
pub fn euler_maruyama(schedule: &Schedule, list: &[usize]) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), list)?;
    let pairs = alpha_bar_pairs(schedule, list);
    let last = pairs.len() - 1;
    let steps = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (t, ab, ab_prev))| {
            let big_b = (ab_prev / ab).ln();
            Step::Linear {
                level: NoiseLevel::vp(schedule, t),
                a: 1.0 + big_b / 2.0,
                b: -big_b / (1.0 - ab).sqrt(),
                c: if i == last { 0.0 } else { big_b.sqrt() },
            }
        })
        .collect();
    Ok(Plan {
        name: format!("euler-maruyama {} steps", list.len()),
        init_scale: 1.0,
        steps,
    })
}

/// Annealed Langevin dynamics (Song & Ermon 2019, algorithm 1) on the VE noise levels σ_1 > … > σ_L:
///
/// ```text
///   x ← σ_1·z  (the VE prior N(0, σ_1²I); NCSN drew uniform noise)
///   for i = 1 … L, M times:   x ← x + (ε_i/2)·s(x, σ_i) + √ε_i·z,   ε_i = ε·σ_i²/σ_L²
///   in ε-space (s = −ε̂/σ_i):  a = 1,  b = −ε_i/(2σ_i),  c = √ε_i
///   optionally, the denoising step of Jolicoeur-Martineau et al. 2021 / NCSNv2:  x ← x + σ_L²·s(x, σ_L)
///   (Tweedie's E[x₀ | x]):  a = 1, b = −σ_L, c = 0
/// ```
pub fn annealed_langevin(
    levels: &VeSchedule,
    steps_per_level: usize,
    epsilon: f64,
    denoise_last: bool,
) -> Result<Plan> {
    if steps_per_level == 0 || epsilon.is_nan() || epsilon <= 0.0 {
        return Err(Error::Usage(format!(
            "annealed Langevin needs ≥ 1 step per level and ε > 0, got {steps_per_level} and {epsilon}"
        )));
    }
    let sigma_last = *levels.sigmas.last().expect("a VE schedule is not empty");
    let mut steps = Vec::new();
    for &sigma in &levels.sigmas {
        let eps_i = epsilon * sigma * sigma / (sigma_last * sigma_last);
        for _ in 0..steps_per_level {
            steps.push(langevin_step(NoiseLevel::ve(sigma), eps_i));
        }
    }
    if denoise_last {
        steps.push(Step::Linear {
            level: NoiseLevel::ve(sigma_last),
            a: 1.0,
            b: -sigma_last,
            c: 0.0,
        });
    }
    Ok(Plan {
        name: format!(
            "annealed langevin {} levels × {steps_per_level}",
            levels.sigmas.len()
        ),
        init_scale: levels.sigmas[0],
        steps,
    })
}

/// Annealed Langevin dynamics on the noise levels of a VP (DDPM) model: the same algorithm as
/// [`annealed_langevin`], run on the VP marginals p_t (x_t = √ᾱ_t·x₀ + σ_t·z, σ_t = √(1 − ᾱ_t)) at the given
/// decreasing timesteps, so that a DDPM checkpoint can be sampled with Langevin dynamics alone (no predictor):
///
/// ```text
///   x ← z  (p_T ≈ N(0, I))
///   for each t, M times:   x ← x + (ε_t/2)·s(x, t) + √ε_t·z,   ε_t = r·σ_t²,   s = −ε̂/σ_t
///   optionally, Tweedie's denoising at the last level:   x ← (x − σ_t·ε̂)/√ᾱ_t  (E[x₀ | x_t])
/// ```
/// r = ε_t/σ_t² is the step relative to the level's noise variance (NCSN's ε = 2·10⁻⁵ at σ_L = 0.01 is r = 0.2).
pub fn annealed_langevin_vp(
    schedule: &Schedule,
    timesteps: &[usize],
    steps_per_level: usize,
    relative_step: f64,
    denoise_last: bool,
) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), timesteps)?;
    if steps_per_level == 0 || relative_step.is_nan() || relative_step <= 0.0 {
        return Err(Error::Usage(format!(
            "annealed Langevin needs ≥ 1 step per level and a step > 0, got {steps_per_level} and {relative_step}"
        )));
    }
    let levels: Vec<NoiseLevel> = timesteps
        .iter()
        .map(|&t| NoiseLevel::vp(schedule, t))
        .collect();
    let mut plan =
        annealed_langevin_levels(&levels, 1.0, steps_per_level, relative_step, denoise_last)?;
    plan.name = format!(
        "annealed langevin (VP) {} levels × {steps_per_level}",
        timesteps.len()
    );
    Ok(plan)
}

/// x ← x + (δ/2)·s(x, level) + √δ·z with s = −ε̂/sigma: the Langevin update with step δ (NCSN's convention; Song et
/// al. 2021 write x + ε·s + √(2ε)·z, i.e. δ = 2ε).
pub fn langevin_step(level: NoiseLevel, delta: f64) -> Step {
    Step::Linear {
        level,
        a: 1.0,
        b: -delta / (2.0 * level.sigma),
        c: delta.sqrt(),
    }
}

/// The process a predictor–corrector sampler runs on.
#[derive(Clone, Copy, Debug)]
pub enum Process<'a> {
    /// Variance preserving: a schedule and a decreasing timestep list.
    Vp {
        schedule: &'a Schedule,
        timesteps: &'a [usize],
    },
    /// Variance exploding: the NCSN levels σ_1 > … > σ_L.
    Ve { levels: &'a VeSchedule },
    /// A score SDE in continuous time at strictly decreasing times in (0, 1]; the last step goes to t = 0.
    Sde { sde: &'a Sde, times: &'a [f64] },
}

/// Predictor–corrector sampling (Song et al. 2021, algorithm 2/3): at each level, `corrector_steps` Langevin
/// corrector steps at that level, then one reverse-diffusion predictor step to the next level.
///
/// ```text
///   predictor, VP (α = ᾱ_t/ᾱ_prev, β = 1 − α):  x ← (2 − √α)·x + β·s + √β·z
///   predictor, VE (σ_prev = 0 after σ_L):       x ← x + (σ_i² − σ_prev²)·s + √(σ_i² − σ_prev²)·z
///   predictor, continuous SDE (Euler–Maruyama on the reverse SDE over Δt = t − t_next, t_next = 0 after the last):
///                                              x ← (1 − f(t)·Δt)·x + g(t)²·Δt·s + √(g(t)²·Δt)·z
///   corrector:  x ← x + (δ/2)·s + √δ·z,  δ = 2·(2α_t·r²·σ_t²)
/// ```
/// For the continuous SDEs α_t is score_sde's: 1 − β(t)·Δt for VP and sub-VP (its discretised α), 1 for VE.
/// Song's corrector sets its step per sample from the norms, ε = 2α(r·‖z‖/‖s‖)²; with s = −ε̂/σ_t and ‖ε̂‖ ≈ ‖z‖
/// (a unit-variance ε̂) that is 2α·r²·σ_t², with σ_t² = 1 − ᾱ_t (VP) or σ_i² (VE, α = 1). We use that expected
/// value, so every step stays a fixed scalar (δ above is NCSN's step, twice Song's ε). r = `snr` (Song: 0.16).
/// The last predictor step adds no noise (Song's `denoise = True`).
pub fn predictor_corrector(process: Process, corrector_steps: usize, snr: f64) -> Result<Plan> {
    if snr.is_nan() || snr <= 0.0 {
        return Err(Error::Usage(format!(
            "the corrector's signal-to-noise ratio must be positive, got {snr}"
        )));
    }
    let mut steps = Vec::new();
    let init_scale;
    match process {
        Process::Vp {
            schedule,
            timesteps,
        } => {
            check_timesteps(schedule.num_steps(), timesteps)?;
            init_scale = 1.0;
            let pairs = alpha_bar_pairs(schedule, timesteps);
            let last = pairs.len() - 1;
            for (i, (t, ab, ab_prev)) in pairs.into_iter().enumerate() {
                let level = NoiseLevel::vp(schedule, t);
                let alpha = ab / ab_prev;
                let beta = 1.0 - alpha;
                let delta = 2.0 * (2.0 * alpha * snr * snr * (1.0 - ab));
                for _ in 0..corrector_steps {
                    steps.push(langevin_step(level, delta));
                }
                // s = −ε̂/√(1 − ᾱ_t)
                steps.push(Step::Linear {
                    level,
                    a: 2.0 - alpha.sqrt(),
                    b: -beta / (1.0 - ab).sqrt(),
                    c: if i == last { 0.0 } else { beta.sqrt() },
                });
            }
        }
        Process::Ve { levels } => {
            init_scale = levels.sigmas[0];
            let n = levels.sigmas.len();
            for (i, &sigma) in levels.sigmas.iter().enumerate() {
                let level = NoiseLevel::ve(sigma);
                let delta = 2.0 * (2.0 * snr * snr * sigma * sigma);
                for _ in 0..corrector_steps {
                    steps.push(langevin_step(level, delta));
                }
                let sigma_prev = if i + 1 < n { levels.sigmas[i + 1] } else { 0.0 };
                let var = sigma * sigma - sigma_prev * sigma_prev;
                steps.push(Step::Linear {
                    level,
                    a: 1.0,
                    b: -var / sigma,
                    c: if i + 1 == n { 0.0 } else { var.sqrt() },
                });
            }
        }
        Process::Sde { sde, times } => {
            check_times(times)?;
            init_scale = sde.prior_std();
            for (i, &t) in times.iter().enumerate() {
                let next = times.get(i + 1).copied().unwrap_or(0.0);
                let dt = t - next;
                let (alpha, sigma) = sde.marginal(t);
                let level = NoiseLevel { t, alpha, sigma };
                let (f, g2) = sde.drift_diffusion2(t);
                // −2f = β(t) for VP and sub-VP, 0 for VE.
                let corrector_alpha = 1.0 + 2.0 * f * dt;
                let delta = 2.0 * (2.0 * corrector_alpha * snr * snr * sigma * sigma);
                for _ in 0..corrector_steps {
                    steps.push(langevin_step(level, delta));
                }
                let last = i + 1 == times.len();
                steps.push(Step::Linear {
                    level,
                    a: 1.0 - f * dt,
                    b: -g2 * dt / sigma,
                    c: if last { 0.0 } else { (g2 * dt).sqrt() },
                });
            }
        }
    }
    Ok(Plan {
        name: format!("predictor-corrector ×{corrector_steps} r={snr}"),
        init_scale,
        steps,
    })
}

/// Times for [`Process::Sde`]: strictly decreasing, in (0, 1].
fn check_times(times: &[f64]) -> Result<()> {
    let ok = !times.is_empty()
        && times.iter().all(|&t| t > 0.0 && t <= 1.0)
        && times.windows(2).all(|w| w[1] < w[0]);
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(
            "an SDE sampler needs strictly decreasing times in (0, 1]".to_string(),
        ))
    }
}

/// Annealed Langevin dynamics on any decreasing noise levels (α, σ) — the marginals p_σ of a VE process (α = 1)
/// or a VP one — `steps_per_level` steps at each, with step ε = r·σ², then optionally Tweedie's denoising at the last
/// level, x ← (x − σ·ε̂)/α (E[x₀ | x]). [`annealed_langevin`] is this at VE levels with r = ε/σ_L² (NCSN's step
/// rule: ε_i = ε·σ_i²/σ_L²); [`ncsnv2_relative_step`] chooses r by NCSNv2's.
pub fn annealed_langevin_levels(
    levels: &[NoiseLevel],
    init_scale: f64,
    steps_per_level: usize,
    relative_step: f64,
    denoise_last: bool,
) -> Result<Plan> {
    if levels.is_empty() || steps_per_level == 0 || relative_step.is_nan() || relative_step <= 0.0 {
        return Err(Error::Usage(format!(
            "annealed Langevin needs levels, ≥ 1 step per level and a step > 0, got {} levels, {steps_per_level} \
             steps, step {relative_step}",
            levels.len()
        )));
    }
    let mut steps = Vec::new();
    for &level in levels {
        for _ in 0..steps_per_level {
            steps.push(langevin_step(
                level,
                relative_step * level.sigma * level.sigma,
            ));
        }
    }
    if denoise_last {
        let level = levels[levels.len() - 1];
        steps.push(Step::Linear {
            level,
            a: 1.0 / level.alpha,
            b: -level.sigma / level.alpha,
            c: 0.0,
        });
    }
    Ok(Plan {
        name: format!(
            "annealed langevin {} levels × {steps_per_level}, ε = {relative_step:.3}·σ²",
            levels.len()
        ),
        init_scale,
        steps,
    })
}

/// NCSNv2's step rule (Song & Ermon 2020, technique 4): with T steps per level and levels in the ratio
/// γ = σ_{i−1}/σ_i, the relative step r = ε/σ_L² that brings the variance ratio
/// `(1 − r)^{2T}·(γ² − 2/(2 − r)) + 2/(2 − r)` closest to 1 (the paper's expression, with σ_L²·r(2 − r) for
/// σ_L² − σ_L²(1 − ε/σ_L²)²). It rarely reaches 1, so this is a minimum: a grid of 1,000 steps over (0, 1), then
/// three grids each 100 times finer about the best point so far (r to 10⁻⁹). NCSNv2's CIFAR-10 setting (L = 232 levels from 50 to 0.01, T = 5)
/// gives r = 0.0618, its ε = 6.2·10⁻⁶.
pub fn ncsnv2_relative_step(gamma: f64, steps_per_level: usize) -> Result<f64> {
    if !(gamma > 1.0 && gamma.is_finite()) || steps_per_level == 0 {
        return Err(Error::Usage(format!(
            "NCSNv2's step rule needs a level ratio γ > 1 and ≥ 1 step per level, got {gamma} and {steps_per_level}"
        )));
    }
    let t = steps_per_level as f64;
    let distance = |r: f64| {
        ((1.0 - r).powf(2.0 * t) * (gamma * gamma - 2.0 / (2.0 - r)) + 2.0 / (2.0 - r) - 1.0).abs()
    };
    let (mut centre, mut width) = (0.5, 0.5);
    for _ in 0..4 {
        let points = (0..=1000).map(|k| centre - width + 2.0 * width * k as f64 / 1000.0);
        centre = points
            .filter(|&r| r > 0.0 && r < 1.0)
            .min_by(|&a, &b| distance(a).total_cmp(&distance(b)))
            .expect("the grid meets (0, 1)");
        width /= 100.0;
    }
    Ok(centre)
}
