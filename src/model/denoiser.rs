//! The U-Net as a sampler's model ([`Denoiser`]): each evaluation sets the step's timestep, copies x into the
//! network's input, records the (prebuilt) forward pass, and copies the prediction out — with classifier-free
//! guidance, on a doubled batch whose second half is unconditional: ε̂ = (1 + w)·ε(x, c) − w·ε(x, ∅). [`Batched`]
//! samples any number of images with it, a batch at a time.

use crate::diffusion::samplers::{NoiseLevel, Plan, Prediction};
use crate::distributed::Replicas;
use crate::error::{Error, Result};
use crate::gpu::memory::Growth;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::kernels::{batch, elementwise};
use crate::model::unet::Net;
use crate::model::{ParamBuffers, SplitMix64, UNetConfig};
use crate::sample::{Denoiser, Sampler};

pub struct UNetDenoiser {
    net: Net,
    forward: Vec<Dispatch>,
    prediction: Prediction,
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
        prediction: Prediction,
    ) -> Result<UNetDenoiser> {
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
        let net = Net::new(gpu, config, params, if guided { 2 * batch } else { batch })?;
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
            prediction,
            guidance: guided.then_some(guidance),
        })
    }
}

impl Denoiser for UNetDenoiser {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn predict(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        level: &NoiseLevel,
        out: &Tensor,
    ) -> Result<Vec<Dispatch>> {
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

/// The seed of batch `k` of a many-image sampling run: `seed` itself for the first, then the k-th draw of
/// SplitMix64 seeded with it (well mixed, so that neighbouring seeds do not share batches).
pub fn batch_seed(seed: u64, k: usize) -> u64 {
    let mut rng = SplitMix64::new(seed);
    (0..k).fold(seed, |_, _| rng.next_u64())
}

/// Many images from one U-Net, sampled in batches (`diffuse sample`, and the preview grids of training): what is
/// the same for every batch.
pub struct Batched<'a> {
    pub config: &'a UNetConfig,
    pub params: &'a ParamBuffers,
    pub prediction: Prediction,
    pub guidance: f32,
    /// One class for every image, or one per image (split with the images); None: unconditional.
    pub classes: Option<&'a [u32]>,
    /// The starting x of every image ([n, C, S, S], flat) instead of drawn noise.
    pub given: Option<&'a [f32]>,
    /// Snapshots of x kept per batch (the denoising trajectory).
    pub frames: usize,
    pub seed: u64,
}

/// What a batched sampling run produced.
pub struct Samples {
    /// Every image, [n, C, S, S] flat, in order.
    pub pixels: Vec<f32>,
    /// With `frames` > 0, the trajectory of the last batch this process sampled.
    pub trajectory: Option<Vec<Vec<f32>>>,
}

impl Batched<'_> {
    /// `n` images from `plan` in batches of `batch`, batch k from the seed [`batch_seed`]`(seed, k)`; `done` is
    /// called after each batch with the number of images finished.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(
        &self,
        gpu: &Gpu,
        plan: &Plan,
        n: usize,
        batch: usize,
        done: impl FnMut(usize),
    ) -> Result<Samples> {
        crate::gpu::future::block_on(self.run_async(gpu, plan, n, batch, done))
    }

    /// [`Batched::run`], without blocking.
    pub async fn run_async(
        &self,
        gpu: &Gpu,
        plan: &Plan,
        n: usize,
        batch: usize,
        done: impl FnMut(usize),
    ) -> Result<Samples> {
        let all = self
            .run_across_async(gpu, plan, n, batch, None, done)
            .await?;
        Ok(all.expect("one process holds every image"))
    }

    /// [`Batched::run`] shared by the ranks of a job (`replicas`): rank r samples batches r, r + N, r + 2N, …
    /// (each with its own seed, so the images are those of one process), and after each round rank 0 gathers
    /// the round's batches in order. The images on rank 0, None on the others; `done` is called on every rank
    /// after each round with the number of images the job has finished.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run_across(
        &self,
        gpu: &Gpu,
        plan: &Plan,
        n: usize,
        batch: usize,
        replicas: Option<&dyn Replicas>,
        done: impl FnMut(usize),
    ) -> Result<Option<Samples>> {
        let run = self.run_across_async(gpu, plan, n, batch, replicas, done);
        crate::gpu::future::block_on(run)
    }

    /// [`Batched::run_across`], without blocking.
    pub async fn run_across_async(
        &self,
        gpu: &Gpu,
        plan: &Plan,
        n: usize,
        batch: usize,
        replicas: Option<&dyn Replicas>,
        mut done: impl FnMut(usize),
    ) -> Result<Option<Samples>> {
        let batch = batch.max(1);
        let (rank, ranks) = replicas.map_or((0, 1), |r| (r.rank(), r.ranks()));
        let batches = n.div_ceil(batch);
        let mut pixels = Vec::new();
        let mut trajectory = None;
        for round in 0..batches.div_ceil(ranks) {
            let k = round * ranks + rank;
            let mine = match k < batches {
                true => {
                    let batch = self.sample_batch(gpu, plan, n, batch, k).await?;
                    trajectory = batch.trajectory.or(trajectory);
                    batch.pixels
                }
                false => Vec::new(),
            };
            match replicas {
                None => pixels.extend(mine),
                Some(r) => pixels.extend(r.gather_f32(&mine).unwrap_or_default()),
            }
            done(((round + 1) * ranks * batch).min(n));
        }
        Ok((rank == 0).then_some(Samples { pixels, trajectory }))
    }

    /// Batch `k`: its images, and its trajectory where frames are kept.
    async fn sample_batch(
        &self,
        gpu: &Gpu,
        plan: &Plan,
        n: usize,
        batch: usize,
        k: usize,
    ) -> Result<Samples> {
        let (c, s) = (self.config.in_channels, self.config.image_size);
        let image = c * s * s;
        let first = k * batch;
        let len = batch.min(n - first);
        let classes = self.classes.map(|list| match list.len() {
            1 => list,
            _ => &list[first..first + len],
        });
        let given = self
            .given
            .map(|values| {
                Tensor::from_f32(
                    gpu,
                    &[len, c, s, s],
                    &values[first * image..(first + len) * image],
                )
            })
            .transpose()?;
        let model = UNetDenoiser::new(
            gpu,
            self.config,
            self.params,
            len,
            classes,
            self.guidance,
            self.prediction,
        )?;
        let sampler = Sampler::with_trajectory(
            gpu,
            plan,
            &model,
            &[len, c, s, s],
            given.as_ref(),
            batch_seed(self.seed, k),
            self.frames,
        )?;
        Ok(Samples {
            pixels: sampler.run_async(gpu).await?,
            trajectory: match self.frames {
                0 => None,
                _ => Some(sampler.frames_async(gpu).await?),
            },
        })
    }
}
