//! The U-Net as a sampler's model ([`Denoiser`]): each evaluation sets the step's timestep, copies x into the
//! network's input, records the (prebuilt) forward pass, and copies the prediction out — with classifier-free
//! guidance, on a doubled batch whose second half is unconditional: ε̂ = (1 + w)·ε(x, c) − w·ε(x, ∅). And
//! [`max_batch`], the most images a sampling batch of it may hold.

use crate::diffusion::process::{Evaluation, Trained};
use crate::diffusion::samplers::{NoiseLevel, Prediction};
use crate::error::{Error, Result};
use crate::gpu::memory::Growth;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{batch, elementwise};
use crate::model::unet::Net;
use crate::model::{ParamBuffers, UNetConfig};
use crate::sample::Denoiser;

pub struct UNetDenoiser {
    net: Net,
    forward: Vec<Dispatch>,
    trained: Trained,
    /// A batch of images, for the scaled input of a guided score-based model and its guided output.
    work: Option<Tensor>,
    /// The guidance weight w where sampling is guided (a class-conditional model and a class).
    guidance: Option<f32>,
}

/// The most images a sampling batch may hold on `gpu`: the inference net is measured at batch 1 and 2 (memory
/// is affine in the batch) and held to the per-buffer limit and, if given, `budget` bytes. `guided`: the net runs
/// two copies of each image. An error names the limit when not even one image fits.
pub fn max_batch(
    gpu: &Gpu,
    config: &UNetConfig,
    params: &ParamBuffers,
    guided: bool,
    budget: Option<u64>,
) -> Result<usize> {
    let copies = if guided { 2 } else { 1 };
    let forward = |batch: usize| Net::new(gpu, config, params, batch * copies)?.forward(gpu);
    let limit = crate::gpu::tensor::max_tensor_bytes(gpu);
    let growth = Growth::measure(&forward(1)?, &forward(2)?, limit);
    // Batch m runs the net on m·copies images; both bounds grow with m, so the largest m that fits is found by
    // doubling then bisecting.
    let fits = |m: usize| {
        let images = m * copies;
        growth.largest(images) <= limit && budget.is_none_or(|b| growth.bytes(images) <= b)
    };
    if !fits(1) {
        return Err(Error::Usage(format!(
            "one image does not fit: it needs a {} MB buffer{}; the adapter binds at most {} MB per buffer{}. \
             Sample a smaller model",
            growth.largest(copies) / 1_000_000,
            budget.map_or(String::new(), |_| format!(
                " and about {} MB in all",
                growth.bytes(copies) / 1_000_000
            )),
            limit / 1_000_000,
            budget.map_or(String::new(), |b| format!(
                " and --memory-budget allows {} MB",
                b / 1_000_000
            )),
        )));
    }
    const MOST: usize = 1 << 16;
    let (mut lo, mut hi) = (1, 2);
    while hi <= MOST && fits(hi) {
        (lo, hi) = (hi, hi * 2);
    }
    // fits(lo), and hi does not fit or passes MOST.
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo.min(MOST))
}

impl UNetDenoiser {
    /// A denoiser for batches of `batch` images. `classes`: the class of each image (class-conditional models;
    /// one entry applies to all; None samples unconditionally through the "no class" label). `guidance`: the
    /// weight w (0 disables guidance).
    pub fn new(
        gpu: &Gpu,
        config: &UNetConfig,
        params: &ParamBuffers,
        batch: usize,
        classes: Option<&[u32]>,
        guidance: f32,
        trained: impl Into<Trained>,
    ) -> Result<UNetDenoiser> {
        let trained = trained.into();
        let guided = match (config.num_classes, classes) {
            (Some(count), Some(list)) => {
                if let Some(&c) = list.iter().find(|&&c| c as usize >= count) {
                    return Err(Error::Usage(format!(
                        "class {c} does not exist: the model has classes 0..{}",
                        count - 1
                    )));
                }
                if list.len() != 1 && list.len() != batch {
                    return Err(Error::Usage(format!(
                        "{} classes given for {batch} images: give one, or one per image",
                        list.len()
                    )));
                }
                guidance != 0.0
            }
            (None, Some(_)) => {
                return Err(Error::Usage(
                    "this model is unconditional: it takes no --class".into(),
                ));
            }
            _ => false,
        };
        let mut net = Net::new(gpu, config, params, if guided { 2 * batch } else { batch })?;
        let scored = trained.objective.draw().is_some();
        if scored {
            net = net.with_real_noise_level(gpu)?;
        }
        let s = config.image_size;
        let image = [batch, config.in_channels, s, s];
        let work = (scored && guided)
            .then(|| Tensor::zeros(gpu, &image, crate::gpu::DType::F32))
            .transpose()?;
        if let (Some(labels), Some(count)) = (&net.labels, config.num_classes) {
            let null = count as u32;
            let mut values: Vec<u32> = match classes {
                Some([one]) => vec![*one; batch],
                Some(list) => list.to_vec(),
                None => vec![null; batch],
            };
            if guided {
                values.extend(std::iter::repeat_n(null, batch));
            }
            labels.write_u32(gpu, &values)?;
        }
        let forward = net.forward(gpu)?;
        Ok(UNetDenoiser {
            net,
            forward,
            trained,
            work,
            guidance: guided.then_some(guidance),
        })
    }
}

impl Denoiser for UNetDenoiser {
    fn prediction(&self) -> Prediction {
        self.trained.prediction()
    }

    fn predict(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        level: &NoiseLevel,
        out: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        if let Some(evaluation) = self.trained.objective.evaluation(level) {
            return self.predict_scored(gpu, x, &evaluation, out);
        }
        let net = &self.net;
        let mut d = vec![batch::fill_u32(
            gpu,
            &net.timesteps,
            level.t.round() as u32,
        )?];
        d.push(match self.guidance {
            Some(_) => elementwise::repeat2(gpu, x, &net.input)?,
            None => elementwise::scale(gpu, x, 1.0, &net.input)?,
        });
        d.extend(self.forward.iter().cloned());
        d.push(match self.guidance {
            Some(w) => elementwise::guidance(gpu, net.output(), w, out)?,
            None => elementwise::scale(gpu, net.output(), 1.0, out)?,
        });
        Ok(d)
    }
}

impl UNetDenoiser {
    /// A score-based model at a level: the net sees `input_scale·x` conditioned on c_noise, and the prediction is
    /// `out_x·x + out_f·F` (F guided where the sampling is).
    fn predict_scored(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        e: &Evaluation,
        out: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let net = &self.net;
        let mut d = vec![batch::fill_f32(gpu, &net.timesteps, e.c_noise as f32)?];
        match (&self.work, self.guidance) {
            (Some(work), Some(w)) => {
                d.push(elementwise::scale(gpu, x, e.input_scale as f32, work)?);
                d.push(elementwise::repeat2(gpu, work, &net.input)?);
                d.extend(self.forward.iter().cloned());
                d.push(elementwise::guidance(gpu, net.output(), w, work)?);
                d.push(elementwise::scale(gpu, work, e.out_f as f32, out)?);
            }
            _ => {
                d.push(elementwise::scale(
                    gpu,
                    x,
                    e.input_scale as f32,
                    &net.input,
                )?);
                d.extend(self.forward.iter().cloned());
                d.push(elementwise::scale(gpu, net.output(), e.out_f as f32, out)?);
            }
        }
        if e.out_x != 0.0 {
            d.push(elementwise::axpy(gpu, e.out_x as f32, x, out)?);
        }
        Ok(d)
    }
}
