//! What defines a training run besides the data ([`TrainSettings`]), and the checks of the settings alone.

use crate::diffusion::process::Objective;
use crate::diffusion::{NamedSchedule, Prediction, Schedule};
use crate::error::{Error, Result};
use crate::model::UNetConfig;
use crate::optim::{AdamConfig, EmaWarmup};

/// Everything that defines a training run besides the data. Each setting but the model's has its row in
/// [`super::table::SETTINGS`] (flag, checkpoint key, resume rule); the defaults are [`TrainSettings::new`]'s.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSettings {
    pub model: UNetConfig,
    pub batch: usize,
    /// Peak learning rate, reached after `warmup` steps of linear warm-up.
    pub lr: f64,
    pub warmup: u64,
    /// EMA decay; the effective decay warms up as `ema_warmup` says (by default min(decay, (1 + step)/(10 + step)),
    /// as in many DDPM trainers) so the average is not dominated by the random initialisation.
    pub ema_decay: f64,
    /// How the EMA decay warms up ([`EmaWarmup`]).
    pub ema_warmup: EmaWarmup,
    /// Global gradient-norm clip (None: off).
    pub grad_clip: Option<f64>,
    pub adam: AdamConfig,
    /// What is trained: DDPM (the schedule, T, target and weighting below) or a score-based objective, which
    /// brings its own process, target and weighting (`crate::diffusion::process`).
    pub objective: Objective,
    /// `--sigma-max data`: a new run sets the objective's σ_max to the largest distance between two training
    /// images (NCSNv2's rule, `crate::data::farthest`) before it starts; the checkpoint records the number.
    pub sigma_max_from_data: bool,
    /// A named schedule, so that a checkpoint can record which one.
    pub schedule: NamedSchedule,
    pub timesteps: usize,
    /// What the network is trained to predict (ε, x₀ or v; the noise kernel has no score target).
    pub target: Prediction,
    /// Min-SNR-γ loss weighting (Hang et al. 2023): each sample's MSE weighted by
    /// `Schedule::min_snr_weights(γ, target)` at its timestep. None: the plain, unweighted MSE.
    pub min_snr_gamma: Option<f64>,
    /// Rescale the schedule to zero terminal SNR (Lin et al. 2024, `Schedule::rescaled_zero_terminal_snr`). Needs
    /// an x₀ or v target: at ᾱ = 0 an ε target is x_t itself and says nothing about x₀.
    pub zero_terminal_snr: bool,
    /// Probability of replacing a label by "no class" (classifier-free guidance training).
    pub p_uncond: f32,
    /// Mirror each training image left–right with probability ½ (augmentation for photographs).
    pub flip: bool,
    /// Where the dataset's bytes live while training.
    pub placement: Placement,
    /// The most f32s per parameter buffer (None: as many as the adapter binds). Smaller values cut the
    /// parameters, gradients, moments and EMA into more shards, as on an adapter with a smaller binding limit.
    pub max_shard: Option<usize>,
    /// Batches whose gradients are summed before each optimizer step: a step sees `batch · grad_accum` images.
    pub grad_accum: usize,
    /// Images per forward/backward pass (must divide `batch`); None: the whole batch if it fits, else the largest
    /// divisor of it that does.
    pub micro_batch: Option<usize>,
    /// GPU memory the run may use, in bytes (None: only the adapter's per-buffer limit is checked).
    pub memory_budget: Option<u64>,
    pub seed: u64,
}

/// Where the training images live: on the GPU (each step gathers its batch there), or in host memory (each step's
/// rows are uploaded through a ring of staging buffers while the GPU works on the previous step). Both give the
/// same batches, bit for bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Placement {
    /// On the GPU where the packed bytes fit one buffer binding, else streamed.
    #[default]
    Auto,
    Gpu,
    Host,
}

impl TrainSettings {
    /// Defaults in the spirit of Ho et al. for a small model: Adam, lr 2e-4 with 500 warm-up steps (scaled down
    /// from their 5000 for short runs), EMA 0.999, clip 1.0, linear schedule with T = 1000, ε-prediction.
    pub fn new(model: UNetConfig) -> TrainSettings {
        TrainSettings {
            model,
            batch: 32,
            lr: 2e-4,
            warmup: 500,
            ema_decay: 0.999,
            ema_warmup: EmaWarmup::Ddpm,
            grad_clip: Some(1.0),
            adam: AdamConfig::adam(),
            objective: Objective::Ddpm,
            sigma_max_from_data: false,
            schedule: NamedSchedule::Linear,
            timesteps: 1000,
            target: Prediction::Epsilon,
            min_snr_gamma: None,
            zero_terminal_snr: false,
            p_uncond: 0.1,
            flip: false,
            placement: Placement::Auto,
            max_shard: None,
            grad_accum: 1,
            micro_batch: None,
            memory_budget: None,
            seed: 0,
        }
    }

    /// The learning rate of step `step` (0-based): linear warm-up to `lr`, then constant.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup == 0 {
            self.lr
        } else {
            self.lr * ((step + 1) as f64 / self.warmup as f64).min(1.0)
        }
    }

    /// The EMA decay used at step `step` (0-based): `ema_warmup`'s, capped at `ema_decay`.
    pub fn ema_decay_at(&self, step: u64) -> f64 {
        self.ema_warmup.decay_at(self.ema_decay, step)
    }

    /// The run's noise schedule (rescaled to zero terminal SNR if asked).
    pub fn noise_schedule(&self) -> Result<Schedule> {
        self.schedule.build(self.timesteps, self.zero_terminal_snr)
    }

    /// Refuses combinations of training objectives that cannot work, saying why and what to change.
    pub fn check_objectives(&self) -> Result<()> {
        self.objective.validate()?;
        if self.sigma_max_from_data {
            return Err(Error::Usage(
                "--sigma-max data: σ_max is still to be measured; set it to \
                 diffuse::data::farthest::sigma_max_from_data's result first (`diffuse train` does)"
                    .into(),
            ));
        }
        if self.objective != Objective::Ddpm {
            let name = self.objective.name();
            let ddpm_only = [
                ("--prediction", self.target != Prediction::Epsilon),
                ("--min-snr-gamma", self.min_snr_gamma.is_some()),
                ("--zero-terminal-snr", self.zero_terminal_snr),
            ];
            if let Some((flag, _)) = ddpm_only.iter().find(|(_, given)| *given) {
                return Err(Error::Usage(format!(
                    "{flag} shapes the DDPM objective; --objective {name} brings its own target and loss weighting \
                     (docs/diffusion.md): leave {flag} out, or train --objective ddpm"
                )));
            }
        }
        if self.zero_terminal_snr && self.target == Prediction::Epsilon {
            return Err(Error::Usage(
                "--zero-terminal-snr needs --prediction v (or x0), not eps: at the last timestep ᾱ = 0, so x_t is \
                 pure noise and an ε-prediction network can only learn ε̂ = x_t, which says nothing about x₀ \
                 (sampling would divide by √ᾱ = 0). Lin et al. 2024 pair the rescaled schedule with v-prediction: \
                 add --prediction v"
                    .into(),
            ));
        }
        if self.target == Prediction::Score {
            return Err(Error::Usage(
                "the score is not a training target (train for eps, x0 or v)".into(),
            ));
        }
        if let Some(gamma) = self.min_snr_gamma {
            if !(gamma.is_finite() && gamma > 0.0) {
                return Err(Error::Usage(format!(
                    "--min-snr-gamma must be a positive number (Hang et al. use 5), got {gamma}"
                )));
            }
        }
        self.ema_warmup.validate().map_err(Error::Usage)
    }
}
