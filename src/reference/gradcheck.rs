//! Finite differences in f64: the judge of every backward reference.

/// ∂f/∂x_i by central differences, (f(x + h·e_i) − f(x − h·e_i)) / 2h for every i. Truncation error is O(h²);
/// in f64 with h ≈ 1e-6 and O(1) inputs the result carries about 9 correct digits.
pub fn numeric_gradient(x: &[f64], h: f64, f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            probe[i] = x[i] + h;
            let up = f(&probe);
            probe[i] = x[i] - h;
            let down = f(&probe);
            probe[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// ⟨a, b⟩, the scalar a test reduces an output to (L = ⟨y, w⟩ for fixed random w, so ∂L/∂y = w).
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Largest |a_i − b_i| / (atol + rtol·|b_i|); ≤ 1 means every element is within tolerance. A NaN or infinity on
/// either side counts as an infinite ratio (the first such element is the one returned), so a gradient that came out
/// NaN fails the check instead of being skipped by the comparison (`NaN > r` is false). Panics if the lengths differ:
/// zipping would silently check only the shorter one.
pub fn worst_ratio(a: &[f64], b: &[f64], atol: f64, rtol: f64) -> (usize, f64) {
    assert_eq!(
        a.len(),
        b.len(),
        "worst_ratio: the gradients differ in length"
    );
    a.iter()
        .zip(b)
        .enumerate()
        .map(|(i, (x, y))| {
            let ratio = (x - y).abs() / (atol + rtol * y.abs());
            (i, if ratio.is_nan() { f64::INFINITY } else { ratio })
        })
        .fold(
            (0, 0.0),
            |best, cur| if cur.1 > best.1 { cur } else { best },
        )
}
