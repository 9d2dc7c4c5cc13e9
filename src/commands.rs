//! The `train` and `sample` commands: argument handling, progress, files. The work itself is in `train.rs`,
//! `sample.rs` and `model/`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::checkpoint::Checkpoint;
use crate::data::{Dataset, Fit};
use crate::diffusion::samplers::{self, Clip, DdpmVariance, Plan, Prediction, Process, Spacing};
use crate::diffusion::{BetaSchedule, Schedule};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::image_io;
use crate::model::denoiser::UNetDenoiser;
use crate::model::UNetConfig;
use crate::sample::Sampler;
use crate::train::{LossReport, TrainSettings, Trainer};

/// Where `diffuse sample` looks when no checkpoint is given: the model shipped in `assets/`.
pub const BUNDLED_CHECKPOINT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/small-mnist.safetensors"
);

/// `diffuse train`: see `--help` for what each option does.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training data: an image folder or IDX file/folder (default: the built-in 10,000-digit MNIST subset).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model size: tiny (28×28×1, 45 k parameters, for quick tries), small (28×28×1, 1.1 M), medium (28×28×1,
    /// 6.5 M), rgb32 (32×32×3).
    #[arg(long, default_value = "small")]
    pub preset: String,
    /// Condition on the dataset's classes (MNIST labels or subfolders), for `diffuse sample --class`.
    #[arg(long)]
    pub class_conditional: bool,
    /// Total optimizer steps (a resumed run continues up to this count).
    #[arg(long, default_value_t = 10_000)]
    pub steps: u64,
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Peak learning rate (Adam), reached after --warmup steps.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 500)]
    pub warmup: u64,
    /// EMA decay of the weights used for sampling.
    #[arg(long, default_value_t = 0.999)]
    pub ema: f64,
    /// Global gradient-norm clip (0 turns it off).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Noise schedule: linear (Ho et al.) or cosine (Nichol & Dhariwal).
    #[arg(long, default_value = "linear")]
    pub schedule: String,
    /// Dropout probability in every residual block (Ho et al. used 0.1 on CIFAR-10): a regulariser for long runs
    /// on small datasets. Training only; sampling never drops.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder for checkpoint.safetensors and samples-*.png (default: runs/<preset>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, default_value_t = 1000)]
    pub sample_every: u64,
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Read the loss back every this many steps (the GPU runs ahead in between).
    #[arg(long, default_value_t = 25)]
    pub log_every: u64,
    /// Continue the run in --out from its checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Colour (R,G,B) that transparent pixels are composited onto.
    #[arg(long, default_value = "255,255,255", value_parser = parse_rgb)]
    pub background: [u8; 3],
    /// Mirror each training image left–right at random (augmentation for photos and faces; not for digits or
    /// text, whose mirror images are not examples of the data).
    #[arg(long)]
    pub flip: bool,
    #[arg(long)]
    pub adapter: Option<String>,
}

/// `--data` (or the built-in MNIST subset when absent), fitted to the model's channels and size.
fn open_dataset(
    data: Option<&std::path::Path>,
    config: &UNetConfig,
    background: [u8; 3],
) -> Result<Dataset> {
    let fit = Fit {
        channels: config.in_channels,
        size: config.image_size,
        background,
    };
    match data {
        Some(path) => Dataset::open(path, fit),
        None => Dataset::builtin(fit),
    }
}

fn schedule_by_name(name: &str) -> Result<BetaSchedule> {
    match name {
        "linear" => Ok(BetaSchedule::LINEAR),
        "cosine" => Ok(BetaSchedule::COSINE),
        other => Err(Error::Usage(format!(
            "unknown schedule {other:?}: use linear or cosine"
        ))),
    }
}

fn schedule_name(s: BetaSchedule) -> &'static str {
    if s == BetaSchedule::COSINE {
        "cosine"
    } else {
        "linear"
    }
}

/// Reads the training settings a checkpoint recorded (schedule, T), so sampling uses the trained process.
fn schedule_of(ckpt: &Checkpoint) -> Result<Schedule> {
    let kind = schedule_by_name(
        ckpt.extra
            .get("schedule")
            .map(String::as_str)
            .unwrap_or("linear"),
    )?;
    let steps = ckpt
        .extra
        .get("timesteps")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1000);
    Schedule::new(kind, steps)
}

pub fn parse_rgb(text: &str) -> Result<[u8; 3], String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [r, g, b] => Ok([r, g, b]
            .map(|v| v.parse::<u8>().map_err(|_| format!("{v:?} is not 0–255")))
            .into_iter()
            .collect::<Result<Vec<u8>, String>>()?
            .try_into()
            .expect("three values")),
        _ => Err(format!("expected R,G,B (e.g. 255,255,255), got {text:?}")),
    }
}

pub fn train(gpu: &Gpu, args: TrainArgs) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(&args.preset));
    let (log_every, checkpoint_every, sample_every) = (
        args.log_every.max(1),
        args.checkpoint_every.max(1),
        args.sample_every.max(1),
    );
    let mut config = UNetConfig::preset(&args.preset)?;
    config.dropout = args.dropout;
    config.validate()?;
    let dataset = open_dataset(args.data.as_deref(), &config, args.background)?;
    if args.class_conditional {
        if dataset.labels.is_none() {
            return Err(Error::Usage(format!(
                "--class-conditional needs labels, and {} has none (use MNIST IDX with labels, or one subfolder per class)",
                dataset.description
            )));
        }
        config.num_classes = Some(dataset.class_names.len());
    }
    let checkpoint_path = out.join("checkpoint.safetensors");
    let resume = if args.resume {
        if !checkpoint_path.exists() {
            return Err(Error::Usage(format!(
                "--resume: no checkpoint at {}",
                checkpoint_path.display()
            )));
        }
        Some(Checkpoint::load(&checkpoint_path)?)
    } else {
        if checkpoint_path.exists() {
            return Err(Error::Usage(format!(
                "{} already holds a run; continue it with --resume, or choose another --out",
                checkpoint_path.display()
            )));
        }
        None
    };
    let mut settings = TrainSettings::new(config.clone());
    settings.batch = args.batch;
    settings.lr = args.lr;
    settings.warmup = args.warmup;
    settings.ema_decay = args.ema;
    settings.grad_clip = (args.clip > 0.0).then_some(args.clip);
    settings.schedule = schedule_by_name(&args.schedule)?;
    settings.seed = resume.as_ref().map_or(args.seed, |c| c.seed);
    settings.flip = args.flip;
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;

    let mut trainer = Trainer::new(gpu, settings.clone(), &dataset, resume.as_ref())?;
    let start_step = trainer.step;
    if start_step >= args.steps {
        println!(
            "{} is already at step {start_step} ≥ --steps {}",
            checkpoint_path.display(),
            args.steps
        );
        return Ok(());
    }
    println!(
        "training {} ({} parameters) on {} for steps {}..{} at batch {}, on {}",
        args.preset,
        crate::model::ParamLayout::new(&config).count(),
        dataset.description,
        start_step,
        args.steps,
        args.batch,
        gpu.describe()
    );
    let extra = HashMap::from([
        (
            "schedule".to_string(),
            schedule_name(settings.schedule).to_string(),
        ),
        ("timesteps".to_string(), settings.timesteps.to_string()),
        ("prediction".to_string(), "epsilon".to_string()),
        ("dataset".to_string(), dataset.description.clone()),
        ("lr".to_string(), settings.lr.to_string()),
        ("batch".to_string(), settings.batch.to_string()),
        ("flip".to_string(), settings.flip.to_string()),
    ]);
    let mut extra = extra;
    if config.num_classes.is_some() {
        // So that `diffuse sample --class` takes the names of the training subfolders.
        extra.insert("class_names".into(), dataset.class_names.join("\n"));
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // A second handler cannot be installed in the same process (tests); then Ctrl-C simply kills the run.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let bar = indicatif::ProgressBar::new(args.steps);
    bar.set_position(start_step);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} elapsed, ETA {eta_precise}]",
        )
        .expect("valid template"),
    );
    let started = Instant::now();
    let save = |trainer: &Trainer| -> Result<()> {
        trainer
            .checkpoint(gpu, extra.clone())?
            .save(&checkpoint_path)
    };
    let show = |report: &LossReport| {
        let rate = (report.step - start_step) as f64 / started.elapsed().as_secs_f64();
        let message = format!(
            "loss {:.4}  grad-norm {:.3}  {rate:.2} steps/s",
            report.loss, report.grad_norm
        );
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            // Not a terminal (a log file, CI): one plain line per report instead of a bar.
            println!("step {}/{}  {message}", report.step, args.steps);
        }
        bar.set_message(message);
    };
    while trainer.step < args.steps {
        let step = trainer.step + 1;
        // Read once: a Ctrl-C arriving later in this step is seen by the next one, which then saves.
        let stopping = interrupted.load(Ordering::SeqCst);
        let last = step == args.steps || stopping;
        let checkpoint_due = step % checkpoint_every == 0 || last;
        let sample_due = step % sample_every == 0 || step == args.steps;
        // Every step that saves or samples reports too, so that its loss is known to be finite first.
        trainer.step(gpu, step % log_every == 0 || checkpoint_due || sample_due)?;
        // Reports arrive a step or more late: the GPU keeps running while the host prints them.
        for report in trainer.poll_losses(gpu)? {
            show(&report);
        }
        bar.set_position(step);
        if checkpoint_due || sample_due {
            // Waiting here is what makes a diverged run stop before its checkpoint could overwrite a good one.
            for report in trainer.wait_losses(gpu)? {
                show(&report);
            }
        }
        if checkpoint_due {
            save(&trainer)?;
        }
        if sample_due {
            let ckpt = trainer.checkpoint(gpu, extra.clone())?;
            let path = out.join(format!("samples-{step:07}.png"));
            // A class-conditional run previews every class, one per column, twice; others 16 images.
            let (n, columns) = match config.num_classes {
                Some(count) => (2 * count, Some(count)),
                None => (16, None),
            };
            let pixels = sample_grid(gpu, &ckpt, n, settings.seed)?;
            image_io::save_grid_png(
                &path,
                &pixels,
                n,
                config.in_channels,
                config.image_size,
                columns,
            )?;
            bar.println(format!("step {step}: wrote {}", path.display()));
        }
        if stopping {
            bar.abandon();
            println!(
                "interrupted: saved {} at step {step}; continue with --resume",
                checkpoint_path.display()
            );
            return Ok(());
        }
    }
    bar.finish();
    println!(
        "done: {} steps in {:.1} s; checkpoint {}",
        args.steps - start_step,
        started.elapsed().as_secs_f64(),
        checkpoint_path.display()
    );
    Ok(())
}

/// n samples of the checkpoint's EMA weights with 50 DDIM steps (the preview written during training); a
/// class-conditional model draws image i of class i mod C.
fn sample_grid(gpu: &Gpu, ckpt: &Checkpoint, n: usize, seed: u64) -> Result<Vec<f32>> {
    let schedule = schedule_of(ckpt)?;
    let list = samplers::timesteps(
        schedule.num_steps(),
        50.min(schedule.num_steps()),
        Spacing::Trailing,
    )?;
    let plan = samplers::ddim(&schedule, &list, 0.0, Some(Clip { lo: -1.0, hi: 1.0 }))?;
    let params = Tensor::from_f32(gpu, &[ckpt.ema.len()], &ckpt.ema)?;
    let classes: Option<Vec<u32>> = ckpt
        .config
        .num_classes
        .map(|count| (0..n).map(|i| (i % count) as u32).collect());
    let model = UNetDenoiser::new(
        gpu,
        &ckpt.config,
        &params,
        n,
        classes.as_deref(),
        0.0,
        Prediction::Epsilon,
    )?;
    let s = ckpt.config.image_size;
    let sampler = Sampler::new(
        gpu,
        &plan,
        &model,
        &[n, ckpt.config.in_channels, s, s],
        seed,
    )?;
    sampler.run(gpu)
}

/// `diffuse eval`: see `--help` for what each option does.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// A checkpoint written by `diffuse train` (default: the model bundled in assets/).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// The images to evaluate on: as for `diffuse train --data` (default: the built-in MNIST subset).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Evaluate the first this many images of the dataset.
    #[arg(long, default_value_t = 64)]
    pub images: usize,
    /// Network evaluations per image: the decoder and last terms plus one timestep from each of the others'
    /// strata (an unbiased estimate); T (e.g. 1000) or more evaluates every timestep.
    #[arg(long, default_value_t = 50)]
    pub timesteps: usize,
    /// Rows (image, timestep) per network evaluation.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// The reverse process's variance: small (β̃_t, the posterior's) or large (β_t), as in Ho et al.
    #[arg(long, default_value = "small")]
    pub variance: String,
    /// For a class-conditional model, bound p(x) (the "no class" label) instead of p(x | its label).
    #[arg(long)]
    pub unconditional: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    let ckpt = Checkpoint::load(&checkpoint_or_bundled(args.checkpoint.as_ref())?)?;
    let config = &ckpt.config;
    let dataset = open_dataset(args.data.as_deref(), config, args.background)?;
    let variance = match args.variance.as_str() {
        "small" => DdpmVariance::PosteriorBeta,
        "large" => DdpmVariance::Beta,
        other => {
            return Err(Error::Usage(format!(
                "unknown --variance {other:?}: use small (β̃_t) or large (β_t)"
            )))
        }
    };
    let schedule = schedule_of(&ckpt)?;
    let weights = if args.raw_weights {
        &ckpt.params
    } else {
        &ckpt.ema
    };
    let params = Tensor::from_f32(gpu, &[weights.len()], weights)?;
    let options = crate::eval::BoundOptions {
        images: args.images,
        per_image: args.timesteps,
        batch: args.batch,
        variance,
        use_labels: !args.unconditional,
        seed: args.seed,
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
    let estimate = crate::eval::estimate_bound(
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

/// The checkpoint to read: the one given, else the bundled model.
fn checkpoint_or_bundled(given: Option<&PathBuf>) -> Result<PathBuf> {
    match given {
        Some(p) => Ok(p.clone()),
        None => {
            let bundled = PathBuf::from(BUNDLED_CHECKPOINT);
            if !bundled.exists() {
                return Err(Error::Usage(format!(
                    "no --checkpoint given and no bundled model at {}: train one with `diffuse train` and pass \
                     --checkpoint runs/small/checkpoint.safetensors",
                    bundled.display()
                )));
            }
            Ok(bundled)
        }
    }
}

/// The class names a checkpoint recorded (one per line in its metadata), if any.
fn class_names(ckpt: &Checkpoint) -> Vec<String> {
    ckpt.extra
        .get("class_names")
        .map(|names| names.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

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
    let names = class_names(ckpt);
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
    /// A checkpoint written by `diffuse train`.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// ddpm (ancestral), ddim (η = --eta), sde (reverse-time SDE, Euler–Maruyama), ode (probability-flow ODE,
    /// Heun), pc (predictor–corrector), langevin (annealed Langevin dynamics alone, 20 steps at each of
    /// --steps / 20 noise levels).
    #[arg(long, default_value = "ddim")]
    pub sampler: String,
    /// Sampling steps (model evaluations; Heun uses about two per step).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// DDIM's η: 0 is deterministic, 1 is DDPM-like.
    #[arg(long, default_value_t = 0.0)]
    pub eta: f64,
    /// How the steps are chosen among the T training timesteps: trailing (default; starts at T−1),
    /// leading (diffusers' DDIM default), linspace.
    #[arg(long, default_value = "trailing")]
    pub spacing: String,
    /// Number of images.
    #[arg(short, long, default_value_t = 16)]
    pub num: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Class to generate (class-conditional models): its index, its name (a training subfolder's), or `all` for
    /// every class in turn, one class per grid column.
    #[arg(long)]
    pub class: Option<String>,
    /// Classifier-free guidance weight w (ε̂ = (1+w)·ε(x,c) − w·ε(x,∅)); 0 turns guidance off.
    #[arg(long, default_value_t = 0.0)]
    pub guidance: f32,
    /// The PNG grid to write.
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

/// Langevin steps at each noise level of `--sampler langevin` (NCSN used 100 per level over 10 levels, NCSNv2 5
/// over hundreds; 20 at ε_t = σ_t² reproduces the exact model's moments in tests/it/sampling.rs).
const LANGEVIN_STEPS_PER_LEVEL: usize = 20;

fn plan_for(args: &SampleArgs, schedule: &Schedule) -> Result<Plan> {
    let spacing = match args.spacing.as_str() {
        "trailing" => Spacing::Trailing,
        "leading" => Spacing::LEADING,
        "linspace" => Spacing::Linspace,
        other => {
            return Err(Error::Usage(format!(
                "unknown --spacing {other:?}: use trailing, leading or linspace"
            )))
        }
    };
    let t = schedule.num_steps();
    let list = samplers::timesteps(t, args.steps.min(t), spacing)?;
    let clip = Some(Clip { lo: -1.0, hi: 1.0 });
    match args.sampler.as_str() {
        "ddpm" => samplers::ddpm(schedule, &list, DdpmVariance::Beta, clip),
        "ddim" => samplers::ddim(schedule, &list, args.eta, clip),
        "sde" => samplers::euler_maruyama(schedule, &list),
        "ode" => samplers::heun(schedule, &list),
        "pc" => samplers::predictor_corrector(
            Process::Vp {
                schedule,
                timesteps: &list,
            },
            1,
            0.16,
        ),
        "langevin" => {
            // --steps counts model evaluations: LANGEVIN_STEPS_PER_LEVEL at each of steps / that many levels.
            let per_level = LANGEVIN_STEPS_PER_LEVEL.min(args.steps);
            let levels = samplers::timesteps(t, (args.steps / per_level).min(t), spacing)?;
            samplers::annealed_langevin_vp(schedule, &levels, per_level, 1.0, true)
        }
        other => Err(Error::Usage(format!(
            "unknown --sampler {other:?}: use ddpm, ddim, sde, ode, pc or langevin"
        ))),
    }
}

pub fn sample(gpu: &Gpu, args: SampleArgs) -> Result<()> {
    let ckpt = Checkpoint::load(&checkpoint_or_bundled(args.checkpoint.as_ref())?)?;
    let schedule = schedule_of(&ckpt)?;
    let plan = plan_for(&args, &schedule)?;
    let config = &ckpt.config;
    let (c, s) = (config.in_channels, config.image_size);
    let weights = if args.raw_weights {
        &ckpt.params
    } else {
        &ckpt.ema
    };
    let params = Tensor::from_f32(gpu, &[weights.len()], weights)?;
    let given = match &args.noise {
        Some(p) => {
            let (shape, values) = image_io::read_npy(p)?;
            let want = [shape.first().copied().unwrap_or(0), c, s, s];
            if shape.len() != 4 || shape[1..] != want[1..] {
                return Err(Error::data(
                    p,
                    format!("the noise must have shape [N, {c}, {s}, {s}], got {shape:?}"),
                ));
            }
            Some(Tensor::from_f32(gpu, &shape, &values)?)
        }
        None => None,
    };
    let n = given.as_ref().map_or(args.num, |g| g.shape()[0]);
    if n == 0 {
        return Err(Error::Usage("--num must be at least 1".into()));
    }
    let (classes, columns) = match &args.class {
        Some(text) => {
            let (list, columns) = parse_class(text, &ckpt, n)?;
            (Some(list), columns)
        }
        None => (None, None),
    };
    let model = UNetDenoiser::new(
        gpu,
        config,
        &params,
        n,
        classes.as_deref(),
        args.guidance,
        Prediction::Epsilon,
    )?;
    let frames = if args.gif.is_some() { 24 } else { 0 };
    let sampler = Sampler::with_trajectory(
        gpu,
        &plan,
        &model,
        &[n, c, s, s],
        given.as_ref(),
        args.seed,
        frames,
    )?;
    let started = Instant::now();
    let pixels = sampler.run(gpu)?;
    println!(
        "{n} samples, {} ({} model evaluations) in {:.1} s on {}",
        args.sampler,
        plan.steps.len(),
        started.elapsed().as_secs_f64(),
        gpu.describe()
    );
    image_io::save_grid_png(&args.out, &pixels, n, c, s, columns)?;
    println!("wrote {}", args.out.display());
    if let Some(p) = &args.npy {
        image_io::write_npy(p, &[n, c, s, s], &pixels)?;
        println!("wrote {}", p.display());
    }
    if let Some(p) = &args.gif {
        image_io::save_gif(p, &sampler.frames(gpu)?, n, c, s, columns, 80)?;
        println!("wrote {}", p.display());
    }
    Ok(())
}
