// matmul_subgroup.wgsl — the register-blocked products of matmul.wgsl (matmul_nn / _nt / _tn / _tt), with the A
// operand shared across the lanes of a subgroup instead of loaded by every lane. Same math, layouts, Params,
// bindings, pipeline constants and dispatch geometry as matmul.wgsl's register-blocked kernels (read its header);
// what the two share is in matmul_common.wgsl, which src/gpu/shaders.rs prepends to both.
//   Why: on a CPU adapter every lane-varying load is a loop over the lanes, and all 8 lanes of a workgroup need the
//   same 32 rows of A (they differ only in their columns). So each lane loads 4 of the 32 A vec4s of a k step and
//   subgroupBroadcast hands them to the others (a register shuffle): 4 + 16 vec4 loads per lane per k step
//   instead of 32 + 16. On lavapipe: ~60 GFLOP/s at 1024³ against ~35 for matmul.wgsl.
//   Requires: the SUBGROUP feature and subgroups of at least 8 invocations, so that the workgroup of 8 is one
//   subgroup (the wrapper checks the adapter's minimum subgroup size). Lane s holds what subgroup invocation s
//   loaded; which columns it owns still follows local_invocation_id.
// Wrapper: src/kernels/matmul.rs; reference: src/reference/matmul.rs.

// x{j}, y{g} and acc{g}{j} as in matmul.wgsl.

// C = A·B: A [M, K] read along k, B [K, N] read along n.
@compute @workgroup_size(8, 1, 1)
fn matmul_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(subgroup_invocation_id) sid: u32) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid.x);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    // This lane loads rows row0 + sid + 8h, h = 0..3 (clamped to M − 1): its share of the 32 rows.
    let own = min(vec4<u32>(row0 + sid) + vec4<u32>(0u, 8u, 16u, 24u), vec4<u32>(p.m - 1u)) * kq;
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
        let brow = b_base + (vec4<u32>(4u * kk) + vec4<u32>(0u, 1u, 2u, 3u)) * nq;
        let v = mat4x4<f32>(a4[a_base + kk + own.x], a4[a_base + kk + own.y], a4[a_base + kk + own.z],
                            a4[a_base + kk + own.w]);
        // Row 4g + i of the block sits in v[(4g + i) / 8] of lane (4g + i) % 8.
        let y0 = mat4x4<f32>(subgroupBroadcast(v[0], 0u), subgroupBroadcast(v[0], 1u),
                              subgroupBroadcast(v[0], 2u), subgroupBroadcast(v[0], 3u));
        let y1 = mat4x4<f32>(subgroupBroadcast(v[0], 4u), subgroupBroadcast(v[0], 5u),
                              subgroupBroadcast(v[0], 6u), subgroupBroadcast(v[0], 7u));
        let y2 = mat4x4<f32>(subgroupBroadcast(v[1], 0u), subgroupBroadcast(v[1], 1u),
                              subgroupBroadcast(v[1], 2u), subgroupBroadcast(v[1], 3u));
        let y3 = mat4x4<f32>(subgroupBroadcast(v[1], 4u), subgroupBroadcast(v[1], 5u),
                              subgroupBroadcast(v[1], 6u), subgroupBroadcast(v[1], 7u));
        let y4 = mat4x4<f32>(subgroupBroadcast(v[2], 0u), subgroupBroadcast(v[2], 1u),
                              subgroupBroadcast(v[2], 2u), subgroupBroadcast(v[2], 3u));
        let y5 = mat4x4<f32>(subgroupBroadcast(v[2], 4u), subgroupBroadcast(v[2], 5u),
                              subgroupBroadcast(v[2], 6u), subgroupBroadcast(v[2], 7u));
        let y6 = mat4x4<f32>(subgroupBroadcast(v[3], 0u), subgroupBroadcast(v[3], 1u),
                              subgroupBroadcast(v[3], 2u), subgroupBroadcast(v[3], 3u));
        let y7 = mat4x4<f32>(subgroupBroadcast(v[3], 4u), subgroupBroadcast(v[3], 5u),
                              subgroupBroadcast(v[3], 6u), subgroupBroadcast(v[3], 7u));
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
fn matmul_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(subgroup_invocation_id) sid: u32) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid.x);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    // This lane loads rows row0 + sid + 8h, h = 0..3 (clamped to M − 1): its share of the 32 rows.
    let own = min(vec4<u32>(row0 + sid) + vec4<u32>(0u, 8u, 16u, 24u), vec4<u32>(p.m - 1u)) * kq;
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
        let v = mat4x4<f32>(a4[ka + own.x], a4[ka + own.y], a4[ka + own.z],
                            a4[ka + own.w]);
        // Row 4g + i of the block sits in v[(4g + i) / 8] of lane (4g + i) % 8.
        let y0 = mat4x4<f32>(subgroupBroadcast(v[0], 0u), subgroupBroadcast(v[0], 1u),
                              subgroupBroadcast(v[0], 2u), subgroupBroadcast(v[0], 3u));
        let y1 = mat4x4<f32>(subgroupBroadcast(v[0], 4u), subgroupBroadcast(v[0], 5u),
                              subgroupBroadcast(v[0], 6u), subgroupBroadcast(v[0], 7u));
        let y2 = mat4x4<f32>(subgroupBroadcast(v[1], 0u), subgroupBroadcast(v[1], 1u),
                              subgroupBroadcast(v[1], 2u), subgroupBroadcast(v[1], 3u));
        let y3 = mat4x4<f32>(subgroupBroadcast(v[1], 4u), subgroupBroadcast(v[1], 5u),
                              subgroupBroadcast(v[1], 6u), subgroupBroadcast(v[1], 7u));
        let y4 = mat4x4<f32>(subgroupBroadcast(v[2], 0u), subgroupBroadcast(v[2], 1u),
                              subgroupBroadcast(v[2], 2u), subgroupBroadcast(v[2], 3u));
        let y5 = mat4x4<f32>(subgroupBroadcast(v[2], 4u), subgroupBroadcast(v[2], 5u),
                              subgroupBroadcast(v[2], 6u), subgroupBroadcast(v[2], 7u));
        let y6 = mat4x4<f32>(subgroupBroadcast(v[3], 0u), subgroupBroadcast(v[3], 1u),
                              subgroupBroadcast(v[3], 2u), subgroupBroadcast(v[3], 3u));
        let y7 = mat4x4<f32>(subgroupBroadcast(v[3], 4u), subgroupBroadcast(v[3], 5u),
                              subgroupBroadcast(v[3], 6u), subgroupBroadcast(v[3], 7u));
        let x0 = transpose(load_b(kb, n0));
        acc00 += x0 * y0; acc10 += x0 * y1; acc20 += x0 * y2; acc30 += x0 * y3;
        acc40 += x0 * y4; acc50 += x0 * y5; acc60 += x0 * y6; acc70 += x0 * y7;
        let x1 = transpose(load_b(kb, n1));
        acc01 += x1 * y0; acc11 += x1 * y1; acc21 += x1 * y2; acc31 += x1 * y3;
        acc41 += x1 * y4; acc51 += x1 * y5; acc61 += x1 * y6; acc71 += x1 * y7;
        if (!NARROW) {
            let x2 = transpose(load_b(kb, n2));
            acc02 += x2 * y0; acc12 += x2 * y1; acc22 += x2 * y2; acc32 += x2 * y3;
            acc42 += x2 * y4; acc52 += x2 * y5; acc62 += x2 * y6; acc72 += x2 * y7;
            let x3 = transpose(load_b(kb, n3));
            acc03 += x3 * y0; acc13 += x3 * y1; acc23 += x3 * y2; acc33 += x3 * y3;
            acc43 += x3 * y4; acc53 += x3 * y5; acc63 += x3 * y6; acc73 += x3 * y7;
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
@compute @workgroup_size(8, 1, 1)
fn matmul_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(subgroup_invocation_id) sid: u32) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid.x);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    // This lane loads row 4kk + sid % 4 of Aᵀ's storage at the row groups sid / 4 + 2h, h = 0..3 (in vec4s,
    // clamped to the last): its share of the 8 groups × 4 k.
    let mq = p.m / 4u;
    let own = min(vec4<u32>(row0 / 4u + sid / 4u) + vec4<u32>(0u, 2u, 4u, 6u), vec4<u32>(mq - 1u));
    let own_k = sid % 4u;
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
        let brow = b_base + (vec4<u32>(4u * kk) + vec4<u32>(0u, 1u, 2u, 3u)) * nq;
        let arow = a_base + (4u * kk + own_k) * mq;
        let v = mat4x4<f32>(a4[arow + own.x], a4[arow + own.y], a4[arow + own.z], a4[arow + own.w]);
        // Row 4kk + t of group g sits in v[g / 2] of lane 4·(g % 2) + t.
        let y0 = transpose(mat4x4<f32>(subgroupBroadcast(v[0], 0u), subgroupBroadcast(v[0], 1u),
                                        subgroupBroadcast(v[0], 2u), subgroupBroadcast(v[0], 3u)));
        let y1 = transpose(mat4x4<f32>(subgroupBroadcast(v[0], 4u), subgroupBroadcast(v[0], 5u),
                                        subgroupBroadcast(v[0], 6u), subgroupBroadcast(v[0], 7u)));
        let y2 = transpose(mat4x4<f32>(subgroupBroadcast(v[1], 0u), subgroupBroadcast(v[1], 1u),
                                        subgroupBroadcast(v[1], 2u), subgroupBroadcast(v[1], 3u)));
        let y3 = transpose(mat4x4<f32>(subgroupBroadcast(v[1], 4u), subgroupBroadcast(v[1], 5u),
                                        subgroupBroadcast(v[1], 6u), subgroupBroadcast(v[1], 7u)));
        let y4 = transpose(mat4x4<f32>(subgroupBroadcast(v[2], 0u), subgroupBroadcast(v[2], 1u),
                                        subgroupBroadcast(v[2], 2u), subgroupBroadcast(v[2], 3u)));
        let y5 = transpose(mat4x4<f32>(subgroupBroadcast(v[2], 4u), subgroupBroadcast(v[2], 5u),
                                        subgroupBroadcast(v[2], 6u), subgroupBroadcast(v[2], 7u)));
        let y6 = transpose(mat4x4<f32>(subgroupBroadcast(v[3], 0u), subgroupBroadcast(v[3], 1u),
                                        subgroupBroadcast(v[3], 2u), subgroupBroadcast(v[3], 3u)));
        let y7 = transpose(mat4x4<f32>(subgroupBroadcast(v[3], 4u), subgroupBroadcast(v[3], 5u),
                                        subgroupBroadcast(v[3], 6u), subgroupBroadcast(v[3], 7u)));
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
fn matmul_tt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(subgroup_invocation_id) sid: u32) {
    let kq = p.k / 4u;
    let nq = p.n / 4u;
    let row0 = wg.y * ROWS;
    let a_base = wg.z * (p.a_batch_stride / 4u);
    let b_base = wg.z * (p.b_batch_stride / 4u);
    let cq = lane_groups(wg.x, lid.x);
    let bcol = min(cq, vec4<u32>(nq - 1u));
    // This lane loads row 4kk + sid % 4 of Aᵀ's storage at the row groups sid / 4 + 2h, h = 0..3 (in vec4s,
    // clamped to the last): its share of the 8 groups × 4 k.
    let mq = p.m / 4u;
    let own = min(vec4<u32>(row0 / 4u + sid / 4u) + vec4<u32>(0u, 2u, 4u, 6u), vec4<u32>(mq - 1u));
    let own_k = sid % 4u;
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
        let arow = a_base + (4u * kk + own_k) * mq;
        let v = mat4x4<f32>(a4[arow + own.x], a4[arow + own.y], a4[arow + own.z], a4[arow + own.w]);
        // Row 4kk + t of group g sits in v[g / 2] of lane 4·(g % 2) + t.
        let y0 = transpose(mat4x4<f32>(subgroupBroadcast(v[0], 0u), subgroupBroadcast(v[0], 1u),
                                        subgroupBroadcast(v[0], 2u), subgroupBroadcast(v[0], 3u)));
        let y1 = transpose(mat4x4<f32>(subgroupBroadcast(v[0], 4u), subgroupBroadcast(v[0], 5u),
                                        subgroupBroadcast(v[0], 6u), subgroupBroadcast(v[0], 7u)));
        let y2 = transpose(mat4x4<f32>(subgroupBroadcast(v[1], 0u), subgroupBroadcast(v[1], 1u),
                                        subgroupBroadcast(v[1], 2u), subgroupBroadcast(v[1], 3u)));
        let y3 = transpose(mat4x4<f32>(subgroupBroadcast(v[1], 4u), subgroupBroadcast(v[1], 5u),
                                        subgroupBroadcast(v[1], 6u), subgroupBroadcast(v[1], 7u)));
        let y4 = transpose(mat4x4<f32>(subgroupBroadcast(v[2], 0u), subgroupBroadcast(v[2], 1u),
                                        subgroupBroadcast(v[2], 2u), subgroupBroadcast(v[2], 3u)));
        let y5 = transpose(mat4x4<f32>(subgroupBroadcast(v[2], 4u), subgroupBroadcast(v[2], 5u),
                                        subgroupBroadcast(v[2], 6u), subgroupBroadcast(v[2], 7u)));
        let y6 = transpose(mat4x4<f32>(subgroupBroadcast(v[3], 0u), subgroupBroadcast(v[3], 1u),
                                        subgroupBroadcast(v[3], 2u), subgroupBroadcast(v[3], 3u)));
        let y7 = transpose(mat4x4<f32>(subgroupBroadcast(v[3], 4u), subgroupBroadcast(v[3], 5u),
                                        subgroupBroadcast(v[3], 6u), subgroupBroadcast(v[3], 7u)));
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
