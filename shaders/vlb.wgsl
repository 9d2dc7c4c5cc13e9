// vlb.wgsl — the terms of the DDPM variational bound for 8-bit data in [−1, 1], and their weighted sum, f32.
// The math, in the timestep indices of src/diffusion/timestep.rs, is in src/diffusion/vlb.rs (Ho et al. 2020, eq. 5):
//   x̂₀   = table[2][t]·x_t + table[3][t]·o                     (the model output o as a prediction of x₀)
//   t ≥ 1:  L_t = kl_const[t] + kl_scale[t]·(x₀ − x̂₀)²         (KL(q(x_{t−1}|x_t,x₀) ‖ p(x_{t−1}|x_t)) per coordinate)
//   t = 0:  L_0 = −ln ∫_{bin(x₀)} N(y; x̂₀, σ_0²) dy             (discretised decoder; bins ±1/255, open at ±0.999)
//   t = T−1 adds L_T = prior_const + prior_scale·x₀²             (KL(q(x_{T−1}|x₀) ‖ N(0, 1)))
//   vlb_terms:  terms[i] = weight[row]·term                       (nats; the weights say how rows are averaged)
//   vlb_partial + vlb_final: total[0] = scale·Σ_i terms[i]        (scale = 1/(D·ln 2) gives bits per dimension)
// Φ comes from erfc by the Chebyshev fit of Numerical Recipes (erfcc: fractional error < 1.2·10⁻⁷ everywhere), and
// the bin's mass is taken between the two tails on the far side of the mean, so a bin far from x̂₀ keeps its digits.
// The sum is the deterministic two-stage reduction of loss.wgsl (no atomics: same n, same bits): G = min(⌈n/256⌉,
// 1024) workgroups of 256 invocations each sum a strided run and add it in a fixed tree; one workgroup adds the G
// partials.
// Buffers: x0, x_t, o, terms: [M, D] (rows of D coordinates); t: [M] u32 (clamped to T − 1); weight: [M];
// table: [4, T] rows kl_const, kl_scale, x̂₀-from-x_t, x̂₀-from-o; partial [G]; total [1].
// Dispatch: vlb_terms one invocation per element on the 2-D grid of grid_1d (wg.y·num_workgroups.x + wg.x);
// vlb_partial G×1×1; vlb_final 1×1×1. No gradients. Wrapper: src/kernels/vlb.rs. Reference: src/reference/vlb.rs.

struct Params {
    len: u32,            // M·D elements
    d: u32,              // D
    steps: u32,          // T
    partials: u32,       // G
    decoder_inv_std: f32,
    prior_const: f32,
    prior_scale: f32,
    scale: f32,          // vlb_final's multiplier
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> x_t: array<f32>;
@group(0) @binding(3) var<storage, read> o: array<f32>;
@group(0) @binding(4) var<storage, read> t: array<u32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<storage, read> table: array<f32>;
@group(0) @binding(7) var<storage, read_write> terms: array<f32>;
@group(0) @binding(8) var<storage, read> terms_in: array<f32>;       // the same buffer, read by vlb_partial
@group(0) @binding(9) var<storage, read_write> partial: array<f32>;  // [G]
@group(0) @binding(10) var<storage, read> partial_in: array<f32>;    // [G], read by vlb_final
@group(0) @binding(11) var<storage, read_write> total: array<f32>;   // [1]

// Invocations per workgroup: src/kernels/vlb.rs's WG, set as a pipeline constant.
override WG: u32;
const BIN_HALF_WIDTH: f32 = 0.003921568627;  // 1/255
const EDGE: f32 = 0.999;

// erfc(z) for z ≥ 0 (Numerical Recipes' erfcc).
fn erfc_pos(z: f32) -> f32 {
    let u = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + u * (1.00002368 + u * (0.37409196 + u * (0.09678418 + u * (-0.18628806
        + u * (0.27886807 + u * (-1.13520398 + u * (1.48851587 + u * (-0.82215223 + u * 0.17087277))))))));
    return u * exp(poly);
}

// Φ(−z) = ½·erfc(z/√2), the upper tail; accurate for large z, where 1 − Φ(z) would cancel.
fn upper_tail(z: f32) -> f32 {
    let w = z * 0.70710678118654752;
    if (w >= 0.0) { return 0.5 * erfc_pos(w); }
    return 1.0 - 0.5 * erfc_pos(-w);
}

// ln of the mass N(x̂₀, σ²) puts on the bin of x₀.
fn decoder_log_likelihood(x: f32, mean: f32) -> f32 {
    let lo = (x - BIN_HALF_WIDTH - mean) * p.decoder_inv_std;
    let hi = (x + BIN_HALF_WIDTH - mean) * p.decoder_inv_std;
    var mass: f32;
    if (x <= -EDGE) {
        mass = upper_tail(-hi);                       // Φ(hi)
    } else if (x >= EDGE) {
        mass = upper_tail(lo);                        // 1 − Φ(lo)
    } else if (lo > 0.0) {
        mass = upper_tail(lo) - upper_tail(hi);       // both upper tails small: subtract them
    } else {
        mass = upper_tail(-hi) - upper_tail(-lo);     // Φ(hi) − Φ(lo), on the lower side
    }
    return log(max(mass, 1e-12));
}

@compute @workgroup_size(WG)
fn vlb_terms(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * WG + lid.x;
    if (i >= p.len) { return; }
    let row = i / p.d;
    let step = min(t[row], p.steps - 1u);
    let x = x0[i];
    let x0_hat = table[2u * p.steps + step] * x_t[i] + table[3u * p.steps + step] * o[i];
    var term: f32;
    if (step == 0u) {
        term = -decoder_log_likelihood(x, x0_hat);
    } else {
        let e = x - x0_hat;
        term = table[step] + table[p.steps + step] * (e * e);
    }
    if (step == p.steps - 1u) {
        term += p.prior_const + p.prior_scale * (x * x);
    }
    terms[i] = weight[row] * term;
}

var<workgroup> sums: array<f32, WG>;

// Adds sums[0..256) in a fixed binary tree; every invocation of the workgroup must call it (it has barriers).
fn tree_sum(lid: u32, own: f32) -> f32 {
    sums[lid] = own;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            sums[lid] += sums[lid + stride];
        }
        workgroupBarrier();
    }
    return sums[0];
}

@compute @workgroup_size(WG)
fn vlb_partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var i = wg.x * WG + lid.x; i < p.len; i += p.partials * WG) {
        s += terms_in[i];
    }
    // No early return above: the barriers in tree_sum stay in uniform control flow.
    let sum = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        partial[wg.x] = sum;
    }
}

@compute @workgroup_size(WG)
fn vlb_final(@builtin(local_invocation_id) lid: vec3<u32>) {
    var s = 0.0;
    for (var g = lid.x; g < p.partials; g += WG) {
        s += partial_in[g];
    }
    let sum = tree_sum(lid.x, s);
    if (lid.x == 0u) {
        total[0] = sum * p.scale;
    }
}
