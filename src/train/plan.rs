//! The batch and memory plan: how a step's images are split into forward/backward passes, from the net's memory
//! measured at batch 1 and 2, the adapter's binding limit and the run's `--memory-budget`.

use crate::distributed::Slice;
use crate::error::{Error, Result};
use crate::gpu::memory::Growth;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::model::unet::{DropoutDraw, Net};
use crate::model::{ParamBuffers, UNetConfig};

use super::TrainSettings;

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

/// The memory of a run at each pass size: the net's (affine in the images per pass) plus the trainer's own.
struct Estimator {
    net: Growth,
    weights: u64,
    /// The trainer's own: EMA and Adam's two moments; per image x₀, ε, the target and ∂L/∂prediction.
    own_fixed: u64,
    own_per_image: u64,
    /// This rank's images per step.
    slice_len: usize,
    limit: u64,
    budget: Option<u64>,
}

impl Estimator {
    fn estimate(&self, m: usize) -> BatchPlan {
        let passes = self.slice_len / m;
        // With several passes the gradient is summed in a buffer of its own.
        let sum = if passes > 1 { self.weights } else { 0 };
        BatchPlan {
            micro_batch: m,
            passes,
            bytes: self.net.bytes(m) + self.own_fixed + sum + self.own_per_image * m as u64,
            largest: self.net.largest(m),
            fixed: self.net.fixed() + self.own_fixed + sum,
            per_image: self.net.per_image() + self.own_per_image,
            note: None,
        }
    }

    fn fits(&self, p: &BatchPlan) -> bool {
        p.largest <= self.limit && self.budget.is_none_or(|budget| p.bytes <= budget)
    }

    /// Why `p` does not fit.
    fn why(&self, p: &BatchPlan) -> String {
        let mb = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
        if p.largest > self.limit {
            return format!(
                "its largest buffer would be {}, and the adapter binds at most {} per buffer",
                mb(p.largest),
                mb(self.limit)
            );
        }
        format!(
            "it needs about {} of GPU memory, over the --memory-budget of {}",
            mb(p.bytes),
            mb(self.budget.unwrap_or(0))
        )
    }

    /// The largest pass size dividing `unit` that fits, with a note saying why the batch was split.
    fn split(&self, unit: usize, batch: usize) -> Result<BatchPlan> {
        let whole = self.estimate(unit);
        if self.fits(&whole) {
            return Ok(whole);
        }
        let single = self.estimate(1);
        if !self.fits(&single) {
            return Err(Error::Usage(format!(
                "one image at a time does not fit: {}. Lower --image-size, --base-channels or --channel-mults{}",
                self.why(&single),
                if self.budget.is_some() { ", or raise --memory-budget" } else { "" }
            )));
        }
        let m = (1..unit)
            .rev()
            .find(|&m| unit.is_multiple_of(m) && self.fits(&self.estimate(m)))
            .unwrap_or(1);
        let mut plan = self.estimate(m);
        plan.note = Some(format!(
            "{} {unit} does not fit one pass ({}): {} micro-batches of {m}, their gradients summed within each \
             step's submission",
            if unit == batch { "batch" } else { "a rank's slice of" },
            self.why(&whole),
            unit / m
        ));
        Ok(plan)
    }
}

/// Refuses a `--micro-batch` that does not divide `unit`, the largest pass (the batch, or a rank's slice).
fn check_micro_batch(settings: &TrainSettings, unit: usize, slice: Slice) -> Result<()> {
    let batch = settings.batch;
    if batch == 0 || settings.grad_accum == 0 {
        return Err(Error::Usage(
            "--batch and --grad-accum must be at least 1".into(),
        ));
    }
    let Some(m) = settings.micro_batch else {
        return Ok(());
    };
    if m != 0 && unit.is_multiple_of(m) {
        return Ok(());
    }
    Err(Error::Usage(if slice.ranks == 1 {
        format!("--micro-batch {m} must divide --batch {batch}")
    } else {
        format!(
            "--micro-batch {m} must divide both --batch {batch} and the {} images each of the {} ranks takes \
             per step",
            slice.len, slice.ranks
        )
    }))
}

impl BatchPlan {
    /// Measures the net at batch 1 and 2 (memory is affine in the batch: fixed weights and gradients plus
    /// per-image activations), adds the trainer's own buffers, and picks the pass size. A pass holds at most one
    /// batch and one rank's slice of the step (`slice`): its size divides both.
    pub(super) fn new(
        gpu: &Gpu,
        settings: &TrainSettings,
        params: &ParamBuffers,
        dropout: &DropoutDraw,
        image_values: usize,
        slice: Slice,
    ) -> Result<BatchPlan> {
        // The largest pass: the batch, or a rank's slice of the step where that is smaller or does not divide it.
        let unit = gcd(settings.batch.max(1), slice.len);
        check_micro_batch(settings, unit, slice)?;
        let limit = crate::gpu::tensor::max_tensor_bytes(gpu);
        let weights = params.len() as u64 * 4;
        let estimator = Estimator {
            net: Growth::measure(
                &passes_at(gpu, &settings.model, params, dropout, 1)?,
                &passes_at(gpu, &settings.model, params, dropout, 2)?,
                limit,
            ),
            weights,
            own_fixed: 3 * weights,
            own_per_image: 4 * 4 * image_values as u64,
            slice_len: slice.len,
            limit,
            budget: settings.memory_budget,
        };
        let Some(m) = settings.micro_batch else {
            return estimator.split(unit, settings.batch);
        };
        let plan = estimator.estimate(m);
        if !estimator.fits(&plan) {
            return Err(Error::Usage(format!(
                "--micro-batch {m} does not fit: {}; choose a smaller --micro-batch",
                estimator.why(&plan)
            )));
        }
        Ok(plan)
    }
}
