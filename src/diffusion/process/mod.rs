//! The training objectives as processes: discrete-time DDPM (the schedule tables of `schedule.rs`), and the
//! score-based families of Song & Ermon 2019/2020 (NCSN), Song et al. 2021 (the VE, VP and sub-VP SDEs in
//! continuous time) and Karras et al. 2022 (EDM). Plain f64 with the papers' names; no wgpu.
//!
//! Every family noises the same way, `x = α·x₀ + σ·ε`, at a level drawn per image, and trains the network output F
//! towards `k₀·x₀ + k_ε·ε` with a per-image weight. So one kernel pair serves them all (shaders/noise.wgsl: a
//! [`TrainPoint`] per image from its draw, then the noising): what differs is the law of the level and the five
//! numbers of [`Objective::point`].
//!
//! - NCSN, VE, VP, sub-VP train F to predict ε: the score is `s = −F/σ` (score_sde's VP parameterisation; NCSN's
//!   "output divided by σ" with the sign in the network). Denoising score matching weighted by σ² is then the plain
//!   MSE `‖F − ε‖²`; score_sde's likelihood weighting g(t)² is `‖F − ε‖²·g(t)²/σ(t)²`.
//! - EDM trains its preconditioned denoiser `D = c_skip·x + c_out·F(c_in·x, c_noise)` with weight
//!   `λ = (σ² + σ_d²)/(σ·σ_d)²`; `λ·‖D − x₀‖² = ‖F − (x₀ − c_skip·x)/c_out‖²` since `λ·c_out² = 1`.
//!
//! Losses are per-element means, as DDPM's: NCSN's and score_sde's sums over the image (and NCSN's ½) scale the loss
//! by a constant, which changes its printed value and nothing else Adam sees but the gradient clip's scale.
//!
//! The files: this one (the processes, their training points), `sampling.rs` (a trained model at any level, the
//! levels samplers walk), `text.rs` (the names and the recorded text).

use crate::error::{Error, Result};

mod sampling;
mod text;

pub use sampling::{Evaluation, LevelSpacing, Trained, EDM_SIGMA_MAX, EDM_SIGMA_MIN};
pub use text::MAX_LEVELS;

/// score_sde's DDPM-architecture conditioning for VP and sub-VP in continuous time: the network sees `999·t`, the
/// range of the discrete timesteps it was designed for.
pub const VP_TIME_SCALE: f64 = 999.0;

/// What `diffuse train --objective` trains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// Discrete-time DDPM: the run's schedule, T, prediction and loss weighting.
    Ddpm,
    /// Noise-conditional score network: `levels` geometric σ from `sigma_max` down to `sigma_min`, one drawn
    /// uniformly per image; σ²-weighted denoising score matching.
    Ncsn {
        sigma_min: f64,
        sigma_max: f64,
        levels: usize,
    },
    /// A score SDE in continuous time: t uniform on [`t_min`, 1].
    Sde {
        sde: Sde,
        weighting: Weighting,
        t_min: f64,
    },
    /// EDM: ln σ ~ N(`p_mean`, `p_std`²), preconditioned for data of standard deviation `sigma_data`.
    Edm {
        sigma_data: f64,
        p_mean: f64,
        p_std: f64,
    },
}

/// The forward SDEs of Song et al. 2021, as score_sde defines them (`sde_lib.py`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sde {
    /// Variance exploding: σ(t) = σ_min·(σ_max/σ_min)^t, dx = σ(t)·√(2 ln(σ_max/σ_min)) dW.
    Ve { sigma_min: f64, sigma_max: f64 },
    /// Variance preserving: β(t) = β_min + t·(β_max − β_min), dx = −½β(t)·x dt + √β(t) dW.
    Vp { beta_min: f64, beta_max: f64 },
    /// Sub-VP: the VP drift with diffusion √(β(t)·(1 − e^{−2∫β})): variance at most the VP's.
    SubVp { beta_min: f64, beta_max: f64 },
}

/// How a continuous-time loss weights each t (score_sde's `likelihood_weighting`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighting {
    /// λ(t) = σ(t)²: the plain MSE on ε (score_sde's default).
    Sigma2,
    /// λ(t) = g(t)²: the weighting under which the loss bounds the negative log-likelihood (Song et al. 2021b).
    Likelihood,
}

/// How the level of each image is drawn: from a uniform u on [0, 1) or a standard normal n.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    Uniform,
    Normal,
}

/// One image's training level and what its loss needs: the network input is `c_in·(alpha·x₀ + sigma·ε)`,
/// conditioned on `c_noise`, and regresses `k_x0·x₀ + k_eps·ε` with weight `weight`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainPoint {
    pub alpha: f64,
    pub sigma: f64,
    pub c_in: f64,
    pub c_noise: f64,
    pub k_x0: f64,
    pub k_eps: f64,
    pub weight: f64,
}

impl Sde {
    /// score_sde's defaults: VE σ ∈ [0.01, 50] (its CIFAR-10 configs), VP and sub-VP β ∈ [0.1, 20].
    pub const VE: Sde = Sde::Ve {
        sigma_min: 0.01,
        sigma_max: 50.0,
    };
    pub const VP: Sde = Sde::Vp {
        beta_min: 0.1,
        beta_max: 20.0,
    };
    pub const SUB_VP: Sde = Sde::SubVp {
        beta_min: 0.1,
        beta_max: 20.0,
    };

    /// ln of the VP mean coefficient, −¼t²(β_max − β_min) − ½t·β_min (VP and sub-VP).
    fn log_mean_coeff(beta_min: f64, beta_max: f64, t: f64) -> f64 {
        -0.25 * t * t * (beta_max - beta_min) - 0.5 * t * beta_min
    }

    /// The marginal p(x_t | x₀) = N(alpha·x₀, sigma²·I): (alpha, sigma) at time t.
    pub fn marginal(&self, t: f64) -> (f64, f64) {
        match *self {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => (1.0, sigma_min * (sigma_max / sigma_min).powf(t)),
            Sde::Vp { beta_min, beta_max } => {
                let l = Self::log_mean_coeff(beta_min, beta_max, t);
                (l.exp(), (-(2.0 * l).exp_m1()).sqrt())
            }
            Sde::SubVp { beta_min, beta_max } => {
                let l = Self::log_mean_coeff(beta_min, beta_max, t);
                (l.exp(), -(2.0 * l).exp_m1())
            }
        }
    }

    /// The drift's coefficient f(t) (the drift is f(t)·x) and the diffusion squared g(t)².
    pub fn drift_diffusion2(&self, t: f64) -> (f64, f64) {
        match *self {
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => {
                let sigma = self.marginal(t).1;
                (0.0, sigma * sigma * 2.0 * (sigma_max / sigma_min).ln())
            }
            Sde::Vp { beta_min, beta_max } => {
                let beta = beta_min + t * (beta_max - beta_min);
                (-0.5 * beta, beta)
            }
            Sde::SubVp { beta_min, beta_max } => {
                let beta = beta_min + t * (beta_max - beta_min);
                let l = Self::log_mean_coeff(beta_min, beta_max, t);
                (-0.5 * beta, beta * -(4.0 * l).exp_m1())
            }
        }
    }

    /// The prior's standard deviation: σ_max for VE, 1 for VP and sub-VP (score_sde's `prior_sampling`).
    pub fn prior_std(&self) -> f64 {
        match *self {
            Sde::Ve { sigma_max, .. } => sigma_max,
            Sde::Vp { .. } | Sde::SubVp { .. } => 1.0,
        }
    }

    /// ln N(z; 0, prior_std²·I), summed over z (score_sde's `prior_logp`).
    pub fn prior_logp(&self, z: &[f64]) -> f64 {
        let s2 = self.prior_std().powi(2);
        let n = z.len() as f64;
        -0.5 * n * (2.0 * std::f64::consts::PI * s2).ln()
            - z.iter().map(|v| v * v).sum::<f64>() / (2.0 * s2)
    }

    /// What the network is conditioned on at time t: ln σ(t) for VE (score_sde's NCSN++ embeds log σ), 999·t for
    /// VP and sub-VP (its DDPM-architecture labels).
    pub fn c_noise(&self, t: f64) -> f64 {
        match self {
            Sde::Ve { .. } => self.marginal(t).1.ln(),
            Sde::Vp { .. } | Sde::SubVp { .. } => VP_TIME_SCALE * t,
        }
    }
}

/// EDM's preconditioning at σ for data of standard deviation σ_d (Karras et al. 2022, table 1):
/// (c_skip, c_out, c_in, c_noise).
pub fn edm_preconditioning(sigma: f64, sigma_data: f64) -> (f64, f64, f64, f64) {
    let total = sigma * sigma + sigma_data * sigma_data;
    (
        sigma_data * sigma_data / total,
        sigma * sigma_data / total.sqrt(),
        1.0 / total.sqrt(),
        sigma.ln() / 4.0,
    )
}

/// NCSN's σ levels, largest first: σ_i = σ_max·(σ_min/σ_max)^(i/(L−1)).
pub fn ncsn_sigmas(sigma_min: f64, sigma_max: f64, levels: usize) -> Result<Vec<f64>> {
    Ok(super::VeSchedule::geometric(sigma_max, sigma_min, levels)?.sigmas)
}

impl Objective {
    /// NCSNv2's CIFAR-10 levels (Song & Ermon 2020: L = 232 from σ_max = 50 to 0.01); `diffuse train` replaces
    /// σ_max by the data's largest pairwise distance unless one is given.
    pub const NCSN: Objective = Objective::Ncsn {
        sigma_min: 0.01,
        sigma_max: 50.0,
        levels: 232,
    };
    /// score_sde's training: t ∈ [10⁻⁵, 1], σ² weighting.
    pub const SDE_T_MIN: f64 = 1e-5;
    /// EDM's training distribution and σ_d (Karras et al. 2022, table 1).
    pub const EDM: Objective = Objective::Edm {
        sigma_data: 0.5,
        p_mean: -1.2,
        p_std: 1.2,
    };

    /// σ_max of the objectives that have one (NCSN and VE).
    pub fn sigma_max(&self) -> Option<f64> {
        match *self {
            Objective::Ncsn { sigma_max, .. }
            | Objective::Sde {
                sde: Sde::Ve { sigma_max, .. },
                ..
            } => Some(sigma_max),
            _ => None,
        }
    }

    /// A continuous-time SDE objective with score_sde's defaults.
    pub fn sde(sde: Sde) -> Objective {
        Objective::Sde {
            sde,
            weighting: Weighting::Sigma2,
            t_min: Self::SDE_T_MIN,
        }
    }

    /// How each image's level is drawn (DDPM draws an integer timestep instead: None).
    pub fn draw(&self) -> Option<Draw> {
        match self {
            Objective::Ddpm => None,
            Objective::Ncsn { .. } | Objective::Sde { .. } => Some(Draw::Uniform),
            Objective::Edm { .. } => Some(Draw::Normal),
        }
    }

    /// The training point of an image whose draw is `r` (a uniform on [0, 1) or a standard normal, as
    /// [`Objective::draw`] says). None for DDPM, whose table lives in `schedule.rs`.
    pub fn point(&self, r: f64) -> Option<TrainPoint> {
        let eps_target = |alpha: f64, sigma: f64, c_noise: f64, weight: f64| TrainPoint {
            alpha,
            sigma,
            c_in: 1.0,
            c_noise,
            k_x0: 0.0,
            k_eps: 1.0,
            weight,
        };
        match *self {
            Objective::Ddpm => None,
            Objective::Ncsn {
                sigma_min,
                sigma_max,
                levels,
            } => {
                // ⌊r·L⌋ as the kernel computes it, in f32 (the draws are f32), so a draw picks the same level in both.
                let i = ((r as f32 * levels as f32) as usize).min(levels - 1);
                let sigma = ncsn_sigmas(sigma_min, sigma_max, levels).ok()?[i];
                Some(eps_target(1.0, sigma, sigma.ln(), 1.0))
            }
            Objective::Sde {
                sde,
                weighting,
                t_min,
            } => {
                let t = t_min + (1.0 - t_min) * r;
                let (alpha, sigma) = sde.marginal(t);
                let weight = match weighting {
                    Weighting::Sigma2 => 1.0,
                    Weighting::Likelihood => sde.drift_diffusion2(t).1 / (sigma * sigma),
                };
                Some(eps_target(alpha, sigma, sde.c_noise(t), weight))
            }
            Objective::Edm {
                sigma_data,
                p_mean,
                p_std,
            } => {
                let sigma = (p_mean + p_std * r).exp();
                let (_, _, c_in, c_noise) = edm_preconditioning(sigma, sigma_data);
                let root = (sigma * sigma + sigma_data * sigma_data).sqrt();
                Some(TrainPoint {
                    alpha: 1.0,
                    sigma,
                    c_in,
                    c_noise,
                    k_x0: sigma / (sigma_data * root),
                    k_eps: -sigma_data / root,
                    weight: 1.0,
                })
            }
        }
    }

    /// Refuses parameters no process has, naming the flag to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Usage(what));
        let positive = |v: f64| v.is_finite() && v > 0.0;
        match *self {
            Objective::Ddpm => Ok(()),
            Objective::Ncsn {
                sigma_min,
                sigma_max,
                levels,
            } => ncsn_sigmas(sigma_min, sigma_max, levels).map(|_| ()),
            Objective::Sde { sde, t_min, .. } => {
                if !(t_min > 0.0 && t_min < 1.0) {
                    return bad(format!(
                        "--t-min must lie in (0, 1) (score_sde trains from 1e-5), got {t_min}"
                    ));
                }
                match sde {
                    Sde::Ve {
                        sigma_min,
                        sigma_max,
                    } if !(positive(sigma_min) && sigma_max > sigma_min && sigma_max.is_finite()) => bad(
                        format!("--sigma-max must exceed --sigma-min > 0, got {sigma_max} and {sigma_min}"),
                    ),
                    Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max }
                        if !(positive(beta_min) && beta_max >= beta_min && beta_max.is_finite()) =>
                    {
                        bad(format!(
                            "--beta-max must be at least --beta-min > 0 (score_sde: 20 and 0.1), got {beta_max} \
                             and {beta_min}"
                        ))
                    }
                    _ => Ok(()),
                }
            }
            Objective::Edm {
                sigma_data,
                p_mean,
                p_std,
            } => {
                if !(positive(sigma_data) && positive(p_std) && p_mean.is_finite()) {
                    bad(format!(
                        "EDM needs --sigma-data > 0, --p-std > 0 and a finite --p-mean (Karras et al.: 0.5, 1.2, \
                         −1.2), got {sigma_data}, {p_std}, {p_mean}"
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }
}
