//! Euler and Heun on the probability-flow ODE over a list of noise levels (Karras et al. 2022, algorithm 1;
//! k-diffusion's `sample_euler` and `sample_heun`). The levels are the one coordinate: Karras σ
//! ([`karras_levels`](super::karras_levels)) or those of a timestep list ([`vp_levels`](super::vp_levels)), which
//! makes [`heun`] the probability-flow ODE sampler of Song et al. 2021 (eq. 13) over that list.

use super::level::{check_walk, NoiseLevel};
use super::plan::{Churn, Plan, Step};
use crate::error::{Error, Result};

/// Where a solver over noise levels starts x (the plan's `init_scale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// x = z ~ N(0, I), the VP prior, as DDPM, DDIM and the multistep solvers start: for unit-variance data it is
    /// the VP marginal at any level (α² + σ² = 1).
    Prior,
    /// x = σ·z at the first level: k-diffusion's x̃ = σ̃_max·z, which leaves out the data's share α²·Var x₀.
    Sigma,
}

/// Euler's method on the probability-flow ODE in σ̃ = σ/α (Karras et al. 2022, algorithm 1 without its
/// second-order correction; k-diffusion's `sample_euler` with no churn) over the n levels, then to `end`: in
/// x̃ = x/α, x̃' = x̃ + (σ̃' − σ̃)·ε̂, i.e. x' = (α'/α)·x + α'·(σ̃' − σ̃)·ε̂. n evaluations. `end`:
/// [`NoiseLevel::CLEAN`] (k-diffusion's final σ = 0) or a level at or below the last. Over the levels of a
/// timestep list this is DDIM with η = 0 (without its clipping).
pub fn euler(levels: &[NoiseLevel], end: NoiseLevel, start: Start) -> Result<Plan> {
    euler_or_heun(levels, end, start, false, None)
}

/// Heun's method (2nd order) on the same ODE and levels (Karras et al. 2022, algorithm 1; k-diffusion's
/// `sample_heun`; diffusers' HeunDiscreteScheduler). The VP ODE dx = −½β(t)·[x + s(x, t)] dt, rewritten in x̃ = x/α
/// and σ̃ = σ/α, is dx̃/dσ̃ = ε̂(x). From a level s to the next, t:
///
/// ```text
///   Euler:  x̃' = x̃ + (σ̃_t − σ̃_s)·ε̂(x)                  ⇔  x' = a·x + b·ε̂(x),  a = α_t/α_s,  b = α_t·(σ̃_t − σ̃_s)
///   Heun:   x̃_t = x̃ + (σ̃_t − σ̃_s)·(ε̂(x) + ε̂(x'))/2    ⇔  x_t = a·x + (b/2)·(ε̂(x) + ε̂(x'))
/// ```
/// A step to clean data (σ = 0, where ε̂ is undefined) is a plain Euler step. 2n − 1 evaluations to clean data, 2n
/// to a level above it. Mind the cosine schedule: its β is clipped at 0.999, so σ̃ at index T−1 is ≈ 2·10⁴ and the
/// first Heun step spans a huge range; for Gaussian data the exact moments (`analytic::gaussian_moments_after`) over
/// S trailing timesteps come out ×108 the variance at S = 10, ×4.8 at 20, +15 % at 50 and +1.7 % at 100, while DDIM
/// (Euler) stays within 30 %. Give it ≥ 100 steps there, or a linear schedule (−0.6 % at S = 100).
pub fn heun(levels: &[NoiseLevel], end: NoiseLevel, start: Start) -> Result<Plan> {
    euler_or_heun(levels, end, start, true, None)
}

/// Karras et al.'s stochastic sampler (2022, algorithm 2; k-diffusion's `sample_heun` with `s_churn`): before each
/// Heun step from a level whose σ̃ = σ/α lies in [`s_min`, `s_max`], noise raises it to σ̂ = σ̃·(1 + γ),
/// γ = min(S_churn/n, √2 − 1) over n levels: in x̃ = x/α, x̃̂ = x̃ + S_noise·√(σ̂² − σ̃²)·z, so with α̂ the level's α at
/// σ̂ (`level_at`, the process's), x̂ = (α̂/α)·x + α̂·S_noise·√(σ̂² − σ̃²)·z; the Heun step then runs from σ̂. The last
/// step, an Euler step to clean data, never churns (EDM's S_min = 0.05 lies above its last level anyway).
///
/// [`s_min`]: ChurnSettings::s_min
/// [`s_max`]: ChurnSettings::s_max
pub fn heun_churned(
    levels: &[NoiseLevel],
    end: NoiseLevel,
    start: Start,
    churn: &ChurnSettings,
    level_at: &dyn Fn(f64) -> NoiseLevel,
) -> Result<Plan> {
    churn.validate()?;
    let mut plan = euler_or_heun(levels, end, start, true, Some((churn, level_at)))?;
    plan.name = format!("{} S_churn={}", plan.name, churn.s_churn);
    Ok(plan)
}

/// EDM's churn: S_churn (0: none), the σ̃ range it applies in, and S_noise (Karras et al. 2022, table 5: 40, 0.05,
/// 50, 1.003 for their ImageNet-64 model; k-diffusion's defaults are 0, 0, ∞, 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChurnSettings {
    pub s_churn: f64,
    pub s_min: f64,
    pub s_max: f64,
    pub s_noise: f64,
}

impl ChurnSettings {
    /// k-diffusion's defaults: no churn.
    pub const NONE: ChurnSettings = ChurnSettings {
        s_churn: 0.0,
        s_min: 0.0,
        s_max: f64::INFINITY,
        s_noise: 1.0,
    };

    fn validate(&self) -> Result<()> {
        let ok = self.s_churn >= 0.0
            && self.s_churn.is_finite()
            && self.s_min >= 0.0
            && self.s_max >= self.s_min
            && self.s_noise > 0.0
            && self.s_noise.is_finite();
        if ok {
            Ok(())
        } else {
            Err(Error::Usage(format!(
                "churn needs S_churn ≥ 0, 0 ≤ S_min ≤ S_max and S_noise > 0, got {}, {}, {}, {}",
                self.s_churn, self.s_min, self.s_max, self.s_noise
            )))
        }
    }
}

type ChurnAt<'a> = (&'a ChurnSettings, &'a dyn Fn(f64) -> NoiseLevel);

fn euler_or_heun(
    levels: &[NoiseLevel],
    end: NoiseLevel,
    start: Start,
    heun: bool,
    churn: Option<ChurnAt>,
) -> Result<Plan> {
    check_walk(levels, &end)?;
    let tilde = |l: &NoiseLevel| l.sigma / l.alpha;
    let n = levels.len() as f64;
    let steps = (0..levels.len())
        .map(|i| {
            let (mut s, t) = (levels[i], levels.get(i + 1).copied().unwrap_or(end));
            let mut pre = None;
            if let Some((c, level_at)) = churn.filter(|_| heun && t.sigma > 0.0) {
                let gamma = (c.s_churn / n).min(std::f64::consts::SQRT_2 - 1.0);
                let sigma = tilde(&s);
                if gamma > 0.0 && (c.s_min..=c.s_max).contains(&sigma) {
                    let raised = level_at(sigma * (1.0 + gamma));
                    let up = tilde(&raised);
                    pre = Some(Churn {
                        p: raised.alpha / s.alpha,
                        q: raised.alpha * c.s_noise * (up * up - sigma * sigma).sqrt(),
                    });
                    s = raised;
                }
            }
            let (a, b) = (t.alpha / s.alpha, t.alpha * (tilde(&t) - tilde(&s)));
            if heun && t.sigma > 0.0 {
                Step::Heun {
                    level: s,
                    next: t,
                    a,
                    b,
                    churn: pre,
                }
            } else {
                Step::Linear {
                    level: s,
                    a,
                    b,
                    c: 0.0,
                }
            }
        })
        .collect();
    Ok(Plan {
        name: format!(
            "{} {} levels",
            if heun { "heun" } else { "euler" },
            levels.len()
        ),
        init_scale: match start {
            Start::Prior => 1.0,
            Start::Sigma => levels[0].sigma,
        },
        steps,
    })
}
