//! A trained model as the samplers and the likelihood see it: evaluated at any level through its own level of the
//! same σ/α, the levels a sampler walks, and its prior.

use super::{edm_preconditioning, ncsn_sigmas, Objective, Sde};
use crate::error::{Error, Result};

/// How a trained network is evaluated at a sampler's level `x = α·x₀ + σ·ε` ([`Objective::evaluation`]): its
/// input is `input_scale·x`, it is conditioned on `c_noise`, and the prediction (of kind
/// [`Objective::prediction`]) is `out_x·x + out_f·F`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evaluation {
    pub input_scale: f64,
    pub c_noise: f64,
    pub out_x: f64,
    pub out_f: f64,
}

impl Sde {
    /// The time whose noise-to-signal ratio σ(t)/α(t) is `ratio` (> 0): the model's own level that a sampler's
    /// level with the same ratio maps to. VE: ln(ratio/σ_min)/ln(σ_max/σ_min); VP: α² = 1/(1 + ratio²); sub-VP:
    /// α = (√(ratio² + 4) − ratio)/2 (from σ = 1 − α²); then t from the quadratic −l(t) = −ln α. May lie outside
    /// [0, 1] where the ratio is outside the trained range.
    pub fn time_at_ratio(&self, ratio: f64) -> f64 {
        let from_log_alpha = |beta_min: f64, beta_max: f64, log_alpha: f64| {
            // ¼(β_max − β_min)·t² + ½β_min·t + ln α = 0, the root ≥ 0 written without cancellation.
            let (a, b, c) = (0.25 * (beta_max - beta_min), 0.5 * beta_min, log_alpha);
            if a == 0.0 {
                -c / b
            } else {
                2.0 * -c / (b + (b * b - 4.0 * a * c).sqrt())
            }
        };
        match *self {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => (ratio / sigma_min).ln() / (sigma_max / sigma_min).ln(),
            Sde::Vp { beta_min, beta_max } => {
                from_log_alpha(beta_min, beta_max, -0.5 * (ratio * ratio).ln_1p())
            }
            Sde::SubVp { beta_min, beta_max } => {
                let alpha = 2.0 / ((ratio * ratio + 4.0).sqrt() + ratio);
                from_log_alpha(beta_min, beta_max, alpha.ln())
            }
        }
    }
}

impl Objective {
    /// What the (wrapped) network predicts when sampled: ε for NCSN and the SDEs, x₀ for EDM's denoiser D; None
    /// for DDPM, whose run records its target.
    pub fn prediction(&self) -> Option<crate::diffusion::Prediction> {
        match self {
            Objective::Ddpm => None,
            Objective::Ncsn { .. } | Objective::Sde { .. } => {
                Some(crate::diffusion::Prediction::Epsilon)
            }
            Objective::Edm { .. } => Some(crate::diffusion::Prediction::Sample),
        }
    }

    /// The network evaluated at `level` (any α, σ > 0): the model's own level of the same ratio ρ = σ/α, its input
    /// x/α·(the own level's α) (times EDM's c_in), and for EDM the denoiser D = c_skip·x/α + c_out·F. None for
    /// DDPM, whose levels carry its timestep index.
    pub fn evaluation(&self, level: &crate::diffusion::NoiseLevel) -> Option<Evaluation> {
        let ratio = level.sigma / level.alpha;
        let eps = |input_scale: f64, c_noise: f64| Evaluation {
            input_scale,
            c_noise,
            out_x: 0.0,
            out_f: 1.0,
        };
        match *self {
            Objective::Ddpm => None,
            Objective::Ncsn { .. } => Some(eps(1.0 / level.alpha, ratio.ln())),
            Objective::Sde { sde, .. } => {
                let t = sde.time_at_ratio(ratio);
                Some(eps(sde.marginal(t).0 / level.alpha, sde.c_noise(t)))
            }
            Objective::Edm { sigma_data, .. } => {
                let (skip, out, c_in, c_noise) = edm_preconditioning(ratio, sigma_data);
                Some(Evaluation {
                    input_scale: c_in / level.alpha,
                    c_noise,
                    out_x: skip / level.alpha,
                    out_f: out,
                })
            }
        }
    }

    /// The range of σ/α a sampler walks, largest first: NCSN's and VE's [σ_min, σ_max], EDM's sampling range
    /// [0.002, 80] (Karras et al. 2022), VP's and sub-VP's ratios at t_min and 1. None for DDPM.
    pub fn ratio_range(&self) -> Option<(f64, f64)> {
        let ratio = |sde: &Sde, t: f64| {
            let (a, s) = sde.marginal(t);
            s / a
        };
        match self {
            Objective::Ddpm => None,
            Objective::Ncsn {
                sigma_min,
                sigma_max,
                ..
            }
            | Objective::Sde {
                sde:
                    Sde::Ve {
                        sigma_min,
                        sigma_max,
                    },
                ..
            } => Some((*sigma_max, *sigma_min)),
            Objective::Sde { sde, t_min, .. } => Some((ratio(sde, 1.0), ratio(sde, *t_min))),
            Objective::Edm { .. } => Some((EDM_SIGMA_MAX, EDM_SIGMA_MIN)),
        }
    }

    /// `n` sampling levels over [`Objective::ratio_range`], largest first, spaced as `spacing` says (EDM's own grid
    /// is Karras's). VE-type levels have α = 1; VP-type ones the process's (α, σ) at that ratio.
    pub fn sampling_levels(
        &self,
        n: usize,
        spacing: LevelSpacing,
    ) -> Result<Vec<crate::diffusion::NoiseLevel>> {
        let (hi, lo) = self
            .ratio_range()
            .ok_or_else(|| Error::Usage("DDPM's sampling levels come from its schedule".into()))?;
        if n == 0 {
            return Err(Error::Usage("sampling needs at least one step".into()));
        }
        let ratios: Vec<f64> = match (spacing, self) {
            (LevelSpacing::Karras, _) | (LevelSpacing::Process, Objective::Edm { .. }) => {
                crate::diffusion::samplers::karras_sigmas(
                    lo,
                    hi,
                    n,
                    crate::diffusion::samplers::KARRAS_RHO,
                )
            }
            (LevelSpacing::Process, Objective::Sde { sde, t_min, .. }) => (0..n)
                .map(|i| {
                    let t = 1.0 - (1.0 - t_min) * i as f64 / (n.max(2) - 1) as f64;
                    let (a, s) = sde.marginal(t);
                    s / a
                })
                .collect(),
            // Geometric in σ/α: NCSN's levels, and even steps in log-SNR.
            (LevelSpacing::LogSnr | LevelSpacing::Process, _) => ncsn_sigmas(lo, hi, n)?,
        };
        Ok(ratios.into_iter().map(|r| self.level_at_ratio(r)).collect())
    }

    /// The level of ratio σ/α = `ratio` as the process has it: α = 1 for NCSN, VE and EDM, the SDE's own α for VP
    /// and sub-VP. `t` carries the ratio (the evaluation recomputes the conditioning from α and σ).
    pub fn level_at_ratio(&self, ratio: f64) -> crate::diffusion::NoiseLevel {
        let alpha = match self {
            Objective::Sde {
                sde: sde @ (Sde::Vp { .. } | Sde::SubVp { .. }),
                ..
            } => sde.marginal(sde.time_at_ratio(ratio)).0,
            _ => 1.0,
        };
        crate::diffusion::NoiseLevel {
            t: ratio,
            alpha,
            sigma: ratio * alpha,
        }
    }

    /// Whether the prior is N(0, I) (VP, sub-VP) rather than N(0, σ_max²·I).
    pub fn unit_prior(&self) -> bool {
        matches!(
            self,
            Objective::Sde {
                sde: Sde::Vp { .. } | Sde::SubVp { .. },
                ..
            }
        )
    }
}

/// How sampling levels are spread over a process's range of σ/α.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelSpacing {
    /// Karras et al.'s: σ^(1/ρ) even, ρ = 7 (EDM, k-diffusion).
    Karras,
    /// The process's own: t even from 1 to t_min for the SDEs (score_sde's), NCSN's geometric σ, EDM's Karras σ.
    Process,
    /// Even steps in λ = log(α/σ) (DPM-Solver's `logSNR` spacing): geometric σ/α. The multistep solvers' choice:
    /// their second-order extrapolation amplifies a step much longer than the one before it, which even steps in t
    /// make at the end.
    LogSnr,
}

/// EDM's sampling range of σ (Karras et al. 2022, table 1).
pub const EDM_SIGMA_MIN: f64 = 0.002;
pub const EDM_SIGMA_MAX: f64 = 80.0;

/// What a trained network's output means, as sampling needs it: its objective and, for DDPM, the target it was
/// trained for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Trained {
    pub objective: Objective,
    pub target: crate::diffusion::Prediction,
}

impl Trained {
    /// What the sampler sees the (wrapped) model predict.
    pub fn prediction(&self) -> crate::diffusion::Prediction {
        self.objective.prediction().unwrap_or(self.target)
    }
}

/// A DDPM network trained for `target`.
impl From<crate::diffusion::Prediction> for Trained {
    fn from(target: crate::diffusion::Prediction) -> Trained {
        Trained {
            objective: Objective::Ddpm,
            target,
        }
    }
}
