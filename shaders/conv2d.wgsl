// conv2d.wgsl — 2-D convolution over NCHW f32 with PyTorch semantics, forward and backward (portable: no
// subgroups, no f16; conv2d_subgroup.wgsl holds faster variants of the main passes).
//   forward:         y[n,o,i,j]   = b[o] + Σ_{c,u,v} w[o,c,u,v] · x[n, c, s·i + u − p, s·j + v − p]
//   backward input:  d_x = the forward of d_y with w'[c,o,u,v] = w[o,c,k−1−u,k−1−v] (stride 1, pad k−1−p);
//                    for stride 2 a transposed convolution of its own (backward_input_k3s2).
//   backward weight: d_w[o,c,u,v] = Σ_{n,i,j} d_y[n,o,i,j] · x[n, c, s·i + u − p, s·j + v − p]
//   backward bias:   d_b[o] = Σ_{n,i,j} d_y[n,o,i,j]
// Supported: k = 3, p = 1, s ∈ {1, 2}; k = 1, p = 0, s = 1. Derivations: src/reference/conv2d.rs.
//
// Why the packing passes: on lavapipe (and any SIMD-across-invocations CPU driver) every storage load costs a
// per-invocation gather, so the kernels read few, wide (vec4) values and reuse each many times from registers.
// `pack_input` copies an activation into a zero-bordered plane whose rows are a multiple of 4 floats, so the
// main loops read aligned vec4s with no bounds checks and no selects (`pack_input_vec4` does the same for source
// rows of whole vec4s, reading them as vec4s, and `pack_input_vec2` for whole vec2s); `pack_weight` lays the weights out so
// that the 8 output channels of one invocation sit in 2 consecutive vec4s per tap (and does the flip and
// transpose of the backward-input weights).
//
// Buffers (f32):
//   x   [N, C, H, W]                      source of pack_input (also d_y for the backward passes)
//   xp  [N, C, xp_h, 4·xp_w4]             packed input: xp[n,c,r,q] = x[n,c,r−pad,q−pad] or 0 (x may be a
//                                         channel concatenation [a; b], packed part by part)
//   w   [Co, Ci, k, k]                    source of pack_weight
//   wp  [⌈M/8⌉, K, k·k, 8]                packed weights of a main pass with K input and M output channels
//   y   [N, M, out_h, out_w]              main-pass output (y, or d_x); or channels 0..split of it, with
//   y2  [N, M − split, out_h, out_w]      the rest in y2 (the backward input of a concatenation, split)
//   dyp [N, Co, dy_h, 4·dy_w4]            d_y packed with no border (zeros past Ho, Wo), for backward weight
//   partial [chunks, Co, Ci, k·k]         backward-weight partial sums, one slab per chunk of output tiles
//   bias_out [chunks, Co]                 the bias gradient's partial sums, when backward weight sums it along
// Dispatch geometry:
//   pack_input, pack_input_vec4, pack_input_vec2: one invocation per packed row, 64 per workgroup; pack_weight, backward_weight_reduce: one
//     invocation per output element, 256 per workgroup; all on 2-D grids of workgroups (see grid_1d).
//   forward_*, backward_input_k3s2: 64 invocations per workgroup; each computes 8 output channels × 4 rows ×
//     4 columns (8 for backward_input_k3s2) of one image (a "block"); grid (x, y) enumerates blocks in groups
//     of 64 (n-major, then row block, then column block), grid z the ⌈M/8⌉ channel blocks.
//   backward_weight_*: WG (override: 8, 32 or 64) invocations per workgroup, invocation = input channel c;
//     each holds 16 output channels × k·k taps of d_w and walks a chunk of the 4×4 output tiles; grid (x, y, z) =
//     (⌈Ci/WG⌉, ⌈Co/16⌉, chunks). backward_weight_reduce then sums the chunks in a fixed order (deterministic).
//   backward_bias: one workgroup of 256 per output channel, a fixed-shape tree reduction (deterministic).
// Saved for backward: nothing beyond the forward's x and w (the wrapper packs them again).
// Wrapper: src/kernels/conv2d.rs.

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
    flags: u32,       // bit 0: add bias; bit 1: y += … instead of y = …; bit 2: the same for y2
    split: u32,       // output channels m < split go to y [N, split, …], the rest to y2 [N, M − split, …]
    // pack_input: source plane size and border, and where its channels land among the packed ones (a
    // channel concatenation packs each part into its range); pack_weight: taps (k·k), flip/transpose flag.
    src_h: u32,
    src_w: u32,
    pad: u32,
    channel_offset: u32,
    taps: u32,
    transpose: u32,   // pack_weight: 1 = backward-input layout (swap Co and Ci, flip the taps)
    // backward weight
    dy_h: u32,        // rows of a packed d_y plane
    dy_w4: u32,       // vec4s per packed d_y row
    chunks: u32,      // number of tile chunks (partial-sum slabs)
    len: u32,         // elements written by the element-wise passes
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
@group(0) @binding(11) var<storage, read_write> y2: array<f32>;       // second part of a split main output
@group(0) @binding(12) var<storage, read> src4: array<vec4<f32>>;     // pack_input_vec4 source (src as vec4s)
@group(0) @binding(13) var<storage, read_write> bias_out: array<f32>;  // backward-weight bias sums
@group(0) @binding(14) var<storage, read> src2: array<vec2<f32>>;     // pack_input_vec2 source (src as vec2s)
@group(0) @binding(15) var<storage, read> xp2: array<vec2<f32>>;      // the packed input again, as vec2s

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;
const FLAG_ACCUMULATE_2: u32 = 4u;

fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32, size: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * size + lid;
}

// ---------------------------------------------------------------------------------------------------------
// Packing

// packed[n, channel_offset + c, r, q] = src[n, c, r − pad, q − pad] inside the source plane (src_h × src_w),
// else 0; src has p.in_c channels, packed p.out_c. One invocation per packed row of the source's channels
// (p.len = N·in_c·xp_h rows) writes its 4·xp_w4 values as vec4s. Integer division by a runtime value is a
// scalar loop per invocation on SIMD-across-invocations drivers, so it is done per row, not per value.
@compute @workgroup_size(64)
fn pack_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid, 64u);
    if (i >= p.len) { return; }
    let plane = i / p.xp_h;
    let r = i - plane * p.xp_h;
    // Unsigned wrap-around sends r < pad far past src_h, so one comparison covers both sides.
    let h = r - p.pad;
    let row_ok = h < p.src_h;
    let src_row = (plane * p.src_h + min(h, p.src_h - 1u)) * p.src_w;
    let n = plane / p.in_c;
    let dst = ((n * p.out_c + p.channel_offset + plane - n * p.in_c) * p.xp_h + r) * p.xp_w4;
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
    let plane = i / p.xp_h;
    let r = i - plane * p.xp_h;
    let h = r - p.pad;
    let row_ok = h < p.src_h;
    let w4 = p.src_w / 4u;
    let src_row = (plane * p.src_h + min(h, p.src_h - 1u)) * w4;
    let n = plane / p.in_c;
    let dst = ((n * p.out_c + p.channel_offset + plane - n * p.in_c) * p.xp_h + r) * p.xp_w4;
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
    let plane = i / p.xp_h;
    let r = i - plane * p.xp_h;
    let h = r - p.pad;
    let row_ok = h < p.src_h;
    let w2 = p.src_w / 2u;
    let src_row = (plane * p.src_h + min(h, p.src_h - 1u)) * w2;
    let n = plane / p.in_c;
    let dst = ((n * p.out_c + p.channel_offset + plane - n * p.in_c) * p.xp_h + r) * p.xp_w4;
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
// The second load is a vec2 (xp2, the same buffer): only its first two columns are used, and on lavapipe a
// load costs per component (8-10% faster passes).
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

// Writes columns c0..c0+3 of one output row (those < out_w), adding the bias or the old value as flagged:
// into y, or into y2 for channels m ≥ p.split (m is uniform across the workgroup, so the branch is too).
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
    if (m < p.split) {
        let base = ((b.n * p.split + m) * p.out_h + row) * p.out_w + b.c0;
        let accumulate = (p.flags & FLAG_ACCUMULATE) != 0u;
        for (var j = 0u; j < cols; j++) {
            y[base + j] = select(out[j], out[j] + y[base + j], accumulate);
        }
    } else {
        let base = ((b.n * (p.out_c - p.split) + m - p.split) * p.out_h + row) * p.out_w + b.c0;
        let accumulate = (p.flags & FLAG_ACCUMULATE_2) != 0u;
        for (var j = 0u; j < cols; j++) {
            y2[base + j] = select(out[j], out[j] + y2[base + j], accumulate);
        }
    }
}

// One output element (n, m, row, col), written as store4 writes them (for store8, whose columns interleave).
fn put(n: u32, m: u32, row: u32, col: u32, v: f32) {
    if (m < p.split) {
        let i = ((n * p.split + m) * p.out_h + row) * p.out_w + col;
        if ((p.flags & FLAG_ACCUMULATE) != 0u) {
            y[i] += v;
        } else {
            y[i] = v;
        }
    } else {
        let i = ((n * (p.out_c - p.split) + m - p.split) * p.out_h + row) * p.out_w + col;
        if ((p.flags & FLAG_ACCUMULATE_2) != 0u) {
            y2[i] += v;
        } else {
            y2[i] = v;
        }
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

struct Rows9 {
    r: array<array<vec4<f32>, 3>, 9>,
}

// The d_y of one tile: v[o − o0][row] is the vec4 of its 4 columns. Channels past Co repeat the last one
// (their sums are never stored), so every load stays in range.
struct DyTile {
    v: array<array<vec4<f32>, 4>, 16>,
}

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
// indexing `acc` at run time puts the accumulators in scratch memory, and on lavapipe that made the whole pass
// 1.4× (28×28) to 5× (7×7) slower, the more so the more workgroups a dispatch has.
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

@compute @workgroup_size(WG)
fn backward_weight_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = wg.x * WG + lid;
    let cc = min(c, p.in_c - 1u);  // out-of-range lanes compute on a real channel and store nothing
    let o0 = wg.y * CO_BLOCK;
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
    let o0 = wg.y * CO_BLOCK;
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
    let o0 = wg.y * CO_BLOCK;
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
// Backward bias: d_b[o] = Σ_{n, i, j} d_y[n, o, i, j]. One workgroup per channel o (linear workgroup index);
// 256 invocations stride over the N·Ho·Wo values, then a fixed-shape tree sums their partials.
// src = d_y [N, Co, Ho, Wo]; p.len = Ho·Wo (one plane), p.out_c = Co, p.n = N.

var<workgroup> bias_partial: array<f32, 256>;

@compute @workgroup_size(256)
fn backward_bias(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let o = wg.y * nwg.x + wg.x;
    // o is uniform across the workgroup, so this early return keeps the barriers in uniform control flow.
    if (o >= p.out_c) { return; }
    let plane = p.len;
    var s = 0.0;
    for (var k = lid; k < p.n * plane; k += 256u) {
        let n = k / plane;
        s += src[(n * p.out_c + o) * plane + (k - n * plane)];
    }
    bias_partial[lid] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            bias_partial[lid] += bias_partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        y[o] = bias_partial[0];
    }
}
