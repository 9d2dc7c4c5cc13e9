// matmul_common.wgsl — the prelude of matmul.wgsl and matmul_subgroup.wgsl (src/gpu/shaders.rs prepends it to
// each; not a module of its own): Params, the pipeline constants, the bindings, the blocks of C, and the bodies of
// the register-blocked products matmul_nn / _nt / _tn / _tt, which each file's @compute wrappers call.
//   Math, layouts and dispatch: matmul.wgsl's header. A body owns rows wg.y·32 .. +31 of C and the 16 columns of
//   lane_groups(wg.x, lid) of batch entry wg.z; per step of 4 along k it loads its 4 B blocks itself and the 8 A
//   blocks through loaders that the including file defines with these signatures:
//     a_rows(row0, kq, sid) -> ARows;  load_a_rows(ARows, ka) -> ABlocks           A stored [M, K] (nn, nt)
//     a_cols(row0, sid) -> ACols;      load_a_cols(ACols, a_base, kk) -> ABlocks   A stored [K, M] (tn, tt)
//   ARows and ACols are each loader's own (what it computes once per invocation); sid is the invocation's
//   subgroup lane, which matmul.wgsl's loaders (every lane loads all of A) ignore and matmul_subgroup.wgsl's
//   (each lane loads an eighth and broadcasts it) use.
// Wrapper: src/kernels/matmul.rs (the variant: src/kernels/select.rs).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batch: u32,
    // Elements between consecutive matrices of a batch.
    a_batch_stride: u32,
    b_batch_stride: u32,
    c_batch_stride: u32,
    // 1 where the operand is stored transposed (read only by matmul_tiled; the others are specialised).
    trans_a: u32,
    trans_b: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Pipeline constants set by the wrapper. Each combination is its own cached pipeline, so the common case compiles
// none of the code it does not use (on a CPU adapter that code is most of the compile time).
// C += product instead of C = product.
override ACCUMULATE: bool = false;
// Add bias[n] to every row of C.
override HAS_BIAS: bool = false;
// The bias is per row instead: bias[m] added to row m (a 1×1 convolution, C = W·X, with one bias per output
// channel).
override BIAS_PER_ROW: bool = false;
// matmul_nt only: C = Σ_b A[b]·B[b]ᵀ, the products of the whole batch summed into one C (grid z = 1): the weight
// gradient of a 1×1 convolution, Σ_n d_y[n]·x[n]ᵀ.
override SUM_BATCH: bool = false;
// matmul_nt only, set where N ≤ 64 (Winograd's weight-gradient products: N = the input channels): the lanes skip
// their column groups 2 and 3, which lie past column 64 and would only be computed to be discarded (store_block
// drops groups past N). The grid is then one workgroup wide. The wrapper sets it for matmul_subgroup.wgsl only.
override NARROW: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> bias4: array<vec4<f32>>;
// Scalar views for matmul_tiled and bias_grad (separate bindings: an entry point uses one view or the other).
@group(0) @binding(5) var<storage, read> a: array<f32>;
@group(0) @binding(6) var<storage, read> b: array<f32>;
@group(0) @binding(7) var<storage, read_write> c: array<f32>;
@group(0) @binding(8) var<storage, read> bias: array<f32>;

const LANES: u32 = 8u;
// Column groups (of 4 columns) per lane, spaced LANES apart.
const GROUP_OFFSETS: vec4<u32> = vec4<u32>(0u, 8u, 16u, 24u);
const ROWS: u32 = 32u;

// Offsets (in vec4s) of rows first..first+3 of a row-major matrix with `stride` vec4s per row, each row clamped to
// `last` so that ragged edges load valid (discarded) data instead of branching inside the k loop.
fn row_offsets(first: u32, last: u32, stride: u32) -> vec4<u32> {
    return min(vec4<u32>(first) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last)) * stride;
}

fn load_b(base: u32, rows: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(b4[base + rows.x], b4[base + rows.y], b4[base + rows.z], b4[base + rows.w]);
}

// The starting value of a 4×4 block of C (rows first_row.., column group cq): the old C when accumulating, plus the
// bias. Starting the accumulators from it, rather than adding at the store, keeps the store a plain write.
// Rows past M are clamped (their results are never stored); `cq` must already be clamped.
fn init_block(c_base: u32, first_row: u32, cq: u32) -> mat4x4<f32> {
    var block = mat4x4<f32>();
    if (ACCUMULATE) {
        let rows = c_base + cq + row_offsets(first_row, p.m - 1u, p.n / 4u);
        block = mat4x4<f32>(c4[rows.x], c4[rows.y], c4[rows.z], c4[rows.w]);
    }
    if (HAS_BIAS) {
        if (BIAS_PER_ROW) {
            let rows = min(vec4<u32>(first_row) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
            block += mat4x4<f32>(vec4(bias[rows.x]), vec4(bias[rows.y]), vec4(bias[rows.z]), vec4(bias[rows.w]));
        } else {
            let bv = bias4[cq];
            block += mat4x4<f32>(bv, bv, bv, bv);
        }
    }
    return block;
}

fn store_row(c_base: u32, row: u32, cq: u32, v: vec4<f32>) {
    if (row < p.m) {
        c4[c_base + row * (p.n / 4u) + cq] = v;
    }
}

// Writes a 4×4 block (column i = row first_row + i, the 4 columns of group cq) to C. `c_base` and `cq` are in vec4s.
fn store_block(c_base: u32, first_row: u32, cq: u32, block: mat4x4<f32>) {
    if (cq < p.n / 4u) {
        store_row(c_base, first_row, cq, block[0]);
        store_row(c_base, first_row + 1u, cq, block[1]);
        store_row(c_base, first_row + 2u, cq, block[2]);
        store_row(c_base, first_row + 3u, cq, block[3]);
    }
}

fn store_row_group(c_base: u32, first_row: u32, cq: vec4<u32>,
                   b0: mat4x4<f32>, b1: mat4x4<f32>, b2: mat4x4<f32>, b3: mat4x4<f32>) {
    store_block(c_base, first_row, cq.x, b0);
    store_block(c_base, first_row, cq.y, b1);
    store_block(c_base, first_row, cq.z, b2);
    store_block(c_base, first_row, cq.w, b3);
}

// The column groups (in vec4s) owned by this lane: LANES apart, so neighbouring lanes read neighbouring vec4s.
fn lane_groups(wg_x: u32, lane: u32) -> vec4<u32> {
    return vec4<u32>(wg_x * LANES * 4u + lane) + GROUP_OFFSETS;
}

// The number of k steps (of 4) of a product: K/4, or K/4 per batch entry times the batch with SUM_BATCH.
fn k_steps(kq: u32) -> u32 {
    return select(kq, kq * p.batch, SUM_BATCH);
}

// vec4 index of k step kk of an operand stored with kq vec4s per row, its batch entries `stride` vec4s apart and
// this workgroup's entry at `base`; with SUM_BATCH the steps run on from one batch entry into the next.
fn k_step(base: u32, kk: u32, kq: u32, stride: u32) -> u32 {
    if (SUM_BATCH) {
        return kk + (kk / kq) * (stride - kq);
    }
    return base + kk;
}

// ---------------------------------------------------------------------------------------------------------------
// The register-blocked products. A 4×4 block is a mat4x4 whose column i is row i of the C block (4 consecutive
// columns), so with X[t] = row t of the B block and Y[i] = row i of the A block along k, C_block += X·Y is exactly
// C[i][n] += Σ_t A[i][t]·B[t][n]. In every body, x{j} is the B block of column group j as X (column t = row
// 4kk + t of op(B)) and y.g{g} the A block of row group g as Y (column i = row row0 + 4g + i of op(A)); operands
// stored transposed are loaded along their contiguous dimension and enter through transpose(), which costs
// nothing. Each k step loads all A blocks first, then each B block just before its 8 updates (the fewest live
// registers). The 32 accumulators are written out by name: a local array indexed in a loop would stay in memory
// on a CPU adapter. Bodies take lid = local_invocation_id.x (the columns it owns) and sid (its subgroup lane, for
// the A loaders).

// The 8 A blocks of one k step.
struct ABlocks {
    g0: mat4x4<f32>, g1: mat4x4<f32>, g2: mat4x4<f32>, g3: mat4x4<f32>,
    g4: mat4x4<f32>, g5: mat4x4<f32>, g6: mat4x4<f32>, g7: mat4x4<f32>,
}

// C = A·B: A [M, K] read along k, B [K, N] read along n.
fn matmul_nn_body(wg: vec3<u32>, lid: u32, sid: u32) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    let ar = a_rows(row0, kq, sid);
    let c_base = wg.z * (p.c_batch_stride / 4u);
    var acc00 = init_block(c_base, row0, bcol.x); var acc01 = init_block(c_base, row0, bcol.y);
    var acc02 = init_block(c_base, row0, bcol.z); var acc03 = init_block(c_base, row0, bcol.w);
    var acc10 = init_block(c_base, row0 + 4u, bcol.x); var acc11 = init_block(c_base, row0 + 4u, bcol.y);
    var acc12 = init_block(c_base, row0 + 4u, bcol.z); var acc13 = init_block(c_base, row0 + 4u, bcol.w);
    var acc20 = init_block(c_base, row0 + 8u, bcol.x); var acc21 = init_block(c_base, row0 + 8u, bcol.y);
    var acc22 = init_block(c_base, row0 + 8u, bcol.z); var acc23 = init_block(c_base, row0 + 8u, bcol.w);
    var acc30 = init_block(c_base, row0 + 12u, bcol.x); var acc31 = init_block(c_base, row0 + 12u, bcol.y);
    var acc32 = init_block(c_base, row0 + 12u, bcol.z); var acc33 = init_block(c_base, row0 + 12u, bcol.w);
    var acc40 = init_block(c_base, row0 + 16u, bcol.x); var acc41 = init_block(c_base, row0 + 16u, bcol.y);
    var acc42 = init_block(c_base, row0 + 16u, bcol.z); var acc43 = init_block(c_base, row0 + 16u, bcol.w);
    var acc50 = init_block(c_base, row0 + 20u, bcol.x); var acc51 = init_block(c_base, row0 + 20u, bcol.y);
    var acc52 = init_block(c_base, row0 + 20u, bcol.z); var acc53 = init_block(c_base, row0 + 20u, bcol.w);
    var acc60 = init_block(c_base, row0 + 24u, bcol.x); var acc61 = init_block(c_base, row0 + 24u, bcol.y);
    var acc62 = init_block(c_base, row0 + 24u, bcol.z); var acc63 = init_block(c_base, row0 + 24u, bcol.w);
    var acc70 = init_block(c_base, row0 + 28u, bcol.x); var acc71 = init_block(c_base, row0 + 28u, bcol.y);
    var acc72 = init_block(c_base, row0 + 28u, bcol.z); var acc73 = init_block(c_base, row0 + 28u, bcol.w);
    for (var kk = 0u; kk < kq; kk++) {
        // Rows 4kk..4kk+3 of B, stored [K, N].
        let brow = b_base + (vec4<u32>(4u * kk) + vec4<u32>(0u, 1u, 2u, 3u)) * nq;
        let y = load_a_rows(ar, a_base + kk);
        let x0 = load_b(bcol.x, brow);
        acc00 += x0 * y.g0; acc10 += x0 * y.g1; acc20 += x0 * y.g2; acc30 += x0 * y.g3;
        acc40 += x0 * y.g4; acc50 += x0 * y.g5; acc60 += x0 * y.g6; acc70 += x0 * y.g7;
        let x1 = load_b(bcol.y, brow);
        acc01 += x1 * y.g0; acc11 += x1 * y.g1; acc21 += x1 * y.g2; acc31 += x1 * y.g3;
        acc41 += x1 * y.g4; acc51 += x1 * y.g5; acc61 += x1 * y.g6; acc71 += x1 * y.g7;
        let x2 = load_b(bcol.z, brow);
        acc02 += x2 * y.g0; acc12 += x2 * y.g1; acc22 += x2 * y.g2; acc32 += x2 * y.g3;
        acc42 += x2 * y.g4; acc52 += x2 * y.g5; acc62 += x2 * y.g6; acc72 += x2 * y.g7;
        let x3 = load_b(bcol.w, brow);
        acc03 += x3 * y.g0; acc13 += x3 * y.g1; acc23 += x3 * y.g2; acc33 += x3 * y.g3;
        acc43 += x3 * y.g4; acc53 += x3 * y.g5; acc63 += x3 * y.g6; acc73 += x3 * y.g7;
    }
    store_row_group(c_base, row0, cq, acc00, acc01, acc02, acc03);
    store_row_group(c_base, row0 + 4u, cq, acc10, acc11, acc12, acc13);
    store_row_group(c_base, row0 + 8u, cq, acc20, acc21, acc22, acc23);
    store_row_group(c_base, row0 + 12u, cq, acc30, acc31, acc32, acc33);
    store_row_group(c_base, row0 + 16u, cq, acc40, acc41, acc42, acc43);
    store_row_group(c_base, row0 + 20u, cq, acc50, acc51, acc52, acc53);
    store_row_group(c_base, row0 + 24u, cq, acc60, acc61, acc62, acc63);
    store_row_group(c_base, row0 + 28u, cq, acc70, acc71, acc72, acc73);
}

// C = A·Bᵀ: A [M, K] and B [N, K] both read along k (linear forward).
fn matmul_nt_body(wg: vec3<u32>, lid: u32, sid: u32) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    let ar = a_rows(row0, kq, sid);
    // Offsets of the rows of Bᵀ's storage (= columns of C) in each column group.
    let n0 = row_offsets(4u * bcol.x, p.n - 1u, kq);
    let n1 = row_offsets(4u * bcol.y, p.n - 1u, kq);
    let n2 = row_offsets(4u * bcol.z, p.n - 1u, kq);
    let n3 = row_offsets(4u * bcol.w, p.n - 1u, kq);
    let c_base = wg.z * (p.c_batch_stride / 4u);
    var acc00 = init_block(c_base, row0, bcol.x); var acc01 = init_block(c_base, row0, bcol.y);
    var acc02 = init_block(c_base, row0, bcol.z); var acc03 = init_block(c_base, row0, bcol.w);
    var acc10 = init_block(c_base, row0 + 4u, bcol.x); var acc11 = init_block(c_base, row0 + 4u, bcol.y);
    var acc12 = init_block(c_base, row0 + 4u, bcol.z); var acc13 = init_block(c_base, row0 + 4u, bcol.w);
    var acc20 = init_block(c_base, row0 + 8u, bcol.x); var acc21 = init_block(c_base, row0 + 8u, bcol.y);
    var acc22 = init_block(c_base, row0 + 8u, bcol.z); var acc23 = init_block(c_base, row0 + 8u, bcol.w);
    var acc30 = init_block(c_base, row0 + 12u, bcol.x); var acc31 = init_block(c_base, row0 + 12u, bcol.y);
    var acc32 = init_block(c_base, row0 + 12u, bcol.z); var acc33 = init_block(c_base, row0 + 12u, bcol.w);
    var acc40 = init_block(c_base, row0 + 16u, bcol.x); var acc41 = init_block(c_base, row0 + 16u, bcol.y);
    var acc42 = init_block(c_base, row0 + 16u, bcol.z); var acc43 = init_block(c_base, row0 + 16u, bcol.w);
    var acc50 = init_block(c_base, row0 + 20u, bcol.x); var acc51 = init_block(c_base, row0 + 20u, bcol.y);
    var acc52 = init_block(c_base, row0 + 20u, bcol.z); var acc53 = init_block(c_base, row0 + 20u, bcol.w);
    var acc60 = init_block(c_base, row0 + 24u, bcol.x); var acc61 = init_block(c_base, row0 + 24u, bcol.y);
    var acc62 = init_block(c_base, row0 + 24u, bcol.z); var acc63 = init_block(c_base, row0 + 24u, bcol.w);
    var acc70 = init_block(c_base, row0 + 28u, bcol.x); var acc71 = init_block(c_base, row0 + 28u, bcol.y);
    var acc72 = init_block(c_base, row0 + 28u, bcol.z); var acc73 = init_block(c_base, row0 + 28u, bcol.w);
    for (var kk = 0u; kk < k_steps(kq); kk++) {
        let ka = k_step(a_base, kk, kq, p.a_batch_stride / 4u);
        let kb = k_step(b_base, kk, kq, p.b_batch_stride / 4u);
        let y = load_a_rows(ar, ka);
        let x0 = transpose(load_b(kb, n0));
        acc00 += x0 * y.g0; acc10 += x0 * y.g1; acc20 += x0 * y.g2; acc30 += x0 * y.g3;
        acc40 += x0 * y.g4; acc50 += x0 * y.g5; acc60 += x0 * y.g6; acc70 += x0 * y.g7;
        let x1 = transpose(load_b(kb, n1));
        acc01 += x1 * y.g0; acc11 += x1 * y.g1; acc21 += x1 * y.g2; acc31 += x1 * y.g3;
        acc41 += x1 * y.g4; acc51 += x1 * y.g5; acc61 += x1 * y.g6; acc71 += x1 * y.g7;
        if (!NARROW) {
            let x2 = transpose(load_b(kb, n2));
            acc02 += x2 * y.g0; acc12 += x2 * y.g1; acc22 += x2 * y.g2; acc32 += x2 * y.g3;
            acc42 += x2 * y.g4; acc52 += x2 * y.g5; acc62 += x2 * y.g6; acc72 += x2 * y.g7;
            let x3 = transpose(load_b(kb, n3));
            acc03 += x3 * y.g0; acc13 += x3 * y.g1; acc23 += x3 * y.g2; acc33 += x3 * y.g3;
            acc43 += x3 * y.g4; acc53 += x3 * y.g5; acc63 += x3 * y.g6; acc73 += x3 * y.g7;
        }
    }
    store_row_group(c_base, row0, cq, acc00, acc01, acc02, acc03);
    store_row_group(c_base, row0 + 4u, cq, acc10, acc11, acc12, acc13);
    store_row_group(c_base, row0 + 8u, cq, acc20, acc21, acc22, acc23);
    store_row_group(c_base, row0 + 12u, cq, acc30, acc31, acc32, acc33);
    store_row_group(c_base, row0 + 16u, cq, acc40, acc41, acc42, acc43);
    store_row_group(c_base, row0 + 20u, cq, acc50, acc51, acc52, acc53);
    store_row_group(c_base, row0 + 24u, cq, acc60, acc61, acc62, acc63);
    store_row_group(c_base, row0 + 28u, cq, acc70, acc71, acc72, acc73);
}

// C = Aᵀ·B: A [K, M] read along m, B [K, N] read along n (linear weight gradient).
fn matmul_tn_body(wg: vec3<u32>, lid: u32, sid: u32) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    let ac = a_cols(row0, sid);
    let c_base = wg.z * (p.c_batch_stride / 4u);
    var acc00 = init_block(c_base, row0, bcol.x); var acc01 = init_block(c_base, row0, bcol.y);
    var acc02 = init_block(c_base, row0, bcol.z); var acc03 = init_block(c_base, row0, bcol.w);
    var acc10 = init_block(c_base, row0 + 4u, bcol.x); var acc11 = init_block(c_base, row0 + 4u, bcol.y);
    var acc12 = init_block(c_base, row0 + 4u, bcol.z); var acc13 = init_block(c_base, row0 + 4u, bcol.w);
    var acc20 = init_block(c_base, row0 + 8u, bcol.x); var acc21 = init_block(c_base, row0 + 8u, bcol.y);
    var acc22 = init_block(c_base, row0 + 8u, bcol.z); var acc23 = init_block(c_base, row0 + 8u, bcol.w);
    var acc30 = init_block(c_base, row0 + 12u, bcol.x); var acc31 = init_block(c_base, row0 + 12u, bcol.y);
    var acc32 = init_block(c_base, row0 + 12u, bcol.z); var acc33 = init_block(c_base, row0 + 12u, bcol.w);
    var acc40 = init_block(c_base, row0 + 16u, bcol.x); var acc41 = init_block(c_base, row0 + 16u, bcol.y);
    var acc42 = init_block(c_base, row0 + 16u, bcol.z); var acc43 = init_block(c_base, row0 + 16u, bcol.w);
    var acc50 = init_block(c_base, row0 + 20u, bcol.x); var acc51 = init_block(c_base, row0 + 20u, bcol.y);
    var acc52 = init_block(c_base, row0 + 20u, bcol.z); var acc53 = init_block(c_base, row0 + 20u, bcol.w);
    var acc60 = init_block(c_base, row0 + 24u, bcol.x); var acc61 = init_block(c_base, row0 + 24u, bcol.y);
    var acc62 = init_block(c_base, row0 + 24u, bcol.z); var acc63 = init_block(c_base, row0 + 24u, bcol.w);
    var acc70 = init_block(c_base, row0 + 28u, bcol.x); var acc71 = init_block(c_base, row0 + 28u, bcol.y);
    var acc72 = init_block(c_base, row0 + 28u, bcol.z); var acc73 = init_block(c_base, row0 + 28u, bcol.w);
    for (var kk = 0u; kk < kq; kk++) {
        // Rows 4kk..4kk+3 of B, stored [K, N].
        let brow = b_base + (vec4<u32>(4u * kk) + vec4<u32>(0u, 1u, 2u, 3u)) * nq;
        let y = load_a_cols(ac, a_base, kk);
        let x0 = load_b(bcol.x, brow);
        acc00 += x0 * y.g0; acc10 += x0 * y.g1; acc20 += x0 * y.g2; acc30 += x0 * y.g3;
        acc40 += x0 * y.g4; acc50 += x0 * y.g5; acc60 += x0 * y.g6; acc70 += x0 * y.g7;
        let x1 = load_b(bcol.y, brow);
        acc01 += x1 * y.g0; acc11 += x1 * y.g1; acc21 += x1 * y.g2; acc31 += x1 * y.g3;
        acc41 += x1 * y.g4; acc51 += x1 * y.g5; acc61 += x1 * y.g6; acc71 += x1 * y.g7;
        let x2 = load_b(bcol.z, brow);
        acc02 += x2 * y.g0; acc12 += x2 * y.g1; acc22 += x2 * y.g2; acc32 += x2 * y.g3;
        acc42 += x2 * y.g4; acc52 += x2 * y.g5; acc62 += x2 * y.g6; acc72 += x2 * y.g7;
        let x3 = load_b(bcol.w, brow);
        acc03 += x3 * y.g0; acc13 += x3 * y.g1; acc23 += x3 * y.g2; acc33 += x3 * y.g3;
        acc43 += x3 * y.g4; acc53 += x3 * y.g5; acc63 += x3 * y.g6; acc73 += x3 * y.g7;
    }
    store_row_group(c_base, row0, cq, acc00, acc01, acc02, acc03);
    store_row_group(c_base, row0 + 4u, cq, acc10, acc11, acc12, acc13);
    store_row_group(c_base, row0 + 8u, cq, acc20, acc21, acc22, acc23);
    store_row_group(c_base, row0 + 12u, cq, acc30, acc31, acc32, acc33);
    store_row_group(c_base, row0 + 16u, cq, acc40, acc41, acc42, acc43);
    store_row_group(c_base, row0 + 20u, cq, acc50, acc51, acc52, acc53);
    store_row_group(c_base, row0 + 24u, cq, acc60, acc61, acc62, acc63);
    store_row_group(c_base, row0 + 28u, cq, acc70, acc71, acc72, acc73);
}

// C = Aᵀ·Bᵀ: A [K, M] read along m, B [N, K] read along k.
fn matmul_tt_body(wg: vec3<u32>, lid: u32, sid: u32) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    let ac = a_cols(row0, sid);
    // Offsets of the rows of Bᵀ's storage (= columns of C) in each column group.
    let n0 = row_offsets(4u * bcol.x, p.n - 1u, kq);
    let n1 = row_offsets(4u * bcol.y, p.n - 1u, kq);
    let n2 = row_offsets(4u * bcol.z, p.n - 1u, kq);
    let n3 = row_offsets(4u * bcol.w, p.n - 1u, kq);
    let c_base = wg.z * (p.c_batch_stride / 4u);
    var acc00 = init_block(c_base, row0, bcol.x); var acc01 = init_block(c_base, row0, bcol.y);
    var acc02 = init_block(c_base, row0, bcol.z); var acc03 = init_block(c_base, row0, bcol.w);
    var acc10 = init_block(c_base, row0 + 4u, bcol.x); var acc11 = init_block(c_base, row0 + 4u, bcol.y);
    var acc12 = init_block(c_base, row0 + 4u, bcol.z); var acc13 = init_block(c_base, row0 + 4u, bcol.w);
    var acc20 = init_block(c_base, row0 + 8u, bcol.x); var acc21 = init_block(c_base, row0 + 8u, bcol.y);
    var acc22 = init_block(c_base, row0 + 8u, bcol.z); var acc23 = init_block(c_base, row0 + 8u, bcol.w);
    var acc30 = init_block(c_base, row0 + 12u, bcol.x); var acc31 = init_block(c_base, row0 + 12u, bcol.y);
    var acc32 = init_block(c_base, row0 + 12u, bcol.z); var acc33 = init_block(c_base, row0 + 12u, bcol.w);
    var acc40 = init_block(c_base, row0 + 16u, bcol.x); var acc41 = init_block(c_base, row0 + 16u, bcol.y);
    var acc42 = init_block(c_base, row0 + 16u, bcol.z); var acc43 = init_block(c_base, row0 + 16u, bcol.w);
    var acc50 = init_block(c_base, row0 + 20u, bcol.x); var acc51 = init_block(c_base, row0 + 20u, bcol.y);
    var acc52 = init_block(c_base, row0 + 20u, bcol.z); var acc53 = init_block(c_base, row0 + 20u, bcol.w);
    var acc60 = init_block(c_base, row0 + 24u, bcol.x); var acc61 = init_block(c_base, row0 + 24u, bcol.y);
    var acc62 = init_block(c_base, row0 + 24u, bcol.z); var acc63 = init_block(c_base, row0 + 24u, bcol.w);
    var acc70 = init_block(c_base, row0 + 28u, bcol.x); var acc71 = init_block(c_base, row0 + 28u, bcol.y);
    var acc72 = init_block(c_base, row0 + 28u, bcol.z); var acc73 = init_block(c_base, row0 + 28u, bcol.w);
    for (var kk = 0u; kk < kq; kk++) {
        let y = load_a_cols(ac, a_base, kk);
        let x0 = transpose(load_b(b_base + kk, n0));
        acc00 += x0 * y.g0; acc10 += x0 * y.g1; acc20 += x0 * y.g2; acc30 += x0 * y.g3;
        acc40 += x0 * y.g4; acc50 += x0 * y.g5; acc60 += x0 * y.g6; acc70 += x0 * y.g7;
        let x1 = transpose(load_b(b_base + kk, n1));
        acc01 += x1 * y.g0; acc11 += x1 * y.g1; acc21 += x1 * y.g2; acc31 += x1 * y.g3;
        acc41 += x1 * y.g4; acc51 += x1 * y.g5; acc61 += x1 * y.g6; acc71 += x1 * y.g7;
        let x2 = transpose(load_b(b_base + kk, n2));
        acc02 += x2 * y.g0; acc12 += x2 * y.g1; acc22 += x2 * y.g2; acc32 += x2 * y.g3;
        acc42 += x2 * y.g4; acc52 += x2 * y.g5; acc62 += x2 * y.g6; acc72 += x2 * y.g7;
        let x3 = transpose(load_b(b_base + kk, n3));
        acc03 += x3 * y.g0; acc13 += x3 * y.g1; acc23 += x3 * y.g2; acc33 += x3 * y.g3;
        acc43 += x3 * y.g4; acc53 += x3 * y.g5; acc63 += x3 * y.g6; acc73 += x3 * y.g7;
    }
    store_row_group(c_base, row0, cq, acc00, acc01, acc02, acc03);
    store_row_group(c_base, row0 + 4u, cq, acc10, acc11, acc12, acc13);
    store_row_group(c_base, row0 + 8u, cq, acc20, acc21, acc22, acc23);
    store_row_group(c_base, row0 + 12u, cq, acc30, acc31, acc32, acc33);
    store_row_group(c_base, row0 + 16u, cq, acc40, acc41, acc42, acc43);
    store_row_group(c_base, row0 + 20u, cq, acc50, acc51, acc52, acc53);
    store_row_group(c_base, row0 + 24u, cq, acc60, acc61, acc62, acc63);
    store_row_group(c_base, row0 + 28u, cq, acc70, acc71, acc72, acc73);
}
