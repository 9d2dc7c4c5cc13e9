//! CPU reference of shaders/noise.wgsl.

use crate::kernels::noise::Target;

/// (x_t, target) for samples of `d` elements with per-sample table indices `t` into rows `a`, `b`.
pub fn noise_forward(
    x0: &[f64],
    eps: &[f64],
    t: &[u32],
    a: &[f64],
    b: &[f64],
    target: Target,
) -> (Vec<f64>, Vec<f64>) {
    let d = x0.len() / t.len();
    let mut x_t = Vec::with_capacity(x0.len());
    let mut out = Vec::with_capacity(x0.len());
    for (i, (&x, &e)) in x0.iter().zip(eps).enumerate() {
        let s = (t[i / d] as usize).min(a.len() - 1);
        x_t.push(a[s] * x + b[s] * e);
        out.push(match target {
            Target::Epsilon => e,
            Target::Sample => x,
            Target::Velocity => a[s] * e - b[s] * x,
        });
    }
    (x_t, out)
}
