//! shaders/embedding.wgsl against src/reference/embedding.rs.
//!
//! Tolerances. Class lookup: a copy, exact. Its backward sums count_c rows per class: γ(count_c)·Σ|terms|, Σ|terms|
//! from the reference run on |d_y|. Timestep embedding: the reference is exact math in f64; the GPU's argument
//! t·freq carries two roundings (freq to f32, the product; t itself is exact), so it is off by ≤ 2u·|arg|
//! (u = 2⁻²⁴), which moves cos and sin by as much. The Cody–Waite reduction to [−π, π] adds ≤ π·u (its last
//! rounding) plus |k|·2u·1.94·10⁻³ ≤ 0.0006u·|arg| (the rounded low part of 2π); sin/cos on [−π, π] are assumed
//! within 4u absolute (WGSL itself only promises 2⁻¹¹; Mesa and the GPU vendors' full-precision paths meet 4u).
//! Bound: u·(2.01·|arg| + 8), e.g. 1.2·10⁻⁴ at arg = 999 and 4.8·10⁻⁷ for |arg| < 1. The padding column is exact.

use crate::common;

use common::{assert_close, gpu, uniform};
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::embedding as emb;
use diffuse::model::config::DEFAULT_MAX_PERIOD;
use diffuse::reference::{embedding as reference, gamma, gradcheck, to_f64, F32_UNIT_ROUNDOFF};

fn sinusoid_bound(arg: f64) -> f64 {
    F32_UNIT_ROUNDOFF * (2.01 * arg.abs() + 8.0)
}

/// Runs the timestep embedding of `t` (u32) into [N, dim] and checks it against the reference.
fn check_timesteps_u32(t: &[u32], dim: usize) -> Vec<f32> {
    check_shifted(t, dim, 0)
}

/// [`check_timesteps_u32`] with the frequencies exp(−ln(10⁴)·i/(half − shift)).
fn check_shifted(t: &[u32], dim: usize, shift: usize) -> Vec<f32> {
    let gpu = gpu();
    let n = t.len();
    let tt = Tensor::from_u32(gpu, &[n], t).unwrap();
    let out = common::nan_tensor(&[n, dim]); // must be overwritten
    gpu.run([&emb::timestep_embedding(gpu, &tt, (DEFAULT_MAX_PERIOD, shift), &out).unwrap()])
        .unwrap();
    let got = out.read_f32(gpu).unwrap();
    let t64: Vec<f64> = t.iter().map(|&v| v as f64).collect();
    let want = reference::timestep_embedding(&t64, dim, (DEFAULT_MAX_PERIOD, shift));
    let args = reference::timestep_arguments(&t64, dim, (DEFAULT_MAX_PERIOD, shift));
    assert_close(
        &format!("timestep_embedding N={n} D={dim} shift {shift}"),
        &got,
        &want,
        |i| sinusoid_bound(args[i]),
    );
    if dim % 2 == 1 {
        assert!(
            got.chunks(dim).all(|row| row[dim - 1] == 0.0),
            "odd D: the last column must be exactly 0"
        );
    }
    got
}

#[test]
fn timestep_embedding_matches_reference_for_odd_and_even_widths() {
    // Batch 1 at t = 0 (cos = 1, sin = 0 exactly); the smallest widths, odd and even; the U-Net's 128 and 512
    // with t spread over 0..1000, including T − 1 = 999, where the first column's argument is 999 rad.
    check_timesteps_u32(&[0], 2);
    check_timesteps_u32(&[5], 3);
    check_timesteps_u32(&[1, 17, 998], 7);
    check_timesteps_u32(&[0, 1, 2, 250, 500, 750, 998, 999], 128);
    check_timesteps_u32(&[999, 0, 123, 4, 77, 640, 999, 31], 512);
    check_timesteps_u32(&[3, 999], 129);
}

#[test]
fn shifted_frequencies_reach_exactly_one_over_max_period_and_match_the_reference() {
    // Ho et al.'s embedding (diffusers' freq_shift = 1): the last frequency is exactly 1/max_period, and the
    // GPU matches the reference at the smallest width a shift allows, an odd one and the U-Net's.
    let last = emb::timestep_frequencies(4, DEFAULT_MAX_PERIOD, 1)[3];
    assert_eq!(last, (1.0 / DEFAULT_MAX_PERIOD) as f32);
    assert_ne!(emb::timestep_frequencies(4, DEFAULT_MAX_PERIOD, 0)[3], last);
    check_shifted(&[0, 999], 4, 1);
    check_shifted(&[1, 17, 998], 7, 1);
    check_shifted(&[0, 417, 999, 3], 128, 1);
    // Half the width 2 is 1: no shift fits, and the wrapper says so.
    let gpu = gpu();
    let tt = Tensor::from_u32(gpu, &[1], &[0]).unwrap();
    let out = Tensor::zeros(gpu, &[1, 2], DType::F32).unwrap();
    let err = emb::timestep_embedding(gpu, &tt, (DEFAULT_MAX_PERIOD, 1), &out)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("frequency shift"), "{err}");
}

#[test]
fn timestep_embedding_of_f32_timesteps_matches_reference_and_equals_the_u32_path_for_integers() {
    let gpu = gpu();
    let dim = 64;
    // Continuous times (t ∈ [0, 1000), e.g. a continuous-time model scaled by 1000) and integers.
    let t: Vec<f32> = uniform(9, 5)
        .iter()
        .map(|v| (v + 1.0) * 500.0)
        .chain([0.0, 999.0, 17.0])
        .collect();
    let n = t.len();
    let tt = Tensor::from_f32(gpu, &[n], &t).unwrap();
    let out = common::nan_tensor(&[n, dim]); // must be overwritten
    gpu.run([&emb::timestep_embedding(gpu, &tt, (DEFAULT_MAX_PERIOD, 0), &out).unwrap()])
        .unwrap();
    let got = out.read_f32(gpu).unwrap();
    let t64 = to_f64(&t);
    let want = reference::timestep_embedding(&t64, dim, (DEFAULT_MAX_PERIOD, 0));
    let args = reference::timestep_arguments(&t64, dim, (DEFAULT_MAX_PERIOD, 0));
    assert_close("timestep_embedding f32", &got, &want, |i| {
        sinusoid_bound(args[i])
    });
    // The last three timesteps are integers: the u32 path must give the same bits.
    let ints = check_timesteps_u32(&[0, 999, 17], dim);
    assert_eq!(
        &got[(n - 3) * dim..],
        &ints[..],
        "u32 and f32 timesteps disagree"
    );
}

#[test]
fn class_embedding_forward_and_backward_match_reference() {
    let gpu = gpu();
    // (labels, classes, D): batch 1 with one class and one column; a batch of 8 with repeats into 10 classes at
    // D = 128; D = 512 with every label the same; odd D with labels ≥ classes (zero rows, no gradient).
    let cases: [(Vec<u32>, usize, usize); 4] = [
        (vec![0], 1, 1),
        (vec![3, 9, 3, 0, 1, 3, 9, 7], 10, 128),
        (vec![2, 2, 2, 2, 2], 3, 512),
        (vec![1, 4, u32::MAX, 0, 1, 3, 4], 4, 7),
    ];
    for (case, (labels, classes, dim)) in cases.into_iter().enumerate() {
        let n = labels.len();
        let table = uniform(classes * dim, 10 + case as u64);
        let d_y = uniform(n * dim, 20 + case as u64);
        let lt = Tensor::from_u32(gpu, &[n], &labels).unwrap();
        let tt = Tensor::from_f32(gpu, &[classes, dim], &table).unwrap();
        let yt = common::nan_tensor(&[n, dim]); // must be overwritten
        let dyt = Tensor::from_f32(gpu, &[n, dim], &d_y).unwrap();
        // Filled with garbage first: the backward must overwrite every element, unused classes included.
        let dtt = Tensor::from_f32(gpu, &[classes, dim], &vec![7.0; classes * dim]).unwrap();
        gpu.run([
            &emb::class_embedding_forward(gpu, &lt, &tt, &yt).unwrap(),
            &emb::class_embedding_backward(gpu, &lt, &dyt, &dtt).unwrap(),
        ])
        .unwrap();
        let what = format!("labels {labels:?} classes {classes} D {dim}");
        let want = reference::class_embedding_forward(&labels, &to_f64(&table), classes, dim);
        assert_close(
            &format!("forward, {what}"),
            &yt.read_f32(gpu).unwrap(),
            &want,
            |_| 0.0,
        );
        let d64 = to_f64(&d_y);
        let want = reference::class_embedding_backward(&labels, &d64, classes, dim);
        let abs: Vec<f64> = d64.iter().map(|v| v.abs()).collect();
        let mag = reference::class_embedding_backward(&labels, &abs, classes, dim);
        let count = |c: usize| labels.iter().filter(|&&l| l as usize == c).count();
        assert_close(
            &format!("backward, {what}"),
            &dtt.read_f32(gpu).unwrap(),
            &want,
            |i| gamma(count(i / dim)) * mag[i],
        );
    }
}

#[test]
fn class_embedding_backward_reference_matches_finite_differences() {
    // L = ⟨y(table), w⟩; the lookup is linear in the table, so the check is exact up to rounding, but it still
    // catches a gradient routed to the wrong row or a label counted twice.
    let (labels, classes, dim) = ([2u32, 0, 2, 5, 1], 4, 3);
    let table = common::uniform64(classes * dim, 1);
    let w = common::uniform64(labels.len() * dim, 2);
    let numeric = gradcheck::numeric_gradient(&table, 1e-6, |tb| {
        gradcheck::dot(
            &reference::class_embedding_forward(&labels, tb, classes, dim),
            &w,
        )
    });
    let analytic = reference::class_embedding_backward(&labels, &w, classes, dim);
    let (i, r) = gradcheck::worst_ratio(&analytic, &numeric, 1e-8, 1e-6);
    assert!(
        r <= 1.0,
        "lookup gradient at [{i}]: analytic {} vs numeric {}",
        analytic[i],
        numeric[i]
    );
    // Class 3 is never used and label 5 is out of range: no gradient reaches row 3.
    assert!(analytic[3 * dim..4 * dim].iter().all(|&g| g == 0.0));
}

#[test]
fn bad_shapes_and_types_are_refused() {
    let gpu = gpu();
    let t = Tensor::zeros(gpu, &[4], DType::U32).unwrap();
    let tf = Tensor::zeros(gpu, &[4], DType::F32).unwrap();
    let out = Tensor::zeros(gpu, &[4, 8], DType::F32).unwrap();
    let msg =
        |r: diffuse::Result<diffuse::gpu::Dispatch>| r.err().expect("must be refused").to_string();

    let e = msg(emb::timestep_embedding(
        gpu,
        &t.reshape(&[2, 2]).unwrap(),
        (1e4, 0),
        &out,
    ));
    assert!(
        e.contains("timestep_embedding") && e.contains("[2, 2]"),
        "{e}"
    );
    let e = msg(emb::timestep_embedding(
        gpu,
        &t,
        (1e4, 0),
        &Tensor::zeros(gpu, &[5, 8], DType::F32).unwrap(),
    ));
    assert!(e.contains("[4, D]") && e.contains("[5, 8]"), "{e}");
    let e = msg(emb::timestep_embedding(
        gpu,
        &t,
        (1e4, 0),
        &Tensor::zeros(gpu, &[4, 1], DType::F32).unwrap(),
    ));
    assert!(e.contains("D ≥ 2"), "{e}");
    let e = msg(emb::timestep_embedding(gpu, &t, (0.0, 0), &out));
    assert!(e.contains("max_period"), "{e}");

    let table = Tensor::zeros(gpu, &[3, 8], DType::F32).unwrap();
    let e = msg(emb::class_embedding_forward(gpu, &tf, &table, &out));
    assert!(e.contains("labels") && e.contains("F32"), "{e}");
    let e = msg(emb::class_embedding_forward(
        gpu,
        &t,
        &table.reshape(&[24]).unwrap(),
        &out,
    ));
    assert!(e.contains("[classes, D]") && e.contains("[24]"), "{e}");
    let e = msg(emb::class_embedding_forward(
        gpu,
        &t,
        &table,
        &Tensor::zeros(gpu, &[4, 7], DType::F32).unwrap(),
    ));
    assert!(e.contains("[4, 8]") && e.contains("[4, 7]"), "{e}");
    let e = msg(emb::class_embedding_backward(
        gpu,
        &t,
        &out,
        &Tensor::zeros(gpu, &[3, 8], DType::U32).unwrap(),
    ));
    assert!(
        e.contains("class_embedding_backward") && e.contains("U32"),
        "{e}"
    );
}
