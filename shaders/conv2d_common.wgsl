// conv2d_common.wgsl — the prelude of conv2d.wgsl and conv2d_subgroup.wgsl (src/gpu/shaders.rs prepends it to
// each; not a module of its own): Params, the bindings, the accumulators and output stores, the tile walk, and the
// bodies of the main passes, which each file's @compute wrappers call with their builtins:
//   forward_k3s1_body, forward_k3s2_body, forward_k1_body, backward_input_k3s2_body (wg, nwg, lid, lane)
//   backward_weight_k3s1_body, backward_weight_k3s2_body, backward_weight_k1_body (wg, lid, lane)
// (lid: local_invocation_index; lane: subgroup_invocation_id, 0 in conv2d.wgsl). Math, packed layouts and
// dispatch geometry: conv2d.wgsl's header. The bodies load what every invocation of a workgroup shares through
// loaders that each including file defines with these signatures:
//   weights9(i, lane) -> Taps9                 the 18 weight vec4s of one input channel, 3×3 (forward)
//   weights1(i, lane) -> array<vec4<f32>, 2>   the 2 weight vec4s of one input channel, 1×1 (forward)
//   dy_tile(di, o0, lane) -> DyTile            a tile's d_y rows for 16 output channels (backward weight)
// conv2d.wgsl's loaders ignore `lane` (each invocation loads everything itself); conv2d_subgroup.wgsl's split the
// loads across the subgroup and broadcast them, so the bodies keep every loader call in uniform control flow.
// Wrapper: src/kernels/conv2d/ (the variant: src/kernels/select.rs).

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
    flags: u32,       // bit 0: add bias; bit 1: y += … instead of y = …
    // pack_input: source plane size and border; pack_weight: taps (k·k), flip/transpose flag.
    src_h: u32,
    src_w: u32,
    pad: u32,
    taps: u32,
    transpose: u32,   // pack_weight: 1 = backward-input layout (swap Co and Ci, flip the taps)
    // backward weight
    dy_h: u32,        // rows of a packed d_y plane
    dy_w4: u32,       // vec4s per packed d_y row
    chunks: u32,      // number of tile chunks (partial-sum slabs)
    len: u32,         // elements written by the element-wise passes
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;             // pack_* source, backward_bias d_y
@group(0) @binding(2) var<storage, read_write> packed: array<f32>;    // pack_weight destination
@group(0) @binding(3) var<storage, read> xp: array<vec4<f32>>;        // packed input
@group(0) @binding(4) var<storage, read> wp: array<vec4<f32>>;        // packed weights
@group(0) @binding(5) var<storage, read> bias: array<f32>;            // [M]; bound to any tensor when unused
@group(0) @binding(6) var<storage, read_write> y: array<f32>;         // main output, d_w, d_b
@group(0) @binding(7) var<storage, read> dyp: array<vec4<f32>>;       // packed d_y
@group(0) @binding(8) var<storage, read_write> partial: array<f32>;   // backward-weight partial sums
@group(0) @binding(9) var<storage, read> partial_in: array<f32>;      // the same, read by the reduction
@group(0) @binding(10) var<storage, read_write> packed4: array<vec4<f32>>;  // pack_input destination
@group(0) @binding(12) var<storage, read> src4: array<vec4<f32>>;     // pack_input_vec4 source (src as vec4s)
@group(0) @binding(13) var<storage, read_write> bias_out: array<f32>;  // backward-weight bias sums
@group(0) @binding(14) var<storage, read> src2: array<vec2<f32>>;     // pack_input_vec2 source (src as vec2s)
@group(0) @binding(15) var<storage, read> xp2: array<vec2<f32>>;      // the packed input again, as vec2s

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;

// Backward weight: invocations per workgroup (8, 32 or 64, set by the wrapper) and output channels per invocation.
override WG: u32 = 64u;

const DW_CO_BLOCK: u32 = 16u;

fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * size + lid;
}

struct Acc {
    v: array<array<vec4<f32>, 4>, 8>,
}

struct Block {
    n: u32,
    r0: u32,      // first output row
    c0: u32,      // first output column
    valid: bool,  // false for the padding invocations of the last group
}

// `cols`: output columns per block (4, or 8 for backward_input_k3s2).
fn block_of(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, cols: u32) -> Block {
    let blocks = p.n * p.row_blocks * p.col_blocks;
    let i = linear_index(wg, nwg, lid, 64u);
    // Invalid invocations still run the loop (on a real block) so that control flow stays uniform; they
    // only skip the store.
    let b = min(i, blocks - 1u);
    let cb = b % p.col_blocks;
    let rb = (b / p.col_blocks) % p.row_blocks;
    return Block(b / (p.col_blocks * p.row_blocks), 4u * rb, cols * cb, i < blocks);
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
// The second load is a vec2 (xp2, the same buffer): only its first two columns are used, and on CPU adapters a
// load costs per component (docs/kernels.md).
fn row_s1(i: u32) -> array<vec4<f32>, 3> {
    let lo = xp[i];
    let hi = xp2[2u * i + 2u];
    return array(lo, vec4(lo.yzw, hi.x), vec4(lo.zw, hi.xy));
}

// Stride 2: outputs c0..c0+3 read packed columns 2·c0 + 2j + v, j = 0..3.
fn row_s2(i: u32) -> array<vec4<f32>, 3> {
    let a = xp[i];
    let b = xp[i + 1u];
    let c = xp2[2u * i + 4u];
    return array(vec4(a.x, a.z, b.x, b.z), vec4(a.y, a.w, b.y, b.w), vec4(a.z, b.x, b.z, c.x));
}

// The 18 weight vec4s of one input channel for a 3×3 kernel: u[kernel row][v·2 + a/4], from vec4 index i.
struct Taps9 {
    u: array<array<vec4<f32>, 6>, 3>,
}

// Writes columns c0..c0+3 of one output row (those < out_w), adding the bias or the old value as flagged.
fn store4(b: Block, m: u32, r: u32, v: vec4<f32>) {
    let row = b.r0 + r;
    if (m >= p.out_c || row >= p.out_h) { return; }
    var out = v;
    if ((p.flags & FLAG_BIAS) != 0u) {
        out += vec4(bias[m]);
    }
    // Columns past out_w belong to no output; those lanes of the vec4 are dropped. The old value is read
    // either way and the select drops it when not accumulating (garbage, even NaN, never reaches the output).
    let cols = min(p.out_w - b.c0, 4u);
    let base = ((b.n * p.out_c + m) * p.out_h + row) * p.out_w + b.c0;
    let accumulate = (p.flags & FLAG_ACCUMULATE) != 0u;
    for (var j = 0u; j < cols; j++) {
        y[base + j] = select(out[j], out[j] + y[base + j], accumulate);
    }
}

// One output element (n, m, row, col), written as store4 writes them (for store8, whose columns interleave).
fn put(n: u32, m: u32, row: u32, col: u32, v: f32) {
    let i = ((n * p.out_c + m) * p.out_h + row) * p.out_w + col;
    if ((p.flags & FLAG_ACCUMULATE) != 0u) {
        y[i] += v;
    } else {
        y[i] = v;
    }
}

// The epilogue is a loop over a copy of the accumulators (indexed dynamically, so the copy lives in memory)
// rather than 32 unrolled stores: that keeps the compiled kernel small, which keeps the driver's compile
// time (seconds per kernel on lavapipe) down, at no cost to the main loop, whose `acc` stays in registers.
fn store_block(b: Block, m0: u32, acc: Acc) {
    if (!b.valid) { return; }
    var out = acc;
    for (var k = 0u; k < 32u; k++) {
        store4(b, m0 + k / 4u, k % 4u, out.v[k / 4u][k % 4u]);
    }
}

struct AccT {
    v: array<array<vec4<f32>, 8>, 8>,  // [a][r]: even columns of row r; [a][4 + r]: odd columns
}

fn fma4t(acc: ptr<function, AccT>, a0: u32, k: u32, w: vec4<f32>, x: vec4<f32>) {
    (*acc).v[a0][k] = fma(vec4(w.x), x, (*acc).v[a0][k]);
    (*acc).v[a0 + 1u][k] = fma(vec4(w.y), x, (*acc).v[a0 + 1u][k]);
    (*acc).v[a0 + 2u][k] = fma(vec4(w.z), x, (*acc).v[a0 + 2u][k]);
    (*acc).v[a0 + 3u][k] = fma(vec4(w.w), x, (*acc).v[a0 + 3u][k]);
}

// One flipped kernel row w (see above) into output row r from a packed d_y row seen as x[0] = d_y columns
// under the even outputs (and v = 2 of the odd ones), x[1] = those one further (v = 0 of the odd ones).
fn taps_t(acc: ptr<function, AccT>, r: u32, w: array<vec4<f32>, 6>, x: array<vec4<f32>, 2>) {
    fma4t(acc, 0u, r, w[2], x[0]);
    fma4t(acc, 4u, r, w[3], x[0]);
    fma4t(acc, 0u, 4u + r, w[0], x[0]);
    fma4t(acc, 4u, 4u + r, w[1], x[0]);
    fma4t(acc, 0u, 4u + r, w[4], x[1]);
    fma4t(acc, 4u, 4u + r, w[5], x[1]);
}

// Packed d_y columns c0/2 + 1 .. + 4 and c0/2 + 2 .. + 5 of the row at vec4 index i (= column c0/2).
fn row_t(i: u32) -> array<vec4<f32>, 2> {
    let lo = xp[i];
    let hi = xp2[2u * i + 2u];
    return array(vec4(lo.yzw, hi.x), vec4(lo.zw, hi.xy));
}

// Writes the 8 columns of row r (those < out_w): even columns from e, odd ones from o.
fn store8(b: Block, m: u32, r: u32, e: vec4<f32>, o: vec4<f32>) {
    let row = b.r0 + r;
    if (m >= p.out_c || row >= p.out_h) { return; }
    for (var j = 0u; j < 8u; j++) {
        if (b.c0 + j < p.out_w) {
            put(b.n, m, row, b.c0 + j, select(e[j / 2u], o[j / 2u], (j & 1u) == 1u));
        }
    }
}

// As store_block, for AccT.
fn store_block_t(b: Block, m0: u32, acc: AccT) {
    if (!b.valid) { return; }
    var out = acc;
    for (var k = 0u; k < 32u; k++) {
        store8(b, m0 + k / 4u, k % 4u, out.v[k / 4u][k % 4u], out.v[k / 4u][4u + k % 4u]);
    }
}

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

struct Rows9 {
    r: array<array<vec4<f32>, 3>, 9>,
}

// The d_y of one tile: v[o − o0][row] is the vec4 of its 4 columns. Channels past Co repeat the last one
// (their sums are never stored), so every load stays in range.
struct DyTile {
    v: array<array<vec4<f32>, 4>, 16>,
}

// One output channel's 4 d_y rows against a tile's packed x rows: stride 1 (rows 0..5), stride 2 (rows 0..8),
// and k = 1 (rows 0..3, one tap).
fn dw_channel_s1(acc: array<f32, 9>, d: array<vec4<f32>, 4>, x: Rows6) -> array<f32, 9> {
    var a = dw_row(acc, d[0], x.r[0], x.r[1], x.r[2]);
    a = dw_row(a, d[1], x.r[1], x.r[2], x.r[3]);
    a = dw_row(a, d[2], x.r[2], x.r[3], x.r[4]);
    return dw_row(a, d[3], x.r[3], x.r[4], x.r[5]);
}

fn dw_channel_s2(acc: array<f32, 9>, d: array<vec4<f32>, 4>, x: Rows9) -> array<f32, 9> {
    var a = dw_row(acc, d[0], x.r[0], x.r[1], x.r[2]);
    a = dw_row(a, d[1], x.r[2], x.r[3], x.r[4]);
    a = dw_row(a, d[2], x.r[4], x.r[5], x.r[6]);
    return dw_row(a, d[3], x.r[6], x.r[7], x.r[8]);
}

fn dw_channel_k1(acc: array<f32, 9>, d: array<vec4<f32>, 4>, x: array<vec4<f32>, 4>) -> array<f32, 9> {
    var a = acc;
    a[0] = mac4(mac4(mac4(mac4(a[0], d[0], x[0]), d[1], x[1]), d[2], x[2]), d[3], x[3]);
    return a;
}

// The bias gradient rides along (p.flags & FLAG_BIAS): d_b[o] = Σ d_y[n, o, ·, ·] over the same tiles, from the
// d_y every lane already holds. Only the workgroups of the first input-channel block (wg.x = 0) sum it, and lane 0
// of each stores it: bias_out[z, o] (a chunk's partial sum, like `partial`).
struct BiasSums {
    v: array<f32, 16>,  // [o − o0]
}

fn row_sum(r: array<vec4<f32>, 4>) -> f32 {
    let t = (r[0] + r[1]) + (r[2] + r[3]);
    return (t.x + t.y) + (t.z + t.w);
}

fn add_bias_sums(s: BiasSums, d: DyTile) -> BiasSums {
    var o = s;
    o.v[0] += row_sum(d.v[0]);
    o.v[1] += row_sum(d.v[1]);
    o.v[2] += row_sum(d.v[2]);
    o.v[3] += row_sum(d.v[3]);
    o.v[4] += row_sum(d.v[4]);
    o.v[5] += row_sum(d.v[5]);
    o.v[6] += row_sum(d.v[6]);
    o.v[7] += row_sum(d.v[7]);
    o.v[8] += row_sum(d.v[8]);
    o.v[9] += row_sum(d.v[9]);
    o.v[10] += row_sum(d.v[10]);
    o.v[11] += row_sum(d.v[11]);
    o.v[12] += row_sum(d.v[12]);
    o.v[13] += row_sum(d.v[13]);
    o.v[14] += row_sum(d.v[14]);
    o.v[15] += row_sum(d.v[15]);
    return o;
}

fn sums_bias(wg_x: u32) -> bool {
    return (p.flags & FLAG_BIAS) != 0u && wg_x == 0u;
}

fn store_bias(z: u32, o0: u32, lid: u32, s: BiasSums) {
    if (lid != 0u) { return; }
    store_bias_channel(z, o0 + 0u, s.v[0]);
    store_bias_channel(z, o0 + 1u, s.v[1]);
    store_bias_channel(z, o0 + 2u, s.v[2]);
    store_bias_channel(z, o0 + 3u, s.v[3]);
    store_bias_channel(z, o0 + 4u, s.v[4]);
    store_bias_channel(z, o0 + 5u, s.v[5]);
    store_bias_channel(z, o0 + 6u, s.v[6]);
    store_bias_channel(z, o0 + 7u, s.v[7]);
    store_bias_channel(z, o0 + 8u, s.v[8]);
    store_bias_channel(z, o0 + 9u, s.v[9]);
    store_bias_channel(z, o0 + 10u, s.v[10]);
    store_bias_channel(z, o0 + 11u, s.v[11]);
    store_bias_channel(z, o0 + 12u, s.v[12]);
    store_bias_channel(z, o0 + 13u, s.v[13]);
    store_bias_channel(z, o0 + 14u, s.v[14]);
    store_bias_channel(z, o0 + 15u, s.v[15]);
}

fn store_bias_channel(z: u32, o: u32, v: f32) {
    if (o < p.out_c) { bias_out[z * p.out_c + o] = v; }
}

// Walks tiles in order without integer division (a scalar loop per invocation on SIMD-across-invocations
// drivers): (n, rb, cb) of the current tile, advanced by `next_tile`.
struct Tile {
    n: u32,
    rb: u32,
    cb: u32,
}

fn first_tile(t: u32) -> Tile {
    return Tile(t / (p.col_blocks * p.row_blocks), (t / p.col_blocks) % p.row_blocks, t % p.col_blocks);
}

fn next_tile(t: Tile) -> Tile {
    let row_end = t.cb + 1u == p.col_blocks;
    let rb = select(t.rb, t.rb + 1u, row_end);
    let image_end = rb == p.row_blocks;
    return Tile(select(t.n, t.n + 1u, image_end), select(rb, 0u, image_end), select(t.cb + 1u, 0u, row_end));
}

// vec4 index of the tile's first packed x row (channel 0 of image n) for the given stride.
fn tile_x(t: Tile, stride: u32) -> u32 {
    return (t.n * p.in_c * p.xp_h + stride * 4u * t.rb) * p.xp_w4 + stride * t.cb;
}

// vec4 index of the tile's first packed d_y row (channel 0 of image n).
fn tile_dy(t: Tile) -> u32 {
    return (t.n * p.out_c * p.dy_h + 4u * t.rb) * p.dy_w4 + t.cb;
}

// partial[z, o, c, t] for the valid (o, c) of this invocation. Written out with constant indices only: a loop
// indexing `acc` at run time puts the accumulators in scratch memory, which on a CPU adapter costs more than the
// whole pass (docs/kernels.md).
fn store_dw_channel(z: u32, o: u32, c: u32, taps: u32, a: array<f32, 9>) {
    if (o >= p.out_c) { return; }
    let base = ((z * p.out_c + o) * p.in_c + c) * taps;
    partial[base] = a[0];
    if (taps == 9u) {
        partial[base + 1u] = a[1]; partial[base + 2u] = a[2]; partial[base + 3u] = a[3];
        partial[base + 4u] = a[4]; partial[base + 5u] = a[5]; partial[base + 6u] = a[6];
        partial[base + 7u] = a[7]; partial[base + 8u] = a[8];
    }
}

fn store_dw(z: u32, o0: u32, c: u32, taps: u32, acc: AccW) {
    if (c >= p.in_c) { return; }
    store_dw_channel(z, o0 + 0u, c, taps, acc.v[0]);
    store_dw_channel(z, o0 + 1u, c, taps, acc.v[1]);
    store_dw_channel(z, o0 + 2u, c, taps, acc.v[2]);
    store_dw_channel(z, o0 + 3u, c, taps, acc.v[3]);
    store_dw_channel(z, o0 + 4u, c, taps, acc.v[4]);
    store_dw_channel(z, o0 + 5u, c, taps, acc.v[5]);
    store_dw_channel(z, o0 + 6u, c, taps, acc.v[6]);
    store_dw_channel(z, o0 + 7u, c, taps, acc.v[7]);
    store_dw_channel(z, o0 + 8u, c, taps, acc.v[8]);
    store_dw_channel(z, o0 + 9u, c, taps, acc.v[9]);
    store_dw_channel(z, o0 + 10u, c, taps, acc.v[10]);
    store_dw_channel(z, o0 + 11u, c, taps, acc.v[11]);
    store_dw_channel(z, o0 + 12u, c, taps, acc.v[12]);
    store_dw_channel(z, o0 + 13u, c, taps, acc.v[13]);
    store_dw_channel(z, o0 + 14u, c, taps, acc.v[14]);
    store_dw_channel(z, o0 + 15u, c, taps, acc.v[15]);
}

// ---------------------------------------------------------------------------------------------------------
// Forward (and backward input): register-blocked implicit GEMM.
//
// One invocation owns a block of 8 output channels × 4 rows × 4 columns: acc.v[a][r] is the vec4 of columns
// c0..c0+3 in row r0 + r of channel m0 + a. Per input channel it loads the few packed rows it needs (2 vec4s
// per row for k = 3, s = 1) and 18 weight vec4s, then does 288 vec4 FMAs from registers. Everything inside
// the channel loop is written out (no inner loops, only constant indices) so the driver keeps `acc` in
// registers instead of scratch memory.

// k = 3, stride 1, packed with a 1-pixel border: output (i, j) reads packed rows i..i+2, columns j..j+2.
// Also the backward input of stride 1 (packed d_y, transposed and flipped weights).
fn forward_k3s1_body(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, lane: u32) {
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
fn forward_k3s2_body(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, lane: u32) {
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
fn forward_k1_body(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, lane: u32) {
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
//
// Output rows r0..r0+3 read packed d_y rows r0/2 + 1 + q, q = 0, 1, 2: row r0 (even) through u = 1 from q = 0;
// r0 + 1 through u = 0 from q = 1 and u = 2 from q = 0; r0 + 2 through u = 1 from q = 1; r0 + 3 through u = 0
// from q = 2 and u = 2 from q = 1.
fn backward_input_k3s2_body(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, lane: u32) {
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

fn backward_weight_k3s1_body(wg: vec3<u32>, lid: u32, lane: u32) {
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

fn backward_weight_k3s2_body(wg: vec3<u32>, lid: u32, lane: u32) {
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
fn backward_weight_k1_body(wg: vec3<u32>, lid: u32, lane: u32) {
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
