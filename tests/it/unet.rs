//! The U-Net on the GPU against the independent f64 reference (src/reference/unet.rs), and its backward pass
//! against finite differences of that reference, on a tiny configuration that still has every kind of layer:
//! two levels, a channel change (1×1 skip convs), attention with 2 heads, class conditioning, odd batch.
//!
//! Tolerance. Along the deepest path the forward chains about 40 reductions, the longest of k = 288 terms (a 3×3
//! conv over 32 concatenated channels); GroupNorm renormalises after each block, so first-order f32 errors add up
//! relative to the activations' scale: |Δ| ≤ 40·γ₂₈₈·max|y| (γ as in reference::gamma). The gradients are held to
//! the same bound relative to Σ|∂L/∂p_i·v_i| over the probed direction.

use crate::common;

use common::{gpu, uniform};
use diffuse::gpu::Tensor;
use diffuse::kernels::random;
use diffuse::model::unet::{DropoutDraw, Net};
use diffuse::model::{ParamBuffers, ParamLayout, UNetConfig};
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

/// The net under test: inference, or training with dropout drawn from (seed, offset).
fn net(config: &UNetConfig, p: &ParamBuffers, dropout: Option<(u64, u64)>) -> Net {
    let gpu = gpu();
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
fn set_inputs(net: &Net, x: &[f32]) {
    let gpu = gpu();
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
    check_forward(&tiny(), None);
}

#[test]
fn unet_forward_with_dropout_matches_the_reference_with_the_same_masks() {
    check_forward(&with_dropout(), DROPOUT);
}

#[test]
fn an_inference_net_ignores_dropout() {
    // Net::new is the sampling net: the same output with or without dropout in the configuration.
    let gpu = gpu();
    let flat = params(&tiny());
    let p = ParamBuffers::upload(gpu, &ParamLayout::new(&tiny()), &flat).unwrap();
    let x = uniform(BATCH * 64, 5);
    let run = |config: &UNetConfig| {
        let net = net(config, &p, None);
        set_inputs(&net, &x);
        gpu.run(&net.forward(gpu).unwrap()).unwrap();
        net.output().read_f32(gpu).unwrap()
    };
    assert_eq!(run(&tiny()), run(&with_dropout()));
}

fn check_forward(config: &UNetConfig, dropout: Option<(u64, u64)>) {
    let gpu = gpu();
    let config = config.clone();
    let flat = params(&config);
    let p = ParamBuffers::upload(gpu, &ParamLayout::new(&config), &flat).unwrap();
    let net = net(&config, &p, dropout);
    let x = uniform(BATCH * 64, 5);
    set_inputs(&net, &x);
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

#[test]
fn unet_backward_matches_finite_differences_of_the_reference_for_every_parameter() {
    check_gradients(&tiny(), None);
}

#[test]
fn unet_backward_with_dropout_matches_finite_differences_with_the_same_masks() {
    check_gradients(&with_dropout(), DROPOUT);
}

fn check_gradients(config: &UNetConfig, dropout: Option<(u64, u64)>) {
    let gpu = gpu();
    let config = config.clone();
    let layout = ParamLayout::new(&config);
    let flat = params(&config);
    let p = ParamBuffers::upload(gpu, &ParamLayout::new(&config), &flat).unwrap();
    let net = net(&config, &p, dropout);
    let x = uniform(BATCH * 64, 6);
    set_inputs(&net, &x);
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
