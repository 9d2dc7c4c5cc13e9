// step.wgsl — the reverse (sampling) step of every sampler, out of place, f32.
//   step:            y = a·x + b·o + c·z
//   step_heun:       y = a·x + b·o + b2·o2
//   step_clipped:    x̂₀ = bound(p·x + q·o);   y = u·x̂₀ + w·x + v·o + c·z
//   step_multistep:  m = bound(p·x + q·o);   x_c = corrector ? cs·s + cm·m + cm1·m₁ + cm2·m₂ : x;
//                    y = a·x_c + b·m + m1·m₁ + m2·m₂;   then s ← x_c, m₂ ← m₁, m₁ ← m  (state = [s | m₁ | m₂])
//   x0_threshold:    per sample, s = min(max(quantile(|p·x + q·o|, ratio), 1), max), for bound = dynamic
// bound: 0 none, 1 clamp(·, lo, hi), 2 clamp(·, −s, s)/s with s = scale[i / sample_len] (Imagen's dynamic
// thresholding; x0_threshold writes scale).
// o is the model's output at x (ε, x₀, v or the score: the host folds the conversion into the scalars), o2 the
// model's output at Heun's predictor x' = a1·x + b1·o (made by `step` with c = 0), z ~ N(0, I) fresh noise.
// The scalars come from src/diffusion/samplers.rs (one set per step, in f64, rounded to f32 once), which documents
// the equation of each sampler:
//   DDPM ancestral    y = (x − β/√(1−ᾱ_t)·ε̂)/√α + σ_t·z
//   DDIM (η)          y = √ᾱ_prev·x̂₀ + √(1−ᾱ_prev−σ²)·ε̂ + σ·z
//   Euler–Maruyama    y = (1 + B/2)·x + B·s + √B·z          (reverse VP SDE, B = ln(ᾱ_prev/ᾱ_t))
//   Heun, Euler       y = a·x + (b/2)·(ε̂(x) + ε̂(x'))        (probability-flow ODE; Karras σ or the timesteps)
//   Langevin          y = x + (ε_i/2)·s + √ε_i·z              (NCSN; also the predictor–corrector's corrector)
//   DPM-Solver++(2M), UniPC: step_multistep
// When c = 0 (deterministic steps, the last step of every sampler) z is not read; scale is read only for bound 2,
// a state term only where its scalar is not 0 (the first steps, before it is written).
// Buffers: x, o, o2, z, y: [len] f32, any shape flattened, samples of sample_len elements each (all samples share
// the step's scalars); scale: [len / sample_len]; state: [3·len].
// Dispatch: 256 invocations per workgroup, one element each, 2-D grid (linear wg = wg.y·num_workgroups.x + wg.x);
// x0_threshold: one workgroup per sample (wg.x).
// No gradients (sampling only), nothing saved. Wrapper: src/kernels/step.rs. Reference: src/reference/step.rs.

struct Params {
    len: u32,
    sample_len: u32,
    bound: u32,
    corrector: u32,
    a: f32,   // coefficient of x (step_multistep: of x_c)
    b: f32,   // of o (step_multistep: of m)
    b2: f32,  // of o2 (step_heun)
    c: f32,   // of z
    p: f32,   // x̂₀ = bound(p·x + q·o)
    q: f32,
    lo: f32,
    hi: f32,
    u: f32,   // step_clipped: y = u·x̂₀ + w·x + v·o + c·z
    w: f32,
    v: f32,
    ratio: f32, // x0_threshold: the quantile, and the cap on s
    max: f32,
    m1: f32,  // step_multistep: of m₁, m₂
    m2: f32,
    cs: f32,  // step_multistep's corrector: of s, m, m₁, m₂
    cm: f32,
    cm1: f32,
    cm2: f32,
    _pad: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> o: array<f32>;
@group(0) @binding(3) var<storage, read> o2: array<f32>;
@group(0) @binding(4) var<storage, read> z: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read> scale: array<f32>;
@group(0) @binding(7) var<storage, read_write> state: array<f32>;
@group(0) @binding(8) var<storage, read_write> scale_out: array<f32>;

fn index(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + lid.x;
}

// c·z, without reading z when c = 0: the wrapper may then bind any buffer there.
fn noise(i: u32) -> f32 {
    if (p.c == 0.0) { return 0.0; }
    return p.c * z[i];
}

fn raw_x0(i: u32) -> f32 {
    return p.p * x[i] + p.q * o[i];
}

fn bounded_x0(i: u32) -> f32 {
    let v = raw_x0(i);
    if (p.bound == 1u) { return clamp(v, p.lo, p.hi); }
    if (p.bound == 2u) {
        let s = scale[i / p.sample_len];
        return clamp(v, -s, s) / s;
    }
    return v;
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
    var acc = p.u * bounded_x0(i) + p.w * x[i] + noise(i);
    if (p.v != 0.0) { acc += p.v * o[i]; }
    y[i] = acc;
}

@compute @workgroup_size(256)
fn step_multistep(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = index(wg, nwg, lid);
    if (i >= p.len) { return; }
    let m = bounded_x0(i);
    // State entries not yet written hold whatever the buffer held: read only those with a weight.
    var m1 = 0.0;
    if (p.m1 != 0.0 || p.cm1 != 0.0) { m1 = state[p.len + i]; }
    var m2 = 0.0;
    if (p.m2 != 0.0 || p.cm2 != 0.0) { m2 = state[2u * p.len + i]; }
    var xc = x[i];
    if (p.corrector != 0u) {
        xc = p.cs * state[i] + p.cm * m + p.cm1 * m1 + p.cm2 * m2;
    }
    y[i] = p.a * xc + p.b * m + p.m1 * m1 + p.m2 * m2;
    state[i] = xc;
    state[2u * p.len + i] = state[p.len + i];
    state[p.len + i] = m;
}

// x0_threshold: the k-th smallest |x̂₀| of one sample by a radix select over the bits of the f32 (for values ≥ 0
// the bit patterns order as the values do): 32 rounds, each counting the candidates whose next bit is 0.
var<workgroup> counted: atomic<u32>;
var<workgroup> least_above: atomic<u32>;

fn abs_bits(i: u32) -> u32 {
    return bitcast<u32>(abs(raw_x0(i)));
}

@compute @workgroup_size(256)
fn x0_threshold(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let first = wg.x * p.sample_len;
    let n = p.sample_len;
    // torch.quantile: rank = ratio·(n − 1), interpolated between the order statistics below and above it.
    let rank = p.ratio * f32(n - 1u);
    let below = min(u32(floor(rank)), n - 1u);
    var k = below;
    var prefix = 0u;
    for (var bit = 31i; bit >= 0; bit -= 1) {
        workgroupBarrier();
        if (lid.x == 0u) { atomicStore(&counted, 0u); }
        workgroupBarrier();
        let b = u32(bit);
        let high = ~((2u << b) - 1u);  // the bits above b, already decided (none when b = 31: 2 << 31 wraps to 0)
        var mine = 0u;
        for (var j = lid.x; j < n; j += 256u) {
            let v = abs_bits(first + j);
            if ((v & high) == (prefix & high) && (v & (1u << b)) == 0u) { mine += 1u; }
        }
        atomicAdd(&counted, mine);
        workgroupBarrier();
        let zeros = atomicLoad(&counted);
        if (k >= zeros) {
            prefix |= 1u << b;
            k -= zeros;
        }
    }
    // The next order statistic: the same value if it repeats past rank `below`, else the least value above it.
    workgroupBarrier();
    if (lid.x == 0u) {
        atomicStore(&counted, 0u);
        atomicStore(&least_above, 0xffffffffu);
    }
    workgroupBarrier();
    var at_most = 0u;
    var above = 0xffffffffu;
    for (var j = lid.x; j < n; j += 256u) {
        let v = abs_bits(first + j);
        if (v <= prefix) { at_most += 1u; } else { above = min(above, v); }
    }
    atomicAdd(&counted, at_most);
    atomicMin(&least_above, above);
    workgroupBarrier();
    if (lid.x == 0u) {
        let lo = bitcast<f32>(prefix);
        var hi = lo;
        if (atomicLoad(&counted) <= below + 1u && below + 1u < n) {
            hi = bitcast<f32>(atomicLoad(&least_above));
        }
        let q = lo + (rank - f32(below)) * (hi - lo);
        scale_out[wg.x] = min(max(q, 1.0), p.max);
    }
}
