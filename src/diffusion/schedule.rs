//! Noise schedules and every per-timestep coefficient the samplers need, computed once in f64 with the papers'
//! names. Indices follow `timestep.rs`: `t ∈ {0, …, T−1}`, index `t` = paper step `t + 1`.

use crate::error::{Error, Result};

/// Which β schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BetaSchedule {
    /// Ho et al. 2020: β linear from `beta_start` to `beta_end` over T steps (DDPM: 1e-4 → 0.02, T = 1000).
    Linear { beta_start: f64, beta_end: f64 },
    /// Nichol & Dhariwal 2021: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T + s)/(1 + s))·π/2), β_t = 1 − ᾱ_t/ᾱ_{t−1}
    /// clipped at `max_beta` (0.999) to avoid the singularity at t = T.
    Cosine { s: f64, max_beta: f64 },
}

impl BetaSchedule {
    /// DDPM's linear schedule: β from 1e-4 to 0.02.
    pub const LINEAR: BetaSchedule = BetaSchedule::Linear {
        beta_start: 1e-4,
        beta_end: 0.02,
    };
    /// improved-diffusion's cosine schedule: s = 0.008, β ≤ 0.999.
    pub const COSINE: BetaSchedule = BetaSchedule::Cosine {
        s: 0.008,
        max_beta: 0.999,
    };

    /// β_t for t = 0 … T−1.
    pub fn betas(&self, num_steps: usize) -> Vec<f64> {
        let t_max = num_steps as f64;
        match *self {
            BetaSchedule::Linear {
                beta_start,
                beta_end,
            } => (0..num_steps)
                .map(|i| {
                    if num_steps == 1 {
                        beta_start
                    } else {
                        beta_start + (beta_end - beta_start) * i as f64 / (t_max - 1.0)
                    }
                })
                .collect(),
            BetaSchedule::Cosine { s, max_beta } => {
                let f = |t: f64| {
                    (((t / t_max + s) / (1.0 + s)) * std::f64::consts::FRAC_PI_2)
                        .cos()
                        .powi(2)
                };
                (0..num_steps)
                    .map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(max_beta))
                    .collect()
            }
        }
    }
}

/// The schedules a run can name: what `diffuse train --schedule` takes and what a checkpoint records. The names
/// are the variants', kebab-cased by clap's `ValueEnum`: this is their one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NamedSchedule {
    /// Ho et al. 2020: β linear from 1e-4 to 0.02
    Linear,
    /// Nichol & Dhariwal 2021: ᾱ a squared cosine, β ≤ 0.999
    Cosine,
}

impl NamedSchedule {
    pub fn beta_schedule(self) -> BetaSchedule {
        match self {
            NamedSchedule::Linear => BetaSchedule::LINEAR,
            NamedSchedule::Cosine => BetaSchedule::COSINE,
        }
    }
}

impl std::fmt::Display for NamedSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = clap::ValueEnum::to_possible_value(self).expect("no variant is skipped");
        f.write_str(value.get_name())
    }
}

/// A discrete variance-preserving schedule and its derived tables (all length T, index t as in `timestep.rs`).
#[derive(Clone, Debug)]
pub struct Schedule {
    pub kind: BetaSchedule,
    pub betas: Vec<f64>,
    /// α_t = 1 − β_t
    pub alphas: Vec<f64>,
    /// ᾱ_t = Π_{s≤t} α_s
    pub alphas_cumprod: Vec<f64>,
    /// ᾱ_{t−1}, with ᾱ_{−1} = 1 (clean data)
    pub alphas_cumprod_prev: Vec<f64>,
    pub sqrt_alphas_cumprod: Vec<f64>,
    pub sqrt_one_minus_alphas_cumprod: Vec<f64>,
    /// 1/√ᾱ_t and √(1/ᾱ_t − 1): x_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1)·ε
    pub sqrt_recip_alphas_cumprod: Vec<f64>,
    pub sqrt_recipm1_alphas_cumprod: Vec<f64>,
    /// β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t): variance of q(x_{t−1} | x_t, x_0); β̃_0 = 0.
    pub posterior_variance: Vec<f64>,
    /// log β̃_t with the t = 0 entry replaced by log β̃_1 (β̃_0 = 0 has no log; improved-diffusion's choice).
    pub posterior_log_variance_clipped: Vec<f64>,
    /// μ̃_t(x_t, x_0) = coef1·x_0 + coef2·x_t
    pub posterior_mean_coef1: Vec<f64>,
    pub posterior_mean_coef2: Vec<f64>,
}

impl Schedule {
    pub fn new(kind: BetaSchedule, num_steps: usize) -> Result<Schedule> {
        if num_steps == 0 {
            return Err(Error::Usage(
                "a noise schedule needs at least 1 timestep".to_string(),
            ));
        }
        let betas = kind.betas(num_steps);
        if let Some((t, b)) = betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(**b > 0.0 && **b < 1.0))
        {
            return Err(Error::Usage(format!(
                "β[{t}] = {b} lies outside (0, 1): check the schedule parameters"
            )));
        }
        Ok(Self::from_betas(kind, betas))
    }

    fn from_betas(kind: BetaSchedule, betas: Vec<f64>) -> Schedule {
        let alphas: Vec<f64> = betas.iter().map(|b| 1.0 - b).collect();
        let alphas_cumprod: Vec<f64> = alphas
            .iter()
            .scan(1.0, |acc, a| {
                *acc *= a;
                Some(*acc)
            })
            .collect();
        let alphas_cumprod_prev: Vec<f64> = std::iter::once(1.0)
            .chain(alphas_cumprod[..alphas_cumprod.len() - 1].iter().copied())
            .collect();
        let map = |v: &[f64], f: &dyn Fn(f64) -> f64| v.iter().map(|&x| f(x)).collect::<Vec<f64>>();
        let posterior_variance: Vec<f64> = (0..betas.len())
            .map(|t| betas[t] * (1.0 - alphas_cumprod_prev[t]) / (1.0 - alphas_cumprod[t]))
            .collect();
        let posterior_log_variance_clipped = (0..betas.len())
            .map(|t| {
                let v = if t == 0 && betas.len() > 1 {
                    posterior_variance[1]
                } else {
                    posterior_variance[t]
                };
                v.ln()
            })
            .collect();
        let posterior_mean_coef1 = (0..betas.len())
            .map(|t| betas[t] * alphas_cumprod_prev[t].sqrt() / (1.0 - alphas_cumprod[t]))
            .collect();
        let posterior_mean_coef2 = (0..betas.len())
            .map(|t| (1.0 - alphas_cumprod_prev[t]) * alphas[t].sqrt() / (1.0 - alphas_cumprod[t]))
            .collect();
        Schedule {
            kind,
            sqrt_alphas_cumprod: map(&alphas_cumprod, &f64::sqrt),
            sqrt_one_minus_alphas_cumprod: map(&alphas_cumprod, &|a| (1.0 - a).sqrt()),
            sqrt_recip_alphas_cumprod: map(&alphas_cumprod, &|a| (1.0 / a).sqrt()),
            sqrt_recipm1_alphas_cumprod: map(&alphas_cumprod, &|a| (1.0 / a - 1.0).sqrt()),
            posterior_variance,
            posterior_log_variance_clipped,
            posterior_mean_coef1,
            posterior_mean_coef2,
            betas,
            alphas,
            alphas_cumprod,
            alphas_cumprod_prev,
        }
    }

    /// T, the number of timesteps.
    pub fn num_steps(&self) -> usize {
        self.betas.len()
    }

    /// The forward-noising table for shaders/noise.wgsl: rows (√ᾱ_t, √(1 − ᾱ_t)) (the VP twin of
    /// [`VeSchedule::noise_table`]).
    pub fn noise_table(&self) -> [Vec<f64>; 2] {
        [
            self.sqrt_alphas_cumprod.clone(),
            self.sqrt_one_minus_alphas_cumprod.clone(),
        ]
    }
}

/// The variance-exploding noise levels of NCSN (Song & Ermon 2019): σ_1 > σ_2 > … > σ_L, geometric. x at level i
/// is x₀ + σ_i·ε (noise table: a = 1, b = σ_i). Index 0 is σ_1, the noisiest, where sampling starts.
#[derive(Clone, Debug, PartialEq)]
pub struct VeSchedule {
    pub sigmas: Vec<f64>,
}

impl VeSchedule {
    /// L levels from `sigma_max` down to `sigma_min`: σ_i = σ_max·(σ_min/σ_max)^((i−1)/(L−1)).
    pub fn geometric(sigma_max: f64, sigma_min: f64, levels: usize) -> Result<VeSchedule> {
        let ordered = sigma_min > 0.0 && sigma_max > sigma_min;
        if levels == 0 || !ordered {
            return Err(Error::Usage(format!(
                "VE noise levels need σ_max > σ_min > 0 and at least one level, got σ_max = {sigma_max}, \
                 σ_min = {sigma_min}, {levels} levels"
            )));
        }
        let sigmas = if levels == 1 {
            vec![sigma_max]
        } else {
            let ratio = (sigma_min / sigma_max).ln() / (levels - 1) as f64;
            (0..levels)
                .map(|i| {
                    if i == levels - 1 {
                        sigma_min
                    } else {
                        sigma_max * (ratio * i as f64).exp()
                    }
                })
                .collect()
        };
        Ok(VeSchedule { sigmas })
    }

    /// The forward-noising table for shaders/noise.wgsl: rows (1, σ_i).
    pub fn noise_table(&self) -> [Vec<f64>; 2] {
        [vec![1.0; self.sigmas.len()], self.sigmas.clone()]
    }
}
