//! CPU reference of shaders/noise.wgsl.

use crate::diffusion::process::{Objective, TrainPoint};
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

/// (x_in, target, cond, weight) of `shaders/noise.wgsl`'s `noise_forward_drawn`: image n at the training point of its
/// draw `draw[n]` (`Objective::point`, in f64), for samples of `x0.len() / draw.len()` elements.
///
/// # Panics
/// For `Objective::Ddpm`, which has no drawn levels.
pub fn noise_forward_drawn(
    objective: &Objective,
    x0: &[f64],
    eps: &[f64],
    draw: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let d = x0.len() / draw.len();
    let points: Vec<TrainPoint> = draw
        .iter()
        .map(|&r| objective.point(r).expect("a score-based objective"))
        .collect();
    let (mut x_in, mut target) = (Vec::new(), Vec::new());
    for (i, (&x, &e)) in x0.iter().zip(eps).enumerate() {
        let q = &points[i / d];
        x_in.push(q.c_in * (q.alpha * x + q.sigma * e));
        target.push(q.k_x0 * x + q.k_eps * e);
    }
    let cond = points.iter().map(|q| q.c_noise).collect();
    let weight = points.iter().map(|q| q.weight).collect();
    (x_in, target, cond, weight)
}
