// step.wgsl — the reverse (sampling) step of every sampler, out of place, f32.
//   step:          y = a·x + b·o + c·z
//   step_heun:     y = a·x + b·o + b2·o2
//   step_clipped:  x̂₀ = clamp(p·x + q·o, lo, hi);   y = u·x̂₀ + w·x + c·z
// o is the model's output at x (ε, x₀, v or the score: the host folds the conversion into the scalars), o2 the
// model's output at Heun's predictor x' = a1·x + b1·o (made by `step` with c = 0), z ~ N(0, I) fresh noise.
// The scalars come from src/diffusion/samplers.rs (one set per step, in f64, rounded to f32 once), which documents
// the equation of each sampler:
//   DDPM ancestral    y = (x − β/√(1−ᾱ_t)·ε̂)/√α + σ_t·z
//   DDIM (η)          y = √ᾱ_prev·x̂₀ + √(1−ᾱ_prev−σ²)·ε̂ + σ·z
//   Euler–Maruyama    y = (1 + B/2)·x + B·s + √B·z          (reverse VP SDE, B = ln(ᾱ_prev/ᾱ_t))
//   Heun              y = a·x + (b/2)·(ε̂(x) + ε̂(x'))        (probability-flow ODE)
//   Langevin          y = x + (ε_i/2)·s + √ε_i·z              (NCSN; also the predictor–corrector's corrector)
// When c = 0 (deterministic steps, the last step of every sampler) z is not read.
// Buffers: x, o, o2, z, y: [len] f32, any shape flattened (all samples share the step's scalars).
// Dispatch: 256 invocations per workgroup, one element each, 2-D grid (linear wg = wg.y·num_workgroups.x + wg.x).
// No gradients (sampling only), nothing saved. Wrapper: src/kernels/step.rs. Reference: src/reference/step.rs.

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    a: f32,   // coefficient of x
    b: f32,   // of o
    b2: f32,  // of o2 (step_heun)
    c: f32,   // of z
    p: f32,   // step_clipped: x̂₀ = clamp(p·x + q·o, lo, hi)
    q: f32,
    lo: f32,
    hi: f32,
    u: f32,   // step_clipped: y = u·x̂₀ + w·x + c·z
    w: f32,
    _pad3: f32,
    _pad4: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> o: array<f32>;
@group(0) @binding(3) var<storage, read> o2: array<f32>;
@group(0) @binding(4) var<storage, read> z: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + lid.x;
}

// c·z, without reading z when c = 0: the wrapper may then bind any buffer there.
fn noise(i: u32) -> f32 {
    if (p.c == 0.0) { return 0.0; }
    return p.c * z[i];
}

@compute @workgroup_size(256)
fn step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, nwg, lid);
    if (i >= p.len) { return; }
    y[i] = p.a * x[i] + p.b * o[i] + noise(i);
}

@compute @workgroup_size(256)
fn step_heun(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, nwg, lid);
    if (i >= p.len) { return; }
    y[i] = p.a * x[i] + p.b * o[i] + p.b2 * o2[i];
}

@compute @workgroup_size(256)
fn step_clipped(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, nwg, lid);
    if (i >= p.len) { return; }
    let xi = x[i];
    let x0 = clamp(p.p * xi + p.q * o[i], p.lo, p.hi);
    y[i] = p.u * x0 + p.w * xi + noise(i);
}
