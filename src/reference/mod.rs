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
pub mod pairwise;
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

/// Deterministic values uniform in [-1, 1) (SplitMix64), different for each seed: the kernel tests' inputs, the same
/// numbers natively (tests/it) and in a browser (web/tests).
pub fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = crate::model::SplitMix64::new(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03,
    );
    (0..n)
        .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
        .collect()
}

/// Ok unless some |got_i − want_i| > bound(i); the error names the worst element relative to its bound.
pub fn check_close(got: &[f32], want: &[f64], bound: impl Fn(usize) -> f64) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "lengths differ: got {}, want {}",
            got.len(),
            want.len()
        ));
    }
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        let b = bound(i);
        // NaN in got fails: `err <= b` is false.
        let ratio = if err <= b {
            err / b.max(f64::MIN_POSITIVE)
        } else {
            f64::INFINITY
        };
        if worst.is_none_or(|(_, r)| ratio > r) {
            worst = Some((i, ratio));
        }
    }
    match worst {
        Some((i, r)) if r.is_infinite() => Err(format!(
            "disagree at [{i}]: got {}, want {}, |Δ| = {:.3e} > bound {:.3e}",
            got[i],
            want[i],
            (got[i] as f64 - want[i]).abs(),
            bound(i)
        )),
        _ => Ok(()),
    }
}
