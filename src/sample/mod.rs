//! Sampling on the GPU: a [`Plan`] (src/diffusion/samplers/) and a model recorded as one list of dispatches, so
//! the whole loop runs on the GPU with no readback until the end ([`Sampler::run`] submits it in a few large
//! command buffers; [`Sampler::record`] puts it all into the caller's).
//!
//! Per step: the model writes its output o for the current x; where the step adds noise, z ~ N(0, I) is drawn
//! (Philox, stream = 1 + the number of noisy steps before it, so every step of a run draws its own numbers); the step
//! kernel writes the next x into the other of two ping-pong buffers. Heun steps run the model twice (at x and at the
//! Euler predictor x'). Multistep solvers (DPM-Solver++, UniPC) carry their state, the corrected sample and the
//! last two x̂₀, in one buffer that their step kernel advances in place; dynamic thresholding adds a per-image
//! threshold kernel before the step. The initial x = init_scale·z is drawn with stream 0, unless the sampler was
//! built from a given x. The rng offset is bumped on the GPU after the last step, so submitting the same recording
//! again draws fresh noise (a new batch of samples).
//!
//! The folder: this file (the [`Sampler`] and the [`Denoiser`] trait, with the exact model as one), `unet.rs` (the
//! U-Net as a denoiser, with classifier-free guidance, and [`max_batch`]), `batched.rs` (many images in batches,
//! across ranks) and `spec.rs` (a sampler's name and options → its plan, for every front end).

pub mod batched;
pub mod spec;
pub mod unet;

pub use batched::{batch_seed, Batched, Samples};
pub use spec::SamplingDefaults;
pub use unet::{max_batch, UNetDenoiser};

use crate::diffusion::samplers::{FoldedStep, NoiseLevel, Plan, Prediction, X0Bound};
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Recorder, Tensor};
use crate::kernels::analytic::{analytic_predict, MixtureTable};
use crate::kernels::{check_f32, elementwise, random, step};

/// What a sampler needs of a model: its output kind, and the dispatches that compute its output for x at a level.
pub trait Denoiser {
    fn prediction(&self) -> Prediction;
    /// Dispatches, in order, that write the model's output for `x` at `level` into `out` (same shape as x).
    fn predict(
        &self,
        gpu: &Gpu,
        x: &Tensor,
        level: &NoiseLevel,
        out: &Tensor,
    ) -> Result<Vec<Dispatch>>;
}

/// The exact model of Gaussian-mixture data (shaders/analytic.wgsl) as a denoiser.
pub struct AnalyticModel {
    pub table: MixtureTable,
    pub prediction: Prediction,
}

impl Denoiser for AnalyticModel {
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
        Ok(vec![analytic_predict(
            gpu,
            &self.table,
            x,
            level,
            self.prediction,
            out,
        )?])
    }
}

/// ((p, q), (ratio, max)) of a step whose x̂₀ = p·x + q·o is dynamically thresholded.
type DynamicBound = ((f64, f64), (f64, f64));

fn dynamic_bound(step: &FoldedStep) -> Option<DynamicBound> {
    let (p, q, bound) = match *step {
        FoldedStep::Clipped(ref k) => (k.p, k.q, k.bound),
        FoldedStep::Multistep(ref m) => (m.p, m.q, m.bound),
        _ => return None,
    };
    match bound {
        X0Bound::Dynamic { ratio, max } => Some(((p, q), (ratio, max))),
        _ => None,
    }
}

/// A plan and a model recorded once: `record` it (or `run` it) as often as needed.
pub struct Sampler {
    dispatches: Vec<Dispatch>,
    initial: Tensor,
    output: Tensor,
    rng: Tensor,
    snapshots: Vec<Tensor>,
    /// Where each step's dispatches end (the first step's begin with drawing the initial x, the last one's end
    /// with the rng advance), and the buffer holding x after it: what [`Sampler::submit_step`] needs.
    steps: Vec<(usize, Tensor)>,
}

/// What recording a sampling loop works with: the model's outputs, the noise, the Heun predictor, the RNG, a
/// multistep solver's state and dynamic thresholding's per-sample thresholds (where used), and the dispatches.
struct Loop<'a> {
    gpu: &'a Gpu,
    model: &'a dyn Denoiser,
    seed: u64,
    o: Tensor,
    o2: Tensor,
    z: Tensor,
    x_pred: Tensor,
    /// x̂ = p·x + q·z of a churned step (where a plan has one).
    x_hat: Option<Tensor>,
    rng: Tensor,
    state: Option<Tensor>,
    scale: Option<Tensor>,
    /// The Philox stream of the next noisy step (0 draws the initial x).
    stream: u32,
    dispatches: Vec<Dispatch>,
}

impl<'a> Loop<'a> {
    fn new(
        gpu: &'a Gpu,
        model: &'a dyn Denoiser,
        seed: u64,
        initial: &Tensor,
        steps: &[crate::diffusion::Step],
        folded: &[FoldedStep],
    ) -> Result<Loop<'a>> {
        let shape = initial.shape();
        let new = || Tensor::zeros(gpu, shape, DType::F32);
        let state = folded
            .iter()
            .any(|f| matches!(f, FoldedStep::Multistep(_)))
            .then(|| Tensor::zeros(gpu, &[3 * initial.len()], DType::F32))
            .transpose()?;
        let samples = shape
            .first()
            .copied()
            .filter(|_| shape.len() > 1)
            .unwrap_or(1);
        let scale = folded
            .iter()
            .any(|f| dynamic_bound(f).is_some())
            .then(|| Tensor::zeros(gpu, &[samples], DType::F32))
            .transpose()?;
        Ok(Loop {
            gpu,
            model,
            seed,
            o: new()?,
            o2: new()?,
            z: new()?,
            x_pred: new()?,
            x_hat: steps
                .iter()
                .any(|s| s.churn().is_some())
                .then(new)
                .transpose()?,
            rng: random::rng_state(gpu, 0)?,
            state,
            scale,
            stream: 1,
            dispatches: Vec::new(),
        })
    }

    /// One step from `current` into `next`: the model's output (twice for Heun), the threshold of a dynamically
    /// bounded step, the noise of a noisy one, and the step kernel.
    fn step(
        &mut self,
        s: &crate::diffusion::Step,
        folded: FoldedStep,
        current: &Tensor,
        next: &Tensor,
    ) -> Result<()> {
        let gpu = self.gpu;
        // A churned step first raises the noise: x̂ = p·x + q·z, and runs from x̂.
        let raised;
        let current = match (s.churn(), self.x_hat.clone()) {
            (Some(churn), Some(x_hat)) => {
                self.draw()?;
                let d = &mut self.dispatches;
                d.push(elementwise::scale(gpu, current, churn.p as f32, &x_hat)?);
                d.push(elementwise::axpy(gpu, churn.q as f32, &self.z, &x_hat)?);
                raised = x_hat;
                &raised
            }
            _ => current,
        };
        let d = &mut self.dispatches;
        d.extend(self.model.predict(gpu, current, s.level(), &self.o)?);
        if let (Some((pq, limits)), Some(scale)) = (dynamic_bound(&folded), &self.scale) {
            d.push(step::x0_threshold(
                gpu, current, &self.o, pq, limits, scale,
            )?);
        }
        if let (FoldedStep::Heun { a1, b1, .. }, crate::diffusion::Step::Heun { next: lv, .. }) =
            (folded, s)
        {
            let (o, o2) = (&self.o, &self.o2);
            d.push(step::step(
                gpu,
                current,
                o,
                None,
                (a1, b1, 0.0),
                &self.x_pred,
            )?);
            d.extend(self.model.predict(gpu, &self.x_pred, lv, o2)?);
            let last = step::folded(gpu, &folded, current, o, Some(o2), None, None, None, next)?;
            d.push(last);
            return Ok(());
        }
        if s.adds_noise() {
            self.draw()?;
        }
        let noise = s.adds_noise().then_some(&self.z);
        let (scale, state) = (self.scale.as_ref(), self.state.as_ref());
        self.dispatches.push(step::folded(
            gpu, &folded, current, &self.o, None, noise, scale, state, next,
        )?);
        Ok(())
    }

    /// Fresh noise z from the next stream: a noisy step's, or a churned step's before it.
    fn draw(&mut self) -> Result<()> {
        self.dispatches.push(random::fill_normal(
            self.gpu,
            &self.z,
            self.seed,
            self.stream,
            &self.rng,
        )?);
        self.stream += 1;
        Ok(())
    }
}

impl Sampler {
    /// Draws x = init_scale·z of `shape` at every run, then runs the plan.
    pub fn new(
        gpu: &Gpu,
        plan: &Plan,
        model: &dyn Denoiser,
        shape: &[usize],
        seed: u64,
    ) -> Result<Sampler> {
        let initial = Tensor::zeros(gpu, shape, DType::F32)?;
        Self::build(gpu, plan, model, initial, true, seed, 0)
    }

    /// As [`Sampler::new`] (or [`Sampler::from_initial`] with `given`), also keeping `frames` snapshots of x
    /// spread evenly over the steps (the denoising trajectory; read them with [`Sampler::frames`]).
    pub fn with_trajectory(
        gpu: &Gpu,
        plan: &Plan,
        model: &dyn Denoiser,
        shape: &[usize],
        given: Option<&Tensor>,
        seed: u64,
        frames: usize,
    ) -> Result<Sampler> {
        match given {
            Some(x) => Self::build(gpu, plan, model, x.clone(), false, seed, frames),
            None => Self::build(
                gpu,
                plan,
                model,
                Tensor::zeros(gpu, shape, DType::F32)?,
                true,
                seed,
                frames,
            ),
        }
    }

    /// Runs the plan from the given x (read, never written; `plan.init_scale` is not applied).
    pub fn from_initial(
        gpu: &Gpu,
        plan: &Plan,
        model: &dyn Denoiser,
        initial: &Tensor,
        seed: u64,
    ) -> Result<Sampler> {
        check_f32("Sampler::from_initial", &[initial])?;
        Self::build(gpu, plan, model, initial.clone(), false, seed, 0)
    }

    fn build(
        gpu: &Gpu,
        plan: &Plan,
        model: &dyn Denoiser,
        initial: Tensor,
        draw: bool,
        seed: u64,
        frames: usize,
    ) -> Result<Sampler> {
        if plan.steps.is_empty() {
            return Err(Error::Usage(format!(
                "the plan {:?} has no steps",
                plan.name
            )));
        }
        let shape = initial.shape().to_vec();
        let new = || Tensor::zeros(gpu, &shape, DType::F32);
        let buffers = [new()?, new()?];
        let folded: Vec<FoldedStep> = plan
            .steps
            .iter()
            .map(|s| s.fold(model.prediction()))
            .collect();
        let mut lp = Loop::new(gpu, model, seed, &initial, &plan.steps, &folded)?;
        if draw {
            lp.dispatches
                .push(random::fill_normal(gpu, &lp.z, seed, 0, &lp.rng)?);
            let scale = plan.init_scale as f32;
            lp.dispatches
                .push(elementwise::scale(gpu, &lp.z, scale, &initial)?);
        }
        let mut snapshots = Vec::new();
        let mut steps = Vec::with_capacity(plan.steps.len());
        let mut current = &initial;
        for (k, s) in plan.steps.iter().enumerate() {
            let next = &buffers[k % 2];
            lp.step(s, folded[k], current, next)?;
            current = next;
            // Snapshot after steps every, 2·every, …, ending with the last step.
            let (done, total) = (k + 1, plan.steps.len());
            if frames > 0 && (done * frames) / total != (k * frames) / total {
                let snapshot = new()?;
                lp.dispatches
                    .push(elementwise::scale(gpu, current, 1.0, &snapshot)?);
                snapshots.push(snapshot);
            }
            steps.push((lp.dispatches.len(), current.clone()));
        }
        let output = current.clone();
        lp.dispatches.push(random::advance(gpu, &lp.rng, 1)?);
        if let Some(last) = steps.last_mut() {
            last.0 = lp.dispatches.len();
        }
        Ok(Sampler {
            dispatches: lp.dispatches,
            initial,
            output,
            rng: lp.rng,
            snapshots,
            steps,
        })
    }

    /// Records the whole loop into one compute pass.
    pub fn record(&self, rec: &mut Recorder) {
        rec.dispatch(&self.dispatches);
    }

    /// Submits the loop and reads the samples back. Long loops (a network evaluation per step) go in several
    /// submissions of at most [`Sampler::DISPATCHES_PER_SUBMISSION`], so no single command buffer runs long enough
    /// to trip a desktop driver's watchdog; there is still no readback until the end.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        crate::gpu::future::block_on(self.run_async(gpu))
    }

    /// [`Sampler::run`], without blocking.
    pub async fn run_async(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.submit(gpu);
        self.output.read_f32_async(gpu).await
    }

    /// Records and submits the loop (as [`Sampler::run`]) without waiting for it; read `output()` afterwards.
    pub fn submit(&self, gpu: &Gpu) {
        for chunk in self.dispatches.chunks(Self::DISPATCHES_PER_SUBMISSION) {
            let mut rec = Recorder::new(gpu);
            rec.dispatch(chunk);
            rec.submit();
        }
    }

    pub const DISPATCHES_PER_SUBMISSION: usize = 2048;

    /// The plan's number of steps.
    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    /// Submits step `k` alone, as one submission: submitting steps 0, 1, … in order is one run (the same
    /// samples as [`Sampler::submit`]), for a front end that shows each step and must not hold the GPU (or a
    /// page's event loop) for the whole loop. Read [`Sampler::x_after`]`(k)` once it is done.
    pub fn submit_step(&self, gpu: &Gpu, k: usize) -> Result<()> {
        let Some((end, _)) = self.steps.get(k) else {
            return Err(Error::Usage(format!(
                "step {k} of a sampler with {} steps",
                self.steps.len()
            )));
        };
        let begin = match k {
            0 => 0,
            _ => self.steps[k - 1].0,
        };
        let mut rec = Recorder::new(gpu);
        rec.dispatch(&self.dispatches[begin..*end]);
        rec.submit();
        Ok(())
    }

    /// Where x is after step `k` (the last step's is [`Sampler::output`]); the next step overwrites it (two
    /// buffers alternate).
    pub fn x_after(&self, k: usize) -> Option<&Tensor> {
        self.steps.get(k).map(|(_, x)| x)
    }

    /// The trajectory snapshots (after [`Sampler::run`]), oldest first.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn frames(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        crate::gpu::future::block_on(self.frames_async(gpu))
    }

    /// [`Sampler::frames`], without blocking.
    pub async fn frames_async(&self, gpu: &Gpu) -> Result<Vec<Vec<f32>>> {
        let mut frames = Vec::with_capacity(self.snapshots.len());
        for t in &self.snapshots {
            frames.push(t.read_f32_async(gpu).await?);
        }
        Ok(frames)
    }

    /// The starting x of each run (drawn by the sampler, or the given tensor).
    pub fn initial(&self) -> &Tensor {
        &self.initial
    }

    /// Where the samples land.
    pub fn output(&self) -> &Tensor {
        &self.output
    }

    /// The Philox offset state (`[2]` u32), bumped by one after every run.
    pub fn rng_state(&self) -> &Tensor {
        &self.rng
    }

    /// Number of dispatches recorded per run.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }
}

/// Refuses samples holding NaN or ±∞: written as PNG they would be black (or white) pixels without a word.
pub fn check_finite(pixels: &[f32], what: &str) -> Result<()> {
    let count = pixels.iter().filter(|v| !v.is_finite()).count();
    if count > 0 {
        return Err(Error::NonFiniteSamples {
            what: what.to_string(),
            count,
            total: pixels.len(),
        });
    }
    Ok(())
}
