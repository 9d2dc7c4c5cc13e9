// matmul_common.wgsl — what matmul.wgsl and matmul_subgroup.wgsl share: Params, the pipeline constants, the
// bindings and the register-blocked kernels' blocks of C (start, stores, lane layout). Not a module of its own
// (no entry points): src/gpu/shaders.rs prepends it to each of the two files, so read the header of matmul.wgsl
// first.

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
// matmul_subgroup.wgsl's matmul_nt only, set where N ≤ 64 (Winograd's weight-gradient products: N = the input
// channels): the lanes skip their column groups 2 and 3, which lie past column 64 and would only be computed to
// be discarded (store_block drops groups past N). The grid is then one workgroup wide.
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
