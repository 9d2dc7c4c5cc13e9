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
