// conv2d.wgsl — 2-D convolution over NCHW f32 with PyTorch semantics, forward and backward, portable (no
// subgroups); conv2d_subgroup.wgsl holds the same main passes with shared loads broadcast across a subgroup.
//   forward:         y[n,o,i,j] = b[o] + Σ_{c,u,v} w[o,c,u,v] · x[n, c, s·i + u − p, s·j + v − p]
//   backward input:  the forward of d_y with w'[c,o,u,v] = w[o,c,k−1−u,k−1−v] (stride 1); stride 2 has its own
//                    transposed kernel (backward_input_k3s2)
//   backward weight: d_w[o,c,u,v] = Σ_{n,i,j} d_y[n,o,i,j] · x[n, c, s·i + u − p, s·j + v − p]
//   backward bias:   d_b[o] = Σ_{n,i,j} d_y[n,o,i,j]
// Supported: k = 3, p = 1, s ∈ {1, 2}; k = 1, p = 0, s = 1. Derivations: src/reference/conv2d.rs.
// Packing passes first make the main loops' loads wide and unconditional: pack_input* copy an activation into a
// zero-bordered plane xp [N, C, xp_h, 4·xp_w4]; pack_weight lays w out as wp [⌈M/8⌉, K, k·k, 8] (the 8 output
// channels of an invocation in 2 vec4s per tap; flipped and transposed for the backward input).
// Dispatch (grids of workgroups as in grid_1d): pack_input*: a packed row per invocation, 64 per workgroup;
//   pack_weight, backward_weight_reduce: an element per invocation, 256 per workgroup; forward_*,
//   backward_input_k3s2: 64 invocations, each 8 output channels × 4 rows × 4 columns (8 for k3s2), grid z the
//   ⌈M/8⌉ channel blocks; backward_weight_*: WG invocations (an input channel each, 16 output channels × k·k
//   taps) over a chunk of 4×4 output tiles, grid (⌈Ci/WG⌉, ⌈Co/16⌉, chunks), the chunks then summed in order by
//   backward_weight_reduce (the bias's chunks too); backward_bias: 64 invocations per output channel. Every sum
//   in a fixed order.
// Saved for backward: x and w, packed again by the wrapper unless the forward kept its packed x.
// Params, bindings and the arithmetic both variants share: conv2d_common.wgsl (prepended to this file).
// Wrapper: src/kernels/conv2d/ (the choice of variant: src/kernels/select.rs).

// ---------------------------------------------------------------------------------------------------------
// Packing

// Packed row i of the pack_input passes: whether its source row lies inside the plane, where that source row
// starts (in units of `units` per source row: floats, vec2s or vec4s) and where the packed row starts (vec4s).
struct PackRow {
    ok: bool,
    src: u32,
    dst: u32,
}

fn pack_row(i: u32, units: u32) -> PackRow {
    let plane = i / p.xp_h;
    let r = i - plane * p.xp_h;
    // Unsigned wrap-around sends r < pad far past src_h, so one comparison covers both sides.
    let h = r - p.pad;
    return PackRow(h < p.src_h, (plane * p.src_h + min(h, p.src_h - 1u)) * units, i * p.xp_w4);
}

// packed[n, c, r, q] = src[n, c, r − pad, q − pad] inside the source plane (src_h × src_w), else 0. One
// invocation per packed row (p.len = N·C·xp_h rows) writes its 4·xp_w4 values as vec4s. Integer division by a runtime value is a
// scalar loop per invocation on SIMD-across-invocations drivers, so it is done per row, not per value.
@compute @workgroup_size(64)
fn pack_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid, 64u);
    if (i >= p.len) { return; }
    let row = pack_row(i, p.src_w);
    let row_ok = row.ok;
    let src_row = row.src;
    let dst = row.dst;
    for (var j = 0u; j < p.xp_w4; j++) {
        let q = 4u * j - p.pad;
        packed4[dst + j] = vec4(pack_sample(row_ok, src_row, q), pack_sample(row_ok, src_row, q + 1u),
                                pack_sample(row_ok, src_row, q + 2u), pack_sample(row_ok, src_row, q + 3u));
    }
}

// pack_input for source rows of a multiple of 4 floats and a border of 0 or 1: the same rows, read as vec4s.
// On lavapipe a vec4 load costs about as much as two scalar ones, so this reads a row about twice as fast. With a
// border of 1, packed vec4 j holds source columns 4j − 1 .. 4j + 2: the last value of vec4 j − 1 and the first
// three of vec4 j.
@compute @workgroup_size(64)
fn pack_input_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid, 64u);
    if (i >= p.len) { return; }
    let w4 = p.src_w / 4u;
    let row = pack_row(i, w4);
    let row_ok = row.ok;
    let src_row = row.src;
    let dst = row.dst;
    var prev = vec4(0.0);
    for (var j = 0u; j < p.xp_w4; j++) {
        let cur = select(vec4(0.0), src4[src_row + min(j, w4 - 1u)], row_ok && j < w4);
        packed4[dst + j] = select(cur, vec4(prev.w, cur.xyz), p.pad == 1u);
        prev = cur;
    }
}

// The same for source rows of a whole number of vec2s (14×14 planes): packed vec4 j holds source columns
// 4j − pad .. 4j + 3 − pad, read as the vec2s 2j and 2j + 1 (with a border of 1, the last value of vec2 2j − 1
// comes first).
@compute @workgroup_size(64)
fn pack_input_vec2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid, 64u);
    if (i >= p.len) { return; }
    let w2 = p.src_w / 2u;
    let row = pack_row(i, w2);
    let row_ok = row.ok;
    let src_row = row.src;
    let dst = row.dst;
    var prev = 0.0;
    for (var j = 0u; j < p.xp_w4; j++) {
        let a = select(vec2(0.0), src2[src_row + min(2u * j, w2 - 1u)], row_ok && 2u * j < w2);
        let b = select(vec2(0.0), src2[src_row + min(2u * j + 1u, w2 - 1u)], row_ok && 2u * j + 1u < w2);
        packed4[dst + j] = select(vec4(a, b), vec4(prev, a, b.x), p.pad == 1u);
        prev = b.y;
    }
}

// The source value at column w (wrapped if left of the plane) of a row starting at src_row, or 0.
fn pack_sample(row_ok: bool, src_row: u32, w: u32) -> f32 {
    // Out-of-range lanes read a clamped index and discard it: a select, not a branch.
    return select(0.0, src[min(src_row + w, arrayLength(&src) - 1u)], row_ok && w < p.src_w);
}

// packed[mb, kc, t, a] = weight of output channel m = 8·mb + a, input channel kc, tap t of the pass (0 past M).
// Forward: m = o, kc = c, tap as is. Backward input (transpose = 1): m = c, kc = o, tap flipped (k·k − 1 − t).
// src is w [Co, Ci, k, k] with Co = p.in_c (transpose) or p.out_c; p.len = ⌈M/8⌉·8·K·taps.
@compute @workgroup_size(256)
fn pack_weight(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid, 256u);
    if (i >= p.len) { return; }
    let a = i % 8u;
    let t = (i / 8u) % p.taps;
    let kc = (i / (8u * p.taps)) % p.in_c;
    let m = (i / (8u * p.taps * p.in_c)) * 8u + a;
    var v = 0.0;
    if (m < p.out_c) {
        if (p.transpose == 1u) {
            v = src[(kc * p.out_c + m) * p.taps + (p.taps - 1u - t)];
        } else {
            v = src[(m * p.in_c + kc) * p.taps + t];
        }
    }
    packed[i] = v;
}

// ---------------------------------------------------------------------------------------------------------
// Main passes: the loaders that conv2d_common.wgsl's bodies call (every invocation loads what it needs itself;
// `lane` is unused), and the entry points.

fn wrow(i: u32) -> array<vec4<f32>, 6> {
    return array(wp[i], wp[i + 1u], wp[i + 2u], wp[i + 3u], wp[i + 4u], wp[i + 5u]);
}

fn weights9(i: u32, lane: u32) -> Taps9 {
    return Taps9(array(wrow(i), wrow(i + 6u), wrow(i + 12u)));
}

fn weights1(i: u32, lane: u32) -> array<vec4<f32>, 2> {
    return array(wp[i], wp[i + 1u]);
}

fn dy_rows(di: u32, o: u32) -> array<vec4<f32>, 4> {
    let i = di + min(o, p.out_c - 1u) * p.dy_h * p.dy_w4;
    return array(dyp[i], dyp[i + p.dy_w4], dyp[i + 2u * p.dy_w4], dyp[i + 3u * p.dy_w4]);
}

// di: vec4 index of the tile's first row in channel 0 (tile_dy).
fn dy_tile(di: u32, o0: u32, lane: u32) -> DyTile {
    var d: DyTile;
    d.v[0] = dy_rows(di, o0);
    d.v[1] = dy_rows(di, o0 + 1u);
    d.v[2] = dy_rows(di, o0 + 2u);
    d.v[3] = dy_rows(di, o0 + 3u);
    d.v[4] = dy_rows(di, o0 + 4u);
    d.v[5] = dy_rows(di, o0 + 5u);
    d.v[6] = dy_rows(di, o0 + 6u);
    d.v[7] = dy_rows(di, o0 + 7u);
    d.v[8] = dy_rows(di, o0 + 8u);
    d.v[9] = dy_rows(di, o0 + 9u);
    d.v[10] = dy_rows(di, o0 + 10u);
    d.v[11] = dy_rows(di, o0 + 11u);
    d.v[12] = dy_rows(di, o0 + 12u);
    d.v[13] = dy_rows(di, o0 + 13u);
    d.v[14] = dy_rows(di, o0 + 14u);
    d.v[15] = dy_rows(di, o0 + 15u);
    return d;
}

@compute @workgroup_size(64)
fn forward_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    forward_k3s1_body(wg, nwg, lid, 0u);
}

@compute @workgroup_size(64)
fn forward_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    forward_k3s2_body(wg, nwg, lid, 0u);
}

@compute @workgroup_size(64)
fn forward_k1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    forward_k1_body(wg, nwg, lid, 0u);
}

@compute @workgroup_size(64)
fn backward_input_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    backward_input_k3s2_body(wg, nwg, lid, 0u);
}

@compute @workgroup_size(WG)
fn backward_weight_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    backward_weight_k3s1_body(wg, lid, 0u);
}

@compute @workgroup_size(WG)
fn backward_weight_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    backward_weight_k3s2_body(wg, lid, 0u);
}

@compute @workgroup_size(WG)
fn backward_weight_k1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    backward_weight_k1_body(wg, lid, 0u);
}

// d_w[i] = Σ_z partial[z, i] over the p.chunks slabs, in order (p.len = Co·Ci·k·k); with FLAG_BIAS the p.out_c
// invocations after those also sum the chunks' bias sums, d_b[o] = Σ_z bias[z · Co + o] into bias_out: the
// weight and bias gradients in one dispatch.
@compute @workgroup_size(256)
fn backward_weight_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid, 256u);
    if (i < p.len) {
        var s = 0.0;
        for (var z = 0u; z < p.chunks; z++) {
            s += partial_in[z * p.len + i];
        }
        y[i] = s;
    } else if ((p.flags & FLAG_BIAS) != 0u && i - p.len < p.out_c) {
        let o = i - p.len;
        var s = 0.0;
        for (var z = 0u; z < p.chunks; z++) {
            s += bias[z * p.out_c + o];
        }
        bias_out[o] = s;
    }
}

// ---------------------------------------------------------------------------------------------------------
// Backward bias: d_b[o] = Σ_{n, i, j} d_y[n, o, i, j]. One workgroup of 64 per channel o (linear workgroup
// index): invocation l sums values l, l + 64, … of each of the N planes in turn (no index division), then the 64
// partials combine as eight trees of 8 and a tree of those 8: two barriers, which on a CPU adapter cost far less
// than a 256-wide tree's nine.
// src = d_y [N, Co, Ho, Wo]; p.len = Ho·Wo (one plane), p.out_c = Co, p.n = N.

var<workgroup> bias_partial: array<f32, 64>;
var<workgroup> bias_partial8: array<f32, 8>;

@compute @workgroup_size(64)
fn backward_bias(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let o = wg.y * nwg.x + wg.x;
    // o is uniform across the workgroup, so this early return keeps the barriers in uniform control flow.
    if (o >= p.out_c) { return; }
    let plane = p.len;
    var s = 0.0;
    for (var n = 0u; n < p.n; n++) {
        let base = (n * p.out_c + o) * plane;
        for (var k = lid; k < plane; k += 64u) {
            s += src[base + k];
        }
    }
    bias_partial[lid] = s;
    workgroupBarrier();
    if (lid < 8u) {
        let b = 8u * lid;
        bias_partial8[lid] = ((bias_partial[b] + bias_partial[b + 1u]) + (bias_partial[b + 2u] + bias_partial[b + 3u]))
            + ((bias_partial[b + 4u] + bias_partial[b + 5u]) + (bias_partial[b + 6u] + bias_partial[b + 7u]));
    }
    workgroupBarrier();
    if (lid == 0u) {
        y[o] = ((bias_partial8[0] + bias_partial8[1]) + (bias_partial8[2] + bias_partial8[3]))
            + ((bias_partial8[4] + bias_partial8[5]) + (bias_partial8[6] + bias_partial8[7]));
    }
}
