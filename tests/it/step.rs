//! shaders/step.wgsl against src/reference/step.rs.
//! Tolerance: each output is at most three products summed in f32 (y = a·x + b·o + c·z, or + b2·o2), so
//! |Δ| ≤ γ₃·(|a·x| + |b·o| + |c·z|) (reference::gamma). The clipped step first forms x̂₀ = p·x + q·o with
//! |Δx̂₀| ≤ γ₂·(|p·x| + |q·o|) (clamping is 1-Lipschitz, so the error survives it at most unchanged), which reaches y
//! multiplied by |u|: |Δ| ≤ |u|·γ₂·(|p·x| + |q·o|) + γ₃·(|u·x̂₀| + |w·x| + |c·z|). The scalars are rounded to f32
//! once on upload and the reference uses the same rounded values.

use crate::common;

use common::{assert_close, gpu, uniform, uniform64};
use diffuse::diffusion::samplers::{Clipped, Corrector, History, Multistep, NoiseLevel, X0Bound};
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::step as kernel;
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
    // is asymmetric. v ≠ 0 is the step that keeps the model's ε̂ (diffusers' clip_sample).
    let k = Clipped {
        p: r(2.5),
        q: r(-1.5),
        bound: X0Bound::None,
        u: r(0.31),
        w: r(0.83),
        v: 0.0,
        c: r(0.12),
    };
    for (clip, v) in [((-1.0, 1.0), 0.0), ((-0.25, 0.5), r(0.47))] {
        let k = Clipped {
            bound: X0Bound::Fixed {
                lo: clip.0,
                hi: clip.1,
            },
            v,
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
                None,
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
            let want = reference::step_clipped(&x, &o, Some(&z), &k, n);
            let clipped = (0..n)
                .filter(|&i| !(clip.0..=clip.1).contains(&(k.p * x[i] + k.q * o[i])))
                .count();
            assert!(
                n < 10 || clipped > n / 10,
                "the clip must bite: {clipped} of {n}"
            );
            assert_close(
                &format!("clipped {shape:?} {clip:?} v={v}"),
                &y.read_f32(gpu).unwrap(),
                &want,
                |i| {
                    let x0 = (k.p * x[i] + k.q * o[i]).clamp(clip.0, clip.1);
                    k.u.abs() * gamma(2) * ((k.p * x[i]).abs() + (k.q * o[i]).abs())
                        + gamma(4)
                            * ((k.u * x0).abs()
                                + (k.w * x[i]).abs()
                                + (k.v * o[i]).abs()
                                + (k.c * z[i]).abs())
                },
            );
        }
    }
}

/// Samples of `shape` whose x̂₀ = p·x + q·o reaches past ±1 and has ties, so the quantile's two order statistics
/// are sometimes equal: x in [−1, 1) with every fifth value repeated.
fn threshold_inputs(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut x = uniform(n, seed);
    for i in (5..n).step_by(5) {
        x[i] = x[i - 5];
    }
    let o = vec![0.0; n];
    (x, o)
}

/// x0_threshold against torch.quantile's definition (reference::dynamic_scale). The GPU forms each |x̂₀| with two
/// roundings (γ₂·(|p·x| + |q·o|), and |·| is 1-Lipschitz), selects two of them exactly (a radix select on the
/// bits) and interpolates at rank = ratio·(n − 1) in f32: the rank is off by at most u·rank, which moves the
/// result by u·rank·(gap between the two order statistics), and the lerp adds γ₃·max. So
/// |Δs| ≤ γ₂·max_i(|p·x_i| + |q·o_i|) + u·(rank + 1)·gap + γ₃·s. The final clamp to [1, max] is 1-Lipschitz.
#[test]
fn dynamic_threshold_is_the_quantile_of_each_samples_x0() {
    let gpu = gpu();
    let u = f32::EPSILON as f64 / 2.0;
    // One sample of one element; batches with odd sample sizes; a 3×64×64 batch (rgb64's images).
    let shapes: &[&[usize]] = &[&[1, 1], &[3, 257], &[5, 1, 7, 7], &[2, 3, 64, 64]];
    for (ratio, max, p) in [
        (0.995, f64::INFINITY, 3.0),
        (0.5, 1.7, 2.5),
        (1.0, 2.0, 1.5),
        (0.0, 9.0, 4.0),
    ] {
        let ratio = r(ratio);
        for (s, shape) in shapes.iter().enumerate() {
            let n: usize = shape.iter().product();
            let per = n / shape[0];
            let (x, o) = threshold_inputs(n, 400 + s as u64);
            let scale = common::nan_tensor(&[shape[0]]);
            let d = kernel::x0_threshold(
                gpu,
                &tensor(shape, &x),
                &tensor(shape, &o),
                (p, 0.0),
                (ratio, max),
                &scale,
            )
            .unwrap();
            gpu.run([&d]).unwrap();
            let got = scale.read_f32(gpu).unwrap();
            let x = diffuse::reference::to_f64(&x);
            for (b, &g) in got.iter().enumerate() {
                let sample: Vec<f64> = x[b * per..(b + 1) * per].iter().map(|v| p * v).collect();
                let want = reference::dynamic_scale(&sample, ratio, max);
                let mut sorted: Vec<f64> = sample.iter().map(|v| v.abs()).collect();
                sorted.sort_by(f64::total_cmp);
                let rank = ratio * (per - 1) as f64;
                let below = rank.floor() as usize;
                let gap = sorted[(below + 1).min(per - 1)] - sorted[below];
                let biggest = sorted[per - 1];
                let bound = gamma(2) * biggest + u * (rank + 1.0) * gap + gamma(3) * want;
                assert!(
                    (g as f64 - want).abs() <= bound,
                    "{shape:?} sample {b}, ratio {ratio}, max {max}: got {g}, want {want} (bound {bound:e})"
                );
            }
        }
    }
}

/// The clipped step with dynamic thresholding, given the thresholds: x̂₀ = clamp(v, −s, s)/s adds one rounding
/// (the division) to the clamp's, so |Δx̂₀| ≤ γ₂·(|p·x| + |q·o|)/s + u·|x̂₀|.
#[test]
fn dynamically_thresholded_step_divides_by_each_samples_threshold() {
    let gpu = gpu();
    let shape = [3, 1, 9, 11];
    let n: usize = shape.iter().product();
    let (x, o) = (uniform(n, 500), uniform(n, 501));
    let k = Clipped {
        p: r(2.5),
        q: r(-1.5),
        bound: X0Bound::Dynamic {
            ratio: r(0.9),
            max: 2.0,
        },
        u: r(0.7),
        w: r(0.2),
        v: r(0.3),
        c: 0.0,
    };
    let scale = common::nan_tensor(&[3]);
    let (xt, ot) = (tensor(&shape, &x), tensor(&shape, &o));
    let y = common::nan_tensor(&shape);
    let t = kernel::x0_threshold(gpu, &xt, &ot, (k.p, k.q), (r(0.9), 2.0), &scale).unwrap();
    let d = kernel::step_clipped(gpu, &xt, &ot, None, Some(&scale), &k, &y).unwrap();
    gpu.run([&t, &d]).unwrap();
    let s = diffuse::reference::to_f64(&scale.read_f32(gpu).unwrap());
    assert!(
        s.iter().all(|&s| s > 1.0 && s <= 2.0),
        "the threshold must bite: {s:?}"
    );
    let (x, o) = (
        diffuse::reference::to_f64(&x),
        diffuse::reference::to_f64(&o),
    );
    let per = n / 3;
    let x0 = |i: usize| {
        let sb = s[i / per];
        (k.p * x[i] + k.q * o[i]).clamp(-sb, sb) / sb
    };
    let want: Vec<f64> = (0..n)
        .map(|i| k.u * x0(i) + k.w * x[i] + k.v * o[i])
        .collect();
    let u = f32::EPSILON as f64 / 2.0;
    assert_close("dynamic", &y.read_f32(gpu).unwrap(), &want, |i| {
        k.u.abs()
            * (gamma(2) * ((k.p * x[i]).abs() + (k.q * o[i]).abs()) / s[i / per] + u * x0(i).abs())
            + gamma(3) * ((k.u * x0(i)).abs() + (k.w * x[i]).abs() + (k.v * o[i]).abs())
    });
}

/// step_multistep, one step at a time from a given state (uploaded in f32, so each step is checked alone):
/// m = p·x + q·o has |Δm| ≤ γ₂·(|p·x| + |q·o|); x_c, four products summed, |Δx_c| ≤ γ₄·Σ|terms| + |cm|·Δm; y the
/// same with x_c's error times |a|. The new state is (x_c, m, m₁): the first two with those bounds, m₁ copied.
/// The first step has no corrector and NaN in m₁, m₂ with zero weights: it must not read them.
#[test]
fn multistep_step_matches_reference_and_advances_its_state() {
    let gpu = gpu();
    let none = |m, m1, m2| History { m, m1, m2 };
    let steps = [
        Multistep {
            level: NoiseLevel::CLEAN,
            p: r(1.3),
            q: r(-0.7),
            bound: X0Bound::None,
            corrector: None,
            a: r(0.6),
            b: none(r(0.4), 0.0, 0.0),
        },
        Multistep {
            level: NoiseLevel::CLEAN,
            p: r(1.1),
            q: r(-0.4),
            bound: X0Bound::Fixed { lo: -0.5, hi: 0.8 },
            corrector: Some(Corrector {
                s: r(0.9),
                history: none(r(0.2), r(-0.3), r(0.15)),
            }),
            a: r(0.7),
            b: none(r(0.5), r(-0.25), r(0.05)),
        },
    ];
    for shape in SHAPES {
        let n: usize = shape.iter().product();
        let (x, o) = (uniform(n, 600), uniform(n, 601));
        for (j, k) in steps.iter().enumerate() {
            let init: Vec<f32> = match j {
                0 => [uniform(n, 602), vec![f32::NAN; 2 * n]].concat(),
                _ => [uniform(n, 602), uniform(n, 603), uniform(n, 604)].concat(),
            };
            let state = tensor(&[3 * n], &init);
            let y = common::nan_tensor(shape);
            let d = kernel::step_multistep(
                gpu,
                &tensor(shape, &x),
                &tensor(shape, &o),
                None,
                k,
                &state,
                &y,
            )
            .unwrap();
            gpu.run([&d]).unwrap();
            let (x, o) = (
                diffuse::reference::to_f64(&x),
                diffuse::reference::to_f64(&o),
            );
            let init = diffuse::reference::to_f64(&init);
            let mut st = reference::MultistepState {
                s: init[..n].to_vec(),
                m1: init[n..2 * n]
                    .iter()
                    .map(|v| if v.is_nan() { 0.0 } else { *v })
                    .collect(),
                m2: init[2 * n..]
                    .iter()
                    .map(|v| if v.is_nan() { 0.0 } else { *v })
                    .collect(),
            };
            let old = st.clone();
            let want = reference::step_multistep(&x, &o, k, &mut st, n / shape[0]);
            let dm = |i: usize| gamma(2) * ((k.p * x[i]).abs() + (k.q * o[i]).abs());
            let m = |i: usize| st.m1[i];
            let c = k.corrector.unwrap_or(Corrector {
                s: 0.0,
                history: none(0.0, 0.0, 0.0),
            });
            let dxc = |i: usize| match k.corrector {
                Some(_) => {
                    gamma(4)
                        * ((c.s * old.s[i]).abs()
                            + (c.history.m * m(i)).abs()
                            + (c.history.m1 * old.m1[i]).abs()
                            + (c.history.m2 * old.m2[i]).abs())
                        + c.history.m.abs() * dm(i)
                }
                None => 0.0,
            };
            assert_close(
                &format!("multistep {j} {shape:?} y"),
                &y.read_f32(gpu).unwrap(),
                &want,
                |i| {
                    gamma(4)
                        * ((k.a * st.s[i]).abs()
                            + (k.b.m * m(i)).abs()
                            + (k.b.m1 * old.m1[i]).abs()
                            + (k.b.m2 * old.m2[i]).abs())
                        + k.a.abs() * dxc(i)
                        + k.b.m.abs() * dm(i)
                },
            );
            let got = state.read_f32(gpu).unwrap();
            assert_close(&format!("multistep {j} {shape:?} s"), &got[..n], &st.s, dxc);
            assert_close(
                &format!("multistep {j} {shape:?} m1"),
                &got[n..2 * n],
                &st.m1,
                dm,
            );
            if j > 0 {
                assert_close(
                    &format!("multistep {j} {shape:?} m2"),
                    &got[2 * n..],
                    &st.m2,
                    |_| 0.0,
                );
            }
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
    let empty = Clipped {
        p: 1.0,
        q: 0.0,
        bound: X0Bound::Fixed { lo: 1.0, hi: -1.0 },
        u: 1.0,
        w: 0.0,
        v: 0.0,
        c: 0.0,
    };
    assert!(msg(kernel::step_clipped(gpu, &x, &x, None, None, &empty, &x)).contains("empty"));
    let dynamic = Clipped {
        bound: X0Bound::Dynamic {
            ratio: 0.9,
            max: 2.0,
        },
        ..empty
    };
    assert!(
        msg(kernel::step_clipped(gpu, &x, &x, None, None, &dynamic, &x)).contains("thresholds")
    );
    let scale = Tensor::zeros(gpu, &[3], DType::F32).unwrap();
    assert!(msg(kernel::x0_threshold(
        gpu,
        &x,
        &x,
        (1.0, 0.0),
        (0.5, 2.0),
        &scale
    ))
    .contains("one value per sample"));
}
