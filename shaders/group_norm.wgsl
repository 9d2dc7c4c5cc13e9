// group_norm.wgsl — GroupNorm over NCHW f32 with affine γ, β and an optional fused SiLU, forward and backward.
//   forward:  per group (n, g) of k = (C/G)·H·W values: μ = Σx/k, σ² = Σ(x − μ)²/k (biased, as PyTorch),
//             rstd = 1/√(σ² + eps), x̂ = (x − μ)·rstd, z = γ[c]·x̂ + β[c], y = z, or silu(z) when fused.
//   backward: d_z = d_y, or d_y·silu'(z) with z recomputed from x, μ, rstd, γ, β;  d_β[c] = Σ_{n,hw} d_z,
//             d_γ[c] = Σ_{n,hw} d_z·x̂,  d_x = rstd·(d_x̂ − mean_g(d_x̂) − x̂·mean_g(d_x̂·x̂)), d_x̂ = γ[c]·d_z
//             (derived in src/reference/group_norm.rs).
// Layouts: x, y, d_y, d_x [N, C, H, W] (group (n, g) is the k contiguous values from (n·G + g)·k); gamma, beta,
//   d_gamma, d_beta [C]; mean, rstd [N, G]; partial [2, N, C] = (Σ_hw d_z, Σ_hw d_z·x̂) per (n, c).
// Dispatch: group_norm_forward, group_norm_backward_data (and their _vec4 forms, for H·W a multiple of 4): one
//   workgroup of 64 per (n, g), 2-D grid (wg.y·num_workgroups.x + wg.x); group_norm_backward_params: 64 per
//   workgroup, one channel each, summing partial over n in order. CPU adapters run group_norm_subgroup.wgsl.
// Work split: a channel is ⌈H·W/4⌉ quads; spc = max(1, 64/(C/G)) invocations share a channel, slot s taking quads
//   s, s + spc, …, and the workgroup steps through the group 64/spc channels per round (64, not 256: barriers cost
//   in proportion to the workgroup on CPU adapters). Forward: Σx, Σ(x − μ)² (two-pass: E[x²] − E[x]² cancels when
//   |μ| ≫ σ), then y. Backward: each round, slot 0 of a channel combines its slots into partial and adds γ[c]·them
//   to its accumulators; sum64 gives Σd_x̂, Σd_x̂·x̂; a last pass writes d_x. No atomics.
// Summation order (tests/it/group_norm.rs bounds it): an invocation's quads serially per vec4 component (over all its
//   rounds in the forward), the 4 components as a 2-level tree, then sum64: eight 3-level trees of 8, then one of
//   those 8; in the backward a channel's slots combine as a pairwise tree (⌈log₂ spc⌉ levels).
// Workgroup memory is written before it is read, so the wrapper skips zeroing it (gpu.kernel_uninit_workgroup).
// Saved for backward: mean, rstd.  Shared code: group_norm_common.wgsl.  Wrapper: src/kernels/group_norm.rs

const WG: u32 = 64u;

var<workgroup> red: array<vec2<f32>, WG>;
var<workgroup> red8: array<vec2<f32>, 8>;

// Sums red[0..64) as eight 3-level trees of 8 values, then a 3-level tree of their results: every invocation
// returns the same total. Call from uniform control flow after writing red[lid]. Two barriers; a later call may
// write red[lid] straight away (every read of red happened before this call's second barrier, every read of red8
// happens before the next call's first).
fn sum64(lid: u32) -> vec2<f32> {
    workgroupBarrier();
    if (lid < 8u) {
        let b = 8u * lid;
        red8[lid] = ((red[b] + red[b + 1u]) + (red[b + 2u] + red[b + 3u]))
            + ((red[b + 4u] + red[b + 5u]) + (red[b + 6u] + red[b + 7u]));
    }
    workgroupBarrier();
    return ((red8[0] + red8[1]) + (red8[2] + red8[3])) + ((red8[4] + red8[5]) + (red8[6] + red8[7]));
}

// The invocation's first channel (local to the group), or C/G (none) for the invocations past the last full slot.
fn first_channel(lid: u32, cg: u32) -> u32 {
    let cpr = WG / p.spc;
    return select(cg, lid / p.spc, lid < cpr * p.spc);
}

@compute @workgroup_size(WG)
fn group_norm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let grp = wg.y * nwg.x + wg.x; // n·G + g
    // `grp` is uniform across the workgroup, so this early return keeps the barriers below in uniform control flow.
    if (grp >= p.n * p.groups) { return; }
    let k = p.group_len;
    let cg = p.c / p.groups;
    let c_first = (grp % p.groups) * cg;
    let row0 = grp * k; // channel cl of the group starts at row0 + cl·hw
    let spc = p.spc;
    let cpr = WG / spc;
    let slot = lid % spc;
    let first = first_channel(lid, cg);
    let quads = (p.hw + 3u) / 4u;

    var s = vec4<f32>();
    for (var cl = first; cl < cg; cl += cpr) {
        let row = row0 + cl * p.hw;
        for (var q = slot; q < quads; q += spc) {
            s += select(vec4<f32>(), load_x(row, q), in_row(q));
        }
    }
    red[lid] = vec2<f32>(hsum(s), 0.0);
    let mu = sum64(lid).x / f32(k);

    var v = vec4<f32>();
    for (var cl = first; cl < cg; cl += cpr) {
        let row = row0 + cl * p.hw;
        for (var q = slot; q < quads; q += spc) {
            let t = select(vec4<f32>(), load_x(row, q) - mu, in_row(q));
            v += t * t;
        }
    }
    red[lid] = vec2<f32>(hsum(v), 0.0);
    let r = inverseSqrt(sum64(lid).x / f32(k) + p.eps);
    if (lid == 0u) {
        mean_out[grp] = mu;
        rstd_out[grp] = r;
    }

    for (var cl = first; cl < cg; cl += cpr) {
        let row = row0 + cl * p.hw;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        for (var q = slot; q < quads; q += spc) {
            store_y(row, q, normalized(load_x(row, q), mu, r, g, b));
        }
    }
}

@compute @workgroup_size(WG)
fn group_norm_forward_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                           @builtin(local_invocation_index) lid: u32) {
    let grp = wg.y * nwg.x + wg.x; // n·G + g
    if (grp >= p.n * p.groups) { return; } // uniform: the barriers stay in uniform control flow
    let k = p.group_len;
    let cg = p.c / p.groups;
    let c_first = (grp % p.groups) * cg;
    let row0 = grp * (k / 4u); // in quads: channel cl of the group starts at quad row0 + cl·hw/4
    let quads = p.hw / 4u;
    let spc = p.spc;
    let cpr = WG / spc;
    let slot = lid % spc;
    let first = first_channel(lid, cg);

    var s = vec4<f32>();
    for (var cl = first; cl < cg; cl += cpr) {
        let row = row0 + cl * quads;
        for (var q = slot; q < quads; q += spc) {
            s += x4[row + q];
        }
    }
    red[lid] = vec2<f32>(hsum(s), 0.0);
    let mu = sum64(lid).x / f32(k);

    var v = vec4<f32>();
    for (var cl = first; cl < cg; cl += cpr) {
        let row = row0 + cl * quads;
        for (var q = slot; q < quads; q += spc) {
            let t = x4[row + q] - mu;
            v += t * t;
        }
    }
    red[lid] = vec2<f32>(hsum(v), 0.0);
    let r = inverseSqrt(sum64(lid).x / f32(k) + p.eps);
    if (lid == 0u) {
        mean_out[grp] = mu;
        rstd_out[grp] = r;
    }

    for (var cl = first; cl < cg; cl += cpr) {
        let row = row0 + cl * quads;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        for (var q = slot; q < quads; q += spc) {
            y4[row + q] = normalized(x4[row + q], mu, r, g, b);
        }
    }
}

// Run by slot 0 (invocation lid) of channel c: combines the channel's per-slot sums red[lid .. lid + spc) as a
// pairwise tree, in place (only this invocation touches that range), stores them in `partial` for sample n, and
// returns them (Σ_hw d_z, Σ_hw d_z·x̂).
fn channel_sums(lid: u32, n: u32, c: u32) -> vec2<f32> {
    for (var stride = 1u; stride < p.spc; stride *= 2u) {
        for (var i = 0u; i + stride < p.spc; i += 2u * stride) {
            red[lid + i] += red[lid + i + stride];
        }
    }
    let t = red[lid];
    partial[n * p.c + c] = t.x;
    partial[(p.n + n) * p.c + c] = t.y;
    return t;
}

@compute @workgroup_size(WG)
fn group_norm_backward_data(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let grp = wg.y * nwg.x + wg.x; // n·G + g
    // Uniform early return: the barriers below stay in uniform control flow.
    if (grp >= p.n * p.groups) { return; }
    let n = grp / p.groups;
    let k = p.group_len;
    let cg = p.c / p.groups;
    let c_first = (grp % p.groups) * cg;
    let row0 = grp * k;
    let mu = mean[grp];
    let r = rstd[grp];
    let spc = p.spc;
    let cpr = WG / spc;
    let slot = lid % spc;
    let first = first_channel(lid, cg);
    let quads = (p.hw + 3u) / 4u;

    // Slot 0 of each channel accumulates γ[c]·Σ_hw d_z and γ[c]·Σ_hw d_z·x̂ over the channels of its rounds.
    var acc = vec2<f32>();
    let rounds = (cg + cpr - 1u) / cpr;
    for (var round = 0u; round < rounds; round++) {
        let cl = first + round * cpr;
        let live = cl < cg;
        var s1 = vec4<f32>();
        var s2 = vec4<f32>();
        var g = 0.0;
        if (live) {
            let row = row0 + cl * p.hw;
            g = gamma[c_first + cl];
            let b = beta[c_first + cl];
            for (var q = slot; q < quads; q += spc) {
                let xh = (load_x(row, q) - mu) * r;
                let dz = select(vec4<f32>(), grad_z(load_dy(row, q), xh, g, b), in_row(q));
                s1 += dz;
                s2 += dz * xh;
            }
        }
        red[lid] = vec2<f32>(hsum(s1), hsum(s2));
        workgroupBarrier();
        if (live && slot == 0u) {
            acc += g * channel_sums(lid, n, c_first + cl);
        }
        workgroupBarrier(); // the next round, or the group sum, overwrites red
    }
    red[lid] = acc;
    let tot = sum64(lid);
    let mean_dxh = tot.x / f32(k);
    let mean_dxh_xh = tot.y / f32(k);

    for (var cl = first; cl < cg; cl += cpr) {
        let row = row0 + cl * p.hw;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        for (var q = slot; q < quads; q += spc) {
            store_dx(row, q, grad_x(load_x(row, q), load_dy(row, q), mu, r, g, b, mean_dxh, mean_dxh_xh));
        }
    }
}

@compute @workgroup_size(WG)
fn group_norm_backward_data_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                                 @builtin(local_invocation_index) lid: u32) {
    let grp = wg.y * nwg.x + wg.x; // n·G + g
    if (grp >= p.n * p.groups) { return; } // uniform: the barriers stay in uniform control flow
    let n = grp / p.groups;
    let k = p.group_len;
    let cg = p.c / p.groups;
    let c_first = (grp % p.groups) * cg;
    let row0 = grp * (k / 4u); // in quads
    let quads = p.hw / 4u;
    let mu = mean[grp];
    let r = rstd[grp];
    let spc = p.spc;
    let cpr = WG / spc;
    let slot = lid % spc;
    let first = first_channel(lid, cg);

    var acc = vec2<f32>();
    let rounds = (cg + cpr - 1u) / cpr;
    for (var round = 0u; round < rounds; round++) {
        let cl = first + round * cpr;
        let live = cl < cg;
        var s1 = vec4<f32>();
        var s2 = vec4<f32>();
        var g = 0.0;
        if (live) {
            let row = row0 + cl * quads;
            g = gamma[c_first + cl];
            let b = beta[c_first + cl];
            for (var q = slot; q < quads; q += spc) {
                let xh = (x4[row + q] - mu) * r;
                let dz = grad_z(d_y4[row + q], xh, g, b);
                s1 += dz;
                s2 += dz * xh;
            }
        }
        red[lid] = vec2<f32>(hsum(s1), hsum(s2));
        workgroupBarrier();
        if (live && slot == 0u) {
            acc += g * channel_sums(lid, n, c_first + cl);
        }
        workgroupBarrier(); // the next round, or the group sum, overwrites red
    }
    red[lid] = acc;
    let tot = sum64(lid);
    let mean_dxh = tot.x / f32(k);
    let mean_dxh_xh = tot.y / f32(k);

    for (var cl = first; cl < cg; cl += cpr) {
        let row = row0 + cl * quads;
        let g = gamma[c_first + cl];
        let b = beta[c_first + cl];
        for (var q = slot; q < quads; q += spc) {
            d_x4[row + q] = grad_x(x4[row + q], d_y4[row + q], mu, r, g, b, mean_dxh, mean_dxh_xh);
        }
    }
}

@compute @workgroup_size(WG)
fn group_norm_backward_params(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    if (c >= p.c) { return; }
    var s_dz = 0.0;
    var s_dz_xh = 0.0;
    for (var n = 0u; n < p.n; n++) {
        s_dz += partial_in[n * p.c + c];
        s_dz_xh += partial_in[(p.n + n) * p.c + c];
    }
    d_beta[c] = s_dz;
    d_gamma[c] = s_dz_xh;
}
