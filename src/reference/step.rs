//! CPU reference of shaders/step.wgsl, and a whole sampler loop in f64 (the GPU loop of src/sample/mod.rs, step for
//! step, with the model and the noise given as functions).

use crate::diffusion::samplers::{
    Clipped, FoldedStep, Multistep, NoiseLevel, Plan, Prediction, X0Bound,
};

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

/// torch.quantile(values, ratio) (linear interpolation between the order statistics around ratio·(n − 1)).
pub fn quantile(values: &[f64], ratio: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ratio * (sorted.len() - 1) as f64;
    let below = rank.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (rank - below as f64) * (sorted[above] - sorted[below])
}

/// The dynamic threshold of one sample's x̂₀: s = min(max(quantile(|x̂₀|, ratio), 1), max).
pub fn dynamic_scale(x0: &[f64], ratio: f64, max: f64) -> f64 {
    let abs: Vec<f64> = x0.iter().map(|v| v.abs()).collect();
    quantile(&abs, ratio).max(1.0).min(max)
}

/// x̂₀ = bound(p·x + q·o) for a batch whose samples are `sample_len` elements each.
pub fn bounded_x0(
    x: &[f64],
    o: &[f64],
    p: f64,
    q: f64,
    bound: X0Bound,
    sample_len: usize,
) -> Vec<f64> {
    let raw: Vec<f64> = (0..x.len()).map(|i| p * x[i] + q * o[i]).collect();
    match bound {
        X0Bound::None => raw,
        X0Bound::Fixed { lo, hi } => raw.iter().map(|v| v.clamp(lo, hi)).collect(),
        X0Bound::Dynamic { ratio, max } => raw
            .chunks(sample_len)
            .flat_map(|sample| {
                let s = dynamic_scale(sample, ratio, max);
                sample.iter().map(move |v| v.clamp(-s, s) / s)
            })
            .collect(),
    }
}

/// x̂₀ = bound(p·x + q·o); y = u·x̂₀ + w·x + v·o + c·z.
pub fn step_clipped(
    x: &[f64],
    o: &[f64],
    z: Option<&[f64]>,
    k: &Clipped,
    sample_len: usize,
) -> Vec<f64> {
    let x0 = bounded_x0(x, o, k.p, k.q, k.bound, sample_len);
    (0..x.len())
        .map(|i| k.u * x0[i] + k.w * x[i] + k.v * o[i] + z.map_or(0.0, |z| k.c * z[i]))
        .collect()
}

/// A multistep solver's state: the corrected sample s and the previous two x̂₀, m₁ and m₂ (zero before written).
#[derive(Clone, Debug)]
pub struct MultistepState {
    pub s: Vec<f64>,
    pub m1: Vec<f64>,
    pub m2: Vec<f64>,
}

impl MultistepState {
    pub fn zeros(len: usize) -> MultistepState {
        MultistepState {
            s: vec![0.0; len],
            m1: vec![0.0; len],
            m2: vec![0.0; len],
        }
    }
}

/// One step of [`Multistep`] (folded for the output o): returns y and advances `state`.
pub fn step_multistep(
    x: &[f64],
    o: &[f64],
    k: &Multistep,
    state: &mut MultistepState,
    sample_len: usize,
) -> Vec<f64> {
    let m = bounded_x0(x, o, k.p, k.q, k.bound, sample_len);
    let mut y = vec![0.0; x.len()];
    for i in 0..x.len() {
        let xc = match k.corrector {
            Some(c) => {
                c.s * state.s[i]
                    + c.history.m * m[i]
                    + c.history.m1 * state.m1[i]
                    + c.history.m2 * state.m2[i]
            }
            None => x[i],
        };
        y[i] = k.a * xc + k.b.m * m[i] + k.b.m1 * state.m1[i] + k.b.m2 * state.m2[i];
        state.s[i] = xc;
        state.m2[i] = state.m1[i];
        state.m1[i] = m[i];
    }
    y
}

/// Runs `plan` for a model of kind `prediction`: x starts as `x_init` (already scaled by `plan.init_scale`), and
/// each step that adds noise takes `noise(k)` (k counts those steps from 0; a churned step takes its z before its
/// evaluation). Heun steps evaluate the model twice.
/// `sample_len` is the number of elements per sample (dynamic thresholding works per sample).
pub fn sample(
    plan: &Plan,
    prediction: Prediction,
    model: &dyn Fn(&[f64], &NoiseLevel) -> Vec<f64>,
    x_init: &[f64],
    noise: &mut dyn FnMut(usize) -> Vec<f64>,
) -> Vec<f64> {
    sample_in(plan, prediction, model, x_init, x_init.len(), noise)
}

/// As [`sample`], for a batch of samples of `sample_len` elements each.
pub fn sample_in(
    plan: &Plan,
    prediction: Prediction,
    model: &dyn Fn(&[f64], &NoiseLevel) -> Vec<f64>,
    x_init: &[f64],
    sample_len: usize,
    noise: &mut dyn FnMut(usize) -> Vec<f64>,
) -> Vec<f64> {
    let mut x = x_init.to_vec();
    let mut drawn = 0;
    let mut state = MultistepState::zeros(x.len());
    for s in &plan.steps {
        // A churned step draws its z first and runs from x̂ = p·x + q·z.
        if let Some(churn) = s.churn() {
            drawn += 1;
            let z = noise(drawn - 1);
            x = x
                .iter()
                .zip(&z)
                .map(|(x, z)| churn.p * x + churn.q * z)
                .collect();
        }
        let o = model(&x, s.level());
        let z = (s.adds_noise() && s.churn().is_none()).then(|| {
            drawn += 1;
            noise(drawn - 1)
        });
        x = match (s.fold(prediction), s) {
            (FoldedStep::Linear { a, b, c }, _) => step(&x, &o, z.as_deref(), a, b, c),
            (FoldedStep::Clipped(k), _) => step_clipped(&x, &o, z.as_deref(), &k, sample_len),
            (FoldedStep::Heun { a1, b1, a, b, b2 }, crate::diffusion::Step::Heun { next, .. }) => {
                let x_pred = step(&x, &o, None, a1, b1, 0.0);
                let o2 = model(&x_pred, next);
                step_heun(&x, &o, &o2, a, b, b2)
            }
            (FoldedStep::Heun { .. }, _) => unreachable!("only Heun steps fold to Heun"),
            (FoldedStep::Multistep(k), _) => step_multistep(&x, &o, &k, &mut state, sample_len),
        };
    }
    x
}
