// group_norm.wgsl — GroupNorm over NCHW f32 with affine γ, β and an optional fused SiLU, forward and backward.
//   forward:  group g of sample n holds the k = (C/G)·H·W values of channels g·C/G .. (g+1)·C/G;
//             μ = Σx / k,  σ² = Σ(x − μ)² / k (biased, as PyTorch),  rstd = 1/√(σ² + eps),
//             x̂ = (x − μ)·rstd,  z = γ[c]·x̂ + β[c],  y = z, or y = silu(z) = z·sigmoid(z) when fused.
//   backward: d_z = d_y, or d_y·silu'(z) with z recomputed from x, μ, rstd, γ, β (never stored);
//             d_β[c] = Σ_{n,hw} d_z,  d_γ[c] = Σ_{n,hw} d_z·x̂,
//             d_x = rstd·(d_x̂ − mean_g(d_x̂) − x̂·mean_g(d_x̂·x̂)) with d_x̂ = γ[c]·d_z (derived in
//             src/reference/group_norm.rs).
// Layouts: x, y, d_y, d_x: [N, C, H, W]; gamma, beta, d_gamma, d_beta: [C]; mean, rstd: [N, G];
//   partial: [2, N, C], partial[0, n, c] = Σ_hw d_z and partial[1, n, c] = Σ_hw d_z·x̂.
//   A group's values are contiguous: elements (n·G + g)·k .. (n·G + g + 1)·k.
// Dispatch:
//   group_norm_forward: one workgroup of 256 per (n, g) on a 2-D grid (linear index wg.y·num_workgroups.x + wg.x).
//     Three passes over the group (Σx, Σ(x − μ)², write y): the variance is two-pass because the one-pass
//     E[x²] − E[x]² cancels away every digit of σ² when |μ| ≫ σ.
//   group_norm_backward_data: one workgroup of 256 per (n, g). The workgroup splits into 256/lanes slots of
//     `lanes` invocations (lanes = min(256, next power of two ≥ H·W)); each slot reduces one channel's Σ_hw d_z
//     and Σ_hw d_z·x̂ at a time, so small maps (7×7, 1×1) do not leave most invocations idle. Those sums go to
//     `partial` and, weighted by γ[c], into the group sums Σd_x̂ and Σd_x̂·x̂; a last pass writes d_x.
//   group_norm_backward_params: one invocation per channel sums partial over n in order: d_γ, d_β. No float
//     atomics anywhere, so results do not depend on scheduling.
// Summation order (the tests' error bounds rely on it): each invocation sums its strided share serially, then a
//   tree over the workgroup, so a term of a k-term sum meets at most ⌈k/256⌉ + 8 roundings.
// Saved for backward: mean, rstd.  Wrapper: src/kernels/group_norm.rs

struct Params {
    n: u32,
    c: u32,
    hw: u32,
    groups: u32,
    group_len: u32, // k = (C/G)·H·W
    eps: f32,
    silu: u32,      // 1: y = silu(z)
    lanes: u32,     // group_norm_backward_data: invocations per channel, a power of two ≤ 256
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
// Forward outputs.
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> mean_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd_out: array<f32>;
// Backward inputs and outputs.
@group(0) @binding(7) var<storage, read> mean: array<f32>;
@group(0) @binding(8) var<storage, read> rstd: array<f32>;
@group(0) @binding(9) var<storage, read> d_y: array<f32>;
@group(0) @binding(10) var<storage, read_write> d_x: array<f32>;
@group(0) @binding(11) var<storage, read_write> partial: array<f32>;
@group(0) @binding(12) var<storage, read> partial_in: array<f32>;
@group(0) @binding(13) var<storage, read_write> d_gamma: array<f32>;
@group(0) @binding(14) var<storage, read_write> d_beta: array<f32>;

const WG: u32 = 256u;

var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

// Tree-sums red_a[0..256) into red_a[0]. Call from uniform control flow, after writing red_a[lid].
fn sum_red_a(lid: u32) {
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            red_a[lid] += red_a[lid + stride];
        }
        workgroupBarrier();
    }
}

// As sum_red_a, for red_a and red_b together.
fn sum_red_ab(lid: u32, width: u32) {
    workgroupBarrier();
    for (var stride = width / 2u; stride > 0u; stride /= 2u) {
        if (lid % width < stride) {
            red_a[lid] += red_a[lid + stride];
            red_b[lid] += red_b[lid + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn group_norm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let grp = wg.y * nwg.x + wg.x; // n·G + g
    // `grp` is uniform across the workgroup, so this early return keeps the barriers below in uniform control flow.
    if (grp >= p.n * p.groups) { return; }
    let k = p.group_len;
    let base = grp * k;

    var s = 0.0;
    for (var i = lid; i < k; i += WG) {
        s += x[base + i];
    }
    red_a[lid] = s;
    sum_red_a(lid);
    let mu = red_a[0] / f32(k);
    workgroupBarrier(); // every invocation has read red_a[0] before the next pass overwrites it

    var q = 0.0;
    for (var i = lid; i < k; i += WG) {
        let t = x[base + i] - mu;
        q += t * t;
    }
    red_a[lid] = q;
    sum_red_a(lid);
    let r = inverseSqrt(red_a[0] / f32(k) + p.eps);
    if (lid == 0u) {
        mean_out[grp] = mu;
        rstd_out[grp] = r;
    }

    let c_first = (grp % p.groups) * (p.c / p.groups);
    for (var i = lid; i < k; i += WG) {
        let c = c_first + i / p.hw;
        let z = (x[base + i] - mu) * r * gamma[c] + beta[c];
        if (p.silu != 0u) {
            y[base + i] = z * sigmoid(z);
        } else {
            y[base + i] = z;
        }
    }
}

// ∂L/∂z from ∂L/∂y at one element of channel c with normalised value xh; z is recomputed exactly as the forward
// computed it.
fn grad_z(dy: f32, xh: f32, c: u32) -> f32 {
    if (p.silu == 0u) {
        return dy;
    }
    let z = xh * gamma[c] + beta[c];
    let s = sigmoid(z);
    return dy * s * (1.0 + z * (1.0 - s));
}

@compute @workgroup_size(256)
fn group_norm_backward_data(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                            @builtin(local_invocation_index) lid: u32) {
    let grp = wg.y * nwg.x + wg.x; // n·G + g
    // Uniform early return: the barriers below stay in uniform control flow.
    if (grp >= p.n * p.groups) { return; }
    let n = grp / p.groups;
    let cg = p.c / p.groups;
    let c_first = (grp % p.groups) * cg;
    let mu = mean[grp];
    let r = rstd[grp];

    let slots = WG / p.lanes;
    let slot = lid / p.lanes;
    let lane = lid % p.lanes;
    // Lane 0 of each slot accumulates γ[c]·Σ_hw d_z and γ[c]·Σ_hw d_z·x̂ over the channels its slot handled.
    var acc_a = 0.0;
    var acc_b = 0.0;
    for (var chunk = 0u; chunk < cg; chunk += slots) {
        let cl = chunk + slot;
        let c = c_first + cl;
        var s_dz = 0.0;
        var s_dz_xh = 0.0;
        if (cl < cg) {
            let row = (n * p.c + c) * p.hw;
            for (var j = lane; j < p.hw; j += p.lanes) {
                let xh = (x[row + j] - mu) * r;
                let dz = grad_z(d_y[row + j], xh, c);
                s_dz += dz;
                s_dz_xh += dz * xh;
            }
        }
        red_a[lid] = s_dz;
        red_b[lid] = s_dz_xh;
        sum_red_ab(lid, p.lanes);
        if (lane == 0u && cl < cg) {
            let s1 = red_a[lid];
            let s2 = red_b[lid];
            partial[n * p.c + c] = s1;
            partial[(p.n + n) * p.c + c] = s2;
            acc_a += gamma[c] * s1;
            acc_b += gamma[c] * s2;
        }
        workgroupBarrier(); // the next chunk overwrites red_a, red_b
    }
    red_a[lid] = acc_a;
    red_b[lid] = acc_b;
    sum_red_ab(lid, WG);
    let mean_dxh = red_a[0] / f32(p.group_len);
    let mean_dxh_xh = red_b[0] / f32(p.group_len);

    let base = grp * p.group_len;
    for (var i = lid; i < p.group_len; i += WG) {
        let c = c_first + i / p.hw;
        let xh = (x[base + i] - mu) * r;
        let dxh = gamma[c] * grad_z(d_y[base + i], xh, c);
        d_x[base + i] = r * (dxh - mean_dxh - xh * mean_dxh_xh);
    }
}

@compute @workgroup_size(64)
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
