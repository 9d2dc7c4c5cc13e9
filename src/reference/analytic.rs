//! CPU reference of shaders/analytic.wgsl (the exact model of src/diffusion/analytic.rs, in f64), and the bound on
//! the f32 kernel's error that the tests use.

use crate::diffusion::analytic::GaussianMixture;
use crate::diffusion::samplers::{NoiseLevel, Prediction};
use crate::reference::{gamma, F32_UNIT_ROUNDOFF};

/// The exact prediction for a batch x: [N·D].
pub fn analytic_predict(
    data: &GaussianMixture,
    x: &[f64],
    level: &NoiseLevel,
    prediction: Prediction,
) -> Vec<f64> {
    data.predict_batch(x, level, prediction)
}

/// A first-order bound on |kernel − exact| per element, for data whose parameters and level are f32 values (the
/// kernel's log w_k is ln w_k rounded once: covered by the |log w_k| term below). u = 2⁻²⁴; WGSL's accuracy:
/// exp within 3 + 2|x| ULP, log within 3 ULP or 2⁻²¹ absolute on [0.5, 2]; one ULP ≤ 2u relative.
///
/// - ℓ_k = log w_k − (n/2)·log v_k − Σ_j (x_j − α·μ_kj)²/(2v_k) passes through at most n + 8 roundings per term:
///   |Δℓ_k| ≤ δ_k = γ_{n+8}·(|log w_k| + Σ_j (|x_j| + |α·μ_kj|)²/(2v_k)) + (n/2)·(|Δ log v_k| + γ_4),
///   |Δ log v_k| ≤ 2⁻²¹ + 6u·|log v_k| (v_k itself: relative γ_4).
/// - The weight e_k = exp(ℓ_k − m), m the running maximum, and its rescalings: relative error
///   η_k ≤ δ_k + (7 + 5|ℓ_k − m|)·u + (7K + 4R)·u, R = max_j |ℓ_j − m| (each exp: (6 + 4|arg|)·u, the argument's
///   subtraction u·|arg|, every product u; a rescale by exp(m_old − m_new) shifts the running maximum by at most R
///   in all). An error common to every weight cancels in acc/total, so to first order
///   Δout = Σ_k r_k·η_k·(g_k − out).
/// - The two sums of K terms and the division: 2γ_{K+1}·Σ_k r_k·|g_k| + u·|out|.
/// - g_k = c1_k·(x_d − α·μ_kd) + c2·μ_kd: γ_8·(|c1_k|·(|x_d| + |α·μ_kd|) + |c2·μ_kd|).
pub fn analytic_predict_bound(
    data: &GaussianMixture,
    x: &[f64],
    level: &NoiseLevel,
    prediction: Prediction,
) -> Vec<f64> {
    let u = F32_UNIT_ROUNDOFF;
    let (d_all, k_all) = (data.dim(), data.components());
    let (a, s) = (level.alpha, level.sigma);
    let out = data.predict_batch(x, level, prediction);
    (0..x.len())
        .map(|i| {
            let (d, base) = (i % d_all, i - i % d_all);
            let dims = if data.factorized { d..d + 1 } else { 0..d_all };
            let n = dims.len() as f64;
            let mut ell = Vec::with_capacity(k_all);
            let mut delta = Vec::with_capacity(k_all);
            for k in 0..k_all {
                let v = a * a * data.variances[k] + s * s;
                let sq: f64 = dims
                    .clone()
                    .map(|j| (x[base + j] - a * data.means[k][j]).powi(2))
                    .sum();
                let sq_abs: f64 = dims
                    .clone()
                    .map(|j| (x[base + j].abs() + (a * data.means[k][j]).abs()).powi(2))
                    .sum();
                let log_w = data.weights[k].ln();
                ell.push(log_w - 0.5 * n * v.ln() - 0.5 * sq / v);
                let d_log_v = 2f64.powi(-21) + 6.0 * u * v.ln().abs() + gamma(4);
                delta.push(
                    gamma(dims.len() + 8) * (log_w.abs() + 0.5 * sq_abs / v) + 0.5 * n * d_log_v,
                );
            }
            let m = ell.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let range = ell.iter().map(|l| m - l).fold(0.0, f64::max);
            let weights: Vec<f64> = ell.iter().map(|l| (l - m).exp()).collect();
            let total: f64 = weights.iter().sum();
            let mut bound = u * out[i].abs();
            for k in 0..k_all {
                let r = weights[k] / total;
                let (c1, c2) = data.coefficients(k, level, prediction);
                let mu = data.means[k][d];
                let g = c1 * (x[i] - a * mu) + c2 * mu;
                let eta = delta[k]
                    + (7.0 + 5.0 * (m - ell[k])) * u
                    + (7.0 * k_all as f64 + 4.0 * range) * u;
                let dg = gamma(8) * (c1.abs() * (x[i].abs() + (a * mu).abs()) + (c2 * mu).abs());
                bound += r * (eta * (g - out[i]).abs() + 2.0 * gamma(k_all + 1) * g.abs() + dg);
            }
            bound
        })
        .collect()
}
