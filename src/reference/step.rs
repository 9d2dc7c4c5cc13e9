//! CPU reference of shaders/step.wgsl, and a whole sampler loop in f64 (the GPU loop of src/sample.rs, step for
//! step, with the model and the noise given as functions).

use crate::diffusion::samplers::{FoldedStep, NoiseLevel, Plan, Prediction};

/// y = a·x + b·o + c·z.
pub fn step(x: &[f64], o: &[f64], z: Option<&[f64]>, a: f64, b: f64, c: f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| a * x[i] + b * o[i] + z.map_or(0.0, |z| c * z[i]))
        .collect()
}

/// y = a·x + b·o + b2·o2.
pub fn step_heun(x: &[f64], o: &[f64], o2: &[f64], a: f64, b: f64, b2: f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| a * x[i] + b * o[i] + b2 * o2[i])
        .collect()
}

/// x̂₀ = clamp(p·x + q·o, lo, hi); y = u·x̂₀ + w·x + c·z.
#[allow(clippy::too_many_arguments)]
pub fn step_clipped(
    x: &[f64],
    o: &[f64],
    z: Option<&[f64]>,
    (p, q, lo, hi): (f64, f64, f64, f64),
    u: f64,
    w: f64,
    c: f64,
) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let x0 = (p * x[i] + q * o[i]).clamp(lo, hi);
            u * x0 + w * x[i] + z.map_or(0.0, |z| c * z[i])
        })
        .collect()
}

/// Runs `plan` for a model of kind `prediction`: x starts as `x_init` (already scaled by `plan.init_scale`), and
/// each step that adds noise takes `noise(k)` (k counts those steps from 0). Heun steps evaluate the model twice.
pub fn sample(
    plan: &Plan,
    prediction: Prediction,
    model: &dyn Fn(&[f64], &NoiseLevel) -> Vec<f64>,
    x_init: &[f64],
    noise: &mut dyn FnMut(usize) -> Vec<f64>,
) -> Vec<f64> {
    let mut x = x_init.to_vec();
    let mut drawn = 0;
    for s in &plan.steps {
        let o = model(&x, s.level());
        let z = s.adds_noise().then(|| {
            drawn += 1;
            noise(drawn - 1)
        });
        x = match (s.fold(prediction), s) {
            (FoldedStep::Linear { a, b, c }, _) => step(&x, &o, z.as_deref(), a, b, c),
            (
                FoldedStep::Clipped {
                    p,
                    q,
                    u,
                    w,
                    c,
                    lo,
                    hi,
                },
                _,
            ) => step_clipped(&x, &o, z.as_deref(), (p, q, lo, hi), u, w, c),
            (FoldedStep::Heun { a1, b1, a, b, b2 }, crate::diffusion::Step::Heun { next, .. }) => {
                let x_pred = step(&x, &o, None, a1, b1, 0.0);
                let o2 = model(&x_pred, next);
                step_heun(&x, &o, &o2, a, b, b2)
            }
            (FoldedStep::Heun { .. }, _) => unreachable!("only Heun steps fold to Heun"),
        };
    }
    x
}
