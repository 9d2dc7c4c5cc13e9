//! shaders/conv2d.wgsl and conv2d_subgroup.wgsl against src/reference/conv2d.rs.
//!
//! Tolerances: every output is a sum of products (plus a bias or the old value), so it is held to the standard
//! bound for a k-term f32 sum in any order, |got − want| ≤ γ_k · Σ|terms| (reference::gamma), where Σ|terms|
//! is the same reference run on |inputs| (the ops are linear in each argument). The k of each op:
//!   forward          k = Ci·k² products + 1 bias
//!   backward input   k = Co·k² products (+ 1 old value with accumulate); for stride 2 the kernel also adds
//!                    the exact zeros of the dilated d_y, which add no error
//!   backward weight  k = N·Ho·Wo products (the chunked partial sums are just another summation order)
//!   backward bias    k = N·Ho·Wo values
//! The reference backward passes are first checked against f64 central differences of the reference forward.

use crate::common;

use common::{assert_close, check_close, gpu, uniform};
use diffuse::gpu::{DType, Gpu, Tensor};
use diffuse::kernels::conv2d::{self, Conv2dOptions, Path};
use diffuse::kernels::select::{ConvKernel, ConvPass};
use diffuse::reference::conv2d::{self as reference, abs, Conv2dShape};
use diffuse::reference::conv2d_winograd as winograd;
use diffuse::reference::{gamma, gradcheck, to_f64};

fn shape(
    n: usize,
    ci: usize,
    co: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
) -> Conv2dShape {
    Conv2dShape {
        n,
        ci,
        co,
        h,
        w,
        k,
        stride,
        pad: k / 2,
    }
}

/// Edge shapes first (batch 1, odd sizes, channel counts that are not multiples of the 8- and 16-channel
/// blocks, images not multiples of the 4×4 tiles), then the largest shapes of the U-Net.
fn cases() -> Vec<Conv2dShape> {
    vec![
        shape(1, 1, 1, 1, 1, 3, 1), // a [1,1,1,1] image: every tap but the centre is padding
        shape(1, 3, 5, 5, 7, 3, 1),
        shape(1, 5, 3, 7, 7, 3, 2),
        shape(2, 33, 5, 13, 13, 3, 2),
        shape(1, 5, 33, 5, 7, 1, 1),
        shape(2, 3, 17, 9, 6, 3, 1), // 17 = one past the 16-channel block of backward weight
        shape(1, 65, 9, 6, 5, 3, 1), // 65 = one past the 64 channels of a backward-weight workgroup
        shape(1, 8, 12, 5, 9, 3, 1), // 6 Winograd tiles: not a whole number of the 4 each invocation takes
        shape(2, 4, 8, 7, 12, 3, 1), // rows of whole vec4s, a partial row block (Winograd d_y read as vec4s)
        shape(4, 64, 64, 28, 28, 3, 1),
        shape(2, 128, 128, 14, 14, 3, 1),
        shape(4, 128, 128, 7, 7, 3, 1),
        shape(4, 1, 32, 28, 28, 3, 1),
        shape(4, 32, 1, 28, 28, 3, 1),
        shape(2, 3, 64, 32, 32, 3, 1),
        shape(2, 64, 64, 28, 28, 3, 2),
        shape(2, 64, 128, 14, 14, 1, 1),
    ]
}

/// The paths to test: the automatic choice, the portable kernels, Winograd's F(4×4, 3×3) for every 3×3 stride-1
/// shape and the tiled implicit GEMM for every shape (whether or not `Auto` would take them on this adapter).
fn paths(_gpu: &Gpu) -> Vec<Path> {
    vec![Path::Auto, Path::Portable, Path::Winograd, Path::Gemm]
}

fn takes_winograd(gpu: &Gpu, path: Path, s: &Conv2dShape, w: &[f64], backward_input: bool) -> bool {
    let w: Vec<f32> = w.iter().map(|&v| v as f32).collect();
    let w = tensor(gpu, &w_shape(s), &w);
    let pass = if backward_input {
        ConvPass::BackwardInput
    } else {
        ConvPass::Forward
    };
    conv2d::choice(gpu, path, pass, &x_shape(s), &w, s.stride).unwrap() == ConvKernel::Winograd
}

/// Options choosing `path` and nothing else.
fn on(path: Path) -> Conv2dOptions<'static> {
    Conv2dOptions {
        path,
        ..Default::default()
    }
}

/// The rounding steps of a Winograd result beyond the K − 1 additions of its channel sum: the input transform
/// (≤ 4 per direction: Bᵀ's rows have up to 4 terms and a ×5), the weight transform (≤ 3 per direction: 3 terms
/// and a ÷6 or ÷24), the product (1), the output transform (≤ 4 per direction), the bias or the old value
/// (1) and one spare: 8 + 6 + 1 + 8 + 1 + 1 = 25 (see shaders/conv2d_winograd.wgsl).
const WINOGRAD_STEPS: usize = 25;

/// The rounding steps of a Winograd weight gradient beyond the additions of its sum over the Tp (padded) tiles:
/// the d_y transform (≤ 2 per direction: A's rows are two sums of two, scaled by powers of 2), the input transform
/// (≤ 4 per direction), the product (1), the weight-gradient transform (≤ 5 per direction: up to 5 terms, each
/// constant 1/6, 1/12, 1/24 rounded and multiplied) and one spare: 4 + 8 + 1 + 10 + 1 = 24 (see
/// shaders/conv2d_winograd.wgsl).
const WINOGRAD_WEIGHT_STEPS: usize = 24;

/// The tile count a Winograd weight gradient sums over: N·⌈H/4⌉·⌈W/4⌉ rounded up to a multiple of 4.
fn winograd_tiles(s: &Conv2dShape) -> usize {
    (s.n * s.h.div_ceil(4) * s.w.div_ceil(4)).next_multiple_of(4)
}

/// Per-element bound on a forward result of `path`: γ_k · Σ|terms| with k = Ci·k² + 1 for the direct kernels;
/// for Winograd γ_{Ci + 25} times the same F(4×4, 3×3) run on magnitudes (its intermediate values exceed the
/// result, so the direct Σ|terms| does not bound its error).
fn forward_bounds(
    gpu: &Gpu,
    path: Path,
    s: &Conv2dShape,
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
) -> Vec<f64> {
    let b = b.map(abs);
    if takes_winograd(gpu, path, s, w, false) {
        let mag = winograd::forward(s, &abs(x), &abs(w), b.as_deref(), true);
        let tol = gamma(s.ci + WINOGRAD_STEPS);
        mag.iter().map(|m| tol * m).collect()
    } else {
        let mag = reference::forward(s, &abs(x), &abs(w), b.as_deref());
        let tol = gamma(s.ci * s.k * s.k + 1);
        mag.iter().map(|m| tol * m).collect()
    }
}

/// What the bound on a backward-input result of `path` is built from, as [`forward_bounds`] with the channels
/// swapped (the Winograd route is the forward of d_y with the flipped, transposed weights): Σ|terms| from a run on
/// magnitudes and the k of γ_k. Computed once per route and shared by the overwriting and accumulating runs.
struct InputBound {
    mag: Vec<f64>,
    /// k without the old value: Co + 25 for Winograd (whose 25 steps already count it), Co·k² direct.
    k: usize,
    winograd: bool,
}

impl InputBound {
    fn new(gpu: &Gpu, path: Path, s: &Conv2dShape, d_y: &[f64], w: &[f64]) -> InputBound {
        if takes_winograd(gpu, path, s, w, true) {
            let t = winograd::transposed_shape(s);
            let w_t = winograd::flipped_transposed(s, w);
            InputBound {
                mag: winograd::forward(&t, &abs(d_y), &abs(&w_t), None, true),
                k: s.co + WINOGRAD_STEPS,
                winograd: true,
            }
        } else {
            InputBound {
                mag: reference::backward_input(s, &abs(d_y), &abs(w)),
                k: s.co * s.k * s.k,
                winograd: false,
            }
        }
    }

    /// Per-element bounds, plus `old` where the pass accumulates (one more term for the direct kernels).
    fn bounds(&self, old: Option<&[f32]>) -> Vec<f64> {
        let extra = (!self.winograd && old.is_some()) as usize;
        let tol = gamma(self.k + extra);
        (0..self.mag.len())
            .map(|i| tol * (self.mag[i] + old.map_or(0.0, |o| o[i].abs() as f64)))
            .collect()
    }
}

/// Each route's bounds computed once (`make` on the first path taking it): Auto takes the route of one of the
/// forced paths, and the runs on magnitudes cost as much as the reference itself.
struct ByRoute<T>([Option<T>; 2]);

impl<T> ByRoute<T> {
    fn new() -> ByRoute<T> {
        ByRoute([None, None])
    }

    fn get(&mut self, winograd: bool, make: impl FnOnce() -> T) -> &T {
        self.0[winograd as usize].get_or_insert_with(make)
    }
}

struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    d_y: Vec<f32>,
}

fn data(s: &Conv2dShape, seed: u64) -> Data {
    Data {
        x: uniform(s.x_len(), seed),
        w: uniform(s.w_len(), seed + 1),
        b: uniform(s.co, seed + 2),
        d_y: uniform(s.y_len(), seed + 3),
    }
}

fn tensor(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::from_f32(gpu, shape, data).unwrap()
}

fn zeros(gpu: &Gpu, shape: &[usize]) -> Tensor {
    Tensor::zeros(gpu, shape, DType::F32).unwrap()
}

fn x_shape(s: &Conv2dShape) -> [usize; 4] {
    [s.n, s.ci, s.h, s.w]
}

fn y_shape(s: &Conv2dShape) -> [usize; 4] {
    [s.n, s.co, s.ho(), s.wo()]
}

fn w_shape(s: &Conv2dShape) -> [usize; 4] {
    [s.co, s.ci, s.k, s.k]
}

#[test]
fn reference_backward_passes_match_finite_differences() {
    for s in [
        shape(2, 2, 3, 5, 4, 3, 1),
        shape(1, 2, 2, 5, 6, 3, 2),
        shape(2, 3, 2, 3, 5, 1, 1),
    ] {
        let d = data(&s, 7);
        let (x, w, b, g) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.b), to_f64(&d.d_y));
        // L = ⟨y, g⟩, so ∂L/∂y = g and the backward passes of g are the gradients of L.
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            gradcheck::dot(&reference::forward(&s, x, w, Some(b)), &g)
        };
        let h = 1e-6;
        // L is linear in each argument: the central difference is exact up to f64 rounding of O(1) sums.
        let check = |what: &str, analytic: Vec<f64>, numeric: Vec<f64>| {
            let (i, r) = gradcheck::worst_ratio(&analytic, &numeric, 1e-8, 1e-7);
            assert!(
                r <= 1.0,
                "{s:?} {what}[{i}]: analytic {} vs numeric {}",
                analytic[i],
                numeric[i]
            );
        };
        check(
            "d_x",
            reference::backward_input(&s, &g, &w),
            gradcheck::numeric_gradient(&x, h, |x| loss(x, &w, &b)),
        );
        check(
            "d_w",
            reference::backward_weight(&s, &x, &g),
            gradcheck::numeric_gradient(&w, h, |w| loss(&x, w, &b)),
        );
        check(
            "d_b",
            reference::backward_bias(&s, &g),
            gradcheck::numeric_gradient(&b, h, |b| loss(&x, &w, b)),
        );
    }
}

#[test]
fn reference_winograd_equals_the_direct_convolution() {
    // Odd sizes, partial tiles, a 1×1 image and several channels: in exact arithmetic F(4×4, 3×3) is the
    // convolution, so the f64 results agree to f64 rounding (bounded, as for f32, by γ on the magnitudes).
    for s in [
        shape(1, 1, 1, 1, 1, 3, 1),
        shape(2, 3, 5, 5, 7, 3, 1),
        shape(1, 4, 3, 9, 6, 3, 1),
        shape(1, 2, 2, 8, 8, 3, 1),
    ] {
        let d = data(&s, 11);
        let (x, w, b, d_y) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.b), to_f64(&d.d_y));
        // Every element within γ_steps·2⁻²⁹ (f64's unit roundoff) of the Winograd run on magnitudes.
        let agree = |what: &str, got: &[f64], want: &[f64], mag: &[f64], steps: usize| {
            let tol = gamma(steps) * 2f64.powi(-29);
            for i in 0..want.len() {
                assert!(
                    (got[i] - want[i]).abs() <= tol * mag[i],
                    "{s:?} {what} element {i}: Winograd {} direct {}",
                    got[i],
                    want[i]
                );
            }
        };
        agree(
            "forward",
            &winograd::forward(&s, &x, &w, Some(&b), false),
            &reference::forward(&s, &x, &w, Some(&b)),
            &winograd::forward(&s, &abs(&x), &abs(&w), Some(&abs(&b)), true),
            s.ci + WINOGRAD_STEPS,
        );
        // The weight gradient through the transforms run backwards.
        agree(
            "weight gradient",
            &winograd::backward_weight(&s, &x, &d_y, false),
            &reference::backward_weight(&s, &x, &d_y),
            &winograd::backward_weight(&s, &abs(&x), &abs(&d_y), true),
            winograd_tiles(&s) + WINOGRAD_WEIGHT_STEPS,
        );
        // The backward input through the flipped, transposed weights.
        let t = winograd::transposed_shape(&s);
        let w_t = winograd::flipped_transposed(&s, &w);
        agree(
            "backward input",
            &winograd::forward(&t, &d_y, &w_t, None, false),
            &reference::backward_input(&s, &d_y, &w),
            &winograd::forward(&t, &abs(&d_y), &abs(&w_t), None, true),
            s.ci + WINOGRAD_STEPS,
        );
    }
}

#[test]
fn reference_output_sizes_follow_pytorch() {
    // Odd sizes at stride 2 round up (⌈H/2⌉), as torch.nn.Conv2d(k=3, s=2, p=1) does.
    let s = shape(1, 1, 1, 13, 6, 3, 2);
    assert_eq!((s.ho(), s.wo()), (7, 3));
    assert_eq!(
        (
            shape(1, 1, 1, 5, 7, 3, 1).ho(),
            shape(1, 1, 1, 5, 7, 1, 1).wo()
        ),
        (5, 7)
    );
}

#[test]
fn forward_matches_reference() {
    for s in cases() {
        check_forward(&s, 1);
    }
}

/// The forward of `s` on every path against the reference, within each route's bound.
fn check_forward(s: &Conv2dShape, seed: u64) {
    let gpu = gpu();
    let d = data(s, seed);
    let (x64, w64, b64) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.b));
    let want = reference::forward(s, &x64, &w64, Some(&b64));
    let (x, w, b) = (
        tensor(gpu, &x_shape(s), &d.x),
        tensor(gpu, &w_shape(s), &d.w),
        tensor(gpu, &[s.co], &d.b),
    );
    let mut by_route = ByRoute::new();
    for path in paths(gpu) {
        let bounds = by_route.get(takes_winograd(gpu, path, s, &w64, false), || {
            forward_bounds(gpu, path, s, &x64, &w64, Some(&b64))
        });
        let y = zeros(gpu, &y_shape(s));
        gpu.run(&conv2d::forward(gpu, &x, &w, Some(&b), &y, s.stride, on(path)).unwrap())
            .unwrap();
        assert_close(
            &format!("{s:?} {path:?}"),
            &y.read_f32(gpu).unwrap(),
            &want,
            |i| bounds[i],
        );
    }
}

#[test]
fn forward_without_bias_matches_reference() {
    let gpu = gpu();
    for s in [
        shape(1, 3, 5, 5, 7, 3, 1),
        shape(1, 5, 3, 7, 7, 3, 2),
        shape(2, 5, 9, 3, 5, 1, 1),
    ] {
        let d = data(&s, 2);
        let (x64, w64) = (to_f64(&d.x), to_f64(&d.w));
        let want = reference::forward(&s, &x64, &w64, None);
        let (x, w) = (
            tensor(gpu, &x_shape(&s), &d.x),
            tensor(gpu, &w_shape(&s), &d.w),
        );
        for path in paths(gpu) {
            let bounds = forward_bounds(gpu, path, &s, &x64, &w64, None);
            // y starts as garbage: the forward must overwrite it.
            let y = tensor(gpu, &y_shape(&s), &vec![f32::NAN; s.y_len()]);
            gpu.run(&conv2d::forward(gpu, &x, &w, None, &y, s.stride, on(path)).unwrap())
                .unwrap();
            assert_close(
                &format!("{s:?} {path:?}"),
                &y.read_f32(gpu).unwrap(),
                &want,
                |i| bounds[i],
            );
        }
    }
}

#[test]
fn backward_input_matches_reference_and_accumulates() {
    for s in cases() {
        check_backward_input(&s, 3);
    }
}

/// The backward input of `s` on every path, overwriting and accumulating, against the reference.
fn check_backward_input(s: &Conv2dShape, seed: u64) {
    let gpu = gpu();
    let d = data(s, seed);
    let (dy64, w64) = (to_f64(&d.d_y), to_f64(&d.w));
    let want = reference::backward_input(s, &dy64, &w64);
    let (d_y, w) = (
        tensor(gpu, &y_shape(s), &d.d_y),
        tensor(gpu, &w_shape(s), &d.w),
    );
    let old = uniform(s.x_len(), 99);
    let mut by_route = ByRoute::new();
    for path in paths(gpu) {
        let case = format!("{s:?} {path:?}");
        let bound = by_route.get(takes_winograd(gpu, path, s, &w64, true), || {
            InputBound::new(gpu, path, s, &dy64, &w64)
        });
        let bounds = bound.bounds(None);
        let d_x = tensor(gpu, &x_shape(s), &vec![f32::NAN; s.x_len()]);
        gpu.run(&conv2d::backward_input(gpu, &d_y, &w, &d_x, s.stride, on(path)).unwrap())
            .unwrap();
        assert_close(&case, &d_x.read_f32(gpu).unwrap(), &want, |i| bounds[i]);

        // d_x += …: one more term, the old value.
        let bounds = bound.bounds(Some(&old));
        let d_x = tensor(gpu, &x_shape(s), &old);
        let accumulate = Conv2dOptions {
            accumulate: true,
            ..on(path)
        };
        gpu.run(&conv2d::backward_input(gpu, &d_y, &w, &d_x, s.stride, accumulate).unwrap())
            .unwrap();
        let want_acc: Vec<f64> = want.iter().zip(&old).map(|(g, &o)| g + o as f64).collect();
        assert_close(
            &format!("{case} accumulate"),
            &d_x.read_f32(gpu).unwrap(),
            &want_acc,
            |i| bounds[i],
        );
    }
}

#[test]
fn backward_weight_matches_reference() {
    for s in cases() {
        check_backward_weight(&s, 4);
    }
}

/// The direct and implicit-GEMM weight gradients split into chunks for about 1, 8, 64 and 1024 workgroups (a CPU
/// adapter's count, the GPU's before issue 26 and after), on the portable loaders, on `Auto`'s and on the GEMM
/// (whose chunks cut the pixel sum in runs of 8-pixel slices): the same sum in another order, so the
/// same γ bound, with the bias gradient (the tests above cover it without). One workgroup's worth is one chunk, no
/// reduction; more add one reduction of d_w and d_b together.
#[test]
fn backward_weight_split_into_any_number_of_chunks_matches_reference() {
    let gpu = gpu();
    // Every kind of direct weight gradient (3×3 stride 1 and 2, 1×1 not in vec4s), channels off the blocks, and
    // planes of many 4×4 tiles, so that 1024 workgroups cut the sum into many chunks.
    for s in [
        shape(2, 5, 17, 13, 11, 3, 1),
        shape(3, 33, 9, 16, 16, 3, 2),
        shape(2, 7, 18, 9, 10, 1, 1),
    ] {
        let d = data(&s, 21);
        let (x64, d_y64) = (to_f64(&d.x), to_f64(&d.d_y));
        let want = reference::backward_weight(&s, &x64, &d_y64);
        let mag = reference::backward_weight(&s, &abs(&x64), &abs(&d_y64));
        let want_b = reference::backward_bias(&s, &d_y64);
        let mag_b = reference::backward_bias(&s, &abs(&d_y64));
        let tol = gamma(s.n * s.ho() * s.wo());
        let (x, d_y) = (
            tensor(gpu, &x_shape(&s), &d.x),
            tensor(gpu, &y_shape(&s), &d.d_y),
        );
        for path in [Path::Portable, Path::Auto, Path::Gemm] {
            let mut counts = Vec::new();
            for split in [1, 8, 64, 1024] {
                let opts = Conv2dOptions {
                    path,
                    weight_grad_workgroups: Some(split),
                    ..Default::default()
                };
                let d_w = tensor(gpu, &w_shape(&s), &vec![f32::NAN; s.w_len()]);
                let d_b = tensor(gpu, &[s.co], &vec![f32::NAN; s.co]);
                let dispatches =
                    conv2d::backward_weight(gpu, &x, &d_y, &d_w, Some(&d_b), s.stride, opts)
                        .unwrap();
                counts.push(dispatches.len());
                gpu.run(&dispatches).unwrap();
                let case = format!("{s:?} {path:?} split {split}");
                assert_close(&case, &d_w.read_f32(gpu).unwrap(), &want, |i| tol * mag[i]);
                assert_close(&case, &d_b.read_f32(gpu).unwrap(), &want_b, |i| {
                    tol * mag_b[i]
                });
            }
            // One chunk reduces nothing; every larger split here makes several chunks, reduced into d_w and d_b
            // by one dispatch.
            assert_eq!(
                counts[1..]
                    .iter()
                    .map(|c| c - counts[0])
                    .collect::<Vec<_>>(),
                [1, 1, 1],
                "{s:?} {path:?}: dispatches per split {counts:?}"
            );
        }
    }
}

/// The weight gradient of `s` on every path, without and with the bias gradient, against the reference.
fn check_backward_weight(s: &Conv2dShape, seed: u64) {
    let gpu = gpu();
    let d = data(s, seed);
    let want = reference::backward_weight(s, &to_f64(&d.x), &to_f64(&d.d_y));
    let mag = reference::backward_weight(s, &abs(&to_f64(&d.x)), &abs(&to_f64(&d.d_y)));
    let tol = gamma(s.n * s.ho() * s.wo());
    // Winograd's bound: γ over its tile sum and transforms, on the same algorithm run on magnitudes.
    let winograd_mag = (s.k == 3 && s.stride == 1)
        .then(|| winograd::backward_weight(s, &abs(&to_f64(&d.x)), &abs(&to_f64(&d.d_y)), true));
    let winograd_tol = gamma(winograd_tiles(s) + WINOGRAD_WEIGHT_STEPS);
    let (x, d_y) = (
        tensor(gpu, &x_shape(s), &d.x),
        tensor(gpu, &y_shape(s), &d.d_y),
    );
    for path in paths(gpu) {
        let bound: Vec<f64> = if takes_winograd(gpu, path, s, &to_f64(&d.w), false) {
            let m = winograd_mag.as_ref().unwrap();
            m.iter().map(|v| winograd_tol * v).collect()
        } else {
            mag.iter().map(|v| tol * v).collect()
        };
        let d_w = tensor(gpu, &w_shape(s), &vec![f32::NAN; s.w_len()]);
        gpu.run(&conv2d::backward_weight(gpu, &x, &d_y, &d_w, None, s.stride, on(path)).unwrap())
            .unwrap();
        assert_close(
            &format!("{s:?} {path:?}"),
            &d_w.read_f32(gpu).unwrap(),
            &want,
            |i| bound[i],
        );

        // The same pass with the bias gradient summed along: d_w unchanged, d_b a sum of N·Ho·Wo values.
        let d_w = tensor(gpu, &w_shape(s), &vec![f32::NAN; s.w_len()]);
        let d_b = tensor(gpu, &[s.co], &vec![f32::NAN; s.co]);
        gpu.run(
            &conv2d::backward_weight(gpu, &x, &d_y, &d_w, Some(&d_b), s.stride, on(path)).unwrap(),
        )
        .unwrap();
        let case = format!("{s:?} {path:?} with bias");
        assert_close(&case, &d_w.read_f32(gpu).unwrap(), &want, |i| bound[i]);
        let want_b = reference::backward_bias(s, &to_f64(&d.d_y));
        let mag_b = reference::backward_bias(s, &abs(&to_f64(&d.d_y)));
        assert_close(&case, &d_b.read_f32(gpu).unwrap(), &want_b, |i| {
            tol * mag_b[i]
        });
    }
}

/// rgb128's first level: 128×128 planes (config.rs), at batch 1 and 2, with the channels cut where the f64
/// reference would take too long (the input and output convolutions are the preset's own). Every path runs what
/// the preset's convolutions there take: `Auto` the direct kernels with subgroup loads (on lavapipe its 3×3s
/// take them too at the training batch of 32, where Winograd's scratch would outgrow a 128 MiB binding),
/// `Winograd` what they take on CPU adapters at batches up to 3 (256 channels in) or 7 (128), with the same
/// products (channels in whole vec4s).
fn plane_128_cases() -> Vec<Conv2dShape> {
    vec![
        shape(1, 3, 128, 128, 128, 3, 1), // the input convolution
        shape(2, 128, 3, 128, 128, 3, 1), // the output convolution
        shape(2, 8, 8, 128, 128, 3, 1),   // a residual block's 3×3: 2,048 Winograd tiles
        shape(1, 8, 8, 128, 128, 3, 2),   // the downsample to 64×64
        shape(2, 8, 4, 128, 128, 1, 1),   // an up block's 1×1 skip (256 → 128 in the preset)
    ]
}

/// The presets' own channel counts where the planes are small enough for the reference: every 3×3 stride-1 pass
/// here takes Winograd on `Auto` on CPU adapters, as in the presets.
fn preset_channel_cases() -> Vec<Conv2dShape> {
    vec![
        shape(1, 256, 256, 16, 16, 3, 1), // rgb64's and rgb128's 16×16 level
        shape(1, 1024, 512, 4, 4, 3, 1), // rgb128's 4×4 up blocks, [h; skip] to 512: 1 tile, 3 padding ones
        shape(2, 1024, 512, 4, 4, 1, 1), // and their 1×1 skip
        shape(2, 256, 256, 16, 16, 3, 2), // both presets' downsample from 16×16
    ]
}

#[test]
fn forward_matches_reference_on_128x128_planes() {
    for s in plane_128_cases() {
        check_forward(&s, 11);
    }
}

#[test]
fn backward_input_matches_reference_on_128x128_planes() {
    for s in plane_128_cases() {
        check_backward_input(&s, 12);
    }
}

#[test]
fn backward_weight_matches_reference_on_128x128_planes() {
    for s in plane_128_cases() {
        check_backward_weight(&s, 13);
    }
}

#[test]
fn forward_matches_reference_at_the_presets_channel_counts() {
    for s in preset_channel_cases() {
        check_forward(&s, 14);
    }
}

#[test]
fn backward_input_matches_reference_at_the_presets_channel_counts() {
    for s in preset_channel_cases() {
        check_backward_input(&s, 15);
    }
}

#[test]
fn backward_weight_matches_reference_at_the_presets_channel_counts() {
    for s in preset_channel_cases() {
        check_backward_weight(&s, 16);
    }
}

#[test]
fn backward_bias_matches_reference() {
    let gpu = gpu();
    for s in [
        shape(1, 1, 1, 1, 1, 3, 1),
        shape(1, 3, 5, 5, 7, 3, 2),
        shape(4, 64, 64, 28, 28, 3, 1),
        shape(3, 8, 3, 16, 17, 1, 1),
    ] {
        let d = data(&s, 5);
        let want = reference::backward_bias(&s, &to_f64(&d.d_y));
        let mag = reference::backward_bias(&s, &abs(&to_f64(&d.d_y)));
        let d_y = tensor(gpu, &y_shape(&s), &d.d_y);
        let d_b = tensor(gpu, &[s.co], &vec![f32::NAN; s.co]);
        gpu.run([&conv2d::backward_bias(gpu, &d_y, &d_b).unwrap()])
            .unwrap();
        let tol = gamma(s.n * s.ho() * s.wo());
        assert_close(&format!("{s:?}"), &d_b.read_f32(gpu).unwrap(), &want, |i| {
            tol * mag[i]
        });
    }
}

#[test]
fn results_are_bitwise_reproducible() {
    let gpu = gpu();
    let s = shape(2, 32, 16, 14, 14, 3, 1);
    let d = data(&s, 6);
    let (x, w, d_y) = (
        tensor(gpu, &x_shape(&s), &d.x),
        tensor(gpu, &w_shape(&s), &d.w),
        tensor(gpu, &y_shape(&s), &d.d_y),
    );
    let (y, d_x, d_w, d_b) = (
        zeros(gpu, &y_shape(&s)),
        zeros(gpu, &x_shape(&s)),
        zeros(gpu, &w_shape(&s)),
        zeros(gpu, &[s.co]),
    );
    let auto = Conv2dOptions::default();
    let mut all = conv2d::forward(gpu, &x, &w, None, &y, 1, auto).unwrap();
    all.extend(conv2d::backward_input(gpu, &d_y, &w, &d_x, 1, auto).unwrap());
    all.extend(conv2d::backward_weight(gpu, &x, &d_y, &d_w, None, 1, auto).unwrap());
    all.push(conv2d::backward_bias(gpu, &d_y, &d_b).unwrap());
    let read = || {
        [&y, &d_x, &d_w, &d_b].map(|t| {
            t.read_f32(gpu)
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect::<Vec<_>>()
        })
    };
    gpu.run(&all).unwrap();
    let first = read();
    gpu.run(&all).unwrap();
    assert!(first == read(), "a second run gave different bits");
}

#[test]
fn the_closeness_check_rejects_an_error_just_past_its_bound() {
    // The harness can fail: one element off by 1.01 bounds is caught, 0.99 bounds passes.
    let want = [1.0, -2.0, 3.0];
    let bound = |_: usize| 1e-3;
    assert!(check_close(&[1.0, -2.0, 3.00101], &want, bound).is_err());
    assert!(check_close(&[1.0, -2.0, 3.00099], &want, bound).is_ok());
}

#[test]
fn bad_shapes_are_refused_with_the_shapes_named() {
    let gpu = gpu();
    let x = zeros(gpu, &[2, 3, 8, 8]);
    let w = zeros(gpu, &[4, 3, 3, 3]);
    let y = zeros(gpu, &[2, 4, 8, 8]);
    let err = |r: diffuse::Result<Vec<diffuse::gpu::Dispatch>>| {
        r.err().expect("must be refused").to_string()
    };

    // Mismatched channels: the weight wants 5 input channels.
    let msg = err(conv2d::forward(
        gpu,
        &x,
        &zeros(gpu, &[4, 5, 3, 3]),
        None,
        &y,
        1,
        Conv2dOptions::default(),
    ));
    assert!(
        msg.contains("[4, 5, 3, 3]") && msg.contains("[2, 3, 8, 8]"),
        "{msg}"
    );
    // Weight not [Co, Ci, k, k].
    let msg = err(conv2d::forward(
        gpu,
        &x,
        &zeros(gpu, &[4, 3, 3, 2]),
        None,
        &y,
        1,
        Conv2dOptions::default(),
    ));
    assert!(
        msg.contains("[Co, Ci, k, k]") && msg.contains("[4, 3, 3, 2]"),
        "{msg}"
    );
    let msg = err(conv2d::forward(
        gpu,
        &x,
        &zeros(gpu, &[4, 3, 9]),
        None,
        &y,
        1,
        Conv2dOptions::default(),
    ));
    assert!(msg.contains("[4, 3, 9]"), "{msg}");
    // Unsupported kernel size or stride.
    let msg = err(conv2d::forward(
        gpu,
        &x,
        &zeros(gpu, &[4, 3, 5, 5]),
        None,
        &y,
        1,
        Conv2dOptions::default(),
    ));
    assert!(msg.contains("kernel size 5"), "{msg}");
    let msg = err(conv2d::forward(
        gpu,
        &x,
        &zeros(gpu, &[4, 3, 1, 1]),
        None,
        &y,
        2,
        Conv2dOptions::default(),
    ));
    assert!(msg.contains("stride 2"), "{msg}");
    // Wrong output size: stride 2 of 8×8 is 4×4, not 8×8.
    let msg = err(conv2d::forward(
        gpu,
        &x,
        &w,
        None,
        &y,
        2,
        Conv2dOptions::default(),
    ));
    assert!(
        msg.contains("[2, 4, 4, 4]") && msg.contains("[2, 4, 8, 8]"),
        "{msg}"
    );
    // A bias of the wrong length, an input that is not 4-D, a u32 tensor.
    let msg = err(conv2d::forward(
        gpu,
        &x,
        &w,
        Some(&zeros(gpu, &[3])),
        &y,
        1,
        Conv2dOptions::default(),
    ));
    assert!(msg.contains("bias") && msg.contains("[4]"), "{msg}");
    let msg = err(conv2d::forward(
        gpu,
        &zeros(gpu, &[3, 8, 8]),
        &w,
        None,
        &y,
        1,
        Conv2dOptions::default(),
    ));
    assert!(msg.contains("[N, Ci, H, W]"), "{msg}");
    let msg = err(conv2d::forward(
        gpu,
        &Tensor::zeros(gpu, &[2, 3, 8, 8], DType::U32).unwrap(),
        &w,
        None,
        &y,
        1,
        Conv2dOptions::default(),
    ));
    assert!(msg.contains("f32"), "{msg}");
    // The backward passes check d_y against the geometry and d_w / d_x against each other.
    let msg = err(conv2d::backward_input(
        gpu,
        &zeros(gpu, &[2, 4, 4, 4]),
        &w,
        &x,
        1,
        Conv2dOptions::default(),
    ));
    assert!(msg.contains("d_y") && msg.contains("[2, 4, 8, 8]"), "{msg}");
    let msg = err(conv2d::backward_weight(
        gpu,
        &x,
        &y,
        &zeros(gpu, &[4, 2, 3, 3]),
        None,
        1,
        Conv2dOptions::default(),
    ));
    assert!(msg.contains("[4, 2, 3, 3]"), "{msg}");
    // Options a pass has no use for are refused, not ignored.
    let accumulate = Conv2dOptions {
        accumulate: true,
        ..Default::default()
    };
    let msg = err(conv2d::forward(gpu, &x, &w, None, &y, 1, accumulate));
    assert!(msg.contains("accumulate"), "{msg}");
    let d_w = zeros(gpu, &[4, 3, 3, 3]);
    let msg = err(conv2d::backward_weight(
        gpu, &x, &y, &d_w, None, 1, accumulate,
    ));
    assert!(msg.contains("accumulate"), "{msg}");
    let saved = zeros(gpu, &[4]);
    let from_saved = Conv2dOptions {
        saved_input: Some(&saved),
        ..Default::default()
    };
    let msg = err(conv2d::backward_input(gpu, &y, &w, &x, 1, from_saved));
    assert!(msg.contains("saved input"), "{msg}");
    let msg = conv2d::backward_bias(gpu, &y, &zeros(gpu, &[5]))
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        msg.contains("d_b") && msg.contains("[4]") && msg.contains("[5]"),
        "{msg}"
    );
}

/// 1×1 convolutions whose planes and channel counts are whole vec4s run on the matmul kernels (see
/// select::conv2d): the forward with its per-channel bias and the backward input with and without
/// accumulation, on every matmul variant the adapter has (the tiled one is what real GPUs take), against the
/// same reference and bounds as the convolution kernels.
#[test]
fn one_by_one_convolutions_match_reference_on_every_matmul_variant() {
    use diffuse::kernels::matmul::{self, MatmulOptions, Variant};
    let gpu = gpu();
    let mut variants = vec![Variant::Tiled, Variant::RegisterBlocked];
    if diffuse::kernels::select::matmul_subgroup_available(gpu) {
        variants.push(Variant::RegisterBlockedSubgroup);
    }
    // Batch 1, a plane of one vec4, channel counts past the 32-row block, a plane past the 128-column block.
    for s in [
        shape(1, 4, 4, 1, 4, 1, 1),
        shape(3, 8, 36, 2, 6, 1, 1),
        shape(2, 36, 12, 12, 12, 1, 1),
    ] {
        let d = data(&s, 7);
        let hw = s.h * s.w;
        let fwd = reference::forward(&s, &to_f64(&d.x), &to_f64(&d.w), Some(&to_f64(&d.b)));
        let fwd_mag = reference::forward(
            &s,
            &abs(&to_f64(&d.x)),
            &abs(&to_f64(&d.w)),
            Some(&abs(&to_f64(&d.b))),
        );
        let bwd = reference::backward_input(&s, &to_f64(&d.d_y), &to_f64(&d.w));
        let bwd_mag = reference::backward_input(&s, &abs(&to_f64(&d.d_y)), &abs(&to_f64(&d.w)));
        let old = uniform(s.x_len(), 98);
        let (x, w, b, d_y) = (
            tensor(gpu, &x_shape(&s), &d.x),
            tensor(gpu, &w_shape(&s), &d.w),
            tensor(gpu, &[s.co], &d.b),
            tensor(gpu, &y_shape(&s), &d.d_y),
        );
        for variant in &variants {
            let case = format!("{s:?} {variant:?}");
            let opts = |accumulate| MatmulOptions {
                accumulate,
                variant: *variant,
                ..Default::default()
            };
            let y = tensor(gpu, &y_shape(&s), &vec![f32::NAN; s.y_len()]);
            let dims = [s.n, s.ci, s.co, hw];
            gpu.run([
                &matmul::conv1x1(gpu, &w, &x, Some(&b), &y, dims, false, opts(false)).unwrap(),
            ])
            .unwrap();
            assert_close(&case, &y.read_f32(gpu).unwrap(), &fwd, |i| {
                gamma(s.ci + 1) * fwd_mag[i]
            });
            let dims = [s.n, s.co, s.ci, hw];
            let d_x = tensor(gpu, &x_shape(&s), &vec![f32::NAN; s.x_len()]);
            gpu.run([
                &matmul::conv1x1(gpu, &w, &d_y, None, &d_x, dims, true, opts(false)).unwrap(),
            ])
            .unwrap();
            assert_close(&case, &d_x.read_f32(gpu).unwrap(), &bwd, |i| {
                gamma(s.co) * bwd_mag[i]
            });
            let d_x = tensor(gpu, &x_shape(&s), &old);
            gpu.run([&matmul::conv1x1(gpu, &w, &d_y, None, &d_x, dims, true, opts(true)).unwrap()])
                .unwrap();
            let want: Vec<f64> = bwd.iter().zip(&old).map(|(g, &o)| g + o as f64).collect();
            assert_close(
                &format!("{case} accumulate"),
                &d_x.read_f32(gpu).unwrap(),
                &want,
                |i| gamma(s.co + 1) * (bwd_mag[i] + old[i].abs() as f64),
            );
        }
    }
}

/// The weight gradient from the packed copy of x that the forward kept (Conv2dOptions::saved_input) equals the one
/// that packs x itself, bit for bit: the same kernels read the same packed values. Where the forward packs
/// nothing (a 1×1 convolution on the matmul kernels) there is no saved copy and x is read as usual.
#[test]
fn the_weight_gradient_from_the_forwards_saved_input_matches() {
    let gpu = gpu();
    for s in cases() {
        let d = data(&s, 9);
        let (x, w, b, d_y) = (
            tensor(gpu, &x_shape(&s), &d.x),
            tensor(gpu, &w_shape(&s), &d.w),
            tensor(gpu, &[s.co], &d.b),
            tensor(gpu, &y_shape(&s), &d.d_y),
        );
        let saved = conv2d::saved_input_len(gpu, Path::Auto, &x_shape(&s), &w, s.stride)
            .unwrap()
            .map(|len| zeros(gpu, &[len]));
        assert!(
            s.k == 1 || saved.is_some(),
            "{s:?}: a 3×3 forward packs its input"
        );
        let y = zeros(gpu, &y_shape(&s));
        let (d_w, d_b) = (zeros(gpu, &w_shape(&s)), zeros(gpu, &[s.co]));
        let (d_w2, d_b2) = (zeros(gpu, &w_shape(&s)), zeros(gpu, &[s.co]));
        let from_saved = Conv2dOptions {
            saved_input: saved.as_ref(),
            ..Default::default()
        };
        let mut dispatches =
            conv2d::forward(gpu, &x, &w, Some(&b), &y, s.stride, from_saved).unwrap();
        dispatches.extend(
            conv2d::backward_weight(gpu, &x, &d_y, &d_w, Some(&d_b), s.stride, from_saved).unwrap(),
        );
        let auto = Conv2dOptions::default();
        dispatches.extend(
            conv2d::backward_weight(gpu, &x, &d_y, &d_w2, Some(&d_b2), s.stride, auto).unwrap(),
        );
        gpu.run(&dispatches).unwrap();
        let case = format!("{s:?}");
        assert_eq!(
            d_w.read_f32(gpu).unwrap(),
            d_w2.read_f32(gpu).unwrap(),
            "{case}"
        );
        assert_eq!(
            d_b.read_f32(gpu).unwrap(),
            d_b2.read_f32(gpu).unwrap(),
            "{case}"
        );
        // The forward itself is unchanged by keeping its packed input.
        let want = reference::forward(&s, &to_f64(&d.x), &to_f64(&d.w), Some(&to_f64(&d.b)));
        let mag = reference::forward(
            &s,
            &abs(&to_f64(&d.x)),
            &abs(&to_f64(&d.w)),
            Some(&abs(&to_f64(&d.b))),
        );
        assert_close(&case, &y.read_f32(gpu).unwrap(), &want, |i| {
            gamma(s.ci * s.k * s.k + 1) * mag[i]
        });
    }
}

#[test]
fn winograd_is_taken_only_where_its_scratch_fits_one_binding() {
    let gpu = gpu();
    let w = zeros(gpu, &[128, 128, 3, 3]);
    // 36 positions × 128 channels × 1024·16·16 tiles × 4 bytes = 4.8 GB: past any adapter's storage binding, so
    // even the forced path falls back to the direct kernels instead of failing to allocate.
    let huge = [1024, 128, 64, 64];
    let small = [2, 128, 8, 8];
    for pass in [
        ConvPass::Forward,
        ConvPass::BackwardInput,
        ConvPass::BackwardWeight,
    ] {
        let winograd = |path, x: &[usize], stride| {
            conv2d::choice(gpu, path, pass, x, &w, stride).unwrap() == ConvKernel::Winograd
        };
        assert!(!winograd(Path::Winograd, &huge, 1));
        assert!(winograd(Path::Winograd, &small, 1));
        assert!(!winograd(Path::Portable, &small, 1));
        assert!(!winograd(Path::Winograd, &small, 2));
    }
}

/// The implicit GEMM forward's fused epilogue, y = conv(x, w) + b + e[n, o] + r: the reference plus the two added
/// tensors, within γ_k · Σ|terms| with k = Ci·k² + 3 (the products, then the bias, e and r each one more addition).
/// Paths that do not fuse refuse the options and say where they are taken.
#[test]
fn the_forward_adds_a_channel_bias_and_a_residual_in_its_epilogue() {
    let gpu = gpu();
    for s in [
        shape(1, 3, 5, 5, 7, 3, 1),
        shape(2, 5, 3, 7, 7, 3, 2),
        shape(3, 6, 70, 4, 5, 1, 1), // Co past one 64-row tile
    ] {
        let d = data(&s, 31);
        let (e, r) = (uniform(s.n * s.co, 32), uniform(s.y_len(), 33));
        let (x64, w64, b64) = (to_f64(&d.x), to_f64(&d.w), to_f64(&d.b));
        let conv = reference::forward(&s, &x64, &w64, Some(&b64));
        let mag = reference::forward(&s, &abs(&x64), &abs(&w64), Some(&abs(&b64)));
        let plane = s.ho() * s.wo();
        let per_image = |i: usize| e[i / plane] as f64; // e[n, o] for element i of y
        let want: Vec<f64> = (0..s.y_len())
            .map(|i| conv[i] + per_image(i) + r[i] as f64)
            .collect();
        let tol = gamma(s.ci * s.k * s.k + 3);
        let (x, w, b) = (
            tensor(gpu, &x_shape(&s), &d.x),
            tensor(gpu, &w_shape(&s), &d.w),
            tensor(gpu, &[s.co], &d.b),
        );
        let (e_t, r_t) = (tensor(gpu, &[s.n, s.co], &e), tensor(gpu, &y_shape(&s), &r));
        let y = tensor(gpu, &y_shape(&s), &vec![f32::NAN; s.y_len()]);
        let fused = Conv2dOptions {
            channel_bias: Some(&e_t),
            residual: Some(&r_t),
            ..on(Path::Gemm)
        };
        assert!(conv2d::fuses_epilogue(gpu, Path::Gemm, &x_shape(&s), &w, s.stride).unwrap());
        let dispatches = conv2d::forward(gpu, &x, &w, Some(&b), &y, s.stride, fused).unwrap();
        assert_eq!(
            dispatches.len(),
            1,
            "{s:?}: one dispatch, no packing, no epilogue pass"
        );
        gpu.run(&dispatches).unwrap();
        assert_close(&format!("{s:?}"), &y.read_f32(gpu).unwrap(), &want, |i| {
            tol * (mag[i] + per_image(i).abs() + r[i].abs() as f64)
        });

        assert!(!conv2d::fuses_epilogue(gpu, Path::Portable, &x_shape(&s), &w, s.stride).unwrap());
        let portable = Conv2dOptions {
            residual: Some(&r_t),
            ..on(Path::Portable)
        };
        let Err(err) = conv2d::forward(gpu, &x, &w, Some(&b), &y, s.stride, portable) else {
            panic!("{s:?}: the portable path took a fused epilogue");
        };
        assert!(err.to_string().contains("fuses_epilogue"), "{err}");
    }
}
