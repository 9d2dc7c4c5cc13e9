//! Where a model is evaluated ([`NoiseLevel`]) and what it outputs ([`Prediction`]), with the conversions between
//! its four kinds of output.

use crate::diffusion::schedule::Schedule;
use crate::error::{Error, Result};

/// Where the model is evaluated: `x = alpha·x₀ + sigma·ε`, and the value `t` the network is conditioned on (the
/// timestep index for VP, the noise level σ_i for VE).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseLevel {
    pub t: f64,
    pub alpha: f64,
    pub sigma: f64,
}

impl NoiseLevel {
    /// VP at index t: alpha = √ᾱ_t, sigma = √(1 − ᾱ_t).
    pub fn vp(schedule: &Schedule, t: usize) -> NoiseLevel {
        NoiseLevel {
            t: t as f64,
            alpha: schedule.sqrt_alphas_cumprod[t],
            sigma: schedule.sqrt_one_minus_alphas_cumprod[t],
        }
    }

    /// VE at level σ: alpha = 1, sigma = σ; the network is conditioned on σ.
    pub fn ve(sigma: f64) -> NoiseLevel {
        NoiseLevel {
            t: sigma,
            alpha: 1.0,
            sigma,
        }
    }
}

/// What the model outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// ε, the noise (Ho et al. 2020).
    Epsilon,
    /// x₀, the clean data.
    Sample,
    /// v = alpha·ε − sigma·x₀ (Salimans & Ho 2022; for VP alpha² + sigma² = 1).
    Velocity,
    /// The score s = ∇ₓ log p(x) = −ε/sigma (Song & Ermon 2019; for VP s = −ε/√(1 − ᾱ_t)).
    Score,
}

impl Prediction {
    /// The prediction written as `k_x·x + k_e·ε` at `level` (exact identities given x = alpha·x₀ + sigma·ε):
    /// ε = ε;  x₀ = (x − sigma·ε)/alpha;  v = alpha·ε − sigma·x₀ = −(sigma/alpha)·x + ((alpha² + sigma²)/alpha)·ε;
    /// s = −ε/sigma.
    pub fn in_terms_of_epsilon(self, level: &NoiseLevel) -> (f64, f64) {
        let (a, s) = (level.alpha, level.sigma);
        match self {
            Prediction::Epsilon => (0.0, 1.0),
            Prediction::Sample => (1.0 / a, -s / a),
            Prediction::Velocity => (-s / a, (a * a + s * s) / a),
            Prediction::Score => (0.0, -1.0 / s),
        }
    }

    /// ε̂ written as `e_x·x + e_o·o` in terms of this model's output o: (e_x, e_o).
    pub fn epsilon_from(self, level: &NoiseLevel) -> (f64, f64) {
        let (k_x, k_e) = self.in_terms_of_epsilon(level);
        (-k_x / k_e, 1.0 / k_e)
    }

    /// Converts a model output o of kind `self` into kind `to` at `level`: returns (c_x, c_o) with
    /// `to = c_x·x + c_o·o`. E.g. ε → score is (0, −1/sigma); x₀ → ε is (1/sigma, −alpha/sigma).
    pub fn convert(self, to: Prediction, level: &NoiseLevel) -> (f64, f64) {
        let (e_x, e_o) = self.epsilon_from(level);
        let (k_x, k_e) = to.in_terms_of_epsilon(level);
        (k_x + k_e * e_x, k_e * e_o)
    }
}

impl NoiseLevel {
    /// Clean data (α = 1, σ = 0): where the last step of a solver lands. The model is never evaluated there.
    pub const CLEAN: NoiseLevel = NoiseLevel {
        t: 0.0,
        alpha: 1.0,
        sigma: 0.0,
    };

    /// λ = log(α/σ), the half log-SNR that DPM-Solver and UniPC step in (+∞ at clean data).
    pub fn lambda(&self) -> f64 {
        (self.alpha / self.sigma).ln()
    }
}

/// Levels a solver walks: strictly decreasing σ/α, all with σ > 0; the end below the last of them.
pub(super) fn check_walk(levels: &[NoiseLevel], end: &NoiseLevel) -> Result<()> {
    let ratio = |l: &NoiseLevel| l.sigma / l.alpha;
    let ok = !levels.is_empty()
        && levels.iter().all(|l| l.sigma > 0.0 && l.alpha > 0.0)
        && levels.windows(2).all(|w| ratio(&w[1]) < ratio(&w[0]))
        && end.alpha > 0.0
        && end.sigma >= 0.0
        // (Karras levels end at σ_min through a power and its root: allow their rounding.)
        && ratio(end) <= ratio(&levels[levels.len() - 1]) * (1.0 + 1e-12);
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(
            "a solver needs noise levels with σ > 0 and α > 0 whose σ/α strictly decreases, ending at or below the \
             last of them"
                .to_string(),
        ))
    }
}
