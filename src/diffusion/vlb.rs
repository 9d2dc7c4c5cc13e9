//! The variational bound of a DDPM in bits per dimension (Ho et al. 2020, eq. 5; improved-diffusion's
//! `_vb_terms_bpd` and `calc_bpd_loop`), for 8-bit data scaled to [−1, 1]. No wgpu here; shaders/vlb.wgsl computes
//! the terms on the GPU.
//!
//! In the indices of `timestep.rs` (index t = paper step t + 1), for one data point x₀ and x_t ~ q(x_t | x₀):
//!
//! ```text
//!   L = L_T + Σ_{t=1}^{T−1} L_t + L_0                                         (nats; / (D·ln 2) for bits/dim)
//!   L_T = KL(q(x_{T−1} | x₀) ‖ N(0, I))          = Σ_d ½·(−1 − ln(1 − ᾱ) + (1 − ᾱ) + ᾱ·x₀²),  ᾱ = ᾱ_{T−1}
//!   L_t = KL(q(x_{t−1} | x_t, x₀) ‖ p(x_{t−1} | x_t))
//!       = Σ_d ½·(−1 + ln σ_t² − ln β̃_t + β̃_t/σ_t² + (μ̃ − μ_θ)²/σ_t²)
//!       with μ̃ − μ_θ = coef1_t·(x₀ − x̂₀)   (both means are coef1·x₀ + coef2·x_t, with x₀ or x̂₀)
//!       = kl_const_t + kl_scale_t·Σ_d (x₀ − x̂₀)²
//!   L_0 = −ln p(x₀ | x at index 0) = −Σ_d ln ∫_{bin(x₀)} N(y; x̂₀, σ_0²) dy     (the discretised decoder)
//!       bins [x₀ − 1/255, x₀ + 1/255], the outermost open to ∓∞; the decoder's mean is the posterior mean at
//!       index 0, coef1_0·x̂₀ + coef2_0·x = x̂₀ (coef1_0 = 1, coef2_0 = 0).
//! ```
//!
//! σ_t² is the model's fixed variance: β̃_t ("fixed small") or β_t ("fixed large"); at index 0 both use β̃ of
//! index 1 (β̃_0 = 0), as improved-diffusion does. x̂₀ is the model's prediction of x₀, from any output kind.
//! E over the data of L ≥ E[−log p_θ(x₀)] ≥ the entropy of the data (the exact NLL of the best model).

use crate::diffusion::analytic::GaussianMixture;
use crate::diffusion::samplers::{DdpmVariance, NoiseLevel, Prediction};
use crate::diffusion::schedule::Schedule;
use crate::error::{Error, Result};

/// Half the width of an 8-bit bin in [−1, 1].
pub const BIN_HALF_WIDTH: f64 = 1.0 / 255.0;
/// x₀ at or beyond these is the lowest / highest bin, open to −∞ / +∞ (improved-diffusion's ±0.999).
pub const EDGE: f64 = 0.999;

/// The per-timestep scalars of the bound, in f64.
#[derive(Clone, Debug)]
pub struct VlbCoefficients {
    /// ½·(−1 + ln σ_t² − ln β̃_t + β̃_t/σ_t²), t ≥ 1 (index 0 unused).
    pub kl_const: Vec<f64>,
    /// ½·coef1_t²/σ_t², t ≥ 1.
    pub kl_scale: Vec<f64>,
    /// x̂₀ = x0_from_x·x_t + x0_from_output·o for the model's output kind.
    pub x0_from_x: Vec<f64>,
    pub x0_from_output: Vec<f64>,
    /// σ_0, the decoder's standard deviation: √β̃ of index 1.
    pub decoder_std: f64,
    /// L_T = prior_const + prior_scale·x₀² per coordinate.
    pub prior_const: f64,
    pub prior_scale: f64,
}

impl VlbCoefficients {
    pub fn new(
        schedule: &Schedule,
        variance: DdpmVariance,
        prediction: Prediction,
    ) -> Result<VlbCoefficients> {
        let t_max = schedule.num_steps();
        if t_max < 2 {
            return Err(Error::Usage(
                "the variational bound needs a schedule of at least 2 timesteps".to_string(),
            ));
        }
        let mut kl_const = vec![0.0; t_max];
        let mut kl_scale = vec![0.0; t_max];
        for t in 1..t_max {
            let log_post = schedule.posterior_variance[t].ln();
            let log_model = match variance {
                DdpmVariance::PosteriorBeta => log_post,
                DdpmVariance::Beta => schedule.betas[t].ln(),
            };
            kl_const[t] = 0.5 * (-1.0 + log_model - log_post + (log_post - log_model).exp());
            kl_scale[t] = 0.5 * schedule.posterior_mean_coef1[t].powi(2) * (-log_model).exp();
        }
        let (x0_from_x, x0_from_output): (Vec<f64>, Vec<f64>) = (0..t_max)
            .map(|t| x0_from(prediction, &NoiseLevel::vp(schedule, t)))
            .unzip();
        if let Some(t) =
            (0..t_max).find(|&t| !(x0_from_x[t].is_finite() && x0_from_output[t].is_finite()))
        {
            return Err(Error::Usage(format!(
                "a {prediction:?}-prediction model says nothing about x₀ at timestep {t}, where ᾱ = {} (a \
                 zero-terminal-SNR schedule): its bound is undefined. Train such schedules with v or x₀ prediction",
                schedule.alphas_cumprod[t]
            )));
        }
        let ab = schedule.alphas_cumprod[t_max - 1];
        Ok(VlbCoefficients {
            kl_const,
            kl_scale,
            x0_from_x,
            x0_from_output,
            decoder_std: schedule.posterior_variance[1].sqrt(),
            prior_const: 0.5 * (-1.0 - (1.0 - ab).ln() + (1.0 - ab)),
            prior_scale: 0.5 * ab,
        })
    }

    pub fn num_steps(&self) -> usize {
        self.kl_const.len()
    }

    /// The term of index t in nats for one coordinate: L_t (t ≥ 1) or L_0, plus L_T where t = T − 1.
    pub fn term(&self, t: usize, x0: f64, x0_hat: f64) -> f64 {
        let mut term = if t == 0 {
            -discretized_gaussian_log_likelihood(x0, x0_hat, self.decoder_std)
        } else {
            self.kl_const[t] + self.kl_scale[t] * (x0 - x0_hat).powi(2)
        };
        if t == self.num_steps() - 1 {
            term += self.prior_const + self.prior_scale * x0 * x0;
        }
        term
    }
}

/// x̂₀ = c_x·x + c_o·o for a model output o of kind `prediction` at `level`: (c_x, c_o). For x₀ and v in closed
/// form, finite where alpha = 0 (the last index of a zero-terminal-SNR schedule, where x = sigma·ε):
/// x = alpha·x₀ + sigma·ε and v = alpha·ε − sigma·x₀ give alpha·x − sigma·v = (alpha² + sigma²)·x₀. Through ε
/// ([`Prediction::convert`]) the same coefficients would be ∞ − ∞ there. The others through ε: an ε- or
/// score-model's x̂₀ = (x − sigma·ε̂)/alpha is infinite at alpha = 0, which the caller refuses.
pub fn x0_from(prediction: Prediction, level: &NoiseLevel) -> (f64, f64) {
    let (a, s) = (level.alpha, level.sigma);
    match prediction {
        Prediction::Sample => (0.0, 1.0),
        Prediction::Velocity => {
            let norm = a * a + s * s;
            (a / norm, -s / norm)
        }
        Prediction::Epsilon | Prediction::Score => prediction.convert(Prediction::Sample, level),
    }
}

/// Φ, the standard normal CDF, from erfc (ours below, relative error < 1.2·10⁻⁷).
pub fn normal_cdf(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// erfc by the Chebyshev fit of Numerical Recipes (`erfcc`, 2nd ed. §6.2): fractional error < 1.2·10⁻⁷ for every
/// argument, tails included. The GPU kernel uses the same fit in f32.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// ln P(bin of x₀) under N(mean, std²): the bin [x₀ − 1/255, x₀ + 1/255], open at the edges. Evaluated on the
/// side of the mean where the two CDF values are small (upper tails when the bin lies above the mean), so the
/// difference keeps its digits; P is floored at 10⁻¹² as in improved-diffusion.
pub fn discretized_gaussian_log_likelihood(x0: f64, mean: f64, std: f64) -> f64 {
    let lo = (x0 - BIN_HALF_WIDTH - mean) / std;
    let hi = (x0 + BIN_HALF_WIDTH - mean) / std;
    let p = if x0 <= -EDGE {
        normal_cdf(hi)
    } else if x0 >= EDGE {
        normal_cdf(-lo)
    } else if lo > 0.0 {
        normal_cdf(-lo) - normal_cdf(-hi)
    } else {
        normal_cdf(hi) - normal_cdf(lo)
    };
    p.max(1e-12).ln()
}

/// The 8-bit discretisation of N(mean, std²) on [−1, 1] as point masses (the data the bound is for), dropping
/// bins of probability below 10⁻¹⁰ and renormalising; also returns the exact NLL of that data, its entropy in
/// bits per coordinate.
pub fn discretized_gaussian_data(mean: f64, std: f64) -> Result<(GaussianMixture, f64)> {
    let atoms: Vec<f64> = (0..256).map(|k| 2.0 * k as f64 / 255.0 - 1.0).collect();
    let mass = |x: f64| {
        let lo = if x <= -EDGE {
            0.0
        } else {
            normal_cdf((x - BIN_HALF_WIDTH - mean) / std)
        };
        let hi = if x >= EDGE {
            1.0
        } else {
            normal_cdf((x + BIN_HALF_WIDTH - mean) / std)
        };
        hi - lo
    };
    let kept: Vec<(f64, f64)> = atoms
        .iter()
        .map(|&x| (x, mass(x)))
        .filter(|&(_, p)| p > 1e-10)
        .collect();
    let total: f64 = kept.iter().map(|(_, p)| p).sum();
    let weights: Vec<f64> = kept.iter().map(|(_, p)| p / total).collect();
    let entropy_bits = -weights.iter().map(|w| w * w.log2()).sum::<f64>();
    let data = GaussianMixture::new(
        weights,
        kept.iter().map(|&(x, _)| vec![x]).collect(),
        vec![0.0; kept.len()],
        true,
    )?;
    Ok((data, entropy_bits))
}

/// E[L]/ln 2 in bits per coordinate for the exact model of one-dimensional point-mass data (`data`, factorized,
/// D = 1), with E over x₀ taken exactly (a sum over the atoms) and over ε by the trapezoid rule with `nodes` points
/// on [−8, 8] (spectrally accurate for these smooth integrands). Also returns the variance of a Monte Carlo
/// estimate that draws one ε per (atom, t) and weights the atoms exactly: Σ_k w_k²·Σ_t Var_ε[L_t(x₀ = atom k)].
pub fn expected_bits_per_dim(
    schedule: &Schedule,
    coefficients: &VlbCoefficients,
    data: &GaussianMixture,
    nodes: usize,
) -> (f64, f64) {
    let h = 16.0 / (nodes - 1) as f64;
    let quad: Vec<(f64, f64)> = (0..nodes)
        .map(|i| {
            let e = -8.0 + h * i as f64;
            let w = if i == 0 || i == nodes - 1 { 0.5 } else { 1.0 };
            (
                e,
                w * h * (-0.5 * e * e).exp() / (2.0 * std::f64::consts::PI).sqrt(),
            )
        })
        .collect();
    let (mut mean, mut var) = (0.0, 0.0);
    for (k, &w_k) in data.weights.iter().enumerate() {
        let x0 = data.means[k][0];
        let (mut total, mut total_var) = (0.0, 0.0);
        for t in 0..schedule.num_steps() {
            let level = NoiseLevel::vp(schedule, t);
            let (mut m1, mut m2) = (0.0, 0.0);
            for &(e, w) in &quad {
                let x = level.alpha * x0 + level.sigma * e;
                let x0_hat = posterior_mean_1d(data, x, &level);
                let term = coefficients.term(t, x0, x0_hat);
                m1 += w * term;
                m2 += w * term * term;
            }
            total += m1;
            total_var += (m2 - m1 * m1).max(0.0);
        }
        mean += w_k * total;
        var += w_k * w_k * total_var;
    }
    let ln2 = std::f64::consts::LN_2;
    (mean / ln2, var / (ln2 * ln2))
}

/// E[x₀ | x] for one-dimensional data without allocating (the hot loop of `expected_bits_per_dim`); the same value
/// as `data.predict(&[x], level, Prediction::Sample)[0]`.
fn posterior_mean_1d(data: &GaussianMixture, x: f64, level: &NoiseLevel) -> f64 {
    let (a, s) = (level.alpha, level.sigma);
    let log_weight = |k: usize| {
        let v = a * a * data.variances[k] + s * s;
        data.weights[k].ln() - 0.5 * v.ln() - 0.5 * (x - a * data.means[k][0]).powi(2) / v
    };
    let m = (0..data.components())
        .map(log_weight)
        .fold(f64::NEG_INFINITY, f64::max);
    let (mut total, mut acc) = (0.0, 0.0);
    for k in 0..data.components() {
        let v = a * a * data.variances[k] + s * s;
        let mu = data.means[k][0];
        let e = (log_weight(k) - m).exp();
        total += e;
        acc += e * (mu + a * data.variances[k] / v * (x - a * mu));
    }
    acc / total
}
