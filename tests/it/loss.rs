//! shaders/loss.wgsl against src/reference/loss.rs.
//!
//! Tolerances. Forward: every term (p − t)² is ≥ 0, so Σ|terms| = n·L and a relative bound suffices. Each term
//! carries 3 roundings (difference, square; the difference's error doubles in the square: ≤ 3u relative), each
//! partial sum reaches the result through at most `depth(n)` sequential additions (the kernel's fixed tree; see
//! shaders/loss.wgsl), and the scaling by 1/n adds 2 roundings (1/n to f32, the product): |L_gpu − L| ≤
//! γ(depth + 5)·L. That is much tighter than γ(n), so a dropped or doubled element fails. Backward: four roundings
//! (2/n, the difference, two products): ≤ 4u(1 + O(u)) relative, held to 2.5 ULP (= 5u).

use crate::common;

use common::{assert_close, gpu, ulps, uniform};
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::loss;
use diffuse::reference::{gamma, gradcheck, loss as reference, to_f64};

/// The longest chain of sequential additions behind the GPU's sum of n terms: the strided run of one invocation of
/// each stage plus 8 tree levels each.
fn depth(n: usize) -> usize {
    let g = loss::partials(n);
    n.div_ceil(loss::WORKGROUP * g) + 8 + g.div_ceil(loss::WORKGROUP) + 8
}

fn gpu_mse(pred: &[f32], target: &[f32]) -> f32 {
    let gpu = gpu();
    let n = pred.len();
    let p = Tensor::from_f32(gpu, &[n], pred).unwrap();
    let t = Tensor::from_f32(gpu, &[n], target).unwrap();
    let l = common::nan_tensor(&[1]); // must be overwritten
    gpu.run(&loss::mse_forward(gpu, &p, &t, &l).unwrap())
        .unwrap();
    l.read_f32(gpu).unwrap()[0]
}

#[test]
fn mse_forward_matches_reference_around_the_workgroup_size() {
    // 1; one short of, at, and one past a workgroup; and a size that needs several partial sums.
    for (case, n) in [1usize, 255, 256, 257, 100_003].into_iter().enumerate() {
        let pred = uniform(n, 2 * case as u64);
        let target = uniform(n, 2 * case as u64 + 1);
        let want = reference::mse_forward(&to_f64(&pred), &to_f64(&target));
        let got = gpu_mse(&pred, &target);
        assert_close(&format!("mse n={n}"), &[got], &[want], |_| {
            gamma(depth(n) + 5) * want
        });
    }
}

#[test]
fn mse_forward_handles_more_elements_than_256_times_65535() {
    // One past what a one-element-per-invocation 1-D grid could cover: every invocation loops 65 times.
    let n = 256 * 65535 + 1;
    let pred = uniform(n, 7);
    let target: Vec<f32> = uniform(n, 8).iter().map(|v| 0.5 * v).collect();
    let want = reference::mse_forward(&to_f64(&pred), &to_f64(&target));
    let got = gpu_mse(&pred, &target);
    assert_close(&format!("mse n={n}"), &[got], &[want], |_| {
        gamma(depth(n) + 5) * want
    });
}

#[test]
fn mse_forward_is_deterministic_and_recomputes_when_inputs_change() {
    let gpu = gpu();
    let n = 5000;
    let (a, b) = (uniform(n, 1), uniform(n, 2));
    let p = Tensor::from_f32(gpu, &[n], &a).unwrap();
    let t = Tensor::from_f32(gpu, &[n], &b).unwrap();
    let l = common::nan_tensor(&[1]); // must be overwritten
    let step = loss::mse_forward(gpu, &p, &t, &l).unwrap();
    gpu.run(&step).unwrap();
    let first = l.read_f32(gpu).unwrap()[0];
    gpu.run(&step).unwrap();
    assert_eq!(
        l.read_f32(gpu).unwrap()[0].to_bits(),
        first.to_bits(),
        "same inputs, same bits"
    );
    // The same recorded dispatches on new data: pred = target gives exactly 0.
    p.write_f32(gpu, &b).unwrap();
    gpu.run(&step).unwrap();
    assert_eq!(l.read_f32(gpu).unwrap()[0], 0.0);
}

#[test]
fn mse_backward_matches_reference_with_and_without_an_upstream_gradient() {
    let gpu = gpu();
    for (case, n) in [1usize, 255, 257, 100_003].into_iter().enumerate() {
        let pred = uniform(n, 40 + case as u64);
        let target = uniform(n, 50 + case as u64);
        let shape = [n, 1];
        let p = Tensor::from_f32(gpu, &shape, &pred).unwrap();
        let t = Tensor::from_f32(gpu, &shape, &target).unwrap();
        let g = Tensor::from_f32(gpu, &[1], &[-0.37]).unwrap();
        // NaN first: the backward overwrites its output.
        let d_plain = common::nan_tensor(&shape);
        let d_scaled = common::nan_tensor(&shape);
        gpu.run([
            &loss::mse_backward(gpu, &p, &t, None, &d_plain).unwrap(),
            &loss::mse_backward(gpu, &p, &t, Some(&g), &d_scaled).unwrap(),
        ])
        .unwrap();
        let (p64, t64) = (to_f64(&pred), to_f64(&target));
        for (what, tensor, g) in [
            ("g = 1", &d_plain, 1.0),
            ("g = −0.37", &d_scaled, -0.37f32 as f64),
        ] {
            let want = reference::mse_backward(&p64, &t64, g);
            assert_close(
                &format!("mse_backward n={n} {what}"),
                &tensor.read_f32(gpu).unwrap(),
                &want,
                |i| ulps(want[i], 2.5),
            );
        }
    }
}

#[test]
fn mse_backward_reference_matches_finite_differences() {
    let pred = common::uniform64(33, 1);
    let target = common::uniform64(33, 2);
    let g = 1.7;
    let numeric =
        gradcheck::numeric_gradient(&pred, 1e-6, |p| g * reference::mse_forward(p, &target));
    let analytic = reference::mse_backward(&pred, &target, g);
    let (i, r) = gradcheck::worst_ratio(&analytic, &numeric, 1e-8, 1e-6);
    assert!(
        r <= 1.0,
        "mse gradient at [{i}]: analytic {} vs numeric {}",
        analytic[i],
        numeric[i]
    );
}

#[test]
fn the_forward_tolerance_catches_one_dropped_element() {
    // The harness must be able to fail: leaving out one term of 100 003 moves L by ~1/n relative, far past the
    // bound, so a kernel that skipped an element would be caught.
    let n = 100_003;
    let pred = to_f64(&uniform(n, 3));
    let target = to_f64(&uniform(n, 4));
    let want = reference::mse_forward(&pred, &target);
    let dropped = reference::mse_forward(&pred[1..], &target[1..]) * (n - 1) as f64 / n as f64;
    let err = common::check_close(&[dropped as f32], &[want], |_| gamma(depth(n) + 5) * want);
    assert!(err.is_err(), "a sum missing one term passed the tolerance");
}

#[test]
fn bad_shapes_and_types_are_refused() {
    let gpu = gpu();
    let a = Tensor::zeros(gpu, &[4, 5], DType::F32).unwrap();
    let b = Tensor::zeros(gpu, &[5, 4], DType::F32).unwrap();
    let l = Tensor::zeros(gpu, &[1], DType::F32).unwrap();
    let l2 = Tensor::zeros(gpu, &[2], DType::F32).unwrap();
    let u = Tensor::zeros(gpu, &[4, 5], DType::U32).unwrap();
    let msg = |r: diffuse::Result<Vec<diffuse::gpu::Dispatch>>| {
        r.err().expect("must be refused").to_string()
    };
    let e = msg(loss::mse_forward(gpu, &a, &b, &l));
    assert!(
        e.contains("mse_forward") && e.contains("[4, 5]") && e.contains("[5, 4]"),
        "{e}"
    );
    let e = msg(loss::mse_forward(gpu, &a, &a, &l2));
    assert!(e.contains("one-element") && e.contains("[2]"), "{e}");
    let e = msg(loss::mse_forward(gpu, &u, &u, &l));
    assert!(e.contains("U32"), "{e}");
    let e = loss::mse_backward(gpu, &a, &a, Some(&l2), &a)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(e.contains("d_loss") && e.contains("[2]"), "{e}");
    let e = loss::mse_backward(gpu, &a, &a, None, &b)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(e.contains("mse_backward") && e.contains("[5, 4]"), "{e}");
}

// ---------------------------------------------------------------------------------------------------------------
// Per-sample weights gathered by timestep (Min-SNR-γ).
//
// Tolerances. Forward: each term w·(p − t)² carries the 3 roundings of the unweighted square plus one for the
// product with w (w itself is the f32 table entry, which the reference reads widened, so it is exact): ≤ 4u
// relative, and every term is ≥ 0 (w ≥ 0), so |L_gpu − L| ≤ γ(depth + 6)·L as above. Backward: the unweighted
// four roundings plus the product with w: ≤ 5u(1 + O(u)) relative, held to 3 ULP (= 6u).
// ---------------------------------------------------------------------------------------------------------------

/// A weight table of T = 13 entries, the edge values included: 0 (an ignored timestep), 1, and weights above 1.
fn weight_table() -> Vec<f32> {
    (0..13)
        .map(|k| match k {
            0 => 0.0,
            1 => 1.0,
            k => 0.05 + 0.4 * k as f32,
        })
        .collect()
}

/// Runs the weighted forward and both weighted backwards on the GPU: (L, d_pred with g = 1, d_pred with g).
fn gpu_weighted(
    pred: &[f32],
    target: &[f32],
    t: &[u32],
    table: &[f32],
    g: f32,
) -> (f32, Vec<f32>, Vec<f32>) {
    let gpu = gpu();
    let shape = [t.len(), pred.len() / t.len()];
    let p = Tensor::from_f32(gpu, &shape, pred).unwrap();
    let tg = Tensor::from_f32(gpu, &shape, target).unwrap();
    let steps = Tensor::from_u32(gpu, &[t.len()], t).unwrap();
    let weights = Tensor::from_f32(gpu, &[table.len()], table).unwrap();
    let w = loss::SampleWeights {
        t: &steps,
        table: &weights,
    };
    let l = common::nan_tensor(&[1]); // must be overwritten
    let (d_plain, d_scaled) = (common::nan_tensor(&shape), common::nan_tensor(&shape));
    let g = Tensor::from_f32(gpu, &[1], &[g]).unwrap();
    let mut d = loss::mse_forward_weighted(gpu, &p, &tg, w, &l).unwrap();
    d.push(loss::mse_backward_weighted(gpu, &p, &tg, w, None, &d_plain).unwrap());
    d.push(loss::mse_backward_weighted(gpu, &p, &tg, w, Some(&g), &d_scaled).unwrap());
    gpu.run(&d).unwrap();
    (
        l.read_f32(gpu).unwrap()[0],
        d_plain.read_f32(gpu).unwrap(),
        d_scaled.read_f32(gpu).unwrap(),
    )
}

#[test]
fn weighted_mse_matches_reference_on_odd_sizes_and_batch_1() {
    let table = weight_table();
    // (samples N, elements per sample d): batch 1 of one element and of a workgroup and one; odd batches of odd
    // samples; and one that needs many partial sums.
    for (case, (n, d)) in [(1usize, 1usize), (1, 257), (3, 85), (7, 33), (5, 20_011)]
        .into_iter()
        .enumerate()
    {
        let len = n * d;
        let pred = uniform(len, 60 + case as u64);
        let target = uniform(len, 70 + case as u64);
        // Timesteps over the whole table, 0 (weight 0) and past its end (clamped to T − 1) included.
        let t: Vec<u32> = (0..n as u32).map(|k| (k * 5 + case as u32) % 15).collect();
        let g = -0.37f32;
        let (l, d_plain, d_scaled) = gpu_weighted(&pred, &target, &t, &table, g);
        let w: Vec<f64> = t
            .iter()
            .map(|&k| table[(k as usize).min(table.len() - 1)] as f64)
            .collect();
        let (p64, t64) = (to_f64(&pred), to_f64(&target));
        let want = reference::mse_weighted_forward(&p64, &t64, &w);
        let what = format!("weighted mse N={n} d={d} t={t:?}");
        assert_close(&what, &[l], &[want], |_| gamma(depth(len) + 6) * want);
        for (kind, got, g) in [("g = 1", &d_plain, 1.0), ("g = −0.37", &d_scaled, g as f64)] {
            let want = reference::mse_weighted_backward(&p64, &t64, &w, g);
            assert_close(&format!("{what} backward {kind}"), got, &want, |i| {
                ulps(want[i], 3.0)
            });
        }
    }
}

#[test]
fn unit_weights_give_the_unweighted_bits() {
    // w = 1 makes every weighted term the unweighted one exactly (1·x = x), summed in the same order: the weighted
    // path differs from the plain one only by the weights.
    let gpu = gpu();
    let (n, d) = (3, 1001);
    let (pred, target) = (uniform(n * d, 81), uniform(n * d, 82));
    let (l, d_plain, _) = gpu_weighted(&pred, &target, &[0, 1, 2], &[1.0; 4], 1.0);
    let p = Tensor::from_f32(gpu, &[n, d], &pred).unwrap();
    let t = Tensor::from_f32(gpu, &[n, d], &target).unwrap();
    let plain_l = common::nan_tensor(&[1]);
    let plain_d = common::nan_tensor(&[n, d]);
    let mut dispatches = loss::mse_forward(gpu, &p, &t, &plain_l).unwrap();
    dispatches.push(loss::mse_backward(gpu, &p, &t, None, &plain_d).unwrap());
    gpu.run(&dispatches).unwrap();
    assert_eq!(l.to_bits(), plain_l.read_f32(gpu).unwrap()[0].to_bits());
    assert_eq!(d_plain, plain_d.read_f32(gpu).unwrap());
}

#[test]
fn weighted_mse_backward_reference_matches_finite_differences() {
    let (n, d) = (3, 11);
    let pred = common::uniform64(n * d, 11);
    let target = common::uniform64(n * d, 12);
    let w = [0.0, 2.5, 0.3];
    let g = 1.7;
    let numeric = gradcheck::numeric_gradient(&pred, 1e-6, |p| {
        g * reference::mse_weighted_forward(p, &target, &w)
    });
    let analytic = reference::mse_weighted_backward(&pred, &target, &w, g);
    let (i, r) = gradcheck::worst_ratio(&analytic, &numeric, 1e-8, 1e-6);
    assert!(
        r <= 1.0,
        "weighted mse gradient at [{i}]: analytic {} vs numeric {}",
        analytic[i],
        numeric[i]
    );
    // The check can fail: the unweighted gradient is not the weighted one's.
    let unweighted = reference::mse_backward(&pred, &target, g);
    assert!(gradcheck::worst_ratio(&unweighted, &numeric, 1e-8, 1e-6).1 > 1.0);
}

#[test]
fn weighted_mse_refuses_timesteps_that_do_not_match_the_batch() {
    let gpu = gpu();
    let a = Tensor::zeros(gpu, &[4, 5], DType::F32).unwrap();
    let l = Tensor::zeros(gpu, &[1], DType::F32).unwrap();
    let table = Tensor::zeros(gpu, &[10], DType::F32).unwrap();
    let t3 = Tensor::zeros(gpu, &[3], DType::U32).unwrap();
    let t_f32 = Tensor::zeros(gpu, &[4], DType::F32).unwrap();
    let t4 = Tensor::zeros(gpu, &[4], DType::U32).unwrap();
    let table_2d = Tensor::zeros(gpu, &[2, 5], DType::F32).unwrap();
    let with = |t, table| loss::SampleWeights { t, table };
    let e = loss::mse_forward_weighted(gpu, &a, &a, with(&t3, &table), &l)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        e.contains("mse_forward_weighted") && e.contains("batch of 4") && e.contains("[3]"),
        "{e}"
    );
    let e = loss::mse_backward_weighted(gpu, &a, &a, with(&t_f32, &table), None, &a)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(e.contains("u32") && e.contains("F32"), "{e}");
    let e = loss::mse_forward_weighted(gpu, &a, &a, with(&t4, &table_2d), &l)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(e.contains("weight table must be [T]"), "{e}");
}
