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
