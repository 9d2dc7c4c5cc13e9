//! CPU reference of shaders/vlb.wgsl in f64 (the formulas of src/diffusion/vlb.rs), and the bound on the f32
//! kernel's error that the tests use.

use crate::diffusion::vlb::{VlbCoefficients, BIN_HALF_WIDTH, EDGE};
use crate::reference::{gamma, F32_UNIT_ROUNDOFF};

/// The coefficients as the GPU holds them: every table value and scalar rounded to f32 (σ_0 through its rounded
/// reciprocal, which is what the kernel stores).
pub fn rounded(c: &VlbCoefficients) -> VlbCoefficients {
    let r = |v: &Vec<f64>| v.iter().map(|&x| x as f32 as f64).collect();
    VlbCoefficients {
        kl_const: r(&c.kl_const),
        kl_scale: r(&c.kl_scale),
        x0_from_x: r(&c.x0_from_x),
        x0_from_output: r(&c.x0_from_output),
        decoder_std: 1.0 / ((1.0 / c.decoder_std) as f32 as f64),
        prior_const: c.prior_const as f32 as f64,
        prior_scale: c.prior_scale as f32 as f64,
    }
}

/// weight[row]·term per element, for rows of `d` coordinates.
pub fn vlb_terms(
    c: &VlbCoefficients,
    x0: &[f64],
    x_t: &[f64],
    o: &[f64],
    t: &[u32],
    weight: &[f64],
) -> Vec<f64> {
    let d = x0.len() / t.len();
    (0..x0.len())
        .map(|i| {
            let step = (t[i / d] as usize).min(c.num_steps() - 1);
            let x0_hat = c.x0_from_x[step] * x_t[i] + c.x0_from_output[step] * o[i];
            weight[i / d] * c.term(step, x0[i], x0_hat)
        })
        .collect()
}

/// A first-order bound on |kernel − reference| per element (u = 2⁻²⁴; WGSL: exp within (3 + 2|x|) ULP, log within
/// 3 ULP or 2⁻²¹ absolute on [0.5, 2]; one ULP ≤ 2u relative):
/// - x̂₀ = c_x·x_t + c_o·o: Δx̂ ≤ γ₂·(|c_x·x_t| + |c_o·o|).
/// - t ≥ 1, kl_const + kl_scale·e² with e = x₀ − x̂₀: γ₃·(|kl_const| + kl_scale·e²) + 2·kl_scale·|e|·(u|e| + Δx̂).
/// - t = 0, −ln P with P the bin's mass between z_lo and z_hi (z = (x₀ ∓ 1/255 − x̂₀)/σ_0): each z is off by
///   Δz ≤ (Δx̂ + γ₃·(|x₀| + 1/255 + |x̂₀|))/σ_0 + u·|z|, which moves ln P by φ(z)·Δz/P; each tail is off by a
///   relative ε_Φ(z) = γ₂₀·(z²/2 + 6) + (14 + 2z²)·u (the fit's 10-step Horner sum of O(z²) terms, then an exp of
///   an argument ≈ −z²/2), which reaches ln P multiplied by (tail_lo + tail_hi)/P (the cancellation of the
///   subtraction); the log adds 2⁻²¹ + 6u·|ln P|.
/// - t = T − 1 adds γ₃·(|prior_const| + prior_scale·x₀²); the weight's product adds u·|weight·term|.
pub fn vlb_terms_bound(
    c: &VlbCoefficients,
    x0: &[f64],
    x_t: &[f64],
    o: &[f64],
    t: &[u32],
    weight: &[f64],
) -> Vec<f64> {
    let u = F32_UNIT_ROUNDOFF;
    let d = x0.len() / t.len();
    let phi = |z: f64| (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let eps_tail = |z: f64| gamma(20) * (0.5 * z * z + 6.0) + (14.0 + 2.0 * z * z) * u;
    (0..x0.len())
        .map(|i| {
            let step = (t[i / d] as usize).min(c.num_steps() - 1);
            let (cx, co) = (c.x0_from_x[step], c.x0_from_output[step]);
            let x0_hat = cx * x_t[i] + co * o[i];
            let dx = gamma(2) * ((cx * x_t[i]).abs() + (co * o[i]).abs());
            let x = x0[i];
            let mut bound = if step == 0 {
                let s = c.decoder_std;
                let z_lo = (x - BIN_HALF_WIDTH - x0_hat) / s;
                let z_hi = (x + BIN_HALF_WIDTH - x0_hat) / s;
                let dz = |z: f64| {
                    (dx + gamma(3) * (x.abs() + BIN_HALF_WIDTH + x0_hat.abs())) / s + u * z.abs()
                };
                let cdf = crate::diffusion::vlb::normal_cdf;
                // The tails the kernel subtracts (or the one it keeps at an edge bin), and the mass.
                let (tails, mass, moving): (f64, f64, f64) = if x <= -EDGE {
                    (cdf(z_hi), cdf(z_hi), phi(z_hi) * dz(z_hi))
                } else if x >= EDGE {
                    (cdf(-z_lo), cdf(-z_lo), phi(z_lo) * dz(z_lo))
                } else {
                    let (a, b) = if z_lo > 0.0 {
                        (cdf(-z_lo), cdf(-z_hi))
                    } else {
                        (cdf(z_hi), cdf(z_lo))
                    };
                    (a + b, a - b, phi(z_lo) * dz(z_lo) + phi(z_hi) * dz(z_hi))
                };
                let mass = mass.max(1e-12);
                let tail_error = eps_tail(z_lo).max(eps_tail(z_hi)) * tails;
                (moving + tail_error) / mass + 2f64.powi(-21) + 6.0 * u * mass.ln().abs()
            } else {
                let e = x - x0_hat;
                gamma(3) * (c.kl_const[step].abs() + c.kl_scale[step] * e * e)
                    + 2.0 * c.kl_scale[step] * e.abs() * (u * e.abs() + dx)
            };
            if step == c.num_steps() - 1 {
                bound += gamma(3) * (c.prior_const.abs() + c.prior_scale * x * x);
            }
            let w = weight[i / d];
            let term = c.term(step, x, x0_hat);
            w.abs() * bound + u * (w * term).abs()
        })
        .collect()
}
