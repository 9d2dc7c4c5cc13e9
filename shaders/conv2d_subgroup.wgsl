// conv2d_subgroup.wgsl — the two hottest passes of conv2d.wgsl (3×3, stride 1: the forward, which is also the
// backward input, and the backward weight) rewritten to share loads across a subgroup. Same math, buffers,
// packed layouts, params and dispatch geometry as conv2d.wgsl; read that header first.
//
// Why: in both passes every invocation of a workgroup needs the same values of one operand (the weights in the
// forward, d_y in the backward weight). In the portable kernels each invocation loads them itself, and on a
// SIMD-across-invocations driver (lavapipe) each such load is a gather of 8 identical values. Here invocations
// 0..7 of each subgroup load 8 different vec4s and `subgroupBroadcast` hands every value to all, so those loads
// cost an eighth. Requires the SUBGROUP feature and subgroups of at least 8 invocations (the wrapper checks
// both; any larger size works, lanes 8+ just repeat the loads). Subgroup operations sit only in uniform control
// flow: the loops run over uniform bounds and out-of-range invocations compute on clamped indices.
// Wrapper: src/kernels/conv2d.rs (Path::Auto).

struct Params {
    n: u32,           // batch
    in_c: u32,        // input channels of the pass (K)
    out_c: u32,       // output channels of the pass (M)
    out_h: u32,       // output rows, columns of the pass
    out_w: u32,
    xp_h: u32,        // rows of a packed input plane
    xp_w4: u32,       // vec4s per packed input row
    row_blocks: u32,  // ⌈out_h / 4⌉
    col_blocks: u32,  // ⌈out_w / 4⌉
    flags: u32,       // bit 0: add bias; bit 1: accumulate (y += …) instead of overwrite
    // pack_input: source plane size, border and dilation; pack_weight: taps (k·k) and flip/transpose flag.
    src_h: u32,
    src_w: u32,
    pad: u32,
    dilation: u32,
    taps: u32,
    transpose: u32,   // pack_weight: 1 = backward-input layout (swap Co and Ci, flip the taps)
    // backward weight
    dy_h: u32,        // rows of a packed d_y plane
    dy_w4: u32,       // vec4s per packed d_y row
    chunks: u32,      // number of tile chunks (partial-sum slabs)
    len: u32,         // elements written by the element-wise passes
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> xp: array<vec4<f32>>;        // packed input
@group(0) @binding(4) var<storage, read> wp: array<vec4<f32>>;        // packed weights
@group(0) @binding(5) var<storage, read> bias: array<f32>;            // [M]; bound to any tensor when unused
@group(0) @binding(6) var<storage, read_write> y: array<f32>;         // forward output
@group(0) @binding(7) var<storage, read> dyp: array<vec4<f32>>;       // packed d_y
@group(0) @binding(8) var<storage, read_write> partial: array<f32>;   // backward-weight partial sums

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;

fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * size + lid;
}

// ---------------------------------------------------------------------------------------------------------
// Forward, k = 3, stride 1 (see conv2d.wgsl: forward_k3s1).

struct Acc {
    v: array<array<vec4<f32>, 4>, 8>,
}

struct Block {
    n: u32,
    r0: u32,      // first output row
    c0: u32,      // first output column
    valid: bool,  // false for the padding invocations of the last group
}

fn block_of(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Block {
    let blocks = p.n * p.row_blocks * p.col_blocks;
    let i = linear_index(wg, nwg, lid, 64u);
    // Invalid invocations still run the loop (on a real block) so that control flow stays uniform; they
    // only skip the store.
    let b = min(i, blocks - 1u);
    let cb = b % p.col_blocks;
    let rb = (b / p.col_blocks) % p.row_blocks;
    return Block(b / (p.col_blocks * p.row_blocks), 4u * rb, 4u * cb, i < blocks);
}

// acc[a0..a0+3][r] += w.xyzw[a] · x
fn fma4(acc: ptr<function, Acc>, a0: u32, r: u32, w: vec4<f32>, x: vec4<f32>) {
    (*acc).v[a0][r] = fma(vec4(w.x), x, (*acc).v[a0][r]);
    (*acc).v[a0 + 1u][r] = fma(vec4(w.y), x, (*acc).v[a0 + 1u][r]);
    (*acc).v[a0 + 2u][r] = fma(vec4(w.z), x, (*acc).v[a0 + 2u][r]);
    (*acc).v[a0 + 3u][r] = fma(vec4(w.w), x, (*acc).v[a0 + 3u][r]);
}

// One kernel row (fixed u) applied to output row r: acc[·][r] += Σ_v w[v][·] · x[v], where w holds the 8
// channels of taps (u, 0..2) as [v][a/4] and x[v] the input columns under tap v.
fn taps3(acc: ptr<function, Acc>, r: u32, w: array<vec4<f32>, 6>, x: array<vec4<f32>, 3>) {
    fma4(acc, 0u, r, w[0], x[0]);
    fma4(acc, 4u, r, w[1], x[0]);
    fma4(acc, 0u, r, w[2], x[1]);
    fma4(acc, 4u, r, w[3], x[1]);
    fma4(acc, 0u, r, w[4], x[2]);
    fma4(acc, 4u, r, w[5], x[2]);
}

// A packed row at vec4 index i, stride 1: the columns under taps v = 0, 1, 2 of outputs c0..c0+3 are packed
// columns c0 + v .. c0 + v + 3. (vec4 swizzles are free on SIMD-across-invocations drivers.)
fn row_s1(i: u32) -> array<vec4<f32>, 3> {
    let lo = xp[i];
    let hi = xp[i + 1u];
    return array(lo, vec4(lo.yzw, hi.x), vec4(lo.zw, hi.xy));
}

// Writes columns c0..c0+3 of one output row (those < out_w), adding the bias or the old value as flagged.
fn store4(b: Block, m: u32, r: u32, v: vec4<f32>) {
    let row = b.r0 + r;
    if (m >= p.out_c || row >= p.out_h) { return; }
    var out = v;
    if ((p.flags & FLAG_BIAS) != 0u) {
        out += vec4(bias[m]);
    }
    let base = ((b.n * p.out_c + m) * p.out_h + row) * p.out_w + b.c0;
    let accumulate = (p.flags & FLAG_ACCUMULATE) != 0u;
    // Columns past out_w belong to no output; those lanes of the vec4 are dropped.
    for (var j = 0u; j < 4u; j++) {
        if (b.c0 + j < p.out_w) {
            var v = out[j];
            if (accumulate) {
                v += y[base + j];
            }
            y[base + j] = v;
        }
    }
}

fn store_channel(b: Block, m: u32, v: array<vec4<f32>, 4>) {
    store4(b, m, 0u, v[0]);
    store4(b, m, 1u, v[1]);
    store4(b, m, 2u, v[2]);
    store4(b, m, 3u, v[3]);
}

fn store_block(b: Block, m0: u32, acc: Acc) {
    if (!b.valid) { return; }
    store_channel(b, m0, acc.v[0]);
    store_channel(b, m0 + 1u, acc.v[1]);
    store_channel(b, m0 + 2u, acc.v[2]);
    store_channel(b, m0 + 3u, acc.v[3]);
    store_channel(b, m0 + 4u, acc.v[4]);
    store_channel(b, m0 + 5u, acc.v[5]);
    store_channel(b, m0 + 6u, acc.v[6]);
    store_channel(b, m0 + 7u, acc.v[7]);
}

// Kernel row u's 6 weight vec4s out of the 18 that lanes 0..7 loaded as a (vec4s 0..7), b (8..15), c (16, 17).
fn wrow0(a: vec4<f32>) -> array<vec4<f32>, 6> {
    return array(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u),
                 subgroupBroadcast(a, 3u), subgroupBroadcast(a, 4u), subgroupBroadcast(a, 5u));
}

fn wrow1(a: vec4<f32>, b: vec4<f32>) -> array<vec4<f32>, 6> {
    return array(subgroupBroadcast(a, 6u), subgroupBroadcast(a, 7u), subgroupBroadcast(b, 0u),
                 subgroupBroadcast(b, 1u), subgroupBroadcast(b, 2u), subgroupBroadcast(b, 3u));
}

fn wrow2(b: vec4<f32>, c: vec4<f32>) -> array<vec4<f32>, 6> {
    return array(subgroupBroadcast(b, 4u), subgroupBroadcast(b, 5u), subgroupBroadcast(b, 6u),
                 subgroupBroadcast(b, 7u), subgroupBroadcast(c, 0u), subgroupBroadcast(c, 1u));
}

@compute @workgroup_size(64)
fn forward_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    let b = block_of(vec3(wg.xy, 0u), nwg, lid);
    let plane = p.xp_h * p.xp_w4;
    var xi = (b.n * p.in_c * p.xp_h + b.r0) * p.xp_w4 + b.c0 / 4u;
    // This lane's share of the 18 weight vec4s of each input channel.
    let l8 = lane % 8u;
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
        let wa = wp[wi + l8];
        let wb = wp[wi + 8u + l8];
        let wc = wp[wi + 16u + min(l8, 1u)];
        let w0 = wrow0(wa);
        let w1 = wrow1(wa, wb);
        let w2 = wrow2(wb, wc);
        taps3(&acc, 0u, w0, x0); taps3(&acc, 0u, w1, x1); taps3(&acc, 0u, w2, x2);
        taps3(&acc, 1u, w0, x1); taps3(&acc, 1u, w1, x2); taps3(&acc, 1u, w2, x3);
        taps3(&acc, 2u, w0, x2); taps3(&acc, 2u, w1, x3); taps3(&acc, 2u, w2, x4);
        taps3(&acc, 3u, w0, x3); taps3(&acc, 3u, w1, x4); taps3(&acc, 3u, w2, x5);
        xi += plane;
        wi += 18u;
    }
    store_block(b, 8u * wg.z, acc);
}

// ---------------------------------------------------------------------------------------------------------
// Backward weight, k = 3, stride 1 (see conv2d.wgsl: backward_weight_k3s1). Per tile, the 16 channels × 4 rows
// of d_y vec4s are loaded 8 at a time: lane l of the 8 loads channel o0 + 2g + l/4, row l%4.

override WG: u32 = 64u;

const CO_BLOCK: u32 = 16u;

struct AccW {
    v: array<array<f32, 9>, 16>,  // [o − o0][u·3 + v]
}

struct TileRange {
    begin: u32,
    end: u32,
}

// The tiles of chunk z: an even split of the N·row_blocks·col_blocks tiles, in order.
fn chunk_tiles(z: u32) -> TileRange {
    let tiles = p.n * p.row_blocks * p.col_blocks;
    let per = (tiles + p.chunks - 1u) / p.chunks;
    return TileRange(min(z * per, tiles), min((z + 1u) * per, tiles));
}

fn mac4(acc: f32, d: vec4<f32>, x: vec4<f32>) -> f32 {
    return fma(d.w, x.w, fma(d.z, x.z, fma(d.y, x.y, fma(d.x, x.x, acc))));
}

// One d_y row (4 columns) against the three input rows under kernel rows u = 0, 1, 2.
fn dw_row(acc: array<f32, 9>, d: vec4<f32>, x0: array<vec4<f32>, 3>, x1: array<vec4<f32>, 3>,
          x2: array<vec4<f32>, 3>) -> array<f32, 9> {
    return array(
        mac4(acc[0], d, x0[0]), mac4(acc[1], d, x0[1]), mac4(acc[2], d, x0[2]),
        mac4(acc[3], d, x1[0]), mac4(acc[4], d, x1[1]), mac4(acc[5], d, x1[2]),
        mac4(acc[6], d, x2[0]), mac4(acc[7], d, x2[1]), mac4(acc[8], d, x2[2]));
}

// Packed input rows of one tile, stride 1 (rows 0..5) or stride 2 (rows 0..8).
struct Rows6 {
    r: array<array<vec4<f32>, 3>, 6>,
}

struct TileBase {
    x: u32,   // vec4 index of the tile's first packed x row, channel 0 of image n
    dy: u32,  // vec4 index of the tile's first packed d_y row, channel 0 of image n
}

fn tile_base(t: u32, stride: u32) -> TileBase {
    let cb = t % p.col_blocks;
    let rb = (t / p.col_blocks) % p.row_blocks;
    let n = t / (p.col_blocks * p.row_blocks);
    let x = (n * p.in_c * p.xp_h + stride * 4u * rb) * p.xp_w4 + stride * cb;
    let dy = (n * p.out_c * p.dy_h + 4u * rb) * p.dy_w4 + cb;
    return TileBase(x, dy);
}

// partial[z, o, c, t] for the valid (o, c) of this invocation.
fn store_dw(z: u32, o0: u32, c: u32, taps: u32, acc: AccW) {
    if (c >= p.in_c) { return; }
    for (var j = 0u; j < CO_BLOCK; j++) {
        let o = o0 + j;
        if (o < p.out_c) {
            let base = ((z * p.out_c + o) * p.in_c + c) * taps;
            for (var t = 0u; t < taps; t++) {
                partial[base + t] = acc.v[j][t];
            }
        }
    }
}

// The 4 d_y rows of channel pair member h (0 or 1) out of the vec4s that lanes 0..7 loaded as d.
fn dy_rows0(d: vec4<f32>) -> array<vec4<f32>, 4> {
    return array(subgroupBroadcast(d, 0u), subgroupBroadcast(d, 1u), subgroupBroadcast(d, 2u),
                 subgroupBroadcast(d, 3u));
}

fn dy_rows1(d: vec4<f32>) -> array<vec4<f32>, 4> {
    return array(subgroupBroadcast(d, 4u), subgroupBroadcast(d, 5u), subgroupBroadcast(d, 6u),
                 subgroupBroadcast(d, 7u));
}

fn dw_channel(acc: array<f32, 9>, d: array<vec4<f32>, 4>, x: Rows6) -> array<f32, 9> {
    var a = dw_row(acc, d[0], x.r[0], x.r[1], x.r[2]);
    a = dw_row(a, d[1], x.r[1], x.r[2], x.r[3]);
    a = dw_row(a, d[2], x.r[2], x.r[3], x.r[4]);
    return dw_row(a, d[3], x.r[3], x.r[4], x.r[5]);
}

@compute @workgroup_size(WG)
fn backward_weight_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                        @builtin(subgroup_invocation_id) lane: u32) {
    let c = wg.x * WG + lid;
    let cc = min(c, p.in_c - 1u);  // out-of-range lanes compute on a real channel and store nothing
    let o0 = wg.y * CO_BLOCK;
    let last = p.out_c - 1u;
    let xplane = p.xp_h * p.xp_w4;
    let dplane = p.dy_h * p.dy_w4;
    let s = p.xp_w4;
    // This lane's d_y vec4s: channels o0 + 2g + pair (g = 0..7), row `row` of the tile.
    let pair = (lane % 8u) / 4u;
    let row = lane % 4u;
    let range = chunk_tiles(wg.z);
    var acc: AccW;
    for (var t = range.begin; t < range.end; t++) {
        let tb = tile_base(t, 1u);
        let xi = tb.x + cc * xplane;
        var x: Rows6;
        x.r[0] = row_s1(xi);
        x.r[1] = row_s1(xi + s);
        x.r[2] = row_s1(xi + 2u * s);
        x.r[3] = row_s1(xi + 3u * s);
        x.r[4] = row_s1(xi + 4u * s);
        x.r[5] = row_s1(xi + 5u * s);
        let di = tb.dy + row * p.dy_w4;
        let d0 = dyp[di + min(o0 + pair, last) * dplane];
        let d1 = dyp[di + min(o0 + 2u + pair, last) * dplane];
        let d2 = dyp[di + min(o0 + 4u + pair, last) * dplane];
        let d3 = dyp[di + min(o0 + 6u + pair, last) * dplane];
        let d4 = dyp[di + min(o0 + 8u + pair, last) * dplane];
        let d5 = dyp[di + min(o0 + 10u + pair, last) * dplane];
        let d6 = dyp[di + min(o0 + 12u + pair, last) * dplane];
        let d7 = dyp[di + min(o0 + 14u + pair, last) * dplane];
        acc.v[0] = dw_channel(acc.v[0], dy_rows0(d0), x);
        acc.v[1] = dw_channel(acc.v[1], dy_rows1(d0), x);
        acc.v[2] = dw_channel(acc.v[2], dy_rows0(d1), x);
        acc.v[3] = dw_channel(acc.v[3], dy_rows1(d1), x);
        acc.v[4] = dw_channel(acc.v[4], dy_rows0(d2), x);
        acc.v[5] = dw_channel(acc.v[5], dy_rows1(d2), x);
        acc.v[6] = dw_channel(acc.v[6], dy_rows0(d3), x);
        acc.v[7] = dw_channel(acc.v[7], dy_rows1(d3), x);
        acc.v[8] = dw_channel(acc.v[8], dy_rows0(d4), x);
        acc.v[9] = dw_channel(acc.v[9], dy_rows1(d4), x);
        acc.v[10] = dw_channel(acc.v[10], dy_rows0(d5), x);
        acc.v[11] = dw_channel(acc.v[11], dy_rows1(d5), x);
        acc.v[12] = dw_channel(acc.v[12], dy_rows0(d6), x);
        acc.v[13] = dw_channel(acc.v[13], dy_rows1(d6), x);
        acc.v[14] = dw_channel(acc.v[14], dy_rows0(d7), x);
        acc.v[15] = dw_channel(acc.v[15], dy_rows1(d7), x);
    }
    store_dw(wg.z, o0, c, 9u, acc);
}
