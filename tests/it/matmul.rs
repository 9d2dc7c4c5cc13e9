//! shaders/matmul.wgsl and shaders/matmul_subgroup.wgsl against src/reference/matmul.rs.
//!
//! Tolerance: every output is a sum of K products (K + 1 terms with `accumulate`, where the old C is one more
//! term; K + 1 with a bias), computed in f32 in some order. Whatever the order, |got − exact| ≤ γ(terms)·Σ|terms|
//! (reference::gamma), and Σ|terms| is the reference run on |A|, |B| (and |C_old|, |bias|), so that is the bound.
//! The bias gradient, a sum of `rows` values, is held to the same bound with terms = rows.

use crate::common;

use std::sync::{Mutex, MutexGuard};

use common::{assert_close, gpu, uniform, uniform64};
use diffuse::gpu::{DType, Tensor};
use diffuse::kernels::matmul::{self as mm, MatmulOptions, Variant};
use diffuse::reference::matmul::{self as reference, MatmulShape};
use diffuse::reference::{gamma, gradcheck, to_f64};

/// One test at a time on the GPU: wgpu's GL backend gives up waiting for its context lock after 6 s, and a cold
/// compile of a register-blocked pipeline on llvmpipe can hold the context longer than that.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn abs(x: &[f64]) -> Vec<f64> {
    x.iter().map(|v| v.abs()).collect()
}

fn tensor(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_f32(gpu(), shape, data).unwrap()
}

fn zeros(shape: &[usize]) -> Tensor {
    Tensor::zeros(gpu(), shape, DType::F32).unwrap()
}

/// The stored shape of a [rows, cols] operand, transposed if asked, with the batch dimension when batch > 1.
fn stored(batch: usize, rows: usize, cols: usize, transposed: bool) -> Vec<usize> {
    let (r, c) = if transposed {
        (cols, rows)
    } else {
        (rows, cols)
    };
    if batch > 1 {
        vec![batch, r, c]
    } else {
        vec![r, c]
    }
}

/// True where the register-blocked kernels accept the shape: K and N, and M when A is transposed, multiples of 4.
fn blocked_ok(s: &MatmulShape) -> bool {
    s.k.is_multiple_of(4) && s.n.is_multiple_of(4) && (!s.trans_a || s.m.is_multiple_of(4))
}

/// Runs one product on the GPU with `variant` (C starts as random data when accumulating, as NaN when not) and checks it against
/// the reference within γ(terms)·Σ|terms|.
fn check_product(s: &MatmulShape, accumulate: bool, variant: Variant, seed: u64) {
    let a = uniform(s.a_len(), seed);
    let b = uniform(s.b_len(), seed + 1);
    let c0 = uniform(s.c_len(), seed + 2);
    let at = tensor(&stored(s.batch, s.m, s.k, s.trans_a), &a);
    let bt = tensor(&stored(s.batch, s.k, s.n, s.trans_b), &b);
    let ct = if accumulate {
        tensor(&stored(s.batch, s.m, s.n, false), &c0)
    } else {
        // NaN, not zeros: a kernel that adds into C when told to overwrite it must fail.
        common::nan_tensor(&stored(s.batch, s.m, s.n, false))
    };
    let opts = MatmulOptions {
        trans_a: s.trans_a,
        trans_b: s.trans_b,
        accumulate,
        variant,
    };
    gpu()
        .run([&mm::matmul(gpu(), &at, &bt, &ct, opts).unwrap()])
        .unwrap();

    let (a64, b64, c64) = (to_f64(&a), to_f64(&b), to_f64(&c0));
    let mut want = reference::matmul(&a64, &b64, s);
    let mut mag = reference::matmul(&abs(&a64), &abs(&b64), s);
    let mut terms = s.k;
    if accumulate {
        want.iter_mut().zip(&c64).for_each(|(w, c)| *w += c);
        mag.iter_mut().zip(&c64).for_each(|(w, c)| *w += c.abs());
        terms += 1;
    }
    let case = format!("{s:?} accumulate={accumulate} {variant:?}");
    assert_close(&case, &ct.read_f32(gpu()).unwrap(), &want, |i| {
        gamma(terms) * mag[i]
    });
}

/// Every transpose combination, with and without accumulation, on the tiled kernel and (where the shape allows)
/// the register-blocked ones.
fn check_all_variants(batch: usize, m: usize, n: usize, k: usize, seed: u64) {
    for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
        let s = MatmulShape {
            batch,
            m,
            n,
            k,
            trans_a,
            trans_b,
        };
        for accumulate in [false, true] {
            check_product(&s, accumulate, Variant::Tiled, seed);
            if blocked_ok(&s) {
                check_product(&s, accumulate, Variant::RegisterBlocked, seed);
                // Where the adapter has the subgroup kernels (lavapipe's Vulkan driver; not GL).
                if diffuse::kernels::select::matmul_subgroup_available(gpu()) {
                    check_product(&s, accumulate, Variant::RegisterBlockedSubgroup, seed);
                }
            }
        }
    }
}

// Tiles: the register-blocked kernels cover 32 rows × 128 columns per workgroup in groups of 4 (the subgroup
// matmul_nt 32 × 64 where N ≤ 64), the tiled kernel 64 × 64 with k in slices of 16.

#[test]
fn matmul_matches_reference_on_tiny_and_odd_shapes() {
    let _gpu = serial();
    check_all_variants(1, 1, 1, 1, 1);
    check_all_variants(1, 7, 5, 3, 2);
    check_all_variants(1, 1, 4, 4, 3); // one row: blocked where A is not transposed
    check_all_variants(1, 4, 8, 1, 4); // K = 1
}

#[test]
fn matmul_matches_reference_one_past_and_one_short_of_the_tiles() {
    let _gpu = serial();
    check_all_variants(1, 33, 129, 17, 5); // 32 + 1 rows, 128 + 1 columns, 16 + 1 along k
    check_all_variants(1, 31, 124, 20, 6); // one row short of 32, one vec4 short of 128
    check_all_variants(1, 65, 132, 64, 7); // 64 + 1 rows, 128 + 4 columns, k = 64
    check_all_variants(1, 63, 63, 65, 8); // one short of 64 both ways, k one past 64
}

#[test]
fn matmul_matches_reference_on_large_shapes() {
    let _gpu = serial();
    check_all_variants(1, 128, 256, 257, 9);
    check_all_variants(1, 257, 128, 128, 10);
}

#[test]
fn batched_matmul_matches_reference() {
    let _gpu = serial();
    check_all_variants(5, 40, 16, 12, 11);
    check_all_variants(3, 9, 11, 13, 12);
    // Narrow blocks (N ≤ 64): exactly one, and one short of it with a partial row block (Winograd's weight
    // gradient: 36 products of N = the input channels, K = the tiles).
    check_all_variants(3, 33, 64, 36, 15);
    check_all_variants(2, 20, 60, 8, 16);
    // Attention at 14×14 with batch 8: scores Q·Kᵀ [196, 32]·[32, 196] and their product with V.
    check_product(
        &MatmulShape {
            batch: 8,
            m: 196,
            n: 196,
            k: 32,
            trans_a: false,
            trans_b: true,
        },
        false,
        Variant::Auto,
        13,
    );
    check_product(
        &MatmulShape {
            batch: 8,
            m: 196,
            n: 32,
            k: 196,
            trans_a: false,
            trans_b: false,
        },
        false,
        Variant::Auto,
        14,
    );
}

#[test]
fn auto_variant_matches_reference() {
    let _gpu = serial();
    // Auto picks the register-blocked kernel on a CPU adapter when the shape allows it, else the tiled one.
    for (m, n, k) in [(64, 64, 64), (7, 9, 11)] {
        for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
            check_product(
                &MatmulShape {
                    batch: 1,
                    m,
                    n,
                    k,
                    trans_a,
                    trans_b,
                },
                true,
                Variant::Auto,
                15,
            );
        }
    }
}

/// Runs linear forward and the three backward kernels on random data and checks each against the reference.
fn check_linear(rows: usize, inp: usize, out: usize, with_bias: bool, seed: u64) {
    let (x, w, bias, d_y) = (
        uniform(rows * inp, seed),
        uniform(out * inp, seed + 1),
        uniform(out, seed + 2),
        uniform(rows * out, seed + 3),
    );
    let (xt, wt, bt, dyt) = (
        tensor(&[rows, inp], &x),
        tensor(&[out, inp], &w),
        tensor(&[out], &bias),
        tensor(&[rows, out], &d_y),
    );
    // Pre-filled with NaN: each kernel must overwrite its output (src/kernels/mod.rs's gradient contract).
    let (yt, dxt, dwt, dbt) = (
        common::nan_tensor(&[rows, out]),
        common::nan_tensor(&[rows, inp]),
        common::nan_tensor(&[out, inp]),
        common::nan_tensor(&[out]),
    );
    gpu()
        .run([
            &mm::linear_forward(gpu(), &xt, &wt, with_bias.then_some(&bt), &yt).unwrap(),
            &mm::linear_backward_input(gpu(), &dyt, &wt, &dxt).unwrap(),
            &mm::linear_backward_weight(gpu(), &dyt, &xt, &dwt).unwrap(),
            &mm::linear_backward_bias(gpu(), &dyt, &dbt).unwrap(),
        ])
        .unwrap();
    let (x64, w64, b64, dy64) = (to_f64(&x), to_f64(&w), to_f64(&bias), to_f64(&d_y));
    let case = format!("rows {rows}, {inp} → {out}, bias {with_bias}");
    let b_opt = with_bias.then_some(&b64[..]);
    let want = reference::linear_forward(&x64, &w64, b_opt, rows, inp, out);
    let mag = reference::linear_forward(
        &abs(&x64),
        &abs(&w64),
        with_bias.then_some(&abs(&b64)[..]),
        rows,
        inp,
        out,
    );
    let terms = inp + with_bias as usize;
    assert_close(
        &format!("linear_forward {case}"),
        &yt.read_f32(gpu()).unwrap(),
        &want,
        |i| gamma(terms) * mag[i],
    );

    let want = reference::linear_backward_input(&dy64, &w64, rows, inp, out);
    let mag = reference::linear_backward_input(&abs(&dy64), &abs(&w64), rows, inp, out);
    assert_close(
        &format!("linear_backward_input {case}"),
        &dxt.read_f32(gpu()).unwrap(),
        &want,
        |i| gamma(out) * mag[i],
    );

    let want = reference::linear_backward_weight(&dy64, &x64, rows, inp, out);
    let mag = reference::linear_backward_weight(&abs(&dy64), &abs(&x64), rows, inp, out);
    assert_close(
        &format!("linear_backward_weight {case}"),
        &dwt.read_f32(gpu()).unwrap(),
        &want,
        |i| gamma(rows) * mag[i],
    );

    let want = reference::linear_backward_bias(&dy64, out);
    let mag = reference::linear_backward_bias(&abs(&dy64), out);
    assert_close(
        &format!("linear_backward_bias {case}"),
        &dbt.read_f32(gpu()).unwrap(),
        &want,
        |i| gamma(rows) * mag[i],
    );
}

#[test]
fn linear_forward_and_backward_match_reference() {
    let _gpu = serial();
    // (rows, in, out): one row, odd sizes, one past the 64-column bias workgroup, and the U-Net's shapes: the time
    // embedding MLP at batch 8 and 32, and the attention projections at 14×14 with batch 8 (1568 tokens).
    for (case, &(rows, inp, out)) in [
        (1, 1, 1),
        (7, 3, 5),
        (5, 12, 65),
        (8, 128, 512),
        (32, 512, 512),
        (1568, 128, 384),
        (257, 64, 128),
    ]
    .iter()
    .enumerate()
    {
        check_linear(rows, inp, out, case % 2 == 0, 100 + 4 * case as u64);
        check_linear(rows, inp, out, case % 2 == 1, 200 + 4 * case as u64);
    }
}

#[test]
fn linear_backward_reference_matches_finite_differences() {
    // L = ⟨linear(x, w, b), g⟩, so ∂L/∂y = g and the reference backward, fed g, must give ∂L/∂x, ∂L/∂w, ∂L/∂b.
    let (rows, inp, out) = (3, 4, 5);
    let (x, w, b, g) = (
        uniform64(rows * inp, 1),
        uniform64(out * inp, 2),
        uniform64(out, 3),
        uniform64(rows * out, 4),
    );
    let loss = |x: &[f64], w: &[f64], b: &[f64]| {
        gradcheck::dot(
            &reference::linear_forward(x, w, Some(b), rows, inp, out),
            &g,
        )
    };
    let checks = [
        (
            "d_x",
            gradcheck::numeric_gradient(&x, 1e-6, |x| loss(x, &w, &b)),
            reference::linear_backward_input(&g, &w, rows, inp, out),
        ),
        (
            "d_w",
            gradcheck::numeric_gradient(&w, 1e-6, |w| loss(&x, w, &b)),
            reference::linear_backward_weight(&g, &x, rows, inp, out),
        ),
        (
            "d_b",
            gradcheck::numeric_gradient(&b, 1e-6, |b| loss(&x, &w, b)),
            reference::linear_backward_bias(&g, out),
        ),
    ];
    for (name, numeric, analytic) in checks {
        // L is bilinear, so central differences are exact up to f64 rounding of O(1) values divided by 2h.
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
fn finite_difference_check_rejects_a_wrong_gradient() {
    // The harness above can fail: a weight gradient computed without the transpose (d_y·x instead of d_yᵀ·x, here
    // on a square case so the shapes still fit) is caught.
    let n = 3;
    let (x, w, g) = (
        uniform64(n * n, 5),
        uniform64(n * n, 6),
        uniform64(n * n, 7),
    );
    let numeric = gradcheck::numeric_gradient(&w, 1e-6, |w| {
        gradcheck::dot(&reference::linear_forward(&x, w, None, n, n, n), &g)
    });
    let wrong = reference::matmul(
        &g,
        &x,
        &MatmulShape {
            batch: 1,
            m: n,
            n,
            k: n,
            trans_a: false,
            trans_b: false,
        },
    );
    let (_, r) = gradcheck::worst_ratio(&wrong, &numeric, 1e-8, 1e-6);
    assert!(r > 1.0, "a wrong gradient passed the check");
}

#[test]
fn finite_difference_check_rejects_a_nan_gradient() {
    // A NaN compares false with everything, so a check built on `ratio > worst` would skip it and pass. The
    // correct weight gradient passes; the same gradient with one NaN element (on either side) must not.
    let (rows, inp, out) = (3, 4, 5);
    let (x, w, g) = (
        uniform64(rows * inp, 8),
        uniform64(out * inp, 9),
        uniform64(rows * out, 10),
    );
    let numeric = gradcheck::numeric_gradient(&w, 1e-6, |w| {
        gradcheck::dot(&reference::linear_forward(&x, w, None, rows, inp, out), &g)
    });
    let analytic = reference::linear_backward_weight(&g, &x, rows, inp, out);
    let (_, r) = gradcheck::worst_ratio(&analytic, &numeric, 1e-8, 1e-6);
    assert!(r <= 1.0, "the correct gradient must pass (ratio {r})");
    for nan_in_analytic in [true, false] {
        let (mut a, mut n) = (analytic.clone(), numeric.clone());
        if nan_in_analytic {
            a[7] = f64::NAN;
        } else {
            n[7] = f64::NAN;
        }
        let (i, r) = gradcheck::worst_ratio(&a, &n, 1e-8, 1e-6);
        assert!(
            r > 1.0 && i == 7,
            "a NaN gradient passed the check (nan_in_analytic={nan_in_analytic}, worst [{i}] ratio {r})"
        );
    }
}

#[test]
fn bad_shapes_are_refused_with_the_shapes_named() {
    let _gpu = serial();
    let gpu = gpu();
    let err =
        |r: diffuse::Result<diffuse::gpu::Dispatch>| r.err().expect("must be refused").to_string();
    let a = zeros(&[3, 4]);
    let b = zeros(&[5, 6]);
    let c = zeros(&[3, 6]);
    let e = err(mm::matmul(gpu, &a, &b, &c, MatmulOptions::default()));
    assert!(
        e.contains("inner dimensions") && e.contains("[3, 4]") && e.contains("[5, 6]"),
        "{e}"
    );
    let b = zeros(&[4, 6]);
    let e = err(mm::matmul(
        gpu,
        &a,
        &b,
        &zeros(&[3, 5]),
        MatmulOptions::default(),
    ));
    assert!(
        e.contains("C must be [3, 6]") && e.contains("[3, 5]"),
        "{e}"
    );
    let e = err(mm::matmul(
        gpu,
        &a,
        &b,
        &zeros(&[2, 3, 6]),
        MatmulOptions::default(),
    ));
    assert!(e.contains("all be matrices or all be batches"), "{e}");
    let e = err(mm::matmul(
        gpu,
        &zeros(&[2, 3, 4]),
        &zeros(&[3, 4, 6]),
        &zeros(&[2, 3, 6]),
        MatmulOptions::default(),
    ));
    assert!(e.contains("batch sizes differ"), "{e}");
    let e = err(mm::matmul(
        gpu,
        &zeros(&[24]),
        &b,
        &c,
        MatmulOptions::default(),
    ));
    assert!(e.contains("[24]"), "{e}");
    let e = err(mm::matmul(
        gpu,
        &a,
        &b,
        &c,
        MatmulOptions {
            trans_a: true,
            ..Default::default()
        },
    ));
    assert!(e.contains("inner dimensions"), "{e}");
    // Ragged shapes are refused by the register-blocked kernel when it is forced, and run by Auto.
    let odd = zeros(&[3, 5]);
    let e = err(mm::matmul(
        gpu,
        &a,
        &zeros(&[4, 5]),
        &odd,
        MatmulOptions {
            variant: Variant::RegisterBlocked,
            ..Default::default()
        },
    ));
    assert!(e.contains("multiples of 4"), "{e}");
    if !diffuse::kernels::select::matmul_subgroup_available(gpu) {
        let opts = MatmulOptions {
            variant: Variant::RegisterBlockedSubgroup,
            ..Default::default()
        };
        let e = err(mm::matmul(gpu, &a, &b, &c, opts));
        assert!(e.contains("subgroups"), "{e}");
    }
    assert!(mm::matmul(gpu, &a, &zeros(&[4, 5]), &odd, MatmulOptions::default()).is_ok());
    // The output may not alias an input.
    let square = zeros(&[4, 4]);
    let e = err(mm::matmul(
        gpu,
        &square,
        &zeros(&[4, 4]),
        &square,
        MatmulOptions::default(),
    ));
    assert!(e.contains("shares a buffer"), "{e}");
    // u32 tensors and empty shapes.
    let u = Tensor::from_u32(gpu, &[3, 4], &[0; 12]).unwrap();
    let e = err(mm::matmul(gpu, &u, &b, &c, MatmulOptions::default()));
    assert!(e.contains("f32"), "{e}");
    let e = Tensor::zeros(gpu, &[0, 4], DType::F32)
        .expect_err("zero size")
        .to_string();
    assert!(e.contains("no elements"), "{e}");

    // linear: x [rows, in], w [out, in], bias [out], y [rows, out].
    let (x, w, y) = (zeros(&[2, 3]), zeros(&[5, 3]), zeros(&[2, 5]));
    assert!(mm::linear_forward(gpu, &x, &w, None, &y).is_ok());
    let e = err(mm::linear_forward(gpu, &x, &zeros(&[5, 4]), None, &y));
    assert!(
        e.contains("linear_forward") && e.contains("[5, 4]") && e.contains("[2, 3]"),
        "{e}"
    );
    let e = err(mm::linear_forward(gpu, &x, &w, Some(&zeros(&[4])), &y));
    assert!(e.contains("bias must be [5]"), "{e}");
    let e = err(mm::linear_forward(gpu, &x, &w, None, &zeros(&[2, 4])));
    assert!(e.contains("y must be [2, 5]"), "{e}");
    let e = err(mm::linear_backward_input(gpu, &y, &w, &zeros(&[2, 4])));
    assert!(e.contains("linear_backward_input"), "{e}");
    let e = err(mm::linear_backward_weight(gpu, &y, &x, &zeros(&[3, 5])));
    assert!(
        e.contains("linear_backward_weight") && e.contains("[3, 5]"),
        "{e}"
    );
    let e = err(mm::linear_backward_bias(gpu, &y, &zeros(&[4])));
    assert!(e.contains("d_b must be [5]"), "{e}");
    let e = err(mm::linear_backward_bias(
        gpu,
        &zeros(&[2, 5, 1]),
        &zeros(&[5]),
    ));
    assert!(e.contains("d_y must be [rows, out]"), "{e}");
}
