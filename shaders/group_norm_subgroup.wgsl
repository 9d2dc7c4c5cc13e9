// group_norm_subgroup.wgsl — group_norm.wgsl's per-group passes (forward; backward d_x with the per-channel partial
// sums) with each group reduced by one subgroup instead of one workgroup. Same math, buffers, layouts and Params as
// group_norm.wgsl (read its header); group_norm_common.wgsl, prepended by src/gpu/shaders.rs, holds what the two
// share, and the backward's second dispatch is group_norm.wgsl's group_norm_backward_params.
// Why: on a CPU adapter each barrier and each workgroup has a fixed cost that dwarfs a small group's work (a few
// values per invocation at 7×7); here the sums are subgroupAdds in registers, with no workgroup memory, no barrier
// and S times fewer workgroups. The wrapper picks it for CPU adapters (src/kernels/group_norm.rs).
// Dispatch: workgroups of 64 = 64/S subgroups of S lanes on a 2-D grid; subgroup s of workgroup w (linear index
// wg.y·num_workgroups.x + wg.x) owns group n·G + g = w·64/S + s. A subgroup past the last group recomputes the last
// one and stores nothing, so every subgroup operation runs with all its lanes.
// Work split: the subgroup walks the group's channels in order and, within each, the ⌈H·W/4⌉ quads S at a time,
// lane l taking quads l, l + S, … (vec4 loads where H·W is a multiple of 4, else masked quads as in group_norm.wgsl).
// Loop bounds depend only on Params and S, so every subgroupAdd is in subgroup-uniform control flow.
// Summation order (tests/it/group_norm.rs bounds it): each lane's quads serially per vec4 component, the 4 components
// as a 2-level tree, then subgroupAdd over the S lanes in an order the implementation picks (bounded as S − 1
// levels); the forward sums the whole group so, the backward each channel (→ partial), then adds γ[c]·(channel
// sums) over the group's channels serially, in order.
// Requires the SUBGROUP feature, full subgroups of S ≤ 64 lanes numbered 0..S (a workgroup of 64 is whole
// subgroups); the wrapper checks the adapter's subgroup sizes.
// Saved for backward: mean, rstd.  Wrapper: src/kernels/group_norm.rs (Path::Auto on CPU adapters, Path::Subgroup).

// The group this subgroup owns, clamped to the last one; `live` is false for a subgroup past the last group.
struct Owner {
    grp: u32,
    live: bool,
}

fn owner(wg: vec3<u32>, nwg: vec3<u32>, sg: u32, sgs: u32) -> Owner {
    let grp = (wg.y * nwg.x + wg.x) * sgs + sg;
    let groups = p.n * p.groups;
    return Owner(min(grp, groups - 1u), grp < groups);
}

@compute @workgroup_size(64)
fn group_norm_forward_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                               @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) sgs: u32,
                               @builtin(subgroup_invocation_id) lane: u32,
                               @builtin(subgroup_size) lanes: u32) {
    let o = owner(wg, nwg, sg, sgs);
    let k = p.group_len;
    let cg = p.c / p.groups;
    let c_first = (o.grp % p.groups) * cg;
    let row0 = o.grp * k; // channel cl of the group starts at row0 + cl·hw
    let quads = (p.hw + 3u) / 4u;
    let steps = (quads + lanes - 1u) / lanes;

    var s = vec4<f32>();
    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * p.hw;
        for (var i = 0u; i < steps; i++) {
            let q = i * lanes + lane;
            if (q < quads) { s += select(vec4<f32>(), load_x(row, q), in_row(q)); }
        }
    }
    let mu = subgroupAdd(hsum(s)) / f32(k);

    var v = vec4<f32>();
    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * p.hw;
        for (var i = 0u; i < steps; i++) {
            let q = i * lanes + lane;
            if (q < quads) {
                let t = select(vec4<f32>(), load_x(row, q) - mu, in_row(q));
                v += t * t;
            }
        }
    }
    let r = inverseSqrt(subgroupAdd(hsum(v)) / f32(k) + p.eps);
    if (!o.live) { return; } // after the last subgroup operation
    if (lane == 0u) {
        mean_out[o.grp] = mu;
        rstd_out[o.grp] = r;
    }

    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * p.hw;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        for (var q = lane; q < quads; q += lanes) {
            store_y(row, q, normalized(load_x(row, q), mu, r, g, b));
        }
    }
}

@compute @workgroup_size(64)
fn group_norm_forward_subgroup_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                    @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) sgs: u32,
                                    @builtin(subgroup_invocation_id) lane: u32,
                                    @builtin(subgroup_size) lanes: u32) {
    let o = owner(wg, nwg, sg, sgs);
    let k = p.group_len;
    let cg = p.c / p.groups;
    let c_first = (o.grp % p.groups) * cg;
    let quads = p.hw / 4u;
    let row0 = o.grp * (k / 4u); // in quads: channel cl of the group starts at quad row0 + cl·hw/4
    let steps = (quads + lanes - 1u) / lanes;

    var s = vec4<f32>();
    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * quads;
        for (var i = 0u; i < steps; i++) {
            let q = i * lanes + lane;
            if (q < quads) { s += x4[row + q]; }
        }
    }
    let mu = subgroupAdd(hsum(s)) / f32(k);

    var v = vec4<f32>();
    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * quads;
        for (var i = 0u; i < steps; i++) {
            let q = i * lanes + lane;
            if (q < quads) {
                let t = x4[row + q] - mu;
                v += t * t;
            }
        }
    }
    let r = inverseSqrt(subgroupAdd(hsum(v)) / f32(k) + p.eps);
    if (!o.live) { return; } // after the last subgroup operation
    if (lane == 0u) {
        mean_out[o.grp] = mu;
        rstd_out[o.grp] = r;
    }

    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * quads;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        for (var q = lane; q < quads; q += lanes) {
            y4[row + q] = normalized(x4[row + q], mu, r, g, b);
        }
    }
}

// The channel's (Σ_hw d_z, Σ_hw d_z·x̂) from each lane's vec4 shares, the same in every lane; lane 0 of a live
// subgroup stores them in `partial` for sample n, channel c.
fn channel_sums(s1: vec4<f32>, s2: vec4<f32>, live: bool, lane: u32, n: u32, c: u32) -> vec2<f32> {
    let t = subgroupAdd(vec2<f32>(hsum(s1), hsum(s2)));
    if (live && lane == 0u) {
        partial[n * p.c + c] = t.x;
        partial[(p.n + n) * p.c + c] = t.y;
    }
    return t;
}

@compute @workgroup_size(64)
fn group_norm_backward_data_subgroup(@builtin(workgroup_id) wg: vec3<u32>,
                                     @builtin(num_workgroups) nwg: vec3<u32>,
                                     @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) sgs: u32,
                                     @builtin(subgroup_invocation_id) lane: u32,
                                     @builtin(subgroup_size) lanes: u32) {
    let o = owner(wg, nwg, sg, sgs);
    let n = o.grp / p.groups;
    let k = p.group_len;
    let cg = p.c / p.groups;
    let c_first = (o.grp % p.groups) * cg;
    let row0 = o.grp * k;
    let mu = mean[o.grp];
    let r = rstd[o.grp];
    let quads = (p.hw + 3u) / 4u;
    let steps = (quads + lanes - 1u) / lanes;

    // γ[c]·Σ_hw d_z and γ[c]·Σ_hw d_z·x̂, accumulated over the channels in order.
    var acc = vec2<f32>();
    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * p.hw;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        var s1 = vec4<f32>();
        var s2 = vec4<f32>();
        for (var i = 0u; i < steps; i++) {
            let q = i * lanes + lane;
            if (q < quads) {
                let xh = (load_x(row, q) - mu) * r;
                let dz = select(vec4<f32>(), grad_z(load_dy(row, q), xh, g, b), in_row(q));
                s1 += dz;
                s2 += dz * xh;
            }
        }
        acc += g * channel_sums(s1, s2, o.live, lane, n, c_first + cl);
    }
    if (!o.live) { return; } // after the last subgroup operation
    let mean_dxh = acc.x / f32(k);
    let mean_dxh_xh = acc.y / f32(k);

    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * p.hw;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        for (var q = lane; q < quads; q += lanes) {
            store_dx(row, q, grad_x(load_x(row, q), load_dy(row, q), mu, r, g, b, mean_dxh, mean_dxh_xh));
        }
    }
}

@compute @workgroup_size(64)
fn group_norm_backward_data_subgroup_vec4(@builtin(workgroup_id) wg: vec3<u32>,
                                          @builtin(num_workgroups) nwg: vec3<u32>,
                                          @builtin(subgroup_id) sg: u32, @builtin(num_subgroups) sgs: u32,
                                          @builtin(subgroup_invocation_id) lane: u32,
                                          @builtin(subgroup_size) lanes: u32) {
    let o = owner(wg, nwg, sg, sgs);
    let n = o.grp / p.groups;
    let k = p.group_len;
    let cg = p.c / p.groups;
    let c_first = (o.grp % p.groups) * cg;
    let quads = p.hw / 4u;
    let row0 = o.grp * (k / 4u); // in quads
    let mu = mean[o.grp];
    let r = rstd[o.grp];
    let steps = (quads + lanes - 1u) / lanes;

    var acc = vec2<f32>();
    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * quads;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        var s1 = vec4<f32>();
        var s2 = vec4<f32>();
        for (var i = 0u; i < steps; i++) {
            let q = i * lanes + lane;
            if (q < quads) {
                let xh = (x4[row + q] - mu) * r;
                let dz = grad_z(d_y4[row + q], xh, g, b);
                s1 += dz;
                s2 += dz * xh;
            }
        }
        acc += g * channel_sums(s1, s2, o.live, lane, n, c_first + cl);
    }
    if (!o.live) { return; } // after the last subgroup operation
    let mean_dxh = acc.x / f32(k);
    let mean_dxh_xh = acc.y / f32(k);

    for (var cl = 0u; cl < cg; cl++) {
        let row = row0 + cl * quads;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        for (var q = lane; q < quads; q += lanes) {
            d_x4[row + q] = grad_x(x4[row + q], d_y4[row + q], mu, r, g, b, mean_dxh, mean_dxh_xh);
        }
    }
}
