//! The step IR every sampler compiles to: [`Step`]s of per-step scalars for an ε-model, folded for the model's
//! output ([`FoldedStep`], what the GPU kernels take), in a [`Plan`]; and what a step does to x̂₀ ([`Clip`],
//! [`X0Bound`]).

use super::level::{NoiseLevel, Prediction};
use crate::error::{Error, Result};

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
    /// Heun: the Euler predictor x' = a·x + b·ε̂(x, level), then x ← a·x + (b/2)·(ε̂(x, level) + ε̂(x', next));
    /// with `churn`, from x̂ = p·x + q·z instead of x.
    Heun {
        level: NoiseLevel,
        next: NoiseLevel,
        a: f64,
        b: f64,
        churn: Option<Churn>,
    },
    /// A multistep step on x̂₀ (DPM-Solver++, UniPC), with a state carried from step to step: the corrected
    /// sample s and the x̂₀ of the previous two evaluations, m₁ and m₂ (see [`Multistep`]).
    Multistep(Multistep),
}

/// Noise added before a step (Karras et al. 2022's churn): x̂ = p·x + q·z, and the step runs from x̂.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Churn {
    pub p: f64,
    pub q: f64,
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
            Step::Heun { churn, .. } => churn.is_some(),
            Step::Multistep(_) => false,
        }
    }

    /// The noise added before the step's first evaluation, if any.
    pub fn churn(&self) -> Option<Churn> {
        match *self {
            Step::Heun { churn, .. } => churn,
            _ => None,
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
            Step::Heun {
                level, next, a, b, ..
            } => {
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

    pub(super) fn check(self) -> Result<()> {
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
