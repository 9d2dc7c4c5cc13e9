// random.wgsl — counter-based random numbers: Philox4x32-10 (Salmon et al., SC 2011; the constants of Random123,
// curand and JAX) in 32-bit integer ops only.
//   block b: (w0, w1, w2, w3) = philox4x32_10(counter = (b, stream, offset_lo, offset_hi), key = (seed_lo, seed_hi));
//   element i takes word i % 4 of block ⌊i/4⌋, so it depends on (seed, stream, offset, i) only, not on the length.
//   A draw writes elements [first, first + len) of its stream to y[0..len) (first + len ≤ 2³¹): drawn in parts
//   (micro-batches), a batch gets the numbers it gets drawn whole.
//   fill_bits:        y[i] = w                                   (u32, the raw stream)
//   fill_uniform:     y[i] = (w >> 8)·2⁻²⁴ ∈ [0, 1)              (exact in f32: bit-identical to the CPU reference)
//   fill_uniform_int: y[i] = ⌊w·n / 2³²⌋ ∈ [0, n)                (multiply-high, Lemire 2019 without the rejection
//                     step: each value's probability is off by < n/2³² relative)
//   fill_normal:      Box–Muller per word pair: u1 = ((w0 >> 8) + 1)·2⁻²⁴ ∈ (0, 1], s = 2·(w1 >> 8)·2⁻²⁴ − 1,
//                     r = √(−2 ln u1), θ = π·s ∈ [−π, π) (where WGSL specifies sin/cos; the shift by π only negates
//                     both outputs), y[4b] = r·cos θ, y[4b+1] = r·sin θ; likewise y[4b+2], y[4b+3] from (w2, w3).
//                     24-bit u1 caps r at √(48 ln 2) ≈ 5.77: the tails beyond (mass 8·10⁻⁹) are never drawn.
//   dropout:          y[i] = x[i]·scale if (w >> 8) ≥ n else 0: dropped with probability n·2⁻²⁴, and
//                     scale = 1/(1 − n·2⁻²⁴). Its own backward: the same draw applied to ∂L/∂y. Nothing is saved.
//   rng_advance:      offset += by (64-bit, with carry) on the GPU: the last dispatch of a recorded step.
// Buffers: Params (seed, stream, len, n, scale; fixed when the dispatch is built); state [2] u32, the 64-bit offset
//   (lo, hi), in a storage buffer so that a step recorded once draws fresh numbers at every submission (the host
//   sets it, kernels::random::set_offset, or rng_advance bumps it); y_f32 or y_u32 [len]; x_f32 [len] (dropout).
// Dispatch: one invocation per Philox block (4 outputs), 256 per workgroup, 2-D grid (wg.y·num_workgroups.x + wg.x);
//   rng_advance: one invocation. Wrapper: src/kernels/random.rs. Reference: src/reference/random.rs.

struct Params {
    len: u32,      // output elements
    n: u32,        // fill_uniform_int: the number of values (≥ 1)
    seed_lo: u32,  // key word 0
    seed_hi: u32,  // key word 1
    stream: u32,   // counter word 1: tells apart the draws of one step (noise, timesteps, …)
    by_lo: u32,    // rng_advance: the increment, lo and hi words
    by_hi: u32,
    scale: f32,    // dropout: 1/(1 − n·2⁻²⁴); n is the drop threshold on the top 24 bits
    first: u32,    // the stream element that lands in y[0] (first + len < 2³², checked by the wrapper)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> state: array<u32>;           // [2]: offset lo, hi
@group(0) @binding(2) var<storage, read_write> y_f32: array<f32>;     // [len]
@group(0) @binding(3) var<storage, read_write> y_u32: array<u32>;     // [len]
@group(0) @binding(4) var<storage, read_write> state_rw: array<u32>;  // [2], rng_advance only
@group(0) @binding(5) var<storage, read> x_f32: array<f32>;           // [len], dropout's input

const WG: u32 = 256u;

// Philox4x32 constants: the round multipliers and the Weyl key increments (golden ratio, √3 − 1).
const PHILOX_M0: u32 = 0xD2511F53u;
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;
const PHILOX_W1: u32 = 0xBB67AE85u;

// The 64-bit product a·b as (hi, lo). WGSL has no u64, so the high word is assembled from 16-bit halves:
// a·b = hh·2³² + (lh + hl)·2¹⁶ + ll, and `mid` collects the carries into bit 32 (it stays below 3·2¹⁶).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xFFFFu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xFFFFu;
    let b_hi = b >> 16u;
    let ll = a_lo * b_lo;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let hh = a_hi * b_hi;
    let mid = (ll >> 16u) + (lh & 0xFFFFu) + (hl & 0xFFFFu);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b); // u32 multiplication wraps: the low word
}

fn philox_round(ctr: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    let p0 = mulhilo(PHILOX_M0, ctr.x);
    let p1 = mulhilo(PHILOX_M1, ctr.z);
    return vec4<u32>(p1.x ^ ctr.y ^ key.x, p1.y, p0.x ^ ctr.w ^ key.y, p0.y);
}

fn philox4x32_10(counter: vec4<u32>, key_in: vec2<u32>) -> vec4<u32> {
    var ctr = counter;
    var key = key_in;
    for (var r = 0u; r < 9u; r++) {
        ctr = philox_round(ctr, key);
        key += vec2<u32>(PHILOX_W0, PHILOX_W1);
    }
    return philox_round(ctr, key);
}

// The stream's block this invocation draws: invocations start at the block holding element `first`.
fn block_index(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (p.first >> 2u) + (wg.y * nwg.x + wg.x) * WG + lid.x;
}

// Whether stream element g is one this draw writes (to y[g − first]).
fn wanted(g: u32) -> bool {
    return g >= p.first && g - p.first < p.len;
}

fn block(b: u32) -> vec4<u32> {
    return philox4x32_10(vec4<u32>(b, p.stream, state[0], state[1]), vec2<u32>(p.seed_lo, p.seed_hi));
}

const TWO_POW_M24: f32 = 5.9604644775390625e-8; // 2⁻²⁴, exact
const PI: f32 = 3.14159265358979323846;

// A word's top 24 bits as a float in [0, 1): exactly k·2⁻²⁴, so every adapter gives the same bits.
fn to_unit(w: u32) -> f32 {
    return f32(w >> 8u) * TWO_POW_M24;
}

// −ln u1 for u1 = ((w >> 8) + 1)·2⁻²⁴ ∈ (0, 1]. Near u1 = 1 the result is tiny and WGSL's log is only held to an
// absolute error of 2⁻²¹ on [0.5, 2], which could even make it positive (and √ of a negative, NaN). So for
// v = 1 − u1 < 1/64 we sum the series −ln(1 − v) = v + v²/2 + v³/3 + v⁴/4 + …: the terms left out are below
// v⁴/5 ≤ 2⁻²⁴/5 of the result. v = (2²⁴ − 1 − (w >> 8))·2⁻²⁴ is exact.
fn neg_log_unit(w: u32) -> f32 {
    let k = w >> 8u;
    let v = f32(16777215u - k) * TWO_POW_M24;
    if (v < 0.015625) {
        return v * (1.0 + v * (0.5 + v * (0.33333333 + v * 0.25)));
    }
    return -log(f32(k + 1u) * TWO_POW_M24);
}

// Two standard normals from two words.
fn box_muller(w_radius: u32, w_angle: u32) -> vec2<f32> {
    let r = sqrt(2.0 * neg_log_unit(w_radius));
    // 2·(w >> 8) < 2²⁵ is even, so exact in f32; the subtraction is exact too: s is a multiple of 2⁻²³ in [−1, 1).
    let s = f32(2u * (w_angle >> 8u)) * TWO_POW_M24 - 1.0;
    let theta = PI * s;
    return r * vec2<f32>(cos(theta), sin(theta));
}

@compute @workgroup_size(256)
fn fill_bits(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = block_index(wg, nwg, lid);
    if (4u * b >= p.first + p.len) { return; }
    let w = block(b);
    for (var j = 0u; j < 4u; j++) {
        if (wanted(4u * b + j)) { y_u32[4u * b + j - p.first] = w[j]; }
    }
}

@compute @workgroup_size(256)
fn fill_uniform(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = block_index(wg, nwg, lid);
    if (4u * b >= p.first + p.len) { return; }
    let w = block(b);
    for (var j = 0u; j < 4u; j++) {
        if (wanted(4u * b + j)) { y_f32[4u * b + j - p.first] = to_unit(w[j]); }
    }
}

@compute @workgroup_size(256)
fn fill_uniform_int(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = block_index(wg, nwg, lid);
    if (4u * b >= p.first + p.len) { return; }
    let w = block(b);
    for (var j = 0u; j < 4u; j++) {
        // ⌊w·n / 2³²⌋ < n since w < 2³².
        if (wanted(4u * b + j)) { y_u32[4u * b + j - p.first] = mulhilo(w[j], p.n).x; }
    }
}

@compute @workgroup_size(256)
fn fill_normal(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = block_index(wg, nwg, lid);
    if (4u * b >= p.first + p.len) { return; }
    let w = block(b);
    let z = vec4<f32>(box_muller(w.x, w.y), box_muller(w.z, w.w));
    for (var j = 0u; j < 4u; j++) {
        if (wanted(4u * b + j)) { y_f32[4u * b + j - p.first] = z[j]; }
    }
}

@compute @workgroup_size(256)
fn dropout(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_id) lid: vec3<u32>) {
    let b = block_index(wg, nwg, lid);
    if (4u * b >= p.first + p.len) { return; }
    let w = block(b);
    for (var j = 0u; j < 4u; j++) {
        let g = 4u * b + j;
        if (wanted(g)) {
            y_f32[g - p.first] = select(0.0, x_f32[g - p.first] * p.scale, (w[j] >> 8u) >= p.n);
        }
    }
}

@compute @workgroup_size(1)
fn rng_advance() {
    let lo = state_rw[0] + p.by_lo;
    let carry = select(0u, 1u, lo < p.by_lo);
    state_rw[0] = lo;
    state_rw[1] = state_rw[1] + p.by_hi + carry;
}
