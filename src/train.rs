//! Training on the GPU. One step — draw a batch, timesteps and noise; noise the batch; forward; loss; backward;
//! gradient clipping; Adam; EMA; advance the RNG — is recorded once as a list of dispatches and submitted as one
//! command buffer per step. Nothing is allocated per step but a report's 8-byte staging buffer. The host writes
//! only the step's learning rate and EMA decay (a 4-float tensor) before each submission, and, when the data is
//! streamed, fills an upload slot with the step's images. A batch too large for one pass runs as micro-batches
//! inside the same submission ([`BatchPlan`]), each drawing its images' part of the batch's random numbers, with
//! the gradients summed before the optimizer reads them. The loss is summed on
//! the GPU; a step that reports copies the sum (and the gradient norm) into a staging buffer in its own
//! submission, and the host picks the values up when the GPU gets there ([`Trainer::poll_losses`]), so reporting
//! never drains the queue.

use crate::checkpoint::{Checkpoint, TrainingRecord};
use crate::data::Dataset;
use crate::diffusion::{NamedSchedule, Prediction, Schedule};
use crate::distributed::{self, Replicas, Slice};
use crate::error::{Error, Result};
use crate::gpu::memory::Growth;
use crate::gpu::upload::{Filled, UploadRing};
use crate::gpu::{DType, Dispatch, Gpu, PendingRead, Recorder, StagedRead, Tensor};
use crate::kernels::batch::PackedImages;
use crate::kernels::optimizer::{self, AdamState, Hyper};
use crate::kernels::random::Stream;
use crate::kernels::{batch, elementwise, loss, noise, random};
use crate::model::param_buffers::max_shard_elements;
use crate::model::unet::{DropoutDraw, Net};
use crate::model::{ParamBuffers, ParamLayout, UNetConfig};
use crate::optim::{AdamConfig, EmaWarmup};
use std::rc::Rc;
use std::time::Instant;

/// Everything that defines a training run besides the data.
#[derive(Clone, Debug)]
pub struct TrainSettings {
    pub model: UNetConfig,
    pub batch: usize,
    /// Peak learning rate, reached after `warmup` steps of linear warm-up.
    pub lr: f64,
    pub warmup: u64,
    /// EMA decay; the effective decay warms up as `ema_warmup` says (by default min(decay, (1 + step)/(10 + step)),
    /// as in many DDPM trainers) so the average is not dominated by the random initialisation.
    pub ema_decay: f64,
    /// How the EMA decay warms up ([`EmaWarmup`]).
    pub ema_warmup: EmaWarmup,
    /// Global gradient-norm clip (None: off).
    pub grad_clip: Option<f64>,
    pub adam: AdamConfig,
    /// A named schedule, so that a checkpoint can record which one.
    pub schedule: NamedSchedule,
    pub timesteps: usize,
    /// What the network is trained to predict (ε, x₀ or v; the noise kernel has no score target).
    pub target: Prediction,
    /// Min-SNR-γ loss weighting (Hang et al. 2023): each sample's MSE weighted by
    /// `Schedule::min_snr_weights(γ, target)` at its timestep. None: the plain, unweighted MSE.
    pub min_snr_gamma: Option<f64>,
    /// Rescale the schedule to zero terminal SNR (Lin et al. 2024, `Schedule::rescaled_zero_terminal_snr`). Needs
    /// an x₀ or v target: at ᾱ = 0 an ε target is x_t itself and says nothing about x₀.
    pub zero_terminal_snr: bool,
    /// Probability of replacing a label by "no class" (classifier-free guidance training).
    pub p_uncond: f32,
    /// Mirror each training image left–right with probability ½ (augmentation for photographs).
    pub flip: bool,
    /// Where the dataset's bytes live while training.
    pub placement: Placement,
    /// The most f32s per parameter buffer (None: as many as the adapter binds). Smaller values cut the
    /// parameters, gradients, moments and EMA into more shards, as on an adapter with a smaller binding limit.
    pub max_shard: Option<usize>,
    /// Batches whose gradients are summed before each optimizer step: a step sees `batch · grad_accum` images.
    pub grad_accum: usize,
    /// Images per forward/backward pass (must divide `batch`); None: the whole batch if it fits, else the largest
    /// divisor of it that does.
    pub micro_batch: Option<usize>,
    /// GPU memory the run may use, in bytes (None: only the adapter's per-buffer limit is checked).
    pub memory_budget: Option<u64>,
    pub seed: u64,
}

/// Where the training images live: on the GPU (each step gathers its batch there), or in host memory (each step's
/// rows are uploaded through a ring of staging buffers while the GPU works on the previous step). Both give the
/// same batches, bit for bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Placement {
    /// On the GPU where the packed bytes fit one buffer binding, else streamed.
    #[default]
    Auto,
    Gpu,
    Host,
}

impl TrainSettings {
    /// Defaults in the spirit of Ho et al. for a small model: Adam, lr 2e-4 with 500 warm-up steps (scaled down
    /// from their 5000 for short runs), EMA 0.999, clip 1.0, linear schedule with T = 1000, ε-prediction.
    pub fn new(model: UNetConfig) -> TrainSettings {
        TrainSettings {
            model,
            batch: 32,
            lr: 2e-4,
            warmup: 500,
            ema_decay: 0.999,
            ema_warmup: EmaWarmup::Ddpm,
            grad_clip: Some(1.0),
            adam: AdamConfig::adam(),
            schedule: NamedSchedule::Linear,
            timesteps: 1000,
            target: Prediction::Epsilon,
            min_snr_gamma: None,
            zero_terminal_snr: false,
            p_uncond: 0.1,
            flip: false,
            placement: Placement::Auto,
            max_shard: None,
            grad_accum: 1,
            micro_batch: None,
            memory_budget: None,
            seed: 0,
        }
    }

    /// The learning rate of step `step` (0-based): linear warm-up to `lr`, then constant.
    pub fn lr_at(&self, step: u64) -> f64 {
        if self.warmup == 0 {
            self.lr
        } else {
            self.lr * ((step + 1) as f64 / self.warmup as f64).min(1.0)
        }
    }

    /// The EMA decay used at step `step` (0-based): `ema_warmup`'s, capped at `ema_decay`.
    pub fn ema_decay_at(&self, step: u64) -> f64 {
        self.ema_warmup.decay_at(self.ema_decay, step)
    }

    /// The run's noise schedule (rescaled to zero terminal SNR if asked).
    pub fn noise_schedule(&self) -> Result<Schedule> {
        self.schedule.build(self.timesteps, self.zero_terminal_snr)
    }

    /// Refuses combinations of training objectives that cannot work, saying why and what to change.
    pub fn check_objectives(&self) -> Result<()> {
        if self.zero_terminal_snr && self.target == Prediction::Epsilon {
            return Err(Error::Usage(
                "--zero-terminal-snr needs --prediction v (or x0), not eps: at the last timestep ᾱ = 0, so x_t is \
                 pure noise and an ε-prediction network can only learn ε̂ = x_t, which says nothing about x₀ \
                 (sampling would divide by √ᾱ = 0). Lin et al. 2024 pair the rescaled schedule with v-prediction: \
                 add --prediction v"
                    .into(),
            ));
        }
        if self.target == Prediction::Score {
            return Err(Error::Usage(
                "the score is not a training target (train for eps, x0 or v)".into(),
            ));
        }
        if let Some(gamma) = self.min_snr_gamma {
            if !(gamma.is_finite() && gamma > 0.0) {
                return Err(Error::Usage(format!(
                    "--min-snr-gamma must be a positive number (Hang et al. use 5), got {gamma}"
                )));
            }
        }
        self.ema_warmup.validate().map_err(Error::Usage)
    }
}

/// RNG streams of one step (each draw of a step has its own, so they never repeat each other; dropout layers use
/// `dropout::DROPOUT_STREAM` and up).
mod stream {
    pub const INDEX: u32 = 0;
    pub const LABEL_DROP: u32 = 1;
    pub const TIMESTEP: u32 = 2;
    pub const NOISE: u32 = 3;
    pub const FLIP: u32 = 4;
}

/// The mean loss of the steps since the previous report, and the gradient norm of the last of them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossReport {
    /// The optimizer step (1-based count of steps taken) whose submission made the report.
    pub step: u64,
    pub loss: f64,
    pub grad_norm: f64,
}

/// A report recorded into a step's submission, not yet read.
struct PendingReport {
    step: u64,
    steps_summed: u64,
    /// [loss sum, gradient norm].
    values: PendingRead,
    /// The loss sum over every rank (data-parallel runs), which replaces this rank's own.
    loss_sum: Option<f32>,
}

/// Where each step's images come from.
enum Source {
    /// The whole dataset on the GPU; the step's gather reads the GPU-drawn indices.
    Resident,
    /// The dataset in host memory: before each step the host draws the same indices as the GPU (the draw is a
    /// pure function of seed, stream and offset) and uploads those rows, which the gather reads in order.
    Streamed {
        pixels: std::sync::Arc<[u8]>,
        d: usize,
        len: usize,
        ring: UploadRing,
        rows: PackedImages,
    },
}

/// A data-parallel step's all-reduce: this rank's gradient and loss sum are read back, summed over the ranks with
/// one all-reduce, and the sum uploaded in place of the gradient before the update runs.
struct Exchange {
    replicas: Rc<dyn Replicas>,
    /// The gradient's shards, then the loss sum.
    read: StagedRead,
    /// [gradient…, loss sum, stop] as sent and as summed (the stop slot: 1 from a rank that was asked to stop).
    send: Vec<f32>,
    sum: Vec<f32>,
    stats: ExchangeStats,
}

/// What the all-reduces of a data-parallel run have cost so far (`diffuse bench`, `docs/distributed.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExchangeStats {
    pub steps: u64,
    /// Bytes each rank sends into one step's all-reduce.
    pub bytes_per_step: u64,
    /// Host seconds waiting for this rank's passes and reading the gradient back.
    pub readback_s: f64,
    /// Seconds waiting for the slowest rank to finish its passes (a barrier before the all-reduce).
    pub wait_s: f64,
    /// Seconds inside MPI_Allreduce, every rank having arrived: the cost of the exchange itself.
    pub allreduce_s: f64,
    /// Host seconds handing the sum to the GPU.
    pub upload_s: f64,
}

impl Exchange {
    /// Reads the finished passes' gradient and loss sum, sums them and this rank's `stop` over the ranks, and
    /// writes the summed gradient over `grads`; returns (some rank asked to stop, the loss sum of all ranks).
    fn all_reduce(&mut self, gpu: &Gpu, grads: &ParamBuffers, stop: bool) -> Result<(bool, f32)> {
        let started = Instant::now();
        let n = self.read.len();
        self.read.wait_into(gpu, &mut self.send[..n])?;
        self.send[n] = if stop { 1.0 } else { 0.0 };
        let read = Instant::now();
        // A barrier first (a few microseconds), so that the all-reduce's time is the exchange alone and the wait
        // for a slower rank is counted apart.
        self.replicas.barrier();
        let arrived = Instant::now();
        self.replicas.all_reduce_sum(&self.send, &mut self.sum);
        let reduced = Instant::now();
        grads.write_flat(gpu, &self.sum[..grads.len()])?;
        let stats = &mut self.stats;
        stats.steps += 1;
        stats.readback_s += (read - started).as_secs_f64();
        stats.wait_s += (arrived - read).as_secs_f64();
        stats.allreduce_s += (reduced - arrived).as_secs_f64();
        stats.upload_s += reduced.elapsed().as_secs_f64();
        Ok((self.sum[n] > 0.0, self.sum[n - 1]))
    }
}

/// How a step's images are split into forward/backward passes, and the GPU memory that takes.
#[derive(Clone, Debug)]
pub struct BatchPlan {
    /// Images per pass.
    pub micro_batch: usize,
    /// Passes per optimizer step on this rank: its share of the grad_accum · batch images / micro_batch.
    pub passes: usize,
    /// Estimated GPU memory of the run (weights, optimizer state, activations and scratch; not the data).
    pub bytes: u64,
    /// Estimated largest single buffer.
    pub largest: u64,
    /// `bytes` is `fixed` plus `per_image` for each image of a pass.
    pub fixed: u64,
    pub per_image: u64,
    /// Says how and why the batch was split, when it was (to be shown once).
    pub note: Option<String>,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A training net's forward and backward passes at a batch size, built to measure their memory.
fn passes_at(
    gpu: &Gpu,
    config: &UNetConfig,
    params: &ParamBuffers,
    dropout: &DropoutDraw,
    batch: usize,
) -> Result<Vec<Dispatch>> {
    let net = Net::for_training(gpu, config, params, batch, dropout.clone())?;
    let d_out = Tensor::zeros(gpu, net.output().shape(), DType::F32)?;
    let mut all = net.forward(gpu)?;
    all.extend(net.backward(gpu, &d_out)?);
    Ok(all)
}

impl BatchPlan {
    /// Measures the net at batch 1 and 2 (memory is affine in the batch: fixed weights and gradients plus
    /// per-image activations), adds the trainer's own buffers, and picks the pass size. A pass holds at most one
    /// batch and one rank's slice of the step (`slice`): its size divides both.
    fn new(
        gpu: &Gpu,
        settings: &TrainSettings,
        params: &ParamBuffers,
        dropout: &DropoutDraw,
        image_values: usize,
        slice: Slice,
    ) -> Result<BatchPlan> {
        let batch = settings.batch;
        if batch == 0 || settings.grad_accum == 0 {
            return Err(Error::Usage(
                "--batch and --grad-accum must be at least 1".into(),
            ));
        }
        // The largest pass: the batch, or a rank's slice of the step where that is smaller or does not divide it.
        let unit = gcd(batch, slice.len);
        if let Some(m) = settings.micro_batch {
            if m == 0 || !unit.is_multiple_of(m) {
                return Err(Error::Usage(if slice.ranks == 1 {
                    format!("--micro-batch {m} must divide --batch {batch}")
                } else {
                    format!(
                        "--micro-batch {m} must divide both --batch {batch} and the {} images each of the {} \
                         ranks takes per step",
                        slice.len, slice.ranks
                    )
                }));
            }
        }
        let limit = crate::gpu::tensor::max_tensor_bytes(gpu);
        let net = Growth::measure(
            &passes_at(gpu, &settings.model, params, dropout, 1)?,
            &passes_at(gpu, &settings.model, params, dropout, 2)?,
            limit,
        );
        let weights = params.len() as u64 * 4;
        // The trainer's own: EMA and Adam's two moments; per image x₀, ε, the target and ∂L/∂prediction.
        let own_fixed = 3 * weights;
        let own_per_image = 4 * 4 * image_values as u64;
        let estimate = |m: usize| {
            let passes = slice.len / m;
            // With several passes the gradient is summed in a buffer of its own.
            let sum = if passes > 1 { weights } else { 0 };
            BatchPlan {
                micro_batch: m,
                passes,
                bytes: net.bytes(m) + own_fixed + sum + own_per_image * m as u64,
                largest: net.largest(m),
                fixed: net.fixed() + own_fixed + sum,
                per_image: net.per_image() + own_per_image,
                note: None,
            }
        };
        let fits = |p: &BatchPlan| {
            p.largest <= limit
                && settings
                    .memory_budget
                    .is_none_or(|budget| p.bytes <= budget)
        };
        let why = |p: &BatchPlan| {
            let mb = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
            if p.largest > limit {
                format!(
                    "its largest buffer would be {}, and the adapter binds at most {} per buffer",
                    mb(p.largest),
                    mb(limit)
                )
            } else {
                format!(
                    "it needs about {} of GPU memory, over the --memory-budget of {}",
                    mb(p.bytes),
                    mb(settings.memory_budget.unwrap_or(0))
                )
            }
        };
        let whole = estimate(unit);
        match settings.micro_batch {
            Some(m) => {
                let plan = estimate(m);
                if !fits(&plan) {
                    return Err(Error::Usage(format!(
                        "--micro-batch {m} does not fit: {}; choose a smaller --micro-batch",
                        why(&plan)
                    )));
                }
                Ok(plan)
            }
            None => {
                if fits(&whole) {
                    return Ok(whole);
                }
                let single = estimate(1);
                if !fits(&single) {
                    return Err(Error::Usage(format!(
                        "one image at a time does not fit: {}. Lower --image-size, --base-channels or \
                         --channel-mults{}",
                        why(&single),
                        if settings.memory_budget.is_some() {
                            ", or raise --memory-budget"
                        } else {
                            ""
                        }
                    )));
                }
                let m = (1..unit)
                    .rev()
                    .find(|&m| unit.is_multiple_of(m) && fits(&estimate(m)))
                    .unwrap_or(1);
                let mut plan = estimate(m);
                plan.note = Some(format!(
                    "{} {unit} does not fit one pass ({}): {} micro-batches of {m}, their gradients summed \
                     within each step's submission",
                    if unit == batch { "batch" } else { "a rank's slice of" },
                    why(&whole),
                    unit / m
                ));
                Ok(plan)
            }
        }
    }
}

pub struct Trainer {
    pub settings: TrainSettings,
    pub net: Net,
    pub ema: ParamBuffers,
    /// Adam's first and second moments, flat as the parameters (the recorded step binds their shards).
    moments: [ParamBuffers; 2],
    hyper: Tensor,
    rng: Tensor,
    loss_sum: Tensor,
    /// One zero, copied over `loss_sum` after each report.
    zero: Tensor,
    norm: Tensor,
    /// The step: the passes (`..update_at`: draws, forward, loss, backward), then the update (clip, Adam, EMA,
    /// RNG). One submission, or, across ranks, two with the gradient's all-reduce between them.
    step_dispatches: Vec<Dispatch>,
    update_at: usize,
    /// The other ranks of a data-parallel run, and this rank's images of each step.
    exchange: Option<Exchange>,
    slice: Slice,
    /// ‖weights‖ and ‖EMA‖ into `finite_norms` ([`Trainer::check_finite`]).
    finite_dispatches: Vec<Dispatch>,
    /// [‖weights‖, clip scale] and [‖EMA‖, clip scale] (two tensors: a view at 8 bytes would break binding alignment).
    finite_norms: [Tensor; 2],
    /// The gradient the optimizer reads (the net's own, or its sum over the passes of a step).
    grads: ParamBuffers,
    plan: BatchPlan,
    source: Source,
    /// The GPU's rng offset as of the next step (the host's copy: streaming draws the same indices from it).
    rng_offset: u64,
    /// Says where the data lives and why, for the user.
    placement_note: String,
    /// What each checkpoint records about the run.
    record: TrainingRecord,
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Steps since the loss sum was last reset.
    unreported: u64,
    reports: std::collections::VecDeque<PendingReport>,
}

impl Trainer {
    /// A trainer for `dataset`, starting from `resume` if given (which must match the settings' model).
    pub fn new(
        gpu: &Gpu,
        settings: TrainSettings,
        dataset: &Dataset,
        resume: Option<&Checkpoint>,
    ) -> Result<Trainer> {
        Self::with_replicas(gpu, settings, dataset, resume, None)
    }

    /// A trainer that is one rank of a data-parallel run (`replicas`; None or a world of one: the whole step
    /// here). Each step's images are one draw of batch × grad_accum, as in one process; rank r takes its
    /// contiguous slice of them, in passes numbered as a one-process run at the same micro-batch numbers them,
    /// so every image gets the same index, timestep, noise, label drop, flip and dropout masks. The gradients
    /// are summed by one all-reduce, and every rank applies the same clip, Adam and EMA: with one pass per rank
    /// the result is bit for bit a one-process run at `--micro-batch` = the slice (the sum of two passes does
    /// not depend on their order). Every rank must be given the same settings, data and checkpoint; the replicas
    /// are compared here and by [`Trainer::verify_replicas`].
    pub fn with_replicas(
        gpu: &Gpu,
        settings: TrainSettings,
        dataset: &Dataset,
        resume: Option<&Checkpoint>,
        replicas: Option<Rc<dyn Replicas>>,
    ) -> Result<Trainer> {
        settings.check_objectives()?;
        let replicas = replicas.filter(|r| r.ranks() > 1);
        // Images per optimizer step: every draw below takes its part of a draw of this many.
        let total = settings.batch * settings.grad_accum;
        let slice = match &replicas {
            Some(r) => Slice::of(total, r.rank(), r.ranks()).map_err(Error::Usage)?,
            None => Slice::whole(total),
        };
        let config = &settings.model;
        let (c, s) = (config.in_channels, config.image_size);
        if (dataset.channels, dataset.size) != (c, s) {
            return Err(Error::Usage(format!(
                "the dataset holds {}×{}×{} images but the model wants {c}×{s}×{s}",
                dataset.channels, dataset.size, dataset.size
            )));
        }
        if dataset.len == 0 {
            return Err(Error::Usage("the dataset is empty".into()));
        }
        let layout = ParamLayout::new(config);
        let (initial, ema_values, step, rng_offset) = match resume {
            Some(ckpt) => {
                if &ckpt.config != config {
                    return Err(Error::Usage(format!(
                        "the checkpoint was trained with another model configuration ({:?}); resume with the same \
                         --preset and options, or start a new run",
                        ckpt.config
                    )));
                }
                (
                    ckpt.params.clone(),
                    ckpt.ema.clone(),
                    ckpt.step,
                    ckpt.rng_offset,
                )
            }
            None => {
                let p = layout.init(settings.seed);
                (p.clone(), p, 0, 0)
            }
        };
        let shard = settings
            .max_shard
            .unwrap_or_else(|| max_shard_elements(gpu));
        let params = ParamBuffers::from_flat(gpu, &layout, &initial, shard)?;
        let ema = ParamBuffers::from_flat(gpu, &layout, &ema_values, shard)?;
        let resumed_moments = resume.and_then(|c| c.adam.as_ref());
        let moments = match resumed_moments {
            Some((m, v)) => [
                ParamBuffers::from_flat(gpu, &layout, m, shard)?,
                ParamBuffers::from_flat(gpu, &layout, v, shard)?,
            ],
            None => [params.zeros_like(gpu)?, params.zeros_like(gpu)?],
        };
        // The optimizer kernels take the moments' shards (the same buffers).
        let adam = AdamState {
            m: moments[0].shards().to_vec(),
            v: moments[1].shards().to_vec(),
            step: Tensor::zeros(gpu, &[optimizer::STEP_LEN], DType::F32)?,
        };
        if resumed_moments.is_some() {
            // Adam's GPU-side step tensor is [t, …]: the rest is recomputed from t on the next step.
            adam.step.write_f32(gpu, &[step as f32, 0.0, 0.0, 0.0])?;
        }
        let rng = random::rng_state(gpu, rng_offset)?;
        let dropout = DropoutDraw {
            seed: settings.seed,
            state: rng.clone(),
        };
        let d = dataset.image_len();
        let plan = BatchPlan::new(gpu, &settings, &params, &dropout, d, slice)?;
        let (m, passes) = (plan.micro_batch, plan.passes);
        // The step's passes over all ranks, and the number of this rank's first one.
        let (all_passes, first_pass) = (total / m, slice.first / m);
        let net = Net::for_training(gpu, config, &params, m, dropout)?;

        let bytes = dataset.len as u64 * d as u64;
        let limit = crate::gpu::tensor::max_tensor_bytes(gpu);
        let fits = bytes.div_ceil(4) * 4 <= limit && bytes <= u32::MAX as u64;
        let resident = match settings.placement {
            Placement::Gpu if !fits => {
                return Err(Error::Usage(format!(
                    "--data-on gpu: the dataset's {} bytes do not fit one buffer binding of this adapter ({limit} \
                     bytes); use --data-on auto or host to stream it from host memory",
                    bytes
                )))
            }
            Placement::Gpu => true,
            Placement::Host => false,
            // Resident where it fits one binding and, with a budget, beside everything else.
            Placement::Auto => {
                fits && settings
                    .memory_budget
                    .is_none_or(|budget| plan.bytes + bytes <= budget)
            }
        };
        let size = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
        let placement_note = if resident {
            format!(
                "data: {} images × {d} bytes = {} resident on the GPU",
                dataset.len,
                size(bytes)
            )
        } else {
            format!(
                "data: {} images × {d} bytes = {} streamed from host memory ({})",
                dataset.len,
                size(bytes),
                if settings.placement == Placement::Host {
                    "as asked".to_string()
                } else if fits {
                    "the GPU memory left in --memory-budget is smaller".to_string()
                } else {
                    format!(
                        "more than one buffer binding of this adapter holds: {}",
                        size(limit)
                    )
                }
            )
        };
        let index = Tensor::zeros(gpu, &[m], DType::U32)?;
        // Which rows each pass gathers from `data`: the GPU-drawn dataset indices, or (streaming) its slice of the
        // rows uploaded for the step, in order.
        let (data, gather_index, source) = if resident {
            let data = PackedImages::upload(gpu, &dataset.pixels, d)?;
            (data, vec![index.clone(); passes], Source::Resident)
        } else {
            let upload = slice.len as u64 * d as u64;
            if upload.div_ceil(4) * 4 > limit {
                return Err(Error::Usage(format!(
                    "streaming: one step's {} images are {upload} bytes, more than one buffer binding of this \
                     adapter holds ({limit}); lower --batch or --grad-accum",
                    slice.len
                )));
            }
            let rows = PackedImages::zeros(gpu, slice.len, d)?;
            let in_order = (0..passes)
                .map(|j| {
                    let part: Vec<u32> = (j * m..(j + 1) * m).map(|i| i as u32).collect();
                    Tensor::from_u32(gpu, &[m], &part)
                })
                .collect::<Result<Vec<_>>>()?;
            let source = Source::Streamed {
                pixels: dataset.pixels.clone(),
                d,
                len: dataset.len,
                ring: UploadRing::new(gpu, rows.words.byte_size())?,
                rows: rows.clone(),
            };
            (rows, in_order, source)
        };
        let x0 = Tensor::zeros(gpu, &[m, c, s, s], DType::F32)?;
        let eps = Tensor::zeros(gpu, &[m, c, s, s], DType::F32)?;
        let target = Tensor::zeros(gpu, &[m, c, s, s], DType::F32)?;
        let d_pred = Tensor::zeros(gpu, &[m, c, s, s], DType::F32)?;
        let loss_value = Tensor::zeros(gpu, &[1], DType::F32)?;
        let loss_sum = Tensor::zeros(gpu, &[1], DType::F32)?;
        let norm = Tensor::zeros(gpu, &[optimizer::NORM_LEN], DType::F32)?;
        let hyper = Tensor::zeros(gpu, &[optimizer::HYPER_LEN], DType::F32)?;
        let schedule = settings.noise_schedule()?;
        let table = noise::upload_table(gpu, &schedule.noise_table())?;
        // Min-SNR-γ: one weight per timestep, gathered per sample by the loss kernel.
        let loss_weights = match settings.min_snr_gamma {
            Some(gamma) => Some(loss::upload_weights(
                gpu,
                &schedule.min_snr_weights(gamma, settings.target)?,
            )?),
            None => None,
        };
        let flip_u = Tensor::zeros(gpu, &[m], DType::F32)?;
        let labels_all = match (config.num_classes, &net.labels) {
            (Some(classes), Some(_)) => {
                let all = dataset.labels.as_ref().ok_or_else(|| {
                    Error::Usage("a class-conditional model needs a labelled dataset (MNIST labels or class subfolders)".into())
                })?;
                if let Some(&bad) = all.iter().find(|&&l| l as usize >= classes) {
                    return Err(Error::Usage(format!(
                        "the dataset has label {bad}, but the model has {classes} classes"
                    )));
                }
                Some((
                    Tensor::from_u32(gpu, &[all.len()], all)?,
                    Tensor::zeros(gpu, &[m], DType::F32)?,
                    classes as u32,
                ))
            }
            _ => None,
        };
        // Each pass's share of the step's loss and gradient: 1/passes over all ranks (exact when that is a power
        // of two).
        let share = Tensor::from_f32(gpu, &[1], &[1.0 / all_passes as f32])?;
        // The gradient the optimizer reads: the net's own with one pass, else the sum over the passes.
        let grad_sum = if passes > 1 {
            Some(net.grads.zeros_like(gpu)?)
        } else {
            None
        };

        let seed = settings.seed;
        let image = c * s * s;
        let mut d = Vec::new();
        for (local, gather_index) in gather_index.iter().enumerate() {
            // This pass draws the numbers of images j·m..(j+1)·m of the step's draw of `total`.
            let j = first_pass + local;
            let at =
                |stream: u32, per_image: usize| Stream::from_element(stream, j * m * per_image);
            d.push(random::fill_uniform_int(
                gpu,
                &index,
                dataset.len as u32,
                seed,
                at(stream::INDEX, 1),
                &rng,
            )?);
            if settings.flip {
                d.push(random::fill_uniform(
                    gpu,
                    &flip_u,
                    seed,
                    at(stream::FLIP, 1),
                    &rng,
                )?);
                d.push(batch::gather_rows_flip(
                    gpu,
                    &data,
                    gather_index,
                    &flip_u,
                    &x0,
                )?);
            } else {
                d.push(batch::gather_rows(gpu, &data, gather_index, &x0)?);
            }
            if let (Some((all, u, classes)), Some(labels)) = (&labels_all, &net.labels) {
                d.push(random::fill_uniform(
                    gpu,
                    u,
                    seed,
                    at(stream::LABEL_DROP, 1),
                    &rng,
                )?);
                d.push(batch::gather_labels(
                    gpu,
                    all,
                    &index,
                    u,
                    settings.p_uncond,
                    *classes,
                    labels,
                )?);
            }
            d.push(random::fill_uniform_int(
                gpu,
                &net.timesteps,
                settings.timesteps as u32,
                seed,
                at(stream::TIMESTEP, 1),
                &rng,
            )?);
            d.push(random::fill_normal(
                gpu,
                &eps,
                seed,
                at(stream::NOISE, image),
                &rng,
            )?);
            d.push(noise::noise_forward(
                gpu,
                &x0,
                &eps,
                &net.timesteps,
                &table,
                settings.target,
                &net.input,
                &target,
            )?);
            d.extend(net.forward_part(gpu, j)?);
            let weights = loss_weights.as_ref().map(|table| loss::SampleWeights {
                t: &net.timesteps,
                table,
            });
            d.extend(match weights {
                Some(w) => loss::mse_forward_weighted(gpu, net.output(), &target, w, &loss_value)?,
                None => loss::mse_forward(gpu, net.output(), &target, &loss_value)?,
            });
            d.push(elementwise::axpy(
                gpu,
                1.0 / all_passes as f32,
                &loss_value,
                &loss_sum,
            )?);
            let d_loss = (all_passes > 1).then_some(&share);
            d.push(match weights {
                Some(w) => {
                    loss::mse_backward_weighted(gpu, net.output(), &target, w, d_loss, &d_pred)?
                }
                None => loss::mse_backward(gpu, net.output(), &target, d_loss, &d_pred)?,
            });
            d.extend(net.backward_part(gpu, &d_pred, j)?);
            if let Some(sum) = &grad_sum {
                for (g, acc) in net.grads.shards().iter().zip(sum.shards()) {
                    d.push(if local == 0 {
                        elementwise::scale(gpu, g, 1.0, acc)?
                    } else {
                        elementwise::axpy(gpu, 1.0, g, acc)?
                    });
                }
            }
        }
        let grads = grad_sum.as_ref().unwrap_or(&net.grads).clone();
        let update_at = d.len();
        d.extend(optimizer::grad_norm(
            gpu,
            grads.shards(),
            settings.grad_clip,
            &norm,
        )?);
        d.extend(optimizer::adam_step(
            gpu,
            &settings.adam,
            params.shards(),
            grads.shards(),
            &adam,
            &hyper,
            Some(&norm),
        )?);
        for (p, e) in params.shards().iter().zip(ema.shards()) {
            d.push(optimizer::ema_update(gpu, p, e, &hyper)?);
        }
        d.push(random::advance(gpu, &rng, 1)?);

        // The norms of the weights and of their EMA, read before anything is saved: a NaN or ±∞ anywhere makes its
        // norm non-finite. The norm kernel reuses the optimizer's deterministic two-stage reduction.
        let finite_norms = [
            Tensor::zeros(gpu, &[optimizer::NORM_LEN], DType::F32)?,
            Tensor::zeros(gpu, &[optimizer::NORM_LEN], DType::F32)?,
        ];
        let mut finite_dispatches =
            optimizer::grad_norm(gpu, params.shards(), None, &finite_norms[0])?;
        finite_dispatches.extend(optimizer::grad_norm(
            gpu,
            ema.shards(),
            None,
            &finite_norms[1],
        )?);
        let record = TrainingRecord {
            schedule: settings.schedule,
            timesteps: settings.timesteps,
            prediction: settings.target,
            dataset: dataset.description.clone(),
            lr: settings.lr,
            batch: settings.batch,
            flip: settings.flip,
            warmup: settings.warmup,
            ema: settings.ema_decay,
            ema_warmup: settings.ema_warmup,
            min_snr_gamma: settings.min_snr_gamma,
            zero_terminal_snr: settings.zero_terminal_snr,
            clip: settings.grad_clip.unwrap_or(0.0),
            grad_accum: settings.grad_accum,
            changes: resume.map_or_else(Vec::new, |c| c.training.changes.clone()),
            // So that `diffuse sample --class` takes the names of the training subfolders.
            class_names: match config.num_classes {
                Some(_) => dataset.class_names.clone(),
                None => Vec::new(),
            },
        };
        let exchange = replicas.map(|replicas| {
            let mut sources: Vec<&Tensor> = grads.shards().iter().collect();
            sources.push(&loss_sum);
            let read = StagedRead::new(gpu, &sources);
            let n = read.len() + 1;
            Exchange {
                replicas,
                read,
                send: vec![0.0; n],
                sum: vec![0.0; n],
                stats: ExchangeStats {
                    bytes_per_step: 4 * n as u64,
                    ..Default::default()
                },
            }
        });
        let trainer = Trainer {
            record,
            settings,
            net,
            ema,
            moments,
            hyper,
            rng,
            loss_sum,
            zero: Tensor::zeros(gpu, &[1], DType::F32)?,
            norm,
            step_dispatches: d,
            update_at,
            exchange,
            slice,
            finite_dispatches,
            finite_norms,
            grads,
            plan,
            source,
            rng_offset,
            placement_note,
            step,
            unreported: 0,
            reports: Default::default(),
        };
        if trainer.exchange.is_some() {
            // Every rank must start from the same weights, moments and RNG position (the same checkpoint).
            trainer.verify_replicas(&trainer.checkpoint(gpu)?)?;
        }
        Ok(trainer)
    }

    /// This rank and the number of ranks (0 and 1 in a one-process run).
    pub fn rank(&self) -> (usize, usize) {
        (self.slice.rank, self.slice.ranks)
    }

    /// What the all-reduces have cost so far (None in a one-process run).
    pub fn exchange_stats(&self) -> Option<ExchangeStats> {
        self.exchange.as_ref().map(|e| e.stats)
    }

    /// Compares `ckpt` (this rank's state, from [`Trainer::checkpoint`]) with every other rank's by checksum; every
    /// rank must call it at the same step. Different replicas are an error on every rank: the ranks no longer
    /// train one model, and nothing from this state may be saved. A no-op in a one-process run.
    pub fn verify_replicas(&self, ckpt: &Checkpoint) -> Result<()> {
        let Some(exchange) = &self.exchange else {
            return Ok(());
        };
        let (m, v) = ckpt
            .adam
            .as_ref()
            .map_or((&[][..], &[][..]), |(m, v)| (m, v));
        let sum = distributed::checksum(
            [&ckpt.params[..], &ckpt.ema[..], m, v],
            &[ckpt.step, ckpt.rng_offset, ckpt.seed],
        );
        let sums = exchange.replicas.all_gather_u64(sum);
        if sums.iter().all(|&s| s == sums[0]) {
            return Ok(());
        }
        Err(Error::ReplicasDiffer {
            step: ckpt.step,
            checksums: sums
                .iter()
                .enumerate()
                .map(|(r, s)| format!("rank {r}: {s:016x}"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Adds a line to the checkpoint's record of settings changed on resuming (`extra.changes`).
    pub fn record_change(&mut self, line: String) {
        self.record.changes.push(line);
    }

    /// Where the data lives and why ("data: … resident on the GPU" or "… streamed from host memory (…)").
    pub fn placement_note(&self) -> &str {
        &self.placement_note
    }

    /// How each step's images are split into passes, and the memory estimate behind it.
    pub fn plan(&self) -> &BatchPlan {
        &self.plan
    }

    /// The gradient of the last step (summed over its passes, before clipping), read back flat.
    pub fn gradient(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.grads.read_flat(gpu)
    }

    /// Whether the dataset is streamed from host memory.
    pub fn streams(&self) -> bool {
        matches!(self.source, Source::Streamed { .. })
    }

    /// Dispatches per training step (all in one submission).
    pub fn dispatch_count(&self) -> usize {
        self.step_dispatches.len()
    }

    /// The recorded step, in order (for the benchmark's timing and per-kernel breakdown).
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.step_dispatches
    }

    /// Records and submits one training step (does not wait for it). With `report`, the same submission also
    /// copies out the mean loss of the steps since the last report; collect it with [`Trainer::poll_losses`] or
    /// [`Trainer::wait_losses`].
    pub fn step(&mut self, gpu: &Gpu, report: bool) -> Result<()> {
        self.step_or_stop(gpu, report, false).map(|_| ())
    }

    /// [`Trainer::step`], for a run that may be asked to stop (a signal): `stop` says this process was. Returns
    /// whether the run stops after this step — in a data-parallel run, whether any rank was asked, agreed through
    /// the step's all-reduce so that every rank stops at the same step. A stopping step always reports.
    pub fn step_or_stop(&mut self, gpu: &Gpu, report: bool, stop: bool) -> Result<bool> {
        let s = &self.settings;
        Hyper {
            lr: s.lr_at(self.step),
            ema_decay: s.ema_decay_at(self.step),
        }
        .write(gpu, &self.hyper)?;
        let mut rec = Recorder::new(gpu);
        let mut upload = self.upload_rows(gpu, &mut rec)?;
        let (passes, update) = self.step_dispatches.split_at(self.update_at);
        rec.dispatch(passes);
        let (stop, loss_sum) = match &mut self.exchange {
            None => (stop, None),
            Some(exchange) => {
                // Passes and the gradient's readback in one submission, then the all-reduce on the host, and the
                // update in a second submission that reads the uploaded sum.
                exchange.read.record(&mut rec);
                let submission = rec.submit();
                if let (Some(filled), Source::Streamed { ring, .. }) =
                    (upload.take(), &mut self.source)
                {
                    ring.release(filled, submission);
                }
                let (stop, loss_sum) = exchange.all_reduce(gpu, &self.grads, stop)?;
                rec = Recorder::new(gpu);
                (stop, Some(loss_sum))
            }
        };
        rec.dispatch(update);
        self.step += 1;
        self.rng_offset += 1;
        self.unreported += 1;
        let pending = (report || stop).then(|| {
            let values = rec.read_later(&[&self.loss_sum, &self.norm.view(gpu, 0, &[1])?]);
            rec.copy(&self.zero, &self.loss_sum)?;
            Ok::<_, Error>(values)
        });
        let submission = rec.submit();
        if let (Some(filled), Source::Streamed { ring, .. }) = (upload, &mut self.source) {
            ring.release(filled, submission);
        }
        if let Some(pending) = pending {
            let mut values = pending?;
            values.request();
            self.reports.push_back(PendingReport {
                step: self.step,
                steps_summed: std::mem::take(&mut self.unreported),
                values,
                loss_sum,
            });
        }
        Ok(stop)
    }

    /// Streaming: draws this step's indices as the GPU will, fills a ring slot with those rows and records its copy
    /// at the head of the step.
    fn upload_rows(&mut self, gpu: &Gpu, rec: &mut Recorder) -> Result<Option<Filled>> {
        let Source::Streamed {
            pixels,
            d,
            len,
            ring,
            rows,
        } = &mut self.source
        else {
            return Ok(None);
        };
        let d = *d;
        let index = crate::reference::random::uniform_int(
            self.settings.seed,
            stream::INDEX,
            self.rng_offset,
            self.settings.batch * self.settings.grad_accum,
            *len as u32,
        );
        let slice = self.slice;
        let mine = &index[slice.first..slice.first + slice.len];
        let filled = ring.fill(gpu, |view| {
            for (j, &i) in mine.iter().enumerate() {
                let i = i as usize;
                view.slice(j * d..(j + 1) * d)
                    .copy_from_slice(&pixels[i * d..(i + 1) * d]);
            }
        })?;
        ring.record_copy(rec, &filled, &rows.words)?;
        Ok(Some(filled))
    }

    /// The reports the GPU has finished, oldest first, without waiting for the others.
    /// A non-finite loss is an error: the run has diverged, and nothing should be saved from it.
    pub fn poll_losses(&mut self, gpu: &Gpu) -> Result<Vec<LossReport>> {
        let mut done = Vec::new();
        while let Some(front) = self.reports.front_mut() {
            let Some(values) = front.values.try_f32(gpu)? else {
                break;
            };
            let front = self.reports.pop_front().expect("front exists");
            done.push(Self::report(
                front.step,
                front.steps_summed,
                front.loss_sum.unwrap_or(values[0]),
                values[1],
            )?);
        }
        Ok(done)
    }

    /// Every report requested so far, waiting for the GPU to finish them (before a checkpoint is written, so
    /// a diverged run is caught before it could overwrite a good checkpoint).
    pub fn wait_losses(&mut self, gpu: &Gpu) -> Result<Vec<LossReport>> {
        let mut done = Vec::new();
        while let Some(front) = self.reports.pop_front() {
            let (step, steps_summed, loss_sum) = (front.step, front.steps_summed, front.loss_sum);
            let values = front.values.wait_f32(gpu)?;
            done.push(Self::report(
                step,
                steps_summed,
                loss_sum.unwrap_or(values[0]),
                values[1],
            )?);
        }
        Ok(done)
    }

    fn report(step: u64, steps_summed: u64, loss_sum: f32, norm: f32) -> Result<LossReport> {
        let loss = loss_sum as f64 / steps_summed.max(1) as f64;
        if !loss.is_finite() || !norm.is_finite() {
            return Err(Error::Diverged { step, loss });
        }
        Ok(LossReport {
            step,
            loss,
            grad_norm: norm as f64,
        })
    }

    /// Whether the weights and their EMA are finite, from their norms computed on the GPU (two 8-byte reads):
    /// a step's loss is computed before its update, so a finite loss does not vouch for the weights after it.
    /// Weights so large that the sum of their squares overflows f32 (‖w‖ > 1.8e19) count as non-finite too.
    pub fn check_finite(&self, gpu: &Gpu) -> Result<()> {
        gpu.run(&self.finite_dispatches)?;
        let weights = self.finite_norms[0].read_f32(gpu)?[0];
        let ema = self.finite_norms[1].read_f32(gpu)?[0];
        if weights.is_finite() && ema.is_finite() {
            return Ok(());
        }
        Err(Error::NonFiniteWeights {
            step: self.step,
            what: match (weights.is_finite(), ema.is_finite()) {
                (false, false) => "the weights and their EMA",
                (false, true) => "the weights",
                _ => "the EMA weights",
            },
        })
    }

    /// Everything needed to resume exactly or to sample (reads the GPU state back), once
    /// [`Trainer::check_finite`] has found the weights finite: a diverged model is never saved or sampled.
    pub fn checkpoint(&self, gpu: &Gpu) -> Result<Checkpoint> {
        self.check_finite(gpu)?;
        let offset = self.rng.read_u32(gpu)?;
        Ok(Checkpoint {
            config: self.settings.model.clone(),
            step: self.step,
            seed: self.settings.seed,
            rng_offset: offset[0] as u64 | (offset[1] as u64) << 32,
            params: self.net.params.read_flat(gpu)?,
            ema: self.ema.read_flat(gpu)?,
            adam: Some((
                self.moments[0].read_flat(gpu)?,
                self.moments[1].read_flat(gpu)?,
            )),
            training: self.record.clone(),
        })
    }
}
