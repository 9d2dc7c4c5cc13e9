//! Many images from one U-Net, sampled in batches ([`Batched`]): `diffuse sample` and the preview grids of
//! training, on one process or shared by the ranks of a job, batch k from its own seed ([`batch_seed`]).

use crate::diffusion::process::Trained;
use crate::diffusion::samplers::Plan;
use crate::distributed::Replicas;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::model::{ParamBuffers, SplitMix64, UNetConfig};
use crate::sample::unet::UNetDenoiser;
use crate::sample::Sampler;

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
    /// What the network's output means.
    pub trained: Trained,
    pub guidance: f32,
    /// One class for every image, or one per image (split with the images); None: unconditional.
    pub classes: Option<&'a [u32]>,
    /// The starting x of every image ([n, C, S, S], flat) instead of drawn noise.
    pub given: Option<&'a [f32]>,
    /// Snapshots of x kept per batch (the denoising trajectory).
    pub frames: usize,
    pub seed: u64,
    /// Asked after every sampler step (each then its own submission, the GPU idle in between): true ends the run
    /// with [`Error::Stopped`] (a training run's preview, which a Ctrl-C must not have to wait out). None: the
    /// whole loop in as few submissions as fit.
    pub stop: Option<&'a dyn Fn() -> bool>,
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
            self.trained,
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
        let pixels = match self.stop {
            None => sampler.run_async(gpu).await?,
            Some(stop) => {
                for step in 0..sampler.steps() {
                    sampler.submit_step(gpu, step)?;
                    gpu.idle().await?;
                    if stop() {
                        return Err(Error::Stopped("sampling"));
                    }
                }
                sampler.output().read_f32_async(gpu).await?
            }
        };
        Ok(Samples {
            pixels,
            trajectory: match self.frames {
                0 => None,
                _ => Some(sampler.frames_async(gpu).await?),
            },
        })
    }
}
