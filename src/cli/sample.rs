//! `diffuse sample`: a sampler plan from the arguments, run on a checkpoint, written as PNG, .npy and GIF.

use std::path::PathBuf;
use std::time::Instant;

use diffuse::checkpoint::Checkpoint;
use diffuse::diffusion::samplers::{ChurnSettings, Clip, DdpmVariance, Spacing};
use diffuse::distributed::Replicas;
use diffuse::gpu::Gpu;
use diffuse::image_io;
use diffuse::model::{ParamBuffers, ParamLayout};
use diffuse::sample::spec::{LangevinStep, SamplerKind, SamplerSpec};
use diffuse::sample::{max_batch, Batched, Samples, SamplingDefaults};
use diffuse::{Error, Result};

use super::{
    at_least_one, at_least_unity, non_negative, non_negative_or_infinite, open_model, positive,
    unit_interval,
};

/// `--class`: an index, a recorded class name, or `all` (image i gets class i mod C, and the grid has C columns
/// so that each column is one class). Returns the per-image classes and the grid's columns.
fn parse_class(text: &str, ckpt: &Checkpoint, n: usize) -> Result<(Vec<u32>, Option<usize>)> {
    let Some(count) = ckpt.config.num_classes else {
        return Err(Error::Usage(
            "this model is unconditional: it takes no --class".into(),
        ));
    };
    if text == "all" {
        return Ok((
            (0..n).map(|i| (i % count) as u32).collect(),
            Some(count.min(n)),
        ));
    }
    let names = &ckpt.training.class_names;
    if let Some(k) = names.iter().position(|name| name == text) {
        return Ok((vec![k as u32], None));
    }
    match text.parse::<u32>() {
        Ok(k) => Ok((vec![k], None)),
        Err(_) => Err(Error::Usage(format!(
            "unknown --class {text:?}: give an index 0..{}, `all`{}",
            count - 1,
            if names.is_empty() {
                String::new()
            } else {
                format!(", or one of: {}", names.join(", "))
            }
        ))),
    }
}

/// `diffuse sample`: see `--help` for what each option does.
#[derive(clap::Args)]
pub struct SampleArgs {
    /// A checkpoint written by `diffuse train`, or a diffusers model folder (a DDPMPipeline's, or its unet/;
    /// docs/diffusers.md) [default: the model bundled in assets/].
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The reverse process to run.
    #[arg(long, value_enum, default_value_t = SamplerKind::Ddim)]
    pub sampler: SamplerKind,
    /// Sampling steps (model evaluations; Heun uses about two per step).
    #[arg(long, allow_negative_numbers = true, default_value_t = 50, value_parser = at_least_one)]
    pub steps: usize,
    /// DDIM's η ≥ 0: 0 is deterministic, 1 is DDPM-like.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0, value_parser = non_negative)]
    pub eta: f64,
    /// How the steps are chosen among the T training timesteps [default: trailing, or an imported model's
    /// scheduler's].
    #[arg(long, value_enum)]
    pub spacing: Option<StepSpacing>,
    /// --sampler ddpm: the variance of each step's noise, β ("large", diffusers' fixed_large) or the posterior's
    /// β̃ ("small", fixed_small) [default: large, or an imported model's scheduler's].
    #[arg(long, value_enum)]
    pub variance: Option<VarianceChoice>,
    /// dpm++2m and unipc: step through Karras et al.'s noise levels (ρ = 7, between the schedule's smallest and
    /// largest σ) instead of the --spacing timesteps ("DPM++ 2M Karras"). euler and heun always do.
    #[arg(long)]
    pub karras: bool,
    /// What is done to x̂₀ (the model's estimate of the clean image) before each step [default: clamp for ddpm
    /// and ddim, none for the others]. ddpm, ddim, dpm++2m and unipc take any; the others only none.
    #[arg(long, value_enum)]
    pub clip: Option<ClipChoice>,
    /// --clip dynamic: the quantile of |x̂₀| that sets each sample's threshold s (Imagen, diffusers: 0.995).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.995, value_parser = unit_interval)]
    pub threshold_ratio: f64,
    /// --clip dynamic: the largest threshold s (diffusers' sample_max_value; Imagen sets none).
    #[arg(long, allow_negative_numbers = true, default_value_t = f64::INFINITY, value_parser = at_least_unity)]
    pub threshold_max: f64,
    /// --sampler langevin: the step at each level, ε = R·σ² (NCSN's rule, R = ε/σ_L² at the last level), or
    /// `ncsnv2` for NCSNv2's rule (R from the levels' ratio and the 20 steps per level).
    #[arg(long, allow_negative_numbers = true, default_value = "1", value_parser = |t: &str| t.parse::<LangevinStep>())]
    pub langevin_step: LangevinStep,
    /// --sampler heun: Karras et al.'s S_churn, noise added before each Heun step to raise σ by a factor
    /// 1 + min(S/levels, √2 − 1) (EDM's stochastic sampler; their ImageNet-64 model used 40). 0: deterministic.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0, value_parser = non_negative)]
    pub churn: f64,
    /// --churn: only at levels with σ/α ≥ this (EDM: 0.05).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0, value_parser = non_negative)]
    pub churn_min: f64,
    /// --churn: only at levels with σ/α ≤ this (EDM: 50).
    #[arg(long, allow_negative_numbers = true, default_value_t = f64::INFINITY, value_parser = non_negative_or_infinite)]
    pub churn_max: f64,
    /// --churn: the added noise's scale S_noise (EDM: 1.003).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0, value_parser = positive)]
    pub churn_noise: f64,
    /// Number of images.
    #[arg(short, long, allow_negative_numbers = true, default_value_t = 16, value_parser = at_least_one)]
    pub num: usize,
    /// Images per GPU batch: --num runs in batches of at most this many, each its own submission, into one grid
    /// and one .npy. Batch k > 0 draws its noise from a seed derived from --seed and k, so the first batch is what
    /// a run of that size alone gives.
    /// Lowered, with a note, where it does not fit the adapter's per-buffer limit or --memory-budget.
    #[arg(long, allow_negative_numbers = true, default_value_t = DEFAULT_BATCH, value_parser = at_least_one)]
    pub batch: usize,
    /// GPU memory sampling may use, in GB (default: only the adapter's per-buffer limit is checked).
    #[arg(long, allow_negative_numbers = true, value_parser = positive)]
    pub memory_budget: Option<f64>,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub seed: u64,
    /// Class to generate (class-conditional models): its index, its name (a training subfolder's), or `all` for
    /// every class in turn, one class per grid column.
    #[arg(long)]
    pub class: Option<String>,
    /// Classifier-free guidance weight w ≥ 0 (ε̂ = (1+w)·ε(x,c) − w·ε(x,∅)); 0 turns guidance off. Needs --class
    /// and a class-conditional model.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0, value_parser = |t: &str| non_negative(t).map(|w| w as f32))]
    pub guidance: f32,
    /// The PNG grid to write (a .png name; --npy and --gif each name another file).
    #[arg(long, default_value = "samples.png")]
    pub out: PathBuf,
    /// Also write the raw samples [N, C, H, W] in [−1, 1] as .npy.
    #[arg(long)]
    pub npy: Option<PathBuf>,
    /// Start from this x_T ([N, C, H, W] float32 .npy) instead of drawing it: reproducible runs and
    /// comparisons with other tools.
    #[arg(long)]
    pub noise: Option<PathBuf>,
    /// Also write the denoising trajectory as an animated GIF.
    #[arg(long)]
    pub gif: Option<PathBuf>,
    /// Sample with the raw training weights instead of their EMA.
    #[arg(long)]
    pub raw_weights: bool,
    #[arg(long)]
    pub adapter: Option<String>,
}

/// Images per batch unless --batch says otherwise: the activations of a `small` U-Net at 28×28 for 64 images
/// stay far below the 128 MiB that lavapipe (and some GPUs) bind per buffer.
const DEFAULT_BATCH: usize = 64;

/// `--clip`: the library's [`Clip`] choices.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ClipChoice {
    /// x̂₀ as the model gives it (diffusers' and k-diffusion's default)
    None,
    /// Clamp x̂₀ to [−1, 1] and recompute ε̂ from it (improved-diffusion's DDIM)
    Clamp,
    /// Clamp x̂₀ to [−1, 1], keep the model's ε̂ (diffusers' clip_sample)
    ClampKeepEps,
    /// Imagen's dynamic thresholding (diffusers' thresholding): see --threshold-ratio, --threshold-max
    Dynamic,
}

/// `--variance`: DDPM's two fixed variances, under the names of diffusers' `variance_type`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum VarianceChoice {
    /// σ² = β (fixed_large)
    Large,
    /// σ² = β̃ = β(1 − ᾱ_prev)/(1 − ᾱ) (fixed_small)
    Small,
}

/// `--spacing`: the library's [`Spacing`] under the names diffusers gives them.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StepSpacing {
    /// Starts at T−1 (the default)
    Trailing,
    /// diffusers' DDIM default
    Leading,
    /// Evenly from T−1 to 0
    Linspace,
}

impl From<StepSpacing> for Spacing {
    fn from(s: StepSpacing) -> Spacing {
        match s {
            StepSpacing::Trailing => Spacing::Trailing,
            StepSpacing::Leading => Spacing::LEADING,
            StepSpacing::Linspace => Spacing::Linspace,
        }
    }
}

impl SampleArgs {
    /// The sampler these arguments ask for; where a flag is left out, the model's own scheduler's choice (an
    /// imported model's `defaults`), else diffuse's.
    fn spec(&self, defaults: Option<&SamplingDefaults>) -> Result<SamplerSpec> {
        if self.variance.is_some() && self.sampler != SamplerKind::Ddpm {
            return Err(Error::Usage(format!(
                "--variance sets the noise of ddpm's steps; --sampler {} adds none of that kind: leave --variance out",
                self.sampler.name()
            )));
        }
        let own = SamplerSpec::new(self.sampler, self.steps);
        let scheduler_clip = defaults
            .filter(|_| matches!(self.sampler, SamplerKind::Ddpm | SamplerKind::Ddim))
            .map(|d| d.clip);
        Ok(SamplerSpec {
            spacing: self
                .spacing
                .map(Spacing::from)
                .or(defaults.map(|d| d.spacing))
                .unwrap_or(own.spacing),
            variance: match self.variance {
                Some(VarianceChoice::Large) => DdpmVariance::Beta,
                Some(VarianceChoice::Small) => DdpmVariance::PosteriorBeta,
                None => defaults.map_or(own.variance, |d| d.variance),
            },
            eta: self.eta,
            karras: self.karras,
            clip: self
                .clip
                .map(|choice| match choice {
                    ClipChoice::None => Clip::None,
                    ClipChoice::Clamp => Clip::IMAGES,
                    ClipChoice::ClampKeepEps => Clip::ClampKeepEps { lo: -1.0, hi: 1.0 },
                    ClipChoice::Dynamic => Clip::Dynamic {
                        ratio: self.threshold_ratio,
                        max: self.threshold_max,
                    },
                })
                .or(scheduler_clip),
            langevin_step: self.langevin_step,
            churn: ChurnSettings {
                s_churn: self.churn,
                s_min: self.churn_min,
                s_max: self.churn_max,
                s_noise: self.churn_noise,
            },
            ..own
        })
    }
}

/// Samples as `args` say; as one rank of a job (`replicas`), its share of the batches, with rank 0 writing the
/// files.
pub fn sample(gpu: &Gpu, args: SampleArgs, replicas: Option<&dyn Replicas>) -> Result<()> {
    check_outputs(&args)?;
    let lead = super::leads(replicas);
    let ckpt = open_model(args.checkpoint.as_ref(), lead)?;
    let plan = args
        .spec(ckpt.training.scheduler.as_ref())?
        .plan_trained(&ckpt.training.settings.objective, || {
            ckpt.training.sampling_schedule()
        })?;
    let config = &ckpt.config;
    let weights = if args.raw_weights {
        &ckpt.params
    } else {
        &ckpt.ema
    };
    let params = ParamBuffers::upload(gpu, &ParamLayout::new(config), weights)?;
    let given = read_noise(&args, config.in_channels, config.image_size)?;
    let n = given.as_ref().map_or(args.num, |g| g.0);
    if n == 0 {
        return Err(Error::Usage("--num must be at least 1".into()));
    }
    if args.batch == 0 {
        return Err(Error::Usage("--batch must be at least 1".into()));
    }
    check_guidance(&args, &ckpt)?;
    let batch = batch_that_fits(gpu, &args, &ckpt, &params, n, replicas)?;
    let batches = n.div_ceil(batch);
    if args.gif.is_some() && batches > 1 {
        return Err(Error::Usage(format!(
            "--gif draws one batch's trajectory: give --batch {n} or more (or fewer images)"
        )));
    }
    let (classes, columns) = match &args.class {
        Some(text) => {
            let (list, columns) = parse_class(text, &ckpt, n)?;
            (Some(list), columns)
        }
        None => (None, None),
    };
    let started = Instant::now();
    let bar = progress_bar(lead, n);
    let batched = Batched {
        config,
        params: &params,
        trained: ckpt.training.trained(),
        guidance: args.guidance,
        classes: classes.as_deref(),
        given: given.as_ref().map(|(_, values)| &values[..]),
        frames: if args.gif.is_some() { 24 } else { 0 },
        seed: args.seed,
        stop: None,
    };
    let samples = batched.run_across(gpu, &plan, n, batch, replicas, |finished| {
        bar.set_position(finished as u64);
        if batches > 1 && bar.is_hidden() && lead {
            // Not a terminal (a log, CI): a line per batch (per round of batches across ranks) instead of the bar.
            println!(
                "batch {}/{batches}: {finished} of {n} images",
                finished.div_ceil(batch)
            );
        }
    })?;
    bar.finish_and_clear();
    // Rank 0 holds every image and writes the files.
    let Some(samples) = samples else {
        return Ok(());
    };
    let ranks = replicas.map_or(1, |r| r.ranks());
    println!(
        "{n} samples, {} ({} model evaluations{}) in {:.1} s on {}",
        args.sampler.name(),
        plan.evaluations(),
        if args.guidance != 0.0 {
            ", each two network passes with --guidance"
        } else {
            ""
        },
        started.elapsed().as_secs_f64(),
        match ranks {
            1 => gpu.describe(),
            _ => format!("{ranks} ranks (rank 0 on {})", gpu.describe()),
        }
    );
    write_files(&args, &samples, n, &ckpt, columns)
}

/// `--noise`: the given x_T and its number of images, checked against the model's [N, C, S, S].
fn read_noise(args: &SampleArgs, c: usize, s: usize) -> Result<Option<(usize, Vec<f32>)>> {
    let Some(p) = &args.noise else {
        return Ok(None);
    };
    let (shape, values) = image_io::read_npy(p)?;
    let want = [shape.first().copied().unwrap_or(0), c, s, s];
    if shape.len() != 4 || shape[1..] != want[1..] {
        return Err(Error::data(
            p,
            format!("the noise must have shape [N, {c}, {s}, {s}], got {shape:?}"),
        ));
    }
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(Error::data(
            p,
            format!(
                "{bad} of {} values are not finite (NaN or ±∞): x_T must be finite numbers (draws of N(0, I))",
                values.len()
            ),
        ));
    }
    Ok(Some((shape[0], values)))
}

/// The files a run writes, checked before it starts: each named with the extension of the format its flag writes (a
/// grid called .jpg held PNG bytes). The three formats differ, so this also keeps any two from being one file (an
/// .npy given as --out as well was written over the grid).
fn check_outputs(args: &SampleArgs) -> Result<()> {
    let outputs = [
        ("--out", Some(&args.out), "png", "a PNG grid"),
        ("--npy", args.npy.as_ref(), "npy", "a NumPy .npy array"),
        ("--gif", args.gif.as_ref(), "gif", "an animated GIF"),
    ];
    for (flag, path, ext, what) in outputs {
        let Some(path) = path else { continue };
        let given = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !given.eq_ignore_ascii_case(ext) {
            return Err(Error::Usage(format!(
                "{flag} {}: {flag} writes {what}; give it a name ending in .{ext}",
                path.display()
            )));
        }
    }
    Ok(())
}

/// `--guidance` contrasts the model with and without a class: without either it would change nothing.
fn check_guidance(args: &SampleArgs, ckpt: &Checkpoint) -> Result<()> {
    if args.guidance == 0.0 {
        return Ok(());
    }
    if ckpt.config.num_classes.is_none() {
        return Err(Error::Usage(format!(
            "--guidance {}: this model is unconditional (trained without --class-conditional), so there is no \
             class to guide towards; leave --guidance out",
            args.guidance
        )));
    }
    if args.class.is_none() {
        return Err(Error::Usage(format!(
            "--guidance {} needs --class (an index, a class name, or `all`): it guides towards a class",
            args.guidance
        )));
    }
    Ok(())
}

/// `--batch`, lowered with a note where it does not fit the adapter (the smallest of the job's) or
/// --memory-budget.
fn batch_that_fits(
    gpu: &Gpu,
    args: &SampleArgs,
    ckpt: &Checkpoint,
    params: &ParamBuffers,
    n: usize,
    replicas: Option<&dyn Replicas>,
) -> Result<usize> {
    let budget = args.memory_budget.map(diffuse::values::gigabytes);
    let guided = args.guidance != 0.0;
    let mut fit = max_batch(gpu, &ckpt.config, params, guided, budget)?;
    if let Some(r) = replicas {
        // Every rank must cut the images into the same batches: the smallest adapter decides.
        fit = r.all_gather_u64(fit as u64).into_iter().min().unwrap_or(1) as usize;
    }
    if args.batch.min(n) <= fit {
        return Ok(args.batch);
    }
    say!(
        super::leads(replicas),
        "--batch {} does not fit this adapter{}: sampling in batches of {fit} (pass --batch {fit} to \
         reproduce these images)",
        args.batch.min(n),
        if budget.is_some() { " and --memory-budget" } else { "" }
    );
    Ok(fit)
}

/// The images' progress bar on the lead rank, hidden on the others.
fn progress_bar(lead: bool, n: usize) -> indicatif::ProgressBar {
    match lead {
        true => indicatif::ProgressBar::new(n as u64),
        false => indicatif::ProgressBar::hidden(),
    }
    .with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} images  [{elapsed_precise} elapsed, ETA {eta_precise}]",
        )
        .expect("valid template"),
    )
}

/// The PNG grid, and the .npy and GIF where asked for, of finite samples.
fn write_files(
    args: &SampleArgs,
    samples: &Samples,
    n: usize,
    ckpt: &Checkpoint,
    columns: Option<usize>,
) -> Result<()> {
    let (c, s) = (ckpt.config.in_channels, ckpt.config.image_size);
    let Samples { pixels, trajectory } = samples;
    diffuse::sample::check_finite(pixels, "sampling")?;
    image_io::save_grid_png(&args.out, pixels, n, c, s, columns)?;
    println!("wrote {}", args.out.display());
    if let Some(p) = &args.npy {
        image_io::write_npy(p, &[n, c, s, s], pixels)?;
        println!("wrote {}", p.display());
    }
    if let (Some(p), Some(frames)) = (&args.gif, trajectory) {
        image_io::save_gif(p, frames, n, c, s, columns, 80)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
