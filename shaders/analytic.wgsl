// analytic.wgsl — the exact model in place of a network: the optimal prediction for data drawn from a mixture of
// isotropic Gaussians p(x₀) = Σ_k w_k·N(μ_k, s_k²·I), at the noise level x = α·x₀ + σ·ε (math and derivation in
// src/diffusion/analytic.rs):
//   v_k = α²·s_k² + σ²
//   ℓ_k = log w_k − (n/2)·log v_k − |x − α·μ_k|²/(2·v_k)     (n = D over the whole sample, or n = 1 per coordinate
//                                                            when `factorized`: a product of 1-D mixtures)
//   r_k = softmax(ℓ)_k                                       (the posterior weight of component k)
//   out = Σ_k r_k·(c1_k·(x_d − α·μ_kd) + c2·μ_kd)
//   prediction 0 = ε:      c1 = σ/v_k,            c2 = 0
//              1 = x₀:     c1 = α·s_k²/v_k,       c2 = 1
//              2 = v:      c1 = α·σ·(1−s_k²)/v_k, c2 = −σ      (v = α·ε − σ·x₀)
//              3 = score:  c1 = −1/v_k,           c2 = 0
// The softmax runs online in one pass over k (Milakov & Gimelshein 2018): a running maximum m, the sum of
// exp(ℓ_k − m) and the weighted sum, both rescaled when m grows, so no exp overflows and K is unbounded.
// Buffers: mixture: [K, 2 + D] rows (log w_k, s_k², μ_k0 … μ_k(D−1)); x, out: [N, D]. σ must be > 0 (s_k² = 0 is
// allowed: a point mass). analytic_predict takes (α, σ) from the params (one level for the batch);
// analytic_predict_indexed reads each sample's from levels: [2, T] (rows α_t, σ_t) at its index t: [N] u32.
// Dispatch: one invocation per element (n, d), 256 per workgroup, 2-D grid (wg.y·num_workgroups.x + wg.x). In the
// joint case each invocation recomputes its sample's K distances (D·K work per element): meant for small D.
// No gradients. Wrapper: src/kernels/analytic.rs. Reference: src/reference/analytic.rs.

struct Params {
    len: u32,         // N·D
    d: u32,           // D
    k: u32,           // K
    factorized: u32,  // 1: coordinates independent
    prediction: u32,  // 0 ε, 1 x₀, 2 v, 3 score
    alpha: f32,
    sigma: f32,
    steps: u32,       // T, for the indexed entry point
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> mixture: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> t: array<u32>;        // [N] (indexed entry point)
@group(0) @binding(5) var<storage, read> levels: array<f32>;   // [2, T] rows α, σ (indexed entry point)

// The prediction for element i at the noise level (a, s).
fn predict(i: u32, a: f32, s: f32) -> f32 {
    let dd = i % p.d;
    let base = i - dd;  // element 0 of this sample
    let xi = x[i];
    let row_len = 2u + p.d;
    var m = -3.0e38;  // running max of ℓ; the first component replaces it (exp(−3e38 − ℓ) = 0)
    var total = 0.0;
    var acc = 0.0;
    for (var k = 0u; k < p.k; k++) {
        let row = k * row_len;
        let s2 = mixture[row + 1u];
        let v = a * a * s2 + s * s;
        var sq = 0.0;
        var n = 1.0;
        if (p.factorized == 1u) {
            let e = xi - a * mixture[row + 2u + dd];
            sq = e * e;
        } else {
            for (var j = 0u; j < p.d; j++) {
                let e = x[base + j] - a * mixture[row + 2u + j];
                sq += e * e;
            }
            n = f32(p.d);
        }
        let ell = mixture[row] - 0.5 * n * log(v) - 0.5 * sq / v;
        var c1: f32;
        var c2: f32;
        switch p.prediction {
            case 0u: { c1 = s / v; c2 = 0.0; }
            case 1u: { c1 = a * s2 / v; c2 = 1.0; }
            case 2u: { c1 = a * s * (1.0 - s2) / v; c2 = -s; }
            default: { c1 = -1.0 / v; c2 = 0.0; }
        }
        let mu = mixture[row + 2u + dd];
        let g = c1 * (xi - a * mu) + c2 * mu;
        if (ell > m) {
            let rescale = exp(m - ell);
            total *= rescale;
            acc *= rescale;
            m = ell;
        }
        let e = exp(ell - m);
        total += e;
        acc += e * g;
    }
    return acc / total;
}

// Every sample at the level (p.alpha, p.sigma): a sampler's step.
@compute @workgroup_size(256)
fn analytic_predict(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * 256u + lid.x;
    if (i >= p.len) { return; }
    out[i] = predict(i, p.alpha, p.sigma);
}

// Sample n at the level of its own timestep index t[n] (clamped to T − 1), read from the [2, T] table: training-
// style batches and the variational bound. p.steps = T.
@compute @workgroup_size(256)
fn analytic_predict_indexed(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * 256u + lid.x;
    if (i >= p.len) { return; }
    let step = min(t[i / p.d], p.steps - 1u);
    out[i] = predict(i, levels[step], levels[p.steps + step]);
}
