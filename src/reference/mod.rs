//! The CPU reference of every kernel, in plain Rust and f64: what the GPU kernels are tested against (tests/it/).
//! Same file names as `src/kernels/` and `shaders/`.

pub mod analytic;
pub mod attention;
pub mod batch;
pub mod conv2d;
pub mod conv2d_winograd;
pub mod elementwise;
pub mod embedding;
pub mod gradcheck;
pub mod group_norm;
pub mod loss;
pub mod matmul;
pub mod noise;
pub mod optimizer;
pub mod random;
pub mod step;
pub mod unet;
pub mod vlb;

/// Unit roundoff of f32 (2⁻²⁴).
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// γ_k = k·u / (1 − k·u): the classic bound on the relative error of a k-term f32 sum or dot product in any
/// summation order (Higham, Accuracy and Stability of Numerical Algorithms, §3.1). A kernel result y computed from
/// k products satisfies |y − y_exact| ≤ γ_k · Σ|terms|, which is how the tests derive their tolerances.
pub fn gamma(k: usize) -> f64 {
    let ku = k as f64 * F32_UNIT_ROUNDOFF;
    ku / (1.0 - ku)
}

/// Widens f32 data to f64 for the reference.
pub fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}
