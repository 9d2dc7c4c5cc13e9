// matmul.wgsl — batched matrix product with optional transposes, forward and backward of `linear`, f32.
//   C[b] = op(A[b])·op(B[b])  (+ C[b] if ACCUMULATE)  (+ bias[n] broadcast over rows if HAS_BIAS; bias[m]
//   broadcast over columns if BIAS_PER_ROW too). A batch stride of 0 shares one matrix across the batch;
//   SUM_BATCH (matmul_nt, register-blocked) sums the batch's products into one C instead.
//   op(X) = X or Xᵀ. Storage is row-major: A is [batch, M, K] (Aᵀ: [batch, K, M]), B is [batch, K, N]
//   (Bᵀ: [batch, N, K]), C is [batch, M, N], bias is [N].
//   linear:   y = x·wᵀ + b        = matmul_nt(x [N, in], w [out, in]) with bias
//   backward: d_x = d_y·w         = matmul_nn(d_y [N, out], w [out, in])
//             d_w = d_yᵀ·x        = matmul_tn(d_y [N, out], x [N, in])
//             d_b[j] = Σ_n d_y[n, j]  = bias_grad
// Nothing is saved for backward: the backward products read the forward's inputs again.
// Wrapper: src/kernels/matmul.rs (it picks the entry point); reference: src/reference/matmul.rs.
// Params, the pipeline constants, the bindings and the helpers shared with matmul_subgroup.wgsl are in
// matmul_common.wgsl, which src/gpu/shaders.rs prepends to both.
//
// Two families of product kernels, both exact up to f32 rounding and held to the same reference:
//
// matmul_nn / _nt / _tn / _tt: register-blocked, no workgroup memory, for CPU adapters (lavapipe, llvmpipe).
//   Such an adapter runs 8 invocations as the lanes of one SIMD register, and every storage load whose address
//   varies per lane becomes a loop over the lanes with a bounds check per scalar: loads, not arithmetic, are the
//   cost. So each invocation loads vec4s along the contiguous dimension of both operands and reuses them as much as
//   registers allow: it owns a block of 32 rows × 16 columns of C (8 row groups × 4 column groups of 4×4), and per
//   step of 4 along k loads 8 + 4 mat4x4 (48 vec4) for 8·4·64 = 2048 multiply-adds. Workgroup memory does not help
//   there (its loads cost the same per-lane loop), and neither do more lanes: 8 invocations fill the SIMD width.
//   Dispatch: workgroup (8, 1, 1); grid (⌈N/128⌉, ⌈M/32⌉, batch). Lane l owns the column groups
//   (wg.x·32 + l + 8j), j = 0..3, so neighbouring lanes read neighbouring addresses.
//   Requires K and N, and M where A is stored [K, M], to be multiples of 4 (vec4 bindings, k in steps of 4); ragged
//   rows and columns at the edges are clamped on load and skipped on store.
//   A 4×4 block is a mat4x4 whose column i is row i of the C block (4 consecutive columns), so with
//   X[t] = row t of the B block and Y[i] = row i of the A block along k, C_block += X·Y is exactly
//   C[i][n] += Σ_t A[i][t]·B[t][n]; transposed operands are loaded along their own contiguous dimension and
//   enter through transpose(), which costs nothing. Each k step loads all A blocks first, then each B block just
//   before its 8 updates (fewest live registers; on lavapipe ~35 GFLOP/s at 1024³ against ~29 with B loaded
//   first). The old C and the bias, when asked for (pipeline constants), start the accumulators.
//   shaders/matmul_subgroup.wgsl holds the same four kernels with the A loads shared through subgroup
//   broadcasts (~60 GFLOP/s on lavapipe's Vulkan driver); this file is the portable version (GL has no subgroups).
//
// matmul_tiled: the classic shared-memory tiling for real GPUs, and the general fallback (any shape, any
//   transposes, read through strides). Workgroup (16, 16): a 64×64 tile of C, each invocation a 4×4 block
//   (rows 4ty.., columns 4tx..), k in slices of 16 staged in workgroup memory (2 × 4352 B).
//   Grid (⌈N/64⌉, ⌈M/64⌉, batch).
//
// bias_grad: d_y [M, N] bound as `a`, d_b [N] as `c`. Workgroup (64, 4): 64 columns × 4 row stripes, each
//   invocation sums every 4th row of its column, then the 4 partial sums are added in workgroup memory.
//   Grid: ⌈N/64⌉ workgroups as a 2-D grid (see grid_1d).

// ---------------------------------------------------------------------------------------------------------------
// Register-blocked kernels (CPU adapters). Their blocks of C (init_block, store_block, lane_groups) are in
// matmul_common.wgsl.

fn load_a(base: u32, rows: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(a4[base + rows.x], a4[base + rows.y], a4[base + rows.z], a4[base + rows.w]);
}

// In every entry point below, x{j} is the B block of column group j as X (column t = row 4kk + t of op(B), 4
// columns of C) and y{g} the A block of row group g as Y (column i = row 4g + i of op(A), 4 values along k), so
// acc{g}{j} += x{j}·y{g} adds Σ_t A[i][t]·B[t][n] (see the header). The 32 accumulators are written out by name:
// a local array indexed in a loop would stay in memory on a CPU adapter.

// C = A·B: A [M, K] read along k, B [K, N] read along n.
@compute @workgroup_size(8, 1, 1)
fn matmul_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid.x);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    // Offsets of the rows of A in each row group (clamped to M − 1).
    let r0 = row_offsets(row0, p.m - 1u, kq);
    let r1 = row_offsets(row0 + 4u, p.m - 1u, kq);
    let r2 = row_offsets(row0 + 8u, p.m - 1u, kq);
    let r3 = row_offsets(row0 + 12u, p.m - 1u, kq);
    let r4 = row_offsets(row0 + 16u, p.m - 1u, kq);
    let r5 = row_offsets(row0 + 20u, p.m - 1u, kq);
    let r6 = row_offsets(row0 + 24u, p.m - 1u, kq);
    let r7 = row_offsets(row0 + 28u, p.m - 1u, kq);
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
        // Rows 4kk..4kk+3 of the operands stored [K, ·].
        let kr = vec4<u32>(4u * kk) + vec4<u32>(0u, 1u, 2u, 3u);
        let brow = b_base + kr * nq;
        let y0 = load_a(a_base + kk, r0);
        let y1 = load_a(a_base + kk, r1);
        let y2 = load_a(a_base + kk, r2);
        let y3 = load_a(a_base + kk, r3);
        let y4 = load_a(a_base + kk, r4);
        let y5 = load_a(a_base + kk, r5);
        let y6 = load_a(a_base + kk, r6);
        let y7 = load_a(a_base + kk, r7);
        let x0 = load_b(bcol.x, brow);
        acc00 += x0 * y0; acc10 += x0 * y1; acc20 += x0 * y2; acc30 += x0 * y3;
        acc40 += x0 * y4; acc50 += x0 * y5; acc60 += x0 * y6; acc70 += x0 * y7;
        let x1 = load_b(bcol.y, brow);
        acc01 += x1 * y0; acc11 += x1 * y1; acc21 += x1 * y2; acc31 += x1 * y3;
        acc41 += x1 * y4; acc51 += x1 * y5; acc61 += x1 * y6; acc71 += x1 * y7;
        let x2 = load_b(bcol.z, brow);
        acc02 += x2 * y0; acc12 += x2 * y1; acc22 += x2 * y2; acc32 += x2 * y3;
        acc42 += x2 * y4; acc52 += x2 * y5; acc62 += x2 * y6; acc72 += x2 * y7;
        let x3 = load_b(bcol.w, brow);
        acc03 += x3 * y0; acc13 += x3 * y1; acc23 += x3 * y2; acc33 += x3 * y3;
        acc43 += x3 * y4; acc53 += x3 * y5; acc63 += x3 * y6; acc73 += x3 * y7;
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
@compute @workgroup_size(8, 1, 1)
fn matmul_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid.x);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    // Offsets of the rows of A in each row group (clamped to M − 1).
    let r0 = row_offsets(row0, p.m - 1u, kq);
    let r1 = row_offsets(row0 + 4u, p.m - 1u, kq);
    let r2 = row_offsets(row0 + 8u, p.m - 1u, kq);
    let r3 = row_offsets(row0 + 12u, p.m - 1u, kq);
    let r4 = row_offsets(row0 + 16u, p.m - 1u, kq);
    let r5 = row_offsets(row0 + 20u, p.m - 1u, kq);
    let r6 = row_offsets(row0 + 24u, p.m - 1u, kq);
    let r7 = row_offsets(row0 + 28u, p.m - 1u, kq);
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
        let y0 = load_a(ka, r0);
        let y1 = load_a(ka, r1);
        let y2 = load_a(ka, r2);
        let y3 = load_a(ka, r3);
        let y4 = load_a(ka, r4);
        let y5 = load_a(ka, r5);
        let y6 = load_a(ka, r6);
        let y7 = load_a(ka, r7);
        let x0 = transpose(load_b(kb, n0));
        acc00 += x0 * y0; acc10 += x0 * y1; acc20 += x0 * y2; acc30 += x0 * y3;
        acc40 += x0 * y4; acc50 += x0 * y5; acc60 += x0 * y6; acc70 += x0 * y7;
        let x1 = transpose(load_b(kb, n1));
        acc01 += x1 * y0; acc11 += x1 * y1; acc21 += x1 * y2; acc31 += x1 * y3;
        acc41 += x1 * y4; acc51 += x1 * y5; acc61 += x1 * y6; acc71 += x1 * y7;
        let x2 = transpose(load_b(kb, n2));
        acc02 += x2 * y0; acc12 += x2 * y1; acc22 += x2 * y2; acc32 += x2 * y3;
        acc42 += x2 * y4; acc52 += x2 * y5; acc62 += x2 * y6; acc72 += x2 * y7;
        let x3 = transpose(load_b(kb, n3));
        acc03 += x3 * y0; acc13 += x3 * y1; acc23 += x3 * y2; acc33 += x3 * y3;
        acc43 += x3 * y4; acc53 += x3 * y5; acc63 += x3 * y6; acc73 += x3 * y7;
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
@compute @workgroup_size(8, 1, 1)
fn matmul_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid.x);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    // Column (in vec4s) of Aᵀ's storage holding each row group (clamped to the last).
    let mq = p.m / 4u;
    let g_lo = min(vec4<u32>(row0 / 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(mq - 1u));
    let g_hi = min(vec4<u32>(row0 / 4u) + vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(mq - 1u));
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
        // Rows 4kk..4kk+3 of the operands stored [K, ·].
        let kr = vec4<u32>(4u * kk) + vec4<u32>(0u, 1u, 2u, 3u);
        let brow = b_base + kr * nq;
        let arow = a_base + kr * mq;
        let y0 = transpose(load_a(g_lo.x, arow));
        let y1 = transpose(load_a(g_lo.y, arow));
        let y2 = transpose(load_a(g_lo.z, arow));
        let y3 = transpose(load_a(g_lo.w, arow));
        let y4 = transpose(load_a(g_hi.x, arow));
        let y5 = transpose(load_a(g_hi.y, arow));
        let y6 = transpose(load_a(g_hi.z, arow));
        let y7 = transpose(load_a(g_hi.w, arow));
        let x0 = load_b(bcol.x, brow);
        acc00 += x0 * y0; acc10 += x0 * y1; acc20 += x0 * y2; acc30 += x0 * y3;
        acc40 += x0 * y4; acc50 += x0 * y5; acc60 += x0 * y6; acc70 += x0 * y7;
        let x1 = load_b(bcol.y, brow);
        acc01 += x1 * y0; acc11 += x1 * y1; acc21 += x1 * y2; acc31 += x1 * y3;
        acc41 += x1 * y4; acc51 += x1 * y5; acc61 += x1 * y6; acc71 += x1 * y7;
        let x2 = load_b(bcol.z, brow);
        acc02 += x2 * y0; acc12 += x2 * y1; acc22 += x2 * y2; acc32 += x2 * y3;
        acc42 += x2 * y4; acc52 += x2 * y5; acc62 += x2 * y6; acc72 += x2 * y7;
        let x3 = load_b(bcol.w, brow);
        acc03 += x3 * y0; acc13 += x3 * y1; acc23 += x3 * y2; acc33 += x3 * y3;
        acc43 += x3 * y4; acc53 += x3 * y5; acc63 += x3 * y6; acc73 += x3 * y7;
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
@compute @workgroup_size(8, 1, 1)
fn matmul_tt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid.x);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    // Column (in vec4s) of Aᵀ's storage holding each row group (clamped to the last).
    let mq = p.m / 4u;
    let g_lo = min(vec4<u32>(row0 / 4u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(mq - 1u));
    let g_hi = min(vec4<u32>(row0 / 4u) + vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(mq - 1u));
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
        // Rows 4kk..4kk+3 of the operands stored [K, ·].
        let kr = vec4<u32>(4u * kk) + vec4<u32>(0u, 1u, 2u, 3u);
        let arow = a_base + kr * mq;
        let y0 = transpose(load_a(g_lo.x, arow));
        let y1 = transpose(load_a(g_lo.y, arow));
        let y2 = transpose(load_a(g_lo.z, arow));
        let y3 = transpose(load_a(g_lo.w, arow));
        let y4 = transpose(load_a(g_hi.x, arow));
        let y5 = transpose(load_a(g_hi.y, arow));
        let y6 = transpose(load_a(g_hi.z, arow));
        let y7 = transpose(load_a(g_hi.w, arow));
        let x0 = transpose(load_b(b_base + kk, n0));
        acc00 += x0 * y0; acc10 += x0 * y1; acc20 += x0 * y2; acc30 += x0 * y3;
        acc40 += x0 * y4; acc50 += x0 * y5; acc60 += x0 * y6; acc70 += x0 * y7;
        let x1 = transpose(load_b(b_base + kk, n1));
        acc01 += x1 * y0; acc11 += x1 * y1; acc21 += x1 * y2; acc31 += x1 * y3;
        acc41 += x1 * y4; acc51 += x1 * y5; acc61 += x1 * y6; acc71 += x1 * y7;
        let x2 = transpose(load_b(b_base + kk, n2));
        acc02 += x2 * y0; acc12 += x2 * y1; acc22 += x2 * y2; acc32 += x2 * y3;
        acc42 += x2 * y4; acc52 += x2 * y5; acc62 += x2 * y6; acc72 += x2 * y7;
        let x3 = transpose(load_b(b_base + kk, n3));
        acc03 += x3 * y0; acc13 += x3 * y1; acc23 += x3 * y2; acc33 += x3 * y3;
        acc43 += x3 * y4; acc53 += x3 * y5; acc63 += x3 * y6; acc73 += x3 * y7;
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

// ---------------------------------------------------------------------------------------------------------------
// Workgroup-memory tiling (real GPUs; the fallback for any shape).

const TILE: u32 = 64u;
const TILE_K: u32 = 16u;
// vec4s per staged row: 16 hold the tile's 64 values, one more staggers consecutive rows across memory banks (the
// staging stores of a k-contiguous operand write consecutive rows).
const PITCH: u32 = 17u;

// a_tile[kl·PITCH + ml/4][ml % 4] = op(A)[m0 + ml, k0 + kl]; b_tile[kl·PITCH + nl/4][nl % 4] = op(B)[k0 + kl, n0 + nl].
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
    for (var k0 = 0u; k0 < p.k; k0 += TILE_K) {
        // Stage both tiles, 4 elements per invocation each, consecutive invocations along the operand's contiguous
        // dimension (coalesced loads); elements past the edges are zero so they add nothing.
        for (var e = 0u; e < 4u; e++) {
            let idx = tid + 256u * e;
            let a_k_fast = p.trans_a == 0u;
            let ml = select(idx % TILE, idx / TILE_K, a_k_fast);
            let akl = select(idx / TILE, idx % TILE_K, a_k_fast);
            var av = 0.0;
            if (m0 + ml < p.m && k0 + akl < p.k) { av = a[a_at(a_base, m0 + ml, k0 + akl)]; }
            a_tile[akl * PITCH + ml / 4u][ml % 4u] = av;
            let b_k_fast = p.trans_b == 1u;
            let nl = select(idx % TILE, idx / TILE_K, b_k_fast);
            let bkl = select(idx / TILE, idx % TILE_K, b_k_fast);
            var bv = 0.0;
            if (n0 + nl < p.n && k0 + bkl < p.k) { bv = b[b_at(b_base, k0 + bkl, n0 + nl)]; }
            b_tile[bkl * PITCH + nl / 4u][nl % 4u] = bv;
        }
        workgroupBarrier();
        for (var kl = 0u; kl < TILE_K; kl++) {
            let av = a_tile[kl * PITCH + lid.y];
            let bv = b_tile[kl * PITCH + lid.x];
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        // The next iteration overwrites the tiles: wait until every invocation has read them.
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
