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
//   backward_weight_reduce; backward_bias: 64 invocations per output channel. Every sum in a fixed order.
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
// Forward (and backward input): register-blocked implicit GEMM.
//
// One invocation owns a block of 8 output channels × 4 rows × 4 columns: acc.v[a][r] is the vec4 of columns
// c0..c0+3 in row r0 + r of channel m0 + a. Per input channel it loads the few packed rows it needs (2 vec4s
// per row for k = 3, s = 1) and 18 weight vec4s, then does 288 vec4 FMAs from registers. Everything inside
// the channel loop is written out (no inner loops, only constant indices) so the driver keeps `acc` in
// registers instead of scratch memory.

fn wrow(i: u32) -> array<vec4<f32>, 6> {
    return array(wp[i], wp[i + 1u], wp[i + 2u], wp[i + 3u], wp[i + 4u], wp[i + 5u]);
}

fn weights9(i: u32) -> Taps9 {
    return Taps9(array(wrow(i), wrow(i + 6u), wrow(i + 12u)));
}

// The 2 weight vec4s (8 output channels) of one input channel for a 1×1 kernel.
fn weights1(i: u32) -> array<vec4<f32>, 2> {
    return array(wp[i], wp[i + 1u]);
}

// k = 3, stride 1, packed with a 1-pixel border: output (i, j) reads packed rows i..i+2, columns j..j+2.
// Also the backward input of stride 1 (packed d_y, transposed and flipped weights).
@compute @workgroup_size(64)
fn forward_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let b = block_of(vec3(wg.xy, 0u), nwg, lid, 4u);
    let plane = p.xp_h * p.xp_w4;
    var xi = (b.n * p.in_c * p.xp_h + b.r0) * p.xp_w4 + b.c0 / 4u;
    var wi = wg.z * p.in_c * 18u;
    let s = p.xp_w4;
    var acc: Acc;
    for (var c = 0u; c < p.in_c; c++) {
        let x0 = row_s1(xi);
        let x1 = row_s1(xi + s);
        let x2 = row_s1(xi + 2u * s);
        let x3 = row_s1(xi + 3u * s);
        let x4 = row_s1(xi + 4u * s);
        let x5 = row_s1(xi + 5u * s);
        let w = weights9(wi);
        taps3(&acc, 0u, w.u[0], x0); taps3(&acc, 0u, w.u[1], x1); taps3(&acc, 0u, w.u[2], x2);
        taps3(&acc, 1u, w.u[0], x1); taps3(&acc, 1u, w.u[1], x2); taps3(&acc, 1u, w.u[2], x3);
        taps3(&acc, 2u, w.u[0], x2); taps3(&acc, 2u, w.u[1], x3); taps3(&acc, 2u, w.u[2], x4);
        taps3(&acc, 3u, w.u[0], x3); taps3(&acc, 3u, w.u[1], x4); taps3(&acc, 3u, w.u[2], x5);
        xi += plane;
        wi += 18u;
    }
    store_block(b, 8u * wg.z, acc);
}

// k = 3, stride 2: output (i, j) reads packed rows 2i..2i+2, columns 2j..2j+2.
@compute @workgroup_size(64)
fn forward_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let b = block_of(vec3(wg.xy, 0u), nwg, lid, 4u);
    let plane = p.xp_h * p.xp_w4;
    var xi = (b.n * p.in_c * p.xp_h + 2u * b.r0) * p.xp_w4 + b.c0 / 2u;
    var wi = wg.z * p.in_c * 18u;
    let s = p.xp_w4;
    var acc: Acc;
    for (var c = 0u; c < p.in_c; c++) {
        let x0 = row_s2(xi);
        let x1 = row_s2(xi + s);
        let x2 = row_s2(xi + 2u * s);
        let x3 = row_s2(xi + 3u * s);
        let x4 = row_s2(xi + 4u * s);
        let x5 = row_s2(xi + 5u * s);
        let x6 = row_s2(xi + 6u * s);
        let x7 = row_s2(xi + 7u * s);
        let x8 = row_s2(xi + 8u * s);
        let w = weights9(wi);
        taps3(&acc, 0u, w.u[0], x0); taps3(&acc, 0u, w.u[1], x1); taps3(&acc, 0u, w.u[2], x2);
        taps3(&acc, 1u, w.u[0], x2); taps3(&acc, 1u, w.u[1], x3); taps3(&acc, 1u, w.u[2], x4);
        taps3(&acc, 2u, w.u[0], x4); taps3(&acc, 2u, w.u[1], x5); taps3(&acc, 2u, w.u[2], x6);
        taps3(&acc, 3u, w.u[0], x6); taps3(&acc, 3u, w.u[1], x7); taps3(&acc, 3u, w.u[2], x8);
        xi += plane;
        wi += 18u;
    }
    store_block(b, 8u * wg.z, acc);
}

// k = 1 (no border): output (i, j) reads packed row i, column j. Also its own backward input (transposed w).
@compute @workgroup_size(64)
fn forward_k1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let b = block_of(vec3(wg.xy, 0u), nwg, lid, 4u);
    let plane = p.xp_h * p.xp_w4;
    var xi = (b.n * p.in_c * p.xp_h + b.r0) * p.xp_w4 + b.c0 / 4u;
    var wi = wg.z * p.in_c * 2u;
    let s = p.xp_w4;
    var acc: Acc;
    for (var c = 0u; c < p.in_c; c++) {
        let w = weights1(wi);
        let x0 = xp[xi];
        let x1 = xp[xi + s];
        let x2 = xp[xi + 2u * s];
        let x3 = xp[xi + 3u * s];
        fma4(&acc, 0u, 0u, w[0], x0); fma4(&acc, 4u, 0u, w[1], x0);
        fma4(&acc, 0u, 1u, w[0], x1); fma4(&acc, 4u, 1u, w[1], x1);
        fma4(&acc, 0u, 2u, w[0], x2); fma4(&acc, 4u, 2u, w[1], x2);
        fma4(&acc, 0u, 3u, w[0], x3); fma4(&acc, 4u, 3u, w[1], x3);
        xi += plane;
        wi += 2u;
    }
    store_block(b, 8u * wg.z, acc);
}

// Backward input of the stride-2 3×3 convolution, a transposed convolution, without multiplying the 3/4 zeros
// of a dilated d_y: output row h = 2i + u − 1 receives d_y row i through kernel row u, so even rows take u = 1
// only and odd rows u = 0 and 2; columns likewise with v. An invocation owns 8 channels × 4 rows × 8 columns,
// each row split by column parity into two vec4s: the even columns (c0, c0+2, c0+4, c0+6) take v = 1, the odd
// ones v = 0 and v = 2. It reads d_y packed with a 1-pixel border (3 rows from r0/2 + 1, 2 vec4s from c0/2)
// and the backward-input weights (transposed and flipped: kernel row u is weights9(·).u[2 − u], tap v is
// at [2·(2 − v) + a/4]). Per input channel: 6 vec4 loads and 144 vec4 FMAs for 32 outputs.

// Output rows r0..r0+3 read packed d_y rows r0/2 + 1 + q, q = 0, 1, 2: row r0 (even) through u = 1 from q = 0;
// r0 + 1 through u = 0 from q = 1 and u = 2 from q = 0; r0 + 2 through u = 1 from q = 1; r0 + 3 through u = 0
// from q = 2 and u = 2 from q = 1.
@compute @workgroup_size(64)
fn backward_input_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let b = block_of(vec3(wg.xy, 0u), nwg, lid, 8u);
    let plane = p.xp_h * p.xp_w4;
    var xi = (b.n * p.in_c * p.xp_h + b.r0 / 2u + 1u) * p.xp_w4 + b.c0 / 8u;
    var wi = wg.z * p.in_c * 18u;
    let s = p.xp_w4;
    var acc: AccT;
    for (var c = 0u; c < p.in_c; c++) {
        let d0 = row_t(xi);
        let d1 = row_t(xi + s);
        let d2 = row_t(xi + 2u * s);
        let w = weights9(wi);
        taps_t(&acc, 0u, w.u[1], d0);
        taps_t(&acc, 1u, w.u[2], d1); taps_t(&acc, 1u, w.u[0], d0);
        taps_t(&acc, 2u, w.u[1], d1);
        taps_t(&acc, 3u, w.u[2], d2); taps_t(&acc, 3u, w.u[0], d1);
        xi += plane;
        wi += 18u;
    }
    store_block_t(b, 8u * wg.z, acc);
}

// ---------------------------------------------------------------------------------------------------------
// Backward weight: invocation = input channel c (lanes of a workgroup take consecutive channels, so they
// share every d_y value they read); it owns d_w[o0..o0+15, c, all taps] in registers and walks its chunk of
// 4×4 output tiles. Per tile and k = 3, s = 1 it loads 6 packed x rows of its channel (12 vec4s) and the
// 16 × 4 d_y row vec4s, and does 16 · 4 · 9 dot products of 4.

fn dy_rows(di: u32, o: u32) -> array<vec4<f32>, 4> {
    let i = di + min(o, p.out_c - 1u) * p.dy_h * p.dy_w4;
    return array(dyp[i], dyp[i + p.dy_w4], dyp[i + 2u * p.dy_w4], dyp[i + 3u * p.dy_w4]);
}

// di: vec4 index of the tile's first row in channel 0 (tile_dy).
fn dy_tile(di: u32, o0: u32) -> DyTile {
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

@compute @workgroup_size(WG)
fn backward_weight_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wg.x * WG + lid;
    let cc = min(c, p.in_c - 1u);  // out-of-range lanes compute on a real channel and store nothing
    let o0 = wg.y * DW_CO_BLOCK;
    let xplane = p.xp_h * p.xp_w4;
    let s = p.xp_w4;
    let range = chunk_tiles(wg.z);
    var acc: AccW;
    let sum_bias = sums_bias(wg.x);
    var bsum: BiasSums;
    var tile = first_tile(range.begin);
    for (var t = range.begin; t < range.end; t++) {
        let xi = tile_x(tile, 1u) + cc * xplane;
        let dy0 = tile_dy(tile);
        tile = next_tile(tile);
        var x: Rows6;
        x.r[0] = row_s1(xi);
        x.r[1] = row_s1(xi + s);
        x.r[2] = row_s1(xi + 2u * s);
        x.r[3] = row_s1(xi + 3u * s);
        x.r[4] = row_s1(xi + 4u * s);
        x.r[5] = row_s1(xi + 5u * s);
        let d = dy_tile(dy0, o0);
        if (sum_bias) { bsum = add_bias_sums(bsum, d); }
        acc.v[0] = dw_channel_s1(acc.v[0], d.v[0], x);
        acc.v[1] = dw_channel_s1(acc.v[1], d.v[1], x);
        acc.v[2] = dw_channel_s1(acc.v[2], d.v[2], x);
        acc.v[3] = dw_channel_s1(acc.v[3], d.v[3], x);
        acc.v[4] = dw_channel_s1(acc.v[4], d.v[4], x);
        acc.v[5] = dw_channel_s1(acc.v[5], d.v[5], x);
        acc.v[6] = dw_channel_s1(acc.v[6], d.v[6], x);
        acc.v[7] = dw_channel_s1(acc.v[7], d.v[7], x);
        acc.v[8] = dw_channel_s1(acc.v[8], d.v[8], x);
        acc.v[9] = dw_channel_s1(acc.v[9], d.v[9], x);
        acc.v[10] = dw_channel_s1(acc.v[10], d.v[10], x);
        acc.v[11] = dw_channel_s1(acc.v[11], d.v[11], x);
        acc.v[12] = dw_channel_s1(acc.v[12], d.v[12], x);
        acc.v[13] = dw_channel_s1(acc.v[13], d.v[13], x);
        acc.v[14] = dw_channel_s1(acc.v[14], d.v[14], x);
        acc.v[15] = dw_channel_s1(acc.v[15], d.v[15], x);
    }
    store_dw(wg.z, o0, c, 9u, acc);
    if (sum_bias) { store_bias(wg.z, o0, lid, bsum); }
}

@compute @workgroup_size(WG)
fn backward_weight_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wg.x * WG + lid;
    let cc = min(c, p.in_c - 1u);
    let o0 = wg.y * DW_CO_BLOCK;
    let xplane = p.xp_h * p.xp_w4;
    let s = p.xp_w4;
    let range = chunk_tiles(wg.z);
    var acc: AccW;
    let sum_bias = sums_bias(wg.x);
    var bsum: BiasSums;
    var tile = first_tile(range.begin);
    for (var t = range.begin; t < range.end; t++) {
        let xi = tile_x(tile, 2u) + cc * xplane;
        let dy0 = tile_dy(tile);
        tile = next_tile(tile);
        var x: Rows9;
        x.r[0] = row_s2(xi);
        x.r[1] = row_s2(xi + s);
        x.r[2] = row_s2(xi + 2u * s);
        x.r[3] = row_s2(xi + 3u * s);
        x.r[4] = row_s2(xi + 4u * s);
        x.r[5] = row_s2(xi + 5u * s);
        x.r[6] = row_s2(xi + 6u * s);
        x.r[7] = row_s2(xi + 7u * s);
        x.r[8] = row_s2(xi + 8u * s);
        let d = dy_tile(dy0, o0);
        if (sum_bias) { bsum = add_bias_sums(bsum, d); }
        acc.v[0] = dw_channel_s2(acc.v[0], d.v[0], x);
        acc.v[1] = dw_channel_s2(acc.v[1], d.v[1], x);
        acc.v[2] = dw_channel_s2(acc.v[2], d.v[2], x);
        acc.v[3] = dw_channel_s2(acc.v[3], d.v[3], x);
        acc.v[4] = dw_channel_s2(acc.v[4], d.v[4], x);
        acc.v[5] = dw_channel_s2(acc.v[5], d.v[5], x);
        acc.v[6] = dw_channel_s2(acc.v[6], d.v[6], x);
        acc.v[7] = dw_channel_s2(acc.v[7], d.v[7], x);
        acc.v[8] = dw_channel_s2(acc.v[8], d.v[8], x);
        acc.v[9] = dw_channel_s2(acc.v[9], d.v[9], x);
        acc.v[10] = dw_channel_s2(acc.v[10], d.v[10], x);
        acc.v[11] = dw_channel_s2(acc.v[11], d.v[11], x);
        acc.v[12] = dw_channel_s2(acc.v[12], d.v[12], x);
        acc.v[13] = dw_channel_s2(acc.v[13], d.v[13], x);
        acc.v[14] = dw_channel_s2(acc.v[14], d.v[14], x);
        acc.v[15] = dw_channel_s2(acc.v[15], d.v[15], x);
    }
    store_dw(wg.z, o0, c, 9u, acc);
    if (sum_bias) { store_bias(wg.z, o0, lid, bsum); }
}

// k = 1: one tap; acc.v[j][0] only.
@compute @workgroup_size(WG)
fn backward_weight_k1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wg.x * WG + lid;
    let cc = min(c, p.in_c - 1u);
    let o0 = wg.y * DW_CO_BLOCK;
    let xplane = p.xp_h * p.xp_w4;
    let s = p.xp_w4;
    let range = chunk_tiles(wg.z);
    var acc: AccW;
    let sum_bias = sums_bias(wg.x);
    var bsum: BiasSums;
    var tile = first_tile(range.begin);
    for (var t = range.begin; t < range.end; t++) {
        let xi = tile_x(tile, 1u) + cc * xplane;
        let dy0 = tile_dy(tile);
        tile = next_tile(tile);
        let x = array(xp[xi], xp[xi + s], xp[xi + 2u * s], xp[xi + 3u * s]);
        let d = dy_tile(dy0, o0);
        if (sum_bias) { bsum = add_bias_sums(bsum, d); }
        acc.v[0] = dw_channel_k1(acc.v[0], d.v[0], x);
        acc.v[1] = dw_channel_k1(acc.v[1], d.v[1], x);
        acc.v[2] = dw_channel_k1(acc.v[2], d.v[2], x);
        acc.v[3] = dw_channel_k1(acc.v[3], d.v[3], x);
        acc.v[4] = dw_channel_k1(acc.v[4], d.v[4], x);
        acc.v[5] = dw_channel_k1(acc.v[5], d.v[5], x);
        acc.v[6] = dw_channel_k1(acc.v[6], d.v[6], x);
        acc.v[7] = dw_channel_k1(acc.v[7], d.v[7], x);
        acc.v[8] = dw_channel_k1(acc.v[8], d.v[8], x);
        acc.v[9] = dw_channel_k1(acc.v[9], d.v[9], x);
        acc.v[10] = dw_channel_k1(acc.v[10], d.v[10], x);
        acc.v[11] = dw_channel_k1(acc.v[11], d.v[11], x);
        acc.v[12] = dw_channel_k1(acc.v[12], d.v[12], x);
        acc.v[13] = dw_channel_k1(acc.v[13], d.v[13], x);
        acc.v[14] = dw_channel_k1(acc.v[14], d.v[14], x);
        acc.v[15] = dw_channel_k1(acc.v[15], d.v[15], x);
    }
    store_dw(wg.z, o0, c, 1u, acc);
    if (sum_bias) { store_bias(wg.z, o0, lid, bsum); }
}

// d_w[i] = Σ_z partial[z, i] over the p.chunks slabs, in order. p.len = Co·Ci·k·k.
@compute @workgroup_size(256)
fn backward_weight_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid, 256u);
    if (i >= p.len) { return; }
    var s = 0.0;
    for (var z = 0u; z < p.chunks; z++) {
        s += partial_in[z * p.len + i];
    }
    y[i] = s;
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
