//! CPU reference of shaders/loss.wgsl, in f64.

/// L = (1/n)·Σ (pred − target)².
pub fn mse_forward(pred: &[f64], target: &[f64]) -> f64 {
    let sum: f64 = pred
        .iter()
        .zip(target)
        .map(|(p, t)| (p - t) * (p - t))
        .sum();
    sum / pred.len() as f64
}

/// ∂(g·L)/∂pred = (2/n)·(pred − target)·g.
pub fn mse_backward(pred: &[f64], target: &[f64], g: f64) -> Vec<f64> {
    let scale = 2.0 / pred.len() as f64;
    pred.iter()
        .zip(target)
        .map(|(p, t)| scale * (p - t) * g)
        .collect()
}

/// L = (1/n)·Σ_i w_{⌊i/d⌋}·(pred_i − target_i)²: the MSE with a weight per sample (`weights`, one per sample, d =
/// n / N elements each), as shaders/loss.wgsl's weighted entry points compute it after gathering w by timestep.
pub fn mse_weighted_forward(pred: &[f64], target: &[f64], weights: &[f64]) -> f64 {
    let d = pred.len() / weights.len();
    let sum: f64 = pred
        .iter()
        .zip(target)
        .enumerate()
        .map(|(i, (p, t))| weights[i / d] * (p - t) * (p - t))
        .sum();
    sum / pred.len() as f64
}

/// ∂(g·L)/∂pred of [`mse_weighted_forward`] = (2/n)·w_{⌊i/d⌋}·(pred_i − target_i)·g.
pub fn mse_weighted_backward(pred: &[f64], target: &[f64], weights: &[f64], g: f64) -> Vec<f64> {
    let d = pred.len() / weights.len();
    let scale = 2.0 / pred.len() as f64;
    pred.iter()
        .zip(target)
        .enumerate()
        .map(|(i, (p, t))| scale * (p - t) * weights[i / d] * g)
        .collect()
}
