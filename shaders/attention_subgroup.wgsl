// attention_subgroup.wgsl — attention.wgsl's products for CPU adapters with subgroups: attention_matmul_subgroup,
// C = alpha·A·B per (n, head) with every operand read through Params' strides. Same math, Params, bindings
// (attention_common.wgsl, prepended by src/gpu/shaders.rs) and summation order as attention_matmul: each element of
// C is one serial sum over k = 0..K in order, then scaled by alpha, so the tests' γ_K bounds hold for both.
// Why: on a CPU adapter attention_matmul's workgroup-memory tiles and their barriers cost more than its multiplies
// at the U-Net's sizes; one subgroup per block needs neither.
// Work split: a workgroup of 8 invocations, one subgroup, owns a 32×32 block of C (acc0..acc31: its rows, at the
// lane's 4 columns). Per k, lane s loads A at block rows s, s + 8, s + 16, s + 24 and B at its columns s, s + 8,
// s + 16, s + 24, and subgroupBroadcast hands every lane's A values to all: 8 loads and 8 broadcasts per 128
// multiply-adds per lane. Rows and columns past the edges load clamped (valid) addresses and are not stored.
// Dispatch: grid (⌈N/32⌉, ⌈M/32⌉, batch·heads), workgroups of 8. Requires the SUBGROUP feature and subgroups of at
// least 8 invocations, so that the workgroup is one subgroup (the wrapper checks the adapter's minimum size).
// Saved for backward: see attention.wgsl.  Wrapper: src/kernels/attention.rs (Path::Auto on CPU adapters,
// Path::Subgroup).

const BLOCK: u32 = 32u; // rows and columns of C per workgroup

// Row r of the block: alpha·acc into the 4 columns `cols` of this lane, those inside C.
fn store_row(c_off: u32, r: u32, cols: vec4<u32>, acc: vec4<f32>) {
    if (r >= p.m) { return; }
    let at = c_off + r * p.c_rows;
    let v = p.alpha * acc;
    if (cols.x < p.n) { c[at + cols.x * p.c_cols] = v.x; }
    if (cols.y < p.n) { c[at + cols.y * p.c_cols] = v.y; }
    if (cols.z < p.n) { c[at + cols.z * p.c_cols] = v.z; }
    if (cols.w < p.n) { c[at + cols.w * p.c_cols] = v.w; }
}

@compute @workgroup_size(8)
fn attention_matmul_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                             @builtin(subgroup_invocation_id) sid: u32) {
    let m0 = wg.y * BLOCK;
    let n0 = wg.x * BLOCK;
    let bn = wg.z / p.heads;
    let bh = wg.z % p.heads;
    let a_off = p.a_base + bn * p.a_batch + bh * p.a_head;
    let b_off = p.b_base + bn * p.b_batch + bh * p.b_head;
    let c_off = p.c_base + bn * p.c_batch + bh * p.c_head;
    let spread = vec4<u32>(0u, 8u, 16u, 24u);
    // The A rows this lane loads and the C columns it owns (clamped for loading).
    let a_rows = a_off + min(vec4<u32>(m0 + sid) + spread, vec4<u32>(p.m - 1u)) * p.a_rows;
    let cols = vec4<u32>(n0 + lid) + spread;
    let b_cols = b_off + min(cols, vec4<u32>(p.n - 1u)) * p.b_cols;
    // acc{r}: row m0 + r of the block at this lane's 4 columns.
    var acc0 = vec4<f32>();
    var acc1 = vec4<f32>();
    var acc2 = vec4<f32>();
    var acc3 = vec4<f32>();
    var acc4 = vec4<f32>();
    var acc5 = vec4<f32>();
    var acc6 = vec4<f32>();
    var acc7 = vec4<f32>();
    var acc8 = vec4<f32>();
    var acc9 = vec4<f32>();
    var acc10 = vec4<f32>();
    var acc11 = vec4<f32>();
    var acc12 = vec4<f32>();
    var acc13 = vec4<f32>();
    var acc14 = vec4<f32>();
    var acc15 = vec4<f32>();
    var acc16 = vec4<f32>();
    var acc17 = vec4<f32>();
    var acc18 = vec4<f32>();
    var acc19 = vec4<f32>();
    var acc20 = vec4<f32>();
    var acc21 = vec4<f32>();
    var acc22 = vec4<f32>();
    var acc23 = vec4<f32>();
    var acc24 = vec4<f32>();
    var acc25 = vec4<f32>();
    var acc26 = vec4<f32>();
    var acc27 = vec4<f32>();
    var acc28 = vec4<f32>();
    var acc29 = vec4<f32>();
    var acc30 = vec4<f32>();
    var acc31 = vec4<f32>();
    for (var k = 0u; k < p.k; k++) {
        let ak = k * p.a_cols;
        let bk = k * p.b_rows;
        // Lane s holds rows s, s + 8, s + 16, s + 24 of the block in x, y, z, w.
        let av = vec4<f32>(a[a_rows.x + ak], a[a_rows.y + ak], a[a_rows.z + ak], a[a_rows.w + ak]);
        let bv = vec4<f32>(b[b_cols.x + bk], b[b_cols.y + bk], b[b_cols.z + bk], b[b_cols.w + bk]);
        let y0 = subgroupBroadcast(av, 0u);
        let y1 = subgroupBroadcast(av, 1u);
        let y2 = subgroupBroadcast(av, 2u);
        let y3 = subgroupBroadcast(av, 3u);
        let y4 = subgroupBroadcast(av, 4u);
        let y5 = subgroupBroadcast(av, 5u);
        let y6 = subgroupBroadcast(av, 6u);
        let y7 = subgroupBroadcast(av, 7u);
        acc0 += y0.x * bv; acc8 += y0.y * bv; acc16 += y0.z * bv; acc24 += y0.w * bv;
        acc1 += y1.x * bv; acc9 += y1.y * bv; acc17 += y1.z * bv; acc25 += y1.w * bv;
        acc2 += y2.x * bv; acc10 += y2.y * bv; acc18 += y2.z * bv; acc26 += y2.w * bv;
        acc3 += y3.x * bv; acc11 += y3.y * bv; acc19 += y3.z * bv; acc27 += y3.w * bv;
        acc4 += y4.x * bv; acc12 += y4.y * bv; acc20 += y4.z * bv; acc28 += y4.w * bv;
        acc5 += y5.x * bv; acc13 += y5.y * bv; acc21 += y5.z * bv; acc29 += y5.w * bv;
        acc6 += y6.x * bv; acc14 += y6.y * bv; acc22 += y6.z * bv; acc30 += y6.w * bv;
        acc7 += y7.x * bv; acc15 += y7.y * bv; acc23 += y7.z * bv; acc31 += y7.w * bv;
    }
    store_row(c_off, m0 + 0u, cols, acc0);
    store_row(c_off, m0 + 1u, cols, acc1);
    store_row(c_off, m0 + 2u, cols, acc2);
    store_row(c_off, m0 + 3u, cols, acc3);
    store_row(c_off, m0 + 4u, cols, acc4);
    store_row(c_off, m0 + 5u, cols, acc5);
    store_row(c_off, m0 + 6u, cols, acc6);
    store_row(c_off, m0 + 7u, cols, acc7);
    store_row(c_off, m0 + 8u, cols, acc8);
    store_row(c_off, m0 + 9u, cols, acc9);
    store_row(c_off, m0 + 10u, cols, acc10);
    store_row(c_off, m0 + 11u, cols, acc11);
    store_row(c_off, m0 + 12u, cols, acc12);
    store_row(c_off, m0 + 13u, cols, acc13);
    store_row(c_off, m0 + 14u, cols, acc14);
    store_row(c_off, m0 + 15u, cols, acc15);
    store_row(c_off, m0 + 16u, cols, acc16);
    store_row(c_off, m0 + 17u, cols, acc17);
    store_row(c_off, m0 + 18u, cols, acc18);
    store_row(c_off, m0 + 19u, cols, acc19);
    store_row(c_off, m0 + 20u, cols, acc20);
    store_row(c_off, m0 + 21u, cols, acc21);
    store_row(c_off, m0 + 22u, cols, acc22);
    store_row(c_off, m0 + 23u, cols, acc23);
    store_row(c_off, m0 + 24u, cols, acc24);
    store_row(c_off, m0 + 25u, cols, acc25);
    store_row(c_off, m0 + 26u, cols, acc26);
    store_row(c_off, m0 + 27u, cols, acc27);
    store_row(c_off, m0 + 28u, cols, acc28);
    store_row(c_off, m0 + 29u, cols, acc29);
    store_row(c_off, m0 + 30u, cols, acc30);
    store_row(c_off, m0 + 31u, cols, acc31);
}
