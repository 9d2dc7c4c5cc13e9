//! The U-Net on the GPU against the independent f64 reference (src/reference/unet.rs), and its backward pass
//! against finite differences of that reference, on a tiny configuration that still has every kind of layer:
//! two levels, a channel change (1×1 skip convs), attention with 2 heads, class conditioning, odd batch.
//!
//! Tolerance. Along the deepest path the forward chains about 40 reductions, the longest of k = 288 terms (a 3×3
//! conv over 32 concatenated channels); GroupNorm renormalises after each block, so first-order f32 errors add up
//! relative to the activations' scale: |Δ| ≤ 40·γ₂₈₈·max|y| (γ as in reference::gamma). The gradients are held to
//! the same bound relative to Σ|∂L/∂p_i·v_i| over the probed direction.
//!
//! A second, wide configuration (64 base channels, as the medium preset) runs the route CPU adapters take for the
//! presets: its 3×3 stride-1 convolutions go through Winograd's F(4×4, 3×3), all sharing the GPU's scratch
//! workspace. Its bounds are derived at `wide_bound`.

use crate::common;

use common::{gpu, gpu_path, uniform};
use diffuse::gpu::{Dispatch, Gpu, Tensor};
use diffuse::kernels::random;
use diffuse::kernels::select::ConvKernel;
use diffuse::model::unet::{DropoutDraw, Net};
use diffuse::model::{Conventions, ParamBuffers, ParamLayout, UNetConfig};
use diffuse::reference::{gamma, to_f64, unet as reference};

fn tiny() -> UNetConfig {
    common::tiny_unet()
}

/// The default initialisation, with the zero-initialised layers given small random values so that every layer
/// contributes to the output (and to the gradient check).
fn params(config: &UNetConfig) -> Vec<f32> {
    let layout = ParamLayout::new(config);
    let mut flat = layout.init(7);
    let noise = uniform(layout.padded_len, 99);
    for p in &layout.params {
        if flat[p.offset..p.offset + p.len()].iter().all(|&v| v == 0.0) {
            for i in p.offset..p.offset + p.len() {
                flat[i] = 0.2 * noise[i];
            }
        }
    }
    flat
}

const BATCH: usize = 3;
const TIMESTEPS: [u32; BATCH] = [0, 417, 999];
const LABELS: [u32; BATCH] = [2, 0, 3]; // 3 = "no class"

fn bound() -> f64 {
    40.0 * gamma(288)
}

/// The net under test on `gpu`: inference, or training with dropout drawn from (seed, offset).
fn net(gpu: &Gpu, config: &UNetConfig, p: &ParamBuffers, dropout: Option<(u64, u64)>) -> Net {
    match dropout {
        None => Net::new(gpu, config, p, BATCH).unwrap(),
        Some((seed, offset)) => Net::for_training(
            gpu,
            config,
            p,
            BATCH,
            DropoutDraw {
                seed,
                state: random::rng_state(gpu, offset).unwrap(),
            },
        )
        .unwrap(),
    }
}

/// Writes the batch x, `TIMESTEPS` and `LABELS` into the net's inputs.
fn set_inputs(gpu: &Gpu, net: &Net, x: &[f32]) {
    net.input.write_f32(gpu, x).unwrap();
    net.timesteps.write_u32(gpu, &TIMESTEPS).unwrap();
    net.labels
        .as_ref()
        .unwrap()
        .write_u32(gpu, &LABELS)
        .unwrap();
}

/// Dropout of a training net: p = 0.3, a seed and an offset with both words set.
const DROPOUT: Option<(u64, u64)> = Some((0xDEAD_BEEF_0000_0042, 0x0000_0003_0000_0011));

fn with_dropout() -> UNetConfig {
    UNetConfig {
        dropout: 0.3,
        ..tiny()
    }
}

#[test]
fn unet_forward_matches_the_reference_forward() {
    check_forward(gpu(), &tiny(), None);
}

#[test]
fn unet_forward_with_dropout_matches_the_reference_with_the_same_masks() {
    check_forward(gpu(), &with_dropout(), DROPOUT);
}

/// The GPU path (implicit-GEMM convolutions with the time embedding and the residual connection in their
/// epilogues): the same reference, the same bound (each fused addition is one of the reductions counted there).
#[test]
fn unet_forward_on_the_gpu_path_fuses_its_epilogues_and_matches_the_reference() {
    check_forward(gpu_path(), &with_dropout(), DROPOUT);
    // The forward's kernels on each path: the GPU path fuses every residual block's time embedding and every
    // residual connection (of blocks and attention), leaving one Add (the class embedding, a vector).
    let names = |gpu: &Gpu| -> Vec<String> {
        let config = tiny();
        let p = ParamBuffers::upload(gpu, &ParamLayout::new(&config), &params(&config)).unwrap();
        let net = net(gpu, &config, &p, None);
        let forward = net.forward(gpu).unwrap();
        forward.iter().map(|d| d.kernel.name.clone()).collect()
    };
    let count = |names: &[String], kernels: &[&str]| {
        names
            .iter()
            .filter(|n| kernels.contains(&n.as_str()))
            .count()
    };
    const BIAS: [&str; 2] = [
        "elementwise::add_channel_bias",
        "elementwise::add_channel_bias_vec4",
    ];
    const ADD: [&str; 2] = ["elementwise::add_scaled", "elementwise::add_scaled_vec4"];
    let (cpu, gpu_names) = (names(gpu()), names(gpu_path()));
    assert!(
        count(&gpu_names, &["conv2d_gemm::forward"]) > 0,
        "{gpu_names:?}"
    );
    assert_eq!(count(&gpu_names, &BIAS), 0, "{gpu_names:?}");
    assert_eq!(count(&gpu_names, &ADD), 1, "{gpu_names:?}");
    assert!(count(&cpu, &BIAS) > 0 && count(&cpu, &ADD) > 1, "{cpu:?}");
}

#[test]
fn an_inference_net_ignores_dropout() {
    // Net::new is the sampling net: the same output with or without dropout in the configuration.
    let gpu = gpu();
    let flat = params(&tiny());
    let p = ParamBuffers::upload(gpu, &ParamLayout::new(&tiny()), &flat).unwrap();
    let x = uniform(BATCH * 64, 5);
    let run = |config: &UNetConfig| {
        let net = net(gpu, config, &p, None);
        set_inputs(gpu, &net, &x);
        gpu.run(&net.forward(gpu).unwrap()).unwrap();
        net.output().read_f32(gpu).unwrap()
    };
    assert_eq!(run(&tiny()), run(&with_dropout()));
}

fn check_forward(gpu: &Gpu, config: &UNetConfig, dropout: Option<(u64, u64)>) {
    let config = config.clone();
    let flat = params(&config);
    let p = ParamBuffers::upload(gpu, &ParamLayout::new(&config), &flat).unwrap();
    let net = net(gpu, &config, &p, dropout);
    let x = uniform(BATCH * 64, 5);
    set_inputs(gpu, &net, &x);
    gpu.run(&net.forward(gpu).unwrap()).unwrap();
    let got = net.output().read_f32(gpu).unwrap();
    let t: Vec<f64> = TIMESTEPS.iter().map(|&t| t as f64).collect();
    let want = reference::forward_training(
        &config,
        &to_f64(&flat),
        &to_f64(&x),
        &t,
        Some(&LABELS),
        dropout,
    );
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        scale > 1e-3,
        "the output must not be trivially zero ({scale})"
    );
    common::assert_close("unet forward", &got, &want, |_| bound() * scale);
}

/// Ho et al.'s conventions (diffusers' google/ddpm-* configs): the embedding's frequency shift and the
/// downsampling's padding as theirs, and a GroupNorm ε large enough (0.25) that one left at 1e-5 would move the
/// output far past the bound (theirs, 1e-6, is held to diffusers' own output in tests/it/diffusers.rs).
fn ho_conventions() -> UNetConfig {
    UNetConfig {
        conventions: Conventions {
            norm_eps: 0.25,
            freq_shift: 1,
            downsample_padding: 0,
        },
        ..with_dropout()
    }
}

#[test]
fn each_numerical_convention_is_honoured_on_both_paths() {
    // Each convention alone changes the reference's output by far more than the bound, so a net that ignored
    // one would fail its own check below.
    let base = tiny();
    let flat = to_f64(&params(&base));
    let x = to_f64(&uniform(BATCH * 64, 5));
    let t: Vec<f64> = TIMESTEPS.iter().map(|&t| t as f64).collect();
    let out = |c: &UNetConfig| reference::forward(c, &flat, &x, &t, Some(&LABELS));
    let own = out(&base);
    let ho = ho_conventions().conventions;
    let one = [
        Conventions {
            norm_eps: ho.norm_eps,
            ..Conventions::default()
        },
        Conventions {
            freq_shift: 1,
            ..Conventions::default()
        },
        Conventions {
            downsample_padding: 0,
            ..Conventions::default()
        },
    ];
    for conventions in one {
        let config = UNetConfig {
            conventions,
            ..tiny()
        };
        let moved = out(&config)
            .iter()
            .zip(&own)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            moved > 100.0 * bound(),
            "{conventions}: the output moved only {moved:e}"
        );
        check_forward(gpu(), &config, None);
    }
    check_forward(gpu(), &ho_conventions(), DROPOUT);
    check_forward(gpu_path(), &ho_conventions(), DROPOUT);
}

/// Fine-tuning an imported model goes through the shifts' backward as well.
#[test]
fn the_backward_with_ho_conventions_matches_finite_differences_on_both_paths() {
    check_gradients(gpu(), &ho_conventions(), DROPOUT);
    check_gradients(gpu_path(), &ho_conventions(), DROPOUT);
}

#[test]
fn unet_backward_matches_finite_differences_of_the_reference_for_every_parameter() {
    check_gradients(gpu(), &tiny(), None);
}

#[test]
fn unet_backward_with_dropout_matches_finite_differences_with_the_same_masks() {
    check_gradients(gpu(), &with_dropout(), DROPOUT);
}

/// The backward of the GPU path: the fused epilogues' gradients (the time embedding's sum over pixels, the
/// residual's pass-through) and the implicit-GEMM passes, against the same finite differences.
#[test]
fn unet_backward_on_the_gpu_path_matches_finite_differences() {
    check_gradients(gpu_path(), &with_dropout(), DROPOUT);
}

fn check_gradients(gpu: &Gpu, config: &UNetConfig, dropout: Option<(u64, u64)>) {
    let config = config.clone();
    let layout = ParamLayout::new(&config);
    let flat = params(&config);
    let p = ParamBuffers::upload(gpu, &ParamLayout::new(&config), &flat).unwrap();
    let net = net(gpu, &config, &p, dropout);
    let x = uniform(BATCH * 64, 6);
    set_inputs(gpu, &net, &x);
    // L = ⟨output, w⟩, so ∂L/∂output = w.
    let w = uniform(BATCH * 64, 8);
    let d_out = Tensor::from_f32(gpu, &[BATCH, 1, 8, 8], &w).unwrap();
    let mut dispatches = net.forward(gpu).unwrap();
    dispatches.extend(net.backward(gpu, &d_out).unwrap());
    gpu.run(&dispatches).unwrap();
    let grads = net.grads.read_flat(gpu).unwrap();

    let (x64, w64, p64) = (to_f64(&x), to_f64(&w), to_f64(&flat));
    let t: Vec<f64> = TIMESTEPS.iter().map(|&t| t as f64).collect();
    let loss = |params: &[f64]| -> f64 {
        let y = reference::forward_training(&config, params, &x64, &t, Some(&LABELS), dropout);
        y.iter().zip(&w64).map(|(a, b)| a * b).sum()
    };
    // One random direction per parameter tensor, so a wrong or missing gradient in any tensor shows.
    let h = 1e-5;
    let mut failures = Vec::new();
    for (k, spec) in layout.params.iter().enumerate() {
        let v = uniform(spec.len(), 1000 + k as u64);
        let (mut up, mut down) = (p64.clone(), p64.clone());
        for (i, vi) in v.iter().enumerate() {
            up[spec.offset + i] += h * *vi as f64;
            down[spec.offset + i] -= h * *vi as f64;
        }
        let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
        let terms: Vec<f64> = v
            .iter()
            .enumerate()
            .map(|(i, vi)| grads[spec.offset + i] as f64 * *vi as f64)
            .collect();
        let analytic: f64 = terms.iter().sum();
        let magnitude: f64 = terms.iter().map(|t| t.abs()).sum();
        // f64 central differences: truncation O(h²) and rounding ~1e-16/h are far below the f32 bound.
        let tol = bound() * magnitude + 1e-9;
        if (analytic - numeric).abs() > tol {
            failures.push(format!(
                "{}: GPU ⟨∇L, v⟩ = {analytic:e}, finite difference {numeric:e}, bound {tol:e}",
                spec.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} tensors disagree:\n{}",
        failures.len(),
        layout.params.len(),
        failures.join("\n")
    );
}

/// As wide as the medium preset (64 base channels, config.rs) and otherwise tiny: on a CPU adapter
/// select::conv2d sends every 3×3 stride-1 convolution here through Winograd (both channel counts ≥ 64), 17 of
/// them over 4×4 and 8×8 planes and 64 to 256 channels, so that the scratch workspace is shared by passes of
/// several sizes.
fn wide() -> UNetConfig {
    UNetConfig {
        base_channels: 64,
        groups: 16,
        ..tiny()
    }
}

/// The wide net's inputs for batches of up to 2 (the first `batch` of each).
const WIDE_TIMESTEPS: [u32; 2] = [417, 999];
const WIDE_LABELS: [u32; 2] = [0, 3]; // 3 = "no class"

/// The relative bound of the wide net's forward (relative to max|y|) and of its gradients (relative to
/// Σ|∂L/∂p_i·v_i|), by the tiny net's argument with each reduction's own bound summed along the deepest path:
/// - its 17 Winograd convolutions, each within γ_{Ci+25} of F(4×4, 3×3) run on magnitudes (tests/it/conv2d.rs),
///   which is up to 16² = 256 times the 9·Ci products a direct convolution sums (at a tile's far corner:
///   Aᵀ's last row weighs the transformed tile by 1, 1, 8, 8, 1 per direction). Their input channels are
///   5 × 64, 9 × 128, 2 × 192 and 1 × 256, so Σ(Ci + 25) = 2,537: 256·γ_2537.
/// - the path's other sums: two per GroupNorm (20), 15 in its 3 attention blocks, 10 linear layers, 8 direct and
///   1×1 convolutions; 73, say 80, none of more than 768 terms (GroupNorm over 12 channels of 8×8): 80·γ_768.
///
/// That is ~4% of the output's scale: F(4×4, 3×3) trades accuracy for its 4× fewer multiplies. The gradients
/// carry the forward's errors and those of the backward through the same reductions: the backward input of each
/// Winograd convolution sums its Co ≤ 128 channels (fewer than the forward's Ci), its weight gradient at most 8
/// tiles through transforms that amplify at most 305-fold on 4×4 and 8×8 planes (305·γ_32 ≪ 256·γ_2537); so
/// twice the forward's bound.
fn wide_bound() -> f64 {
    256.0 * gamma(2537) + 80.0 * gamma(768)
}

/// The parameters as `Net` takes them on the GPU: the one place to change if that type changes.
fn gpu_params(flat: &[f32]) -> ParamBuffers {
    ParamBuffers::upload(gpu(), &ParamLayout::new(&wide()), flat).unwrap()
}

/// The wide net on `p` with a batch of x [batch, 1, 8, 8] written in.
fn wide_net(p: &ParamBuffers, batch: usize, x: &[f32]) -> Net {
    let gpu = gpu();
    let net = Net::new(gpu, &wide(), p, batch).unwrap();
    net.input.write_f32(gpu, x).unwrap();
    net.timesteps
        .write_u32(gpu, &WIDE_TIMESTEPS[..batch])
        .unwrap();
    net.labels
        .as_ref()
        .unwrap()
        .write_u32(gpu, &WIDE_LABELS[..batch])
        .unwrap();
    net
}

/// Checks that `dispatches` (of a `pass`) took Winograd exactly where select::conv2d's `Auto` does: on CPU
/// adapters (the labels are the choices the wrappers recorded).
fn assert_winograd_taken_on_cpu_adapters(pass: &str, dispatches: &[Dispatch]) {
    let winograd = dispatches
        .iter()
        .filter(|d| d.choice == Some(ConvKernel::Winograd.name()))
        .count();
    let cpu = gpu().info.device_type == wgpu::DeviceType::Cpu;
    assert_eq!(
        winograd > 0,
        cpu,
        "{pass}: {winograd} Winograd dispatches on a {:?} adapter",
        gpu().info.device_type
    );
}

/// The reference output for a batch of x [batch, 1, 8, 8].
fn wide_reference(params: &[f64], x: &[f32]) -> Vec<f64> {
    let batch = x.len() / 64;
    let t: Vec<f64> = WIDE_TIMESTEPS[..batch].iter().map(|&t| t as f64).collect();
    reference::forward(&wide(), params, &to_f64(x), &t, Some(&WIDE_LABELS[..batch]))
}

#[test]
fn a_wide_unet_forward_takes_winograd_and_matches_the_reference() {
    let gpu = gpu();
    let flat = params(&wide());
    let p = gpu_params(&flat);
    let x = uniform(2 * 64, 5); // batch 2
    let net = wide_net(&p, 2, &x);
    let forward = net.forward(gpu).unwrap();
    assert_winograd_taken_on_cpu_adapters("forward", &forward);
    gpu.run(&forward).unwrap();
    let got = net.output().read_f32(gpu).unwrap();
    let want = wide_reference(&to_f64(&flat), &x);
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        scale > 1e-3,
        "the output must not be trivially zero ({scale})"
    );
    common::assert_close("wide unet forward", &got, &want, |_| wide_bound() * scale);
}

/// Directions of the wide net's gradient check: a reference forward of one image costs ~0.1 s here, so instead
/// of one direction per tensor (as for the tiny net) 24 directions share the 129 tensors round-robin, 5 or 6
/// each: the fewer terms share a direction, the smaller an error in one of them its bound lets pass.
const WIDE_DIRECTIONS: usize = 24;

#[test]
fn a_wide_unet_backward_takes_winograd_and_matches_finite_differences() {
    let gpu = gpu();
    let layout = ParamLayout::new(&wide());
    let flat = params(&wide());
    let p = gpu_params(&flat);
    // Batch 1: the finite differences take two reference forwards per direction, and one image affords twice
    // the directions of two (the forward test runs batch 2).
    let x = uniform(64, 6);
    let net = wide_net(&p, 1, &x);
    // L = ⟨output, w⟩, so ∂L/∂output = w.
    let w = uniform(64, 8);
    let d_out = Tensor::from_f32(gpu, &[1, 1, 8, 8], &w).unwrap();
    let forward = net.forward(gpu).unwrap();
    let backward = net.backward(gpu, &d_out).unwrap();
    assert_winograd_taken_on_cpu_adapters("backward", &backward);
    gpu.run(forward.iter().chain(&backward)).unwrap();
    let grads = net.grads.read_flat(gpu).unwrap();

    let (w64, p64) = (to_f64(&w), to_f64(&flat));
    let loss = |params: &[f64]| -> f64 {
        let y = wide_reference(params, &x);
        y.iter().zip(&w64).map(|(a, b)| a * b).sum()
    };
    // Each direction takes one random entry of every WIDE_DIRECTIONS-th tensor. One entry per tensor, not a dense
    // vector: the bound is relative to Σ|∂L/∂p_i·v_i|, which over n random-signed terms outgrows |⟨∇L, v⟩| by
    // ~√n, so a dense direction over 10⁵ entries would let errors far past the gradient itself pass.
    let h = 1e-5;
    let mut failures = Vec::new();
    for d in 0..WIDE_DIRECTIONS {
        let (mut up, mut down) = (p64.clone(), p64.clone());
        let (mut analytic, mut magnitude, mut names) = (0.0, 0.0, Vec::new());
        for (k, spec) in layout
            .params
            .iter()
            .enumerate()
            .skip(d)
            .step_by(WIDE_DIRECTIONS)
        {
            let r = uniform(2, 2000 + k as u64);
            let (pick, vi) = (r[0] as f64, r[1]);
            let i = spec.offset + ((pick + 1.0) / 2.0 * spec.len() as f64) as usize;
            up[i] += h * vi as f64;
            down[i] -= h * vi as f64;
            let term = grads[i] as f64 * vi as f64;
            analytic += term;
            magnitude += term.abs();
            names.push(spec.name.as_str());
        }
        let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
        // f64 central differences: truncation O(h²) and rounding ~1e-16/h are far below the f32 bound.
        let tol = 2.0 * wide_bound() * magnitude + 1e-9;
        if (analytic - numeric).abs() > tol {
            failures.push(format!(
                "direction {d} ({}): GPU ⟨∇L, v⟩ = {analytic:e}, finite difference {numeric:e}, bound {tol:e}",
                names.join(", ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {WIDE_DIRECTIONS} directions disagree:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// ∂L/∂input by `Net::backward_to_input` (L = ⟨output, w⟩, so the vector–Jacobian product wᵀ·∂F/∂x) against
/// central differences of the f64 reference along one random direction per image, with check_gradients' bound.
fn check_input_gradient(gpu: &Gpu) {
    let config = tiny();
    let flat = params(&config);
    let p = ParamBuffers::upload(gpu, &ParamLayout::new(&config), &flat).unwrap();
    let net = net(gpu, &config, &p, None);
    let x = uniform(BATCH * 64, 16);
    set_inputs(gpu, &net, &x);
    let w = uniform(BATCH * 64, 17);
    let d_out = Tensor::from_f32(gpu, &[BATCH, 1, 8, 8], &w).unwrap();
    let mut dispatches = net.forward(gpu).unwrap();
    let (backward, d_input) = net.backward_to_input(gpu, &d_out).unwrap();
    dispatches.extend(backward);
    gpu.run(&dispatches).unwrap();
    let d_x = d_input.read_f32(gpu).unwrap();
    assert_eq!(d_input.shape(), net.input.shape());

    let (x64, w64, p64) = (to_f64(&x), to_f64(&w), to_f64(&flat));
    let t: Vec<f64> = TIMESTEPS.iter().map(|&t| t as f64).collect();
    let loss = |x: &[f64]| -> f64 {
        let y = reference::forward_training(&config, &p64, x, &t, Some(&LABELS), None);
        y.iter().zip(&w64).map(|(a, b)| a * b).sum()
    };
    let h = 1e-5;
    for image in 0..BATCH {
        let v = uniform(64, 200 + image as u64);
        let (mut up, mut down) = (x64.clone(), x64.clone());
        for (i, vi) in v.iter().enumerate() {
            up[image * 64 + i] += h * *vi as f64;
            down[image * 64 + i] -= h * *vi as f64;
        }
        let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
        let terms: Vec<f64> = (0..64)
            .map(|i| d_x[image * 64 + i] as f64 * v[i] as f64)
            .collect();
        let analytic: f64 = terms.iter().sum();
        let tol = bound() * terms.iter().map(|t| t.abs()).sum::<f64>() + 1e-9;
        assert!(
            (analytic - numeric).abs() <= tol,
            "image {image}: GPU ⟨∂L/∂x, v⟩ = {analytic:e}, finite difference {numeric:e}, bound {tol:e}"
        );
        assert!(
            analytic.abs() > 10.0 * tol,
            "image {image}: a vanishing gradient proves nothing"
        );
    }
}

#[test]
fn the_input_gradient_matches_finite_differences_on_both_paths() {
    check_input_gradient(gpu());
    check_input_gradient(common::gpu_path());
}

#[test]
fn hutchinson_divergence_through_the_input_gradient_is_unbiased() {
    // The exact likelihood's divergence estimator: for probes v with E[vvᵀ] = I (Rademacher ±1), vᵀ·(∂F/∂x)·v has
    // mean tr(∂F/∂x). 256 copies of one image, each with its own probe, in one forward and one backward
    // (`backward_to_input` with d_output = v); their mean must lie within 5 standard errors (estimated from the
    // same 256) of the trace computed in f64 by central differences of the reference, one per input element (a
    // false alarm < 10⁻⁵ for a correct estimator; f32 rounding is far below the SE).
    let gpu = gpu();
    let config = tiny();
    let flat = params(&config);
    let p = ParamBuffers::upload(gpu, &ParamLayout::new(&config), &flat).unwrap();
    let copies = 256;
    let net = Net::new(gpu, &config, &p, copies).unwrap();
    let x = uniform(64, 31);
    net.input.write_f32(gpu, &x.repeat(copies)).unwrap();
    net.timesteps.write_u32(gpu, &vec![417; copies]).unwrap();
    net.labels
        .as_ref()
        .unwrap()
        .write_u32(gpu, &vec![1; copies])
        .unwrap();
    let probes: Vec<f32> = uniform(copies * 64, 32)
        .iter()
        .map(|&u| if u < 0.0 { -1.0 } else { 1.0 })
        .collect();
    let v = Tensor::from_f32(gpu, &[copies, 1, 8, 8], &probes).unwrap();
    let mut dispatches = net.forward(gpu).unwrap();
    let (backward, d_input) = net.backward_to_input(gpu, &v).unwrap();
    dispatches.extend(backward);
    gpu.run(&dispatches).unwrap();
    let vjp = d_input.read_f32(gpu).unwrap();
    let estimates: Vec<f64> = (0..copies)
        .map(|k| {
            (0..64)
                .map(|i| (vjp[k * 64 + i] * probes[k * 64 + i]) as f64)
                .sum()
        })
        .collect();
    let n = copies as f64;
    let mean = estimates.iter().sum::<f64>() / n;
    let se = (estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();

    let (x64, p64) = (to_f64(&x), to_f64(&flat));
    let output =
        |x: &[f64]| reference::forward_training(&config, &p64, x, &[417.0], Some(&[1]), None);
    let h = 1e-5;
    let trace: f64 = (0..64)
        .map(|i| {
            let (mut up, mut down) = (x64.clone(), x64.clone());
            up[i] += h;
            down[i] -= h;
            (output(&up)[i] - output(&down)[i]) / (2.0 * h)
        })
        .sum();
    assert!(
        (mean - trace).abs() <= 5.0 * se && se > 0.0,
        "Hutchinson mean {mean} vs the exact divergence {trace} (SE {se:e})"
    );
    // Each estimate is the network's own quadratic form: vᵀ·(∂F/∂x)·v against the f64 directional difference
    // vᵀ·(F(x + hv) − F(x − hv))/2h, for 32 of the probes (so a wrong product fails even where the statistical
    // check above cannot tell, the trace being within a few SE of 0), with check_gradients' bound.
    for k in 0..32 {
        let probe = &probes[k * 64..(k + 1) * 64];
        let up: Vec<f64> = x64
            .iter()
            .zip(probe)
            .map(|(x, v)| x + h * *v as f64)
            .collect();
        let down: Vec<f64> = x64
            .iter()
            .zip(probe)
            .map(|(x, v)| x - h * *v as f64)
            .collect();
        let (f_up, f_down) = (output(&up), output(&down));
        let numeric: f64 = (0..64)
            .map(|i| probe[i] as f64 * (f_up[i] - f_down[i]) / (2.0 * h))
            .sum();
        let terms = (0..64).map(|i| (vjp[k * 64 + i] * probe[i]) as f64);
        let tol = bound() * terms.map(f64::abs).sum::<f64>() + 1e-9;
        assert!(
            (estimates[k] - numeric).abs() <= tol,
            "probe {k}: GPU vᵀJv = {:e}, finite difference {numeric:e}, bound {tol:e}",
            estimates[k]
        );
    }
}
