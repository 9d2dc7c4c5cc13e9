//! CPU reference of shaders/optimizer.wgsl, in f64, with PyTorch's semantics: torch.nn.utils.clip_grad_norm_,
//! torch.optim.Adam / AdamW (the single-tensor path: bias corrections from the step count, eps added to √v̂), and
//! the usual EMA of the weights.

use crate::optim::AdamConfig;

/// ‖g‖₂ = √(Σ gᵢ²), the sum compensated (Neumaier) so that the reference carries f64's full precision at any length.
pub fn grad_norm(g: &[f64]) -> f64 {
    let (mut sum, mut carry) = (0.0f64, 0.0f64);
    for x in g {
        let term = x * x;
        let next = sum + term;
        // The low-order digits that `next` dropped, from whichever operand was smaller.
        carry += if sum.abs() >= term {
            (sum - next) + term
        } else {
            (term - next) + sum
        };
        sum = next;
    }
    (sum + carry).sqrt()
}

/// The factor clip_grad_norm_ multiplies every gradient by: min(1, max_norm / (‖g‖ + 1e-6)).
pub fn clip_scale(norm: f64, max_norm: f64) -> f64 {
    (max_norm / (norm + 1e-6)).min(1.0)
}

/// Adam's state, as torch.optim keeps it per parameter: the moments and the number of steps taken.
#[derive(Clone, Debug)]
pub struct Adam {
    pub config: AdamConfig,
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    pub t: u64,
}

impl Adam {
    pub fn new(config: AdamConfig, len: usize) -> Self {
        Adam {
            config,
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    /// One step with learning rate `lr` on the gradients `g` (already clipped), updating `p` in place.
    pub fn step(&mut self, lr: f64, p: &mut [f64], g: &[f64]) {
        let AdamConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
        } = self.config;
        self.t += 1;
        let bias_correction1 = 1.0 - beta1.powf(self.t as f64);
        let bias_correction2 = 1.0 - beta2.powf(self.t as f64);
        for i in 0..p.len() {
            let mut grad = g[i];
            if decoupled {
                p[i] *= 1.0 - lr * weight_decay;
            } else {
                grad += weight_decay * p[i];
            }
            self.m[i] = beta1 * self.m[i] + (1.0 - beta1) * grad;
            self.v[i] = beta2 * self.v[i] + (1.0 - beta2) * grad * grad;
            let m_hat = self.m[i] / bias_correction1;
            let v_hat = self.v[i] / bias_correction2;
            p[i] -= lr * m_hat / (v_hat.sqrt() + eps);
        }
    }
}

/// ema ← decay·ema + (1 − decay)·w.
pub fn ema_update(ema: &mut [f64], w: &[f64], decay: f64) {
    for (e, &x) in ema.iter_mut().zip(w) {
        *e = decay * *e + (1.0 - decay) * x;
    }
}
