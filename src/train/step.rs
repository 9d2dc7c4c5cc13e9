//! The recorded training step: its buffers, each forward/backward pass (draws, gather, noising, forward, loss,
//! backward, the gradient's sum over passes) and the update (clip, Adam, EMA, RNG). Recorded once; every step
//! submits the same dispatches.

use crate::data::Dataset;
use crate::diffusion::process::Draw;
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::batch::PackedImages;
use crate::kernels::noise::DrawnLevels;
use crate::kernels::optimizer::{self, AdamState};
use crate::kernels::random::Stream;
use crate::kernels::{batch, elementwise, loss, noise, random};
use crate::model::unet::Net;
use crate::model::ParamBuffers;

use super::{stream, TrainSettings};

/// The step's buffers besides the net's, for passes of `m` images.
pub(super) struct StepBuffers {
    /// The dataset indices each pass draws.
    pub index: Tensor,
    x0: Tensor,
    eps: Tensor,
    target: Tensor,
    d_pred: Tensor,
    loss_value: Tensor,
    /// The step's mean loss, summed over its passes (and the steps since the last report).
    pub loss_sum: Tensor,
    /// [gradient norm, clip scale].
    pub norm: Tensor,
    /// The step's learning rate and EMA decay, written by the host before each submission.
    pub hyper: Tensor,
    /// The schedule's noising coefficients, and (Min-SNR-γ) one loss weight per timestep.
    table: Tensor,
    loss_weights: Option<Tensor>,
    /// A score-based objective's levels, drawn per image.
    drawn: Option<Drawn>,
    flip_u: Tensor,
    /// Every image's label, the pass's label-drop uniforms, the class count (class-conditional models).
    labels: Option<(Tensor, Tensor, u32)>,
    /// 1/passes over all ranks: each pass's share of the step's loss and gradient.
    share: Tensor,
}

impl StepBuffers {
    pub fn new(
        gpu: &Gpu,
        settings: &TrainSettings,
        dataset: &Dataset,
        net: &Net,
        m: usize,
        all_passes: usize,
    ) -> Result<StepBuffers> {
        let (c, s) = (settings.model.in_channels, settings.model.image_size);
        let image = |gpu| Tensor::zeros(gpu, &[m, c, s, s], DType::F32);
        let schedule = settings.noise_schedule()?;
        let loss_weights = match settings.min_snr_gamma {
            Some(gamma) => Some(loss::upload_weights(
                gpu,
                &schedule.min_snr_weights(gamma, settings.target)?,
            )?),
            None => None,
        };
        Ok(StepBuffers {
            index: Tensor::zeros(gpu, &[m], DType::U32)?,
            x0: image(gpu)?,
            eps: image(gpu)?,
            target: image(gpu)?,
            d_pred: image(gpu)?,
            loss_value: Tensor::zeros(gpu, &[1], DType::F32)?,
            loss_sum: Tensor::zeros(gpu, &[1], DType::F32)?,
            norm: Tensor::zeros(gpu, &[optimizer::NORM_LEN], DType::F32)?,
            hyper: Tensor::zeros(gpu, &[optimizer::HYPER_LEN], DType::F32)?,
            table: noise::upload_table(gpu, &schedule.noise_table())?,
            loss_weights,
            drawn: Drawn::new(gpu, settings, m)?,
            flip_u: Tensor::zeros(gpu, &[m], DType::F32)?,
            labels: labels(gpu, settings, dataset, net, m)?,
            share: Tensor::from_f32(gpu, &[1], &[1.0 / all_passes as f32])?,
        })
    }
}

/// What a score-based objective's passes draw and weigh: one level per image, from a uniform or normal draw.
struct Drawn {
    levels: DrawnLevels,
    law: Draw,
    /// [m] f32: each image's draw, then its loss weight.
    draw: Tensor,
    weight: Tensor,
    /// [m] u32: 0, 1, …, m − 1, so that the weighted loss reads image n's weight at `weight[n]`.
    identity: Tensor,
}

impl Drawn {
    fn new(gpu: &Gpu, settings: &TrainSettings, m: usize) -> Result<Option<Drawn>> {
        let Some(law) = settings.objective.draw() else {
            return Ok(None);
        };
        let identity: Vec<u32> = (0..m as u32).collect();
        Ok(Some(Drawn {
            levels: DrawnLevels::new(gpu, &settings.objective)?,
            law,
            draw: Tensor::zeros(gpu, &[m], DType::F32)?,
            weight: Tensor::zeros(gpu, &[m], DType::F32)?,
            identity: Tensor::from_u32(gpu, &[m], &identity)?,
        }))
    }
}

/// The labels of a class-conditional model's dataset, checked against its class count.
fn labels(
    gpu: &Gpu,
    settings: &TrainSettings,
    dataset: &Dataset,
    net: &Net,
    m: usize,
) -> Result<Option<(Tensor, Tensor, u32)>> {
    let (Some(classes), Some(_)) = (settings.model.num_classes, &net.labels) else {
        return Ok(None);
    };
    let all = dataset.labels.as_ref().ok_or_else(|| {
        Error::Usage(
            "a class-conditional model needs a labelled dataset (MNIST labels or class subfolders)"
                .into(),
        )
    })?;
    if let Some(&bad) = all.iter().find(|&&l| l as usize >= classes) {
        return Err(Error::Usage(format!(
            "the dataset has label {bad}, but the model has {classes} classes"
        )));
    }
    Ok(Some((
        Tensor::from_u32(gpu, &[all.len()], all)?,
        Tensor::zeros(gpu, &[m], DType::F32)?,
        classes as u32,
    )))
}

/// What a pass reads besides its buffers.
pub(super) struct Pass<'a> {
    pub settings: &'a TrainSettings,
    pub net: &'a Net,
    pub buffers: &'a StepBuffers,
    pub data: &'a PackedImages,
    /// The RNG state tensor (its offset advances once per step).
    pub rng: &'a Tensor,
    pub dataset_len: usize,
    /// Passes of the step over all ranks.
    pub all_passes: usize,
}

impl Pass<'_> {
    /// Pass `j` of the step's passes over all ranks (drawing the numbers of images j·m..(j+1)·m of the step's
    /// draw), gathering its rows through `gather_index`.
    pub fn record(&self, gpu: &Gpu, j: usize, gather_index: &Tensor) -> Result<Vec<Dispatch>> {
        let mut d = self.draw_batch(gpu, j, gather_index)?;
        let (b, net) = (self.buffers, self.net);
        d.extend(net.forward_part(gpu, j)?);
        let weights = match &b.drawn {
            Some(drawn) => Some(loss::SampleWeights {
                t: &drawn.identity,
                table: &drawn.weight,
            }),
            None => b.loss_weights.as_ref().map(|table| loss::SampleWeights {
                t: &net.timesteps,
                table,
            }),
        };
        let out = net.output();
        d.extend(match weights {
            Some(w) => loss::mse_forward_weighted(gpu, out, &b.target, w, &b.loss_value)?,
            None => loss::mse_forward(gpu, out, &b.target, &b.loss_value)?,
        });
        let share = 1.0 / self.all_passes as f32;
        d.push(elementwise::axpy(gpu, share, &b.loss_value, &b.loss_sum)?);
        let d_loss = (self.all_passes > 1).then_some(&b.share);
        d.push(match weights {
            Some(w) => loss::mse_backward_weighted(gpu, out, &b.target, w, d_loss, &b.d_pred)?,
            None => loss::mse_backward(gpu, out, &b.target, d_loss, &b.d_pred)?,
        });
        d.extend(net.backward_part(gpu, &b.d_pred, j)?);
        Ok(d)
    }

    /// The pass's draws: indices, flips, label drops, timesteps, noise; then the gather and the noising.
    fn draw_batch(&self, gpu: &Gpu, j: usize, gather_index: &Tensor) -> Result<Vec<Dispatch>> {
        let (s, b, net) = (self.settings, self.buffers, self.net);
        let m = b.index.len();
        let image = s.model.in_channels * s.model.image_size * s.model.image_size;
        let at = |stream: u32, per_image: usize| Stream::from_element(stream, j * m * per_image);
        let (seed, rng) = (s.seed, self.rng);
        let mut d = vec![random::fill_uniform_int(
            gpu,
            &b.index,
            self.dataset_len as u32,
            seed,
            at(stream::INDEX, 1),
            rng,
        )?];
        if s.flip {
            d.push(random::fill_uniform(
                gpu,
                &b.flip_u,
                seed,
                at(stream::FLIP, 1),
                rng,
            )?);
            d.push(batch::gather_rows_flip(
                gpu,
                self.data,
                gather_index,
                &b.flip_u,
                &b.x0,
            )?);
        } else {
            d.push(batch::gather_rows(gpu, self.data, gather_index, &b.x0)?);
        }
        if let (Some((all, u, classes)), Some(labels)) = (&b.labels, &net.labels) {
            d.push(random::fill_uniform(
                gpu,
                u,
                seed,
                at(stream::LABEL_DROP, 1),
                rng,
            )?);
            d.push(batch::gather_labels(
                gpu, all, &b.index, u, s.p_uncond, *classes, labels,
            )?);
        }
        // Each image's level (a timestep index, or a score-based objective's draw), its noise, then the noising.
        let at_level = at(stream::TIMESTEP, 1);
        d.push(match &b.drawn {
            Some(drawn) => match drawn.law {
                Draw::Uniform => random::fill_uniform(gpu, &drawn.draw, seed, at_level, rng)?,
                Draw::Normal => random::fill_normal(gpu, &drawn.draw, seed, at_level, rng)?,
            },
            None => random::fill_uniform_int(
                gpu,
                &net.timesteps,
                s.timesteps as u32,
                seed,
                at_level,
                rng,
            )?,
        });
        d.push(random::fill_normal(
            gpu,
            &b.eps,
            seed,
            at(stream::NOISE, image),
            rng,
        )?);
        d.push(match &b.drawn {
            Some(drawn) => noise::noise_forward_drawn(
                gpu,
                &drawn.levels,
                &b.x0,
                &b.eps,
                &drawn.draw,
                &net.input,
                &b.target,
                &net.timesteps,
                &drawn.weight,
            )?,
            None => noise::noise_forward(
                gpu,
                &b.x0,
                &b.eps,
                &net.timesteps,
                &b.table,
                s.target,
                &net.input,
                &b.target,
            )?,
        });
        Ok(d)
    }
}

/// Adds pass `local`'s gradient into `sum` (the first pass copies it).
pub(super) fn accumulate(
    gpu: &Gpu,
    grads: &ParamBuffers,
    sum: &ParamBuffers,
    local: usize,
) -> Result<Vec<Dispatch>> {
    grads
        .shards()
        .iter()
        .zip(sum.shards())
        .map(|(g, acc)| match local {
            0 => elementwise::scale(gpu, g, 1.0, acc),
            _ => elementwise::axpy(gpu, 1.0, g, acc),
        })
        .collect()
}

/// The update: the gradient's norm and clip, Adam, the EMA, and the RNG's advance to the next step.
pub(super) fn update(
    gpu: &Gpu,
    settings: &TrainSettings,
    buffers: &StepBuffers,
    (params, grads, ema): (&ParamBuffers, &ParamBuffers, &ParamBuffers),
    adam: &AdamState,
    rng: &Tensor,
) -> Result<Vec<Dispatch>> {
    let norm = &buffers.norm;
    let mut d = optimizer::grad_norm(gpu, grads.shards(), settings.grad_clip, norm)?;
    d.extend(optimizer::adam_step(
        gpu,
        &settings.adam,
        params.shards(),
        grads.shards(),
        adam,
        &buffers.hyper,
        Some(norm),
    )?);
    for (p, e) in params.shards().iter().zip(ema.shards()) {
        d.push(optimizer::ema_update(gpu, p, e, &buffers.hyper)?);
    }
    d.push(random::advance(gpu, rng, 1)?);
    Ok(d)
}
