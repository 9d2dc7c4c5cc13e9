//! The optimizer's settings, apart from the GPU: Adam's constants in torch.optim's terms. The math that uses them is
//! src/reference/optimizer.rs (f64) and shaders/optimizer.wgsl (wrapper: src/kernels/optimizer.rs); both import
//! [`AdamConfig`] from here, so the CPU reference does not depend on GPU code.

use crate::ensure_shape;
use crate::error::Result;

/// Adam's constants (fixed for a run), in torch.optim's terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// true: AdamW (p ← p·(1 − lr·λ) before the step); false: Adam (g ← g + λ·p).
    pub decoupled: bool,
}

impl AdamConfig {
    /// torch.optim.Adam's defaults: betas (0.9, 0.999), eps 1e-8, no weight decay.
    pub fn adam() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }

    /// torch.optim.AdamW's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01.
    pub fn adamw() -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled: true,
            ..Self::adam()
        }
    }

    /// Err(Error::Shape) naming `op` unless β1, β2 ∈ [0, 1) and eps, weight_decay are finite and ≥ 0.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            ensure_shape!(
                (0.0..1.0).contains(&beta),
                op,
                "{name} must lie in [0, 1), got {beta}"
            );
        }
        ensure_shape!(
            self.eps.is_finite() && self.eps >= 0.0,
            op,
            "eps must be finite and ≥ 0, got {}",
            self.eps
        );
        ensure_shape!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            op,
            "weight_decay must be finite and ≥ 0, got {}",
            self.weight_decay
        );
        Ok(())
    }
}

/// How the EMA decay warms up over the first steps (step k counted from 0), capped at the run's decay d.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub enum EmaWarmup {
    /// min(d, (1 + k)/(10 + k)), as many DDPM trainers (and diffusers' EMAModel without `use_ema_warmup`) do: 0.1 at
    /// the first step, 0.99 after 890. What every run used before `--ema-warmup` existed.
    #[default]
    Ddpm,
    /// diffusers' EMAModel with `use_ema_warmup` (after @crowsonkb): max(0, min(d, 1 − (1 + k/inv_gamma)^(−power))).
    /// The first step copies the weights (decay 0); with inv_gamma 1, power 2/3 reaches 0.999 at k ≈ 31.6k (good
    /// for runs of a million steps), power 3/4 at k ≈ 10k (runs of ~100k steps or fewer).
    Power { power: f64, inv_gamma: f64 },
}

impl EmaWarmup {
    /// The decay at step `step` (0-based) for a run whose decay is `decay`.
    pub fn decay_at(self, decay: f64, step: u64) -> f64 {
        let k = step as f64;
        match self {
            EmaWarmup::Ddpm => decay.min((1.0 + k) / (10.0 + k)),
            EmaWarmup::Power { power, inv_gamma } => (1.0 - (1.0 + k / inv_gamma).powf(-power))
                .min(decay)
                .max(0.0),
        }
    }

    /// Err naming the problem unless power and inv_gamma are finite and > 0.
    pub fn validate(self) -> std::result::Result<(), String> {
        match self {
            EmaWarmup::Ddpm => Ok(()),
            EmaWarmup::Power { power, inv_gamma } => {
                if power.is_finite() && power > 0.0 && inv_gamma.is_finite() && inv_gamma > 0.0 {
                    Ok(())
                } else {
                    Err(format!(
                        "the EMA warm-up needs a power and an inv_gamma that are finite and > 0, got power {power}, \
                         inv_gamma {inv_gamma}"
                    ))
                }
            }
        }
    }
}

/// `ddpm` or `power=P,inv_gamma=G`: how checkpoints record it (`extra.ema_warmup`) and `--resume` names it.
impl std::fmt::Display for EmaWarmup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmaWarmup::Ddpm => f.write_str("ddpm"),
            EmaWarmup::Power { power, inv_gamma } => {
                write!(f, "power={power},inv_gamma={inv_gamma}")
            }
        }
    }
}

impl std::str::FromStr for EmaWarmup {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<EmaWarmup, String> {
        if text == "ddpm" {
            return Ok(EmaWarmup::Ddpm);
        }
        let bad = || format!("{text:?} is not \"ddpm\" or \"power=P,inv_gamma=G\"");
        let (power, inv_gamma) = text
            .strip_prefix("power=")
            .and_then(|rest| rest.split_once(",inv_gamma="))
            .ok_or_else(bad)?;
        let warmup = EmaWarmup::Power {
            power: power.parse().map_err(|_| bad())?,
            inv_gamma: inv_gamma.parse().map_err(|_| bad())?,
        };
        warmup.validate()?;
        Ok(warmup)
    }
}
