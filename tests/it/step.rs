//! shaders/step.wgsl against src/reference/step.rs.
//! Tolerance: each output is at most three products summed in f32 (y = a·x + b·o + c·z, or + b2·o2), so
//! |Δ| ≤ γ₃·(|a·x| + |b·o| + |c·z|) (reference::gamma). The clipped step first forms x̂₀ = p·x + q·o with
//! |Δx̂₀| ≤ γ₂·(|p·x| + |q·o|) (clamping is 1-Lipschitz, so the error survives it at most unchanged), which reaches y
//! multiplied by |u|: |Δ| ≤ |u|·γ₂·(|p·x| + |q·o|) + γ₃·(|u·x̂₀| + |w·x| + |c·z|). The scalars are rounded to f32
//! once on upload and the reference uses the same rounded values.

use crate::common;

use common::{assert_close, gpu, uniform, uniform64};
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::step::{self as kernel, ClippedCoefficients};
use diffuse::reference::{gamma, step as reference};

/// Shapes: one element; one past a workgroup; odd; a 28×28 batch of 8; a 32×32 RGB batch of 8 (the sampler's x).
const SHAPES: &[&[usize]] = &[&[1], &[257], &[3, 5, 7], &[8, 1, 28, 28], &[8, 3, 32, 32]];

fn r(v: f64) -> f64 {
    v as f32 as f64
}

fn tensor(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_f32(gpu(), shape, data).unwrap()
}

#[test]
fn step_matches_reference_with_and_without_noise() {
    let gpu = gpu();
    // A DDPM-like step (a ≈ 1/√α, b < 0, c = σ), a deterministic one (c = 0, z unbound) and a Langevin one.
    for (a, b, c) in [
        (1.0100503, -0.1421, 0.1407),
        (0.97, 0.243, 0.0),
        (1.0, 0.0015, 0.0547),
    ] {
        let (a, b, c) = (r(a), r(b), r(c));
        for (s, shape) in SHAPES.iter().enumerate() {
            let n: usize = shape.iter().product();
            let seed = 10 * s as u64;
            let (x, o, z) = (uniform(n, seed), uniform(n, seed + 1), uniform(n, seed + 2));
            let y = common::nan_tensor(shape); // must be overwritten
            let zt = tensor(shape, &z);
            let noise = (c != 0.0).then_some(&zt);
            let d = kernel::step(
                gpu,
                &tensor(shape, &x),
                &tensor(shape, &o),
                noise,
                (a, b, c),
                &y,
            )
            .unwrap();
            gpu.run([&d]).unwrap();
            let (x, o, z) = (
                uniform64(n, seed),
                uniform64(n, seed + 1),
                uniform64(n, seed + 2),
            );
            let want = reference::step(&x, &o, (c != 0.0).then_some(&z[..]), a, b, c);
            assert_close(
                &format!("step {shape:?} c={c}"),
                &y.read_f32(gpu).unwrap(),
                &want,
                |i| gamma(3) * ((a * x[i]).abs() + (b * o[i]).abs() + (c * z[i]).abs()),
            );
        }
    }
}

#[test]
fn heun_corrector_matches_reference() {
    let gpu = gpu();
    let (a, b, b2) = (r(1.003), r(-0.0625), r(-0.0611));
    for (s, shape) in SHAPES.iter().enumerate() {
        let n: usize = shape.iter().product();
        let seed = 100 + 10 * s as u64;
        let (x, o, o2) = (uniform(n, seed), uniform(n, seed + 1), uniform(n, seed + 2));
        let y = common::nan_tensor(shape); // must be overwritten
        let d = kernel::step_heun(
            gpu,
            &tensor(shape, &x),
            &tensor(shape, &o),
            &tensor(shape, &o2),
            (a, b, b2),
            &y,
        )
        .unwrap();
        gpu.run([&d]).unwrap();
        let (x, o, o2) = (
            uniform64(n, seed),
            uniform64(n, seed + 1),
            uniform64(n, seed + 2),
        );
        let want = reference::step_heun(&x, &o, &o2, a, b, b2);
        assert_close(
            &format!("heun {shape:?}"),
            &y.read_f32(gpu).unwrap(),
            &want,
            |i| gamma(3) * ((a * x[i]).abs() + (b * o[i]).abs() + (b2 * o2[i]).abs()),
        );
    }
}

#[test]
fn clipped_step_matches_reference_where_the_clip_bites() {
    let gpu = gpu();
    // p·x + q·o spans about ±4 for inputs in [−1, 1), so a clip to [−1, 1] bites on many elements; [−0.25, 0.5]
    // is asymmetric.
    let k = ClippedCoefficients {
        p: r(2.5),
        q: r(-1.5),
        lo: -1.0,
        hi: 1.0,
        u: r(0.31),
        w: r(0.83),
        c: r(0.12),
    };
    for clip in [(-1.0, 1.0), (-0.25, 0.5)] {
        let k = ClippedCoefficients {
            lo: clip.0,
            hi: clip.1,
            ..k
        };
        for (s, shape) in SHAPES.iter().enumerate() {
            let n: usize = shape.iter().product();
            let seed = 200 + 10 * s as u64;
            let (x, o, z) = (uniform(n, seed), uniform(n, seed + 1), uniform(n, seed + 2));
            let y = common::nan_tensor(shape); // must be overwritten
            let zt = tensor(shape, &z);
            let d = kernel::step_clipped(
                gpu,
                &tensor(shape, &x),
                &tensor(shape, &o),
                Some(&zt),
                &k,
                &y,
            )
            .unwrap();
            gpu.run([&d]).unwrap();
            let (x, o, z) = (
                uniform64(n, seed),
                uniform64(n, seed + 1),
                uniform64(n, seed + 2),
            );
            let want =
                reference::step_clipped(&x, &o, Some(&z), (k.p, k.q, k.lo, k.hi), k.u, k.w, k.c);
            let clipped = (0..n)
                .filter(|&i| !(k.lo..=k.hi).contains(&(k.p * x[i] + k.q * o[i])))
                .count();
            assert!(
                n < 10 || clipped > n / 10,
                "the clip must bite: {clipped} of {n}"
            );
            assert_close(
                &format!("clipped {shape:?} {clip:?}"),
                &y.read_f32(gpu).unwrap(),
                &want,
                |i| {
                    let x0 = (k.p * x[i] + k.q * o[i]).clamp(k.lo, k.hi);
                    k.u.abs() * gamma(2) * ((k.p * x[i]).abs() + (k.q * o[i]).abs())
                        + gamma(3) * ((k.u * x0).abs() + (k.w * x[i]).abs() + (k.c * z[i]).abs())
                },
            );
        }
    }
}

#[test]
fn step_refuses_bad_inputs() {
    let gpu = gpu();
    let x = Tensor::zeros(gpu, &[2, 4], DType::F32).unwrap();
    let other = Tensor::zeros(gpu, &[2, 5], DType::F32).unwrap();
    let ints = Tensor::zeros(gpu, &[2, 4], DType::U32).unwrap();
    let msg =
        |r: diffuse::Result<diffuse::gpu::Dispatch>| r.err().expect("must be refused").to_string();
    assert!(msg(kernel::step(gpu, &x, &other, None, (1.0, 1.0, 0.0), &x)).contains("[2, 5]"));
    assert!(msg(kernel::step(gpu, &x, &x, None, (1.0, 1.0, 0.5), &x)).contains("no noise tensor"));
    assert!(msg(kernel::step(gpu, &x, &x, Some(&other), (1.0, 1.0, 0.5), &x)).contains("[2, 5]"));
    assert!(msg(kernel::step(gpu, &ints, &x, None, (1.0, 1.0, 0.0), &x)).contains("f32"));
    assert!(msg(kernel::step_heun(gpu, &x, &x, &other, (1.0, 1.0, 1.0), &x)).contains("[2, 5]"));
    let empty = ClippedCoefficients {
        p: 1.0,
        q: 0.0,
        lo: 1.0,
        hi: -1.0,
        u: 1.0,
        w: 0.0,
        c: 0.0,
    };
    assert!(msg(kernel::step_clipped(gpu, &x, &x, None, &empty, &x)).contains("empty"));
}
