//! The benchmark cases: each kernel family on the shapes the U-Net presets use (`small`/`medium` at 28×28×1 with
//! batch 32; quick mode shrinks the batch so CI can afford it). Inputs are random; only the timing matters here,
//! correctness is the tests' job.

use crate::data::{Dataset, Fit};
use crate::diffusion::samplers::Prediction;
use crate::diffusion::{BetaSchedule, Schedule};
use crate::distributed::Replicas;
use crate::error::Result;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::group_norm::GroupNorm;
use crate::kernels::{
    attention, conv2d, elementwise, embedding, group_norm, loss, matmul, noise, optimizer, random,
};
use crate::model::config::DEFAULT_MAX_PERIOD;
use crate::model::unet::Net;
use crate::model::{forward_flops, ParamBuffers, ParamLayout, UNetConfig};
use crate::optim::AdamConfig;
use crate::sample::spec::{SamplerKind, SamplerSpec};
use crate::sample::{Sampler, UNetDenoiser};
use crate::train::{Placement, TrainSettings, Trainer};

use super::{Case, CaseSpec, WholeRun, Work};
use std::rc::Rc;

/// Whole training steps of each preset as one rank of a data-parallel run (`diffuse bench` under `mpirun`): each
/// rank takes the preset's batch (so the job's batch is that times the ranks, as data-parallel runs are scaled),
/// and the row says what the gradient's all-reduce costs per step and its share of the step.
pub fn distributed(quick: bool, replicas: Rc<dyn Replicas>) -> Vec<CaseSpec> {
    let presets: &[(&'static str, usize)] = if quick {
        &[("tiny", 4)]
    } else {
        &[("small", 32), ("medium", 32), ("rgb64", 8), ("rgb128", 4)]
    };
    let (steps, runs) = if quick { (2, 2) } else { (10, 3) };
    let ranks = replicas.ranks();
    presets
        .iter()
        .map(|&(preset, per_rank)| {
            let replicas = replicas.clone();
            let batch = per_rank * ranks;
            CaseSpec {
                name: "train_allreduce",
                shape: format!("{preset} b{per_rank}×{ranks} ranks {steps} steps"),
                // The RGB presets take minutes per step on a CPU adapter.
                long: preset.starts_with("rgb"),
                build: Box::new(move |gpu| {
                    let config = UNetConfig::preset(preset)?;
                    let mut settings = TrainSettings::new(config.clone());
                    settings.batch = batch;
                    let data = builtin_data(&config)?;
                    let trainer =
                        Trainer::with_replicas(gpu, settings, &data, None, Some(replicas.clone()))?;
                    let trainer = Rc::new(std::cell::RefCell::new(trainer));
                    let stats = trainer.clone();
                    Ok(Case {
                        dispatches: Vec::new(),
                        work: Work::Flops(3.0 * forward_flops(&config) * (batch * steps) as f64),
                        formula: "steps × 3 × forward FLOPs of all ranks, wall clock",
                        items: vec![((batch * steps) as f64, "img"), (steps as f64, "step")],
                        whole_run: Some(training_steps(trainer, steps, runs)),
                        exchange: Some(Box::new(move || {
                            stats.borrow().exchange_stats().unwrap_or_default()
                        })),
                    })
                }),
            }
        })
        .collect()
}

/// `steps` training steps as a run submits them, the last one reporting, timed `runs` times (the host's time is
/// until the last submission; the run ends when the report is read).
fn training_steps(trainer: Rc<std::cell::RefCell<Trainer>>, steps: usize, runs: usize) -> WholeRun {
    WholeRun {
        run: Box::new(move |gpu| {
            let mut trainer = trainer.borrow_mut();
            let start = crate::time::Instant::now();
            for k in 0..steps {
                trainer.step(gpu, k + 1 == steps)?;
            }
            let host = start.elapsed().as_secs_f64();
            trainer.wait_losses(gpu)?;
            Ok(host)
        }),
        runs,
    }
}

fn random(gpu: &Gpu, shape: &[usize], seed: u32) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(2_654_435_761).max(1);
    let data: Vec<f32> = (0..n)
        .map(|_| {
            // xorshift32: any values will do for timing.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        })
        .collect();
    Tensor::from_f32(gpu, shape, &data)
}

fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Tensor> {
    Tensor::zeros(gpu, shape, DType::F32)
}

fn nchw(n: usize, c: usize, h: usize, w: usize) -> String {
    format!("n{n} c{c} {h}x{w}")
}

pub fn all(quick: bool) -> Vec<CaseSpec> {
    let batch = if quick { 4 } else { 32 };
    [
        elementwise(batch),
        products(quick, batch),
        convolutions(batch),
        group_norms(batch),
        attentions(batch),
        diffusion_kernels(batch),
        optimizer(quick),
        training_runs(quick),
        presets(quick),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Pointwise and layout kernels on a U-Net activation.
fn elementwise(batch: usize) -> Vec<CaseSpec> {
    let mut specs = Vec::new();
    let (n, c, h, w) = (batch, 64, 28, 28);
    specs.push(CaseSpec {
        name: "silu_forward",
        shape: nchw(n, c, h, w),
        long: false,
        build: Box::new(move |gpu| {
            let x = random(gpu, &[n, c, h, w], 1)?;
            let y = zeros(gpu, &[n, c, h, w])?;
            Ok(Case {
                exchange: None,
                dispatches: vec![elementwise::silu_forward(gpu, &x, &y)?],
                work: Work::Bytes((2 * x.byte_size()) as f64),
                formula: "read x + write y",
                items: Vec::new(),
                whole_run: None,
            })
        }),
    });
    specs.push(CaseSpec {
        name: "concat_channels",
        shape: format!("n{n} c{c}+{c} {h}x{w}"),
        long: false,
        build: Box::new(move |gpu| {
            let a = random(gpu, &[n, c, h, w], 2)?;
            let b = random(gpu, &[n, c, h, w], 3)?;
            let y = zeros(gpu, &[n, 2 * c, h, w])?;
            Ok(Case {
                exchange: None,
                dispatches: vec![elementwise::concat_channels(gpu, &a, &b, &y)?],
                work: Work::Bytes((2 * y.byte_size()) as f64),
                formula: "read a, b + write y",
                items: Vec::new(),
                whole_run: None,
            })
        }),
    });
    specs
}

/// Matrix products in each layout the backward passes use, and the U-Net's linear layers.
fn products(quick: bool, batch: usize) -> Vec<CaseSpec> {
    let mut specs = Vec::new();
    // Matrix products: the 1024³ figure in each layout the backward passes use, and the U-Net's linear
    // layers (the time-embedding MLP and each block's projection) at the training batch.
    let side = if quick { 128 } else { 1024 };
    for (label, trans_a, trans_b) in [
        ("nn", false, false),
        ("nt", false, true),
        ("tn", true, false),
    ] {
        specs.push(CaseSpec {
            name: "matmul",
            shape: format!("{side}x{side}x{side} {label}"),
            long: false,
            build: Box::new(move |gpu| {
                let a = random(gpu, &[side, side], 21)?;
                let b = random(gpu, &[side, side], 22)?;
                let c = zeros(gpu, &[side, side])?;
                let opts = matmul::MatmulOptions {
                    trans_a,
                    trans_b,
                    ..Default::default()
                };
                Ok(Case {
                    exchange: None,
                    dispatches: vec![matmul::matmul(gpu, &a, &b, &c, opts)?],
                    work: Work::Flops(2.0 * (side * side * side) as f64),
                    formula: "2·M·N·K",
                    items: Vec::new(),
                    whole_run: None,
                })
            }),
        });
    }
    for &(fin, fout) in &[(128usize, 512usize), (512, 512)] {
        specs.push(CaseSpec {
            name: "linear_fwd_bwd",
            shape: format!("n{batch} {fin}→{fout}"),
            long: false,
            build: Box::new(move |gpu| {
                let x = random(gpu, &[batch, fin], 23)?;
                let w = random(gpu, &[fout, fin], 24)?;
                let b = random(gpu, &[fout], 25)?;
                let (y, d_x, d_w, d_b) = (
                    zeros(gpu, &[batch, fout])?,
                    zeros(gpu, &[batch, fin])?,
                    zeros(gpu, &[fout, fin])?,
                    zeros(gpu, &[fout])?,
                );
                let d_y = random(gpu, &[batch, fout], 26)?;
                Ok(Case {
                    exchange: None,
                    dispatches: vec![
                        matmul::linear_forward(gpu, &x, &w, Some(&b), &y)?,
                        matmul::linear_backward_input(gpu, &d_y, &w, &d_x)?,
                        matmul::linear_backward_weight(gpu, &d_y, &x, &d_w)?,
                        matmul::linear_backward_bias(gpu, &d_y, &d_b)?,
                    ],
                    work: Work::Flops(3.0 * 2.0 * (batch * fin * fout) as f64),
                    formula: "3 × 2·N·in·out",
                    items: Vec::new(),
                    whole_run: None,
                })
            }),
        });
    }
    specs
}

/// The U-Net's convolutions, each pass.
fn convolutions(batch: usize) -> Vec<CaseSpec> {
    // The U-Net's shapes (ci → co at h×w, kernel k, stride), each pass with 2·N·Co·Ho·Wo·Ci·k² FLOPs.
    let convs: &[(usize, usize, usize, usize, usize)] = &[
        (64, 64, 28, 3, 1),
        (32, 32, 28, 3, 1),
        (128, 128, 14, 3, 1),
        (128, 128, 7, 3, 1),
        (64, 64, 14, 3, 1),
        (64, 64, 7, 3, 1),
        (64, 64, 28, 3, 2),
        (64, 128, 14, 1, 1),
        (1, 32, 28, 3, 1),
        (32, 1, 28, 3, 1),
    ];
    let mut specs = Vec::new();
    for &(ci, co, hw, k, stride) in convs {
        let ho = hw.div_ceil(stride);
        let flops = (2 * batch * co * ho * ho * ci * k * k) as f64;
        let shape = format!("n{batch} {ci}→{co} {hw}x{hw} k{k} s{stride}");
        let tensors = move |gpu: &Gpu| -> Result<[Tensor; 3]> {
            Ok([
                random(gpu, &[batch, ci, hw, hw], 11)?,
                random(gpu, &[co, ci, k, k], 12)?,
                random(gpu, &[batch, co, ho, ho], 13)?,
            ])
        };
        specs.push(conv_case(
            "conv2d_forward",
            shape.clone(),
            flops,
            move |gpu| {
                let [x, w, y] = tensors(gpu)?;
                let b = random(gpu, &[co], 14)?;
                conv2d::forward(gpu, &x, &w, Some(&b), &y, stride, Default::default())
            },
        ));
        specs.push(conv_case(
            "conv2d_backward_input",
            shape.clone(),
            flops,
            move |gpu| {
                let [d_x, w, d_y] = tensors(gpu)?;
                conv2d::backward_input(gpu, &d_y, &w, &d_x, stride, Default::default())
            },
        ));
        specs.push(conv_case(
            "conv2d_backward_weight",
            shape,
            flops,
            move |gpu| {
                let [x, d_w, d_y] = tensors(gpu)?;
                conv2d::backward_weight(gpu, &x, &d_y, &d_w, None, stride, Default::default())
            },
        ));
    }
    specs
}

/// A convolution pass's case: `record` makes its inputs and records the pass.
fn conv_case(
    name: &'static str,
    shape: String,
    flops: f64,
    record: impl Fn(&Gpu) -> Result<Vec<Dispatch>> + 'static,
) -> CaseSpec {
    CaseSpec {
        name,
        shape,
        long: false,
        build: Box::new(move |gpu| {
            Ok(Case {
                exchange: None,
                dispatches: record(gpu)?,
                work: Work::Flops(flops),
                formula: "2·N·Co·Ho·Wo·Ci·k²",
                items: Vec::new(),
                whole_run: None,
            })
        }),
    }
}

/// GroupNorm + SiLU forward and backward, on the kernels the U-Net takes and the portable ones.
fn group_norms(batch: usize) -> Vec<CaseSpec> {
    let mut specs = Vec::new();
    // GroupNorm fused with SiLU, forward and backward: memory-bound (x read twice, y written; backward reads x and
    // d_y twice and writes d_x). On the kernels the U-Net takes, and on the portable ones for comparison.
    let norm_paths = [
        (group_norm::Path::Auto, ""),
        (group_norm::Path::Portable, " portable"),
    ];
    for &(c, hw, groups) in &[(64usize, 28usize, 16usize), (128, 7, 16)] {
        for (path, label) in norm_paths {
            let shape = [batch, c, hw, hw];
            specs.push(CaseSpec {
                name: "group_norm_silu_fwd_bwd",
                shape: format!("n{batch} c{c} {hw}x{hw} g{groups}{label}"),
                long: false,
                build: Box::new(move |gpu| {
                    let norm = GroupNorm::new(groups).with_silu();
                    let x = random(gpu, &shape, 15)?;
                    let d_y = random(gpu, &shape, 16)?;
                    let (y, d_x) = (zeros(gpu, &shape)?, zeros(gpu, &shape)?);
                    let gamma = random(gpu, &[c], 17)?;
                    let beta = random(gpu, &[c], 18)?;
                    let (d_gamma, d_beta) = (zeros(gpu, &[c])?, zeros(gpu, &[c])?);
                    let (mean, rstd) =
                        (zeros(gpu, &[batch, groups])?, zeros(gpu, &[batch, groups])?);
                    let mut dispatches = vec![group_norm::group_norm_forward_via(
                        path, gpu, &norm, &x, &gamma, &beta, &y, &mean, &rstd,
                    )?];
                    dispatches.extend(group_norm::group_norm_backward_via(
                        path, gpu, &norm, &x, &gamma, &beta, &mean, &rstd, &d_y, &d_x, &d_gamma,
                        &d_beta,
                    )?);
                    Ok(Case {
                        exchange: None,
                        dispatches,
                        work: Work::Bytes((7 * x.byte_size()) as f64),
                        formula: "7 passes over x-sized tensors",
                        items: Vec::new(),
                        whole_run: None,
                    })
                }),
            });
        }
    }
    specs
}

/// Self-attention forward and backward, on the products the U-Net takes and the portable ones.
fn attentions(batch: usize) -> Vec<CaseSpec> {
    let mut specs = Vec::new();
    // Self-attention over the feature map: forward + backward, 2·2·N·L²·C FLOPs forward (QKᵀ and PV), twice that back.
    // On the products the U-Net takes, and on the portable ones for comparison.
    let attention_paths = [
        (attention::Path::Auto, ""),
        (attention::Path::Portable, " portable"),
    ];
    for &(c, hw) in &[(64usize, 7usize), (128, 16)] {
        for (path, label) in attention_paths {
            let n = if hw == 16 { batch.min(8) } else { batch };
            let l = hw * hw;
            specs.push(CaseSpec {
                name: "attention_fwd_bwd",
                shape: format!("n{n} c{c} {hw}x{hw} heads1{label}"),
                long: false,
                build: Box::new(move |gpu| {
                    let qkv = random(gpu, &[n, 3 * c, hw, hw], 19)?;
                    let d_out = random(gpu, &[n, c, hw, hw], 20)?;
                    let (out, d_qkv) = (
                        zeros(gpu, &[n, c, hw, hw])?,
                        zeros(gpu, &[n, 3 * c, hw, hw])?,
                    );
                    let lse = zeros(gpu, &[n, 1, l])?;
                    let mut dispatches =
                        attention::attention_forward_via(path, gpu, &qkv, 1, &out, &lse)?;
                    dispatches.extend(attention::attention_backward_via(
                        path, gpu, &qkv, 1, &out, &lse, &d_out, &d_qkv,
                    )?);
                    Ok(Case {
                        exchange: None,
                        dispatches,
                        work: Work::Flops((12 * n * l * l * c) as f64),
                        formula: "3 × 4·N·L²·C",
                        items: Vec::new(),
                        whole_run: None,
                    })
                }),
            });
        }
    }
    specs
}

/// The diffusion kernels of a training step: the draws, the noising, the loss, the timestep embedding.
fn diffusion_kernels(batch: usize) -> Vec<CaseSpec> {
    let mut specs = Vec::new();
    // The diffusion kernels of a training step: draw t and ε, noise the batch, the loss and its gradient.
    let (n, d) = (batch, 28 * 28);
    specs.push(CaseSpec {
        name: "draw_t_and_noise",
        shape: format!("n{n} d{d} T1000"),
        long: false,
        build: Box::new(move |gpu| {
            let schedule = Schedule::new(BetaSchedule::LINEAR, 1000)?;
            let table = noise::upload_table(gpu, &schedule.noise_table())?;
            let x0 = random(gpu, &[n, d], 4)?;
            let (eps, x_t, target) = (
                zeros(gpu, &[n, d])?,
                zeros(gpu, &[n, d])?,
                zeros(gpu, &[n, d])?,
            );
            let t = Tensor::zeros(gpu, &[n], DType::U32)?;
            let state = random::rng_state(gpu, 0)?;
            Ok(Case {
                exchange: None,
                dispatches: vec![
                    random::fill_uniform_int(gpu, &t, 1000, 7, 0, &state)?,
                    random::fill_normal(gpu, &eps, 7, 1, &state)?,
                    noise::noise_forward(
                        gpu,
                        &x0,
                        &eps,
                        &t,
                        &table,
                        Prediction::Epsilon,
                        &x_t,
                        &target,
                    )?,
                ],
                // ε written, then x0 and ε read, x_t and the target written.
                work: Work::Bytes((5 * x0.byte_size()) as f64),
                formula: "write ε + read x0, ε + write x_t, target",
                items: Vec::new(),
                whole_run: None,
            })
        }),
    });
    specs.push(CaseSpec {
        name: "mse_forward_backward",
        shape: format!("n{n} d{d}"),
        long: false,
        build: Box::new(move |gpu| {
            let pred = random(gpu, &[n, d], 5)?;
            let target = random(gpu, &[n, d], 6)?;
            let (value, d_pred) = (zeros(gpu, &[1])?, zeros(gpu, &[n, d])?);
            let mut dispatches = loss::mse_forward(gpu, &pred, &target, &value)?;
            dispatches.push(loss::mse_backward(gpu, &pred, &target, None, &d_pred)?);
            Ok(Case {
                exchange: None,
                dispatches,
                work: Work::Bytes((5 * pred.byte_size()) as f64),
                formula: "read pred, target twice + write d_pred",
                items: Vec::new(),
                whole_run: None,
            })
        }),
    });
    specs.push(timestep_embedding(batch));
    specs
}

/// The sinusoidal timestep embedding of a batch.
fn timestep_embedding(batch: usize) -> CaseSpec {
    CaseSpec {
        name: "timestep_embedding",
        shape: format!("n{batch} d128"),
        long: false,
        build: Box::new(move |gpu| {
            let t = Tensor::from_u32(
                gpu,
                &[batch],
                &(0..batch as u32).map(|i| i * 31 % 1000).collect::<Vec<_>>(),
            )?;
            let emb = zeros(gpu, &[batch, 128])?;
            Ok(Case {
                exchange: None,
                dispatches: vec![embedding::timestep_embedding(
                    gpu,
                    &t,
                    (DEFAULT_MAX_PERIOD, 0),
                    &emb,
                )?],
                work: Work::Bytes(emb.byte_size() as f64),
                formula: "write emb",
                items: Vec::new(),
                whole_run: None,
            })
        }),
    }
}

/// The optimizer over a whole model's parameters.
fn optimizer(quick: bool) -> Vec<CaseSpec> {
    let mut specs = Vec::new();
    // The optimizer over a whole model's parameters, one flat tensor (medium: 6,469,889; quick: small's 1,112,801).
    let params = if quick { 1_112_801 } else { 6_469_889 };
    specs.push(CaseSpec {
        name: "grad_norm_clip_adamw_ema",
        shape: format!("{params} params"),
        long: false,
        build: Box::new(move |gpu| {
            let p = random(gpu, &[params], 8)?;
            let g = random(gpu, &[params], 9)?;
            let ema = random(gpu, &[params], 10)?;
            let state = optimizer::AdamState::zeros(gpu, &[&[params]])?;
            let hyper = zeros(gpu, &[optimizer::HYPER_LEN])?;
            optimizer::Hyper {
                lr: 1e-4,
                ema_decay: 0.999,
            }
            .write(gpu, &hyper)?;
            let norm = zeros(gpu, &[optimizer::NORM_LEN])?;
            let mut dispatches =
                optimizer::grad_norm(gpu, std::slice::from_ref(&g), Some(1.0), &norm)?;
            dispatches.extend(optimizer::adam_step(
                gpu,
                &AdamConfig::adamw(),
                std::slice::from_ref(&p),
                std::slice::from_ref(&g),
                &state,
                &hyper,
                Some(&norm),
            )?);
            dispatches.push(optimizer::ema_update(gpu, &p, &ema, &hyper)?);
            Ok(Case {
                exchange: None,
                dispatches,
                // norm: read g; Adam: read p, g, m, v, write p, m, v; EMA: read p, ema, write ema.
                work: Work::Bytes((11 * p.byte_size()) as f64),
                formula: "11 f32 streams of the parameter length",
                items: Vec::new(),
                whole_run: None,
            })
        }),
    });
    specs
}

/// Whole training steps as a run submits them, resident and streamed.
fn training_runs(quick: bool) -> Vec<CaseSpec> {
    let mut specs = Vec::new();
    // Whole training steps as a run submits them (the upload of a streamed batch included), resident and
    // streamed: compare them in alternated pairs.
    let (run_preset, run_batch, run_steps) = if quick {
        ("tiny", 4, 3)
    } else {
        ("small", 32, 20)
    };
    for placement in [Placement::Gpu, Placement::Host] {
        let label = if placement == Placement::Gpu {
            "resident"
        } else {
            "streamed"
        };
        specs.push(CaseSpec {
            name: "train_run",
            shape: format!("{run_preset} b{run_batch} {label} {run_steps} steps"),
            long: false,
            build: Box::new(move |gpu| {
                let config = UNetConfig::preset(run_preset)?;
                let mut settings = TrainSettings::new(config.clone());
                settings.batch = run_batch;
                settings.placement = placement;
                let trainer = Trainer::new(gpu, settings, &builtin_data(&config)?, None)?;
                let trainer = Rc::new(std::cell::RefCell::new(trainer));
                Ok(Case {
                    exchange: None,
                    dispatches: Vec::new(),
                    work: Work::Flops(
                        3.0 * forward_flops(&config) * (run_batch * run_steps) as f64,
                    ),
                    formula: "steps × 3 × forward FLOPs, wall clock",
                    items: vec![
                        ((run_batch * run_steps) as f64, "img"),
                        (run_steps as f64, "step"),
                    ],
                    whole_run: Some(training_steps(trainer, run_steps, 3)),
                })
            }),
        });
    }
    specs
}

/// Per preset: a training step, a network evaluation, and whole sampling runs.
fn presets(quick: bool) -> Vec<CaseSpec> {
    // A whole training step and a network evaluation (a sampling step) of the U-Net presets. A training step
    // counts 3× the forward FLOPs (forward, and the backward's two products per layer), as the PyTorch twin does.
    let presets: &[(&'static str, usize)] = if quick {
        &[("tiny", 4)]
    } else {
        &[("small", 32), ("medium", 32), ("rgb64", 8), ("rgb128", 4)]
    };
    presets
        .iter()
        .flat_map(|&(preset, n)| preset_cases(quick, preset, n))
        .collect()
}

/// A preset's cases at training batch `n`.
fn preset_cases(quick: bool, preset: &'static str, n: usize) -> Vec<CaseSpec> {
    // The RGB presets take minutes per step on a CPU adapter.
    let big = preset.starts_with("rgb");
    let mut specs = vec![train_step(preset, n, big), unet_forward(quick, preset, big)];
    specs.extend(sampling_runs(quick, preset, big));
    specs
}

/// One training step of a preset at batch `n`, its recorded dispatches timed.
fn train_step(preset: &'static str, n: usize, big: bool) -> CaseSpec {
    CaseSpec {
        name: "train_step",
        shape: format!("{preset} b{n}"),
        long: big,
        build: Box::new(move |gpu| {
            let config = UNetConfig::preset(preset)?;
            let data = builtin_data(&config)?;
            let mut settings = TrainSettings::new(config.clone());
            settings.batch = n;
            let trainer = Trainer::new(gpu, settings, &data, None)?;
            Ok(Case {
                exchange: None,
                dispatches: trainer.dispatches().to_vec(),
                work: Work::Flops(3.0 * forward_flops(&config) * n as f64),
                formula: "3 × forward FLOPs",
                items: vec![(n as f64, "img")],
                whole_run: None,
            })
        }),
    }
}

/// One network evaluation of a preset at a sampling batch.
fn unet_forward(quick: bool, preset: &'static str, big: bool) -> CaseSpec {
    let eval_batch = if quick {
        4
    } else if big {
        16
    } else {
        64
    };
    CaseSpec {
        name: "unet_forward",
        shape: format!("{preset} b{eval_batch}"),
        long: big,
        build: Box::new(move |gpu| {
            let config = UNetConfig::preset(preset)?;
            let layout = ParamLayout::new(&config);
            let params = ParamBuffers::upload(gpu, &layout, &layout.init(0))?;
            let net = Net::new(gpu, &config, &params, eval_batch)?;
            Ok(Case {
                exchange: None,
                dispatches: net.forward(gpu)?,
                work: Work::Flops(forward_flops(&config) * eval_batch as f64),
                formula: "forward FLOPs",
                items: vec![(eval_batch as f64, "img")],
                whole_run: None,
            })
        }),
    }
}

/// Whole sampling runs of a preset, end to end, each sampler through its specification.
fn sampling_runs(quick: bool, preset: &'static str, big: bool) -> Vec<CaseSpec> {
    let mut specs = Vec::new();
    // Whole sampling runs, timed end to end (first submission to images read back): DDIM with 50 steps,
    // ancestral DDPM with all 1000, and the few-step solvers at 20 evaluations, at a grid's batch of 16. FLOPs
    // count one forward pass per model evaluation.
    let (sample_batch, runs) = if quick { (2, 1) } else { (16, 3) };
    let few = if quick { 5 } else { 20 };
    let short_long: [(&'static str, SamplerKind, usize, bool); 6] = [
        (
            "sample_ddim",
            SamplerKind::Ddim,
            if quick { 5 } else { 50 },
            false,
        ),
        (
            "sample_ddpm",
            SamplerKind::Ddpm,
            if quick { 20 } else { 1000 },
            !quick,
        ),
        ("sample_dpm++2m", SamplerKind::DpmSolver, few, false),
        ("sample_unipc", SamplerKind::Unipc, few, false),
        ("sample_euler", SamplerKind::Euler, few, false),
        ("sample_heun", SamplerKind::Heun, few, false),
    ];
    for (name, kind, steps, long) in short_long {
        specs.push(CaseSpec {
            name,
            shape: format!("{preset} b{sample_batch} {steps} steps"),
            // A 1000-step run, or any run of the larger preset, takes minutes on a CPU adapter.
            long: long || preset == "medium" || big,
            build: Box::new(move |gpu| {
                let config = UNetConfig::preset(preset)?;
                let layout = ParamLayout::new(&config);
                let params = ParamBuffers::upload(gpu, &layout, &layout.init(0))?;
                let schedule = Schedule::new(BetaSchedule::LINEAR, 1000)?;
                // The samplers' defaults: DDIM (η = 0) and DDPM clip x̂₀ to [−1, 1], the others don't.
                let plan = SamplerSpec::new(kind, steps).plan(&schedule)?;
                let model = UNetDenoiser::new(
                    gpu,
                    &config,
                    &params,
                    sample_batch,
                    None,
                    0.0,
                    Prediction::Epsilon,
                )?;
                let s = config.image_size;
                let shape = [sample_batch, config.in_channels, s, s];
                let sampler = Sampler::new(gpu, &plan, &model, &shape, 0)?;
                let evaluations = (plan.evaluations() * sample_batch) as f64;
                Ok(Case {
                    exchange: None,
                    dispatches: Vec::new(),
                    work: Work::Flops(forward_flops(&config) * evaluations),
                    formula: "steps × forward FLOPs, wall clock",
                    items: vec![(sample_batch as f64, "img"), (evaluations, "eval")],
                    whole_run: Some(WholeRun {
                        run: Box::new(move |gpu| {
                            let start = crate::time::Instant::now();
                            sampler.submit(gpu);
                            let host = start.elapsed().as_secs_f64();
                            sampler.output().read_f32(gpu)?;
                            Ok(host)
                        }),
                        // A 1000-step run is long enough to time once; shorter runs take the median of 3.
                        runs: if steps >= 1000 { 1 } else { runs },
                    }),
                })
            }),
        });
    }
    specs
}

/// The built-in MNIST subset fitted to a preset's size and channels.
fn builtin_data(config: &UNetConfig) -> Result<Dataset> {
    Dataset::builtin(Fit {
        channels: config.in_channels,
        size: config.image_size,
        background: [255; 3],
    })
}
