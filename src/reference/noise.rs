//! CPU reference of shaders/noise.wgsl.

use crate::diffusion::samplers::Prediction;

/// (x_t, target) for samples of `d` elements with per-sample table indices `t` into rows `a`, `b`; the target is ε,
/// x_0 or v = a·ε − b·x_0 (`Prediction` with alpha = a, sigma = b).
///
/// # Panics
/// For `Prediction::Score`, which shaders/noise.wgsl does not offer as a target (`kernels::noise` rejects it too).
pub fn noise_forward(
    x0: &[f64],
    eps: &[f64],
    t: &[u32],
    a: &[f64],
    b: &[f64],
    target: Prediction,
) -> (Vec<f64>, Vec<f64>) {
    let d = x0.len() / t.len();
    let mut x_t = Vec::with_capacity(x0.len());
    let mut out = Vec::with_capacity(x0.len());
    for (i, (&x, &e)) in x0.iter().zip(eps).enumerate() {
        let s = (t[i / d] as usize).min(a.len() - 1);
        x_t.push(a[s] * x + b[s] * e);
        out.push(match target {
            Prediction::Epsilon => e,
            Prediction::Sample => x,
            Prediction::Velocity => a[s] * e - b[s] * x,
            Prediction::Score => panic!("noise_forward: shaders/noise.wgsl has no score target"),
        });
    }
    (x_t, out)
}
