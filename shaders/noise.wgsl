// noise.wgsl — the forward noising process in closed form, with the training target.
//   x_t = a[t_n]·x_0 + b[t_n]·ε        per sample n, with its own timestep index t_n
//   VP (DDPM): a = √ᾱ_t, b = √(1 − ᾱ_t);   VE (NCSN): a = 1, b = σ_t.   The table decides, the kernel doesn't care.
//   target = ε (ε-prediction) | x_0 (x_0-prediction) | a·ε − b·x_0 (v-prediction, Salimans & Ho 2022)
// Buffers: x0, eps, x_t, target: [N, D] (D = C·H·W); t: [N] u32 indices into the table; table: [2, T] = (a, b).
// An index t ≥ T is clamped to T − 1 (timesteps are drawn on the GPU, where the host cannot check them).
// Dispatch: 256 invocations per workgroup, one element each, 2-D grid (wg.y·num_workgroups.x + wg.x).
// No backward (x_0, ε and t are data), nothing saved. Wrapper: src/kernels/noise.rs
//
// noise_forward_drawn — the score-based objectives (src/diffusion/process/): each image n has its own level,
// computed here from its draw r_n (uniform on [0, 1), or standard normal for EDM), as the TrainPoint
//   (α, σ, c_in, c_noise, k₀, k_ε, w):   x_in = c_in·(α·x₀ + σ·ε),  target = k₀·x₀ + k_ε·ε,
//   cond[n] = c_noise (what the network is conditioned on), weight[n] = w (the loss's per-image weight).
// Every element recomputes its image's point (a few exps, the same bits for all of them: no extra pass); the
// image's first element writes cond and weight. Families (p.family), with t = t_min + (1 − t_min)·r:
//   0 NCSN:   i = min(⌊r·L⌋, L − 1) in f32; (σ, ln σ) = table[(0, 1), i]; α = 1; k_ε = 1; w = 1
//   1 VE SDE: σ = σ_min·exp(t·ln(σ_max/σ_min)), c_noise = ln σ_min + t·ln(σ_max/σ_min); w = 1 or g²/σ² = 2·ln(σ_max/σ_min)
//   2 VP SDE: l = −t·(½β_min + ¼t·(β_max − β_min)); α = e^l, σ = √(−expm1(2l)), c_noise = 999·t; w = 1 or β(t)/σ²
//   3 sub-VP: α = e^l, σ = −expm1(2l); w = 1 or β(t)·(−expm1(4l))/σ²
//   4 EDM:    ln σ = P_mean + P_std·r; c_in = 1/√(σ² + σ_d²), c_noise = ¼ ln σ, k₀ = σ/(σ_d·√(σ² + σ_d²)),
//             k_ε = −σ_d/√(σ² + σ_d²), w = 1
// Precision: expm1 is a degree-9 Taylor polynomial for |x| < ½ (truncation < 2⁻³⁰ relative) and exp(x) − 1 beyond,
// so σ keeps its relative accuracy where 1 − e^{2l} would cancel (t near t_min). Each coefficient is an exp of an
// argument A made in ≤ 4 roundings, then ≤ 4 more roundings: relative error ≤ (4|A| + 3 + 2|A| + 8)·2⁻²⁴ with
// WGSL's exp bound (3 + 2|A| ULP). The test derives its bounds from this.

struct Params {
    len: u32,        // N·D
    d: u32,          // elements per sample
    steps: u32,      // T, the table length (NCSN: L)
    prediction: u32, // 0 = ε, 1 = x_0, 2 = v
    family: u32,     // noise_forward_drawn: 0 NCSN, 1 VE, 2 VP, 3 sub-VP, 4 EDM
    likelihood: u32, // 1: weight by g(t)²/σ(t)² (VE, VP, sub-VP)
    t_min: f32,
    c0: f32,         // VE: σ_min, VP/sub-VP: β_min, EDM: σ_d
    c1: f32,         // VE: ln(σ_max/σ_min), VP/sub-VP: β_max − β_min, EDM: P_mean
    c2: f32,         // VE: ln σ_min, EDM: P_std
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x0: array<f32>;
@group(0) @binding(2) var<storage, read> eps: array<f32>;
@group(0) @binding(3) var<storage, read> t: array<u32>;
@group(0) @binding(4) var<storage, read> table: array<f32>;
@group(0) @binding(5) var<storage, read_write> x_t: array<f32>;
@group(0) @binding(6) var<storage, read_write> target_out: array<f32>;
@group(0) @binding(7) var<storage, read> draw: array<f32>;            // [N]
@group(0) @binding(8) var<storage, read_write> cond: array<f32>;      // [N]
@group(0) @binding(9) var<storage, read_write> weight: array<f32>;    // [N]

@compute @workgroup_size(256)
fn noise_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * 256u + lid.x;
    if (i >= p.len) { return; }
    let step = min(t[i / p.d], p.steps - 1u);
    let a = table[step];
    let b = table[p.steps + step];
    let x = x0[i];
    let e = eps[i];
    x_t[i] = a * x + b * e;
    switch p.prediction {
        case 0u: { target_out[i] = e; }
        case 1u: { target_out[i] = x; }
        default: { target_out[i] = a * e - b * x; }
    }
}

// e^x − 1 without the cancellation of exp(x) − 1 near 0 (WGSL has no expm1).
fn expm1(x: f32) -> f32 {
    if (abs(x) < 0.5) {
        return x * (1.0 + x / 2.0 * (1.0 + x / 3.0 * (1.0 + x / 4.0 * (1.0 + x / 5.0 * (1.0 + x / 6.0
            * (1.0 + x / 7.0 * (1.0 + x / 8.0 * (1.0 + x / 9.0))))))));
    }
    return exp(x) - 1.0;
}

// (α, σ, c_in, c_noise, k₀, k_ε, w) of a draw r: the table in the header.
struct Point {
    alpha: f32,
    sigma: f32,
    c_in: f32,
    c_noise: f32,
    k_x0: f32,
    k_eps: f32,
    weight: f32,
}

fn eps_point(alpha: f32, sigma: f32, c_noise: f32, weight: f32) -> Point {
    return Point(alpha, sigma, 1.0, c_noise, 0.0, 1.0, weight);
}

fn point(r: f32) -> Point {
    let t = p.t_min + (1.0 - p.t_min) * r;
    switch p.family {
        case 0u: {
            let i = min(u32(r * f32(p.steps)), p.steps - 1u);
            return eps_point(1.0, table[i], table[p.steps + i], 1.0);
        }
        case 1u: {
            let sigma = p.c0 * exp(t * p.c1);
            return eps_point(1.0, sigma, p.c2 + t * p.c1, select(1.0, 2.0 * p.c1, p.likelihood == 1u));
        }
        case 2u, 3u: {
            let l = -t * (0.5 * p.c0 + 0.25 * t * p.c1);
            let em = -expm1(2.0 * l);
            let beta = p.c0 + t * p.c1;
            if (p.family == 2u) {
                return eps_point(exp(l), sqrt(em), 999.0 * t, select(1.0, beta / em, p.likelihood == 1u));
            }
            let g2 = beta * -expm1(4.0 * l);
            return eps_point(exp(l), em, 999.0 * t, select(1.0, g2 / (em * em), p.likelihood == 1u));
        }
        default: {
            let log_sigma = p.c1 + p.c2 * r;
            let sigma = exp(log_sigma);
            let root = sqrt(sigma * sigma + p.c0 * p.c0);
            return Point(1.0, sigma, 1.0 / root, 0.25 * log_sigma, sigma / (p.c0 * root), -p.c0 / root, 1.0);
        }
    }
}

@compute @workgroup_size(256)
fn noise_forward_drawn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wg.y * nwg.x + wg.x) * 256u + lid.x;
    if (i >= p.len) { return; }
    let n = i / p.d;
    let q = point(draw[n]);
    let x = x0[i];
    let e = eps[i];
    x_t[i] = q.c_in * (q.alpha * x + q.sigma * e);
    target_out[i] = q.k_x0 * x + q.k_eps * e;
    if (i % p.d == 0u) {
        cond[n] = q.c_noise;
        weight[n] = q.weight;
    }
}
