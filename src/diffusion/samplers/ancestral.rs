//! The ancestral samplers over a timestep list: DDPM and DDIM, with x̂₀-clipping.

use super::level::NoiseLevel;
use super::plan::{Clip, Plan, Step, X0Bound};
use super::spacing::{alpha_bar_pairs, check_timesteps};
use crate::diffusion::schedule::Schedule;
use crate::error::{Error, Result};

/// The variance of DDPM's reverse step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DdpmVariance {
    /// σ_t² = β_t ("fixedlarge": optimal for x₀ ~ N(0, I)).
    Beta,
    /// σ_t² = β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t) ("fixedsmall": optimal for a point mass x₀).
    PosteriorBeta,
}

/// DDPM ancestral sampling (Ho et al. 2020, algorithm 2) over a decreasing timestep list (every index for the
/// paper's sampler; a subsequence respaces the chain as improved-diffusion does: α = ᾱ_t/ᾱ_prev, β = 1 − α):
///
/// ```text
///   x_{prev} = 1/√α · (x_t − β/√(1 − ᾱ_t) · ε̂) + σ·z,   σ² = β or β̃ = β(1 − ᾱ_prev)/(1 − ᾱ_t)
///   ⇒ a = 1/√α,  b = −β/(√α·√(1 − ᾱ_t)),  c = σ  (c = 0 for the step from the last index: no noise at the end)
/// ```
/// With a `clip`, the same mean through x̂₀: x̂₀ = bound(x/√ᾱ_t − √(1/ᾱ_t − 1)·ε̂), μ̃ = coef1·x̂₀ + coef2·x with
/// coef1 = β√ᾱ_prev/(1 − ᾱ_t), coef2 = (1 − ᾱ_prev)√α/(1 − ᾱ_t) (the posterior mean of q(x_prev | x_t, x₀), as
/// diffusers' DDPMScheduler; it takes no ε̂, so [`Clip::Clamp`] and [`Clip::ClampKeepEps`] are the same here).
pub fn ddpm(
    schedule: &Schedule,
    list: &[usize],
    variance: DdpmVariance,
    clip: Clip,
) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), list)?;
    clip.check()?;
    let (bound, _) = clip.bound();
    let pairs = alpha_bar_pairs(schedule, list);
    let last = pairs.len() - 1;
    let steps = pairs
        .iter()
        .enumerate()
        .map(|(i, &(t, ab, ab_prev))| {
            let level = NoiseLevel::vp(schedule, t);
            let alpha = ab / ab_prev;
            let beta = 1.0 - alpha;
            let var = match variance {
                DdpmVariance::Beta => beta,
                DdpmVariance::PosteriorBeta => beta * (1.0 - ab_prev) / (1.0 - ab),
            };
            let c = if i == last { 0.0 } else { var.sqrt() };
            match bound {
                X0Bound::None => Step::Linear {
                    level,
                    a: 1.0 / alpha.sqrt(),
                    b: -beta / (alpha.sqrt() * (1.0 - ab).sqrt()),
                    c,
                },
                // The posterior mean takes x̂₀ and x, not ε̂: nothing to recompute.
                bound => Step::Clipped {
                    level,
                    p: (1.0 / ab).sqrt(),
                    q: -(1.0 / ab - 1.0).sqrt(),
                    bound,
                    u: beta * ab_prev.sqrt() / (1.0 - ab),
                    w: (1.0 - ab_prev) * alpha.sqrt() / (1.0 - ab),
                    v: 0.0,
                    c,
                },
            }
        })
        .collect();
    Ok(Plan {
        name: format!("ddpm {variance:?} {} steps", list.len()),
        init_scale: 1.0,
        steps,
    })
}

/// DDIM (Song, Meng & Ermon 2021, eq. 12 and 16) over a decreasing timestep list, η ∈ [0, 1]:
///
/// ```text
///   x̂₀ = (x_t − √(1 − ᾱ_t)·ε̂)/√ᾱ_t
///   σ = η·√((1 − ᾱ_prev)/(1 − ᾱ_t))·√(1 − ᾱ_t/ᾱ_prev)
///   x_prev = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ²)·ε̂ + σ·z
///   ⇒ a = √(ᾱ_prev/ᾱ_t),  b = √(1 − ᾱ_prev − σ²) − √ᾱ_prev·√(1 − ᾱ_t)/√ᾱ_t,  c = σ
/// ```
/// η = 0 is deterministic (the Euler method on the probability-flow ODE in σ = √((1−ᾱ)/ᾱ)); η = 1 over every index
/// is DDPM with σ² = β̃. The step from the last index goes to ᾱ_prev = 1 (diffusers' `set_alpha_to_one`), where
/// σ = 0. With d = √(1 − ᾱ_prev − σ²) and x̂₀ bounded by `clip`:
///
/// ```text
///   ε̂ recomputed from x̂₀ (Clip::Clamp, improved-diffusion's ddim_sample):
///       x_prev = (√ᾱ_prev − d·√ᾱ_t/√(1 − ᾱ_t))·x̂₀ + (d/√(1 − ᾱ_t))·x + σ·z
///   ε̂ kept (Clip::ClampKeepEps, Clip::Dynamic, as diffusers' DDIMScheduler):
///       x_prev = √ᾱ_prev·x̂₀ + d·ε̂ + σ·z
/// ```
pub fn ddim(schedule: &Schedule, list: &[usize], eta: f64, clip: Clip) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), list)?;
    clip.check()?;
    let (bound, recompute) = clip.bound();
    if !(0.0..=1.0).contains(&eta) {
        return Err(Error::Usage(format!(
            "DDIM's η must lie in [0, 1], got {eta}"
        )));
    }
    let steps = alpha_bar_pairs(schedule, list)
        .into_iter()
        .map(|(t, ab, ab_prev)| {
            let level = NoiseLevel::vp(schedule, t);
            let sigma = eta * ((1.0 - ab_prev) / (1.0 - ab)).sqrt() * (1.0 - ab / ab_prev).sqrt();
            // 1 − ᾱ_prev − σ² ≥ 0 in exact arithmetic (σ² ≤ 1 − ᾱ_prev); clamp the rounding.
            let dir = (1.0 - ab_prev - sigma * sigma).max(0.0).sqrt();
            let (p, q) = ((1.0 / ab).sqrt(), -(1.0 / ab - 1.0).sqrt());
            match (bound, recompute) {
                (X0Bound::None, _) => Step::Linear {
                    level,
                    a: (ab_prev / ab).sqrt(),
                    b: dir - ab_prev.sqrt() * (1.0 - ab).sqrt() / ab.sqrt(),
                    c: sigma,
                },
                (bound, true) => Step::Clipped {
                    level,
                    p,
                    q,
                    bound,
                    u: ab_prev.sqrt() - dir * ab.sqrt() / (1.0 - ab).sqrt(),
                    w: dir / (1.0 - ab).sqrt(),
                    v: 0.0,
                    c: sigma,
                },
                (bound, false) => Step::Clipped {
                    level,
                    p,
                    q,
                    bound,
                    u: ab_prev.sqrt(),
                    w: 0.0,
                    v: dir,
                    c: sigma,
                },
            }
        })
        .collect();
    Ok(Plan {
        name: format!("ddim η={eta} {} steps", list.len()),
        init_scale: 1.0,
        steps,
    })
}
