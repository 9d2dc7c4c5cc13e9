//! Euler and Heun on the probability-flow ODE over noise levels (Karras et al. 2022, k-diffusion).

use super::level::{check_walk, NoiseLevel};
use super::plan::{Plan, Step};
use crate::error::Result;

/// Euler's method on the probability-flow ODE in σ̃ (Karras et al. 2022, algorithm 1 without its second-order
/// correction; k-diffusion's `sample_euler` with no churn) over the n levels, then to clean data: in x̃ = x/α,
/// x̃' = x̃ + (σ̃' − σ̃)·ε̂, i.e. x' = (α'/α)·x + α'·(σ̃' − σ̃)·ε̂. n evaluations. Starts from x = σ·z at the first
/// level (k-diffusion's x̃ = σ̃_max·z). `end`: [`NoiseLevel::CLEAN`] (k-diffusion's final σ = 0) or a level at or
/// below the last.
pub fn euler_sigmas(levels: &[NoiseLevel], end: NoiseLevel) -> Result<Plan> {
    euler_or_heun(levels, end, false)
}

/// Heun's method on the same ODE and levels (Karras et al. 2022, algorithm 1; k-diffusion's `sample_heun`): an
/// Euler step to the next level, then the trapezoid of the two slopes; the last step, to clean data where ε̂ is
/// undefined, is Euler. 2n − 1 evaluations to clean data.
pub fn heun_sigmas(levels: &[NoiseLevel], end: NoiseLevel) -> Result<Plan> {
    euler_or_heun(levels, end, true)
}

fn euler_or_heun(levels: &[NoiseLevel], end: NoiseLevel, heun: bool) -> Result<Plan> {
    check_walk(levels, &end)?;
    let tilde = |l: &NoiseLevel| l.sigma / l.alpha;
    let steps = (0..levels.len())
        .map(|i| {
            let (s, t) = (levels[i], levels.get(i + 1).copied().unwrap_or(end));
            let (a, b) = (t.alpha / s.alpha, t.alpha * (tilde(&t) - tilde(&s)));
            if heun && t.sigma > 0.0 {
                Step::Heun {
                    level: s,
                    next: t,
                    a,
                    b,
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
        init_scale: levels[0].sigma,
        steps,
    })
}
