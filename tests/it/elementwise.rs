//! shaders/elementwise.wgsl against src/reference/elementwise.rs.
//!
//! Every output starts as NaN (common::nan_tensor): the kernels overwrite their outputs, and one that added into
//! its output or left an element unwritten would fail. (axpy, which accumulates by contract, starts from data.)
//!
//! Tolerances: copies (concat, split, upsample, shift) must be exact. Sums of k terms (upsample backward k = 4, bias
//! backward k = H·W) are within γ_k·Σ|terms| (reference::gamma). SiLU goes through exp and a division: WGSL
//! allows exp an error of 3 + 2|x| ULP, which the sigmoid and the product carry through with a few roundings,
//! so SiLU is held to (8 + 2|x|) ULP of its result plus the same relative slack in the absolute sense near 0.

use crate::common;

use common::{assert_close, gpu, ulps, uniform, uniform64};
use diffuse::gpu::Tensor;
use diffuse::kernels::elementwise as ew;
use diffuse::reference::{elementwise as reference, gamma, gradcheck, to_f64};

/// Sizes around the 256-wide workgroup: 1, odd, 255, 256, 257, and one past a multiple.
const LENGTHS: [usize; 6] = [1, 7, 255, 256, 257, 1025];

#[test]
fn silu_forward_and_backward_match_reference() {
    let gpu = gpu();
    for (case, &n) in LENGTHS.iter().enumerate() {
        // Inputs spread over [-8, 8] so both tails of the sigmoid are exercised.
        let x: Vec<f32> = uniform(n, case as u64).iter().map(|v| v * 8.0).collect();
        let d_y = uniform(n, 100 + case as u64);
        let xt = Tensor::from_f32(gpu, &[n], &x).unwrap();
        let dyt = Tensor::from_f32(gpu, &[n], &d_y).unwrap();
        let yt = common::nan_tensor(&[n]);
        let dxt = common::nan_tensor(&[n]);
        gpu.run([
            &ew::silu_forward(gpu, &xt, &yt).unwrap(),
            &ew::silu_backward(gpu, &xt, &dyt, &dxt).unwrap(),
        ])
        .unwrap();
        let x64 = to_f64(&x);
        let bound = |i: usize, want: &[f64]| {
            let slack = 8.0 + 2.0 * x64[i].abs();
            ulps(want[i], slack).max(slack * diffuse::reference::F32_UNIT_ROUNDOFF * x64[i].abs())
        };
        let want_y = reference::silu_forward(&x64);
        assert_close(
            &format!("silu_forward n={n}"),
            &yt.read_f32(gpu).unwrap(),
            &want_y,
            |i| bound(i, &want_y),
        );
        let want_dx = reference::silu_backward(&x64, &to_f64(&d_y));
        assert_close(
            &format!("silu_backward n={n}"),
            &dxt.read_f32(gpu).unwrap(),
            &want_dx,
            |i| bound(i, &want_dx) + ulps(to_f64(&d_y)[i], 8.0 + 2.0 * x64[i].abs()),
        );
    }
}

#[test]
fn silu_backward_reference_matches_finite_differences() {
    let x = uniform64(64, 3).iter().map(|v| v * 6.0).collect::<Vec<_>>();
    let w = uniform64(64, 4);
    let numeric = gradcheck::numeric_gradient(&x, 1e-6, |x| {
        gradcheck::dot(&reference::silu_forward(x), &w)
    });
    let analytic = reference::silu_backward(&x, &w);
    let (i, r) = gradcheck::worst_ratio(&analytic, &numeric, 1e-8, 1e-6);
    assert!(
        r <= 1.0,
        "silu gradient at [{i}]: analytic {} vs numeric {}",
        analytic[i],
        numeric[i]
    );
}

#[test]
fn add_scale_and_axpy_match_reference() {
    let gpu = gpu();
    for (case, &n) in LENGTHS.iter().enumerate() {
        let a = uniform(n, 10 + case as u64);
        let b = uniform(n, 20 + case as u64);
        let at = Tensor::from_f32(gpu, &[n], &a).unwrap();
        let bt = Tensor::from_f32(gpu, &[n], &b).unwrap();
        let sum = common::nan_tensor(&[n]);
        let scaled = common::nan_tensor(&[n]);
        let acc = Tensor::from_f32(gpu, &[n], &a).unwrap();
        gpu.run([
            &ew::add_scaled(gpu, &at, &bt, -0.75, &sum).unwrap(),
            &ew::scale(gpu, &at, 3.0, &scaled).unwrap(),
            &ew::axpy(gpu, 0.5, &bt, &acc).unwrap(),
        ])
        .unwrap();
        let (a64, b64) = (to_f64(&a), to_f64(&b));
        // One product and one sum: at most 2 roundings of the result's magnitude plus the product's.
        let two_roundings = |want: f64, term: f64| ulps(want, 1.0) + ulps(term, 1.0);
        let want = reference::add_scaled(&a64, &b64, -0.75);
        assert_close("add_scaled", &sum.read_f32(gpu).unwrap(), &want, |i| {
            two_roundings(want[i], 0.75 * b64[i])
        });
        let want: Vec<f64> = a64.iter().map(|v| 3.0 * v).collect();
        assert_close("scale", &scaled.read_f32(gpu).unwrap(), &want, |i| {
            ulps(want[i], 0.5)
        });
        let want = reference::add_scaled(&a64, &b64, 0.5);
        assert_close("axpy", &acc.read_f32(gpu).unwrap(), &want, |i| {
            two_roundings(want[i], 0.5 * b64[i])
        });
    }
}

#[test]
fn concat_and_split_channels_are_exact_copies() {
    let gpu = gpu();
    // (N, Ca, Cb, H, W): batch 1, odd everything, one channel each; planes of whole vec4s (H·W = 4, 28)
    // take the vec4 kernels.
    for (n, ca, cb, h, w) in [
        (1, 1, 1, 1, 1),
        (2, 3, 5, 7, 9),
        (1, 64, 32, 7, 7),
        (3, 1, 2, 17, 1),
        (2, 3, 6, 2, 2),
        (1, 5, 3, 4, 7),
    ] {
        let hw = h * w;
        let a = uniform(n * ca * hw, 1);
        let b = uniform(n * cb * hw, 2);
        let at = Tensor::from_f32(gpu, &[n, ca, h, w], &a).unwrap();
        let bt = Tensor::from_f32(gpu, &[n, cb, h, w], &b).unwrap();
        let yt = common::nan_tensor(&[n, ca + cb, h, w]);
        let da = common::nan_tensor(&[n, ca, h, w]);
        let db = common::nan_tensor(&[n, cb, h, w]);
        gpu.run([
            &ew::concat_channels(gpu, &at, &bt, &yt).unwrap(),
            &ew::split_channels(gpu, &yt, &da, &db).unwrap(),
        ])
        .unwrap();
        let case = format!("n{n} ca{ca} cb{cb} {h}x{w}");
        let want = reference::concat_channels(&to_f64(&a), &to_f64(&b), n, ca, cb, hw);
        assert_close(&case, &yt.read_f32(gpu).unwrap(), &want, |_| 0.0);
        let (want_a, want_b) = reference::split_channels(&want, n, ca, cb, hw);
        assert_close(&case, &da.read_f32(gpu).unwrap(), &want_a, |_| 0.0);
        assert_close(&case, &db.read_f32(gpu).unwrap(), &want_b, |_| 0.0);
    }
}

#[test]
fn upsample_nearest2x_matches_reference() {
    let gpu = gpu();
    for (n, c, h, w) in [(1, 1, 1, 1), (2, 3, 7, 5), (1, 64, 7, 7), (4, 32, 14, 14)] {
        let x = uniform(n * c * h * w, 5);
        let d_y = uniform(n * c * 4 * h * w, 6);
        let xt = Tensor::from_f32(gpu, &[n, c, h, w], &x).unwrap();
        let yt = common::nan_tensor(&[n, c, 2 * h, 2 * w]);
        let dyt = Tensor::from_f32(gpu, &[n, c, 2 * h, 2 * w], &d_y).unwrap();
        let dxt = common::nan_tensor(&[n, c, h, w]);
        gpu.run([
            &ew::upsample_nearest2x_forward(gpu, &xt, &yt).unwrap(),
            &ew::upsample_nearest2x_backward(gpu, &dyt, &dxt).unwrap(),
        ])
        .unwrap();
        let case = format!("n{n} c{c} {h}x{w}");
        let want = reference::upsample_nearest2x_forward(&to_f64(&x), n * c, h, w);
        assert_close(&case, &yt.read_f32(gpu).unwrap(), &want, |_| 0.0);
        let want = reference::upsample_nearest2x_backward(&to_f64(&d_y), n * c, h, w);
        let mag = reference::upsample_nearest2x_backward(
            &to_f64(&d_y).iter().map(|v| v.abs()).collect::<Vec<_>>(),
            n * c,
            h,
            w,
        );
        assert_close(&case, &dxt.read_f32(gpu).unwrap(), &want, |i| {
            gamma(4) * mag[i]
        });
    }
}

#[test]
fn upsample_backward_is_the_adjoint_of_forward() {
    // ⟨up(x), g⟩ = ⟨x, up*(g)⟩ exactly in f64: the backward is the transpose of the forward.
    let (planes, h, w) = (3, 5, 4);
    let x = uniform64(planes * h * w, 7);
    let g = uniform64(planes * 4 * h * w, 8);
    let lhs = gradcheck::dot(&reference::upsample_nearest2x_forward(&x, planes, h, w), &g);
    let rhs = gradcheck::dot(
        &x,
        &reference::upsample_nearest2x_backward(&g, planes, h, w),
    );
    assert!(
        (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
        "{lhs} vs {rhs}"
    );
}

#[test]
fn shift_matches_reference_as_a_border_and_as_a_crop() {
    // The pair that gives a stride-2 convolution Ho et al.'s padding: a zero row and column before x (s = −1, one
    // larger), and the first row and column cropped (s = 1, one smaller); also odd sides, batch 1, a plane past
    // the workgroup, a larger border, and an output smaller than a crop needs. Exact: copies and zeros.
    let gpu = gpu();
    let cases = [
        ((1, 1, 1, 1), -1, (2, 2)),
        ((2, 3, 8, 8), -1, (9, 9)),
        ((2, 3, 9, 9), 1, (8, 8)),
        ((1, 5, 7, 5), -1, (8, 6)),
        ((1, 2, 33, 17), 1, (32, 16)),
        ((3, 2, 4, 6), -2, (9, 7)),
        ((1, 4, 6, 6), 1, (3, 2)),
    ];
    for ((n, c, h, w), s, (oh, ow)) in cases {
        let x = uniform(n * c * h * w, 11);
        let xt = Tensor::from_f32(gpu, &[n, c, h, w], &x).unwrap();
        let yt = common::nan_tensor(&[n, c, oh, ow]);
        gpu.run([&ew::shift(gpu, &xt, s, &yt).unwrap()]).unwrap();
        let want = reference::shift(&to_f64(&x), n * c, (h, w), s as isize, (oh, ow));
        let case = format!("shift {s} of n{n} c{c} {h}x{w} into {oh}x{ow}");
        assert_close(&case, &yt.read_f32(gpu).unwrap(), &want, |_| 0.0);
    }
    let xt = Tensor::from_f32(gpu, &[1, 2, 3, 3], &[0.0; 18]).unwrap();
    let err = ew::shift(gpu, &xt, 1, &common::nan_tensor(&[1, 3, 2, 2]))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("batch and channels"), "{err}");
}

#[test]
fn shift_by_minus_s_is_the_adjoint_of_shift_by_s() {
    // ⟨shift_s(x), g⟩ = ⟨x, shift_−s(g)⟩ exactly in f64, for a border and a crop: what the network's backward uses.
    for (s, (h, w), (oh, ow)) in [
        (-1, (6, 5), (7, 6)),
        (1, (7, 7), (6, 6)),
        (2, (5, 8), (4, 3)),
    ] {
        let planes = 3;
        let x = uniform64(planes * h * w, 12);
        let g = uniform64(planes * oh * ow, 13);
        let lhs = gradcheck::dot(&reference::shift(&x, planes, (h, w), s, (oh, ow)), &g);
        let rhs = gradcheck::dot(&x, &reference::shift(&g, planes, (oh, ow), -s, (h, w)));
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "s = {s}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn split_channels_reference_matches_finite_differences_of_concat() {
    // split_channels is concat's backward: L = ⟨concat(a, b), w⟩ gives ∂L/∂a, ∂L/∂b = split_channels(w). L is
    // linear, so central differences are exact up to f64 rounding.
    let (n, ca, cb, hw) = (2, 3, 2, 5);
    let (a, b, w) = (
        uniform64(n * ca * hw, 24),
        uniform64(n * cb * hw, 25),
        uniform64(n * (ca + cb) * hw, 26),
    );
    let loss =
        |a: &[f64], b: &[f64]| gradcheck::dot(&reference::concat_channels(a, b, n, ca, cb, hw), &w);
    let (d_a, d_b) = reference::split_channels(&w, n, ca, cb, hw);
    for (name, analytic, numeric) in [
        (
            "d_a",
            d_a,
            gradcheck::numeric_gradient(&a, 1e-6, |a| loss(a, &b)),
        ),
        (
            "d_b",
            d_b,
            gradcheck::numeric_gradient(&b, 1e-6, |b| loss(&a, b)),
        ),
    ] {
        let (i, r) = gradcheck::worst_ratio(&analytic, &numeric, 1e-8, 1e-6);
        assert!(
            r <= 1.0,
            "{name} at [{i}]: analytic {} vs numeric {}",
            analytic[i],
            numeric[i]
        );
    }
}

#[test]
fn channel_bias_backward_reference_matches_finite_differences() {
    // L = ⟨x + e broadcast over each row of hw, w⟩: ∂L/∂e[r] = Σ_j w[r, j], the reference backward fed d_y = w.
    // L is linear in e, so central differences are exact up to f64 rounding of O(hw) sums divided by 2h.
    let (rows, hw) = (6, 5);
    let (x, e, w) = (
        uniform64(rows * hw, 21),
        uniform64(rows, 22),
        uniform64(rows * hw, 23),
    );
    let numeric = gradcheck::numeric_gradient(&e, 1e-6, |e| {
        gradcheck::dot(&reference::add_channel_bias(&x, e, hw), &w)
    });
    let analytic = reference::channel_bias_backward(&w, hw);
    let (i, r) = gradcheck::worst_ratio(&analytic, &numeric, 1e-8, 1e-6);
    assert!(
        r <= 1.0,
        "channel bias gradient at [{i}]: analytic {} vs numeric {}",
        analytic[i],
        numeric[i]
    );
}

#[test]
fn channel_bias_matches_reference() {
    let gpu = gpu();
    // hw = 1, odd, 256 + 1 and one larger than a workgroup several times over; hw = 4 and 28·28 take the vec4
    // kernel.
    for (n, c, h, w) in [
        (1, 1, 1, 1),
        (2, 3, 5, 7),
        (1, 5, 1, 257),
        (3, 64, 28, 28),
        (1, 3, 2, 2),
    ] {
        let hw = h * w;
        let x = uniform(n * c * hw, 11);
        let e = uniform(n * c, 12);
        let xt = Tensor::from_f32(gpu, &[n, c, h, w], &x).unwrap();
        let et = Tensor::from_f32(gpu, &[n, c], &e).unwrap();
        let yt = common::nan_tensor(&[n, c, h, w]);
        let det = common::nan_tensor(&[n, c]);
        gpu.run([
            &ew::add_channel_bias(gpu, &xt, &et, &yt).unwrap(),
            &ew::channel_bias_backward(gpu, &xt, &det).unwrap(),
        ])
        .unwrap();
        let case = format!("n{n} c{c} {h}x{w}");
        let want = reference::add_channel_bias(&to_f64(&x), &to_f64(&e), hw);
        assert_close(&case, &yt.read_f32(gpu).unwrap(), &want, |i| {
            ulps(want[i], 0.5)
        });
        let want = reference::channel_bias_backward(&to_f64(&x), hw);
        let mag = reference::channel_bias_backward(
            &to_f64(&x).iter().map(|v| v.abs()).collect::<Vec<_>>(),
            hw,
        );
        assert_close(&case, &det.read_f32(gpu).unwrap(), &want, |i| {
            gamma(hw) * mag[i]
        });
    }
}

#[test]
fn mismatched_shapes_are_refused_with_the_shapes_named() {
    let gpu = gpu();
    let a = Tensor::zeros(gpu, &[2, 3, 4, 4], diffuse::gpu::DType::F32).unwrap();
    let b = Tensor::zeros(gpu, &[2, 3, 4, 5], diffuse::gpu::DType::F32).unwrap();
    let err = ew::add_scaled(gpu, &a, &b, 1.0, &a)
        .err()
        .expect("mismatch must fail")
        .to_string();
    assert!(
        err.contains("[2, 3, 4, 4]") && err.contains("[2, 3, 4, 5]"),
        "{err}"
    );
    let y = Tensor::zeros(gpu, &[2, 6, 4, 4], diffuse::gpu::DType::F32).unwrap();
    let err = ew::concat_channels(gpu, &a, &b, &y)
        .err()
        .expect("mismatch must fail")
        .to_string();
    assert!(err.contains("concat_channels"), "{err}");
    let err = Tensor::zeros(gpu, &[2, 0, 3], diffuse::gpu::DType::F32)
        .expect_err("zero size")
        .to_string();
    assert!(err.contains("no elements"), "{err}");
}

#[test]
fn repeat2_and_guidance_match_reference() {
    // repeat2 is a copy (exact); guidance is two products and a sum: γ₂·((1 + w)|o_c| + w|o_u|).
    let gpu = gpu();
    for (n, d) in [(1, 1), (3, 7), (2, 784)] {
        let x = uniform(n * d, 31);
        let xt = Tensor::from_f32(gpu, &[n, d], &x).unwrap();
        let doubled = common::nan_tensor(&[2 * n, d]);
        let guided = common::nan_tensor(&[n, d]);
        let o = uniform(2 * n * d, 32);
        let ot = Tensor::from_f32(gpu, &[2 * n, d], &o).unwrap();
        let w = 2.5f64;
        gpu.run([
            &ew::repeat2(gpu, &xt, &doubled).unwrap(),
            &ew::guidance(gpu, &ot, w as f32, &guided).unwrap(),
        ])
        .unwrap();
        let want = [to_f64(&x), to_f64(&x)].concat();
        assert_close("repeat2", &doubled.read_f32(gpu).unwrap(), &want, |_| 0.0);
        let o64 = to_f64(&o);
        let m = n * d;
        let want: Vec<f64> = (0..m)
            .map(|i| (1.0 + w) * o64[i] - w * o64[i + m])
            .collect();
        assert_close("guidance", &guided.read_f32(gpu).unwrap(), &want, |i| {
            gamma(2) * ((1.0 + w) * o64[i].abs() + w * o64[i + m].abs()) + ulps(want[i], 1.0)
        });
    }
}
