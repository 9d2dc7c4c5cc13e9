//! shaders/optimizer.wgsl against src/reference/optimizer.rs.
//!
//! Tolerances, with u = 2⁻²⁴ and γ(k) = reference::gamma(k) ≈ k·u; a WGSL op good to k ULP counts as 2k roundings
//! (sqrt inherits 1/inverseSqrt: 2 + 2.5 ULP → 9; division 2.5 ULP → 5; inverseSqrt 2 ULP → 4):
//! - ‖g‖: the computed Σg² is within γ(c)·Σg², c = optimizer::grad_norm_chain(&[n]), the longest chain of roundings
//!   any term passes through (25 at n = 10⁶, where γ(n) would allow 6 %). The square root halves that and adds its
//!   own 9: |Δ‖g‖| ≤ (γ(c)/2 + γ(9))·‖g‖.
//! - clip scale s = max_norm/(‖g‖ + 1e-6): the norm's relative error (condition ≤ 1) plus the add (1), max_norm's
//!   and 1e-6's rounding to f32 (2) and the division (5): (ε_norm + γ(8))·s. Below max_norm it is exactly 1.
//! - EMA: d·e + (1 − d)·w with d and 1 − d rounded to f32: three roundings per term, γ(3)·(d|e| + (1 − d)|w|).
//! - Adam, per element, each error relative to a magnitude carried beside the reference (Higham §3), k steps:
//!   - g' = s·g (+ λc·p) is within 4 roundings of itself (the coupled-decay case uses g of p's sign, so nothing
//!     cancels).
//!   - m = β1·m + (1 − β1)·g': β1 and 1 − β1 rounded to f32, two products, a sum, and g''s 4: within γ(7k)·M,
//!     where M ← β1·M + (1 − β1)·|g'| from |m₀|.
//!   - v = β2·v + (1 − β2)·g'²: positive terms, 2·4 + 1 + 3 roundings a step: γ(12k) relative.
//!   - c = 1 − βᵗ = −expm1(t·ln β): ln β to f32 and the product t·ln β (2, condition ≤ 1), then the series or
//!     1 − exp (≤ 8 at exp's 3 + 2|x| ULP; 2.2 when correctly rounded, simulated): γ(10). The step size lr/c1
//!     adds lr's rounding and a division: γ(16); 1/√c2 by inverseSqrt: 10/2 + 4 = γ(9).
//!   - The denominator √v·(1/√c2) + eps, positive terms: 6k (half of v's) + 9 (sqrt) + 9 + 1 (product) + 1 (sum).
//!   - Δ = step·(m/denom): 7k + (6k + 20) + 16 + 5 (division) + 1 (product): |Δ̃ − Δ| ≤ γ(13k + 42)·D, with
//!     D = lr/c1 · M / (√(v/c2) + eps) from the reference's v.
//!   - p ← p·(1 − lr·λd) − Δ: the factor (2), its product and the difference (2):
//!     |p̃ − p| ≤ γ(4k)·P + γ(13k + 42)·ΣD, where P ← (1 − lr·λd)·P + D from |p₀|.
//!
//!   So one step is held to 4 u of |p| plus 55 u (27 ULP) of the update: a few ULP per operation at the WGSL
//!   spec's worst case (lavapipe, correctly rounded, uses a quarter to a half of it). The tests use lr = 0.1, so
//!   the update is not lost below the rounding of p.

use crate::common;

use common::{assert_close, gpu, ulps, uniform, uniform64};
use diffuse::gpu::{DType, Gpu, Recorder, Tensor};
use diffuse::kernels::optimizer::{self as opt, AdamState, Hyper, HYPER_LEN, NORM_LEN};
use diffuse::optim::AdamConfig;
use diffuse::reference::{gamma, optimizer as reference, to_f64};

/// 1, around the 256-wide workgroup, and past 1024·256 elements so every grad-norm thread loops several times.
const LENGTHS: [usize; 5] = [1, 255, 256, 257, 1_000_003];
const LR: f64 = 0.1;

fn tensor(gpu: &Gpu, data: &[f32]) -> Tensor {
    Tensor::from_f32(gpu, &[data.len()], data).unwrap()
}

fn zeros(gpu: &Gpu, n: usize) -> Tensor {
    Tensor::zeros(gpu, &[n], DType::F32).unwrap()
}

fn hyper(gpu: &Gpu, lr: f64, ema_decay: f64) -> Tensor {
    let t = zeros(gpu, HYPER_LEN);
    Hyper { lr, ema_decay }.write(gpu, &t).unwrap();
    t
}

/// Parameters, gradients and mid-run optimizer state (m, v, t₀ = 9) for `n` elements. With `same_sign`, g takes p's
/// sign, so that Adam's coupled weight decay g + λ·p cannot cancel.
struct Data {
    p: Vec<f32>,
    g: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    t0: u64,
}

fn data(n: usize, seed: u64, same_sign: bool) -> Data {
    let p = uniform(n, seed);
    let mut g = uniform(n, seed + 1);
    if same_sign {
        g.iter_mut()
            .zip(&p)
            .for_each(|(g, p)| *g = g.abs().copysign(*p));
    }
    let m = uniform(n, seed + 2).iter().map(|x| 0.1 * x).collect();
    let v = uniform(n, seed + 3).iter().map(|x| 0.01 * x * x).collect();
    Data { p, g, m, v, t0: 9 }
}

/// One tensor as a list of one shard.
fn one(t: &Tensor) -> &[Tensor] {
    std::slice::from_ref(t)
}

fn state(gpu: &Gpu, d: &Data) -> AdamState {
    AdamState {
        m: vec![tensor(gpu, &d.m)],
        v: vec![tensor(gpu, &d.v)],
        step: tensor(gpu, &[d.t0 as f32, 0.0, 0.0, 0.0]),
    }
}

/// The f64 reference run beside the magnitudes M, P, ΣD that bound the GPU's rounding (module doc).
struct Tracked {
    adam: reference::Adam,
    p: Vec<f64>,
    mag_m: Vec<f64>,
    mag_p: Vec<f64>,
    sum_d: Vec<f64>,
    steps: usize,
}

impl Tracked {
    fn new(config: AdamConfig, d: &Data) -> Self {
        let mut adam = reference::Adam::new(config, d.p.len());
        adam.m = to_f64(&d.m);
        adam.v = to_f64(&d.v);
        adam.t = d.t0;
        let p = to_f64(&d.p);
        let mag_m = adam.m.iter().map(|x| x.abs()).collect();
        let mag_p = p.iter().map(|x| x.abs()).collect();
        Tracked {
            adam,
            p,
            mag_m,
            mag_p,
            sum_d: vec![0.0; d.p.len()],
            steps: 0,
        }
    }

    /// One step on `scale`·g, where `scale` is the clip scale the GPU used (1 without clipping).
    fn step(&mut self, lr: f64, g: &[f64], scale: f64) {
        let AdamConfig {
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
        } = self.adam.config;
        let (coupled, decay) = if decoupled {
            (0.0, 1.0 - lr * weight_decay)
        } else {
            (weight_decay, 1.0)
        };
        let g: Vec<f64> = g.iter().map(|x| scale * x).collect();
        for ((mag, g), p) in self.mag_m.iter_mut().zip(&g).zip(&self.p) {
            *mag = beta1 * *mag + (1.0 - beta1) * (g.abs() + coupled * p.abs());
        }
        self.adam.step(lr, &mut self.p, &g);
        let t = self.adam.t as f64;
        let (c1, c2) = (1.0 - beta1.powf(t), 1.0 - beta2.powf(t));
        for i in 0..g.len() {
            let d = lr / c1 * self.mag_m[i] / ((self.adam.v[i] / c2).sqrt() + eps);
            self.mag_p[i] = decay * self.mag_p[i] + d;
            self.sum_d[i] += d;
        }
        self.steps += 1;
    }

    fn check(&self, what: &str, gpu: &Gpu, param: &Tensor, state: &AdamState) {
        let k = self.steps;
        let got_p = param.read_f32(gpu).unwrap();
        assert_close(&format!("{what}: p"), &got_p, &self.p, |i| {
            gamma(4 * k) * self.mag_p[i] + gamma(13 * k + 42) * self.sum_d[i]
        });
        let m_bound = |i: usize| gamma(7 * k) * self.mag_m[i];
        assert_close(
            &format!("{what}: m"),
            &state.m[0].read_f32(gpu).unwrap(),
            &self.adam.m,
            m_bound,
        );
        let v_bound = |i: usize| gamma(12 * k) * self.adam.v[i];
        assert_close(
            &format!("{what}: v"),
            &state.v[0].read_f32(gpu).unwrap(),
            &self.adam.v,
            v_bound,
        );
        let t = state.step.read_f32(gpu).unwrap()[0];
        assert_eq!(t as u64, self.adam.t, "{what}: the step counter");
    }
}

#[test]
fn reference_adam_matches_steps_worked_by_hand() {
    // p = 1, g = 0.5, m = v = 0, lr = 0.1, betas (0.9, 0.999), eps 1e-8, t = 1:
    //   m = 0.1·0.5 = 0.05, v = 0.001·0.25 = 0.00025, m̂ = 0.05/0.1 = 0.5, v̂ = 0.00025/0.001 = 0.25, √v̂ = 0.5,
    //   p = 1 − 0.1·0.5/(0.5 + 1e-8) = 0.900000002 − 4e-17.
    let close =
        |got: f64, want: f64| assert!((got - want).abs() <= 1e-15, "got {got}, want {want}");
    let mut adam = reference::Adam::new(AdamConfig::adam(), 1);
    let mut p = [1.0];
    adam.step(0.1, &mut p, &[0.5]);
    close(adam.m[0], 0.05);
    close(adam.v[0], 0.00025);
    close(p[0], 0.900000002 - 4e-17);
    // AdamW, λ = 0.1: p first shrinks to 1·(1 − 0.1·0.1) = 0.99, then takes the same step: 0.890000002 − 4e-17.
    let mut adamw = reference::Adam::new(
        AdamConfig {
            weight_decay: 0.1,
            ..AdamConfig::adamw()
        },
        1,
    );
    let mut p = [1.0];
    adamw.step(0.1, &mut p, &[0.5]);
    close(p[0], 0.890000002 - 4e-17);
    // Adam with L2 decay λ = 0.1: g = 0.5 + 0.1·1 = 0.6, m = 0.06, v = 0.00036, m̂ = 0.6, √v̂ = 0.6,
    //   p = 1 − 0.1·0.6/(0.6 + 1e-8) = 1 − 0.1/(1 + 1/6·1e-7) = 0.9000000016666666(389).
    let mut adam_l2 = reference::Adam::new(
        AdamConfig {
            weight_decay: 0.1,
            ..AdamConfig::adam()
        },
        1,
    );
    let mut p = [1.0];
    adam_l2.step(0.1, &mut p, &[0.5]);
    close(adam_l2.m[0], 0.06);
    close(adam_l2.v[0], 0.00036);
    close(p[0], 0.900_000_001_666_666_6);
    // A constant gradient c makes m = c(1 − β1ᵗ) and v = c²(1 − β2ᵗ), so the bias corrections give m̂ = c, v̂ = c²
    // and every step is the same 0.1·0.5/(0.5 + 1e-8) = 0.099999998: five steps take p from 1 to 0.50000001.
    // Like PyTorch, the reference forms 1 − β2ᵗ in f64, which cancels ~3 digits for t ≤ 5 (0.999⁵ ≈ 0.995): each
    // step carries ≈ 2⁻⁵³/0.002 ≈ 6e-14 relative error, hence 1e-13 here.
    let mut adam = reference::Adam::new(AdamConfig::adam(), 1);
    let mut p = [1.0f64];
    for _ in 0..5 {
        adam.step(0.1, &mut p, &[0.5]);
    }
    let want = 0.50000001 - 2e-16;
    assert!(
        (p[0] - want).abs() <= 1e-13,
        "five constant steps: got {}, want {want}",
        p[0]
    );
}

#[test]
fn grad_norm_reference_matches_a_plain_f64_sum_and_known_values() {
    assert_eq!(reference::grad_norm(&[3.0, 4.0]), 5.0);
    assert_eq!(reference::grad_norm(&vec![1.0; 10_000]), 100.0);
    assert_eq!(reference::grad_norm(&vec![-0.5; 1 << 20]), 512.0);
    for n in [1, 257, 1_000_003] {
        let g = uniform64(n, n as u64);
        let plain = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        // A plain f64 sum of n positive terms is within (n − 1)·2⁻⁵³ relative; the root halves it.
        let got = reference::grad_norm(&g);
        assert!(
            (got - plain).abs() <= n as f64 * f64::EPSILON * plain,
            "n={n}: {got} vs {plain}"
        );
    }
    assert_eq!(reference::clip_scale(0.5, 1.0), 1.0);
    assert_eq!(reference::clip_scale(3.0, 1.5), 1.5 / (3.0 + 1e-6));
}

/// Runs grad_norm on `g` and returns [‖g‖, s] as the GPU computed them.
fn gpu_grad_norm(gpu: &Gpu, g: &Tensor, max_norm: Option<f64>) -> Vec<f32> {
    let norm = zeros(gpu, NORM_LEN);
    gpu.run(&opt::grad_norm(gpu, one(g), max_norm, &norm).unwrap())
        .unwrap();
    norm.read_f32(gpu).unwrap()
}

#[test]
fn grad_norm_and_clip_scale_match_reference() {
    let gpu = gpu();
    for (case, &n) in LENGTHS.iter().enumerate() {
        let g = uniform(n, 40 + case as u64);
        let gt = tensor(gpu, &g);
        let want = reference::grad_norm(&to_f64(&g));
        let norm_tol = gamma(opt::grad_norm_chain(&[n])) / 2.0 + gamma(9);
        for max_norm in [Some(1.0), Some(3.5), None] {
            let got = gpu_grad_norm(gpu, &gt, max_norm);
            let what = format!("n={n} max_norm={max_norm:?}");
            assert_close(&format!("{what}: ‖g‖"), &got[..1], &[want], |_| {
                norm_tol * want
            });
            match max_norm {
                Some(max) => {
                    let s = reference::clip_scale(want, max);
                    assert_close(&format!("{what}: s"), &got[1..], &[s], |_| {
                        (norm_tol + gamma(8)) * s
                    });
                }
                None => assert_eq!(got[1], 1.0, "{what}: no clipping means s = 1"),
            }
            // The reduction has a fixed order: a second run gives the same bits.
            assert_eq!(
                got,
                gpu_grad_norm(gpu, &gt, max_norm),
                "{what}: deterministic"
            );
        }
    }
}

#[test]
fn clip_scale_is_exactly_one_below_max_norm_and_then_changes_nothing() {
    let gpu = gpu();
    let n = 257;
    let mut d = data(n, 50, false);
    d.g.iter_mut().for_each(|g| *g *= 0.01); // ‖g‖ ≈ 0.09 < max_norm = 1
    let norm = zeros(gpu, NORM_LEN);
    let hy = hyper(gpu, LR, 0.0);
    let (p_clipped, p_plain) = (tensor(gpu, &d.p), tensor(gpu, &d.p));
    let (s_clipped, s_plain) = (state(gpu, &d), state(gpu, &d));
    let g = tensor(gpu, &d.g);
    let config = AdamConfig::adamw();
    let mut clipped = opt::grad_norm(gpu, one(&g), Some(1.0), &norm).unwrap();
    clipped.extend(
        opt::adam_step(
            gpu,
            &config,
            one(&p_clipped),
            one(&g),
            &s_clipped,
            &hy,
            Some(&norm),
        )
        .unwrap(),
    );
    let plain = opt::adam_step(gpu, &config, one(&p_plain), one(&g), &s_plain, &hy, None).unwrap();
    gpu.run(clipped.iter().chain(&plain)).unwrap();
    assert_eq!(norm.read_f32(gpu).unwrap()[1], 1.0);
    assert_eq!(
        p_clipped.read_f32(gpu).unwrap(),
        p_plain.read_f32(gpu).unwrap()
    );
    assert_eq!(
        s_clipped.m[0].read_f32(gpu).unwrap(),
        s_plain.m[0].read_f32(gpu).unwrap()
    );
    assert_eq!(
        s_clipped.v[0].read_f32(gpu).unwrap(),
        s_plain.v[0].read_f32(gpu).unwrap()
    );
}

#[test]
fn adam_one_step_matches_reference() {
    let gpu = gpu();
    // (name, config, clip): plain Adam unclipped, AdamW clipped, Adam with L2 decay clipped.
    let cases = [
        ("adam", AdamConfig::adam(), None),
        (
            "adamw",
            AdamConfig {
                weight_decay: 0.05,
                ..AdamConfig::adamw()
            },
            Some(1.0),
        ),
        (
            "adam+l2",
            AdamConfig {
                weight_decay: 0.05,
                ..AdamConfig::adam()
            },
            Some(1.0),
        ),
    ];
    for (case, &n) in LENGTHS.iter().enumerate() {
        for (name, config, max_norm) in cases {
            let d = data(
                n,
                10 * case as u64,
                !config.decoupled && config.weight_decay > 0.0,
            );
            let (param, g, st) = (tensor(gpu, &d.p), tensor(gpu, &d.g), state(gpu, &d));
            let (norm, hy) = (zeros(gpu, NORM_LEN), hyper(gpu, LR, 0.0));
            let mut step = match max_norm {
                Some(max) => opt::grad_norm(gpu, one(&g), Some(max), &norm).unwrap(),
                None => Vec::new(),
            };
            step.extend(
                opt::adam_step(
                    gpu,
                    &config,
                    one(&param),
                    one(&g),
                    &st,
                    &hy,
                    max_norm.map(|_| &norm),
                )
                .unwrap(),
            );
            gpu.run(&step).unwrap();
            let scale = if max_norm.is_some() {
                norm.read_f32(gpu).unwrap()[1] as f64
            } else {
                1.0
            };
            let mut want = Tracked::new(config, &d);
            want.step(LR, &to_f64(&d.g), scale);
            want.check(&format!("{name} n={n}"), gpu, &param, &st);
        }
    }
}

#[test]
fn adam_recorded_k_times_in_one_submission_takes_k_steps() {
    let gpu = gpu();
    let k = 4;
    let config = AdamConfig {
        weight_decay: 0.05,
        ..AdamConfig::adamw()
    };
    for (case, &n) in LENGTHS.iter().enumerate() {
        let d = data(n, 60 + 10 * case as u64, false);
        let grads: Vec<Vec<f32>> = (0..k).map(|j| uniform(n, 1000 + j as u64)).collect();
        let banks: Vec<Tensor> = grads.iter().map(|g| tensor(gpu, g)).collect();
        let norms: Vec<Tensor> = (0..k).map(|_| zeros(gpu, NORM_LEN)).collect();
        let (param, g, st) = (tensor(gpu, &d.p), zeros(gpu, n), state(gpu, &d));
        let (norm, hy) = (zeros(gpu, NORM_LEN), hyper(gpu, LR, 0.0));
        // Built once: clip, advance t, update. Each recorded step copies in the next gradient and keeps the clip
        // scale it used, so the reference can apply the same one.
        let mut step = opt::grad_norm(gpu, one(&g), Some(4.0), &norm).unwrap();
        step.extend(
            opt::adam_step(gpu, &config, one(&param), one(&g), &st, &hy, Some(&norm)).unwrap(),
        );
        let mut rec = Recorder::new(gpu);
        for j in 0..k {
            rec.copy(&banks[j], &g).unwrap();
            rec.dispatch(&step);
            rec.copy(&norm, &norms[j]).unwrap();
        }
        rec.submit();
        gpu.wait().unwrap();
        let mut want = Tracked::new(config, &d);
        for j in 0..k {
            let scale = norms[j].read_f32(gpu).unwrap()[1] as f64;
            want.step(LR, &to_f64(&grads[j]), scale);
        }
        want.check(&format!("{k} recorded steps, n={n}"), gpu, &param, &st);
    }
}

#[test]
fn adam_submitted_step_by_step_follows_the_learning_rate_written_before_each() {
    let gpu = gpu();
    let config = AdamConfig::adam();
    for n in [1, 257, 1_000_003] {
        let d = data(n, 70, false);
        let (param, g, st, hy) = (
            tensor(gpu, &d.p),
            tensor(gpu, &d.g),
            state(gpu, &d),
            zeros(gpu, HYPER_LEN),
        );
        let step = opt::adam_step(gpu, &config, one(&param), one(&g), &st, &hy, None).unwrap();
        let mut want = Tracked::new(config, &d);
        // A linear warm-up: the same dispatches each time, only hyper rewritten.
        for j in 1..=5 {
            let lr = LR * j as f64 / 5.0;
            Hyper { lr, ema_decay: 0.0 }.write(gpu, &hy).unwrap();
            gpu.run(&step).unwrap();
            want.step(lr, &to_f64(&d.g), 1.0);
        }
        want.check(&format!("warm-up, n={n}"), gpu, &param, &st);
    }
}

#[test]
fn bias_corrected_step_sizes_match_reference_from_t_1_to_2_pow_24() {
    let gpu = gpu();
    let n = 1;
    let (param, g, hy) = (zeros(gpu, n), zeros(gpu, n), hyper(gpu, 3e-4, 0.0));
    let lr = 3e-4f32 as f64; // what the GPU holds; the step size's bound then leaves out lr's rounding
    for (beta1, beta2, weight_decay) in [
        (0.9f64, 0.999f64, 0.1),
        (0.0, 0.9999, 0.0),
        (0.5, 0.99, 0.01),
    ] {
        let config = AdamConfig {
            beta1,
            beta2,
            eps: 1e-8,
            weight_decay,
            decoupled: true,
        };
        let st = AdamState::zeros(gpu, &[&[n]]).unwrap();
        let advance =
            &opt::adam_step(gpu, &config, one(&param), one(&g), &st, &hy, None).unwrap()[..1];
        let ts = (1..=12).chain([
            50,
            100,
            693,
            1000,
            6931,
            10_000,
            100_000,
            1_000_000,
            (1 << 24) - 1,
        ]);
        for t in ts {
            st.step
                .write_f32(gpu, &[(t - 1) as f32, 0.0, 0.0, 0.0])
                .unwrap();
            gpu.run(advance).unwrap();
            let got = st.step.read_f32(gpu).unwrap();
            let what = format!("betas ({beta1}, {beta2}) t={t}");
            assert_eq!(got[0], t as f32, "{what}: t");
            let t = t as f64;
            let step_size = lr / (1.0 - beta1.powf(t));
            assert_close(
                &format!("{what}: lr/(1 − β1ᵗ)"),
                &got[1..2],
                &[step_size],
                |_| gamma(15) * step_size,
            );
            let inv_sqrt = 1.0 / (1.0 - beta2.powf(t)).sqrt();
            assert_close(
                &format!("{what}: 1/√(1 − β2ᵗ)"),
                &got[2..3],
                &[inv_sqrt],
                |_| gamma(9) * inv_sqrt,
            );
            // 1 − lr·λ: λ's rounding and the product (2) on lr·λ, then the difference rounds once.
            let decay = 1.0 - lr * weight_decay;
            assert_close(
                &format!("{what}: 1 − lr·λ"),
                &got[3..],
                &[decay],
                |_| gamma(2) * lr * weight_decay + ulps(decay, 0.5),
            );
        }
    }
}

#[test]
fn ema_matches_reference_and_reads_its_decay_from_hyper() {
    let gpu = gpu();
    for (case, &n) in LENGTHS.iter().enumerate() {
        let e0 = uniform(n, 80 + case as u64);
        let w = uniform(n, 90 + case as u64);
        let (ema, wt, hy) = (tensor(gpu, &e0), tensor(gpu, &w), zeros(gpu, HYPER_LEN));
        let update = opt::ema_update(gpu, &wt, &ema, &hy).unwrap();
        let w64 = to_f64(&w);
        // The same dispatch under three decays written between submissions; d = 0 copies w exactly.
        for decay in [0.995, 0.9999, 0.0] {
            let e = to_f64(&ema.read_f32(gpu).unwrap());
            Hyper {
                lr: 0.0,
                ema_decay: decay,
            }
            .write(gpu, &hy)
            .unwrap();
            gpu.run([&update]).unwrap();
            let mut want = e.clone();
            reference::ema_update(&mut want, &w64, decay);
            assert_close(
                &format!("ema n={n} decay={decay}"),
                &ema.read_f32(gpu).unwrap(),
                &want,
                |i| gamma(3) * (decay * e[i].abs() + (1.0 - decay) * w64[i].abs()),
            );
        }
        assert_eq!(ema.read_f32(gpu).unwrap(), w, "decay 0 copies the weights");
    }
}

/// The error message of a call that must fail.
fn refusal<T>(result: diffuse::Result<T>) -> String {
    match result {
        Ok(_) => panic!("must be refused"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_shapes_and_settings_are_refused_with_the_op_named() {
    let gpu = gpu();
    let n = 8;
    let (p, g, hy, norm) = (
        zeros(gpu, n),
        zeros(gpu, n),
        zeros(gpu, HYPER_LEN),
        zeros(gpu, NORM_LEN),
    );
    let adam = AdamConfig::adam();
    let fresh = || AdamState::zeros(gpu, &[&[n]]).unwrap();
    let refused = |err: String, needles: &[&str]| {
        assert!(needles.iter().all(|s| err.contains(s)), "{err}");
    };
    // p, g, m and v of different lengths; the message names the op and both shapes.
    let (longer, shorter) = (zeros(gpu, n + 1), zeros(gpu, n - 1));
    let step = |p: &Tensor, g: &Tensor, st: &AdamState| {
        refusal(opt::adam_step(gpu, &adam, one(p), one(g), st, &hy, None))
    };
    refused(step(&p, &longer, &fresh()), &["adam_step", "[8]", "[9]"]);
    refused(step(&longer, &g, &fresh()), &["adam_step", "[8]", "[9]"]);
    refused(
        step(
            &p,
            &g,
            &AdamState {
                m: vec![longer.clone()],
                ..fresh()
            },
        ),
        &["adam_step", "[9]"],
    );
    refused(
        step(
            &p,
            &g,
            &AdamState {
                v: vec![shorter],
                ..fresh()
            },
        ),
        &["adam_step", "[7]"],
    );
    refused(
        step(
            &p,
            &g,
            &AdamState {
                step: zeros(gpu, 3),
                ..fresh()
            },
        ),
        &["step tensor", "4"],
    );
    let u32s = Tensor::from_u32(gpu, &[n], &[0; 8]).unwrap();
    refused(step(&p, &u32s, &fresh()), &["f32", "U32"]);
    let bad_hyper = opt::adam_step(gpu, &adam, one(&p), one(&g), &fresh(), &zeros(gpu, 2), None);
    refused(refusal(bad_hyper), &["hyper", "4"]);
    let bad_clip = opt::adam_step(
        gpu,
        &adam,
        one(&p),
        one(&g),
        &fresh(),
        &hy,
        Some(&zeros(gpu, 3)),
    );
    refused(refusal(bad_clip), &["clip", "2"]);
    for bad in [
        AdamConfig { beta1: 1.0, ..adam },
        AdamConfig {
            beta2: -0.1,
            ..adam
        },
        AdamConfig { eps: -1e-8, ..adam },
        AdamConfig {
            weight_decay: f64::NAN,
            ..adam
        },
    ] {
        let err = refusal(opt::adam_step(
            gpu,
            &bad,
            one(&p),
            one(&g),
            &fresh(),
            &hy,
            None,
        ));
        refused(err, &["adam_step", "must"]);
    }
    refused(
        refusal(opt::grad_norm(gpu, one(&g), None, &zeros(gpu, 1))),
        &["grad_norm", "2"],
    );
    refused(
        refusal(opt::grad_norm(gpu, one(&g), Some(0.0), &norm)),
        &["max_norm"],
    );
    refused(
        refusal(opt::grad_norm(gpu, one(&g), Some(f64::INFINITY), &norm)),
        &["max_norm"],
    );
    refused(
        refusal(opt::ema_update(gpu, &longer, &p, &hy)),
        &["ema_update", "[8]", "[9]"],
    );
    let hyper = Hyper {
        lr: 1.0,
        ema_decay: 0.5,
    };
    refused(refusal(hyper.write(gpu, &norm)), &["hyper", "4"]);
}

#[test]
fn grad_norm_over_shards_is_the_norm_of_their_concatenation() {
    let gpu = gpu();
    // Shard lengths as a cut parameter vector has them: uneven, one tiny, one past a workgroup's reach.
    let lens = [4096, 64, 70_000, 1000];
    let all = uniform(lens.iter().sum(), 77);
    let mut at = 0;
    let shards: Vec<Tensor> = lens
        .iter()
        .map(|&n| {
            let t = tensor(gpu, &all[at..at + n]);
            at += n;
            t
        })
        .collect();
    let want = reference::grad_norm(&to_f64(&all));
    let norm = zeros(gpu, NORM_LEN);
    gpu.run(&opt::grad_norm(gpu, &shards, Some(1.0), &norm).unwrap())
        .unwrap();
    let got = norm.read_f32(gpu).unwrap();
    let tol = gamma(opt::grad_norm_chain(&lens)) / 2.0 + gamma(9);
    assert_close("‖g‖ over 4 shards", &got[..1], &[want], |_| tol * want);
}
