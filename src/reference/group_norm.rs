//! CPU reference of shaders/group_norm.wgsl, in f64: PyTorch's `nn.GroupNorm` (biased variance, eps inside the
//! square root, affine γ, β per channel), optionally followed by SiLU.
//!
//! Backward, for one group of k values with x̂ = (x − μ)·r, r = (σ² + eps)^(−1/2) and d_x̂ = γ·d_z:
//!   ∂L/∂x_i = r·d_x̂_i + ∂L/∂σ²·2(x_i − μ)/k + ∂L/∂μ/k, with ∂L/∂σ² = −½r³·Σ d_x̂·(x − μ) and ∂L/∂μ = −r·Σ d_x̂
//!   (the σ² term of ∂L/∂μ vanishes because Σ(x − μ) = 0), which gives
//!   d_x = r·(d_x̂ − mean(d_x̂) − x̂·mean(d_x̂·x̂)).

use crate::reference::elementwise::sigmoid;

/// x as [n, c, hw] split into `groups` groups of c/groups consecutive channels.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub groups: usize,
}

impl Shape {
    /// k = (C/G)·H·W, the values normalised together.
    pub fn group_len(&self) -> usize {
        self.c / self.groups * self.hw
    }

    /// The channel of the element at flat index `i`.
    pub fn channel(&self, i: usize) -> usize {
        i / self.hw % self.c
    }

    /// The (n, g) group of the element at flat index `i`, as n·G + g.
    pub fn group(&self, i: usize) -> usize {
        i / self.group_len()
    }
}

pub struct Forward {
    /// [N, C, H, W]
    pub y: Vec<f64>,
    /// [N, G]
    pub mean: Vec<f64>,
    /// [N, G]: 1/√(σ² + eps)
    pub rstd: Vec<f64>,
}

pub struct Backward {
    pub d_x: Vec<f64>,
    pub d_gamma: Vec<f64>,
    pub d_beta: Vec<f64>,
}

/// Per-group mean and rstd, two-pass.
pub fn statistics(x: &[f64], s: Shape, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let k = s.group_len();
    x.chunks(k)
        .map(|g| {
            let mu = g.iter().sum::<f64>() / k as f64;
            let var = g.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / k as f64;
            (mu, 1.0 / (var + eps).sqrt())
        })
        .unzip()
}

/// y = γ·x̂ + β, or silu of it.
pub fn forward(x: &[f64], gamma: &[f64], beta: &[f64], s: Shape, eps: f64, silu: bool) -> Forward {
    let (mean, rstd) = statistics(x, s, eps);
    let y = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (g, c) = (s.group(i), s.channel(i));
            let z = gamma[c] * (v - mean[g]) * rstd[g] + beta[c];
            if silu {
                z * sigmoid(z)
            } else {
                z
            }
        })
        .collect();
    Forward { y, mean, rstd }
}

/// The gradients of [`forward`] for an upstream gradient d_y.
pub fn backward(
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    d_y: &[f64],
    s: Shape,
    eps: f64,
    silu: bool,
) -> Backward {
    let (mean, rstd) = statistics(x, s, eps);
    let x_hat: Vec<f64> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| (v - mean[s.group(i)]) * rstd[s.group(i)])
        .collect();
    // d_z = ∂L/∂(γ·x̂ + β).
    let d_z: Vec<f64> = d_y
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            if !silu {
                return g;
            }
            let z = gamma[s.channel(i)] * x_hat[i] + beta[s.channel(i)];
            let sg = sigmoid(z);
            g * sg * (1.0 + z * (1.0 - sg))
        })
        .collect();
    let mut d_gamma = vec![0.0; s.c];
    let mut d_beta = vec![0.0; s.c];
    for i in 0..x.len() {
        d_gamma[s.channel(i)] += d_z[i] * x_hat[i];
        d_beta[s.channel(i)] += d_z[i];
    }
    let d_x_hat: Vec<f64> = d_z
        .iter()
        .enumerate()
        .map(|(i, dz)| gamma[s.channel(i)] * dz)
        .collect();
    let k = s.group_len();
    let mut d_x = Vec::with_capacity(x.len());
    for (grp, (dxh, xh)) in d_x_hat.chunks(k).zip(x_hat.chunks(k)).enumerate() {
        let mean_dxh = dxh.iter().sum::<f64>() / k as f64;
        let mean_dxh_xh = dxh.iter().zip(xh).map(|(a, b)| a * b).sum::<f64>() / k as f64;
        d_x.extend(
            dxh.iter()
                .zip(xh)
                .map(|(a, b)| rstd[grp] * (a - mean_dxh - b * mean_dxh_xh)),
        );
    }
    Backward {
        d_x,
        d_gamma,
        d_beta,
    }
}
