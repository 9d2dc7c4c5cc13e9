// conv2d_subgroup.wgsl — the main passes of conv2d.wgsl (forward, which also serves the backward input, and
// backward weight) with the loads that every invocation of a workgroup shares done once per subgroup. Same
// math, buffers, packed layouts, params, entry points and dispatch geometry as conv2d.wgsl (read that header
// first); only weights9, weights1 and dy_tile differ. Everything the two share is in conv2d_common.wgsl, which
// src/gpu/shaders.rs prepends to this file.
//
// Why: in the forward every invocation of a workgroup needs the same weights, in the backward weight the same
// d_y. In conv2d.wgsl each invocation loads them itself; on a SIMD-across-invocations driver (lavapipe) each
// such load is a gather of 8 identical values. Here invocations 0..7 of each subgroup load 8 different vec4s
// and `subgroupBroadcast` hands every one to all, so those loads cost an eighth (the passes run 1.5-2x faster
// on lavapipe).
// Requires the SUBGROUP feature and subgroups of at least 8 invocations (the wrapper checks both; larger ones
// work, their lanes 8+ repeat the loads). Subgroup operations sit only in uniform control flow: loops run over
// uniform bounds and out-of-range invocations compute on clamped indices instead of returning early.
// Wrapper: src/kernels/conv2d.rs (Path::Auto).

// ---------------------------------------------------------------------------------------------------------
// Forward (and backward input): register-blocked implicit GEMM.
//
// One invocation owns a block of 8 output channels × 4 rows × 4 columns: acc.v[a][r] is the vec4 of columns
// c0..c0+3 in row r0 + r of channel m0 + a. Per input channel it loads the few packed rows it needs (2 vec4s
// per row for k = 3, s = 1) and 18 weight vec4s, then does 288 vec4 FMAs from registers. Everything inside
// the channel loop is written out (no inner loops, only constant indices) so the driver keeps `acc` in
// registers instead of scratch memory.

fn weights9(i: u32, lane: u32) -> Taps9 {
    let l = lane % 8u;
    let a = wp[i + l];
    let b = wp[i + 8u + l];
    let c = wp[i + 16u + min(l, 1u)];
    return Taps9(array(
        array(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u),
              subgroupBroadcast(a, 3u), subgroupBroadcast(a, 4u), subgroupBroadcast(a, 5u)),
        array(subgroupBroadcast(a, 6u), subgroupBroadcast(a, 7u), subgroupBroadcast(b, 0u),
              subgroupBroadcast(b, 1u), subgroupBroadcast(b, 2u), subgroupBroadcast(b, 3u)),
        array(subgroupBroadcast(b, 4u), subgroupBroadcast(b, 5u), subgroupBroadcast(b, 6u),
              subgroupBroadcast(b, 7u), subgroupBroadcast(c, 0u), subgroupBroadcast(c, 1u))));
}

// The 2 weight vec4s (8 output channels) of one input channel for a 1×1 kernel, loaded by lanes 0 and 1.
fn weights1(i: u32, lane: u32) -> array<vec4<f32>, 2> {
    let a = wp[i + min(lane % 8u, 1u)];
    return array(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u));
}

// k = 3, stride 1, packed with a 1-pixel border: output (i, j) reads packed rows i..i+2, columns j..j+2.
// Also the backward input of stride 1 (packed d_y, transposed and flipped weights).
@compute @workgroup_size(64)
fn forward_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
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
        let w = weights9(wi, lane);
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
                @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
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
        let w = weights9(wi, lane);
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
              @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let b = block_of(vec3(wg.xy, 0u), nwg, lid, 4u);
    let plane = p.xp_h * p.xp_w4;
    var xi = (b.n * p.in_c * p.xp_h + b.r0) * p.xp_w4 + b.c0 / 4u;
    var wi = wg.z * p.in_c * 2u;
    let s = p.xp_w4;
    var acc: Acc;
    for (var c = 0u; c < p.in_c; c++) {
        let w = weights1(wi, lane);
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
                       @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
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
        let w = weights9(wi, lane);
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

// Lane l of the first 8 loads row l % 4 of channels o0 + 2g + l / 4 (g = 0..7); broadcasts hand them to all.
fn dy_tile(di: u32, o0: u32, lane: u32) -> DyTile {
    let l = lane % 8u;
    let plane = p.dy_h * p.dy_w4;
    let i = di + (l % 4u) * p.dy_w4;
    let last = p.out_c - 1u;
    let o = o0 + l / 4u;
    let g0 = dyp[i + min(o, last) * plane];
    let g1 = dyp[i + min(o + 2u, last) * plane];
    let g2 = dyp[i + min(o + 4u, last) * plane];
    let g3 = dyp[i + min(o + 6u, last) * plane];
    let g4 = dyp[i + min(o + 8u, last) * plane];
    let g5 = dyp[i + min(o + 10u, last) * plane];
    let g6 = dyp[i + min(o + 12u, last) * plane];
    let g7 = dyp[i + min(o + 14u, last) * plane];
    var d: DyTile;
    d.v[0] = rows_lo(g0);
    d.v[1] = rows_hi(g0);
    d.v[2] = rows_lo(g1);
    d.v[3] = rows_hi(g1);
    d.v[4] = rows_lo(g2);
    d.v[5] = rows_hi(g2);
    d.v[6] = rows_lo(g3);
    d.v[7] = rows_hi(g3);
    d.v[8] = rows_lo(g4);
    d.v[9] = rows_hi(g4);
    d.v[10] = rows_lo(g5);
    d.v[11] = rows_hi(g5);
    d.v[12] = rows_lo(g6);
    d.v[13] = rows_hi(g6);
    d.v[14] = rows_lo(g7);
    d.v[15] = rows_hi(g7);
    return d;
}

// The 4 rows of the even (lanes 0..3) and odd (lanes 4..7) channel of a loaded pair.
fn rows_lo(g: vec4<f32>) -> array<vec4<f32>, 4> {
    return array(subgroupBroadcast(g, 0u), subgroupBroadcast(g, 1u), subgroupBroadcast(g, 2u),
                 subgroupBroadcast(g, 3u));
}

fn rows_hi(g: vec4<f32>) -> array<vec4<f32>, 4> {
    return array(subgroupBroadcast(g, 4u), subgroupBroadcast(g, 5u), subgroupBroadcast(g, 6u),
                 subgroupBroadcast(g, 7u));
}

@compute @workgroup_size(WG)
fn backward_weight_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                        @builtin(subgroup_invocation_id) lane: u32) {
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
        let d = dy_tile(dy0, o0, lane);
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
fn backward_weight_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                        @builtin(subgroup_invocation_id) lane: u32) {
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
        let d = dy_tile(dy0, o0, lane);
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
fn backward_weight_k1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                      @builtin(subgroup_invocation_id) lane: u32) {
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
        let d = dy_tile(dy0, o0, lane);
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

