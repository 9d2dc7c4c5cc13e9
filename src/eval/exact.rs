//! `diffuse eval --exact`: the log-likelihood of a trained model through its probability-flow ODE
//! (src/diffusion/likelihood.rs), for every objective (DDPM models through the flow of their VP levels, the network
//! conditioned on the fractional timestep of each σ̃). The network on the GPU gives ε̂ and, through its input
//! gradient (`Net::backward_to_input`), the Skilling–Hutchinson divergence vᵀ·(∂ε̂/∂x̃)·v with one Rademacher probe
//! v per image, fixed for the solve (score_sde's choice: the ODE's right-hand side stays smooth for the solver).
//!
//! Pixels are dequantised uniformly: byte b becomes x = (b + u)/127.5 − 1, u ~ U[0, 1), the bin of width 1/127.5
//! above the training value b/127.5 − 1; then ln P(b) ≥ E_u[ln p(x)] − D·ln 127.5, so
//! bits/dim = −ln p(x)/(D·ln 2) + log₂ 127.5 bounds the discrete data's (the dequantised bound score_sde reports).

use crate::data::Dataset;
use crate::diffusion::likelihood::{log_density, Flow, Solve, Tolerance};
use crate::diffusion::process::{Objective, Trained};
use crate::diffusion::samplers::{sigma_to_t, NoiseLevel};
use crate::diffusion::Schedule;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::model::unet::Net;
use crate::model::{ParamBuffers, SplitMix64, UNetConfig};

/// What `diffuse eval --exact` evaluates and how.
#[derive(Clone, Copy, Debug)]
pub struct ExactOptions {
    /// The first this many images of the dataset.
    pub images: usize,
    /// Images solved together (one ODE system, one network batch).
    pub batch: usize,
    pub tol: Tolerance,
    /// Condition a class-conditional model on each image's label (else on "no class").
    pub use_labels: bool,
    /// Seeds the dequantisation and the probes.
    pub seed: u64,
}

/// The estimate: bits/dim per image, their mean and its standard error, and what the solves took.
#[derive(Clone, Debug)]
pub struct ExactEstimate {
    pub per_image: Vec<f64>,
    pub bits_per_dim: f64,
    pub standard_error: f64,
    pub evaluations: usize,
    pub steps: usize,
}

/// How the network is read at σ̃: the level's α, its conditioning, the input scale s, and ε̂ = e_x·x + e_f·F(s·x).
struct Reading {
    alpha: f64,
    cond: f32,
    input_scale: f64,
    e_x: f64,
    e_f: f64,
}

/// The trained model as the flow sees it: its range of σ̃, its α(σ̃), its prior and each σ̃'s [`Reading`].
pub struct ModelFlow {
    trained: Trained,
    schedule: Option<Schedule>,
    /// σ̃ of the data's level and of the prior's.
    pub lo: f64,
    pub hi: f64,
}

impl ModelFlow {
    /// The flow of a model trained as `trained` (DDPM: on `schedule`).
    pub fn new(trained: Trained, schedule: Option<Schedule>) -> Result<ModelFlow> {
        let (hi, lo) = match (&trained.objective, &schedule) {
            (Objective::Ddpm, Some(s)) => {
                let ab = &s.alphas_cumprod;
                let ratio = |a: f64| ((1.0 - a) / a).sqrt();
                (ratio(ab[ab.len() - 1]), ratio(ab[0]))
            }
            (Objective::Ddpm, None) => {
                return Err(Error::Usage(
                    "a DDPM model's flow needs its schedule".into(),
                ))
            }
            (objective, _) => objective.ratio_range().expect("a score-based objective"),
        };
        if !(hi.is_finite() && lo > 0.0) {
            return Err(Error::Usage(format!(
                "the exact likelihood needs a finite prior level: this schedule's σ̃ runs from {lo} to {hi} (a \
                 zero-terminal-SNR schedule ends at pure noise, where the flow's prior is not Gaussian at a finite \
                 σ̃)"
            )));
        }
        Ok(ModelFlow {
            trained,
            schedule,
            lo,
            hi,
        })
    }

    /// α at σ̃: VP's 1/√(1 + σ̃²) for DDPM, the process's otherwise.
    pub fn alpha(&self, ratio: f64) -> f64 {
        match self.trained.objective {
            Objective::Ddpm => 1.0 / (1.0 + ratio * ratio).sqrt(),
            objective => objective.level_at_ratio(ratio).alpha,
        }
    }

    /// ln of the prior density of one image: N(0, I) for DDPM, VP and sub-VP, N(0, σ̃_hi²·I) otherwise.
    pub fn prior_logp(&self, x: &[f64]) -> f64 {
        let unit = matches!(self.trained.objective, Objective::Ddpm)
            || self.trained.objective.unit_prior();
        let var = if unit { 1.0 } else { self.hi * self.hi };
        let n = x.len() as f64;
        -0.5 * n * (2.0 * std::f64::consts::PI * var).ln()
            - x.iter().map(|v| v * v).sum::<f64>() / (2.0 * var)
    }

    /// ε̂ at x̃ (flat) and σ̃ from a network given as a function of its input and conditioning: the map
    /// [`NetPass`] applies on the GPU, in f64 (for tests against a reference network).
    pub fn epsilon(
        &self,
        x_tilde: &[f64],
        ratio: f64,
        network: &dyn Fn(&[f64], f64) -> Vec<f64>,
    ) -> Vec<f64> {
        let r = self.reading(ratio);
        let x: Vec<f64> = x_tilde.iter().map(|v| r.alpha * v).collect();
        let input: Vec<f64> = x.iter().map(|v| r.input_scale * v).collect();
        let f = network(&input, r.cond as f64);
        x.iter()
            .zip(&f)
            .map(|(x, f)| r.e_x * x + r.e_f * f)
            .collect()
    }

    fn reading(&self, ratio: f64) -> Reading {
        let alpha = self.alpha(ratio);
        let level = NoiseLevel {
            t: ratio,
            alpha,
            sigma: ratio * alpha,
        };
        let (e_x, e_o) = self.trained.prediction().epsilon_from(&level);
        match (self.trained.objective, &self.schedule) {
            (Objective::Ddpm, Some(schedule)) => Reading {
                alpha,
                cond: sigma_to_t(schedule, ratio) as f32,
                input_scale: 1.0,
                e_x,
                e_f: e_o,
            },
            (objective, _) => {
                let e = objective
                    .evaluation(&level)
                    .expect("a score-based objective");
                Reading {
                    alpha,
                    cond: e.c_noise as f32,
                    input_scale: e.input_scale,
                    e_x: e_x + e_o * e.out_x,
                    e_f: e_o * e.out_f,
                }
            }
        }
    }
}

/// The network on a batch: its recorded forward and input-gradient passes with the batch's probes.
pub struct NetPass {
    net: Net,
    dispatches: Vec<Dispatch>,
    d_input: Tensor,
    probes: Vec<f32>,
}

impl NetPass {
    /// The passes of `network` on `batch` images with `probes` (one per element).
    pub fn new(gpu: &Gpu, network: &Network, probes: Vec<f32>, batch: usize) -> Result<NetPass> {
        let (config, params, labels) = (network.config, network.params, network.labels);
        let net = Net::new(gpu, config, params, batch)?.with_real_noise_level(gpu)?;
        if let (Some(tensor), Some(count)) = (&net.labels, config.num_classes) {
            let null = vec![count as u32; batch];
            tensor.write_u32(gpu, labels.unwrap_or(&null))?;
        }
        let v = Tensor::from_f32(gpu, net.output().shape(), &probes)?;
        let mut dispatches = net.forward(gpu)?;
        let (backward, d_input) = net.backward_to_input(gpu, &v)?;
        dispatches.extend(backward);
        Ok(NetPass {
            net,
            dispatches,
            d_input,
            probes,
        })
    }

    /// (ε̂, div_x̃ ε̂ per image) at x̃ (flat) and σ̃: the flow's right-hand side.
    pub fn evaluate(
        &self,
        gpu: &Gpu,
        flow: &ModelFlow,
        x_tilde: &[f64],
        ratio: f64,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let r = flow.reading(ratio);
        let x: Vec<f64> = x_tilde.iter().map(|v| r.alpha * v).collect();
        let input: Vec<f32> = x.iter().map(|v| (r.input_scale * v) as f32).collect();
        self.net.input.write_f32(gpu, &input)?;
        self.net
            .timesteps
            .write_f32(gpu, &vec![r.cond; self.net.batch])?;
        gpu.run(&self.dispatches)?;
        let (f, vjp) = (
            self.net.output().read_f32(gpu)?,
            self.d_input.read_f32(gpu)?,
        );
        let eps = x
            .iter()
            .zip(&f)
            .map(|(x, f)| r.e_x * x + r.e_f * *f as f64)
            .collect();
        let d = x.len() / self.net.batch;
        let div = (0..self.net.batch)
            .map(|i| {
                let quadratic: f64 = (i * d..(i + 1) * d)
                    .map(|j| self.probes[j] as f64 * vjp[j] as f64)
                    .sum();
                r.alpha * (r.e_x * d as f64 + r.e_f * r.input_scale * quadratic)
            })
            .collect();
        Ok((eps, div))
    }
}

/// A trained network and the labels it is conditioned on (one per image; None: "no class").
pub struct Network<'a> {
    pub config: &'a UNetConfig,
    pub params: &'a ParamBuffers,
    pub labels: Option<&'a [u32]>,
}

/// ln p(x) of a batch of images (x flat, dequantised, in the model's range) by the flow on the GPU, with the
/// Rademacher `probes` (one per element) for the divergence: what [`estimate_exact`] computes per batch.
pub fn batch_log_density(
    gpu: &Gpu,
    network: &Network,
    flow: &ModelFlow,
    x: &[f64],
    probes: Vec<f32>,
    tol: Tolerance,
) -> Result<(Vec<f64>, Solve)> {
    let s = network.config.image_size;
    let d = network.config.in_channels * s * s;
    let batch = x.len() / d;
    let pass = NetPass::new(gpu, network, probes, batch)?;
    let mut model = |x_tilde: &[f64], ratio: f64| pass.evaluate(gpu, flow, x_tilde, ratio);
    let alpha = |ratio: f64| flow.alpha(ratio);
    let prior = |x: &[f64]| flow.prior_logp(x);
    log_density(
        x,
        batch,
        Flow {
            lo: flow.lo,
            hi: flow.hi,
            alpha: &alpha,
            eps_and_divergence: &mut model,
            prior_logp: &prior,
        },
        tol,
    )
}

/// The exact likelihood of the first `options.images` images of `dataset`, in batches; `progress(done)` after each.
pub fn estimate_exact(
    gpu: &Gpu,
    config: &UNetConfig,
    params: &ParamBuffers,
    flow: &ModelFlow,
    dataset: &Dataset,
    options: &ExactOptions,
    progress: &mut dyn FnMut(usize),
) -> Result<ExactEstimate> {
    let images = super::images_to_evaluate(config, dataset, options.images, options.batch)?;
    let labels = super::model_labels(config, dataset, options.use_labels, images)?;
    let d = dataset.image_len();
    let mut rng = SplitMix64::new(options.seed);
    let mut uniform = move || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let (mut per_image, mut evaluations, mut steps) = (Vec::new(), 0, 0);
    for first in (0..images).step_by(options.batch) {
        let batch = options.batch.min(images - first);
        let mut x = Vec::with_capacity(batch * d);
        for i in first..first + batch {
            let bytes = &dataset.pixels[i * d..(i + 1) * d];
            x.extend(bytes.iter().map(|&b| (b as f64 + uniform()) / 127.5 - 1.0));
        }
        let probes: Vec<f32> = (0..batch * d)
            .map(|_| if uniform() < 0.5 { -1.0 } else { 1.0 })
            .collect();
        let network = Network {
            config,
            params,
            labels: labels.as_ref().map(|all| &all[first..first + batch]),
        };
        let (logp, solve) = batch_log_density(gpu, &network, flow, &x, probes, options.tol)?;
        evaluations += solve.evaluations;
        steps += solve.accepted + solve.rejected;
        let offset = 127.5f64.log2();
        per_image.extend(
            logp.iter()
                .map(|l| -l / (d as f64 * std::f64::consts::LN_2) + offset),
        );
        progress(first + batch);
    }
    let (bits_per_dim, standard_error) = super::mean_and_standard_error(&per_image);
    Ok(ExactEstimate {
        per_image,
        bits_per_dim,
        standard_error,
        evaluations,
        steps,
    })
}
