// matmul.wgsl — batched matrix product with optional transposes, forward and backward of `linear`, f32; portable.
//   C[b] = op(A[b])·op(B[b])  (+ C[b] if ACCUMULATE)  (+ bias[n] over the rows if HAS_BIAS, or bias[m] over the
//   columns with BIAS_PER_ROW); op(X) = X or Xᵀ. A batch stride of 0 shares one matrix across the batch;
//   SUM_BATCH (register-blocked matmul_nt) sums the batch's products into one C. Row-major: A [batch, M, K]
//   (Aᵀ: [batch, K, M]), B [batch, K, N] (Bᵀ: [batch, N, K]), C [batch, M, N], bias [N] (or [M]).
//   linear: y = x·wᵀ + b = matmul_nt(x [N, in], w [out, in]) + bias;  d_x = d_y·w = matmul_nn(d_y, w);
//   d_w = d_yᵀ·x = matmul_tn(d_y, x);  d_b[j] = Σ_n d_y[n, j] = bias_grad. Nothing is saved for backward.
// Entry points and dispatch:
//   matmul_nn / _nt / _tn / _tt: register-blocked, no workgroup memory, for CPU adapters. Bodies in
//     matmul_common.wgsl; here each lane loads all 8 A blocks itself. Workgroup (8, 1, 1), grid (⌈N/128⌉,
//     ⌈M/32⌉, batch), an invocation 32 rows × 16 columns of C. Needs K and N, and M where A is [K, M], to be
//     multiples of 4 (vec4 bindings 1-4); ragged edges are clamped on load and skipped on store.
//   matmul_tiled: 64×64 tiles of C staged through workgroup memory in double-buffered k slices of 8, for GPUs and
//     any shape (transposes read through strides, scalar bindings 5-8). Workgroup (16, 16), an invocation 4×4 of
//     C; grid (⌈N/64⌉, ⌈M/64⌉, batch).
//   bias_grad: d_y [M, N] bound as `a`, d_b [N] as `c`. Workgroup (64, 4): 64 columns × 4 row stripes, summed in
//     workgroup memory; ⌈N/64⌉ workgroups on a 2-D grid (grid_1d).
// Params, pipeline constants, bindings: matmul_common.wgsl (prepended). Wrapper: src/kernels/matmul.rs (the
// entry point; the variant: src/kernels/select.rs). Reference: src/reference/matmul.rs.

// ---------------------------------------------------------------------------------------------------------------
// Register-blocked products: the A loaders that matmul_common.wgsl's bodies call, and the entry points.

fn load_a(base: u32, rows: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(a4[base + rows.x], a4[base + rows.y], a4[base + rows.z], a4[base + rows.w]);
}

// A stored [M, K]: the offsets of the rows of each row group (clamped to M − 1).
struct ARows {
    r0: vec4<u32>, r1: vec4<u32>, r2: vec4<u32>, r3: vec4<u32>,
    r4: vec4<u32>, r5: vec4<u32>, r6: vec4<u32>, r7: vec4<u32>,
}

fn a_rows(row0: u32, kq: u32, sid: u32) -> ARows {
    return ARows(row_offsets(row0, p.m - 1u, kq), row_offsets(row0 + 4u, p.m - 1u, kq),
                 row_offsets(row0 + 8u, p.m - 1u, kq), row_offsets(row0 + 12u, p.m - 1u, kq),
                 row_offsets(row0 + 16u, p.m - 1u, kq), row_offsets(row0 + 20u, p.m - 1u, kq),
                 row_offsets(row0 + 24u, p.m - 1u, kq), row_offsets(row0 + 28u, p.m - 1u, kq));
}

// k step `ka` (a vec4 index along k).
fn load_a_rows(r: ARows, ka: u32) -> ABlocks {
    return ABlocks(load_a(ka, r.r0), load_a(ka, r.r1), load_a(ka, r.r2), load_a(ka, r.r3),
                   load_a(ka, r.r4), load_a(ka, r.r5), load_a(ka, r.r6), load_a(ka, r.r7));
}

// A stored [K, M]: the column (in vec4s) of that storage holding each row group (clamped to the last), and
// mq = M/4, the vec4s per stored row.
struct ACols {
    lo: vec4<u32>,
    hi: vec4<u32>,
    mq: u32,
}

fn a_cols(row0: u32, sid: u32) -> ACols {
    let mq = p.m / 4u;
    return ACols(min(vec4<u32>(row0 / 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(mq - 1u)),
                 min(vec4<u32>(row0 / 4u) + vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(mq - 1u)), mq);
}

// k step kk: stored rows 4kk..4kk+3, each group's vec4 of them transposed into Y.
fn load_a_cols(c: ACols, a_base: u32, kk: u32) -> ABlocks {
    let arow = a_base + (vec4<u32>(4u * kk) + vec4<u32>(0u, 1u, 2u, 3u)) * c.mq;
    return ABlocks(transpose(load_a(c.lo.x, arow)), transpose(load_a(c.lo.y, arow)),
                   transpose(load_a(c.lo.z, arow)), transpose(load_a(c.lo.w, arow)),
                   transpose(load_a(c.hi.x, arow)), transpose(load_a(c.hi.y, arow)),
                   transpose(load_a(c.hi.z, arow)), transpose(load_a(c.hi.w, arow)));
}

// The loaders ignore the subgroup lane (0).
@compute @workgroup_size(8, 1, 1)
fn matmul_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    matmul_nn_body(wg, lid.x, 0u);
}

@compute @workgroup_size(8, 1, 1)
fn matmul_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    matmul_nt_body(wg, lid.x, 0u);
}

@compute @workgroup_size(8, 1, 1)
fn matmul_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    matmul_tn_body(wg, lid.x, 0u);
}

@compute @workgroup_size(8, 1, 1)
fn matmul_tt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    matmul_tt_body(wg, lid.x, 0u);
}

// ---------------------------------------------------------------------------------------------------------------
// Workgroup-memory tiling (real GPUs; the fallback for any shape).

const TILE: u32 = 64u;
const TILE_K: u32 = 8u;
// vec4s per staged row: 16 hold the tile's 64 values, one more staggers consecutive rows across memory banks, so
// the 8 k-rows that a warp writes when an operand is k-contiguous (8 consecutive k, 4 rows) land in distinct banks.
const PITCH: u32 = 17u;
// vec4s per staged buffer (TILE_K rows); each tile holds two, the slice being multiplied and the next.
const BUFFER: u32 = 136u;

// a_tile[buf·BUFFER + kl·PITCH + ml/4][ml % 4] = op(A)[m0 + ml, k0 + kl]; b_tile likewise = op(B)[k0 + kl, n0 + nl].
// vec4 elements, not f32: wgpu zero-initialises workgroup memory, which its GL backend spells as one constructor
// argument per element, and 1,088 f32 arguments took llvmpipe over 10 s to compile.
var<workgroup> a_tile: array<vec4<f32>, 272>;
var<workgroup> b_tile: array<vec4<f32>, 272>;

// Index in A's storage of op(A)[i, l] (A is [M, K], or [K, M] when transposed).
fn a_at(base: u32, i: u32, l: u32) -> u32 {
    return base + select(i * p.k + l, l * p.m + i, p.trans_a == 1u);
}

// Index in B's storage of op(B)[l, j] (B is [K, N], or [N, K] when transposed).
fn b_at(base: u32, l: u32, j: u32) -> u32 {
    return base + select(l * p.n + j, j * p.k + l, p.trans_b == 1u);
}

// Where staged value e (0, 1) of invocation tid goes: (row or column within the tile, k within the slice),
// consecutive invocations along the operand's contiguous dimension (coalesced loads): k-fast (8 consecutive k, then
// the next row) or mn-fast (64 consecutive rows).
fn staged(k_fast: bool, tid: u32, e: u32) -> vec2<u32> {
    let idx = tid + 256u * e;
    return select(vec2(idx % TILE, idx / TILE), vec2(idx / TILE_K, idx % TILE_K), k_fast);
}

// The 2 values of A and 2 of B this invocation stages for the slice at k0; zero past the edges, so they add nothing.
struct Slice {
    a: vec2<f32>,
    b: vec2<f32>,
}

fn load_slice(a_base: u32, b_base: u32, m0: u32, n0: u32, k0: u32, tid: u32) -> Slice {
    var s: Slice;
    for (var e = 0u; e < 2u; e++) {
        let ai = staged(p.trans_a == 0u, tid, e);
        if (m0 + ai.x < p.m && k0 + ai.y < p.k) { s.a[e] = a[a_at(a_base, m0 + ai.x, k0 + ai.y)]; }
        let bi = staged(p.trans_b == 1u, tid, e);
        if (n0 + bi.x < p.n && k0 + bi.y < p.k) { s.b[e] = b[b_at(b_base, k0 + bi.y, n0 + bi.x)]; }
    }
    return s;
}

fn stage_slice(buf: u32, tid: u32, s: Slice) {
    for (var e = 0u; e < 2u; e++) {
        let ai = staged(p.trans_a == 0u, tid, e);
        a_tile[buf * BUFFER + ai.y * PITCH + ai.x / 4u][ai.x % 4u] = s.a[e];
        let bi = staged(p.trans_b == 1u, tid, e);
        b_tile[buf * BUFFER + bi.y * PITCH + bi.x / 4u][bi.x % 4u] = s.b[e];
    }
}

// K is walked in slices of 8, double-buffered: the next slice's global loads are issued before the current slice's
// FMAs and staged into the other buffer after them, one barrier per slice (the next slice reads the buffer just
// written; the one after overwrites the buffer just read, which the barrier has every invocation done with).
@compute @workgroup_size(16, 16, 1)
fn matmul_tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(local_invocation_index) tid: u32) {
    let m0 = wg.y * TILE;
    let n0 = wg.x * TILE;
    let a_base = wg.z * p.a_batch_stride;
    let b_base = wg.z * p.b_batch_stride;
    // acc{i}[j] = C[m0 + 4ty + i, n0 + 4tx + j]: one vec4 of each tile per k.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let slices = (p.k + TILE_K - 1u) / TILE_K;
    stage_slice(0u, tid, load_slice(a_base, b_base, m0, n0, 0u, tid));
    workgroupBarrier();
    for (var s = 0u; s < slices; s++) {
        let cur = s & 1u;
        let more = s + 1u < slices;
        var next: Slice;
        if (more) { next = load_slice(a_base, b_base, m0, n0, (s + 1u) * TILE_K, tid); }
        for (var kl = 0u; kl < TILE_K; kl++) {
            let av = a_tile[cur * BUFFER + kl * PITCH + lid.y];
            let bv = b_tile[cur * BUFFER + kl * PITCH + lid.x];
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        if (more) { stage_slice(1u - cur, tid, next); }
        workgroupBarrier();
    }
    let c_base = wg.z * p.c_batch_stride;
    let row = m0 + 4u * lid.y;
    let col = n0 + 4u * lid.x;
    store_tiled_row(c_base, row, col, acc0);
    store_tiled_row(c_base, row + 1u, col, acc1);
    store_tiled_row(c_base, row + 2u, col, acc2);
    store_tiled_row(c_base, row + 3u, col, acc3);
}

// Writes C[row, col + j] = v[j] (+ old C, + bias) for the columns inside C.
fn store_tiled_row(c_base: u32, row: u32, col: u32, v: vec4<f32>) {
    if (row >= p.m) { return; }
    for (var j = 0u; j < 4u; j++) {
        let n = col + j;
        if (n < p.n) {
            let idx = c_base + row * p.n + n;
            var r = v[j];
            if (ACCUMULATE) { r += c[idx]; }
            if (HAS_BIAS) {
                if (BIAS_PER_ROW) { r += bias[row]; } else { r += bias[n]; }
            }
            c[idx] = r;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bias gradient: d_b[j] = Σ_r d_y[r, j], with d_y [M, N] bound as `a` and d_b [N] as `c`.

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(64, 4, 1)
fn bias_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) lid: vec3<u32>) {
    let col = (wg.y * nwg.x + wg.x) * 64u + lid.x;
    // Stripe lid.y sums rows lid.y, lid.y + 4, …: consecutive invocations read consecutive columns of a row.
    var s = 0.0;
    if (col < p.n) {
        for (var r = lid.y; r < p.m; r += 4u) {
            s += a[r * p.n + col];
        }
    }
    partial[lid.y * 64u + lid.x] = s;
    workgroupBarrier();
    if (lid.y == 0u && col < p.n) {
        c[col] = (partial[lid.x] + partial[64u + lid.x]) + (partial[128u + lid.x] + partial[192u + lid.x]);
    }
}
