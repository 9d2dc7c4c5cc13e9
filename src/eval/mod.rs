//! `diffuse eval`: the variational bound of a trained U-Net (predicting ε, x₀ or v) on a dataset, in bits per dimension
//! (the terms are those of src/diffusion/vlb.rs; shaders/vlb.wgsl computes them on the GPU).
//!
//! The bound of one image is a sum over all T timesteps: L = L_0 + Σ_{t=1}^{T−2} L_t + (L_{T−1} + L_T). Each term
//! needs a network evaluation, so for T = 1000 the exact sum costs 1000 evaluations per image. The estimate here
//! is unbiased for any budget of K evaluations per image: the decoder term (index 0) and the last term (which
//! carries the prior) are always evaluated, as they are the largest and the most variable; the T − 2 middle
//! timesteps are cut into K − 2 strata of near-equal size, one timestep drawn uniformly from each and weighted by
//! its stratum's size. With K ≥ T every timestep is evaluated once (the exact bound, up to the Monte Carlo draw of
//! x_t that every term has). The reported error is the standard error of the mean over images, which covers both
//! the spread between images and the Monte Carlo noise.

#[cfg(not(target_arch = "wasm32"))] // It reads back every solver stage, blocking: desktop only.
pub mod exact;

use crate::data::Dataset;
use crate::diffusion::samplers::{DdpmVariance, Prediction};
use crate::diffusion::vlb::VlbCoefficients;
use crate::diffusion::Schedule;
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::vlb::{vlb_run, VlbTable};
use crate::kernels::{elementwise, noise, random};
use crate::model::unet::Net;
use crate::model::{ParamBuffers, SplitMix64, UNetConfig};

/// One evaluation of an image's bound: its timestep and the weight of that term in the image's estimate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlannedTerm {
    pub t: u32,
    pub weight: f64,
}

/// The K terms evaluated for one image out of T timesteps (see the module doc); `uniform` draws from [0, 1).
pub fn plan_terms(
    num_steps: usize,
    per_image: usize,
    uniform: &mut impl FnMut() -> f64,
) -> Result<Vec<PlannedTerm>> {
    if num_steps < 2 {
        return Err(Error::Usage(
            "the bound needs a schedule of at least 2 timesteps".into(),
        ));
    }
    if per_image >= num_steps {
        return Ok((0..num_steps as u32)
            .map(|t| PlannedTerm { t, weight: 1.0 })
            .collect());
    }
    if per_image < 3 {
        return Err(Error::Usage(format!(
            "--timesteps {per_image}: at least 3 are needed (the decoder term, the last term and one in between)"
        )));
    }
    let (middle, strata) = (num_steps - 2, per_image - 2);
    let mut terms = vec![PlannedTerm { t: 0, weight: 1.0 }];
    for j in 0..strata {
        // Stratum j covers middle timesteps [lo, hi) (1-based into the middle: 1 ..= T − 2).
        let lo = 1 + j * middle / strata;
        let hi = 1 + (j + 1) * middle / strata;
        let size = hi - lo;
        let pick = lo + ((uniform() * size as f64) as usize).min(size - 1);
        terms.push(PlannedTerm {
            t: pick as u32,
            weight: size as f64,
        });
    }
    terms.push(PlannedTerm {
        t: num_steps as u32 - 1,
        weight: 1.0,
    });
    Ok(terms)
}

/// Evaluates the bound's terms for a batch of rows (image, timestep) on the GPU: draws ε (Philox), noises x₀ to
/// x_t, runs the U-Net at each row's own timestep and computes every element's term in nats.
pub struct TermEvaluator {
    net: Net,
    x0: Tensor,
    terms: Tensor,
    /// x_t of the last batch (the network's input), for tests that recompute the terms.
    pub x_t: Tensor,
    dispatches: Vec<Dispatch>,
}

/// RNG stream of ε (the only GPU draw of an evaluation).
const NOISE_STREAM: u32 = 0;

impl TermEvaluator {
    /// `params`: the weights (EMA for a trained model) in the layout of `config`, of a network that outputs
    /// `prediction`; rows are evaluated `batch` at a time.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gpu: &Gpu,
        config: &UNetConfig,
        params: &ParamBuffers,
        schedule: &Schedule,
        variance: DdpmVariance,
        prediction: Prediction,
        batch: usize,
        seed: u64,
    ) -> Result<TermEvaluator> {
        let net = Net::new(gpu, config, params, batch)?;
        let coefficients = VlbCoefficients::new(schedule, variance, prediction)?;
        let table = VlbTable::upload(gpu, &coefficients)?;
        let noise_table = noise::upload_table(gpu, &schedule.noise_table())?;
        let shape = net.input.shape().to_vec();
        let x0 = Tensor::zeros(gpu, &shape, DType::F32)?;
        let eps = Tensor::zeros(gpu, &shape, DType::F32)?;
        let ones = Tensor::from_f32(gpu, &[batch], &vec![1.0; batch])?;
        let rng = random::rng_state(gpu, 0)?;
        let forward = net.forward(gpu)?;
        let mut dispatches = vec![random::fill_normal(gpu, &eps, seed, NOISE_STREAM, &rng)?];
        // The network reads its timesteps from `net.timesteps`, which is also the rows' t here.
        let run = vlb_run(
            gpu,
            &table,
            &noise_table,
            &x0,
            &eps,
            &net.timesteps,
            &ones,
            1.0,
            &|x_t, _t, out| {
                let mut d = vec![elementwise::scale(gpu, x_t, 1.0, &net.input)?];
                d.extend(forward.iter().cloned());
                d.push(elementwise::scale(gpu, net.output(), 1.0, out)?);
                Ok(d)
            },
        )?;
        dispatches.extend(run.dispatches);
        dispatches.push(random::advance(gpu, &rng, 1)?);
        Ok(TermEvaluator {
            x_t: run.x_t,
            terms: run.terms,
            x0,
            net,
            dispatches,
        })
    }

    /// Rows this evaluator takes per call.
    pub fn batch(&self) -> usize {
        self.net.batch
    }

    /// The network's output of the last batch [batch, C, H, W], for tests that recompute the terms.
    pub fn network_output(&self) -> &Tensor {
        self.net.output()
    }

    /// The bound's term (nats, summed over the row's elements) of each row: x₀ [batch, C, H, W] flattened,
    /// t [batch], and the class label of each row for a class-conditional model.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn evaluate(
        &self,
        gpu: &Gpu,
        x0: &[f32],
        t: &[u32],
        labels: Option<&[u32]>,
    ) -> Result<Vec<f64>> {
        crate::gpu::future::block_on(self.evaluate_async(gpu, x0, t, labels))
    }

    /// [`TermEvaluator::evaluate`], without blocking.
    pub async fn evaluate_async(
        &self,
        gpu: &Gpu,
        x0: &[f32],
        t: &[u32],
        labels: Option<&[u32]>,
    ) -> Result<Vec<f64>> {
        self.x0.write_f32(gpu, x0)?;
        self.net.timesteps.write_u32(gpu, t)?;
        match (&self.net.labels, labels) {
            (Some(tensor), Some(l)) => tensor.write_u32(gpu, l)?,
            (None, None) => {}
            _ => {
                return Err(Error::Usage(
                    "labels must be given exactly when the model is class-conditional".into(),
                ))
            }
        }
        gpu.run_async(&self.dispatches).await?;
        let terms = self.terms.read_f32_async(gpu).await?;
        let d = terms.len() / self.batch();
        Ok(terms
            .chunks(d)
            .map(|row| row.iter().map(|&v| v as f64).sum())
            .collect())
    }
}

/// What `diffuse eval` measures.
#[derive(Clone, Debug)]
pub struct BoundOptions {
    /// Evaluate the first `images` images of the dataset (all if larger).
    pub images: usize,
    /// Network evaluations per image (K in the module doc; ≥ T: every timestep).
    pub per_image: usize,
    pub batch: usize,
    pub variance: DdpmVariance,
    /// Condition a class-conditional model on the dataset's labels (else on "no class": the bound of p(x)).
    pub use_labels: bool,
    pub seed: u64,
    /// What the network outputs (the checkpoint's `extra.prediction`).
    pub prediction: Prediction,
}

/// The estimated bound, in bits per dimension.
#[derive(Clone, Debug)]
pub struct BoundEstimate {
    /// Mean over the images of their bound.
    pub bits_per_dim: f64,
    /// Standard error of that mean (0 for one image).
    pub standard_error: f64,
    pub per_image: Vec<f64>,
    /// The mean's parts: the decoder term L_0, the middle terms Σ L_1..L_{T−2}, and L_{T−1} + L_T (prior).
    pub decoder: f64,
    pub middle: f64,
    pub last_and_prior: f64,
    /// Network evaluations made.
    pub evaluations: usize,
}

/// The bound of `params` (a model of `config` trained on `schedule`) on the first images of `dataset`.
/// `progress` is called with (images done, images in all) after each batch.
#[cfg(not(target_arch = "wasm32"))]
pub fn estimate_bound(
    gpu: &Gpu,
    config: &UNetConfig,
    params: &ParamBuffers,
    schedule: &Schedule,
    dataset: &Dataset,
    options: &BoundOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BoundEstimate> {
    let estimate = estimate_bound_async(gpu, config, params, schedule, dataset, options, progress);
    crate::gpu::future::block_on(estimate)
}

/// Each image's label as the model sees it: its own (`use_labels`), or "no class" (the estimate of p(x) rather than
/// p(x | c)); None for an unconditional model. Refuses a label the model has no class for. Both estimates use it.
pub(crate) fn model_labels(
    config: &UNetConfig,
    dataset: &Dataset,
    use_labels: bool,
    images: usize,
) -> Result<Option<Vec<u32>>> {
    let Some(null_label) = config.num_classes.map(|n| n as u32) else {
        return Ok(None);
    };
    let own = match (&dataset.labels, use_labels) {
        (Some(labels), true) => &labels[..images],
        _ => return Ok(Some(vec![null_label; images])),
    };
    if let Some(&bad) = own.iter().find(|&&l| l >= null_label) {
        return Err(Error::Usage(format!(
            "the dataset has label {bad}, but the model has {null_label} classes"
        )));
    }
    Ok(Some(own.to_vec()))
}

/// How many of `dataset`'s images an estimate takes (the first `images`), after checking that they have the
/// model's shape and that there is at least one, in batches of at least one. Both estimates use it.
pub(crate) fn images_to_evaluate(
    config: &UNetConfig,
    dataset: &Dataset,
    images: usize,
    batch: usize,
) -> Result<usize> {
    let (c, s) = (config.in_channels, config.image_size);
    if (dataset.channels, dataset.size) != (c, s) {
        return Err(Error::Usage(format!(
            "the dataset holds {}×{}×{} images but the model wants {c}×{s}×{s}",
            dataset.channels, dataset.size, dataset.size
        )));
    }
    let images = images.min(dataset.len);
    if images == 0 || batch == 0 {
        return Err(Error::Usage(
            "nothing to evaluate: the dataset is empty, or --images / --batch is 0".into(),
        ));
    }
    Ok(images)
}

/// [`estimate_bound`], without blocking.
pub async fn estimate_bound_async(
    gpu: &Gpu,
    config: &UNetConfig,
    params: &ParamBuffers,
    schedule: &Schedule,
    dataset: &Dataset,
    options: &BoundOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<BoundEstimate> {
    let images = images_to_evaluate(config, dataset, options.images, options.batch)?;
    let labels = model_labels(config, dataset, options.use_labels, images)?;
    let mut rng = SplitMix64::new(options.seed ^ 0x5EED_B0D5);
    let mut rows = Vec::new(); // (image, term)
    for image in 0..images {
        for term in plan_terms(schedule.num_steps(), options.per_image, &mut || rng.unit())? {
            rows.push((image, term));
        }
    }
    let evaluator = TermEvaluator::new(
        gpu,
        config,
        params,
        schedule,
        options.variance,
        options.prediction,
        options.batch.min(rows.len()),
        options.seed,
    )?;
    let last = schedule.num_steps() as u32 - 1;
    let mut totals = vec![[0.0f64; 3]; images]; // nats: decoder, middle, last + prior
    for chunk in rows.chunks(evaluator.batch()) {
        let nats = evaluate_rows(gpu, &evaluator, dataset, labels.as_deref(), chunk).await?;
        for (&(image, term), value) in chunk.iter().zip(nats) {
            let part = match term.t {
                0 => 0,
                t if t == last => 2,
                _ => 1,
            };
            totals[image][part] += term.weight * value;
        }
        progress(chunk.last().map_or(0, |r| r.0 + 1), images);
    }
    Ok(summarize(&totals, dataset.image_len(), rows.len()))
}

/// The terms of `chunk`'s (image, term) rows, in nats. A short last chunk is padded by repeating its first row;
/// the padding's terms are dropped.
async fn evaluate_rows(
    gpu: &Gpu,
    evaluator: &TermEvaluator,
    dataset: &Dataset,
    labels: Option<&[u32]>,
    chunk: &[(usize, PlannedTerm)],
) -> Result<Vec<f64>> {
    let batch = evaluator.batch();
    let padded = |k: usize| chunk[if k < chunk.len() { k } else { 0 }];
    let x0: Vec<f32> = (0..batch)
        .flat_map(|k| dataset.image(padded(k).0))
        .collect();
    let t: Vec<u32> = (0..batch).map(|k| padded(k).1.t).collect();
    let labels: Option<Vec<u32>> = labels.map(|l| (0..batch).map(|k| l[padded(k).0]).collect());
    evaluator
        .evaluate_async(gpu, &x0, &t, labels.as_deref())
        .await
}

/// The estimate from each image's [decoder, middle, last + prior] nats over `d` values per image.
fn summarize(totals: &[[f64; 3]], d: usize, evaluations: usize) -> BoundEstimate {
    let to_bits = 1.0 / (d as f64 * std::f64::consts::LN_2);
    let per_image: Vec<f64> = totals
        .iter()
        .map(|p| p.iter().sum::<f64>() * to_bits)
        .collect();
    let n = totals.len() as f64;
    let (mean, standard_error) = mean_and_standard_error(&per_image);
    let part = |k: usize| totals.iter().map(|p| p[k]).sum::<f64>() * to_bits / n;
    BoundEstimate {
        bits_per_dim: mean,
        standard_error,
        per_image,
        decoder: part(0),
        middle: part(1),
        last_and_prior: part(2),
        evaluations,
    }
}

/// The mean of per-image values and its standard error (0 for one image).
fn mean_and_standard_error(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = match values.len() {
        0 | 1 => 0.0,
        _ => values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0),
    };
    (mean, (variance / n).sqrt())
}
