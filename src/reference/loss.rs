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
