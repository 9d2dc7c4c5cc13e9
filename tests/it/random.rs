//! shaders/random.wgsl against src/reference/random.rs, plus statistical tests of the streams.
//!
//! Tolerances: the integer stream, the uniforms and the uniform integers must match the reference bit for bit (they
//! are integer ops and exact conversions). Normals: the reference is exact math on the same words, and the GPU
//! rounds along the way; see `normal_bound` for the derivation. The statistical tests use fixed seeds, so each
//! either always passes or always fails; their thresholds are stated as multiples of the statistic's standard error
//! (5 SE: a two-sided probability of 5.7·10⁻⁷ for a correct generator) or as critical values at α = 0.001.

use crate::common;

use common::gpu;
use diffuse::dropout::dropout_threshold;
use diffuse::gpu::{DType, Gpu, Tensor};
use diffuse::kernels::random as rng;
use diffuse::reference::{random as reference, F32_UNIT_ROUNDOFF};

/// Runs one fill and reads it back as u32 words or f32 values.
fn draw_u32(
    gpu: &Gpu,
    len: usize,
    make: impl Fn(&Tensor) -> diffuse::Result<diffuse::gpu::Dispatch>,
) -> Vec<u32> {
    let y = Tensor::zeros(gpu, &[len], DType::U32).unwrap();
    gpu.run([&make(&y).unwrap()]).unwrap();
    y.read_u32(gpu).unwrap()
}

fn draw_f32(
    gpu: &Gpu,
    len: usize,
    make: impl Fn(&Tensor) -> diffuse::Result<diffuse::gpu::Dispatch>,
) -> Vec<f32> {
    let y = common::nan_tensor(&[len]); // must be overwritten
    gpu.run([&make(&y).unwrap()]).unwrap();
    y.read_f32(gpu).unwrap()
}

fn normals(gpu: &Gpu, len: usize, seed: u64, stream: u32, offset: u64) -> Vec<f64> {
    let state = rng::rng_state(gpu, offset).unwrap();
    let z = draw_f32(gpu, len, |y| rng::fill_normal(gpu, y, seed, stream, &state));
    z.into_iter().map(f64::from).collect()
}

fn uniforms(gpu: &Gpu, len: usize, seed: u64, stream: u32, offset: u64) -> Vec<f64> {
    let state = rng::rng_state(gpu, offset).unwrap();
    let u = draw_f32(gpu, len, |y| {
        rng::fill_uniform(gpu, y, seed, stream, &state)
    });
    u.into_iter().map(f64::from).collect()
}

/// Lengths around the 4-wide block and the 256-block workgroup: 1, 3, one past a block, one past a workgroup.
const LENGTHS: [usize; 5] = [1, 3, 5, 1025, 4 * 256 * 3 + 7];

/// (seed, stream, offset) triples that set the high words too.
const DRAWS: [(u64, u32, u64); 3] = [
    (0, 0, 0),
    (0x0123_4567_89AB_CDEF, 7, 0x0000_0001_0000_0002),
    (u64::MAX, u32::MAX, u64::MAX),
];

#[test]
fn philox_reference_reproduces_the_random123_known_answer_vectors() {
    // Random123 (D. E. Shaw Research), tests/kat_vectors, the three "philox4x32 10" lines: counter words, key words,
    // expected output words.
    let kat: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
        (
            [0; 4],
            [0; 2],
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
        ),
        (
            [u32::MAX; 4],
            [u32::MAX; 2],
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
        ),
        (
            [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
            [0xa409_3822, 0x299f_31d0],
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
        ),
    ];
    for (counter, key, want) in kat {
        assert_eq!(
            reference::philox4x32_10(counter, key),
            want,
            "counter {counter:08x?} key {key:08x?}"
        );
    }
}

#[test]
fn gpu_philox_reproduces_the_all_zero_known_answer_vector() {
    // Seed 0, stream 0, offset 0: block 0 is philox(counter 0, key 0), the first Random123 vector.
    let gpu = gpu();
    let state = rng::rng_state(gpu, 0).unwrap();
    let got = draw_u32(gpu, 4, |y| rng::fill_bits(gpu, y, 0, 0, &state));
    assert_eq!(got, [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]);
}

#[test]
fn gpu_bits_uniforms_and_integers_match_reference_bit_for_bit() {
    let gpu = gpu();
    for &(seed, stream, offset) in &DRAWS {
        let state = rng::rng_state(gpu, offset).unwrap();
        for &len in &LENGTHS {
            let case = format!("seed {seed:#x} stream {stream} offset {offset:#x} len {len}");
            let got = draw_u32(gpu, len, |y| rng::fill_bits(gpu, y, seed, stream, &state));
            assert_eq!(
                got,
                reference::bits(seed, stream, offset, len),
                "bits, {case}"
            );

            let got = draw_f32(gpu, len, |y| {
                rng::fill_uniform(gpu, y, seed, stream, &state)
            });
            let want = reference::uniform(seed, stream, offset, len);
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g as f64 == w && (0.0..1.0).contains(&g),
                    "uniform [{i}]: got {g}, want {w}, {case}"
                );
            }

            for n in [1, 7, 1000, u32::MAX] {
                let got = draw_u32(gpu, len, |y| {
                    rng::fill_uniform_int(gpu, y, n, seed, stream, &state)
                });
                assert_eq!(
                    got,
                    reference::uniform_int(seed, stream, offset, len, n),
                    "ints n={n}, {case}"
                );
            }
        }
    }
}

/// Bound on |z_gpu − z| for a Box–Muller pair with radius r = √(−2 ln u1) (|z| ≤ r), with u = 2⁻²⁴:
/// - −ln u1, three regimes. u1 > 63/64 (r < 0.1777): the kernel's series rounds ~4 times and truncates < 0.2u,
///   ≤ 6u relative. u1 < 1/2 (r > 1.1774): WGSL holds log to 3 ULP, ≤ 6u relative with the rounding of 2·(·).
///   1/2 ≤ u1 ≤ 63/64: WGSL holds log only to 2⁻²¹ *absolute* (lavapipe's is off by ~1.3u absolute near 1), so
///   r² is off by up to 2·2⁻²¹ and r by 2⁻²¹/r: an extra absolute term, at most 2.7·10⁻⁶ since r ≥ 0.1777 there.
/// - √ halves the relative error of r² and adds ≤ 1.5u (WGSL allows 2.5 ULP): r within 4.5u relative.
/// - θ = π_f32·s: π_f32 is within 0.5u of π and the product rounds once: |Δθ| ≤ π·u ≈ 3.2u, times r.
/// - cos/sin on [−π, π]: assumed within 4u absolute, times r (WGSL's minimum is 2⁻¹¹ absolute, far looser;
///   Mesa's and the GPU vendors' full-precision sin/cos meet 4u).
/// - the final product r·cos θ rounds once: 0.5u·|z| ≤ 0.5u·r.
///
/// Total ≤ (4.5 + 3.2 + 4 + 0.5)·u·r ≈ 12.2·u·r (we allow 16·u·r), plus 2⁻²¹/r in the middle regime.
pub fn normal_bound(r: f64) -> f64 {
    // Slightly wider than the exact regime edges (0.1777, 1.1774), which only loosens the bound there.
    let log_absolute = if (0.177..=1.178).contains(&r) {
        2f64.powi(-21) / r
    } else {
        0.0
    };
    16.0 * F32_UNIT_ROUNDOFF * r + log_absolute
}

#[test]
fn gpu_normals_match_reference_within_a_few_ulp_of_the_radius() {
    let gpu = gpu();
    for &(seed, stream, offset) in &DRAWS {
        for len in [1, 5, 1 << 16] {
            let got = normals(gpu, len, seed, stream, offset);
            let (want, radius) = reference::normal_with_radius(seed, stream, offset, len);
            let got32: Vec<f32> = got.iter().map(|&v| v as f32).collect();
            common::assert_close(
                &format!("normal seed {seed:#x} stream {stream} offset {offset:#x} len {len}"),
                &got32,
                &want,
                |i| normal_bound(radius[i]),
            );
        }
    }
}

/// Sample mean, variance, skewness and excess kurtosis.
fn moments(x: &[f64]) -> [f64; 4] {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let central = |k: i32| x.iter().map(|v| (v - mean).powi(k)).sum::<f64>() / n;
    let var = central(2);
    [
        mean,
        var,
        central(3) / var.powf(1.5),
        central(4) / (var * var) - 3.0,
    ]
}

/// The Kolmogorov–Smirnov statistic of a sample against a continuous CDF.
fn ks_statistic(sample: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let mut s = sample.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    s.iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max)
}

/// KS critical value at α = 0.001 for large samples: 1.9495/√n (Kolmogorov's limiting distribution).
fn ks_critical(n: usize) -> f64 {
    1.9495 / (n as f64).sqrt()
}

/// erfc(x) with fractional error < 1.2·10⁻⁷ everywhere (Numerical Recipes' Chebyshev fit `erfcc`): far below the
/// ~2·10⁻³ KS thresholds used here.
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Upper critical value of χ² with `dof` degrees of freedom at α = 0.001, by the Wilson–Hilferty approximation
/// (z₀.₉₉₉ = 3.0902; accurate to well under 1% for dof ≥ 30).
fn chi_square_critical(dof: usize) -> f64 {
    let k = dof as f64;
    let a = 2.0 / (9.0 * k);
    k * (1.0 - a + 3.0902 * a.sqrt()).powi(3)
}

const SAMPLES: usize = 1 << 20;

#[test]
fn normals_have_standard_moments_and_pass_kolmogorov_smirnov() {
    let gpu = gpu();
    let z = normals(gpu, SAMPLES, 2024, 0, 0);
    let n = SAMPLES as f64;
    let [mean, var, skew, kurt] = moments(&z);
    // Standard errors under N(0, 1): mean 1/√n, variance √(2/n), skewness √(6/n), excess kurtosis √(24/n).
    for (what, got, se) in [
        ("mean", mean, (1.0 / n).sqrt()),
        ("variance − 1", var - 1.0, (2.0 / n).sqrt()),
        ("skewness", skew, (6.0 / n).sqrt()),
        ("excess kurtosis", kurt, (24.0 / n).sqrt()),
    ] {
        assert!(
            got.abs() <= 5.0 * se,
            "{what} = {got:.3e}, more than 5 standard errors ({se:.3e}) from 0"
        );
    }
    let d = ks_statistic(&z, normal_cdf);
    assert!(
        d <= ks_critical(SAMPLES),
        "KS D = {d:.3e} > {:.3e} (α = 0.001)",
        ks_critical(SAMPLES)
    );
    // With 24-bit u1 the radius is at most √(2·24·ln 2) ≈ 5.77; the mass beyond is 8·10⁻⁹, so none is missed here.
    let max = z.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        max.is_finite() && max <= 5.77 && max > 4.0,
        "max |z| = {max}"
    );
}

#[test]
fn uniforms_pass_kolmogorov_smirnov_and_have_the_right_moments() {
    let gpu = gpu();
    let u = uniforms(gpu, SAMPLES, 99, 3, 5);
    let n = SAMPLES as f64;
    let mean = u.iter().sum::<f64>() / n;
    let var = u.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    // U[0,1): mean 1/2 with SE √(1/12n); variance 1/12 with SE √(1/180n) (Var of (u − ½)² is 1/80 − 1/144).
    assert!(
        (mean - 0.5).abs() <= 5.0 * (1.0 / (12.0 * n)).sqrt(),
        "mean {mean}"
    );
    assert!(
        (var - 1.0 / 12.0).abs() <= 5.0 * (1.0 / (180.0 * n)).sqrt(),
        "variance {var}"
    );
    let d = ks_statistic(&u, |x| x.clamp(0.0, 1.0));
    assert!(
        d <= ks_critical(SAMPLES),
        "KS D = {d:.3e} > {:.3e} (α = 0.001)",
        ks_critical(SAMPLES)
    );
}

#[test]
fn uniform_integers_cover_every_value_with_chi_square_consistent_counts_and_never_reach_n() {
    let gpu = gpu();
    let state = rng::rng_state(gpu, 0).unwrap();
    for n in [1u32, 2, 7, 1000] {
        let t = draw_u32(gpu, SAMPLES, |y| {
            rng::fill_uniform_int(gpu, y, n, 31, 1, &state)
        });
        let mut counts = vec![0usize; n as usize];
        for &v in &t {
            assert!(v < n, "drew {v} with n = {n}");
            counts[v as usize] += 1;
        }
        if n == 1 {
            continue;
        }
        let expected = SAMPLES as f64 / n as f64;
        assert!(
            counts.iter().all(|&c| c > 0),
            "n = {n}: some value never drawn"
        );
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        // Small dof: Wilson–Hilferty is rough there, so use the exact critical values at α = 0.001.
        let critical = match n - 1 {
            1 => 10.828,
            6 => 22.458,
            dof => chi_square_critical(dof as usize),
        };
        assert!(
            chi2 <= critical,
            "n = {n}: χ² = {chi2:.1} > {critical:.1} (α = 0.001, {} dof)",
            n - 1
        );
    }
}

/// Pearson correlation.
fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn different_seeds_offsets_streams_and_neighbours_are_uncorrelated() {
    // The sample correlation of independent series has standard error 1/√n; we allow 5 of them.
    let gpu = gpu();
    let len = 1 << 18;
    let bound = 5.0 / (len as f64).sqrt();
    let base = normals(gpu, len, 1, 0, 0);
    let others = [
        ("seed + 1", normals(gpu, len, 2, 0, 0)),
        ("seed + 2³²", normals(gpu, len, 1 + (1 << 32), 0, 0)),
        ("offset + 1", normals(gpu, len, 1, 0, 1)),
        ("offset + 2³²", normals(gpu, len, 1, 0, 1 << 32)),
        ("stream + 1", normals(gpu, len, 1, 1, 0)),
    ];
    for (what, other) in &others {
        let rho = correlation(&base, other);
        assert!(
            rho.abs() <= bound,
            "{what}: correlation {rho:.2e} exceeds {bound:.2e}"
        );
    }
    // Within one draw: lag 1 (the cos/sin pair of one Box–Muller draw), lag 2 (the two pairs of one block) and
    // lag 4 (neighbouring blocks).
    for lag in [1, 2, 4] {
        let rho = correlation(&base[..len - lag], &base[lag..]);
        assert!(
            rho.abs() <= bound,
            "lag {lag}: correlation {rho:.2e} exceeds {bound:.2e}"
        );
    }
    // The two outputs of a Box–Muller pair share r, yet are independent (a theorem of the method, not merely
    // uncorrelated): their squares must be uncorrelated too, which a wrong radius or angle mapping would break.
    let sq: Vec<f64> = base.iter().map(|v| v * v).collect();
    let even: Vec<f64> = sq.iter().step_by(2).copied().collect();
    let odd: Vec<f64> = sq.iter().skip(1).step_by(2).copied().collect();
    let rho = correlation(&even, &odd);
    assert!(
        rho.abs() <= 5.0 / (even.len() as f64).sqrt(),
        "cos²/sin² correlation {rho:.2e}"
    );
}

#[test]
fn a_step_recorded_once_draws_fresh_numbers_each_submission_and_replays_after_set_offset() {
    let gpu = gpu();
    let len = 1000;
    let (seed, stream) = (42, 0);
    let state = rng::rng_state(gpu, 10).unwrap();
    let y = Tensor::zeros(gpu, &[len], DType::F32).unwrap();
    // The step: draw, then advance the offset on the GPU. Built once, submitted three times.
    let step = [
        rng::fill_normal(gpu, &y, seed, stream, &state).unwrap(),
        rng::advance(gpu, &state, 1).unwrap(),
    ];
    let mut draws = Vec::new();
    for _ in 0..3 {
        gpu.run(&step).unwrap();
        draws.push(y.read_f32(gpu).unwrap());
    }
    assert_eq!(
        state.read_u32(gpu).unwrap(),
        [13, 0],
        "three advances from offset 10"
    );
    assert_ne!(draws[0], draws[1]);
    assert_ne!(draws[1], draws[2]);
    // Each submission's numbers are the reference's at offsets 10, 11, 12.
    for (k, d) in draws.iter().enumerate() {
        let (want, radius) = reference::normal_with_radius(seed, stream, 10 + k as u64, len);
        common::assert_close(&format!("submission {k}"), d, &want, |i| {
            normal_bound(radius[i])
        });
    }
    // Resetting the offset from the host replays the first draw bit for bit.
    rng::set_offset(gpu, &state, 10).unwrap();
    gpu.run(&step).unwrap();
    assert_eq!(
        y.read_f32(gpu).unwrap(),
        draws[0],
        "same seed and offset must reproduce the same numbers"
    );
}

#[test]
fn advance_carries_into_the_high_word() {
    let gpu = gpu();
    let state = rng::rng_state(gpu, 0xFFFF_FFFF).unwrap();
    gpu.run([&rng::advance(gpu, &state, 1).unwrap()]).unwrap();
    assert_eq!(state.read_u32(gpu).unwrap(), [0, 1]);
    gpu.run([&rng::advance(gpu, &state, 0x0000_0002_FFFF_FFFF).unwrap()])
        .unwrap();
    assert_eq!(state.read_u32(gpu).unwrap(), [0xFFFF_FFFF, 3]);
    gpu.run([&rng::advance(gpu, &state, 1).unwrap()]).unwrap();
    assert_eq!(state.read_u32(gpu).unwrap(), [0, 4]);
}

#[test]
fn bad_tensors_and_arguments_are_refused() {
    let gpu = gpu();
    let state = rng::rng_state(gpu, 0).unwrap();
    let f = Tensor::zeros(gpu, &[8], DType::F32).unwrap();
    let u = Tensor::zeros(gpu, &[8], DType::U32).unwrap();
    let err =
        |r: diffuse::Result<diffuse::gpu::Dispatch>| r.err().expect("must be refused").to_string();

    let e = err(rng::fill_normal(gpu, &u, 0, 0, &state));
    assert!(e.contains("fill_normal") && e.contains("U32"), "{e}");
    let e = err(rng::fill_uniform_int(gpu, &f, 10, 0, 0, &state));
    assert!(e.contains("fill_uniform_int") && e.contains("F32"), "{e}");
    let e = err(rng::fill_uniform_int(gpu, &u, 0, 0, 0, &state));
    assert!(e.contains("at least 1"), "{e}");
    let e = err(rng::fill_bits(gpu, &u, 0, 0, &u));
    assert!(e.contains("rng state") && e.contains("[8]"), "{e}");
    let e = err(rng::advance(gpu, &f.reshape(&[2, 4]).unwrap(), 1));
    assert!(e.contains("advance") && e.contains("[2, 4]"), "{e}");
    assert!(rng::set_offset(gpu, &f, 3).is_err());
}

#[test]
fn dropout_matches_reference_bit_for_bit_and_drops_at_the_rate_asked() {
    let gpu = gpu();
    for &len in &LENGTHS {
        let x = common::uniform(len, len as u64);
        let xt = Tensor::from_f32(gpu, &[len], &x).unwrap();
        for &(seed, stream, offset) in &DRAWS {
            for p in [0.0, 0.1, 0.5] {
                let state = rng::rng_state(gpu, offset).unwrap();
                let got = draw_f32(gpu, len, |y| {
                    rng::dropout(gpu, &xt, p, seed, stream, &state, y)
                });
                let (n, scale) = dropout_threshold(p);
                let want = reference::dropout(
                    &diffuse::reference::to_f64(&x),
                    n,
                    scale,
                    seed,
                    stream,
                    offset,
                );
                // Exact: the mask is integer arithmetic, and the kept values are one f32 product each.
                let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
                assert_eq!(
                    got, want,
                    "len {len}, p {p}, draw {seed:x}/{stream}/{offset:x}"
                );
            }
        }
    }
    // The realised rate over 10⁶ elements of x = 1 is within 5 standard errors of p; the kept values are 1/(1 − p),
    // so the mean stays 1 (E[y] = x).
    let len = 1_000_000;
    let ones = Tensor::from_f32(gpu, &[len], &vec![1.0; len]).unwrap();
    let state = rng::rng_state(gpu, 3).unwrap();
    let p = 0.1;
    let y = draw_f32(gpu, len, |y| rng::dropout(gpu, &ones, p, 9, 2, &state, y));
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / len as f64;
    let se = (p * (1.0 - p) / len as f64).sqrt();
    assert!((dropped - p).abs() < 5.0 * se, "dropped {dropped} of {p}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
    let err = rng::dropout(gpu, &ones, 1.0, 0, 0, &state, &ones)
        .err()
        .unwrap();
    assert!(err.to_string().contains("[0, 1)"), "{err}");
}

#[test]
fn a_draw_in_parts_gives_the_numbers_of_the_whole_draw() {
    let gpu = gpu();
    let state = rng::rng_state(gpu, 12).unwrap();
    let (seed, id) = (0xABCD, 3);
    // Parts of uneven lengths, most starting inside a Philox block (first % 4 ≠ 0).
    let total = 1030;
    let cuts = [0, 5, 12, 13, 250, 777, total];
    let x: Vec<f32> = (0..total).map(|i| 1.0 + i as f32).collect();
    let xt = Tensor::from_f32(gpu, &[total], &x).unwrap();
    let whole_bits = draw_u32(gpu, total, |y| rng::fill_bits(gpu, y, seed, id, &state));
    let whole_int = draw_u32(gpu, total, |y| {
        rng::fill_uniform_int(gpu, y, 1000, seed, id, &state)
    });
    let whole_uniform = draw_f32(gpu, total, |y| rng::fill_uniform(gpu, y, seed, id, &state));
    let whole_normal = draw_f32(gpu, total, |y| rng::fill_normal(gpu, y, seed, id, &state));
    let whole_dropout = draw_f32(gpu, total, |y| {
        rng::dropout(gpu, &xt, 0.3, seed, id, &state, y)
    });
    for pair in cuts.windows(2) {
        let (first, len) = (pair[0], pair[1] - pair[0]);
        let part = rng::Stream::from_element(id, first);
        let range = first..first + len;
        assert_eq!(
            draw_u32(gpu, len, |y| rng::fill_bits(gpu, y, seed, part, &state)),
            whole_bits[range.clone()],
            "bits {range:?}"
        );
        assert_eq!(
            draw_u32(gpu, len, |y| rng::fill_uniform_int(
                gpu, y, 1000, seed, part, &state
            )),
            whole_int[range.clone()]
        );
        assert_eq!(
            draw_f32(gpu, len, |y| rng::fill_uniform(gpu, y, seed, part, &state)),
            whole_uniform[range.clone()]
        );
        assert_eq!(
            draw_f32(gpu, len, |y| rng::fill_normal(gpu, y, seed, part, &state)),
            whole_normal[range.clone()]
        );
        let xs = Tensor::from_f32(gpu, &[len], &x[range.clone()]).unwrap();
        assert_eq!(
            draw_f32(gpu, len, |y| rng::dropout(
                gpu, &xs, 0.3, seed, part, &state, y
            )),
            whole_dropout[range.clone()]
        );
    }
    let y = Tensor::zeros(gpu, &[8], DType::U32).unwrap();
    let far = rng::Stream::from_element(id, (1 << 31) - 4);
    let err = rng::fill_bits(gpu, &y, seed, far, &state)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("2³¹"), "{err}");
}
