//! `scheduler/scheduler_config.json` → what diffuse records of a DDPM training run: T, the β schedule, the
//! prediction and the zero-terminal-SNR rescaling. Absent keys take `DDPMScheduler`'s defaults (diffusers 0.42.1).
//! What it says about sampling (its spacing, variance and clip) becomes the model's [`SamplingDefaults`].

use super::json::Config;
use crate::diffusion::samplers::{Clip, DdpmVariance, Spacing};
use crate::diffusion::{NamedSchedule, Prediction};
use crate::error::Result;
use crate::sample::SamplingDefaults;
use crate::train::TrainSettings;

/// The training side of a scheduler config, and how its own sampling runs.
pub struct Scheduler {
    pub timesteps: usize,
    pub schedule: NamedSchedule,
    pub target: Prediction,
    pub zero_terminal_snr: bool,
    pub sampling: SamplingDefaults,
}

impl Scheduler {
    /// `DDPMScheduler()`'s defaults, for a `unet/` directory with no scheduler beside it (train_unconditional's
    /// `checkpoint-N/unet_ema`, whose run used them unless told otherwise).
    pub fn defaults() -> Scheduler {
        Scheduler {
            timesteps: 1000,
            schedule: NamedSchedule::Linear,
            target: Prediction::Epsilon,
            zero_terminal_snr: false,
            // DDPMScheduler(): fixed_small, clip_sample ±1, leading spacing, steps_offset 0.
            sampling: SamplingDefaults {
                spacing: Spacing::LEADING,
                variance: DdpmVariance::PosteriorBeta,
                clip: Clip::ClampKeepEps { lo: -1.0, hi: 1.0 },
            },
        }
    }

    pub fn apply(&self, settings: &mut TrainSettings) {
        settings.timesteps = self.timesteps;
        settings.schedule = self.schedule;
        settings.target = self.target;
        settings.zero_terminal_snr = self.zero_terminal_snr;
    }
}

pub fn read(c: &Config) -> Result<Scheduler> {
    if c.get("trained_betas").is_some_and(|v| !v.is_null()) {
        return Err(c.error(
            "\"trained_betas\" is set: diffuse builds its schedules from their names (linear, squaredcos_cap_v2)",
        ));
    }
    let timesteps = c.uint("num_train_timesteps", Some(1000))?.unwrap_or(0);
    if !(1..=crate::checkpoint::MAX_TIMESTEPS).contains(&timesteps) {
        return Err(c.error(format!(
            "\"num_train_timesteps\" is {timesteps}, outside 1..={}",
            crate::checkpoint::MAX_TIMESTEPS
        )));
    }
    let target = match c.string("prediction_type", Some("epsilon"))?.as_deref() {
        Some("epsilon") => Prediction::Epsilon,
        Some("sample") => Prediction::Sample,
        Some("v_prediction") => Prediction::Velocity,
        _ => {
            return Err(c.error(format!(
                "\"prediction_type\" is {}: diffuse reads epsilon, sample and v_prediction",
                shown(c, "prediction_type")
            )))
        }
    };
    Ok(Scheduler {
        timesteps,
        schedule: schedule(c)?,
        target,
        zero_terminal_snr: c.boolean("rescale_betas_zero_snr", false)?,
        sampling: sampling(c)?,
    })
}

/// How the scheduler samples: `timestep_spacing` with `steps_offset`, `variance_type`, and `thresholding` or
/// `clip_sample` (both keep the model's ε̂, as diffusers' schedulers do unless told otherwise).
fn sampling(c: &Config) -> Result<SamplingDefaults> {
    let variance = match c.string("variance_type", Some("fixed_small"))?.as_deref() {
        Some("fixed_small" | "fixed_small_log") => DdpmVariance::PosteriorBeta,
        Some("fixed_large" | "fixed_large_log") => DdpmVariance::Beta,
        _ => {
            return Err(c.error(format!(
            "\"variance_type\" is {}: a learned variance needs the network's second output, which \
                 diffuse's network does not have",
            shown(c, "variance_type")
        )))
        }
    };
    let offset = c.uint("steps_offset", Some(0))?.unwrap_or(0);
    let spacing = match c.string("timestep_spacing", Some("leading"))?.as_deref() {
        Some("leading") => Spacing::Leading {
            steps_offset: offset,
        },
        Some("trailing") if offset == 0 => Spacing::Trailing,
        Some("linspace") if offset == 0 => Spacing::Linspace,
        _ => {
            return Err(c.error(format!(
                "\"timestep_spacing\" {} with \"steps_offset\" {offset}: diffuse spaces steps as leading \
                 (with any offset), trailing or linspace (offset 0)",
                 shown(c, "timestep_spacing")
            )))
        }
    };
    let clip = if c.boolean("thresholding", false)? {
        Clip::Dynamic {
            ratio: c.number("dynamic_thresholding_ratio", 0.995)?,
            max: c.number("sample_max_value", 1.0)?,
        }
    } else if c.boolean("clip_sample", true)? {
        let hi = c.number("clip_sample_range", 1.0)?;
        Clip::ClampKeepEps { lo: -hi, hi }
    } else {
        Clip::None
    };
    Ok(SamplingDefaults {
        spacing,
        variance,
        clip,
    })
}

/// `key`'s value as written, for a message ("absent" where it is not there).
fn shown(c: &Config, key: &str) -> String {
    c.get(key).map_or("absent".into(), |v| v.to_string())
}

/// The β schedule: linear from 1e-4 to 0.02 (DDPM's), or squaredcos_cap_v2 (improved-diffusion's cosine).
fn schedule(c: &Config) -> Result<NamedSchedule> {
    match c.string("beta_schedule", Some("linear"))?.as_deref() {
        Some("linear") => {
            let (start, end) = (c.number("beta_start", 1e-4)?, c.number("beta_end", 0.02)?);
            let near = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b;
            if near(start, 1e-4) && near(end, 0.02) {
                Ok(NamedSchedule::Linear)
            } else {
                Err(c.error(format!(
                    "\"beta_start\" {start} and \"beta_end\" {end}: diffuse's linear schedule runs from 1e-4 to \
                     0.02 (DDPM's); other endpoints are not supported yet"
                )))
            }
        }
        Some("squaredcos_cap_v2") => Ok(NamedSchedule::Cosine),
        _ => Err(c.error(format!(
            "\"beta_schedule\" is {}: diffuse reads linear and squaredcos_cap_v2",
            shown(c, "beta_schedule")
        ))),
    }
}
