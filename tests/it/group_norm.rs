//! shaders/group_norm.wgsl against src/reference/group_norm.rs.
//!
//! Tolerances: a first-order error analysis in f32 (u = 2⁻²⁴), evaluated per element from the exact f64 values
//! (`forward_bounds`, `backward_bounds` spell out every term). The ingredients:
//! - A sum in the kernels' order is within γ_D·Σ|terms| (reference::gamma), D the most roundings one term meets
//!   (`Split` spells out D for each sum from the kernels' work split).
//! - Mean: |δμ| ≤ γ_D·Σ|x|/k + 5u·|μ| (WGSL division is good to 2.5 ULP ≤ 5u).
//! - Variance Σ(x − μ̂)²/k: every term carries 3u (difference and square), the sum γ_D, the division 5u; the shift
//!   of μ̂ adds exactly δμ² (Σ(x − μ) = 0). rstd = inverseSqrt(σ² + eps) halves the relative error of its argument
//!   and adds 2 ULP ≤ 4u.
//! - y = ((x − μ̂)·rstd)·γ + β: δμ and the rstd error carried through, plus one rounding per operation. The fused
//!   SiLU's slope is at most 1.1 and its own evaluation is held to (8 + 2|z|) ULP, as in tests/it/elementwise.rs.
//! - Backward: the same for x̂ and z recomputed from the forward's saved mean/rstd (whose bounds were just
//!   checked), silu' evaluated with sigmoid good to (12 + 4|z|)u and |silu''| ≤ ½, then the two group sums and the
//!   per-channel sums over (n, hw) with their summation depths.
//!
//! Products of two error terms (O(u²·k²)) are neglected.

use crate::common;

use common::{assert_close, check_subgroup_choice, gpu, subgroup_paths, uniform};
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::group_norm::{
    group_norm_backward, group_norm_backward_via, group_norm_forward, group_norm_forward_via,
    slots_per_channel, GroupNorm, Path, WORKGROUP_SIZE,
};
use diffuse::kernels::select::{self, group_norm_subgroup_available, GroupNormKernel};
use diffuse::reference::elementwise::sigmoid;
use diffuse::reference::group_norm::{self as reference, Shape};
use diffuse::reference::{gamma, gradcheck, to_f64, F32_UNIT_ROUNDOFF as U};

/// Most roundings a term meets in each sum the kernels take, from their work split over one group.
struct Split {
    /// A whole-group sum of the forward (Σx, Σ(x − μ)²).
    group: usize,
    /// A per-(n, c) sum over H·W of the backward.
    channel: usize,
    /// The backward's group sums Σd_x̂, Σd_x̂·x̂, built from the per-channel sums times γ.
    group_from_channels: usize,
}

impl Split {
    fn new(s: Shape, path: Path) -> Split {
        let cg = s.c / s.groups;
        let quads = s.hw.div_ceil(4);
        if path == Path::Subgroup {
            // shaders/group_norm_subgroup.wgsl: a subgroup of S lanes per group; lane l takes every S-th quad of
            // each channel (one serial sum per vec4 component), then the vec4's 2-level tree, then subgroupAdd
            // over the lanes in an order the implementation picks: up to S − 1 levels.
            let lanes = gpu().info.subgroup_max_size as usize;
            let steps = quads.div_ceil(lanes);
            let channel = steps + 2 + lanes - 1;
            return Split {
                group: cg * steps + 2 + lanes - 1,
                channel,
                // γ·(channel sums), added over the group's channels in order.
                group_from_channels: channel + 1 + cg,
            };
        }
        // shaders/group_norm.wgsl: each channel's quads are shared by `spc` invocations (invocation-serial over
        // quads spc apart, one serial sum per vec4 component), and the workgroup takes 64/spc channels per round.
        let spc = slots_per_channel(cg);
        let quads_per_slot = quads.div_ceil(spc);
        let rounds = cg.div_ceil(WORKGROUP_SIZE / spc);
        // The per-channel sums: the serial share, the vec4's 2 levels, the pairwise tree over the slots.
        let channel = quads_per_slot + 2 + spc.next_power_of_two().ilog2() as usize;
        Split {
            // The serial share over all rounds, the vec4's 2-level tree, sum64's 3 + 3 levels.
            group: rounds * quads_per_slot + 2 + 6,
            channel,
            // γ·(channel sums), accumulated serially over the rounds, then sum64's 6 levels.
            group_from_channels: channel + 1 + rounds + 6,
        }
    }
}

/// The eps the reference uses, written here rather than read off the layer under test: PyTorch's
/// `nn.GroupNorm` default, which `GroupNorm::new` promises. Read off the layer, a wrong default would be tested
/// against itself and pass. Kept as the f32 the GPU is given, so the reference sees exactly the same eps.
const PYTORCH_EPS: f32 = 1e-5;

/// The f32 inputs of one case and the exact f64 quantities the bounds are built from.
struct Case {
    s: Shape,
    eps: f64,
    silu: bool,
    x: Vec<f64>,
    gamma: Vec<f64>,
    beta: Vec<f64>,
    d_y: Vec<f64>,
    mean: Vec<f64>,
    rstd: Vec<f64>,
    x_hat: Vec<f64>,
    z: Vec<f64>,
}

impl Case {
    fn new(s: Shape, silu: bool, x: &[f32], gamma: &[f32], beta: &[f32], d_y: &[f32]) -> Case {
        let eps = PYTORCH_EPS as f64;
        let (x, gamma, beta, d_y) = (to_f64(x), to_f64(gamma), to_f64(beta), to_f64(d_y));
        let (mean, rstd) = reference::statistics(&x, s, eps);
        let x_hat: Vec<f64> = (0..x.len())
            .map(|i| (x[i] - mean[s.group(i)]) * rstd[s.group(i)])
            .collect();
        let z = (0..x.len())
            .map(|i| gamma[s.channel(i)] * x_hat[i] + beta[s.channel(i)])
            .collect();
        Case {
            s,
            eps,
            silu,
            x,
            gamma,
            beta,
            d_y,
            mean,
            rstd,
            x_hat,
            z,
        }
    }

    fn variance(&self, g: usize) -> f64 {
        1.0 / (self.rstd[g] * self.rstd[g]) - self.eps
    }
}

/// Bounds on the saved statistics: |δμ| per group, and the relative error of rstd per group.
fn stats_bounds(case: &Case, path: Path) -> (Vec<f64>, Vec<f64>) {
    let k = case.s.group_len();
    let d = Split::new(case.s, path).group;
    case.x
        .chunks(k)
        .enumerate()
        .map(|(g, xs)| {
            let d_mu = gamma(d) * xs.iter().map(|v| v.abs()).sum::<f64>() / k as f64
                + 5.0 * U * case.mean[g].abs();
            let var = case.variance(g);
            let d_var = gamma(d + 8) * (var + d_mu * d_mu) + d_mu * d_mu;
            let rel_rstd = 0.5 * (d_var + U * (var + case.eps)) / (var + case.eps) + 4.0 * U;
            (d_mu, rel_rstd)
        })
        .unzip()
}

/// Bound on |y_gpu − y| per element.
fn forward_bounds(case: &Case, d_mu: &[f64], rel_rstd: &[f64]) -> Vec<f64> {
    let s = case.s;
    (0..case.x.len())
        .map(|i| {
            let (g, c) = (s.group(i), s.channel(i));
            let (xh, z) = (case.x_hat[i], case.z[i]);
            let dz = case.gamma[c].abs()
                * (case.rstd[g] * d_mu[g] + xh.abs() * (rel_rstd[g] + 3.0 * U))
                + U * z.abs();
            if case.silu {
                1.1 * dz + (8.0 + 2.0 * z.abs()) * 2.0 * U * (z * sigmoid(z)).abs()
            } else {
                dz
            }
        })
        .collect()
}

struct BackwardBounds {
    d_x: Vec<f64>,
    d_gamma: Vec<f64>,
    d_beta: Vec<f64>,
}

fn backward_bounds(case: &Case, path: Path, d_mu: &[f64], rel_rstd: &[f64]) -> BackwardBounds {
    let s = case.s;
    let len = case.x.len();
    let k = s.group_len();
    // Error of the recomputed x̂ (from the saved μ̂, rstd) and of d_z, per element.
    let f: Vec<f64> = (0..len)
        .map(|i| {
            case.rstd[s.group(i)] * d_mu[s.group(i)]
                + case.x_hat[i].abs() * (rel_rstd[s.group(i)] + 2.0 * U)
        })
        .collect();
    let mut d_z = vec![0.0; len];
    let mut e_z = vec![0.0; len];
    for i in 0..len {
        if !case.silu {
            d_z[i] = case.d_y[i];
            continue;
        }
        let (z, c) = (case.z[i], s.channel(i));
        let sg = sigmoid(z);
        let slope = sg * (1.0 + z * (1.0 - sg));
        d_z[i] = case.d_y[i] * slope;
        // z = x̂·γ + β recomputed: f through γ, plus two roundings.
        let dz = case.gamma[c].abs() * f[i] + U * ((case.gamma[c] * case.x_hat[i]).abs() + z.abs());
        // silu'(z) = s·(1 + z·(1 − s)) with s good to ε_s: ≤ s·|z|·(s·ε_s + 2u) + |silu'|·(2u + ε_s).
        let eps_s = (12.0 + 4.0 * z.abs()) * U;
        let eval = sg * z.abs() * (sg * eps_s + 2.0 * U) + slope.abs() * (2.0 * U + eps_s);
        e_z[i] = case.d_y[i].abs() * (0.5 * dz + eval) + U * d_z[i].abs();
    }
    let g: Vec<f64> = (0..len)
        .map(|i| case.gamma[s.channel(i)] * d_z[i])
        .collect();
    let e_g: Vec<f64> = (0..len)
        .map(|i| case.gamma[s.channel(i)].abs() * e_z[i] + U * g[i].abs())
        .collect();

    // Group sums A = Σ d_x̂, B = Σ d_x̂·x̂: per-channel sums over hw, times γ, then summed over the group.
    let split = Split::new(s, path);
    let depth_a = split.group_from_channels;
    let mut d_x = vec![0.0; len];
    for (grp, (&rs, &rel_rstd)) in case.rstd.iter().zip(rel_rstd).enumerate() {
        let r = grp * k..(grp + 1) * k;
        let sum = |t: &dyn Fn(usize) -> f64| r.clone().map(t).sum::<f64>();
        let a = sum(&|i| g[i]);
        let b = sum(&|i| g[i] * case.x_hat[i]);
        let d_a = sum(&|i| e_g[i]) + gamma(depth_a) * sum(&|i| g[i].abs());
        let d_b = sum(&|i| e_g[i] * case.x_hat[i].abs() + g[i].abs() * f[i])
            + gamma(depth_a + 1) * sum(&|i| (g[i] * case.x_hat[i]).abs());
        let kf = k as f64;
        for i in r.clone() {
            let xh = case.x_hat[i];
            let exact = rs * (g[i] - a / kf - xh * b / kf);
            let t = g[i].abs() + a.abs() / kf + (xh * b).abs() / kf;
            d_x[i] = rs
                * (e_g[i]
                    + (d_a + 5.0 * U * a.abs()) / kf
                    + f[i] * b.abs() / kf
                    + xh.abs() * (d_b + 5.0 * U * b.abs()) / kf
                    + 4.0 * U * t)
                + (rel_rstd + U) * exact.abs();
        }
    }

    // d_β[c] = Σ_{n,hw} d_z, d_γ[c] = Σ_{n,hw} d_z·x̂: a per-(n, c) sum over hw, then N terms in order.
    let depth_c = split.channel + s.n;
    let mut d_gamma = vec![0.0; s.c];
    let mut d_beta = vec![0.0; s.c];
    let (mut abs_dz, mut abs_dz_xh) = (vec![0.0; s.c], vec![0.0; s.c]);
    for i in 0..len {
        let c = s.channel(i);
        d_beta[c] += e_z[i];
        d_gamma[c] += e_z[i] * case.x_hat[i].abs() + d_z[i].abs() * f[i];
        abs_dz[c] += d_z[i].abs();
        abs_dz_xh[c] += (d_z[i] * case.x_hat[i]).abs();
    }
    for c in 0..s.c {
        d_beta[c] += gamma(depth_c) * abs_dz[c];
        d_gamma[c] += gamma(depth_c + 1) * abs_dz_xh[c];
    }
    BackwardBounds {
        d_x,
        d_gamma,
        d_beta,
    }
}

/// Runs forward then backward on the GPU (the backward on the forward's saved statistics) and checks every output
/// against the reference within its derived bound. `shape` is (N, C, H, W, G).
fn check_case(shape: (usize, usize, usize, usize, usize), silu: bool, shift: f32, seed: u64) {
    let (n, c, h, w, groups) = shape;
    let gpu = gpu();
    let s = Shape {
        n,
        c,
        hw: h * w,
        groups,
    };
    let what = format!("N={n} C={c} {h}x{w} G={groups} silu={silu} shift={shift}");
    let len = n * c * h * w;
    // x spread over [-2, 2) (+ shift); γ of both signs away from 0; β and d_y in [-1, 1).
    let x: Vec<f32> = uniform(len, seed).iter().map(|v| shift + 2.0 * v).collect();
    let gamma_: Vec<f32> = uniform(c, seed + 1)
        .iter()
        .map(|v| v + v.signum() * 0.5)
        .collect();
    let beta = uniform(c, seed + 2);
    let d_y = uniform(len, seed + 3);

    let gn = if silu {
        GroupNorm::new(groups).with_silu()
    } else {
        GroupNorm::new(groups)
    };
    let case = Case::new(s, silu, &x, &gamma_, &beta, &d_y);
    let want_forward = reference::forward(&case.x, &case.gamma, &case.beta, s, case.eps, silu);
    let want_backward = reference::backward(
        &case.x,
        &case.gamma,
        &case.beta,
        &case.d_y,
        s,
        case.eps,
        silu,
    );

    let dims = [n, c, h, w];
    let f32t = |shape: &[usize], data: &[f32]| Tensor::from_f32(gpu, shape, data).unwrap();
    // Outputs pre-filled with NaN: every kernel must overwrite its outputs, never add into them.
    let nans = common::nan_tensor;
    let (xt, gt, bt, dyt) = (
        f32t(&dims, &x),
        f32t(&[c], &gamma_),
        f32t(&[c], &beta),
        f32t(&dims, &d_y),
    );
    for path in paths() {
        let what = format!("{what} {path:?}");
        let (yt, mt, rt) = (nans(&dims), nans(&[n, groups]), nans(&[n, groups]));
        let (dxt, dgt, dbt) = (nans(&dims), nans(&[c]), nans(&[c]));
        let forward = group_norm_forward_via(path, gpu, &gn, &xt, &gt, &bt, &yt, &mt, &rt).unwrap();
        let backward = group_norm_backward_via(
            path, gpu, &gn, &xt, &gt, &bt, &mt, &rt, &dyt, &dxt, &dgt, &dbt,
        )
        .unwrap();
        gpu.run(std::iter::once(&forward).chain(&backward)).unwrap();

        let want = &want_forward;
        let (d_mu, rel_rstd) = stats_bounds(&case, path);
        assert_close(
            &format!("mean, {what}"),
            &mt.read_f32(gpu).unwrap(),
            &want.mean,
            |g| d_mu[g],
        );
        assert_close(
            &format!("rstd, {what}"),
            &rt.read_f32(gpu).unwrap(),
            &want.rstd,
            |g| rel_rstd[g] * want.rstd[g],
        );
        let bound = forward_bounds(&case, &d_mu, &rel_rstd);
        assert_close(
            &format!("y, {what}"),
            &yt.read_f32(gpu).unwrap(),
            &want.y,
            |i| bound[i],
        );

        let want = &want_backward;
        let bound = backward_bounds(&case, path, &d_mu, &rel_rstd);
        assert_close(
            &format!("d_x, {what}"),
            &dxt.read_f32(gpu).unwrap(),
            &want.d_x,
            |i| bound.d_x[i],
        );
        assert_close(
            &format!("d_gamma, {what}"),
            &dgt.read_f32(gpu).unwrap(),
            &want.d_gamma,
            |i| bound.d_gamma[i],
        );
        assert_close(
            &format!("d_beta, {what}"),
            &dbt.read_f32(gpu).unwrap(),
            &want.d_beta,
            |i| bound.d_beta[i],
        );
    }
}

/// The kernel paths this adapter runs: the portable kernels everywhere, the subgroup ones where it has them.
fn paths() -> Vec<Path> {
    subgroup_paths(group_norm_subgroup_available(gpu()))
}

#[test]
fn group_norm_matches_reference_on_edge_shapes() {
    // (N, C, H, W, G), group length k = (C/G)·H·W.
    let cases = [
        (1, 3, 5, 7, 3),   // batch 1, odd H and W, G = C (k = 35)
        (2, 6, 3, 3, 1),   // G = 1 (k = 54)
        (1, 4, 1, 1, 4),   // k = 1: y = β
        (3, 8, 1, 1, 2),   // 1×1 maps: one value per channel, padded quads (k = 4)
        (2, 4, 1, 63, 4),  // k = 63: 16 quads per channel, the last one partial
        (1, 2, 1, 257, 2), // k = 257: 65 quads over a channel's 64 slots, one past a slot each
        (2, 12, 5, 5, 3),  // k = 100 over 4 channels of 25 positions
        (1, 130, 2, 3, 1), // 130 channels per group: 64 at a time, in 3 rounds (k = 780)
        (3, 6, 3, 5, 3), // 9 groups: the subgroup kernels' second workgroup mostly past the last group
        // H·W a multiple of 4: the vec4 kernels, with 10 slots per channel and with 3 rounds.
        (2, 6, 2, 6, 1),
        (1, 130, 1, 4, 1),
    ];
    for (i, &case) in cases.iter().enumerate() {
        for silu in [false, true] {
            check_case(case, silu, 0.0, 10 * i as u64);
        }
    }
}

#[test]
fn group_norm_matches_reference_on_unet_shapes() {
    let cases = [
        (4, 64, 28, 28, 8),  // the 28×28 level (k = 6272)
        (4, 64, 28, 28, 16), // the medium preset's 16 groups (k = 3136)
        (4, 128, 7, 7, 16),  // the 7×7 level (k = 392)
        (2, 64, 32, 32, 16), // rgb32 at 32×32 (k = 4096)
        (2, 128, 32, 32, 8), // the largest group: 16 channels of 32×32 (k = 16384)
    ];
    for (i, &case) in cases.iter().enumerate() {
        // The U-Net always fuses the SiLU; the plain variant is checked on the largest group too.
        check_case(case, true, 0.0, 100 + i as u64);
    }
    check_case((2, 128, 32, 32, 8), false, 0.0, 200);
}

#[test]
fn group_norm_matches_reference_on_the_rgb64_and_rgb128_shapes() {
    // Both presets take 32 groups (config.rs); the largest groups are rgb128's, whose up path concatenates skips.
    let cases = [
        (2, 128, 128, 128, 32), // the 128×128 level (k = 65,536)
        (1, 256, 128, 128, 32), // its up path's [h; skip] (k = 131,072)
        (2, 384, 64, 64, 32),   // the 64×64 up path's [h; skip]: 12 channels per group (k = 49,152)
        (2, 1024, 4, 4, 32),    // the 4×4 up path's [h; skip]: 32 channels per group (k = 512)
    ];
    for (i, &case) in cases.iter().enumerate() {
        check_case(case, true, 0.0, 400 + i as u64);
    }
    // The attention block's norm, without the SiLU: 256 channels at 16×16 (k = 2,048).
    check_case((2, 256, 16, 16, 32), false, 0.0, 410);
}

#[test]
fn group_norm_keeps_its_digits_when_the_mean_dwarfs_the_spread() {
    // x = 100 + U[-2, 2): E[x²] − E[x]² would lose ~4 of f32's 7 digits of σ²; the two-pass variance keeps them,
    // and the bounds (which scale with Σ|x| only through the mean) still hold.
    check_case((2, 32, 16, 16, 8), false, 100.0, 300);
    check_case((1, 16, 7, 9, 4), true, -100.0, 301);
}

#[test]
fn group_norm_takes_the_subgroup_kernels_only_where_the_adapter_runs_them() {
    let gpu = gpu();
    check_subgroup_choice(group_norm_subgroup_available(gpu), |path| {
        select::group_norm(path, gpu).map(|k| k == GroupNormKernel::Subgroup)
    });
}

fn assert_gradient(what: &str, analytic: &[f64], numeric: &[f64]) {
    // Central differences in f64 with h = 1e-6 carry ~9 correct digits on O(1) values.
    let (i, r) = gradcheck::worst_ratio(analytic, numeric, 1e-8, 1e-6);
    assert!(
        r <= 1.0,
        "{what} at [{i}]: analytic {} vs numeric {}",
        analytic[i],
        numeric[i]
    );
}

#[test]
fn group_norm_backward_reference_matches_finite_differences() {
    let s = Shape {
        n: 2,
        c: 4,
        hw: 6,
        groups: 2,
    };
    let len = s.n * s.c * s.hw;
    let x: Vec<f64> = to_f64(&uniform(len, 1))
        .iter()
        .map(|v| 3.0 * v + 0.5)
        .collect();
    let gamma_ = to_f64(&uniform(s.c, 2));
    let beta = to_f64(&uniform(s.c, 3));
    let w = to_f64(&uniform(len, 4)); // L = ⟨y, w⟩, so d_y = w
    let eps = 1e-5;
    for silu in [false, true] {
        let loss = |x: &[f64], g: &[f64], b: &[f64]| {
            gradcheck::dot(&reference::forward(x, g, b, s, eps, silu).y, &w)
        };
        let got = reference::backward(&x, &gamma_, &beta, &w, s, eps, silu);
        let num_x = gradcheck::numeric_gradient(&x, 1e-6, |x| loss(x, &gamma_, &beta));
        let num_g = gradcheck::numeric_gradient(&gamma_, 1e-6, |g| loss(&x, g, &beta));
        let num_b = gradcheck::numeric_gradient(&beta, 1e-6, |b| loss(&x, &gamma_, b));
        assert_gradient(&format!("d_x silu={silu}"), &got.d_x, &num_x);
        assert_gradient(&format!("d_gamma silu={silu}"), &got.d_gamma, &num_g);
        assert_gradient(&format!("d_beta silu={silu}"), &got.d_beta, &num_b);
    }
}

#[test]
fn group_norm_refuses_bad_shapes_with_the_sizes_named() {
    let gpu = gpu();
    let t = |shape: &[usize]| Tensor::zeros(gpu, shape, DType::F32).unwrap();
    let (x, c8, stats) = (t(&[2, 8, 3, 3]), t(&[8]), t(&[2, 3]));
    let err = group_norm_forward(gpu, &GroupNorm::new(3), &x, &c8, &c8, &x, &stats, &stats)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("num_groups (3) must divide num_channels (8)"),
        "{err}"
    );

    let stats = t(&[2, 4]);
    let bad_gamma = t(&[4]);
    let err = group_norm_forward(
        gpu,
        &GroupNorm::new(4),
        &x,
        &bad_gamma,
        &c8,
        &x,
        &stats,
        &stats,
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("gamma must have shape [8]"),
        "{err}"
    );

    let bad_stats = t(&[2, 8]);
    let err = group_norm_forward(
        gpu,
        &GroupNorm::new(4),
        &x,
        &c8,
        &c8,
        &x,
        &bad_stats,
        &stats,
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("mean must have shape [2, 4]"),
        "{err}"
    );

    let err = group_norm_forward(gpu, &GroupNorm::new(0), &x, &c8, &c8, &x, &stats, &stats)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("num_groups must be at least 1"),
        "{err}"
    );

    let flat = t(&[2, 8, 9]);
    let err = group_norm_forward(
        gpu,
        &GroupNorm::new(4),
        &flat,
        &c8,
        &c8,
        &flat,
        &stats,
        &stats,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("[N, C, H, W]"), "{err}");

    let ints = Tensor::zeros(gpu, &[2, 8, 3, 3], DType::U32).unwrap();
    let err = group_norm_forward(gpu, &GroupNorm::new(4), &ints, &c8, &c8, &x, &stats, &stats)
        .err()
        .unwrap();
    assert!(err.to_string().contains("f32"), "{err}");

    // y in x's own buffer would be a wgpu usage conflict (a panic when recorded): refused up front.
    let err = group_norm_forward(
        gpu,
        &GroupNorm::new(4),
        &x,
        &c8,
        &c8,
        &x,
        &stats,
        &t(&[2, 4]),
    )
    .err()
    .unwrap();
    assert!(
        err.to_string()
            .contains("output `y` shares a buffer with input `x`"),
        "{err}"
    );

    let small = t(&[2, 8, 3, 2]);
    let gn = GroupNorm::new(4).with_silu();
    let err = group_norm_backward(gpu, &gn, &x, &c8, &c8, &stats, &stats, &x, &small, &c8, &c8)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("[2, 8, 3, 3]") && err.to_string().contains("[2, 8, 3, 2]"),
        "{err}"
    );
}
