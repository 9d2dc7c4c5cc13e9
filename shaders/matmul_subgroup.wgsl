// matmul_subgroup.wgsl — matmul.wgsl's register-blocked products (matmul_nn / _nt / _tn / _tt) with the A operand
// shared across the lanes of a subgroup instead of loaded by every lane. Same math, layouts, Params, bindings,
// pipeline constants and dispatch as there (read matmul.wgsl's header); the bodies are in matmul_common.wgsl,
// which src/gpu/shaders.rs prepends. This file holds the A loaders and the entry points.
//   All 8 lanes of a workgroup need the same 32 rows of A per k step (they differ only in their columns), so
//   each loads 4 of its 32 vec4s and subgroupBroadcast hands them to the others: 4 + 16 vec4 loads per lane per
//   k step instead of 32 + 16. Lane s holds what subgroup invocation s loaded; which columns it owns still follows
//   local_invocation_id. The broadcasts run in uniform control flow (k loops over uniform bounds).
//   Requires the SUBGROUP feature and subgroups of at least 8 invocations, so that the workgroup of 8 is one
//   subgroup (the wrapper checks the adapter's minimum subgroup size).
// Wrapper: src/kernels/matmul.rs (the variant: src/kernels/select.rs); reference: src/reference/matmul.rs.

// Rows 0..3 and 4..7 of a block held by lanes 0..3 and 4..7.
fn lanes_lo(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u),
                       subgroupBroadcast(v, 3u));
}

fn lanes_hi(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u),
                       subgroupBroadcast(v, 7u));
}

// A stored [M, K]: this lane loads rows row0 + sid + 8h, h = 0..3 (clamped to M − 1), its share of the 32 rows;
// `own` holds their offsets.
struct ARows {
    own: vec4<u32>,
}

fn a_rows(row0: u32, kq: u32, sid: u32) -> ARows {
    return ARows(min(vec4<u32>(row0 + sid) + vec4<u32>(0u, 8u, 16u, 24u), vec4<u32>(p.m - 1u)) * kq);
}

// k step `ka` (a vec4 index along k). Row 4g + i of the block sits in v[(4g + i) / 8] of lane (4g + i) % 8.
fn load_a_rows(r: ARows, ka: u32) -> ABlocks {
    let v = mat4x4<f32>(a4[ka + r.own.x], a4[ka + r.own.y], a4[ka + r.own.z], a4[ka + r.own.w]);
    return ABlocks(lanes_lo(v[0]), lanes_hi(v[0]), lanes_lo(v[1]), lanes_hi(v[1]),
                   lanes_lo(v[2]), lanes_hi(v[2]), lanes_lo(v[3]), lanes_hi(v[3]));
}

// A stored [K, M]: this lane loads stored row 4kk + own_k (own_k = sid % 4) at the row groups sid / 4 + 2h,
// h = 0..3 (`own`, in vec4s, clamped to the last), its share of the 8 groups × 4 k; mq = M/4, the vec4s per
// stored row.
struct ACols {
    own: vec4<u32>,
    own_k: u32,
    mq: u32,
}

fn a_cols(row0: u32, sid: u32) -> ACols {
    let mq = p.m / 4u;
    return ACols(min(vec4<u32>(row0 / 4u + sid / 4u) + vec4<u32>(0u, 2u, 4u, 6u), vec4<u32>(mq - 1u)), sid % 4u,
                 mq);
}

// k step kk. Row 4kk + t of group g sits in v[g / 2] of lane 4·(g % 2) + t.
fn load_a_cols(c: ACols, a_base: u32, kk: u32) -> ABlocks {
    let arow = a_base + (4u * kk + c.own_k) * c.mq;
    let v = mat4x4<f32>(a4[arow + c.own.x], a4[arow + c.own.y], a4[arow + c.own.z], a4[arow + c.own.w]);
    return ABlocks(transpose(lanes_lo(v[0])), transpose(lanes_hi(v[0])),
                   transpose(lanes_lo(v[1])), transpose(lanes_hi(v[1])),
                   transpose(lanes_lo(v[2])), transpose(lanes_hi(v[2])),
                   transpose(lanes_lo(v[3])), transpose(lanes_hi(v[3])));
}

@compute @workgroup_size(8, 1, 1)
fn matmul_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(subgroup_invocation_id) sid: u32) {
    matmul_nn_body(wg, lid.x, sid);
}

@compute @workgroup_size(8, 1, 1)
fn matmul_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(subgroup_invocation_id) sid: u32) {
    matmul_nt_body(wg, lid.x, sid);
}

@compute @workgroup_size(8, 1, 1)
fn matmul_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(subgroup_invocation_id) sid: u32) {
    matmul_tn_body(wg, lid.x, sid);
}

@compute @workgroup_size(8, 1, 1)
fn matmul_tt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
             @builtin(subgroup_invocation_id) sid: u32) {
    matmul_tt_body(wg, lid.x, sid);
}
