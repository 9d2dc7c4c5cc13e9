//! `scheduler/scheduler_config.json` → what diffuse records of a DDPM training run: T, the β schedule, the
//! prediction and the zero-terminal-SNR rescaling. Absent keys take `DDPMScheduler`'s defaults (diffusers 0.42.1).
//! What the scheduler says about sampling (its variance, clipping, spacing) is reported, not yet recorded.

use super::json::Config;
use crate::diffusion::{NamedSchedule, Prediction};
use crate::error::Result;
use crate::train::TrainSettings;

/// The training side of a scheduler config, and a line on how its own sampling would run.
pub struct Scheduler {
    pub timesteps: usize,
    pub schedule: NamedSchedule,
    pub target: Prediction,
    pub zero_terminal_snr: bool,
    pub sampling: String,
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
            sampling: "DDPMScheduler's defaults".into(),
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
        other => {
            return Err(c.error(format!(
                "\"prediction_type\" is {other:?}: diffuse reads epsilon, sample and v_prediction"
            )))
        }
    };
    let variance = c
        .string("variance_type", Some("fixed_small"))?
        .unwrap_or_default();
    if !variance.starts_with("fixed_") {
        return Err(c.error(format!(
            "\"variance_type\" is {variance:?}: a learned variance needs the network's second output, which \
             diffuse's network does not have"
        )));
    }
    let spacing = c
        .string("timestep_spacing", Some("leading"))?
        .unwrap_or_default();
    let clip = match c.boolean("clip_sample", true)? {
        true => format!("clip_sample to ±{}", c.number("clip_sample_range", 1.0)?),
        false => "no clip_sample".into(),
    };
    Ok(Scheduler {
        timesteps,
        schedule: schedule(c)?,
        target,
        zero_terminal_snr: c.boolean("rescale_betas_zero_snr", false)?,
        sampling: format!("variance {variance}, {clip}, timestep_spacing {spacing}"),
    })
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
        other => Err(c.error(format!(
            "\"beta_schedule\" is {other:?}: diffuse reads linear and squaredcos_cap_v2"
        ))),
    }
}
