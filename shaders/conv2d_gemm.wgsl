// conv2d_gemm.wgsl — 2-D convolution over NCHW f32 as a workgroup-memory-tiled implicit GEMM, for GPUs: every
// pass of every supported shape (k = 3, p = 1, s ∈ {1, 2}; k = 1, p = 0, s = 1) is one product C = A·B whose
// operands are gathered from the tensors as the tiles are staged, so no pass packs anything first (the zero padding
// is a bounds check in the loader) and the batch is one GEMM dimension. T = k² taps, P = N·Ho·Wo output pixels.
//   forward          C[o, (n,i,j)]   = Σ_{(c,u,v)} w[o,c,u,v] · x[n, c, s·i+u−p, s·j+v−p]      M = Co, N = P,     K = Ci·T
//   backward input   C[c, (n,h,w)]   = Σ_{(o,u,v)} w[o,c,u,v] · d_y[n, o, (h+p−u)/s, (w+p−v)/s]
//                    over the taps with h+p−u and w+p−v multiples of s (terms past the plane are 0): for s = 2,
//                    one product per parity class (h mod 2, w mod 2), grid z, each over its own taps (u = 1 for
//                    even h, u ∈ {0, 2} for odd h; v likewise), so no FMA is spent on a tap that hits no d_y pixel
//                                                                          M = Ci, N = N·H·W / 4, K = Co·(1 or 2)²
//   weight gradient  C[o, (c,u,v)]   = Σ_{(n,i,j)} d_y[n,o,i,j] · x[n, c, s·i+u−p, s·j+v−p]    M = Co, N = Ci·T,  K = P
//                    split-K: chunk z sums its run of K slices into partial[z] (or d_w itself when there is one
//                    chunk); conv2d.wgsl's backward_weight_reduce adds the chunks in order. With FLAG_BIAS the
//                    workgroups of the first column tile also sum d_b[o] = Σ d_y[n,o,·,·] from the staged A tiles.
// The forward's epilogue also adds, where flagged, a bias per image and channel (a residual block's time embedding,
// time[n, o]) and a residual tensor of y's shape: y = conv + b + time + residual, in that order, one dispatch.
// Supported shapes and the math: conv2d.wgsl's header; derivations: src/reference/conv2d.rs.
// Tiling: a workgroup of 256 owns a 64×64 tile of C; invocation (tm, tn) = (lid / 16, lid % 16) owns rows
// 4tm..4tm+3 × columns 4tn..4tn+3 (a 2-D register tile read from workgroup memory as one vec4 of A and one of B per
// k). K is walked in slices of 8, double-buffered: the next slice's global loads are issued before the current
// slice's FMAs and stored to the other buffer after them, one barrier per slice. Each invocation loads 2 values of
// A and 2 of B per slice, consecutive invocations along the operand's contiguous dimension in memory (coalesced):
// "k-fast" (8 consecutive k, then the next row) or "mn-fast" (64 consecutive rows or columns). A staged k-row is
// 64 values plus 4 of padding, so the 8 k-rows written by a k-fast warp fall in distinct banks.
// Dispatch: grid_1d over the tiles_m · tiles_n tiles of C (x, y), grid z the chunks of the weight gradient or the
// parity classes of a stride-2 backward input (1 otherwise; tiles_n is the largest class's, class (0, 0)). Every sum is in a fixed order (no atomics). The override constants KS (1 or 3) and STRIDE (1 or 2)
// make each shape's index arithmetic constant divisions.
// Wrapper: src/kernels/conv2d/gemm.rs (the choice of variant: src/kernels/select.rs).

struct Params {
    n: u32,
    ci: u32,
    co: u32,
    h: u32,
    w: u32,
    ho: u32,
    wo: u32,
    m: u32,        // GEMM rows
    cols: u32,     // GEMM columns
    k: u32,        // GEMM depth
    tiles_n: u32,  // ⌈cols / 64⌉
    tiles: u32,    // ⌈m / 64⌉ · tiles_n: the grid's size (the wrapper's; the shader derives each layer's)
    flags: u32,    // bit 0: add the bias (forward) or sum it (weight gradient); bit 1: d_x += … (backward input);
                   // bit 2: add time[n, o] (forward); bit 3: add residual (forward)
    slices: u32,   // K slices of 8 per chunk (weight gradient; the others take all of K)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a_src: array<f32>;           // w, or d_y for the weight gradient
@group(0) @binding(2) var<storage, read> b_src: array<f32>;           // x, or d_y for the backward input
@group(0) @binding(3) var<storage, read> bias: array<f32>;            // [Co] (forward)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;       // y, d_x, or d_w / its chunks' partial sums
@group(0) @binding(5) var<storage, read_write> bias_out: array<f32>;  // d_b / its chunks' partial sums
@group(0) @binding(6) var<storage, read> time: array<f32>;            // [N, Co]: a bias per image (forward)
@group(0) @binding(7) var<storage, read> residual: array<f32>;        // [N, Co, Ho, Wo]: added to y (forward)

override KS: u32 = 3u;
override STRIDE: u32 = 1u;

const FLAG_BIAS: u32 = 1u;
const FLAG_ACCUMULATE: u32 = 2u;
const FLAG_TIME: u32 = 4u;
const FLAG_RESIDUAL: u32 = 8u;

const MODE_FORWARD: u32 = 0u;
const MODE_INPUT: u32 = 1u;
const MODE_WEIGHT: u32 = 2u;

const TILE: u32 = 64u;
const SLICE: u32 = 8u;
// vec4s per staged k-row: 16 of values and 1 of padding.
const PITCH: u32 = 17u;

// [buffer][k][PITCH]: two buffers of a slice each.
var<workgroup> a_tile: array<vec4<f32>, 272>;
var<workgroup> b_tile: array<vec4<f32>, 272>;

fn taps() -> u32 {
    return KS * KS;
}

fn pad() -> u32 {
    return KS / 2u;
}

// An output pixel (or the backward input's input pixel): image and position in the plane.
struct Pixel {
    n: u32,
    i: u32,
    j: u32,
}

fn pixel(q: u32, rows: u32, cols: u32) -> Pixel {
    let plane = rows * cols;
    let n = q / plane;
    let r = q - n * plane;
    let i = r / cols;
    return Pixel(n, i, r - i * cols);
}

// x[n, c, s·i + u − p, s·j + v − p], 0 in the padding (unsigned wrap-around sends a negative row past h).
fn x_at(px: Pixel, c: u32, t: u32) -> f32 {
    let u = t / KS;
    let v = t - u * KS;
    let r = STRIDE * px.i + u - pad();
    let q = STRIDE * px.j + v - pad();
    let i = ((px.n * p.ci + c) * p.h + min(r, p.h - 1u)) * p.w + min(q, p.w - 1u);
    return select(0.0, b_src[i], r < p.h && q < p.w);
}

// The backward input's parity class (grid z): the pixels (h, w) with h mod s = ph, w mod s = pw, an rows × cols
// plane of them, and the taps through which an output pixel reads them, nu × nv (all k × k for stride 1). Uniform
// across the workgroup.
struct Class {
    ph: u32,
    pw: u32,
    rows: u32,
    cols: u32,
    nu: u32,
    nv: u32,
}

fn class_of(z: u32) -> Class {
    if (STRIDE == 1u) { return Class(0u, 0u, p.h, p.w, KS, KS); }
    let ph = z / 2u;
    let pw = z % 2u;
    return Class(ph, pw, (p.h + 1u - ph) / 2u, (p.w + 1u - pw) / 2u, 1u + ph, 1u + pw);
}

// Tap index a (0 .. nu − 1) of a class along one dimension of parity `par`: itself for stride 1; for stride 2 the
// tap 1 (even pixels) or 0 and 2 (odd ones), the taps whose h + p − u is even.
fn class_tap(par: u32, a: u32) -> u32 {
    if (STRIDE == 1u) { return a; }
    return select(2u * a, 1u, par == 0u);
}

// The backward input's depth index k = o·nu·nv + tu·nv + tv of class cl: (o, tap u·k + v).
fn input_tap(cl: Class, k: u32) -> vec2<u32> {
    let per = cl.nu * cl.nv;
    let o = k / per;
    let t = k - o * per;
    let tu = t / cl.nv;
    return vec2(o, class_tap(cl.ph, tu) * KS + class_tap(cl.pw, t - tu * cl.nv));
}

// d_y[n, o, (h + p − u)/s, (w + p − v)/s] for the backward input's pixel (n, h, w) and tap t = u·k + v, 0 past the
// plane (the class's taps make both quotients exact).
fn dy_through(px: Pixel, o: u32, t: u32) -> f32 {
    let u = t / KS;
    let v = t - u * KS;
    let r = (px.i + pad() - u) / STRIDE;
    let q = (px.j + pad() - v) / STRIDE;
    let i = ((px.n * p.co + o) * p.ho + min(r, p.ho - 1u)) * p.wo + min(q, p.wo - 1u);
    return select(0.0, b_src[i], r < p.ho && q < p.wo);
}

// The weight w[o, c, t] for GEMM row m and depth index k: the forward's (m = o, k = c·T + t: w's own layout) or the
// backward input's (m = c, k of class cl, see input_tap), 0 past the edges (k_end: the pass's K).
fn w_at(mode: u32, cl: Class, m: u32, k: u32, k_end: u32) -> f32 {
    let ok = m < p.m && k < k_end;
    let mm = min(m, p.m - 1u);
    let kk = min(k, k_end - 1u);
    var i = mm * p.k + kk;
    if (mode == MODE_INPUT) {
        let ot = input_tap(cl, kk);
        i = (ot.x * p.ci + mm) * taps() + ot.y;
    }
    return select(0.0, a_src[i], ok);
}

// Where one invocation's staged values go: k-fast (k = lid % 8, row lid / 8 + 32e) or mn-fast (row lid % 64,
// k = lid / 64 + 4e), e = 0, 1.
fn k_of(k_fast: bool, lid: u32, e: u32) -> u32 {
    return select(lid / TILE + 4u * e, lid % SLICE, k_fast);
}

fn row_of(k_fast: bool, lid: u32, e: u32) -> u32 {
    return select(lid % TILE, lid / SLICE + 32u * e, k_fast);
}

// The vec4 and lane a staged value goes to (a workgroup pointer cannot be passed to a function, so the two
// tiles' stores are written out in stage_all).
fn slot(buf: u32, k_fast: bool, lid: u32, e: u32) -> vec2<u32> {
    let r = row_of(k_fast, lid, e);
    return vec2((buf * SLICE + k_of(k_fast, lid, e)) * PITCH + r / 4u, r % 4u);
}

// One slice's values of this invocation: a[e], b[e] for e = 0, 1.
struct Loads {
    a: vec2<f32>,
    b: vec2<f32>,
}

// The workgroup's walk: its tile's corner and the K range it sums (the chunk's, for the weight gradient). Uniform
// across the workgroup, so kept apart from the invocation's own Column: the slice loop's barriers need that.
struct Walk {
    m0: u32,
    n0: u32,
    k_begin: u32,
    k_end: u32,
    cols: u32,   // C's columns (the class's, for the backward input)
    cl: Class,   // the backward input's parity class
}

// The forward's and backward input's GEMM column of an invocation (mn-fast: one column), as a pixel.
struct Column {
    px: Pixel,
    ok: bool,
}

// The slice starting at depth k0.
fn load(mode: u32, w: Walk, col: Column, lid: u32, k0: u32) -> Loads {
    var l: Loads;
    if (mode == MODE_WEIGHT) {
        // A = d_y [Co, P] and B = the gathered x [P, Ci·T], both k-fast: one pixel q per invocation.
        let q = k0 + lid % SLICE;
        let ok = q < w.k_end;
        let px = pixel(min(q, p.k - 1u), p.ho, p.wo);
        let plane = p.ho * p.wo;
        let ij = px.i * p.wo + px.j;
        for (var e = 0u; e < 2u; e++) {
            let o = w.m0 + lid / SLICE + 32u * e;
            let ai = (px.n * p.co + min(o, p.co - 1u)) * plane + ij;
            l.a[e] = select(0.0, a_src[ai], ok && o < p.m);
            let col = w.n0 + lid / SLICE + 32u * e;
            let c = min(col, p.cols - 1u) / taps();
            let t = min(col, p.cols - 1u) - c * taps();
            l.b[e] = select(0.0, x_at(px, c, t), ok && col < p.cols);
        }
        return l;
    }
    for (var e = 0u; e < 2u; e++) {
        let a_fast = mode == MODE_FORWARD;
        l.a[e] = w_at(mode, w.cl, w.m0 + row_of(a_fast, lid, e), k0 + k_of(a_fast, lid, e), w.k_end);
        let k = k0 + k_of(false, lid, e);
        let kk = min(k, w.k_end - 1u);
        var v: f32;
        if (mode == MODE_FORWARD) {
            let c = kk / taps();
            v = x_at(col.px, c, kk - c * taps());
        } else {
            let ot = input_tap(w.cl, kk);
            v = dy_through(col.px, ot.x, ot.y);
        }
        l.b[e] = select(0.0, v, col.ok && k < w.k_end);
    }
    return l;
}

fn stage_all(mode: u32, buf: u32, lid: u32, l: Loads) {
    let a_fast = mode != MODE_INPUT;
    let b_fast = mode == MODE_WEIGHT;
    for (var e = 0u; e < 2u; e++) {
        let a = slot(buf, a_fast, lid, e);
        a_tile[a.x][a.y] = l.a[e];
        let b = slot(buf, b_fast, lid, e);
        b_tile[b.x][b.y] = l.b[e];
    }
}

// The invocation's 4×4 of C, and (weight gradient, first column tile) its 4 rows' sums of A: the bias gradient.
struct Acc {
    c: array<vec4<f32>, 4>,
    a_sum: vec4<f32>,
}

// The walk of workgroup `tile` of grid layer z; its `cols` is 0 where the tile lies past the layer's C (the grid's
// padding, or a class of the backward input with fewer columns than the largest), whose workgroup then does nothing.
fn walk(mode: u32, tile: u32, z: u32) -> Walk {
    var w: Walk;
    w.cols = p.cols;
    w.k_begin = 0u;
    w.k_end = p.k;
    var tiles_n = p.tiles_n;
    if (mode == MODE_INPUT) {
        w.cl = class_of(z);
        w.cols = p.n * w.cl.rows * w.cl.cols;
        w.k_end = p.co * w.cl.nu * w.cl.nv;
        tiles_n = (w.cols + TILE - 1u) / TILE;
    }
    if (mode == MODE_WEIGHT) {
        w.k_begin = min(z * p.slices * SLICE, p.k);
        w.k_end = min(w.k_begin + p.slices * SLICE, p.k);
    }
    if (tiles_n == 0u || tile >= (p.m + TILE - 1u) / TILE * tiles_n) {
        w.cols = 0u;
        return w;
    }
    w.m0 = (tile / tiles_n) * TILE;
    w.n0 = (tile % tiles_n) * TILE;
    return w;
}

// The invocation's column of C's tile, a pixel of a plane of rows × cols (unused by the weight gradient).
fn column(w: Walk, lid: u32, rows: u32, cols: u32) -> Column {
    let col = w.n0 + lid % TILE;
    return Column(pixel(min(col, w.cols - 1u), rows, cols), col < w.cols);
}

// The backward input's column: a pixel (n, h, w) of the class, from its index in the class's rows × cols plane.
fn input_column(w: Walk, lid: u32) -> Column {
    let c = column(w, lid, w.cl.rows, w.cl.cols);
    return Column(Pixel(c.px.n, STRIDE * c.px.i + w.cl.ph, STRIDE * c.px.j + w.cl.pw), c.ok);
}

// C's tile of this workgroup, accumulated over the walk's K range in slices. `mode` is a constant at every call
// site, so the driver folds the branches on it.
fn gemm(mode: u32, w: Walk, col: Column, lid: u32, sum_a: bool) -> Acc {
    let slices = (w.k_end - w.k_begin + SLICE - 1u) / SLICE;
    let tm = lid / 16u;
    let tn = lid % 16u;
    var acc: Acc;
    stage_all(mode, 0u, lid, load(mode, w, col, lid, w.k_begin));
    workgroupBarrier();
    for (var s = 0u; s < slices; s++) {
        let cur = s & 1u;
        let more = s + 1u < slices;
        var next: Loads;
        if (more) { next = load(mode, w, col, lid, w.k_begin + (s + 1u) * SLICE); }
        for (var kl = 0u; kl < SLICE; kl++) {
            let a = a_tile[(cur * SLICE + kl) * PITCH + tm];
            let b = b_tile[(cur * SLICE + kl) * PITCH + tn];
            acc.c[0] = fma(vec4(a.x), b, acc.c[0]);
            acc.c[1] = fma(vec4(a.y), b, acc.c[1]);
            acc.c[2] = fma(vec4(a.z), b, acc.c[2]);
            acc.c[3] = fma(vec4(a.w), b, acc.c[3]);
            if (sum_a) { acc.a_sum += a; }
        }
        if (more) { stage_all(mode, 1u - cur, lid, next); }
        // The next slice reads the buffer just written, and the one after overwrites this one.
        workgroupBarrier();
    }
    return acc;
}

// The workgroup's tile (linear over a 2-D grid), or none past the last.
fn tile_of(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

@compute @workgroup_size(256)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) lid: u32) {
    let w = walk(MODE_FORWARD, tile_of(wg, nwg), 0u);
    if (w.cols == 0u) { return; }
    let acc = gemm(MODE_FORWARD, w, column(w, lid, p.ho, p.wo), lid, false);
    let plane = p.ho * p.wo;
    for (var j = 0u; j < 4u; j++) {
        let col = w.n0 + 4u * (lid % 16u) + j;
        if (col >= p.cols) { break; }
        let px = pixel(col, p.ho, p.wo);
        let base = px.n * p.co * plane + px.i * p.wo + px.j;
        for (var r = 0u; r < 4u; r++) {
            let o = w.m0 + 4u * (lid / 16u) + r;
            if (o < p.m) {
                var v = acc.c[r][j];
                if ((p.flags & FLAG_BIAS) != 0u) { v += bias[o]; }
                if ((p.flags & FLAG_TIME) != 0u) { v += time[px.n * p.co + o]; }
                if ((p.flags & FLAG_RESIDUAL) != 0u) { v += residual[base + o * plane]; }
                out[base + o * plane] = v;
            }
        }
    }
}

@compute @workgroup_size(256)
fn backward_input(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let tile = tile_of(wg, nwg);
    let w = walk(MODE_INPUT, tile, wg.z);
    if (w.cols == 0u) { return; }
    let cl = w.cl;
    let acc = gemm(MODE_INPUT, w, input_column(w, lid), lid, false);
    let plane = p.h * p.w;
    let accumulate = (p.flags & FLAG_ACCUMULATE) != 0u;
    for (var j = 0u; j < 4u; j++) {
        let col = w.n0 + 4u * (lid % 16u) + j;
        if (col >= w.cols) { break; }
        let q = pixel(col, cl.rows, cl.cols);
        let base = q.n * p.ci * plane + (STRIDE * q.i + cl.ph) * p.w + STRIDE * q.j + cl.pw;
        for (var r = 0u; r < 4u; r++) {
            let c = w.m0 + 4u * (lid / 16u) + r;
            if (c < p.m) {
                let i = base + c * plane;
                // The old value is read either way and dropped by the select when overwriting (garbage, even
                // NaN, never reaches the output).
                out[i] = select(acc.c[r][j], acc.c[r][j] + out[i], accumulate);
            }
        }
    }
}

// Writes chunk z's partial sums out[z, o, col] (d_w itself when there is one chunk: z = 0) and, with FLAG_BIAS,
// the first column tile's bias sums bias_out[z, o].
@compute @workgroup_size(256)
fn weight_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let w = walk(MODE_WEIGHT, tile_of(wg, nwg), wg.z);
    if (w.cols == 0u) { return; }
    let sums_bias = (p.flags & FLAG_BIAS) != 0u && w.n0 == 0u;
    let acc = gemm(MODE_WEIGHT, w, Column(Pixel(0u, 0u, 0u), false), lid, sums_bias && lid % 16u == 0u);
    let slab = wg.z * p.m * p.cols;
    for (var r = 0u; r < 4u; r++) {
        let o = w.m0 + 4u * (lid / 16u) + r;
        if (o >= p.m) { break; }
        for (var j = 0u; j < 4u; j++) {
            let col = w.n0 + 4u * (lid % 16u) + j;
            if (col < p.cols) { out[slab + o * p.cols + col] = acc.c[r][j]; }
        }
        if (sums_bias && lid % 16u == 0u) { bias_out[wg.z * p.m + o] = acc.a_sum[r]; }
    }
}
