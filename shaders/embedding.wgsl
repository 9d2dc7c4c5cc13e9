// embedding.wgsl — the conditioning inputs of the U-Net: sinusoidal timestep embedding and class-label lookup.
//   timestep_embedding (Ho et al. 2020; improved-diffusion's `timestep_embedding`, cos half first):
//     half = ⌊D/2⌋, freq_i = exp(−ln(max_period)·i/half) for i < half (max_period = 10000 by default),
//     emb[n, i] = cos(t_n·freq_i), emb[n, half + i] = sin(t_n·freq_i), and for odd D emb[n, D−1] = 0.
//     t comes as u32 (exact in f32 below 2²⁴) or f32. No backward (t is data).
//     Precision: the freq_i come from the host in f64, rounded once (WGSL's exp may be off by 3 + 2|x| ULP, 21 ULP
//     at x = −ln 10⁴), so arg = t·freq rounds twice, |Δarg| ≤ 2·2⁻²⁴·|arg|: the accuracy limit. sin/cos run on
//     arg reduced to [−π, π] by Cody–Waite (k·TWO_PI_HI exact for |arg| < 4·10⁵), where WGSL specifies them.
//   class_embedding_forward:  y[n, :] = table[label_n, :]; a label ≥ classes gives a zero row.
//   class_embedding_backward: d_table[c, :] = Σ_{n: label_n = c} d_y[n, :], overwritten; labels ≥ classes add
//     nothing. One invocation per (c, column) sums over n in ascending order: no atomics, deterministic.
//     The host cannot see labels in a GPU buffer, so an out-of-range label is defined behaviour, not an error.
// Buffers: t or labels [N] u32, t [N] f32, freqs [half] f32 or table [classes, D] f32, d_y [N, D] f32 (read);
//          emb / y [N, D] or d_table [classes, D] f32 (written). Saves nothing for backward: it rereads the labels.
// Dispatch: one invocation per output element, 256 per workgroup, 2-D grid (wg.y·num_workgroups.x + wg.x).
// Wrapper: src/kernels/embedding.rs. Reference: src/reference/embedding.rs.

struct Params {
    len: u32,      // output elements
    dim: u32,      // D, columns of the output
    half: u32,     // ⌊D/2⌋, timestep embedding
    classes: u32,  // rows of the table, class embedding
    rows: u32,     // N, class embedding backward: the labels to scan
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> index_u32: array<u32>;    // [N]: t or labels
@group(0) @binding(2) var<storage, read> t_f32: array<f32>;        // [N]
@group(0) @binding(3) var<storage, read> table: array<f32>;        // [half] freqs, or [classes, D]
@group(0) @binding(4) var<storage, read> d_y: array<f32>;          // [N, D]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;    // emb [N, D], y [N, D] or d_table [classes, D]

const WG: u32 = 256u;
const INV_TWO_PI: f32 = 0.15915494309189535;
const TWO_PI_HI: f32 = 6.28125;                    // 8 significant bits: k·TWO_PI_HI is exact for |k| < 2¹⁶
const TWO_PI_LO: f32 = 0.0019353071795864769253;   // 2π − 6.28125

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wg.y * nwg.x + wg.x) * WG + lid.x;
}

// x − 2πk with k = round(x/2π), in [−π, π] up to a few roundings. x − k·TWO_PI_HI is exact (Sterbenz: both are
// within a factor 2 of each other once k ≠ 0).
fn reduce(x: f32) -> f32 {
    let k = round(x * INV_TWO_PI);
    return (x - k * TWO_PI_HI) - k * TWO_PI_LO;
}

fn sinusoid(t: f32, col: u32) -> f32 {
    if (col < p.half) {
        return cos(reduce(t * table[col]));
    }
    if (col < 2u * p.half) {
        return sin(reduce(t * table[col - p.half]));
    }
    return 0.0; // odd D: the padding column
}

@compute @workgroup_size(256)
fn timestep_embedding_u32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, nwg, lid);
    if (i >= p.len) { return; }
    out[i] = sinusoid(f32(index_u32[i / p.dim]), i % p.dim);
}

@compute @workgroup_size(256)
fn timestep_embedding_f32(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, nwg, lid);
    if (i >= p.len) { return; }
    out[i] = sinusoid(t_f32[i / p.dim], i % p.dim);
}

// y [N, D] from labels [N] and table [classes, D].
@compute @workgroup_size(256)
fn class_embedding_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, nwg, lid);
    if (i >= p.len) { return; }
    let label = index_u32[i / p.dim];
    var v = 0.0;
    if (label < p.classes) {
        v = table[label * p.dim + i % p.dim];
    }
    out[i] = v;
}

// d_table [classes, D] from labels [N] and d_y [N, D].
@compute @workgroup_size(256)
fn class_embedding_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = element(wg, nwg, lid);
    if (i >= p.len) { return; }
    let c = i / p.dim;
    let col = i % p.dim;
    var s = 0.0;
    for (var n = 0u; n < p.rows; n++) {
        if (index_u32[n] == c) {
            s += d_y[n * p.dim + col];
        }
    }
    out[i] = s;
}
