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
//! Levels are the samplers' one coordinate: the solvers ([`euler`], [`heun`], [`dpm_solver_2m`], [`unipc_bh2`]) take
//! a decreasing list of them, and a timestep list is one way to derive it ([`vp_levels`]; Karras et al.'s σ,
//! [`karras_levels`], another). DDPM, DDIM, Euler–Maruyama and predictor–corrector keep taking the timestep list
//! itself: their scalars are ᾱ at the list's indices.
//!
//! Timesteps follow `timestep.rs`: indices 0 … T−1, sampling walks a decreasing list of them, and the step *from*
//! the last index in the list goes to clean data (ᾱ_prev = 1) and adds no noise. For the DDIM spacings see
//! [`Spacing`]; the default is [`Spacing::Trailing`].
//!
//! The files, by concern: `level.rs` (noise levels and predictions), `plan.rs` (the step IR and x̂₀-clipping),
//! `spacing.rs` (timestep lists, Karras and VP levels), and the constructors: `ancestral.rs` (DDPM, DDIM), `sde.rs`
//! (Euler–Maruyama, Langevin, predictor–corrector), `multistep.rs` (DPM-Solver++(2M), UniPC), `ode.rs` (Euler and
//! Heun on the probability-flow ODE).

mod ancestral;
mod level;
mod multistep;
mod ode;
mod plan;
mod sde;
mod spacing;

pub use ancestral::{ddim, ddpm, DdpmVariance};
pub use level::{NoiseLevel, Prediction};
pub use multistep::{dpm_solver_2m, unipc_bh2};
pub use ode::{euler, heun, heun_churned, ChurnSettings, Start};
pub use plan::{
    Churn, Clip, Clipped, Corrector, FoldedStep, History, Multistep, Plan, Step, X0Bound,
};
pub use sde::{
    annealed_langevin, annealed_langevin_levels, annealed_langevin_vp, euler_maruyama,
    langevin_step, ncsnv2_relative_step, predictor_corrector, Process,
};
pub use spacing::{
    check_timesteps, karras_levels, karras_sigmas, level_at_sigma, sigma_to_t, timesteps,
    vp_levels, Spacing, KARRAS_RHO,
};
