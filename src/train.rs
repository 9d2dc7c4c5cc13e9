//! Training on the GPU. One step — draw a batch, timesteps and noise; noise the batch; forward; loss; backward;
//! gradient clipping; Adam; EMA; advance the RNG — is recorded once as a list of dispatches and submitted as one
//! command buffer per step. Nothing is allocated per step but a report's 8-byte staging buffer. The host writes
//! only the step's learning rate and EMA decay (a 4-float tensor) before each submission. The loss is summed on
//! the GPU; a step that reports copies the sum (and the gradient norm) into a staging buffer in its own
//! submission, and the host picks the values up when the GPU gets there ([`Trainer::poll_losses`]), so reporting
//! never drains the queue.

use crate::checkpoint::{Checkpoint, TrainingRecord};
use crate::data::Dataset;
use crate::diffusion::{NamedSchedule, Prediction, Schedule};
use crate::error::{Error, Result};
use crate::gpu::upload::{Filled, UploadRing};
use crate::gpu::{DType, Dispatch, Gpu, PendingRead, Recorder, Tensor};
use crate::kernels::batch::PackedImages;
use crate::kernels::optimizer::{self, AdamState, Hyper};
use crate::kernels::{batch, elementwise, loss, noise, random};
use crate::model::param_buffers::max_shard_elements;
use crate::model::unet::{DropoutDraw, Net};
use crate::model::{ParamBuffers, ParamLayout, UNetConfig};
use crate::optim::AdamConfig;

/// Everything that defines a training run besides the data.
#[derive(Clone, Debug)]
pub struct TrainSettings {
    pub model: UNetConfig,
    pub batch: usize,
    /// Peak learning rate, reached after `warmup` steps of linear warm-up.
    pub lr: f64,
    pub warmup: u64,
    /// EMA decay; the effective decay warms up as min(decay, (1 + step)/(10 + step)) (as in many DDPM trainers)
    /// so the average is not dominated by the random initialisation.
    pub ema_decay: f64,
    /// Global gradient-norm clip (None: off).
    pub grad_clip: Option<f64>,
    pub adam: AdamConfig,
    /// A named schedule, so that a checkpoint can record which one.
    pub schedule: NamedSchedule,
    pub timesteps: usize,
    /// What the network is trained to predict (ε, x₀ or v; the noise kernel has no score target).
    pub target: Prediction,
    /// Probability of replacing a label by "no class" (classifier-free guidance training).
    pub p_uncond: f32,
    /// Mirror each training image left–right with probability ½ (augmentation for photographs).
    pub flip: bool,
    /// Where the dataset's bytes live while training.
    pub placement: Placement,
    /// The most f32s per parameter buffer (None: as many as the adapter binds). Smaller values cut the
    /// parameters, gradients, moments and EMA into more shards, as on an adapter with a smaller binding limit.
    pub max_shard: Option<usize>,
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
            grad_clip: Some(1.0),
            adam: AdamConfig::adam(),
            schedule: NamedSchedule::Linear,
            timesteps: 1000,
            target: Prediction::Epsilon,
            p_uncond: 0.1,
            flip: false,
            placement: Placement::Auto,
            max_shard: None,
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

    /// The EMA decay used at step `step`.
    pub fn ema_decay_at(&self, step: u64) -> f64 {
        self.ema_decay
            .min((1.0 + step as f64) / (10.0 + step as f64))
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

pub struct Trainer {
    pub settings: TrainSettings,
    pub net: Net,
    pub ema: ParamBuffers,
    adam: AdamState,
    hyper: Tensor,
    rng: Tensor,
    loss_sum: Tensor,
    /// One zero, copied over `loss_sum` after each report.
    zero: Tensor,
    norm: Tensor,
    step_dispatches: Vec<Dispatch>,
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
        let adam = AdamState {
            m: params.zeros_like(gpu)?.shards().to_vec(),
            v: params.zeros_like(gpu)?.shards().to_vec(),
            step: Tensor::zeros(gpu, &[optimizer::STEP_LEN], DType::F32)?,
        };
        if let Some((m, v)) = resume.and_then(|c| c.adam.as_ref()) {
            write_shards(gpu, &adam.m, m)?;
            write_shards(gpu, &adam.v, v)?;
            // Adam's GPU-side step tensor is [t, …]: the rest is recomputed from t on the next step.
            adam.step.write_f32(gpu, &[step as f32, 0.0, 0.0, 0.0])?;
        }
        let n = settings.batch;
        let rng = random::rng_state(gpu, rng_offset)?;
        let net = Net::for_training(
            gpu,
            config,
            &params,
            n,
            DropoutDraw {
                seed: settings.seed,
                state: rng.clone(),
            },
        )?;

        let d = dataset.image_len();
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
            Placement::Auto => fits,
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
                } else {
                    format!(
                        "more than one buffer binding of this adapter holds: {}",
                        size(limit)
                    )
                }
            )
        };
        let index = Tensor::zeros(gpu, &[n], DType::U32)?;
        let (data, gather_index, source) = if resident {
            let data = PackedImages::upload(gpu, &dataset.pixels, d)?;
            (data, index.clone(), Source::Resident)
        } else {
            let rows = PackedImages::zeros(gpu, n, d)?;
            let in_order: Vec<u32> = (0..n as u32).collect();
            let source = Source::Streamed {
                pixels: dataset.pixels.clone(),
                d,
                len: dataset.len,
                ring: UploadRing::new(gpu, rows.words.byte_size())?,
                rows: rows.clone(),
            };
            (rows, Tensor::from_u32(gpu, &[n], &in_order)?, source)
        };
        let x0 = Tensor::zeros(gpu, &[n, c, s, s], DType::F32)?;
        let eps = Tensor::zeros(gpu, &[n, c, s, s], DType::F32)?;
        let target = Tensor::zeros(gpu, &[n, c, s, s], DType::F32)?;
        let d_pred = Tensor::zeros(gpu, &[n, c, s, s], DType::F32)?;
        let loss_value = Tensor::zeros(gpu, &[1], DType::F32)?;
        let loss_sum = Tensor::zeros(gpu, &[1], DType::F32)?;
        let norm = Tensor::zeros(gpu, &[optimizer::NORM_LEN], DType::F32)?;
        let hyper = Tensor::zeros(gpu, &[optimizer::HYPER_LEN], DType::F32)?;
        let schedule = Schedule::new(settings.schedule.beta_schedule(), settings.timesteps)?;
        let table = noise::upload_table(gpu, &schedule.noise_table())?;

        let seed = settings.seed;
        let mut d = vec![random::fill_uniform_int(
            gpu,
            &index,
            dataset.len as u32,
            seed,
            stream::INDEX,
            &rng,
        )?];
        if settings.flip {
            let u = Tensor::zeros(gpu, &[n], DType::F32)?;
            d.push(random::fill_uniform(gpu, &u, seed, stream::FLIP, &rng)?);
            d.push(batch::gather_rows_flip(gpu, &data, &gather_index, &u, &x0)?);
        } else {
            d.push(batch::gather_rows(gpu, &data, &gather_index, &x0)?);
        }
        if let (Some(classes), Some(labels)) = (config.num_classes, &net.labels) {
            let all = dataset.labels.as_ref().ok_or_else(|| {
                Error::Usage("a class-conditional model needs a labelled dataset (MNIST labels or class subfolders)".into())
            })?;
            if let Some(&bad) = all.iter().find(|&&l| l as usize >= classes) {
                return Err(Error::Usage(format!(
                    "the dataset has label {bad}, but the model has {classes} classes"
                )));
            }
            let all = Tensor::from_u32(gpu, &[all.len()], all)?;
            let u = Tensor::zeros(gpu, &[n], DType::F32)?;
            d.push(random::fill_uniform(
                gpu,
                &u,
                seed,
                stream::LABEL_DROP,
                &rng,
            )?);
            d.push(batch::gather_labels(
                gpu,
                &all,
                &index,
                &u,
                settings.p_uncond,
                classes as u32,
                labels,
            )?);
        }
        d.push(random::fill_uniform_int(
            gpu,
            &net.timesteps,
            settings.timesteps as u32,
            seed,
            stream::TIMESTEP,
            &rng,
        )?);
        d.push(random::fill_normal(gpu, &eps, seed, stream::NOISE, &rng)?);
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
        d.extend(net.forward(gpu)?);
        d.extend(loss::mse_forward(gpu, net.output(), &target, &loss_value)?);
        d.push(elementwise::axpy(gpu, 1.0, &loss_value, &loss_sum)?);
        d.push(loss::mse_backward(
            gpu,
            net.output(),
            &target,
            None,
            &d_pred,
        )?);
        d.extend(net.backward(gpu, &d_pred)?);
        d.extend(optimizer::grad_norm(
            gpu,
            net.grads.shards(),
            settings.grad_clip,
            &norm,
        )?);
        d.extend(optimizer::adam_step(
            gpu,
            &settings.adam,
            params.shards(),
            net.grads.shards(),
            &adam,
            &hyper,
            Some(&norm),
        )?);
        for (p, e) in params.shards().iter().zip(ema.shards()) {
            d.push(optimizer::ema_update(gpu, p, e, &hyper)?);
        }
        d.push(random::advance(gpu, &rng, 1)?);

        let record = TrainingRecord {
            schedule: settings.schedule,
            timesteps: settings.timesteps,
            prediction: settings.target,
            dataset: dataset.description.clone(),
            lr: settings.lr,
            batch: settings.batch,
            flip: settings.flip,
            // So that `diffuse sample --class` takes the names of the training subfolders.
            class_names: match config.num_classes {
                Some(_) => dataset.class_names.clone(),
                None => Vec::new(),
            },
        };
        Ok(Trainer {
            record,
            settings,
            net,
            ema,
            adam,
            hyper,
            rng,
            loss_sum,
            zero: Tensor::zeros(gpu, &[1], DType::F32)?,
            norm,
            step_dispatches: d,
            source,
            rng_offset,
            placement_note,
            step,
            unreported: 0,
            reports: Default::default(),
        })
    }

    /// Where the data lives and why ("data: … resident on the GPU" or "… streamed from host memory (…)").
    pub fn placement_note(&self) -> &str {
        &self.placement_note
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
        let s = &self.settings;
        Hyper {
            lr: s.lr_at(self.step),
            ema_decay: s.ema_decay_at(self.step),
        }
        .write(gpu, &self.hyper)?;
        let mut rec = Recorder::new(gpu);
        let upload = self.upload_rows(gpu, &mut rec)?;
        rec.dispatch(&self.step_dispatches);
        self.step += 1;
        self.rng_offset += 1;
        self.unreported += 1;
        let pending = report.then(|| {
            let values = rec.read_later(&[&self.loss_sum, &self.norm.view(gpu, 0, &[1])?]);
            rec.copy(&self.zero, &self.loss_sum)?;
            Ok::<_, Error>(values)
        });
        rec.submit();
        if let (Some(filled), Source::Streamed { ring, .. }) = (upload, &mut self.source) {
            ring.release(filled);
        }
        if let Some(pending) = pending {
            let mut values = pending?;
            values.request();
            self.reports.push_back(PendingReport {
                step: self.step,
                steps_summed: std::mem::take(&mut self.unreported),
                values,
            });
        }
        Ok(())
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
            self.settings.batch,
            *len as u32,
        );
        let filled = ring.fill(gpu, |view| {
            for (j, &i) in index.iter().enumerate() {
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
                values[0],
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
            let (step, steps_summed) = (front.step, front.steps_summed);
            let values = front.values.wait_f32(gpu)?;
            done.push(Self::report(step, steps_summed, values[0], values[1])?);
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

    /// Everything needed to resume exactly or to sample (reads the GPU state back).
    pub fn checkpoint(&self, gpu: &Gpu) -> Result<Checkpoint> {
        let offset = self.rng.read_u32(gpu)?;
        Ok(Checkpoint {
            config: self.settings.model.clone(),
            step: self.step,
            seed: self.settings.seed,
            rng_offset: offset[0] as u64 | (offset[1] as u64) << 32,
            params: self.net.params.read_flat(gpu)?,
            ema: self.ema.read_flat(gpu)?,
            adam: Some((
                read_shards(gpu, &self.adam.m)?,
                read_shards(gpu, &self.adam.v)?,
            )),
            training: self.record.clone(),
        })
    }
}

/// A flat vector read back from its shards, in order.
fn read_shards(gpu: &Gpu, shards: &[Tensor]) -> Result<Vec<f32>> {
    let mut flat = Vec::new();
    for s in shards {
        flat.extend(s.read_f32(gpu)?);
    }
    Ok(flat)
}

/// A flat vector written into its shards, in order.
fn write_shards(gpu: &Gpu, shards: &[Tensor], flat: &[f32]) -> Result<()> {
    let total: usize = shards.iter().map(Tensor::len).sum();
    if flat.len() != total {
        return Err(Error::shape(
            "write_shards",
            format!("{} values for shards of {total}", flat.len()),
        ));
    }
    let mut at = 0;
    for s in shards {
        s.write_f32(gpu, &flat[at..at + s.len()])?;
        at += s.len();
    }
    Ok(())
}
