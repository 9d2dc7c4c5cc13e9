//! `diffuse eval`: the variational bound of a checkpoint on a dataset, with a progress bar. The estimate itself
//! is `diffuse::eval`.

use std::path::PathBuf;
use std::time::Instant;

use diffuse::checkpoint::Checkpoint;
use diffuse::data::Dataset;
use diffuse::diffusion::likelihood::Tolerance;
use diffuse::diffusion::process::Objective;
use diffuse::diffusion::samplers::DdpmVariance;
use diffuse::eval::exact::{estimate_exact, ExactOptions, ModelFlow};
use diffuse::gpu::Gpu;
use diffuse::model::{ParamBuffers, ParamLayout};
use diffuse::Result;

use super::{at_least_one, open_dataset, open_model, parse_rgb, positive};

/// `--variance`: Ho et al.'s names for the two fixed variances.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Variance {
    /// β̃_t, the posterior's
    Small,
    /// β_t
    Large,
}

/// `diffuse eval`: see `--help` for what each option does.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// A checkpoint written by `diffuse train`, or a diffusers model folder (a DDPMPipeline's, or its unet/;
    /// docs/diffusers.md) [default: the model bundled in assets/].
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The images to evaluate on: as for `diffuse train --data` (default: the built-in MNIST subset).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate the first this many images of the dataset.
    #[arg(long, allow_negative_numbers = true, default_value_t = 64, value_parser = at_least_one)]
    pub images: usize,
    /// Network evaluations per image: the decoder and last terms plus one timestep from each of the others'
    /// strata (an unbiased estimate); T (e.g. 1000) or more evaluates every timestep.
    #[arg(long, allow_negative_numbers = true, default_value_t = 50, value_parser = at_least_one)]
    pub timesteps: usize,
    /// Rows (image, timestep) per network evaluation.
    #[arg(long, allow_negative_numbers = true, default_value_t = 64, value_parser = at_least_one)]
    pub batch: usize,
    /// The reverse process's variance, as in Ho et al.
    #[arg(long, value_enum, default_value_t = Variance::Small)]
    pub variance: Variance,
    /// For a class-conditional model, bound p(x) (the "no class" label) instead of p(x | its label).
    #[arg(long)]
    pub unconditional: bool,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
    /// The exact log-likelihood through the probability-flow ODE instead of DDPM's bound (any objective; DDPM models
    /// through their VP flow): Dormand–Prince 5(4), a Hutchinson divergence with one probe per image, uniform
    /// dequantisation (docs/diffusion.md). --batch images are solved together; --timesteps is not used.
    #[arg(long)]
    pub exact: bool,
    /// --exact: the solver's relative and absolute tolerance (score_sde's 1e-5).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1e-5, value_parser = positive)]
    pub tolerance: f64,
    /// Use the raw training weights instead of their EMA.
    #[arg(long)]
    pub raw_weights: bool,
    /// Colour (R,G,B) that transparent pixels are composited onto.
    #[arg(long, default_value = "255,255,255", value_parser = parse_rgb)]
    pub background: [u8; 3],
    #[arg(long)]
    pub adapter: Option<String>,
}

/// `diffuse eval`: the variational bound of a checkpoint on a dataset, in bits per dimension.
pub fn eval(gpu: &Gpu, args: EvalArgs) -> Result<()> {
    let ckpt = open_model(args.checkpoint.as_ref(), true)?;
    let config = &ckpt.config;
    let dataset = open_dataset(args.data.as_deref(), config, args.background, true)?;
    if args.exact {
        return exact(gpu, &args, &ckpt, &dataset);
    }
    let variance = match args.variance {
        Variance::Small => DdpmVariance::PosteriorBeta,
        Variance::Large => DdpmVariance::Beta,
    };
    let schedule = ckpt.training.schedule()?;
    let weights = if args.raw_weights {
        &ckpt.params
    } else {
        &ckpt.ema
    };
    let params = ParamBuffers::upload(gpu, &ParamLayout::new(&ckpt.config), weights)?;
    let options = diffuse::eval::BoundOptions {
        images: args.images,
        per_image: args.timesteps,
        batch: args.batch,
        variance,
        use_labels: !args.unconditional,
        seed: args.seed,
        prediction: ckpt.training.prediction(),
    };
    let images = options.images.min(dataset.len);
    let bar = indicatif::ProgressBar::new(images as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images  [{elapsed_precise} elapsed, ETA {eta_precise}]",
        )
        .expect("valid template"),
    );
    let started = Instant::now();
    let estimate = diffuse::eval::estimate_bound(
        gpu,
        config,
        &params,
        &schedule,
        &dataset,
        &options,
        &mut |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let conditioned = match (
        config.num_classes,
        dataset.labels.is_some() && !args.unconditional,
    ) {
        (Some(_), true) => ", conditioned on each image's label",
        (Some(_), false) => ", unconditional (\"no class\")",
        _ => "",
    };
    println!(
        "{} images of {}, {} network evaluations ({} per image{conditioned}) in {:.1} s on {}",
        estimate.per_image.len(),
        dataset.description,
        estimate.evaluations,
        estimate.evaluations / estimate.per_image.len(),
        started.elapsed().as_secs_f64(),
        gpu.describe()
    );
    println!(
        "variational bound: {:.4} ± {:.4} bits/dim (mean ± standard error over images)",
        estimate.bits_per_dim, estimate.standard_error
    );
    println!(
        "  decoder L_0 {:.4}   L_1..L_(T-2) {:.4}   L_(T-1) + prior L_T {:.4}",
        estimate.decoder, estimate.middle, estimate.last_and_prior
    );
    Ok(())
}

/// `diffuse eval --exact`.
fn exact(gpu: &Gpu, args: &EvalArgs, ckpt: &Checkpoint, dataset: &Dataset) -> Result<()> {
    let trained = ckpt.training.trained();
    let schedule = match trained.objective {
        Objective::Ddpm => Some(ckpt.training.schedule()?),
        _ => None,
    };
    let flow = ModelFlow::new(trained, schedule)?;
    let weights = if args.raw_weights {
        &ckpt.params
    } else {
        &ckpt.ema
    };
    let params = ParamBuffers::upload(gpu, &ParamLayout::new(&ckpt.config), weights)?;
    let options = ExactOptions {
        images: args.images,
        batch: args.batch,
        tol: Tolerance {
            rtol: args.tolerance,
            atol: args.tolerance,
        },
        use_labels: !args.unconditional,
        seed: args.seed,
    };
    let images = options.images.min(dataset.len);
    let bar = indicatif::ProgressBar::new(images as u64);
    let started = Instant::now();
    let estimate = estimate_exact(
        gpu,
        &ckpt.config,
        &params,
        &flow,
        dataset,
        &options,
        &mut |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    println!(
        "{images} images of {}, {} network evaluations with their input gradients ({} solver steps) in {:.1} s on {}",
        dataset.description,
        estimate.evaluations,
        estimate.steps,
        started.elapsed().as_secs_f64(),
        gpu.describe()
    );
    println!(
        "exact likelihood (probability-flow ODE, σ̃ from {:.3e} to {:.3e}, tolerance {:e}): {:.4} ± {:.4} bits/dim \
         (mean ± standard error over images, dequantised)",
        flow.lo, flow.hi, args.tolerance, estimate.bits_per_dim, estimate.standard_error
    );
    Ok(())
}
