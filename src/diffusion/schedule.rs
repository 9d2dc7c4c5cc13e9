//! Noise schedules and every per-timestep coefficient the samplers need, computed once in f64 with the papers'
//! names. Indices follow `timestep.rs`: `t ∈ {0, …, T−1}`, index `t` = paper step `t + 1`.

use crate::diffusion::samplers::Prediction;
use crate::error::{Error, Result};

/// ᾱ at the last index of a zero-terminal-SNR schedule as the samplers see it ([`Schedule::for_sampling`]): 2⁻²⁴,
/// diffusers' value (DPMSolverMultistepScheduler with `rescale_betas_zero_snr`), unless ᾱ_(T−2)/2 is smaller.
pub const SAMPLING_TERMINAL_ALPHA_BAR: f64 = 1.0 / (1u64 << 24) as f64;

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

/// The schedules a run can name: what `diffuse train --schedule` takes and what a checkpoint records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamedSchedule {
    Linear,
    Cosine,
}

impl NamedSchedule {
    /// Every schedule, in declaration order (so that `NAMES[s as usize]` is `s`'s).
    pub const ALL: [NamedSchedule; 2] = [NamedSchedule::Linear, NamedSchedule::Cosine];
    /// Each schedule's name and what it is: the one table of both.
    pub const NAMES: &'static [(&'static str, &'static str)] = &[
        ("linear", "Ho et al. 2020: β linear from 1e-4 to 0.02"),
        (
            "cosine",
            "Nichol & Dhariwal 2021: ᾱ a squared cosine, β ≤ 0.999",
        ),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize].0
    }

    pub fn from_name(name: &str) -> Option<NamedSchedule> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    pub fn beta_schedule(self) -> BetaSchedule {
        match self {
            NamedSchedule::Linear => BetaSchedule::LINEAR,
            NamedSchedule::Cosine => BetaSchedule::COSINE,
        }
    }

    /// The schedule of T = `timesteps`, rescaled to zero terminal SNR if `zero_terminal_snr`
    /// ([`Schedule::rescaled_zero_terminal_snr`]): what training, sampling and evaluation of a run use.
    pub fn build(self, timesteps: usize, zero_terminal_snr: bool) -> Result<Schedule> {
        let schedule = Schedule::new(self.beta_schedule(), timesteps)?;
        if zero_terminal_snr {
            schedule.rescaled_zero_terminal_snr()
        } else {
            Ok(schedule)
        }
    }
}

impl std::fmt::Display for NamedSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
        Self::from_tables(kind, betas, alphas, alphas_cumprod)
    }

    /// The schedule whose ᾱ_t are `alphas_cumprod` (decreasing, in [0, 1]): α_t = ᾱ_t/ᾱ_{t−1}, β_t = 1 − α_t.
    fn from_alphas_cumprod(kind: BetaSchedule, alphas_cumprod: Vec<f64>) -> Schedule {
        let alphas: Vec<f64> = (0..alphas_cumprod.len())
            .map(|t| match t {
                0 => alphas_cumprod[0],
                _ => alphas_cumprod[t] / alphas_cumprod[t - 1],
            })
            .collect();
        let betas = alphas.iter().map(|a| 1.0 - a).collect();
        Self::from_tables(kind, betas, alphas, alphas_cumprod)
    }

    fn from_tables(
        kind: BetaSchedule,
        betas: Vec<f64>,
        alphas: Vec<f64>,
        alphas_cumprod: Vec<f64>,
    ) -> Schedule {
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

    /// Lin et al. 2024 ("Common Diffusion Noise Schedules and Sample Steps Are Flawed", algorithm 1): the schedule
    /// rescaled to zero terminal SNR. With s_t = √ᾱ_t, each s_t is shifted and scaled linearly,
    ///
    /// ```text
    ///   s'_t = (s_t − s_{T−1}) · s_0 / (s_0 − s_{T−1}),   ᾱ'_t = s'_t²,   α'_t = ᾱ'_t/ᾱ'_{t−1},   β'_t = 1 − α'_t
    /// ```
    ///
    /// so that s'_{T−1} = 0 (x at the last index is pure noise, SNR = ᾱ/(1 − ᾱ) = 0, as sampling assumes when it
    /// starts from N(0, I)) and s'_0 = s_0, with the order of the levels kept. ᾱ'_0 is the original ᾱ_0 (not
    /// s_0² recomputed, which may differ in the last bit) and ᾱ'_{T−1} is exactly 0, so β'_{T−1} = 1. Every
    /// coefficient that divides by √ᾱ is infinite at T−1: sampling uses [`Schedule::for_sampling`]. Needs T ≥ 2
    /// (with one timestep there is nothing to rescale: s_0 would have to be both kept and zeroed).
    pub fn rescaled_zero_terminal_snr(&self) -> Result<Schedule> {
        let t_max = self.num_steps();
        if t_max < 2 {
            return Err(Error::Usage(
                "zero terminal SNR needs a schedule of at least 2 timesteps (it keeps ᾱ at the first and zeroes it \
                 at the last)"
                    .to_string(),
            ));
        }
        let s0 = self.sqrt_alphas_cumprod[0];
        let s_last = self.sqrt_alphas_cumprod[t_max - 1];
        let alphas_cumprod = (0..t_max)
            .map(|t| match t {
                0 => self.alphas_cumprod[0],
                t if t == t_max - 1 => 0.0,
                t => ((self.sqrt_alphas_cumprod[t] - s_last) * s0 / (s0 - s_last)).powi(2),
            })
            .collect();
        Ok(Self::from_alphas_cumprod(self.kind, alphas_cumprod))
    }

    /// Whether ᾱ at the last index is 0 (a [`Schedule::rescaled_zero_terminal_snr`] schedule).
    pub fn zero_terminal_snr(&self) -> bool {
        self.alphas_cumprod.last() == Some(&0.0)
    }

    /// The schedule the samplers use: this one, except that a terminal ᾱ of exactly 0 becomes
    /// [`SAMPLING_TERMINAL_ALPHA_BAR`] = 2⁻²⁴, as diffusers' DPMSolverMultistepScheduler does for zero-terminal-SNR
    /// schedules, or half of ᾱ_(T−2) where that is smaller (the rescaled linear schedule has ᾱ_998 = 4.2·10⁻⁹ <
    /// 2⁻²⁴ = 6·10⁻⁸): ᾱ must still decrease strictly, or a step from T−1 to T−2 would have α = ᾱ_t/ᾱ_prev > 1
    /// and a negative variance. The samplers' scalars divide by √ᾱ_t (x̂₀ = (x − √(1 − ᾱ)·ε̂)/√ᾱ, DDIM's √(ᾱ_prev/ᾱ_t), the
    /// SDE's ln(ᾱ_prev/ᾱ_t)), which is ∞ at ᾱ = 0; at 2⁻²⁴ they are finite, and for a v-model the fold
    /// ([`crate::diffusion::Step::fold`]) cancels the 1/√ᾱ = 4096 in f64 (ε̂ = √(1 − ᾱ)·x + √ᾱ·v̂), leaving steps
    /// close to their ᾱ → 0 limit (the cancellation costs log₂(1/√ᾱ) ≤ 15 of f64's 53 bits here). The network is still
    /// conditioned on index T−1 (where it learned x = ε); sampling starts from pure noise, so only the scalars change.
    /// Training and `diffuse eval` use the exact schedule.
    pub fn for_sampling(&self) -> Schedule {
        if !self.zero_terminal_snr() {
            return self.clone();
        }
        let mut alphas_cumprod = self.alphas_cumprod.clone();
        let t_max = alphas_cumprod.len();
        // A zero-terminal-SNR schedule has T ≥ 2 (`rescaled_zero_terminal_snr`), and ᾱ_(T−2) > 0.
        let before = alphas_cumprod[t_max.saturating_sub(2)];
        alphas_cumprod[t_max - 1] = SAMPLING_TERMINAL_ALPHA_BAR.min(before / 2.0);
        Self::from_alphas_cumprod(self.kind, alphas_cumprod)
    }

    /// SNR_t = ᾱ_t/(1 − ᾱ_t), the signal-to-noise ratio of x_t (∞ where ᾱ_t = 1, 0 where ᾱ_t = 0).
    pub fn snr(&self) -> Vec<f64> {
        self.alphas_cumprod.iter().map(|&a| a / (1.0 - a)).collect()
    }

    /// The Min-SNR-γ loss weight of each timestep (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
    /// Weighting Strategy", eq. 8–10) for a network trained to predict `prediction` with the plain MSE on that
    /// target. The strategy weights the x₀ error by min(SNR_t, γ); written on each target (x_t = α·x₀ + σ·ε with
    /// α² = ᾱ, σ² = 1 − ᾱ, SNR = α²/σ²):
    ///
    /// ```text
    ///   ε̂ − ε  = −(α/σ)·(x̂₀ − x₀)  ⇒ ‖ε̂ − ε‖² = SNR·‖x̂₀ − x₀‖²        ⇒ w_ε  = min(SNR, γ)/SNR
    ///   v̂ − v  = −(1/σ)·(x̂₀ − x₀)  ⇒ ‖v̂ − v‖² = (SNR + 1)·‖x̂₀ − x₀‖²  ⇒ w_v  = min(SNR, γ)/(SNR + 1)
    ///   x̂₀ − x₀                                                       ⇒ w_x₀ = min(SNR, γ)
    /// ```
    ///
    /// (v = α·ε − σ·x₀ and x̂₀ = α·x − σ·v̂, so v̂ − v = −(x̂₀ − x₀)/σ; 1/σ² = SNR + 1.) All three are
    /// min(SNR, γ)·‖x̂₀ − x₀‖², the paper's objective. At zero SNR (ᾱ = 0, [`Schedule::rescaled_zero_terminal_snr`]):
    /// w_ε = 0/0 is defined as its limit, 1 (min(SNR, γ) = SNR once SNR < γ); w_v = 0/1 = 0 and w_x₀ = 0, as the
    /// paper's formulas give: the x₀ error at pure noise carries no weight, so a v- or x₀-model with Min-SNR learns
    /// its last timestep only through its neighbours (whose weight ≈ SNR is tiny too). diffusers' training scripts
    /// (train_text_to_image.py, `compute_snr`) use the same weights, min(SNR, γ)/SNR and min(SNR, γ)/(SNR + 1),
    /// and leave x₀-prediction at min(SNR, γ); at SNR = 0 their ε weight is 0/0 = NaN, ours its limit. At SNR = ∞
    /// (ᾱ = 1, no schedule here has it) w_ε = w_v = 0, the limits. `gamma` must be > 0 (the paper uses 5); the
    /// score is not a training target.
    pub fn min_snr_weights(&self, gamma: f64, prediction: Prediction) -> Result<Vec<f64>> {
        if !(gamma > 0.0 && gamma.is_finite()) {
            return Err(Error::Usage(format!(
                "the Min-SNR γ must be a positive number (Hang et al. use 5), got {gamma}"
            )));
        }
        let weight = |snr: f64| -> Result<f64> {
            let clipped = snr.min(gamma);
            Ok(match prediction {
                Prediction::Epsilon if snr == 0.0 => 1.0,
                Prediction::Epsilon if snr.is_infinite() => 0.0,
                Prediction::Epsilon => clipped / snr,
                Prediction::Velocity if snr.is_infinite() => 0.0,
                Prediction::Velocity => clipped / (snr + 1.0),
                Prediction::Sample => clipped,
                Prediction::Score => {
                    return Err(Error::Usage(
                        "Min-SNR weighting is defined for ε, x₀ and v targets, not the score"
                            .to_string(),
                    ))
                }
            })
        };
        self.snr().into_iter().map(weight).collect()
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
