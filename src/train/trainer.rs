//! The trainer: the model's GPU state (weights, EMA, Adam's moments, RNG) and the recorded step, submitted once
//! per optimizer step; loss reports read back without draining the queue; the finiteness check and the checkpoint.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::checkpoint::{Checkpoint, TrainingRecord};
use crate::data::Dataset;
use crate::distributed::{self, Replicas, Slice};
use crate::error::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::future::block_on;
use crate::gpu::future::{received, Receiver};
use crate::gpu::{DType, Dispatch, Gpu, PendingRead, Recorder, Tensor};
use crate::kernels::optimizer::{self, AdamState, Hyper};
use crate::kernels::random;
use crate::model::param_buffers::max_shard_elements;
use crate::model::unet::{DropoutDraw, Net};
use crate::model::{ParamBuffers, ParamLayout};

use super::exchange::{Exchange, ExchangeStats};
use super::source::{Placed, Source};
use super::step::{self, Pass, StepBuffers};
use super::{table, BatchPlan, TrainSettings};

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

/// Training steps the host may queue ahead of the GPU: before step n is submitted, step n − 2 has finished.
pub const MAX_IN_FLIGHT: usize = 2;

pub struct Trainer {
    pub settings: TrainSettings,
    pub net: Net,
    pub ema: ParamBuffers,
    /// Adam's first and second moments, flat as the parameters (the recorded step binds their shards).
    moments: [ParamBuffers; 2],
    rng: Tensor,
    buffers: StepBuffers,
    /// One zero, copied over the loss sum after each report.
    zero: Tensor,
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
    reports: VecDeque<PendingReport>,
    /// Steps submitted and not yet known finished, oldest first ([`MAX_IN_FLIGHT`]).
    in_flight: VecDeque<(wgpu::SubmissionIndex, Receiver<()>)>,
    most_in_flight: usize,
}

/// The model's state on the GPU: the weights, their EMA, Adam's moments and the step and RNG position, from a
/// checkpoint or freshly initialised.
struct State {
    params: ParamBuffers,
    ema: ParamBuffers,
    moments: [ParamBuffers; 2],
    adam: AdamState,
    rng: Tensor,
    step: u64,
    rng_offset: u64,
}

impl State {
    fn new(gpu: &Gpu, settings: &TrainSettings, resume: Option<&Checkpoint>) -> Result<State> {
        let config = &settings.model;
        let layout = ParamLayout::new(config);
        let (initial, ema_values, step, rng_offset) = match resume {
            Some(ckpt) if &ckpt.config != config => {
                return Err(Error::Usage(format!(
                    "the checkpoint holds another model: {}. Resume with the --preset and model options it was \
                     trained with, or start a new run with another --out",
                    ckpt.config.differences(config).join(", ")
                )))
            }
            Some(ckpt) => (ckpt.params.clone(), ckpt.ema.clone(), ckpt.step, ckpt.rng_offset),
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
        Ok(State {
            params,
            ema,
            moments,
            adam,
            rng: random::rng_state(gpu, rng_offset)?,
            step,
            rng_offset,
        })
    }
}

/// This rank's images of each step: a slice of the step's batch × grad_accum (all of them in one process).
fn slice_of(settings: &TrainSettings, replicas: Option<&Rc<dyn Replicas>>) -> Result<Slice> {
    let total = settings.batch * settings.grad_accum;
    match replicas {
        Some(r) => Slice::of(total, r.rank(), r.ranks()).map_err(Error::Usage),
        None => Ok(Slice::whole(total)),
    }
}

/// Refuses a dataset the model cannot train on.
fn check_data(settings: &TrainSettings, dataset: &Dataset) -> Result<()> {
    let (c, s) = (settings.model.in_channels, settings.model.image_size);
    if (dataset.channels, dataset.size) != (c, s) {
        return Err(Error::Usage(format!(
            "the dataset holds {}×{}×{} images but the model wants {c}×{s}×{s}",
            dataset.channels, dataset.size, dataset.size
        )));
    }
    if dataset.len == 0 {
        return Err(Error::Usage("the dataset is empty".into()));
    }
    Ok(())
}

/// The norms of the weights and of their EMA, read before anything is saved: a NaN or ±∞ anywhere makes its norm
/// non-finite. The norm kernel reuses the optimizer's deterministic two-stage reduction.
fn finite_check(
    gpu: &Gpu,
    params: &ParamBuffers,
    ema: &ParamBuffers,
) -> Result<(Vec<Dispatch>, [Tensor; 2])> {
    let norms = [
        Tensor::zeros(gpu, &[optimizer::NORM_LEN], DType::F32)?,
        Tensor::zeros(gpu, &[optimizer::NORM_LEN], DType::F32)?,
    ];
    let mut d = optimizer::grad_norm(gpu, params.shards(), None, &norms[0])?;
    d.extend(optimizer::grad_norm(gpu, ema.shards(), None, &norms[1])?);
    Ok((d, norms))
}

/// The step's passes on this rank, then the update: (the dispatches, where the update starts, the gradient the
/// optimizer reads).
fn record_step(
    gpu: &Gpu,
    pass: &Pass,
    gather_index: &[Tensor],
    first_pass: usize,
    state: &State,
) -> Result<(Vec<Dispatch>, usize, ParamBuffers)> {
    let net = pass.net;
    // The gradient the optimizer reads: the net's own with one pass, else the sum over the passes.
    let sum = match gather_index.len() {
        1 => None,
        _ => Some(net.grads.zeros_like(gpu)?),
    };
    let mut d = Vec::new();
    for (local, gather_index) in gather_index.iter().enumerate() {
        d.extend(pass.record(gpu, first_pass + local, gather_index)?);
        if let Some(sum) = &sum {
            d.extend(step::accumulate(gpu, &net.grads, sum, local)?);
        }
    }
    let grads = sum.unwrap_or_else(|| net.grads.clone());
    let update_at = d.len();
    let weights = (&state.params, &grads, &state.ema);
    d.extend(step::update(
        gpu,
        pass.settings,
        pass.buffers,
        weights,
        &state.adam,
        &state.rng,
    )?);
    Ok((d, update_at, grads))
}

/// What each checkpoint of the run records about its training.
fn training_record(
    settings: &TrainSettings,
    dataset: &Dataset,
    resume: Option<&Checkpoint>,
) -> TrainingRecord {
    TrainingRecord {
        settings: table::recorded(settings),
        dataset: dataset.description.clone(),
        changes: resume.map_or_else(Vec::new, |c| c.training.changes.clone()),
        // So that `diffuse sample --class` takes the names of the training subfolders.
        class_names: match settings.model.num_classes {
            Some(_) => dataset.class_names.clone(),
            None => Vec::new(),
        },
        // A fine-tune of an imported model samples as that model's scheduler did.
        scheduler: resume.and_then(|c| c.training.scheduler),
    }
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
        let slice = slice_of(&settings, replicas.as_ref())?;
        check_data(&settings, dataset)?;
        let state = State::new(gpu, &settings, resume)?;
        let dropout = DropoutDraw {
            seed: settings.seed,
            state: state.rng.clone(),
        };
        let d = dataset.image_len();
        let plan = BatchPlan::new(gpu, &settings, &state.params, &dropout, d, slice)?;
        let m = plan.micro_batch;
        // The step's passes over all ranks, and the number of this rank's first one.
        let total = settings.batch * settings.grad_accum;
        let (all_passes, first_pass) = (total / m, slice.first / m);
        let mut net = Net::for_training(gpu, &settings.model, &state.params, m, dropout)?;
        if settings.objective.draw().is_some() {
            net = net.with_real_noise_level(gpu)?;
        }
        let buffers = StepBuffers::new(gpu, &settings, dataset, &net, m, all_passes)?;
        let placed = Placed::new(gpu, &settings, dataset, &plan, slice, &buffers.index)?;
        let pass = Pass {
            settings: &settings,
            net: &net,
            buffers: &buffers,
            data: &placed.data,
            rng: &state.rng,
            dataset_len: dataset.len,
            all_passes,
        };
        let (step_dispatches, update_at, grads) =
            record_step(gpu, &pass, &placed.gather_index, first_pass, &state)?;
        let (finite_dispatches, finite_norms) = finite_check(gpu, &state.params, &state.ema)?;
        let exchange = replicas.map(|r| Exchange::new(gpu, r, &grads, &buffers.loss_sum));
        let trainer = Trainer {
            record: training_record(&settings, dataset, resume),
            settings,
            net,
            ema: state.ema,
            moments: state.moments,
            rng: state.rng,
            buffers,
            zero: Tensor::zeros(gpu, &[1], DType::F32)?,
            step_dispatches,
            update_at,
            exchange,
            slice,
            finite_dispatches,
            finite_norms,
            grads,
            plan,
            source: placed.source,
            rng_offset: state.rng_offset,
            placement_note: placed.note,
            step: state.step,
            unreported: 0,
            reports: VecDeque::new(),
            in_flight: VecDeque::new(),
            most_in_flight: 0,
        };
        if trainer.exchange.is_some() {
            // Every rank must start from the same weights, moments and RNG position (the same checkpoint).
            #[cfg(not(target_arch = "wasm32"))]
            trainer.verify_replicas(&trainer.checkpoint(gpu)?)?;
            #[cfg(target_arch = "wasm32")]
            return Err(Error::Usage(
                "data-parallel training needs the native build (MPI)".into(),
            ));
        }
        Ok(trainer)
    }

    /// This rank and the number of ranks (0 and 1 in a one-process run).
    pub fn rank(&self) -> (usize, usize) {
        (self.slice.rank, self.slice.ranks)
    }

    /// What the all-reduces have cost so far (None in a one-process run).
    pub fn exchange_stats(&self) -> Option<ExchangeStats> {
        self.exchange.as_ref().map(|e| e.stats())
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
            &[ckpt.step, ckpt.rng_offset, ckpt.training.settings.seed],
        );
        let sums = exchange.replicas().all_gather_u64(sum);
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
    #[cfg(not(target_arch = "wasm32"))]
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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step(&mut self, gpu: &Gpu, report: bool) -> Result<()> {
        block_on(self.step_async(gpu, report, false)).map(|_| ())
    }

    /// [`Trainer::step`], for a run that may be asked to stop (a signal): `stop` says this process was. Returns
    /// whether the run stops after this step — in a data-parallel run, whether any rank was asked, agreed through
    /// the step's all-reduce so that every rank stops at the same step. A stopping step always reports.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn step_or_stop(&mut self, gpu: &Gpu, report: bool, stop: bool) -> Result<bool> {
        block_on(self.step_async(gpu, report, stop))
    }

    /// [`Trainer::step_or_stop`], without blocking: it waits only for room in the queue ([`MAX_IN_FLIGHT`]), for
    /// an upload slot when the data is streamed, and for the all-reduce of a data-parallel run.
    pub async fn step_async(&mut self, gpu: &Gpu, report: bool, stop: bool) -> Result<bool> {
        self.room_async(gpu).await?;
        let s = &self.settings;
        Hyper {
            lr: s.lr_at(self.step),
            ema_decay: s.ema_decay_at(self.step),
        }
        .write(gpu, &self.buffers.hyper)?;
        let mut rec = Recorder::new(gpu);
        let mut upload = self
            .source
            .upload_rows_async(gpu, &mut rec, &self.settings, self.rng_offset, self.slice)
            .await?;
        let (passes, update) = self.step_dispatches.split_at(self.update_at);
        rec.dispatch(passes);
        let (stop, loss_sum) = match &mut self.exchange {
            None => (stop, None),
            Some(exchange) => {
                // Passes and the gradient's readback in one submission, then the all-reduce on the host, and the
                // update in a second submission that reads the uploaded sum.
                exchange.record(&mut rec);
                self.source.release(upload.take(), rec.submit());
                let (stop, loss_sum) = exchange.all_reduce_async(gpu, &self.grads, stop).await?;
                rec = Recorder::new(gpu);
                (stop, Some(loss_sum))
            }
        };
        rec.dispatch(update);
        self.step += 1;
        self.rng_offset += 1;
        self.unreported += 1;
        let pending = match report || stop {
            true => Some(self.record_report(gpu, &mut rec)?),
            false => None,
        };
        let submission = rec.submit();
        self.in_flight.push_back((submission.clone(), gpu.fence()));
        self.most_in_flight = self.most_in_flight.max(self.in_flight.len());
        self.source.release(upload, submission);
        if let Some(mut values) = pending {
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

    /// Waits (a fence, no readback) until fewer than [`MAX_IN_FLIGHT`] steps are queued, so that a fast GPU's
    /// queue, and the memory its steps hold, stays flat and a stop is answered within a step or two.
    async fn room_async(&mut self, gpu: &Gpu) -> Result<()> {
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            let (submission, done) = self.in_flight.pop_front().expect("a step is in flight");
            gpu.drive(Some(submission))?;
            received(done, "waiting for a training step").await?;
        }
        Ok(())
    }

    /// The most steps that were ever queued at once without being known finished (never over [`MAX_IN_FLIGHT`]).
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight
    }

    /// Records the copy of the loss sum since the last report and the gradient norm, then the sum's reset.
    fn record_report(&self, gpu: &Gpu, rec: &mut Recorder) -> Result<PendingRead> {
        let b = &self.buffers;
        let values = rec.read_later(&[&b.loss_sum, &b.norm.view(gpu, 0, &[1])?]);
        rec.copy(&self.zero, &b.loss_sum)?;
        Ok(values)
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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_losses(&mut self, gpu: &Gpu) -> Result<Vec<LossReport>> {
        block_on(self.wait_losses_async(gpu))
    }

    /// [`Trainer::wait_losses`], without blocking.
    pub async fn wait_losses_async(&mut self, gpu: &Gpu) -> Result<Vec<LossReport>> {
        let mut done = Vec::new();
        while let Some(front) = self.reports.pop_front() {
            let (step, steps_summed, loss_sum) = (front.step, front.steps_summed, front.loss_sum);
            let values = front.values.wait_f32_async(gpu).await?;
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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn check_finite(&self, gpu: &Gpu) -> Result<()> {
        block_on(self.check_finite_async(gpu))
    }

    /// [`Trainer::check_finite`], without blocking.
    pub async fn check_finite_async(&self, gpu: &Gpu) -> Result<()> {
        gpu.run_async(&self.finite_dispatches).await?;
        let weights = self.finite_norms[0].read_f32_async(gpu).await?[0];
        let ema = self.finite_norms[1].read_f32_async(gpu).await?[0];
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
    #[cfg(not(target_arch = "wasm32"))]
    pub fn checkpoint(&self, gpu: &Gpu) -> Result<Checkpoint> {
        block_on(self.checkpoint_async(gpu))
    }

    /// [`Trainer::checkpoint`], without blocking.
    pub async fn checkpoint_async(&self, gpu: &Gpu) -> Result<Checkpoint> {
        self.check_finite_async(gpu).await?;
        let offset = self.rng.read_u32_async(gpu).await?;
        Ok(Checkpoint {
            config: self.settings.model.clone(),
            step: self.step,
            rng_offset: offset[0] as u64 | (offset[1] as u64) << 32,
            params: self.net.params.read_flat_async(gpu).await?,
            ema: self.ema.read_flat_async(gpu).await?,
            adam: Some((
                self.moments[0].read_flat_async(gpu).await?,
                self.moments[1].read_flat_async(gpu).await?,
            )),
            training: self.record.clone(),
        })
    }
}
