//! A sampler as the front ends name it — a kind, a number of steps and its options — and the one table that turns
//! it into a [`Plan`]: the command line (`diffuse sample`), the bench's sampling cases and the training preview all
//! build their plans here. Plain Rust (no GPU); the command line's names and help texts are [`SamplerKind::NAMES`].

use crate::diffusion::process::{LevelSpacing, Objective, Sde};
use crate::diffusion::samplers::{
    self, ChurnSettings, Clip, DdpmVariance, NoiseLevel, Plan, Process, Spacing, Start,
};
use crate::diffusion::Schedule;
use crate::diffusion::VeSchedule;
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
    /// Annealed Langevin's step at each level.
    pub langevin_step: LangevinStep,
    /// heun: Karras et al.'s churn (none by default).
    pub churn: ChurnSettings,
    /// ddpm: the variance of each step's noise (β, "fixed_large", by default).
    pub variance: DdpmVariance,
}

/// How a model's own scheduler samples, which `diffuse sample` follows where no flag says otherwise: an imported
/// diffusers model's `scheduler_config.json` (its spacing, ddpm's variance, and the clip of ddpm and ddim), kept
/// by a fine-tune of it. A model trained here has none and samples with [`SamplerSpec::new`]'s defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingDefaults {
    pub spacing: Spacing,
    pub variance: DdpmVariance,
    pub clip: Clip,
}

impl SamplingDefaults {
    /// The checkpoint's text: "spacing=leading:0,variance=small,clip=clamp-keep-eps:1" (clip also `none` or
    /// `dynamic:<ratio>:<max>`).
    pub fn to_text(&self) -> String {
        let spacing = match self.spacing {
            Spacing::Leading { steps_offset } => format!("leading:{steps_offset}"),
            Spacing::Trailing => "trailing".into(),
            Spacing::Linspace => "linspace".into(),
        };
        let variance = self.variance_word();
        let clip = match self.clip {
            Clip::None => "none".into(),
            Clip::Clamp { hi, .. } => format!("clamp:{hi}"),
            Clip::ClampKeepEps { hi, .. } => format!("clamp-keep-eps:{hi}"),
            Clip::Dynamic { ratio, max } => format!("dynamic:{ratio}:{max}"),
        };
        format!("spacing={spacing},variance={variance},clip={clip}")
    }

    /// The flags that would ask for the same, for the user: "--spacing leading, --variance small (ddpm), --clip
    /// clamp-keep-eps to ±1 (ddpm, ddim)".
    pub fn as_flags(&self) -> String {
        let spacing = match self.spacing {
            Spacing::Leading { steps_offset: 0 } => "leading".to_string(),
            Spacing::Leading { steps_offset } => format!("leading, offset {steps_offset}"),
            Spacing::Trailing => "trailing".into(),
            Spacing::Linspace => "linspace".into(),
        };
        let clip = match self.clip {
            Clip::None => "none".to_string(),
            Clip::Clamp { hi, .. } => format!("clamp to ±{hi}"),
            Clip::ClampKeepEps { hi, .. } => format!("clamp-keep-eps to ±{hi}"),
            Clip::Dynamic { ratio, max } => format!("dynamic (ratio {ratio}, max {max})"),
        };
        format!(
            "--spacing {spacing}, --variance {} (ddpm), --clip {clip} (ddpm, ddim)",
            self.variance_word()
        )
    }

    /// `--variance`'s word for the variance, which the checkpoint's text uses too.
    fn variance_word(&self) -> &'static str {
        match self.variance {
            DdpmVariance::Beta => "large",
            DdpmVariance::PosteriorBeta => "small",
        }
    }

    /// Reads [`SamplingDefaults::to_text`]'s form; the message says what was wrong.
    pub fn from_text(text: &str) -> std::result::Result<SamplingDefaults, String> {
        let mut fields = std::collections::HashMap::new();
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or(format!("{part:?} is not key=value"))?;
            fields.insert(key.trim(), value.trim());
        }
        let field = |key: &str| fields.get(key).copied().ok_or(format!("no {key}="));
        let number = |t: &str| t.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0);
        let bad = |key: &str, value: &str| format!("{key}={value} is not one this diffuse reads");
        let spacing = match field("spacing")?.split_once(':') {
            Some(("leading", offset)) => Spacing::Leading {
                steps_offset: offset.parse().map_err(|_| bad("spacing", offset))?,
            },
            _ => match field("spacing")? {
                "trailing" => Spacing::Trailing,
                "linspace" => Spacing::Linspace,
                other => return Err(bad("spacing", other)),
            },
        };
        let variance = match field("variance")? {
            "large" => DdpmVariance::Beta,
            "small" => DdpmVariance::PosteriorBeta,
            other => return Err(bad("variance", other)),
        };
        let clip_text = field("clip")?;
        let parts: Vec<&str> = clip_text.split(':').collect();
        let clip = match (
            parts[0],
            parts.get(1).and_then(|t| number(t)),
            parts.get(2).and_then(|t| number(t)),
        ) {
            ("none", None, None) if parts.len() == 1 => Clip::None,
            ("clamp", Some(hi), None) => Clip::Clamp { lo: -hi, hi },
            ("clamp-keep-eps", Some(hi), None) => Clip::ClampKeepEps { lo: -hi, hi },
            ("dynamic", Some(ratio), Some(max)) if ratio <= 1.0 => Clip::Dynamic { ratio, max },
            _ => return Err(bad("clip", clip_text)),
        };
        Ok(SamplingDefaults {
            spacing,
            variance,
            clip,
        })
    }
}

/// How annealed Langevin sizes its step ε_i at level i, always ε_i = r·σ_i² (so ε_i/ε_L = σ_i²/σ_L², NCSN's
/// annealing): r given (NCSN's rule, ε = r·σ_L²), or r chosen by NCSNv2's rule for the levels' mean ratio
/// γ = (σ_1/σ_L)^(1/(L−1)) and the steps per level (`samplers::ncsnv2_relative_step`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LangevinStep {
    Relative(f64),
    Ncsnv2,
}

impl LangevinStep {
    /// r for `levels` (σ/α decreasing) with `per_level` steps at each.
    pub fn relative(self, levels: &[NoiseLevel], per_level: usize) -> Result<f64> {
        match self {
            LangevinStep::Relative(r) => Ok(r),
            LangevinStep::Ncsnv2 => {
                let ratio = |l: &NoiseLevel| l.sigma / l.alpha;
                let (first, last) = (ratio(&levels[0]), ratio(&levels[levels.len() - 1]));
                let gamma = (first / last).powf(1.0 / (levels.len().max(2) - 1) as f64);
                samplers::ncsnv2_relative_step(gamma, per_level)
            }
        }
    }
}

/// `--langevin-step`: a positive r, or `ncsnv2`.
impl std::str::FromStr for LangevinStep {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<LangevinStep, String> {
        match text.trim() {
            "ncsnv2" => Ok(LangevinStep::Ncsnv2),
            other => match other.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 => Ok(LangevinStep::Relative(r)),
                _ => Err(format!("{other:?} is not a positive number or ncsnv2")),
            },
        }
    }
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
            langevin_step: LangevinStep::Relative(1.0),
            churn: ChurnSettings::NONE,
            variance: DdpmVariance::Beta,
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

    /// Refuses churn on a sampler other than heun.
    fn check_churn(&self) -> Result<()> {
        if self.churn.s_churn != 0.0 && self.kind != SamplerKind::Heun {
            return Err(Error::Usage(format!(
                "--churn adds noise before Heun steps (Karras et al.'s stochastic sampler): use --sampler heun, not \
                 {}",
                self.kind.name()
            )));
        }
        Ok(())
    }

    /// The plan on `schedule`.
    pub fn plan(&self, schedule: &Schedule) -> Result<Plan> {
        self.check_churn()?;
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
            SamplerKind::Ddpm => samplers::ddpm(schedule, &list, self.variance, clip),
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
                let level_at = |sigma| samplers::level_at_sigma(schedule, sigma);
                samplers::heun_churned(&karras, clean, Start::Sigma, &self.churn, &level_at)
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
                let vp: Vec<NoiseLevel> = levels
                    .iter()
                    .map(|&t| NoiseLevel::vp(schedule, t))
                    .collect();
                let step = self.langevin_step.relative(&vp, per_level)?;
                samplers::annealed_langevin_vp(schedule, &levels, per_level, step, true)
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
    /// `Objective::sampling_levels` (euler and heun Karras σ; ode the process's own grid, dpm++2m and unipc even
    /// log-SNR steps, either Karras σ with `--karras`), from the prior (N(0, I) for VP and sub-VP, N(0, σ_max²·I) otherwise) to clean data. The samplers
    /// built on DDPM's timestep list refuse, naming those that work.
    pub fn plan_on_process(&self, objective: &Objective) -> Result<Plan> {
        self.check_churn()?;
        let clip = self.clip()?;
        let or_karras = |spacing| match self.karras {
            true => LevelSpacing::Karras,
            false => spacing,
        };
        let (count, spacing) = match self.kind {
            SamplerKind::Euler => (self.steps, LevelSpacing::Karras),
            SamplerKind::Heun => (self.steps.div_ceil(2), LevelSpacing::Karras),
            SamplerKind::Ode => (self.steps, or_karras(LevelSpacing::Process)),
            SamplerKind::DpmSolver | SamplerKind::Unipc => {
                (self.steps, or_karras(LevelSpacing::LogSnr))
            }
            SamplerKind::Sde | SamplerKind::Pc => {
                let correctors = match self.kind {
                    SamplerKind::Pc => self.corrector_steps,
                    _ => 0,
                };
                return self.stochastic_on_process(objective, correctors);
            }
            SamplerKind::Langevin => return self.langevin_on_process(objective),
            SamplerKind::Ddpm | SamplerKind::Ddim => {
                return Err(Error::Usage(format!(
                    "--sampler {} walks a DDPM timestep schedule; this --objective {} model samples with euler, \
                     heun, ode, dpm++2m, unipc, sde, pc or langevin on its own noise levels",
                    self.kind.name(),
                    objective.name()
                )))
            }
        };
        let levels = objective.sampling_levels(count, spacing)?;
        let clean = NoiseLevel::CLEAN;
        let mut plan = match self.kind {
            SamplerKind::Euler => samplers::euler(&levels, clean, Start::Prior)?,
            SamplerKind::DpmSolver => {
                samplers::dpm_solver_2m(&levels, clean, true, clip.bound().0)?
            }
            SamplerKind::Unipc => samplers::unipc_bh2(&levels, clean, true, clip.bound().0)?,
            SamplerKind::Heun => {
                let level_at = |ratio| objective.level_at_ratio(ratio);
                samplers::heun_churned(&levels, clean, Start::Prior, &self.churn, &level_at)?
            }
            _ => samplers::heun(&levels, clean, Start::Prior)?,
        };
        // The prior: N(0, I) for VP and sub-VP, N(0, σ_max²·I) at the first level of the others.
        if !objective.unit_prior() {
            plan.init_scale = levels[0].sigma;
        }
        Ok(plan)
    }

    /// `sde` (no correctors) and `pc` on a score-based model: score_sde's reverse-diffusion predictor on the VE-type
    /// processes' own levels (NCSN, VE, EDM: σ_i² − σ_{i+1}² per step, as SMLD's ancestral sampling), Euler–Maruyama
    /// on the continuous VP and sub-VP SDEs at t even from 1 to t_min; each with `corrector_steps` Langevin
    /// corrector steps at signal-to-noise ratio `snr` before each predictor step.
    fn stochastic_on_process(&self, objective: &Objective, corrector_steps: usize) -> Result<Plan> {
        let levels = objective.sampling_levels(self.steps, LevelSpacing::Process)?;
        let mut plan = match objective {
            Objective::Sde {
                sde: sde @ (Sde::Vp { .. } | Sde::SubVp { .. }),
                ..
            } => {
                let times: Vec<f64> = levels
                    .iter()
                    .map(|l| sde.time_at_ratio(l.sigma / l.alpha))
                    .collect();
                let process = Process::Sde { sde, times: &times };
                samplers::predictor_corrector(process, corrector_steps, self.snr)?
            }
            _ => {
                let sigmas = VeSchedule {
                    sigmas: levels.iter().map(|l| l.sigma).collect(),
                };
                samplers::predictor_corrector(
                    Process::Ve { levels: &sigmas },
                    corrector_steps,
                    self.snr,
                )?
            }
        };
        if corrector_steps == 0 {
            plan.name = format!("reverse SDE, {} steps", self.steps);
        }
        Ok(plan)
    }

    /// `langevin` on a score-based model: annealed Langevin dynamics, [`LANGEVIN_STEPS_PER_LEVEL`] steps at each of
    /// steps / that many of the process's own levels with the spec's [`LangevinStep`], then Tweedie's denoising at
    /// the last level (NCSNv2's final step).
    fn langevin_on_process(&self, objective: &Objective) -> Result<Plan> {
        let per_level = LANGEVIN_STEPS_PER_LEVEL.min(self.steps);
        let count = self.steps / per_level;
        if count < 2 {
            return Err(Error::Usage(format!(
                "--sampler langevin runs {per_level} steps at each of --steps / {per_level} noise levels and needs \
                 two levels at least: give --steps {} or more",
                2 * per_level
            )));
        }
        let levels = objective.sampling_levels(count, LevelSpacing::Process)?;
        let step = self.langevin_step.relative(&levels, per_level)?;
        let init = if objective.unit_prior() {
            1.0
        } else {
            levels[0].sigma
        };
        samplers::annealed_langevin_levels(&levels, init, per_level, step, true)
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
