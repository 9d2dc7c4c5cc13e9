//! Samplers as lists of per-step scalars, computed in f64 with the papers' names. No wgpu here.
//!
//! Every sampler of this module is a [`Plan`]: x starts as `init_scale·z` (z ~ N(0, I)) and then runs through a
//! list of [`Step`]s, each of which evaluates the model once (Heun: twice) and updates x with a few scalars. So one
//! GPU step kernel (shaders/step.wgsl) serves every sampler:
//!
//! ```text
//!   Linear:   x ← a·x + b·ε̂(x) + c·z                                    (DDPM, DDIM, Euler–Maruyama, Langevin, PC)
//!   Clipped:  x̂₀ = clamp(p·x + q·ε̂(x), lo, hi);  x ← u·x̂₀ + w·x + c·z    (DDPM/DDIM with x₀-clipping)
//!   Heun:     x' = a·x + b·ε̂(x);  x ← a·x + (b/2)·(ε̂(x) + ε̂'(x'))       (probability-flow ODE, 2nd order)
//! ```
//!
//! The scalars are written for a model that predicts ε (the noise). A model that predicts x₀, v or the score is
//! served by the same kernels: [`Prediction::epsilon_from`] writes ε̂ as `e_x·x + e_o·o` in terms of the model
//! output o, and [`Step::fold`] substitutes it, so the kernels see `x ← a'·x + b'·o + c·z` (all of it in f64 on the
//! host, once per plan).
//!
//! Noise levels: the model is evaluated at a [`NoiseLevel`] where `x = alpha·x₀ + sigma·ε`: (√ᾱ_t, √(1 − ᾱ_t)) for
//! the variance-preserving process (DDPM, the VP SDE), (1, σ_i) for the variance-exploding one (NCSN, the VE SDE).
//!
//! Timesteps follow `timestep.rs`: indices 0 … T−1, sampling walks a decreasing list of them, and the step *from*
//! the last index in the list goes to clean data (ᾱ_prev = 1) and adds no noise. For the DDIM spacings see
//! [`Spacing`]; the default is [`Spacing::Trailing`].

use crate::diffusion::schedule::{Schedule, VeSchedule};
use crate::error::{Error, Result};

// ---------------------------------------------------------------------------------------------------------------
// Noise levels and the four things a model can predict.
// ---------------------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------------------
// Steps and plans.
// ---------------------------------------------------------------------------------------------------------------

/// One update of x, with its scalars for an ε-predicting model (see the module header).
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// x ← a·x + b·ε̂(x, level) + c·z.
    Linear {
        level: NoiseLevel,
        a: f64,
        b: f64,
        c: f64,
    },
    /// x̂₀ = clamp(p·x + q·ε̂(x, level), lo, hi); x ← u·x̂₀ + w·x + c·z.
    Clipped {
        level: NoiseLevel,
        p: f64,
        q: f64,
        u: f64,
        w: f64,
        c: f64,
        lo: f64,
        hi: f64,
    },
    /// Heun: the Euler predictor x' = a·x + b·ε̂(x, level), then x ← a·x + (b/2)·(ε̂(x, level) + ε̂(x', next)).
    Heun {
        level: NoiseLevel,
        next: NoiseLevel,
        a: f64,
        b: f64,
    },
}

/// A step with its scalars folded for the model's output o instead of ε̂: what the GPU kernels take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FoldedStep {
    /// y = a·x + b·o + c·z
    Linear { a: f64, b: f64, c: f64 },
    /// x̂₀ = clamp(p·x + q·o, lo, hi); y = u·x̂₀ + w·x + c·z
    Clipped {
        p: f64,
        q: f64,
        u: f64,
        w: f64,
        c: f64,
        lo: f64,
        hi: f64,
    },
    /// Predictor x' = a1·x + b1·o (o = model at x, level); corrector y = a·x + b·o + b2·o2 (o2 = model at x', next).
    Heun {
        a1: f64,
        b1: f64,
        a: f64,
        b: f64,
        b2: f64,
    },
}

impl Step {
    /// The level the model is first evaluated at.
    pub fn level(&self) -> &NoiseLevel {
        match self {
            Step::Linear { level, .. } | Step::Clipped { level, .. } | Step::Heun { level, .. } => {
                level
            }
        }
    }

    /// True where the step draws fresh noise z.
    pub fn adds_noise(&self) -> bool {
        match *self {
            Step::Linear { c, .. } | Step::Clipped { c, .. } => c != 0.0,
            Step::Heun { .. } => false,
        }
    }

    /// Number of model evaluations.
    pub fn evaluations(&self) -> usize {
        match self {
            Step::Heun { .. } => 2,
            _ => 1,
        }
    }

    /// Substitutes ε̂ = e_x·x + e_o·o (`prediction.epsilon_from`) into the step's scalars.
    pub fn fold(&self, prediction: Prediction) -> FoldedStep {
        match *self {
            Step::Linear { level, a, b, c } => {
                let (e_x, e_o) = prediction.epsilon_from(&level);
                FoldedStep::Linear {
                    a: a + b * e_x,
                    b: b * e_o,
                    c,
                }
            }
            Step::Clipped {
                level,
                p,
                q,
                u,
                w,
                c,
                lo,
                hi,
            } => {
                let (e_x, e_o) = prediction.epsilon_from(&level);
                FoldedStep::Clipped {
                    p: p + q * e_x,
                    q: q * e_o,
                    u,
                    w,
                    c,
                    lo,
                    hi,
                }
            }
            Step::Heun { level, next, a, b } => {
                // ε̂₁ = e_x·x + e_o·o;  x' = a1·x + b1·o;  ε̂₂ = f_x·x' + f_o·o2.
                let (e_x, e_o) = prediction.epsilon_from(&level);
                let (f_x, f_o) = prediction.epsilon_from(&next);
                let (a1, b1) = (a + b * e_x, b * e_o);
                let h = b / 2.0;
                FoldedStep::Heun {
                    a1,
                    b1,
                    a: a + h * e_x + h * f_x * a1,
                    b: h * e_o + h * f_x * b1,
                    b2: h * f_o,
                }
            }
        }
    }
}

/// A sampler: x ← init_scale·z, then the steps in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub init_scale: f64,
    pub steps: Vec<Step>,
}

impl Plan {
    /// Number of model evaluations (network function evaluations, NFE).
    pub fn evaluations(&self) -> usize {
        self.steps.iter().map(Step::evaluations).sum()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Timestep lists.
// ---------------------------------------------------------------------------------------------------------------

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
fn alpha_bar_pairs(schedule: &Schedule, list: &[usize]) -> Vec<(usize, f64, f64)> {
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

// ---------------------------------------------------------------------------------------------------------------
// The samplers.
// ---------------------------------------------------------------------------------------------------------------

/// The variance of DDPM's reverse step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DdpmVariance {
    /// σ_t² = β_t ("fixedlarge": optimal for x₀ ~ N(0, I)).
    Beta,
    /// σ_t² = β̃_t = β_t(1 − ᾱ_{t−1})/(1 − ᾱ_t) ("fixedsmall": optimal for a point mass x₀).
    PosteriorBeta,
}

/// Clamp x̂₀ to [lo, hi] (e.g. [−1, 1] for images) before forming the posterior mean.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clip {
    pub lo: f64,
    pub hi: f64,
}

/// DDPM ancestral sampling (Ho et al. 2020, algorithm 2) over a decreasing timestep list (every index for the
/// paper's sampler; a subsequence respaces the chain as improved-diffusion does: α = ᾱ_t/ᾱ_prev, β = 1 − α):
///
/// ```text
///   x_{prev} = 1/√α · (x_t − β/√(1 − ᾱ_t) · ε̂) + σ·z,   σ² = β or β̃ = β(1 − ᾱ_prev)/(1 − ᾱ_t)
///   ⇒ a = 1/√α,  b = −β/(√α·√(1 − ᾱ_t)),  c = σ  (c = 0 for the step from the last index: no noise at the end)
/// ```
/// With `clip`, the same mean through x̂₀: x̂₀ = clamp(x/√ᾱ_t − √(1/ᾱ_t − 1)·ε̂), μ̃ = coef1·x̂₀ + coef2·x with
/// coef1 = β√ᾱ_prev/(1 − ᾱ_t), coef2 = (1 − ᾱ_prev)√α/(1 − ᾱ_t) (the posterior mean of q(x_prev | x_t, x₀)).
pub fn ddpm(
    schedule: &Schedule,
    list: &[usize],
    variance: DdpmVariance,
    clip: Option<Clip>,
) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), list)?;
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
            match clip {
                None => Step::Linear {
                    level,
                    a: 1.0 / alpha.sqrt(),
                    b: -beta / (alpha.sqrt() * (1.0 - ab).sqrt()),
                    c,
                },
                Some(Clip { lo, hi }) => Step::Clipped {
                    level,
                    p: (1.0 / ab).sqrt(),
                    q: -(1.0 / ab - 1.0).sqrt(),
                    u: beta * ab_prev.sqrt() / (1.0 - ab),
                    w: (1.0 - ab_prev) * alpha.sqrt() / (1.0 - ab),
                    c,
                    lo,
                    hi,
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
/// σ = 0. With `clip`, x̂₀ is clamped and ε̂ recomputed from it (improved-diffusion's `ddim_sample`):
/// x_prev = (√ᾱ_prev − d·√ᾱ_t/√(1 − ᾱ_t))·x̂₀ + (d/√(1 − ᾱ_t))·x + σ·z with d = √(1 − ᾱ_prev − σ²).
pub fn ddim(schedule: &Schedule, list: &[usize], eta: f64, clip: Option<Clip>) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), list)?;
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
            match clip {
                None => Step::Linear {
                    level,
                    a: (ab_prev / ab).sqrt(),
                    b: dir - ab_prev.sqrt() * (1.0 - ab).sqrt() / ab.sqrt(),
                    c: sigma,
                },
                Some(Clip { lo, hi }) => Step::Clipped {
                    level,
                    p: (1.0 / ab).sqrt(),
                    q: -(1.0 / ab - 1.0).sqrt(),
                    u: ab_prev.sqrt() - dir * ab.sqrt() / (1.0 - ab).sqrt(),
                    w: dir / (1.0 - ab).sqrt(),
                    c: sigma,
                    lo,
                    hi,
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

/// Euler–Maruyama on the reverse-time VP SDE (Song et al. 2021, eq. 6 with the VP drift):
///
/// ```text
///   forward:  dx = −½β(t)·x dt + √β(t) dW           (the Ornstein–Uhlenbeck form of DDPM)
///   reverse:  dx = [−½β(t)·x − β(t)·s(x, t)] dt + √β(t) dW̄,   s = ∇ log p_t = −ε̂/√(1 − ᾱ_t)
///   one step back over an interval whose integrated rate is B = ∫β dt = ln(ᾱ_prev/ᾱ_t) (≈ β_t for one index):
///   x_prev = x + (B/2)·x + B·s + √B·z
///   ⇒ a = 1 + B/2,  b = −B/√(1 − ᾱ_t),  c = √B  (c = 0 for the last step: Song's samplers return the mean)
/// ```
/// B from ᾱ makes any discrete schedule a continuous one (ᾱ(t) = exp(−∫β)); for the linear schedule it is
/// Song's VP SDE with β(t) = T·β_t. First order: the bias shrinks like the step, so give it 100+ steps.
pub fn euler_maruyama(schedule: &Schedule, list: &[usize]) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), list)?;
    let pairs = alpha_bar_pairs(schedule, list);
    let last = pairs.len() - 1;
    let steps = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (t, ab, ab_prev))| {
            let big_b = (ab_prev / ab).ln();
            Step::Linear {
                level: NoiseLevel::vp(schedule, t),
                a: 1.0 + big_b / 2.0,
                b: -big_b / (1.0 - ab).sqrt(),
                c: if i == last { 0.0 } else { big_b.sqrt() },
            }
        })
        .collect();
    Ok(Plan {
        name: format!("euler-maruyama {} steps", list.len()),
        init_scale: 1.0,
        steps,
    })
}

/// Heun's method (2nd order) on the probability-flow ODE (Song et al. 2021, eq. 13), as Karras et al. 2022
/// (algorithm 1) and diffusers' HeunDiscreteScheduler do. The VP ODE dx = −½β(t)·[x + s(x, t)] dt, rewritten in
/// x̃ = x/√ᾱ and σ = √((1 − ᾱ)/ᾱ), is dx̃/dσ = ε̂(x). Between consecutive indices t → t' of the list:
///
/// ```text
///   Euler:  x̃' = x̃ + (σ' − σ)·ε̂(x)                 ⇔  x' = a·x + b·ε̂(x),  a = √(ᾱ'/ᾱ),  b = √ᾱ'·(σ' − σ)
///   Heun:   x̃' = x̃ + (σ' − σ)·(ε̂(x) + ε̂(x'))/2    ⇔  x_new = a·x + (b/2)·(ε̂(x) + ε̂(x'))
/// ```
/// The last step goes to σ' = 0 (clean data), where ε̂ is undefined, so it is a plain Euler step (= DDIM η = 0).
/// NFE = 2S − 1 for S timesteps. Mind the cosine schedule: its β is clipped at 0.999, so σ at index T−1 is ≈ 2·10⁴
/// and the first Heun step spans a huge range; for Gaussian data the exact moments
/// (`analytic::gaussian_moments_after`) come out ×108 the variance at S = 10, ×4.8 at 20, +15 % at 50 and +1.7 % at
/// 100, while DDIM (Euler) stays within 30 %. Give it ≥ 100 steps there, or a linear schedule (−0.6 % at S = 100).
pub fn heun(schedule: &Schedule, list: &[usize]) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), list)?;
    let sigma = |ab: f64| ((1.0 - ab) / ab).sqrt();
    let steps = alpha_bar_pairs(schedule, list)
        .into_iter()
        .enumerate()
        .map(|(i, (t, ab, ab_prev))| {
            let level = NoiseLevel::vp(schedule, t);
            let a = (ab_prev / ab).sqrt();
            let b = ab_prev.sqrt() * (sigma(ab_prev) - sigma(ab));
            match list.get(i + 1) {
                Some(&next) => Step::Heun {
                    level,
                    next: NoiseLevel::vp(schedule, next),
                    a,
                    b,
                },
                None => Step::Linear {
                    level,
                    a,
                    b,
                    c: 0.0,
                },
            }
        })
        .collect();
    Ok(Plan {
        name: format!("heun {} steps", list.len()),
        init_scale: 1.0,
        steps,
    })
}

/// Annealed Langevin dynamics (Song & Ermon 2019, algorithm 1) on the VE noise levels σ_1 > … > σ_L:
///
/// ```text
///   x ← σ_1·z  (the VE prior N(0, σ_1²I); NCSN drew uniform noise)
///   for i = 1 … L, M times:   x ← x + (ε_i/2)·s(x, σ_i) + √ε_i·z,   ε_i = ε·σ_i²/σ_L²
///   in ε-space (s = −ε̂/σ_i):  a = 1,  b = −ε_i/(2σ_i),  c = √ε_i
///   optionally, the denoising step of Jolicoeur-Martineau et al. 2021 / NCSNv2:  x ← x + σ_L²·s(x, σ_L)
///   (Tweedie's E[x₀ | x]):  a = 1, b = −σ_L, c = 0
/// ```
pub fn annealed_langevin(
    levels: &VeSchedule,
    steps_per_level: usize,
    epsilon: f64,
    denoise_last: bool,
) -> Result<Plan> {
    if steps_per_level == 0 || epsilon.is_nan() || epsilon <= 0.0 {
        return Err(Error::Usage(format!(
            "annealed Langevin needs ≥ 1 step per level and ε > 0, got {steps_per_level} and {epsilon}"
        )));
    }
    let sigma_last = *levels.sigmas.last().expect("a VE schedule is not empty");
    let mut steps = Vec::new();
    for &sigma in &levels.sigmas {
        let eps_i = epsilon * sigma * sigma / (sigma_last * sigma_last);
        for _ in 0..steps_per_level {
            steps.push(langevin_step(NoiseLevel::ve(sigma), eps_i));
        }
    }
    if denoise_last {
        steps.push(Step::Linear {
            level: NoiseLevel::ve(sigma_last),
            a: 1.0,
            b: -sigma_last,
            c: 0.0,
        });
    }
    Ok(Plan {
        name: format!(
            "annealed langevin {} levels × {steps_per_level}",
            levels.sigmas.len()
        ),
        init_scale: levels.sigmas[0],
        steps,
    })
}

/// Annealed Langevin dynamics on the noise levels of a VP (DDPM) model: the same algorithm as
/// [`annealed_langevin`], run on the VP marginals p_t (x_t = √ᾱ_t·x₀ + σ_t·z, σ_t = √(1 − ᾱ_t)) at the given
/// decreasing timesteps, so that a DDPM checkpoint can be sampled with Langevin dynamics alone (no predictor):
///
/// ```text
///   x ← z  (p_T ≈ N(0, I))
///   for each t, M times:   x ← x + (ε_t/2)·s(x, t) + √ε_t·z,   ε_t = r·σ_t²,   s = −ε̂/σ_t
///   optionally, Tweedie's denoising at the last level:   x ← (x − σ_t·ε̂)/√ᾱ_t  (E[x₀ | x_t])
/// ```
/// r = ε_t/σ_t² is the step relative to the level's noise variance (NCSN's ε = 2·10⁻⁵ at σ_L = 0.01 is r = 0.2).
pub fn annealed_langevin_vp(
    schedule: &Schedule,
    timesteps: &[usize],
    steps_per_level: usize,
    relative_step: f64,
    denoise_last: bool,
) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), timesteps)?;
    if steps_per_level == 0 || relative_step.is_nan() || relative_step <= 0.0 {
        return Err(Error::Usage(format!(
            "annealed Langevin needs ≥ 1 step per level and a step > 0, got {steps_per_level} and {relative_step}"
        )));
    }
    let mut steps = Vec::new();
    for &t in timesteps {
        let level = NoiseLevel::vp(schedule, t);
        let eps_t = relative_step * level.sigma * level.sigma;
        for _ in 0..steps_per_level {
            steps.push(langevin_step(level, eps_t));
        }
    }
    if denoise_last {
        let level = NoiseLevel::vp(schedule, *timesteps.last().expect("checked non-empty"));
        steps.push(Step::Linear {
            level,
            a: 1.0 / level.alpha,
            b: -level.sigma / level.alpha,
            c: 0.0,
        });
    }
    Ok(Plan {
        name: format!(
            "annealed langevin (VP) {} levels × {steps_per_level}",
            timesteps.len()
        ),
        init_scale: 1.0,
        steps,
    })
}

/// x ← x + (δ/2)·s(x, level) + √δ·z with s = −ε̂/sigma: the Langevin update with step δ (NCSN's convention; Song et
/// al. 2021 write x + ε·s + √(2ε)·z, i.e. δ = 2ε).
pub fn langevin_step(level: NoiseLevel, delta: f64) -> Step {
    Step::Linear {
        level,
        a: 1.0,
        b: -delta / (2.0 * level.sigma),
        c: delta.sqrt(),
    }
}

/// The process a predictor–corrector sampler runs on.
#[derive(Clone, Copy, Debug)]
pub enum Process<'a> {
    /// Variance preserving: a schedule and a decreasing timestep list.
    Vp {
        schedule: &'a Schedule,
        timesteps: &'a [usize],
    },
    /// Variance exploding: the NCSN levels σ_1 > … > σ_L.
    Ve { levels: &'a VeSchedule },
}

/// Predictor–corrector sampling (Song et al. 2021, algorithm 2/3): at each level, `corrector_steps` Langevin
/// corrector steps at that level, then one reverse-diffusion predictor step to the next level.
///
/// ```text
///   predictor, VP (α = ᾱ_t/ᾱ_prev, β = 1 − α):  x ← (2 − √α)·x + β·s + √β·z
///   predictor, VE (σ_prev = 0 after σ_L):       x ← x + (σ_i² − σ_prev²)·s + √(σ_i² − σ_prev²)·z
///   corrector:  x ← x + (δ/2)·s + √δ·z,  δ = 2·(2α_t·r²·σ_t²)
/// ```
/// Song's corrector sets its step per sample from the norms, ε = 2α(r·‖z‖/‖s‖)²; with s = −ε̂/σ_t and ‖ε̂‖ ≈ ‖z‖
/// (a unit-variance ε̂) that is 2α·r²·σ_t², with σ_t² = 1 − ᾱ_t (VP) or σ_i² (VE, α = 1). We use that expected
/// value, so every step stays a fixed scalar (δ above is NCSN's step, twice Song's ε). r = `snr` (Song: 0.16).
/// The last predictor step adds no noise (Song's `denoise = True`).
pub fn predictor_corrector(process: Process, corrector_steps: usize, snr: f64) -> Result<Plan> {
    if snr.is_nan() || snr <= 0.0 {
        return Err(Error::Usage(format!(
            "the corrector's signal-to-noise ratio must be positive, got {snr}"
        )));
    }
    let mut steps = Vec::new();
    let init_scale;
    match process {
        Process::Vp {
            schedule,
            timesteps,
        } => {
            check_timesteps(schedule.num_steps(), timesteps)?;
            init_scale = 1.0;
            let pairs = alpha_bar_pairs(schedule, timesteps);
            let last = pairs.len() - 1;
            for (i, (t, ab, ab_prev)) in pairs.into_iter().enumerate() {
                let level = NoiseLevel::vp(schedule, t);
                let alpha = ab / ab_prev;
                let beta = 1.0 - alpha;
                let delta = 2.0 * (2.0 * alpha * snr * snr * (1.0 - ab));
                for _ in 0..corrector_steps {
                    steps.push(langevin_step(level, delta));
                }
                // s = −ε̂/√(1 − ᾱ_t)
                steps.push(Step::Linear {
                    level,
                    a: 2.0 - alpha.sqrt(),
                    b: -beta / (1.0 - ab).sqrt(),
                    c: if i == last { 0.0 } else { beta.sqrt() },
                });
            }
        }
        Process::Ve { levels } => {
            init_scale = levels.sigmas[0];
            let n = levels.sigmas.len();
            for (i, &sigma) in levels.sigmas.iter().enumerate() {
                let level = NoiseLevel::ve(sigma);
                let delta = 2.0 * (2.0 * snr * snr * sigma * sigma);
                for _ in 0..corrector_steps {
                    steps.push(langevin_step(level, delta));
                }
                let sigma_prev = if i + 1 < n { levels.sigmas[i + 1] } else { 0.0 };
                let var = sigma * sigma - sigma_prev * sigma_prev;
                steps.push(Step::Linear {
                    level,
                    a: 1.0,
                    b: -var / sigma,
                    c: if i + 1 == n { 0.0 } else { var.sqrt() },
                });
            }
        }
    }
    Ok(Plan {
        name: format!("predictor-corrector ×{corrector_steps} r={snr}"),
        init_scale,
        steps,
    })
}
