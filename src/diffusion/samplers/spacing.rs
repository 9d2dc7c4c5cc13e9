//! Where a sampler evaluates the model: timestep lists (the DDIM spacings), and noise levels derived from them
//! ([`vp_levels`]) or from Karras et al.'s σ ([`karras_levels`]).

use super::level::NoiseLevel;
use crate::diffusion::schedule::Schedule;
use crate::error::{Error, Result};

/// How S sampling steps are spread over T training timesteps (diffusers' `timestep_spacing`). Each gives a
/// strictly decreasing list of S indices in 0 … T−1.
///
/// The default is **trailing**: it is the only spacing whose first step is index T−1, the one level where the model
/// has learned to denoise (almost) pure noise, which is what sampling starts from (x ~ N(0, I)); with S = T it is
/// every index, so DDIM with η = 1 is then exactly DDPM. Lin et al. 2024 ("Common diffusion noise schedules and
/// sample steps are flawed", table 2) recommend it for that reason. diffusers' DDIMScheduler defaults to
/// **leading** (and Stable Diffusion's configs add `steps_offset = 1`): with T = 1000 and S = 50 it starts at 980
/// (981), so a model run with diffusers' defaults and one run here with ours see different timesteps. Ask for
/// `Spacing::LEADING` to match diffusers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Spacing {
    /// diffusers "leading": k = ⌊T/S⌋; (S−1)·k, …, 2k, k, 0, each plus `steps_offset` (DDIM paper's "uniform").
    Leading { steps_offset: usize },
    #[default]
    /// diffusers "trailing": round(T − i·T/S) − 1 for i = 0 … S−1 (T/S as a float; round half to even, as numpy).
    Trailing,
    /// diffusers "linspace": round(i·(T−1)/(S−1)) for i = S−1 … 0 (half to even, as numpy's linspace + round).
    Linspace,
}

impl Spacing {
    /// diffusers' DDIMScheduler default (steps_offset 0).
    pub const LEADING: Spacing = Spacing::Leading { steps_offset: 0 };
}

/// S timestep indices out of T with `spacing`, decreasing (sampling order). 1 ≤ S ≤ T.
pub fn timesteps(num_train: usize, num_steps: usize, spacing: Spacing) -> Result<Vec<usize>> {
    if num_steps == 0 || num_steps > num_train {
        return Err(Error::Usage(format!(
            "sampling steps must be between 1 and the {num_train} training timesteps, got {num_steps}"
        )));
    }
    let (t_max, s) = (num_train as f64, num_steps as f64);
    let list: Vec<usize> = match spacing {
        Spacing::Leading { steps_offset } => {
            let ratio = num_train / num_steps;
            (0..num_steps)
                .rev()
                .map(|i| i * ratio + steps_offset)
                .collect()
        }
        Spacing::Trailing => {
            // numpy: np.arange(T, 0, −T/S) = T + i·(−T/S), then round (half to even), − 1.
            let step = -t_max / s;
            (0..num_steps)
                .map(|i| (t_max + i as f64 * step).round_ties_even() as usize - 1)
                .collect()
        }
        Spacing::Linspace => {
            if num_steps == 1 {
                vec![0]
            } else {
                // numpy: linspace(0, T−1, S) = i·((T−1)/(S−1)), the last point set to T−1 exactly.
                let step = (t_max - 1.0) / (s - 1.0);
                (0..num_steps)
                    .rev()
                    .map(|i| {
                        if i == num_steps - 1 {
                            num_train - 1
                        } else {
                            (i as f64 * step).round_ties_even() as usize
                        }
                    })
                    .collect()
            }
        }
    };
    check_timesteps(num_train, &list)?;
    Ok(list)
}

/// Any list must be non-empty, strictly decreasing and within 0 … T−1.
pub fn check_timesteps(num_train: usize, list: &[usize]) -> Result<()> {
    if list.is_empty() {
        return Err(Error::Usage("the timestep list is empty".to_string()));
    }
    if let Some(&t) = list.iter().find(|&&t| t >= num_train) {
        return Err(Error::Usage(format!(
            "timestep {t} lies outside 0 … {} (T = {num_train})",
            num_train - 1
        )));
    }
    if let Some(w) = list.windows(2).find(|w| w[1] >= w[0]) {
        return Err(Error::Usage(format!(
            "timesteps must strictly decrease, got {} then {}",
            w[0], w[1]
        )));
    }
    Ok(())
}

/// The (ᾱ_t, ᾱ_prev) pairs of a decreasing timestep list: ᾱ_prev is ᾱ of the next index in the list, and 1
/// (clean data) after the last one.
pub(super) fn alpha_bar_pairs(schedule: &Schedule, list: &[usize]) -> Vec<(usize, f64, f64)> {
    list.iter()
        .enumerate()
        .map(|(i, &t)| {
            let prev = list
                .get(i + 1)
                .map_or(1.0, |&tp| schedule.alphas_cumprod[tp]);
            (t, schedule.alphas_cumprod[t], prev)
        })
        .collect()
}

/// A VP level of a discrete schedule at any σ̃ = σ/α (k-diffusion's and diffusers' "sigma"): α = 1/√(1 + σ̃²),
/// σ = σ̃·α, and the network conditioned on the nearest training index of σ̃ (the interpolation of log σ̃ over the
/// indices that diffusers' `_sigma_to_t` does, rounded as diffusers' DPM-Solver and UniPC round it, and as
/// k-diffusion's `quantize`): the U-Net was trained on integer timesteps only.
pub fn level_at_sigma(schedule: &Schedule, sigma_tilde: f64) -> NoiseLevel {
    let alpha = 1.0 / (1.0 + sigma_tilde * sigma_tilde).sqrt();
    NoiseLevel {
        t: sigma_to_t(schedule, sigma_tilde).round(),
        alpha,
        sigma: sigma_tilde * alpha,
    }
}

/// The fractional timestep whose σ̃ is `sigma_tilde`, interpolating log σ̃ linearly between neighbouring indices
/// and clamping to [0, T−1] (diffusers' `_sigma_to_t`).
pub fn sigma_to_t(schedule: &Schedule, sigma_tilde: f64) -> f64 {
    let log_sigmas: Vec<f64> = schedule
        .alphas_cumprod
        .iter()
        .map(|ab| ((1.0 - ab) / ab).sqrt().ln())
        .collect();
    let n = log_sigmas.len();
    if n < 2 {
        return 0.0;
    }
    let log_sigma = sigma_tilde.max(1e-10).ln();
    // The last index whose log σ̃ is ≤ ours (σ̃ grows with t), at most T − 2.
    let low = log_sigmas
        .iter()
        .rposition(|&l| l <= log_sigma)
        .unwrap_or(0)
        .min(n - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    low as f64 + w
}

/// Karras et al. 2022 (eq. 5): n levels σ̃_i = (σ_max^(1/ρ) + i/(n−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, decreasing from
/// σ_max to σ_min, denser near σ_min for larger ρ (7 in the paper, k-diffusion and diffusers).
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize, rho: f64) -> Vec<f64> {
    let (lo, hi) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    (0..n)
        .map(|i| {
            let ramp = if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            };
            (hi + ramp * (lo - hi)).powf(rho)
        })
        .collect()
}

/// Karras σ̃ between the schedule's own smallest and largest (indices 0 and T−1), as VP levels.
pub fn karras_levels(schedule: &Schedule, n: usize) -> Result<Vec<NoiseLevel>> {
    let sigma = |ab: f64| ((1.0 - ab) / ab).sqrt();
    let ab = &schedule.alphas_cumprod;
    let (lo, hi) = (sigma(ab[0]), sigma(ab[ab.len() - 1]));
    if n == 0 || !(hi.is_finite() && lo > 0.0) {
        return Err(Error::Usage(format!(
            "Karras noise levels need ≥ 1 step and a schedule with 0 < σ̃ < ∞ at both ends, got {n} steps and \
             σ̃ from {lo} to {hi}"
        )));
    }
    Ok(karras_sigmas(lo, hi, n, KARRAS_RHO)
        .into_iter()
        .map(|s| level_at_sigma(schedule, s))
        .collect())
}

/// ρ of Karras et al.'s noise levels.
pub const KARRAS_RHO: f64 = 7.0;

/// VP levels at the indices of a decreasing timestep list.
pub fn vp_levels(schedule: &Schedule, list: &[usize]) -> Result<Vec<NoiseLevel>> {
    check_timesteps(schedule.num_steps(), list)?;
    Ok(list.iter().map(|&t| NoiseLevel::vp(schedule, t)).collect())
}
