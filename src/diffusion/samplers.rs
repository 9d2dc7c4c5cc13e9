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
    /// x̂₀ = bound(p·x + q·ε̂(x, level)); x ← u·x̂₀ + w·x + v·ε̂(x, level) + c·z.
    Clipped {
        level: NoiseLevel,
        p: f64,
        q: f64,
        bound: X0Bound,
        u: f64,
        w: f64,
        v: f64,
        c: f64,
    },
    /// Heun: the Euler predictor x' = a·x + b·ε̂(x, level), then x ← a·x + (b/2)·(ε̂(x, level) + ε̂(x', next)).
    Heun {
        level: NoiseLevel,
        next: NoiseLevel,
        a: f64,
        b: f64,
    },
    /// A multistep step on x̂₀ (DPM-Solver++, UniPC), with a state carried from step to step: the corrected
    /// sample s and the x̂₀ of the previous two evaluations, m₁ and m₂ (see [`Multistep`]).
    Multistep(Multistep),
}

/// The scalars of a folded x̂₀-bounded step: x̂₀ = bound(p·x + q·o); y = u·x̂₀ + w·x + v·o + c·z.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Clipped {
    pub p: f64,
    pub q: f64,
    pub bound: X0Bound,
    pub u: f64,
    pub w: f64,
    pub v: f64,
    pub c: f64,
}

/// The scalars of a [`Step::Multistep`]. With m = bound(p·x + q·ε̂(x, level)), this step's x̂₀:
///
/// ```text
///   corrector (UniC; else x_c = x):  x_c = k.s·s + k.m·m + k.m1·m₁ + k.m2·m₂
///   update:                          x ← a·x_c + b.m·m + b.m1·m₁ + b.m2·m₂
///   state for the next step:         s ← x_c,  m₂ ← m₁,  m₁ ← m
/// ```
/// A scalar that multiplies a state entry not yet written (the first steps) is 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Multistep {
    pub level: NoiseLevel,
    pub p: f64,
    pub q: f64,
    pub bound: X0Bound,
    pub corrector: Option<Corrector>,
    pub a: f64,
    pub b: History,
}

/// Weights of this step's x̂₀ and the previous two: `m·m + m1·m₁ + m2·m₂`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct History {
    pub m: f64,
    pub m1: f64,
    pub m2: f64,
}

/// UniPC's corrector: x_c = s·(the previous corrected sample) + the history weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Corrector {
    pub s: f64,
    pub history: History,
}

/// What bounds x̂₀ before a step uses it (the kernel's part of [`Clip`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum X0Bound {
    None,
    /// clamp(x̂₀, lo, hi)
    Fixed {
        lo: f64,
        hi: f64,
    },
    /// Imagen's dynamic thresholding, per sample: s = min(max(q, 1), max) with q the `ratio`-quantile of |x̂₀|
    /// over the sample's elements (linear interpolation between order statistics, as torch.quantile);
    /// x̂₀ ← clamp(x̂₀, −s, s)/s.
    Dynamic {
        ratio: f64,
        max: f64,
    },
}

/// A step with its scalars folded for the model's output o instead of ε̂: what the GPU kernels take.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FoldedStep {
    /// y = a·x + b·o + c·z
    Linear { a: f64, b: f64, c: f64 },
    /// x̂₀ = bound(p·x + q·o); y = u·x̂₀ + w·x + v·o + c·z
    Clipped(Clipped),
    /// Predictor x' = a1·x + b1·o (o = model at x, level); corrector y = a·x + b·o + b2·o2 (o2 = model at x', next).
    Heun {
        a1: f64,
        b1: f64,
        a: f64,
        b: f64,
        b2: f64,
    },
    /// As [`Step::Multistep`] with p, q for the output o: m = bound(p·x + q·o).
    Multistep(Multistep),
}

impl Step {
    /// The level the model is first evaluated at.
    pub fn level(&self) -> &NoiseLevel {
        match self {
            Step::Linear { level, .. } | Step::Clipped { level, .. } | Step::Heun { level, .. } => {
                level
            }
            Step::Multistep(m) => &m.level,
        }
    }

    /// True where the step draws fresh noise z.
    pub fn adds_noise(&self) -> bool {
        match *self {
            Step::Linear { c, .. } | Step::Clipped { c, .. } => c != 0.0,
            Step::Heun { .. } | Step::Multistep(_) => false,
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
                bound,
                u,
                w,
                v,
                c,
            } => {
                let (e_x, e_o) = prediction.epsilon_from(&level);
                FoldedStep::Clipped(Clipped {
                    p: p + q * e_x,
                    q: q * e_o,
                    bound,
                    u,
                    w: w + v * e_x,
                    v: v * e_o,
                    c,
                })
            }
            Step::Multistep(m) => {
                let (e_x, e_o) = prediction.epsilon_from(&m.level);
                FoldedStep::Multistep(Multistep {
                    p: m.p + m.q * e_x,
                    q: m.q * e_o,
                    ..m
                })
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

/// What a sampler does to x̂₀, the model's estimate of the clean image, before stepping with it: the choices other
/// tools make, so that a run here can reproduce theirs from the same x_T and weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Clip {
    /// x̂₀ as the model gives it (diffusers' default, k-diffusion).
    None,
    /// Clamp x̂₀ to [lo, hi] and step with the ε̂ recomputed from the clamped x̂₀ (improved-diffusion's DDIM,
    /// diffusers' `use_clipped_model_output`).
    Clamp { lo: f64, hi: f64 },
    /// Clamp x̂₀ to [lo, hi] but step with the model's own ε̂ (diffusers' `clip_sample`).
    ClampKeepEps { lo: f64, hi: f64 },
    /// Imagen's dynamic thresholding (diffusers' `thresholding`, which keeps the model's ε̂): see
    /// [`X0Bound::Dynamic`].
    Dynamic { ratio: f64, max: f64 },
}

impl Clip {
    /// [−1, 1], images' range, with ε̂ recomputed: what DDPM and DDIM do unless told otherwise.
    pub const IMAGES: Clip = Clip::Clamp { lo: -1.0, hi: 1.0 };

    /// The bound on x̂₀, and whether ε̂ is recomputed from the bounded x̂₀.
    pub fn bound(self) -> (X0Bound, bool) {
        match self {
            Clip::None => (X0Bound::None, false),
            Clip::Clamp { lo, hi } => (X0Bound::Fixed { lo, hi }, true),
            Clip::ClampKeepEps { lo, hi } => (X0Bound::Fixed { lo, hi }, false),
            Clip::Dynamic { ratio, max } => (X0Bound::Dynamic { ratio, max }, false),
        }
    }

    fn check(self) -> Result<()> {
        match self {
            Clip::Clamp { lo, hi } | Clip::ClampKeepEps { lo, hi } if lo.partial_cmp(&hi).is_none_or(|o| o.is_gt()) => Err(Error::Usage(
                format!("the clip range [{lo}, {hi}] is empty"),
            )),
            Clip::Dynamic { ratio, max } if !((0.0..=1.0).contains(&ratio) && max >= 1.0) => {
                Err(Error::Usage(format!(
                    "dynamic thresholding needs a quantile ratio in [0, 1] and a maximum ≥ 1, got {ratio} and {max}"
                )))
            }
            _ => Ok(()),
        }
    }
}

/// DDPM ancestral sampling (Ho et al. 2020, algorithm 2) over a decreasing timestep list (every index for the
/// paper's sampler; a subsequence respaces the chain as improved-diffusion does: α = ᾱ_t/ᾱ_prev, β = 1 − α):
///
/// ```text
///   x_{prev} = 1/√α · (x_t − β/√(1 − ᾱ_t) · ε̂) + σ·z,   σ² = β or β̃ = β(1 − ᾱ_prev)/(1 − ᾱ_t)
///   ⇒ a = 1/√α,  b = −β/(√α·√(1 − ᾱ_t)),  c = σ  (c = 0 for the step from the last index: no noise at the end)
/// ```
/// With a `clip`, the same mean through x̂₀: x̂₀ = bound(x/√ᾱ_t − √(1/ᾱ_t − 1)·ε̂), μ̃ = coef1·x̂₀ + coef2·x with
/// coef1 = β√ᾱ_prev/(1 − ᾱ_t), coef2 = (1 − ᾱ_prev)√α/(1 − ᾱ_t) (the posterior mean of q(x_prev | x_t, x₀), as
/// diffusers' DDPMScheduler; it takes no ε̂, so [`Clip::Clamp`] and [`Clip::ClampKeepEps`] are the same here).
pub fn ddpm(
    schedule: &Schedule,
    list: &[usize],
    variance: DdpmVariance,
    clip: Clip,
) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), list)?;
    clip.check()?;
    let (bound, _) = clip.bound();
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
            match bound {
                X0Bound::None => Step::Linear {
                    level,
                    a: 1.0 / alpha.sqrt(),
                    b: -beta / (alpha.sqrt() * (1.0 - ab).sqrt()),
                    c,
                },
                // The posterior mean takes x̂₀ and x, not ε̂: nothing to recompute.
                bound => Step::Clipped {
                    level,
                    p: (1.0 / ab).sqrt(),
                    q: -(1.0 / ab - 1.0).sqrt(),
                    bound,
                    u: beta * ab_prev.sqrt() / (1.0 - ab),
                    w: (1.0 - ab_prev) * alpha.sqrt() / (1.0 - ab),
                    v: 0.0,
                    c,
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
/// σ = 0. With d = √(1 − ᾱ_prev − σ²) and x̂₀ bounded by `clip`:
///
/// ```text
///   ε̂ recomputed from x̂₀ (Clip::Clamp, improved-diffusion's ddim_sample):
///       x_prev = (√ᾱ_prev − d·√ᾱ_t/√(1 − ᾱ_t))·x̂₀ + (d/√(1 − ᾱ_t))·x + σ·z
///   ε̂ kept (Clip::ClampKeepEps, Clip::Dynamic, as diffusers' DDIMScheduler):
///       x_prev = √ᾱ_prev·x̂₀ + d·ε̂ + σ·z
/// ```
pub fn ddim(schedule: &Schedule, list: &[usize], eta: f64, clip: Clip) -> Result<Plan> {
    check_timesteps(schedule.num_steps(), list)?;
    clip.check()?;
    let (bound, recompute) = clip.bound();
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
            let (p, q) = ((1.0 / ab).sqrt(), -(1.0 / ab - 1.0).sqrt());
            match (bound, recompute) {
                (X0Bound::None, _) => Step::Linear {
                    level,
                    a: (ab_prev / ab).sqrt(),
                    b: dir - ab_prev.sqrt() * (1.0 - ab).sqrt() / ab.sqrt(),
                    c: sigma,
                },
                (bound, true) => Step::Clipped {
                    level,
                    p,
                    q,
                    bound,
                    u: ab_prev.sqrt() - dir * ab.sqrt() / (1.0 - ab).sqrt(),
                    w: dir / (1.0 - ab).sqrt(),
                    v: 0.0,
                    c: sigma,
                },
                (bound, false) => Step::Clipped {
                    level,
                    p,
                    q,
                    bound,
                    u: ab_prev.sqrt(),
                    w: 0.0,
                    v: dir,
                    c: sigma,
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

// ---------------------------------------------------------------------------------------------------------------
// Multistep solvers on x̂₀ (DPM-Solver++, UniPC) and Karras et al.'s noise levels.
// ---------------------------------------------------------------------------------------------------------------

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

/// Levels a solver walks: strictly decreasing σ/α, all with σ > 0; the end below the last of them.
fn check_walk(levels: &[NoiseLevel], end: &NoiseLevel) -> Result<()> {
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

/// x̂₀ = p·x + q·ε̂ at a level: (1/α, −σ/α).
fn x0_from_epsilon(level: &NoiseLevel) -> (f64, f64) {
    (1.0 / level.alpha, -level.sigma / level.alpha)
}

/// φ = e^(−h) − 1 for the step from λ_s to λ_t (h = λ_t − λ_s), −1 where t is clean data (h = ∞).
fn phi(from: &NoiseLevel, to: &NoiseLevel) -> f64 {
    if to.sigma == 0.0 {
        -1.0
    } else {
        (-(to.lambda() - from.lambda())).exp_m1()
    }
}

/// A multistep step from level s to t (a = σ_t/σ_s, x̂₀ from ε̂ at s), with its history weights and corrector.
fn multistep_step(
    s: NoiseLevel,
    t: NoiseLevel,
    bound: X0Bound,
    corrector: Option<Corrector>,
    b: History,
) -> Step {
    let (p, q) = x0_from_epsilon(&s);
    Step::Multistep(Multistep {
        level: s,
        p,
        q,
        bound,
        corrector,
        a: t.sigma / s.sigma,
        b,
    })
}

/// DPM-Solver++(2M) (Lu et al. 2022, algorithm 2; diffusers' DPMSolverMultistepScheduler with
/// `algorithm_type="dpmsolver++"`, `solver_type="midpoint"`, order 2): one evaluation per level, stepping in
/// λ = log(α/σ) with the data prediction m = x̂₀. From level s to t, h = λ_t − λ_s, and with the previous level s'
/// (h' = λ_s − λ_s'):
///
/// ```text
///   first order (the first step; DDIM):  x_t = (σ_t/σ_s)·x − α_t·(e^(−h) − 1)·m
///   second order (midpoint):             x_t = (σ_t/σ_s)·x − α_t·(e^(−h) − 1)·(m + (h/2h')·(m − m'))
/// ```
/// The last step is first order where it lands on clean data (σ = 0, where the second-order term is unbounded),
/// and also, with `lower_order_final`, where there are fewer than 15 levels (diffusers' rule: it steadies few-step
/// runs). `end` is where the last step lands: [`NoiseLevel::CLEAN`] (diffusers' `final_sigmas_type="zero"`) or
/// the smallest training level (`"sigma_min"`). x̂₀ is bounded by `bound` before use (diffusers' thresholding).
pub fn dpm_solver_2m(
    levels: &[NoiseLevel],
    end: NoiseLevel,
    lower_order_final: bool,
    bound: X0Bound,
) -> Result<Plan> {
    check_walk(levels, &end)?;
    let n = levels.len();
    let steps = (0..n)
        .map(|i| {
            let (s, t) = (levels[i], levels.get(i + 1).copied().unwrap_or(end));
            let last = i + 1 == n;
            let first_order = i == 0 || (last && (t.sigma == 0.0 || (lower_order_final && n < 15)));
            let k = -t.alpha * phi(&s, &t);
            let b = if first_order {
                History {
                    m: k,
                    ..History::default()
                }
            } else {
                // (m − m')/r with r = h'/h; written with h/h' so that h = 0 (a repeated level) gives 0, not ∞·0.
                let ratio = (t.lambda() - s.lambda()) / (s.lambda() - levels[i - 1].lambda());
                History {
                    m: k * (1.0 + ratio / 2.0),
                    m1: -k * ratio / 2.0,
                    m2: 0.0,
                }
            };
            multistep_step(s, t, bound, None, b)
        })
        .collect();
    Ok(Plan {
        name: format!("dpm-solver++(2m) {n} steps"),
        init_scale: 1.0,
        steps,
    })
}

/// UniPC (Zhao et al. 2023) of order 2 with B(h) = e^h − 1 ("bh2"), on the data prediction, as diffusers'
/// UniPCMultistepScheduler: at each level the model's x̂₀ m first corrects the sample the previous step produced
/// (UniC, which reuses this evaluation, so the corrector costs no extra one), then the predictor (UniP) steps
/// from the corrected sample. With hh = −h and B = e^hh − 1 (h = λ_t − λ_s):
///
/// ```text
///   UniP, order 1:  x_t = (σ_t/σ_s)·x_c − α_t·B·m
///   UniP, order 2:  x_t = (σ_t/σ_s)·x_c − α_t·B·m − α_t·B·½·(m' − m)/r,       r = (λ_s' − λ_s)/h
///   UniC at t, with the previous corrected sample x_s and m_s, m_s' (orders as the predictor that led here):
///     order 1:      x_c = (σ_t/σ_s)·x_s − α_t·B·m_s − α_t·B·½·(m_t − m_s)
///     order 2:      x_c = (σ_t/σ_s)·x_s − α_t·B·m_s − α_t·B·(ρ₀·(m_s' − m_s)/r + ρ₁·(m_t − m_s))
///                   with (ρ₀, ρ₁) solving [[1, 1], [r, 1]]·ρ = (g₁, g₂)/B, g₁ = (e^hh − 1)/hh − 1,
///                   g₂ = 2·(g₁/hh − ½)  (UniPC's φ-functions, r = (λ_s' − λ_s)/h)
/// ```
/// Order 1 on the first step (no history yet) and where the step lands on clean data; with `lower_order_final`
/// also on the last step (diffusers' default). `end` and `bound` as for [`dpm_solver_2m`].
pub fn unipc_bh2(
    levels: &[NoiseLevel],
    end: NoiseLevel,
    lower_order_final: bool,
    bound: X0Bound,
) -> Result<Plan> {
    check_walk(levels, &end)?;
    let n = levels.len();
    // The predictor's order at step i (diffusers' `this_order`): warm-up, then 2 unless lowered at the end.
    let order = |i: usize| {
        let t = levels.get(i + 1).copied().unwrap_or(end);
        let cap = if lower_order_final { (n - i).min(2) } else { 2 };
        if t.sigma == 0.0 {
            1
        } else {
            cap.min(i.min(2) + 1)
        }
    };
    let steps = (0..n)
        .map(|i| {
            let s = levels[i];
            let t = levels.get(i + 1).copied().unwrap_or(end);
            let corrector = (i > 0).then(|| {
                // UniC from level i − 1 to level i, at the order of the predictor that stepped it.
                let (from, to) = (levels[i - 1], s);
                let hh = -(to.lambda() - from.lambda());
                let big_b = phi(&from, &to);
                let (g1, g2) = {
                    let g1 = big_b / hh - 1.0;
                    (g1, 2.0 * (g1 / hh - 0.5))
                };
                let at = to.alpha;
                let history = if order(i - 1) == 1 {
                    History {
                        m: -at * big_b * 0.5,
                        m1: -at * big_b + at * big_b * 0.5,
                        m2: 0.0,
                    }
                } else {
                    let r = (levels[i - 2].lambda() - from.lambda()) / -hh;
                    let (b1, b2) = (g1 / big_b, g2 / big_b);
                    let rho0 = (b1 - b2) / (1.0 - r);
                    let rho1 = b1 - rho0;
                    History {
                        m: -at * big_b * rho1,
                        m1: -at * big_b + at * big_b * (rho0 / r + rho1),
                        m2: -at * big_b * rho0 / r,
                    }
                };
                Corrector {
                    s: to.sigma / from.sigma,
                    history,
                }
            });
            let big_b = phi(&s, &t);
            let b = if order(i) == 1 {
                History {
                    m: -t.alpha * big_b,
                    ..History::default()
                }
            } else {
                // ½·(m' − m)/r with r = (λ_s' − λ_s)/h.
                let half_over_r =
                    0.5 * (t.lambda() - s.lambda()) / (levels[i - 1].lambda() - s.lambda());
                History {
                    m: -t.alpha * big_b + t.alpha * big_b * half_over_r,
                    m1: -t.alpha * big_b * half_over_r,
                    m2: 0.0,
                }
            };
            multistep_step(s, t, bound, corrector, b)
        })
        .collect();
    Ok(Plan {
        name: format!("unipc bh2 {n} steps"),
        init_scale: 1.0,
        steps,
    })
}

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
