//! A sampler as the front ends name it — a kind, a number of steps and its options — and the one table that turns
//! it into a [`Plan`]: the command line (`diffuse sample`), the bench's sampling cases and the training preview all
//! build their plans here. Plain Rust (no GPU); the command line's names and help texts are [`SamplerKind::NAMES`].

use crate::diffusion::process::Objective;
use crate::diffusion::samplers::{
    self, Clip, DdpmVariance, NoiseLevel, Plan, Process, Spacing, Start,
};
use crate::diffusion::Schedule;
use crate::error::{Error, Result};

/// The samplers the front ends offer (`--sampler`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    Ddpm,
    Ddim,
    Sde,
    Ode,
    Pc,
    Langevin,
    DpmSolver,
    Unipc,
    Euler,
    Heun,
}

impl SamplerKind {
    /// Every kind, in declaration order (so that `NAMES[k as usize]` is `k`'s).
    pub const ALL: [SamplerKind; 10] = [
        SamplerKind::Ddpm,
        SamplerKind::Ddim,
        SamplerKind::Sde,
        SamplerKind::Ode,
        SamplerKind::Pc,
        SamplerKind::Langevin,
        SamplerKind::DpmSolver,
        SamplerKind::Unipc,
        SamplerKind::Euler,
        SamplerKind::Heun,
    ];

    /// (name, help) of each kind, in declaration order: `--sampler`'s choices.
    #[rustfmt::skip]
    pub const NAMES: [(&'static str, &'static str); 10] = [
        ("ddpm", "Ancestral sampling (Ho et al.)"),
        ("ddim", "DDIM with η = --eta"),
        ("sde", "The reverse-time SDE, Euler–Maruyama"),
        ("ode", "The probability-flow ODE, Heun"),
        ("pc", "Predictor–corrector"),
        ("langevin", "Annealed Langevin dynamics alone: 20 steps at each of --steps / 20 noise levels"),
        ("dpm++2m", "DPM-Solver++(2M), multistep, second order (Lu et al. 2022)"),
        ("unipc", "UniPC, bh2, order 2 with its corrector (Zhao et al. 2023)"),
        ("euler", "Euler on Karras σ (Karras et al. 2022, k-diffusion's sample_euler)"),
        ("heun", "Heun on Karras σ (Karras et al. 2022, k-diffusion's sample_heun): (steps + 1)/2 levels, two \
                  evaluations at each but the last, so about --steps evaluations"),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize].0
    }

    pub fn from_name(name: &str) -> Option<SamplerKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the sampler steps with x̂₀, so that a [`Clip`] other than none means something.
    pub fn takes_clip(self) -> bool {
        matches!(
            self,
            SamplerKind::Ddpm | SamplerKind::Ddim | SamplerKind::DpmSolver | SamplerKind::Unipc
        )
    }

    /// The clip used unless one is asked for: [`Clip::IMAGES`] for DDPM and DDIM, none for the others.
    pub fn default_clip(self) -> Clip {
        match self {
            SamplerKind::Ddpm | SamplerKind::Ddim => Clip::IMAGES,
            _ => Clip::None,
        }
    }

    /// Whether the sampler can walk Karras et al.'s σ instead of the timesteps (euler and heun always do).
    pub fn takes_karras(self) -> bool {
        matches!(
            self,
            SamplerKind::DpmSolver | SamplerKind::Unipc | SamplerKind::Euler | SamplerKind::Heun
        )
    }
}

/// `--sampler`'s choices, from [`SamplerKind::NAMES`].
#[cfg(feature = "cli")]
impl clap::ValueEnum for SamplerKind {
    fn value_variants<'a>() -> &'a [Self] {
        &SamplerKind::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = SamplerKind::NAMES[*self as usize];
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}

/// Langevin steps at each noise level of [`SamplerKind::Langevin`] (NCSN used 100 per level over 10 levels, NCSNv2
/// 5 over hundreds; 20 at ε_t = σ_t² reproduces the exact model's moments in tests/it/sampling.rs).
pub const LANGEVIN_STEPS_PER_LEVEL: usize = 20;

/// A sampler and its options; [`SamplerSpec::plan`] builds its [`Plan`] for a schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplerSpec {
    pub kind: SamplerKind,
    /// Model evaluations, about (Heun's levels are (steps + 1)/2; Langevin runs steps / 20 levels of 20).
    pub steps: usize,
    /// How the timestep list is spread over the T training timesteps.
    pub spacing: Spacing,
    /// DDIM's η ∈ [0, 1].
    pub eta: f64,
    /// dpm++2m and unipc: Karras et al.'s σ instead of the timestep list.
    pub karras: bool,
    /// What is done to x̂₀; None: the kind's [`SamplerKind::default_clip`].
    pub clip: Option<Clip>,
    /// Predictor–corrector: Langevin corrector steps per level, and their signal-to-noise ratio r.
    pub corrector_steps: usize,
    pub snr: f64,
}

impl SamplerSpec {
    /// `kind` with `steps` and the defaults of `diffuse sample`: trailing spacing, η = 0, the timestep list (no
    /// Karras σ), the kind's default clip, one corrector step at r = 0.16 (Song et al.'s).
    pub fn new(kind: SamplerKind, steps: usize) -> SamplerSpec {
        SamplerSpec {
            kind,
            steps,
            spacing: Spacing::Trailing,
            eta: 0.0,
            karras: false,
            clip: None,
            corrector_steps: 1,
            snr: 0.16,
        }
    }

    /// The clip this spec uses: the one asked for, or the kind's default; refused where the sampler has no x̂₀.
    pub fn clip(&self) -> Result<Clip> {
        let clip = self.clip.unwrap_or(self.kind.default_clip());
        if !self.kind.takes_clip() && clip != Clip::None {
            return Err(Error::Usage(format!(
                "--clip {}: --sampler {} steps without x̂₀, so there is nothing to clip; leave --clip out, or use \
                 ddpm, ddim, dpm++2m or unipc",
                clip_name(clip),
                self.kind.name()
            )));
        }
        Ok(clip)
    }

    /// The plan on `schedule`.
    pub fn plan(&self, schedule: &Schedule) -> Result<Plan> {
        let t = schedule.num_steps();
        let list = samplers::timesteps(t, self.steps.min(t), self.spacing)?;
        let clip = self.clip()?;
        if self.karras && !self.kind.takes_karras() {
            return Err(Error::Usage(format!(
                "--karras: --sampler {} walks the training timesteps; Karras σ are for dpm++2m, unipc, euler and heun",
                self.kind.name()
            )));
        }
        // The noise levels of the multistep solvers.
        let levels = || match self.karras {
            true => samplers::karras_levels(schedule, self.steps),
            false => samplers::vp_levels(schedule, &list),
        };
        let clean = NoiseLevel::CLEAN;
        match self.kind {
            SamplerKind::Ddpm => samplers::ddpm(schedule, &list, DdpmVariance::Beta, clip),
            SamplerKind::Ddim => samplers::ddim(schedule, &list, self.eta, clip),
            SamplerKind::DpmSolver => {
                samplers::dpm_solver_2m(&levels()?, clean, true, clip.bound().0)
            }
            SamplerKind::Unipc => samplers::unipc_bh2(&levels()?, clean, true, clip.bound().0),
            SamplerKind::Euler => {
                let karras = samplers::karras_levels(schedule, self.steps)?;
                samplers::euler(&karras, clean, Start::Sigma)
            }
            SamplerKind::Heun => {
                let karras = samplers::karras_levels(schedule, self.steps.div_ceil(2))?;
                samplers::heun(&karras, clean, Start::Sigma)
            }
            SamplerKind::Sde => samplers::euler_maruyama(schedule, &list),
            SamplerKind::Ode => {
                samplers::heun(&samplers::vp_levels(schedule, &list)?, clean, Start::Prior)
            }
            SamplerKind::Pc => {
                let process = Process::Vp {
                    schedule,
                    timesteps: &list,
                };
                samplers::predictor_corrector(process, self.corrector_steps, self.snr)
            }
            SamplerKind::Langevin => {
                // steps counts model evaluations: LANGEVIN_STEPS_PER_LEVEL at each of steps / that many levels.
                let per_level = LANGEVIN_STEPS_PER_LEVEL.min(self.steps);
                let levels = samplers::timesteps(t, (self.steps / per_level).min(t), self.spacing)?;
                samplers::annealed_langevin_vp(schedule, &levels, per_level, 1.0, true)
            }
        }
    }
}

impl SamplerSpec {
    /// The plan for a trained model: on its DDPM schedule (`schedule`, called only for DDPM), or on the levels of
    /// its score-based process ([`SamplerSpec::plan_on_process`]).
    pub fn plan_trained(
        &self,
        objective: &Objective,
        schedule: impl FnOnce() -> Result<Schedule>,
    ) -> Result<Plan> {
        match objective {
            Objective::Ddpm => self.plan(&schedule()?),
            _ => self.plan_on_process(objective),
        }
    }

    /// The plan for a score-based model on its own process: the solvers over noise levels walk
    /// `Objective::sampling_levels` (the process's grid, or Karras σ with `--karras`; euler, heun and EDM always
    /// Karras), from the prior (N(0, I) for VP and sub-VP, N(0, σ_max²·I) otherwise) to clean data. The samplers
    /// built on DDPM's timestep list refuse, naming those that work.
    pub fn plan_on_process(&self, objective: &Objective) -> Result<Plan> {
        let clip = self.clip()?;
        let (count, karras) = match self.kind {
            SamplerKind::Euler => (self.steps, true),
            SamplerKind::Heun => (self.steps.div_ceil(2), true),
            SamplerKind::Ode | SamplerKind::DpmSolver | SamplerKind::Unipc => {
                (self.steps, self.karras)
            }
            SamplerKind::Ddpm
            | SamplerKind::Ddim
            | SamplerKind::Sde
            | SamplerKind::Pc
            | SamplerKind::Langevin => {
                return Err(Error::Usage(format!(
                    "--sampler {} walks a DDPM timestep schedule; this --objective {} model samples with euler, \
                     heun, ode, dpm++2m or unipc on its own noise levels",
                    self.kind.name(),
                    objective.name()
                )))
            }
        };
        let levels = objective.sampling_levels(count, karras)?;
        let clean = NoiseLevel::CLEAN;
        let mut plan = match self.kind {
            SamplerKind::Euler => samplers::euler(&levels, clean, Start::Prior)?,
            SamplerKind::DpmSolver => {
                samplers::dpm_solver_2m(&levels, clean, true, clip.bound().0)?
            }
            SamplerKind::Unipc => samplers::unipc_bh2(&levels, clean, true, clip.bound().0)?,
            _ => samplers::heun(&levels, clean, Start::Prior)?,
        };
        // The prior: N(0, I) for VP and sub-VP, N(0, σ_max²·I) at the first level of the others.
        if !objective.unit_prior() {
            plan.init_scale = levels[0].sigma;
        }
        Ok(plan)
    }
}

/// A clip under `--clip`'s name for it.
fn clip_name(clip: Clip) -> &'static str {
    match clip {
        Clip::None => "none",
        Clip::Clamp { .. } => "clamp",
        Clip::ClampKeepEps { .. } => "clamp-keep-eps",
        Clip::Dynamic { .. } => "dynamic",
    }
}
