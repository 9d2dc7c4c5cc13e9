// conv2d_subgroup.wgsl — conv2d.wgsl's main passes (forward, which also serves the backward input, and backward
// weight) with the loads that every invocation of a workgroup shares done once per subgroup. Same math, buffers,
// packed layouts, Params, entry points and dispatch geometry as conv2d.wgsl (read its header first); the bodies
// are in conv2d_common.wgsl, which src/gpu/shaders.rs prepends. This file holds the loaders that differ
// (weights9, weights1, dy_tile) and the entry points, which pass subgroup_invocation_id as `lane`.
//   In the forward every invocation of a workgroup needs the same weights, in the backward weight the same d_y;
//   on a SIMD-across-invocations driver (lavapipe) a load of one address in every lane is a gather of 8 identical
//   values. Here lanes 0..7 of each subgroup load 8 different vec4s and subgroupBroadcast hands every one to all.
//   Requires the SUBGROUP feature and subgroups of at least 8 invocations (the wrapper checks both; larger ones
//   work, their lanes 8+ repeat the loads). Subgroup operations sit only in uniform control flow: loops run over
//   uniform bounds and out-of-range invocations compute on clamped indices instead of returning early.
// Wrapper: src/kernels/conv2d/direct.rs (the variant: src/kernels/select.rs).

// The 18 weight vec4s of a 3×3 kernel's input channel, loaded by lanes 0..7 (two each) and 0..1 (one more).
fn weights9(i: u32, lane: u32) -> Taps9 {
    let l = lane % 8u;
    let a = wp[i + l];
    let b = wp[i + 8u + l];
    let c = wp[i + 16u + min(l, 1u)];
    return Taps9(array(
        array(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u),
              subgroupBroadcast(a, 3u), subgroupBroadcast(a, 4u), subgroupBroadcast(a, 5u)),
        array(subgroupBroadcast(a, 6u), subgroupBroadcast(a, 7u), subgroupBroadcast(b, 0u),
              subgroupBroadcast(b, 1u), subgroupBroadcast(b, 2u), subgroupBroadcast(b, 3u)),
        array(subgroupBroadcast(b, 4u), subgroupBroadcast(b, 5u), subgroupBroadcast(b, 6u),
              subgroupBroadcast(b, 7u), subgroupBroadcast(c, 0u), subgroupBroadcast(c, 1u))));
}

// The 2 weight vec4s (8 output channels) of one input channel for a 1×1 kernel, loaded by lanes 0 and 1.
fn weights1(i: u32, lane: u32) -> array<vec4<f32>, 2> {
    let a = wp[i + min(lane % 8u, 1u)];
    return array(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u));
}

// Lane l of the first 8 loads row l % 4 of channels o0 + 2g + l / 4 (g = 0..7); broadcasts hand them to all.
fn dy_tile(di: u32, o0: u32, lane: u32) -> DyTile {
    let l = lane % 8u;
    let plane = p.dy_h * p.dy_w4;
    let i = di + (l % 4u) * p.dy_w4;
    let last = p.out_c - 1u;
    let o = o0 + l / 4u;
    let g0 = dyp[i + min(o, last) * plane];
    let g1 = dyp[i + min(o + 2u, last) * plane];
    let g2 = dyp[i + min(o + 4u, last) * plane];
    let g3 = dyp[i + min(o + 6u, last) * plane];
    let g4 = dyp[i + min(o + 8u, last) * plane];
    let g5 = dyp[i + min(o + 10u, last) * plane];
    let g6 = dyp[i + min(o + 12u, last) * plane];
    let g7 = dyp[i + min(o + 14u, last) * plane];
    var d: DyTile;
    d.v[0] = rows_lo(g0);
    d.v[1] = rows_hi(g0);
    d.v[2] = rows_lo(g1);
    d.v[3] = rows_hi(g1);
    d.v[4] = rows_lo(g2);
    d.v[5] = rows_hi(g2);
    d.v[6] = rows_lo(g3);
    d.v[7] = rows_hi(g3);
    d.v[8] = rows_lo(g4);
    d.v[9] = rows_hi(g4);
    d.v[10] = rows_lo(g5);
    d.v[11] = rows_hi(g5);
    d.v[12] = rows_lo(g6);
    d.v[13] = rows_hi(g6);
    d.v[14] = rows_lo(g7);
    d.v[15] = rows_hi(g7);
    return d;
}

// The 4 rows of the even (lanes 0..3) and odd (lanes 4..7) channel of a loaded pair.
fn rows_lo(g: vec4<f32>) -> array<vec4<f32>, 4> {
    return array(subgroupBroadcast(g, 0u), subgroupBroadcast(g, 1u), subgroupBroadcast(g, 2u),
                 subgroupBroadcast(g, 3u));
}

fn rows_hi(g: vec4<f32>) -> array<vec4<f32>, 4> {
    return array(subgroupBroadcast(g, 4u), subgroupBroadcast(g, 5u), subgroupBroadcast(g, 6u),
                 subgroupBroadcast(g, 7u));
}

@compute @workgroup_size(64)
fn forward_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    forward_k3s1_body(wg, nwg, lid, lane);
}

@compute @workgroup_size(64)
fn forward_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    forward_k3s2_body(wg, nwg, lid, lane);
}

@compute @workgroup_size(64)
fn forward_k1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    forward_k1_body(wg, nwg, lid, lane);
}

@compute @workgroup_size(64)
fn backward_input_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    backward_input_k3s2_body(wg, nwg, lid, lane);
}

@compute @workgroup_size(WG)
fn backward_weight_k3s1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                        @builtin(subgroup_invocation_id) lane: u32) {
    backward_weight_k3s1_body(wg, lid, lane);
}

@compute @workgroup_size(WG)
fn backward_weight_k3s2(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                        @builtin(subgroup_invocation_id) lane: u32) {
    backward_weight_k3s2_body(wg, lid, lane);
}

@compute @workgroup_size(WG)
fn backward_weight_k1(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                      @builtin(subgroup_invocation_id) lane: u32) {
    backward_weight_k1_body(wg, lid, lane);
}
