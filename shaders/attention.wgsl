// attention.wgsl — multi-head self-attention over the L = H·W positions of a feature map, forward and backward, f32.
//   Per (n, head), d = C/heads, q, k, v: [d, L]: S = qᵀ·k/√d, lse_i = log Σ_j exp(S_ij), P = exp(S − lse), out = v·Pᵀ.
//   Backward (P recomputed from lse): d_v = d_out·P,  d_P = d_outᵀ·v,  D_i = Σ_e d_out[e, i]·out[e, i],
//   d_S = P ⊙ (d_P − D),  d_q = k·d_Sᵀ/√d,  d_k = q·d_S/√d.
// Layouts (what the U-Net's 1×1 convolutions produce and consume, no copies): qkv, d_qkv [N, 3C, H, W] with q, k, v
//   on channels [0, C), [C, 2C), [2C, 3C) and head h on h·d .. (h+1)·d, so q[n, h][e, i] = qkv[n, h·d + e, i];
//   out, d_out [N, C, H, W]; lse [N, heads, L]; scores, d_scores: scratch [N, heads, L, L], row-major (the scores
//   are materialised rather than fused flash-style; docs/kernels.md says why).
// attention_matmul: C = alpha·A·B for each b = n·heads + h, every operand read through Params' strides (so one kernel
//   serves all five products). A workgroup of 64 per 64×64 tile of C, grid (⌈N/64⌉, ⌈M/64⌉, batch·heads), K in steps
//   of 16; each invocation sums an 8×8 block, each element serially over k in order (the tests' γ_K bounds).
// attention_softmax: per score row, max, Σ exp(S − max), lse, then P = exp(S − lse) in place of S.
// attention_softmax_backward: per row, D_i, then S → P and d_P → d_S = P ⊙ (d_P − D_i) in place.
//   Both: workgroups of 64 on a 2-D grid (wg.y·num_workgroups.x + wg.x), one row each, or 8 rows of 8 lanes where
//   L ≤ 64 (Params.row_lanes); a lane sums ⌈k/lanes⌉ terms serially, then log₂ lanes tree levels (reduce_row).
// Forward: matmul (S) → softmax → matmul (out). Backward: matmul (S), matmul (d_P) → softmax_backward → matmul (d_v),
//   matmul (d_q), matmul (d_k). Deterministic: fixed summation orders, no atomics. Every kernel writes its workgroup
//   memory before reading it, so the wrapper skips its zero-initialisation (gpu.kernel_uninit_workgroup).
// CPU adapters with subgroups run the products on attention_subgroup.wgsl. Params, bindings: attention_common.wgsl.
// Saved for backward: lse (and the forward's out).  Wrapper: src/kernels/attention.rs

const TILE: u32 = 64u;   // rows and columns of C per workgroup
const TILE_K: u32 = 16u; // K per step
// A tile row holds 64 values as 16 vec4 plus one vec4 of padding, so that storing a tile along K (when K is the
// contiguous dimension in memory) spreads over the banks instead of hitting one.
const ROW_VEC4: u32 = 17u;
// Workgroup memory is vec4 rather than f32: fewer, wider loads in the inner loop (each one a per-invocation
// operation on a CPU implementation).
var<workgroup> a_tile: array<vec4<f32>, 272>; // [k][m / 4] of the current K step: A(m0 + m, k0 + k)
var<workgroup> b_tile: array<vec4<f32>, 272>; // [k][n / 4]: B(k0 + k, n0 + n)

fn store_c(c_off: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var s = 0u; s < 4u; s++) {
        if (col + s < p.n) {
            c[c_off + row * p.c_rows + (col + s) * p.c_cols] = p.alpha * v[s];
        }
    }
}

// A(m .. m + 3, k) as a vec4, zero past the edges (exact zeros in the sums).
fn load_a(off: u32, m: u32, k: u32) -> vec4<f32> {
    var v = vec4<f32>();
    if (k < p.k) {
        let at = off + m * p.a_rows + k * p.a_cols;
        if (m < p.m) { v.x = a[at]; }
        if (m + 1u < p.m) { v.y = a[at + p.a_rows]; }
        if (m + 2u < p.m) { v.z = a[at + 2u * p.a_rows]; }
        if (m + 3u < p.m) { v.w = a[at + 3u * p.a_rows]; }
    }
    return v;
}

// B(k, n .. n + 3) as a vec4, zero past the edges.
fn load_b(off: u32, k: u32, n: u32) -> vec4<f32> {
    var v = vec4<f32>();
    if (k < p.k) {
        let at = off + k * p.b_rows + n * p.b_cols;
        if (n < p.n) { v.x = b[at]; }
        if (n + 1u < p.n) { v.y = b[at + p.b_cols]; }
        if (n + 2u < p.n) { v.z = b[at + 2u * p.b_cols]; }
        if (n + 3u < p.n) { v.w = b[at + 3u * p.b_cols]; }
    }
    return v;
}

@compute @workgroup_size(64)
fn attention_matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let m0 = wg.y * TILE;
    let n0 = wg.x * TILE;
    let bn = wg.z / p.heads;
    let bh = wg.z % p.heads;
    let a_off = p.a_base + bn * p.a_batch + bh * p.a_head;
    let b_off = p.b_base + bn * p.b_batch + bh * p.b_head;
    let c_off = p.c_base + bn * p.c_batch + bh * p.c_head;
    // Invocation (tx, ty) owns rows 8·ty .. 8·ty+7 and columns 8·tx .. 8·tx+7 of the tile: 64 sums, each
    // accumulated serially over K, for 4 vec4 loads per k (loads, not arithmetic, bound a CPU implementation).
    let tx = lid % 8u;
    let ty = lid / 8u;
    var c00 = vec4<f32>();
    var c01 = vec4<f32>();
    var c10 = vec4<f32>();
    var c11 = vec4<f32>();
    var c20 = vec4<f32>();
    var c21 = vec4<f32>();
    var c30 = vec4<f32>();
    var c31 = vec4<f32>();
    var c40 = vec4<f32>();
    var c41 = vec4<f32>();
    var c50 = vec4<f32>();
    var c51 = vec4<f32>();
    var c60 = vec4<f32>();
    var c61 = vec4<f32>();
    var c70 = vec4<f32>();
    var c71 = vec4<f32>();
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        // Each invocation fills four vec4 of each tile: 4 consecutive rows of A (columns of B) at one k, whole,
        // so no vec4 component is ever indexed dynamically (a scalarised read-modify-write on a CPU).
        for (var t = 0u; t < 4u; t++) {
            let idx = lid + 64u * t;
            let kk = idx / 16u;
            let q = idx % 16u;
            a_tile[kk * ROW_VEC4 + q] = load_a(a_off, m0 + 4u * q, k0 + kk);
            b_tile[kk * ROW_VEC4 + q] = load_b(b_off, k0 + kk, n0 + 4u * q);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            let a0 = a_tile[kk * ROW_VEC4 + 2u * ty];
            let a1 = a_tile[kk * ROW_VEC4 + 2u * ty + 1u];
            let b0 = b_tile[kk * ROW_VEC4 + 2u * tx];
            let b1 = b_tile[kk * ROW_VEC4 + 2u * tx + 1u];
            c00 += a0.x * b0;
            c01 += a0.x * b1;
            c10 += a0.y * b0;
            c11 += a0.y * b1;
            c20 += a0.z * b0;
            c21 += a0.z * b1;
            c30 += a0.w * b0;
            c31 += a0.w * b1;
            c40 += a1.x * b0;
            c41 += a1.x * b1;
            c50 += a1.y * b0;
            c51 += a1.y * b1;
            c60 += a1.z * b0;
            c61 += a1.z * b1;
            c70 += a1.w * b0;
            c71 += a1.w * b1;
        }
        workgroupBarrier(); // the next K step overwrites the tiles
    }
    let row = m0 + 8u * ty;
    let col = n0 + 8u * tx;
    store_c(c_off, row, col, c00);
    store_c(c_off, row, col + 4u, c01);
    store_c(c_off, row + 1u, col, c10);
    store_c(c_off, row + 1u, col + 4u, c11);
    store_c(c_off, row + 2u, col, c20);
    store_c(c_off, row + 2u, col + 4u, c21);
    store_c(c_off, row + 3u, col, c30);
    store_c(c_off, row + 3u, col + 4u, c31);
    store_c(c_off, row + 4u, col, c40);
    store_c(c_off, row + 4u, col + 4u, c41);
    store_c(c_off, row + 5u, col, c50);
    store_c(c_off, row + 5u, col + 4u, c51);
    store_c(c_off, row + 6u, col, c60);
    store_c(c_off, row + 6u, col + 4u, c61);
    store_c(c_off, row + 7u, col, c70);
    store_c(c_off, row + 7u, col + 4u, c71);
}

const ROW_WG: u32 = 64u;
var<workgroup> red: array<f32, 64>;
var<workgroup> red8: array<f32, 8>;

// Reduces each row's values in red with max (use_max) or +: eight 3-level trees of 8 values (one per row where
// rows have 8 invocations), then, where one row has all 64, a 3-level tree of their results (the same 6 levels as
// a full tree, but with 2 barriers instead of 7: barriers are what a CPU implementation pays for). Every
// invocation returns its row's result. Call from uniform control flow after writing red[lid]; a later call may
// write red[lid] straight away (every read of red happened before this call's second barrier, every read of red8
// happens before the next call's first).
fn reduce_row(lid: u32, use_max: bool) -> f32 {
    workgroupBarrier();
    if (lid < 8u) {
        let b = 8u * lid;
        if (use_max) {
            red8[lid] = max(max(max(red[b], red[b + 1u]), max(red[b + 2u], red[b + 3u])),
                            max(max(red[b + 4u], red[b + 5u]), max(red[b + 6u], red[b + 7u])));
        } else {
            red8[lid] = ((red[b] + red[b + 1u]) + (red[b + 2u] + red[b + 3u]))
                + ((red[b + 4u] + red[b + 5u]) + (red[b + 6u] + red[b + 7u]));
        }
    }
    workgroupBarrier();
    if (p.row_lanes == 8u) {
        return red8[lid / 8u];
    }
    if (use_max) {
        return max(max(max(red8[0], red8[1]), max(red8[2], red8[3])),
                   max(max(red8[4], red8[5]), max(red8[6], red8[7])));
    }
    return ((red8[0] + red8[1]) + (red8[2] + red8[3])) + ((red8[4] + red8[5]) + (red8[6] + red8[7]));
}

// The score row of invocation lid in a row kernel's workgroup (p.rows or more past the last row), and its lane.
fn row_of(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> vec2<u32> {
    let rows_per_wg = ROW_WG / p.row_lanes;
    return vec2<u32>((wg.y * nwg.x + wg.x) * rows_per_wg + lid / p.row_lanes, lid % p.row_lanes);
}

@compute @workgroup_size(64)
fn attention_softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let rl = row_of(wg, nwg, lid);
    let row = rl.x; // (n·heads + h)·L + i
    let lane = rl.y;
    // No early return past the last row (the barriers must stay in uniform control flow): such rows read nothing.
    let live = row < p.rows;
    let len = select(0u, p.len, live);
    let base = row * p.len;

    // −f32::MAX, the lowest finite f32, as an exact hex literal (decimal −3.40282347e38 is past f32's range).
    var m = -0x1.fffffep+127f;
    for (var j = lane; j < len; j += p.row_lanes) {
        m = max(m, scores[base + j]);
    }
    red[lid] = m;
    m = reduce_row(lid, true);

    var z = 0.0;
    for (var j = lane; j < len; j += p.row_lanes) {
        z += exp(scores[base + j] - m);
    }
    red[lid] = z;
    z = reduce_row(lid, false);
    // z ≥ 1 (the max contributes exp(0)), so log is well conditioned and lse ≥ m.
    let l = m + log(z);
    if (live && lane == 0u) {
        lse_out[row] = l;
    }
    // P = exp(S − lse) exactly as the backward recomputes it, so both passes use the same P.
    for (var j = lane; j < len; j += p.row_lanes) {
        scores[base + j] = exp(scores[base + j] - l);
    }
}

@compute @workgroup_size(64)
fn attention_softmax_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                              @builtin(local_invocation_index) lid: u32) {
    let rl = row_of(wg, nwg, lid);
    let row = rl.x; // (n·heads + h)·L + i
    let lane = rl.y;
    let live = row < p.rows; // no early return: the barriers stay in uniform control flow
    let i = row % p.len;
    let bat = row / p.len;
    let bn = bat / p.heads;
    let bh = bat % p.heads;

    // D_i = Σ_e d_out[e, i]·out[e, i] (= Σ_j P_ij·d_P_ij), over the head's d channels at position i.
    let o = (bn * p.channels + bh * p.head_dim) * p.len + i;
    let dim = select(0u, p.head_dim, live);
    var dd = 0.0;
    for (var e = lane; e < dim; e += p.row_lanes) {
        dd += d_out[o + e * p.len] * out[o + e * p.len];
    }
    red[lid] = dd;
    let d_i = reduce_row(lid, false);

    let base = row * p.len;
    let len = select(0u, p.len, live);
    var l = 0.0;
    if (live) {
        l = lse[row];
    }
    for (var j = lane; j < len; j += p.row_lanes) {
        let pj = exp(scores[base + j] - l);
        scores[base + j] = pj;
        d_scores[base + j] = pj * (d_scores[base + j] - d_i);
    }
}
