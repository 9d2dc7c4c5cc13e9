//! shaders/attention.wgsl against src/reference/attention.rs.
//!
//! Tolerances: a first-order error analysis in f32 (u = 2⁻²⁴), evaluated per element from the exact f64
//! intermediates of each case (`Exact`); every term is spelled out where it is computed. The ingredients:
//! - Dot products of length k (the tiled products accumulate serially over K) are within γ_k·Σ|terms|
//!   (reference::gamma): k = d for the scores and d_P, k = L for out, d_v, d_q, d_k. The row kernels sum ⌈k/lanes⌉
//!   terms per invocation, then a log₂ lanes-level tree: γ_{⌈k/lanes⌉+log₂ lanes} (`row_depth`).
//! - 1/√d is rounded to f32 (u) and applied once more (u).
//! - exp is good to 3 + 2|x| ULP (WGSL), an ULP being at most 2u of the result; log to 2⁻²¹ = 8u absolute on
//!   [0.5, 2] and 3 ULP elsewhere; so lse carries the P-weighted score error, the exp errors, the sum's γ and the
//!   log's error, and P = exp(S − lse) carries the errors of S and lse as a relative error.
//! - The backward runs on the forward's own out and lse, whose bounds the forward check has just verified.
//!
//! Products of two error terms are neglected.

use crate::common;

use common::{assert_close, check_subgroup_choice, gpu, subgroup_paths, uniform};
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::attention::{
    attention_backward, attention_backward_via, attention_forward, attention_forward_via,
    row_lanes, Path,
};
use diffuse::kernels::select::{self, attention_subgroup_available, AttentionKernel};
use diffuse::reference::attention::{self as reference, Shape};
use diffuse::reference::{gamma, gradcheck, to_f64, F32_UNIT_ROUNDOFF as U};

/// Summation depth of the row kernels' sums of k terms for rows of L scores (`row_lanes` invocations per row,
/// serial shares, then a tree).
fn row_depth(k: usize, l: usize) -> usize {
    let lanes = row_lanes(l);
    k.div_ceil(lanes) + lanes.ilog2() as usize
}

/// The exact intermediates of one case, in f64 from the same f32 inputs the GPU sees.
struct Exact {
    s: Shape,
    qkv: Vec<f64>,
    d_out: Vec<f64>,
    scores: Vec<f64>,
    p: Vec<f64>,
    lse: Vec<f64>,
    out: Vec<f64>,
}

impl Exact {
    fn new(s: Shape, qkv: &[f32], d_out: &[f32]) -> Exact {
        let qkv = to_f64(qkv);
        let scores = reference::scores(&qkv, s);
        let (p, lse) = reference::softmax(&scores, s);
        let (out, _) = reference::forward(&qkv, s);
        Exact {
            s,
            qkv,
            d_out: to_f64(d_out),
            scores,
            p,
            lse,
            out,
        }
    }

    fn q(&self, n: usize, h: usize, e: usize, i: usize) -> f64 {
        self.qkv[self.s.qkv(0, n, h, e, i)]
    }
    fn k(&self, n: usize, h: usize, e: usize, j: usize) -> f64 {
        self.qkv[self.s.qkv(1, n, h, e, j)]
    }
    fn v(&self, n: usize, h: usize, e: usize, j: usize) -> f64 {
        self.qkv[self.s.qkv(2, n, h, e, j)]
    }
    fn scale(&self) -> f64 {
        1.0 / (self.s.d() as f64).sqrt()
    }
}

struct ForwardBounds {
    /// |δlse| per row.
    lse: Vec<f64>,
    /// Relative error of P = exp(S − lse) per score, as both passes compute it.
    p: Vec<f64>,
    out: Vec<f64>,
}

fn forward_bounds(x: &Exact) -> ForwardBounds {
    let s = x.s;
    let (d, l) = (s.d(), s.l);
    let mut scores = vec![0.0; x.scores.len()]; // |δS| per score
    let mut lse = vec![0.0; x.lse.len()];
    let mut p = vec![0.0; x.p.len()];
    let mut out = vec![0.0; x.out.len()];
    for n in 0..s.n {
        for h in 0..s.heads {
            for i in 0..l {
                for j in 0..l {
                    let abs: f64 = (0..d)
                        .map(|e| (x.q(n, h, e, i) * x.k(n, h, e, j)).abs())
                        .sum();
                    // γ_d of the dot product, scaled; the f32 scale and its product: 2u.
                    scores[s.score(n, h, i, j)] =
                        x.scale() * gamma(d) * abs + 2.0 * U * x.scores[s.score(n, h, i, j)].abs();
                }
                let row = s.row(n, h, i);
                let at = |j: usize| s.score(n, h, i, j);
                let m = (0..l)
                    .map(|j| x.scores[at(j)])
                    .fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = (0..l).map(|j| (x.scores[at(j)] - m).exp()).sum();
                // lse = m + log Σ exp(S − m): the P-weighted error of S; per term the rounding of S − m and exp's
                // (3 + 2|x|) ULP; the sum's γ; log's 8u or 3 ULP; the final add.
                lse[row] = (0..l)
                    .map(|j| {
                        let t = x.scores[at(j)] - m;
                        x.p[at(j)] * (scores[at(j)] + U * t.abs() + (3.0 + 2.0 * t.abs()) * 2.0 * U)
                    })
                    .sum::<f64>()
                    + gamma(row_depth(l, l))
                    + 8.0 * U
                    + 6.0 * U * z.ln()
                    + U * x.lse[row].abs();
                for j in 0..l {
                    let t = x.scores[at(j)] - x.lse[row];
                    p[at(j)] =
                        scores[at(j)] + lse[row] + U * t.abs() + (3.0 + 2.0 * t.abs()) * 2.0 * U;
                }
            }
            for e in 0..d {
                for i in 0..l {
                    let at = |j: usize| s.score(n, h, i, j);
                    let prop: f64 = (0..l)
                        .map(|j| x.p[at(j)] * p[at(j)] * x.v(n, h, e, j).abs())
                        .sum();
                    let abs: f64 = (0..l).map(|j| x.p[at(j)] * x.v(n, h, e, j).abs()).sum();
                    out[s.out(n, h, e, i)] = prop + gamma(l) * abs;
                }
            }
        }
    }
    ForwardBounds { lse, p, out }
}

/// Bounds per element of d_qkv [N, 3C, L].
fn backward_bounds(x: &Exact, fwd: &ForwardBounds) -> Vec<f64> {
    let s = x.s;
    let (d, l) = (s.d(), s.l);
    let mut bound = vec![0.0; x.qkv.len()];
    for n in 0..s.n {
        for h in 0..s.heads {
            let d_o = |e: usize, i: usize| x.d_out[s.out(n, h, e, i)];
            let at = |i: usize, j: usize| s.score(n, h, i, j);
            // d_P, D and d_S exactly, and the error of the computed d_S.
            let mut d_s = vec![0.0; l * l];
            let mut e_s = vec![0.0; l * l];
            for i in 0..l {
                let big_d: f64 = (0..d).map(|e| d_o(e, i) * x.out[s.out(n, h, e, i)]).sum();
                let e_d: f64 = (0..d)
                    .map(|e| d_o(e, i).abs() * fwd.out[s.out(n, h, e, i)])
                    .sum::<f64>()
                    + gamma(row_depth(d, l) + 1)
                        * (0..d)
                            .map(|e| (d_o(e, i) * x.out[s.out(n, h, e, i)]).abs())
                            .sum::<f64>();
                for j in 0..l {
                    let d_p: f64 = (0..d).map(|e| d_o(e, i) * x.v(n, h, e, j)).sum();
                    let e_dp = gamma(d)
                        * (0..d)
                            .map(|e| (d_o(e, i) * x.v(n, h, e, j)).abs())
                            .sum::<f64>();
                    let pij = x.p[at(i, j)];
                    d_s[i * l + j] = pij * (d_p - big_d);
                    // P's relative error times |d_P − D|, the errors of d_P and D, and two roundings.
                    e_s[i * l + j] = pij
                        * (fwd.p[at(i, j)] * (d_p - big_d).abs()
                            + e_dp
                            + e_d
                            + 2.0 * U * (d_p.abs() + big_d.abs()));
                }
            }
            for e in 0..d {
                // The sums over i of every column j, taken row by row: the same terms in the same order as one
                // column at a time, but reading P and d_S along their rows (at L = 1,024 a column walk misses
                // the cache on every term).
                let mut sums = vec![[0.0f64; 5]; l];
                for i in 0..l {
                    let (o, q) = (d_o(e, i).abs(), x.q(n, h, e, i));
                    for (j, t) in sums.iter_mut().enumerate() {
                        let (pij, ds) = (x.p[at(i, j)], d_s[i * l + j]);
                        t[0] += pij * fwd.p[at(i, j)] * o;
                        t[1] += pij * o;
                        t[2] += e_s[i * l + j] * q.abs();
                        t[3] += (ds * q).abs();
                        t[4] += ds * q;
                    }
                }
                for (j, [v_prop, v_abs, k_prop, k_abs, k_sum]) in sums.into_iter().enumerate() {
                    // d_v[e, j] = Σ_i P_ij·d_out[e, i]
                    bound[s.qkv(2, n, h, e, j)] = v_prop + gamma(l) * v_abs;
                    // d_k[e, j] = Σ_i d_S_ij·q[e, i]/√d
                    bound[s.qkv(1, n, h, e, j)] = x.scale() * (k_prop + gamma(l) * k_abs)
                        + 2.0 * U * (k_sum * x.scale()).abs();
                }
                for i in 0..l {
                    // d_q[e, i] = Σ_j d_S_ij·k[e, j]/√d
                    let prop: f64 = (0..l).map(|j| e_s[i * l + j] * x.k(n, h, e, j).abs()).sum();
                    let abs: f64 = (0..l)
                        .map(|j| (d_s[i * l + j] * x.k(n, h, e, j)).abs())
                        .sum();
                    let exact: f64 = (0..l)
                        .map(|j| d_s[i * l + j] * x.k(n, h, e, j))
                        .sum::<f64>()
                        * x.scale();
                    bound[s.qkv(0, n, h, e, i)] =
                        x.scale() * (prop + gamma(l) * abs) + 2.0 * U * exact.abs();
                }
            }
        }
    }
    bound
}

/// Runs forward then backward (on the forward's out and lse) on the GPU and checks out, lse and d_qkv against the
/// reference within their derived bounds. `qk_scale` scales q and k (large scores test the max subtraction).
fn check_case(n: usize, c: usize, heads: usize, h: usize, w: usize, qk_scale: f32, seed: u64) {
    let gpu = gpu();
    let l = h * w;
    let s = Shape { n, c, heads, l };
    let what = format!(
        "N={n} C={c} heads={heads} {h}x{w} (d={}, L={l}) qk_scale={qk_scale}",
        c / heads
    );
    let mut qkv = uniform(n * 3 * c * l, seed);
    for (i, v) in qkv.iter_mut().enumerate() {
        if i / l % (3 * c) < 2 * c {
            *v *= qk_scale;
        }
    }
    let d_out = uniform(n * c * l, seed + 1);

    let x = Exact::new(s, &qkv, &d_out);
    let fwd = forward_bounds(&x);
    let want = reference::backward(&x.qkv, &x.d_out, s);
    let bound = backward_bounds(&x, &fwd);

    // Outputs pre-filled with NaN: every kernel must overwrite its outputs, never add into them.
    let nans = common::nan_tensor;
    let qkv_t = Tensor::from_f32(gpu, &[n, 3 * c, h, w], &qkv).unwrap();
    let d_out_t = Tensor::from_f32(gpu, &[n, c, h, w], &d_out).unwrap();
    for path in paths() {
        let what = format!("{what} {path:?}");
        let (out_t, lse_t, d_qkv_t) = (
            nans(&[n, c, h, w]),
            nans(&[n, heads, l]),
            nans(&[n, 3 * c, h, w]),
        );
        let forward = attention_forward_via(path, gpu, &qkv_t, heads, &out_t, &lse_t).unwrap();
        let backward =
            attention_backward_via(path, gpu, &qkv_t, heads, &out_t, &lse_t, &d_out_t, &d_qkv_t)
                .unwrap();
        gpu.run(forward.iter().chain(&backward)).unwrap();

        assert_close(
            &format!("lse, {what}"),
            &lse_t.read_f32(gpu).unwrap(),
            &x.lse,
            |i| fwd.lse[i],
        );
        assert_close(
            &format!("out, {what}"),
            &out_t.read_f32(gpu).unwrap(),
            &x.out,
            |i| fwd.out[i],
        );
        assert_close(
            &format!("d_qkv, {what}"),
            &d_qkv_t.read_f32(gpu).unwrap(),
            &want,
            |i| bound[i],
        );
    }
}

/// The product paths this adapter runs: the portable kernels everywhere, the subgroup ones where it has them. Both
/// sum each product serially over k in order, so the same bounds hold for both.
fn paths() -> Vec<Path> {
    subgroup_paths(attention_subgroup_available(gpu()))
}

#[test]
fn attention_takes_the_subgroup_products_only_where_the_adapter_runs_them() {
    let gpu = gpu();
    check_subgroup_choice(attention_subgroup_available(gpu), |path| {
        select::attention(path, gpu).map(|k| k == AttentionKernel::SubgroupBlocks)
    });
}

#[test]
fn attention_matches_reference_on_edge_shapes() {
    check_case(1, 1, 1, 1, 1, 1.0, 1); // L = 1, d = 1: out = v, d_v = d_out, d_q = d_k = 0
    check_case(2, 6, 2, 3, 5, 1.0, 2); // batch 2, 2 heads, d = 3, odd L = 15
    check_case(2, 4, 4, 2, 3, 1.0, 3); // d = 1 with 4 heads
    check_case(1, 33, 1, 3, 11, 1.0, 4); // d = L = 33: a partial 64-wide tile, 3 K steps, the last partial;
                                         // one past the subgroup kernel's 32-wide block
    check_case(1, 65, 1, 5, 13, 1.0, 5); // d = L = 65: one past the 64-wide tile in M, N and K
}

#[test]
fn attention_matches_reference_on_unet_shapes() {
    check_case(2, 128, 1, 7, 7, 1.0, 10); // the 7×7 mid block: one head of 128
    check_case(2, 128, 4, 14, 14, 1.0, 11); // 14×14, 4 heads of 32
    check_case(1, 128, 1, 16, 16, 1.0, 12); // rgb32's 16×16 level: L = 256, d = 128
}

#[test]
fn attention_matches_reference_on_the_rgb64_and_rgb128_shapes() {
    // One head throughout (config.rs). Both presets attend at 16×16 over 256 channels (L = 256, d = 256: 4 K-tiles)
    // and in the middle block at their lowest level.
    check_case(1, 256, 1, 16, 16, 1.0, 13);
    check_case(2, 256, 1, 16, 16, 1.0, 14);
    check_case(2, 256, 1, 8, 8, 1.0, 17); // rgb64's middle: L = 64, the row kernels' 8-lane limit
    check_case(1, 512, 1, 4, 4, 1.0, 18); // rgb128's middle: L = 16, d = 512 (8 K-tiles)
}

#[test]
fn attention_matches_reference_over_1024_positions_with_several_heads() {
    // A 32×32 map, where the presets would attend with `--attention-resolutions 32`: L = 1,024 (16 tiles of 64,
    // 32 subgroup blocks of 32 per side, rows of 1,024 scores over 64 row lanes), with several heads side by side
    // in the channels; fewer channels than the presets' 256 there keep the f64 bounds to seconds.
    check_case(1, 64, 4, 32, 32, 1.0, 15); // 4 heads of d = 16
    check_case(2, 32, 2, 32, 32, 1.0, 16); // batch 2, 2 heads of d = 16
}

#[test]
fn attention_stays_finite_and_accurate_with_large_scores() {
    // Scores up to ~±500: exp would overflow f32 without subtracting the row max.
    check_case(2, 8, 2, 5, 5, 16.0, 20);
}

#[test]
fn attention_backward_reference_matches_finite_differences() {
    // L = 3, d = 2, two heads, batch 2.
    let s = Shape {
        n: 2,
        c: 4,
        heads: 2,
        l: 3,
    };
    let qkv: Vec<f64> = to_f64(&uniform(s.n * 3 * s.c * s.l, 30))
        .iter()
        .map(|v| 2.0 * v)
        .collect();
    let w = to_f64(&uniform(s.n * s.c * s.l, 31)); // L = ⟨out, w⟩, so d_out = w
    let numeric = gradcheck::numeric_gradient(&qkv, 1e-6, |qkv| {
        gradcheck::dot(&reference::forward(qkv, s).0, &w)
    });
    let analytic = reference::backward(&qkv, &w, s);
    // Central differences in f64 with h = 1e-6 carry ~9 correct digits on O(1) values.
    let (i, r) = gradcheck::worst_ratio(&analytic, &numeric, 1e-8, 1e-6);
    assert!(
        r <= 1.0,
        "d_qkv at [{i}]: analytic {} vs numeric {}",
        analytic[i],
        numeric[i]
    );
}

#[test]
fn attention_refuses_bad_shapes_with_the_sizes_named() {
    let gpu = gpu();
    let t = |shape: &[usize]| Tensor::zeros(gpu, shape, DType::F32).unwrap();
    let (qkv, out, lse) = (t(&[2, 18, 2, 3]), t(&[2, 6, 2, 3]), t(&[2, 4, 6]));
    let err = attention_forward(gpu, &qkv, 4, &out, &lse)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("heads (4) must divide the channels C (6)"),
        "{err}"
    );

    let lse = t(&[2, 2, 6]);
    let err = attention_forward(gpu, &t(&[2, 16, 2, 3]), 2, &out, &lse)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("16 channels are not 3·C"), "{err}");

    let err = attention_forward(gpu, &qkv, 0, &out, &lse)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("heads must be at least 1"), "{err}");

    let err = attention_forward(gpu, &qkv, 2, &t(&[2, 6, 3, 2]), &lse)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("[2, 6, 2, 3]") && err.contains("[2, 6, 3, 2]"),
        "{err}"
    );

    let err = attention_forward(gpu, &qkv, 2, &out, &t(&[2, 6]))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("lse") && err.contains("[2, 2, 6]"), "{err}");

    let err = attention_forward(gpu, &t(&[2, 18, 6]), 2, &out, &lse)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[N, 3C, H, W]"), "{err}");

    let err = attention_backward(gpu, &qkv, 2, &out, &lse, &out, &out)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("d_qkv") && err.contains("[2, 18, 2, 3]"),
        "{err}"
    );

    let err = attention_backward(gpu, &qkv, 2, &out, &lse, &lse, &qkv)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("d_out"), "{err}");

    // d_qkv in qkv's own buffer would be a wgpu usage conflict (a panic when recorded): Dispatch::new refuses it.
    let err = attention_backward(gpu, &qkv, 2, &out, &lse, &out.clone(), &qkv)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("shares a buffer with input"), "{err}");

    let ints = Tensor::zeros(gpu, &[2, 18, 2, 3], DType::U32).unwrap();
    let err = attention_forward(gpu, &ints, 2, &out, &lse)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("f32"), "{err}");
}
