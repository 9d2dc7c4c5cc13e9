//! `diffuse train`: arguments, the progress bar, Ctrl-C, checkpoints and preview grids. The training step itself
//! is `diffuse::train`.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use diffuse::checkpoint::Checkpoint;
use diffuse::diffusion::samplers::{self, Clip, Spacing};
use diffuse::diffusion::{NamedSchedule, Prediction};
use diffuse::distributed::Replicas;
use diffuse::gpu::Gpu;
use diffuse::image_io;
use diffuse::model::denoiser::{max_batch, Batched};
use diffuse::model::{ParamBuffers, ParamLayout, Preset, UNetConfig};
use diffuse::optim::EmaWarmup;
use diffuse::train::{LossReport, Placement, TrainSettings, Trainer};
use diffuse::{Error, Result};

use super::{
    at_least_one, non_negative, open_dataset, parse_rgb, positive, probability_below_one,
    unit_interval, value_name,
};

/// `diffuse train`: see `--help` for what each option does.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training data: an image folder or IDX file/folder (default: the built-in 10,000-digit MNIST subset).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model size: the U-Net configuration the model flags below start from.
    #[arg(long, value_enum, default_value_t = Preset::Small)]
    pub preset: Preset,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Condition on the dataset's classes (MNIST labels or subfolders), for `diffuse sample --class`.
    #[arg(long)]
    pub class_conditional: bool,
    /// Total optimizer steps (a resumed run continues up to this count).
    #[arg(long, default_value_t = 10_000)]
    pub steps: u64,
    /// Images per batch [default: 32; on --resume, the checkpoint's].
    #[arg(long, value_parser = at_least_one)]
    pub batch: Option<usize>,
    /// Sum the gradients of this many batches before each optimizer step (a larger effective batch in the same
    /// memory: each step sees --batch × --grad-accum images) [default: 1; on --resume, the checkpoint's].
    #[arg(long, value_parser = at_least_one)]
    pub grad_accum: Option<usize>,
    /// Images per forward/backward pass; must divide --batch (default: the whole batch if it fits the adapter and
    /// --memory-budget, else the largest divisor that does).
    #[arg(long, value_parser = at_least_one)]
    pub micro_batch: Option<usize>,
    /// GPU memory the run may use, in GB (default: only the adapter's per-buffer limit is checked).
    #[arg(long, value_parser = positive)]
    pub memory_budget: Option<f64>,
    /// Peak learning rate (Adam), reached after --warmup steps [default: 2e-4; on --resume, the checkpoint's].
    #[arg(long, value_parser = non_negative)]
    pub lr: Option<f64>,
    /// Steps of linear learning-rate warm-up [default: 500; on --resume, the checkpoint's].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// EMA decay of the weights used for sampling, in [0, 1] [default: 0.999; on --resume, the checkpoint's].
    #[arg(long, value_parser = unit_interval)]
    pub ema: Option<f64>,
    /// Global gradient-norm clip (0 turns it off) [default: 1; on --resume, the checkpoint's].
    #[arg(long, value_parser = non_negative)]
    pub clip: Option<f64>,
    /// Noise schedule [default: linear; on --resume, the checkpoint's].
    #[arg(long, value_enum)]
    pub schedule: Option<NamedSchedule>,
    /// What the network learns to predict: eps (the noise ε, Ho et al. 2020), x0 (the clean image) or v =
    /// √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho 2022). Every sampler and `diffuse eval` read it from the checkpoint
    /// [default: eps; on --resume, the checkpoint's].
    #[arg(long, value_enum)]
    pub prediction: Option<PredictionArg>,
    /// Min-SNR-γ loss weighting (Hang et al. 2023): weight each image's loss so that it equals min(SNR_t, γ)·‖x̂₀ −
    /// x₀‖², SNR_t = ᾱ_t/(1 − ᾱ_t); the paper uses γ = 5. `off`: the plain MSE [default: off; on --resume, the
    /// checkpoint's].
    #[arg(long, value_parser = parse_gamma)]
    pub min_snr_gamma: Option<Gamma>,
    /// Rescale the schedule to zero terminal SNR (Lin et al. 2024, algorithm 1: √ᾱ shifted and scaled so that
    /// ᾱ = 0 at the last timestep, ᾱ at the first unchanged), so that training sees the pure noise sampling starts
    /// from. Needs --prediction v (or x0). `--zero-terminal-snr false` turns it off [default: off; on --resume,
    /// the checkpoint's].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub zero_terminal_snr: Option<bool>,
    /// EMA warm-up as diffusers' EMAModel (use_ema_warmup): the decay at step k is 1 − (1 + k/inv_gamma)^(−POWER),
    /// capped at --ema (2/3 suits runs of a million steps, 3/4 shorter ones). `off`: min(--ema, (1 + k)/(10 + k))
    /// [default: off; on --resume, the checkpoint's].
    #[arg(long, value_parser = parse_gamma, value_name = "POWER")]
    pub ema_warmup: Option<Gamma>,
    /// inv_gamma of --ema-warmup [default: 1].
    #[arg(long, value_parser = positive, requires = "ema_warmup")]
    pub ema_inv_gamma: Option<f64>,
    /// Dropout probability in every residual block, in [0, 1) (Ho et al. used 0.1 on CIFAR-10): a regulariser for
    /// long runs on small datasets. Training only; sampling never drops.
    #[arg(long, default_value_t = 0.0, value_parser = probability_below_one)]
    pub dropout: f32,
    /// Seed of every random draw of the run [default: 0; on --resume, the checkpoint's].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output folder for checkpoint.safetensors, samples-*.png, metrics.csv and loss.png (default: runs/<preset>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a preview grid (samples-<step>.png, from the same noise each time) and redraw loss.png this often.
    #[arg(long, default_value_t = 1000)]
    pub sample_every: u64,
    /// Images in each preview grid (default 16, or two per class); 0 writes no grids (only loss.png): a preview of
    /// a large model takes minutes on a CPU adapter.
    #[arg(long)]
    pub preview: Option<usize>,
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: u64,
    /// Read the loss back every this many steps (the GPU runs ahead in between).
    #[arg(long, default_value_t = 25)]
    pub log_every: u64,
    /// Continue the run in --out from its checkpoint, with its settings: a flag that differs from the checkpoint's
    /// record is refused unless --override names it.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: the settings that may differ from the checkpoint's, comma-separated (e.g. lr,batch); each
    /// change is recorded in the checkpoint (`extra.changes`).
    #[arg(
        long = "override",
        value_enum,
        value_delimiter = ',',
        requires = "resume"
    )]
    pub overrides: Vec<Setting>,
    /// Colour (R,G,B) that transparent pixels are composited onto.
    #[arg(long, default_value = "255,255,255", value_parser = parse_rgb)]
    pub background: [u8; 3],
    /// Mirror each training image left–right at random (augmentation for photos and faces; not for digits or
    /// text, whose mirror images are not examples of the data). `--flip false` turns it off [default: off; on
    /// --resume, the checkpoint's].
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub flip: Option<bool>,
    /// Where the training images live: `gpu` (gathered there each step), `host` (each step's images uploaded
    /// while the GPU works on the previous step), or `auto` (the GPU if they fit one buffer binding).
    #[arg(long, value_enum, default_value_t = DataOn::Auto)]
    pub data_on: DataOn,
    /// GPU adapter: an index from `diffuse info` or part of its name (default: DIFFUSE_ADAPTER, else the first
    /// discrete GPU, else any; under `mpirun`, each rank the one its local rank picks: docs/distributed.md).
    #[arg(long)]
    pub adapter: Option<String>,
}

/// A setting `--resume` compares with the checkpoint's record (`--override` names).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Setting {
    Data,
    Schedule,
    Batch,
    GradAccum,
    Lr,
    Warmup,
    Ema,
    Clip,
    Flip,
    Seed,
    Prediction,
    MinSnrGamma,
    ZeroTerminalSnr,
    EmaWarmup,
}

/// `--prediction`: the training targets (the score is not one).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictionArg {
    /// The noise ε
    Eps,
    /// The clean image x₀
    X0,
    /// The velocity v = √ᾱ·ε − √(1−ᾱ)·x₀
    V,
}

impl PredictionArg {
    fn prediction(self) -> Prediction {
        match self {
            PredictionArg::Eps => Prediction::Epsilon,
            PredictionArg::X0 => Prediction::Sample,
            PredictionArg::V => Prediction::Velocity,
        }
    }

    fn of(prediction: Prediction) -> Result<PredictionArg> {
        match prediction {
            Prediction::Epsilon => Ok(PredictionArg::Eps),
            Prediction::Sample => Ok(PredictionArg::X0),
            Prediction::Velocity => Ok(PredictionArg::V),
            Prediction::Score => Err(Error::Usage(
                "the checkpoint's model predicts the score, which `diffuse train` cannot train (eps, x0 or v)"
                    .into(),
            )),
        }
    }
}

impl std::fmt::Display for PredictionArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&value_name(self))
    }
}

/// A positive number or `off` (`--min-snr-gamma`, `--ema-warmup`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Gamma(pub Option<f64>);

impl std::fmt::Display for Gamma {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("off"),
        }
    }
}

fn parse_gamma(text: &str) -> std::result::Result<Gamma, String> {
    if text.trim() == "off" {
        return Ok(Gamma(None));
    }
    positive(text).map(|v| Gamma(Some(v)))
}

/// `--ema-warmup` and `--ema-inv-gamma` as one setting, shown as the flags that give it.
#[derive(Clone, Copy, PartialEq)]
struct Warmup(EmaWarmup);

impl std::fmt::Display for Warmup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            EmaWarmup::Ddpm => f.write_str("off"),
            EmaWarmup::Power { power, inv_gamma } => {
                write!(f, "{power} --ema-inv-gamma {inv_gamma}")
            }
        }
    }
}

/// The settings of a run, each from its flag, else (on --resume) the checkpoint's record, else the default; and
/// the flags that differ from the record: (setting, "--lr 0.001 (checkpoint: 0.0002)").
struct Resolved {
    differences: Vec<(Setting, String)>,
}

impl Resolved {
    fn pick<T: PartialEq + std::fmt::Display>(
        &mut self,
        setting: Setting,
        given: Option<T>,
        recorded: Option<T>,
        default: T,
    ) -> T {
        match (given, recorded) {
            (Some(given), Some(recorded)) => {
                if given != recorded {
                    self.differences.push((
                        setting,
                        format!(
                            "--{} {given} (checkpoint: {recorded})",
                            value_name(&setting)
                        ),
                    ));
                }
                given
            }
            (given, recorded) => given.or(recorded).unwrap_or(default),
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum DataOn {
    Auto,
    Gpu,
    Host,
}

/// Overrides of the preset's U-Net configuration, each defaulting to the preset's value; stored in the checkpoint.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// Square image side in pixels; must be divisible by 2^(levels − 1).
    #[arg(long, help_heading = "Model")]
    pub image_size: Option<usize>,
    /// Image channels: 1 (grayscale) or 3 (RGB).
    #[arg(long, help_heading = "Model")]
    pub channels: Option<usize>,
    /// Channels of the first level (the time embedding has four times as many).
    #[arg(long, help_heading = "Model")]
    pub base_channels: Option<usize>,
    /// Channel multiplier of each level, comma-separated (e.g. 1,2,2,2): one level per entry.
    #[arg(long, value_parser = parse_sizes, help_heading = "Model")]
    pub channel_mults: Option<Sizes>,
    /// Residual blocks per level on the way down.
    #[arg(long, help_heading = "Model")]
    pub blocks_per_level: Option<usize>,
    /// Feature-map sides with self-attention, comma-separated (e.g. 16,8), or `none`.
    #[arg(long, value_parser = parse_sizes, help_heading = "Model")]
    pub attention_resolutions: Option<Sizes>,
    /// Attention heads; must divide the channel count where attention is used.
    #[arg(long, help_heading = "Model")]
    pub heads: Option<usize>,
    /// GroupNorm groups; must divide every channel count.
    #[arg(long, help_heading = "Model")]
    pub groups: Option<usize>,
}

/// A comma-separated list of sizes (`none`: the empty list).
#[derive(Clone, Debug)]
pub struct Sizes(pub Vec<usize>);

fn parse_sizes(text: &str) -> std::result::Result<Sizes, String> {
    if text.trim() == "none" {
        return Ok(Sizes(Vec::new()));
    }
    text.split(',')
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{v:?} is not a whole number (expected e.g. 1,2,2 or none)"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Sizes)
}

impl ModelArgs {
    /// `config` with every field given on the command line replaced.
    fn apply(&self, mut config: UNetConfig) -> UNetConfig {
        let set = |field: &mut usize, value: Option<usize>| {
            if let Some(v) = value {
                *field = v;
            }
        };
        set(&mut config.image_size, self.image_size);
        set(&mut config.in_channels, self.channels);
        set(&mut config.base_channels, self.base_channels);
        set(&mut config.blocks_per_level, self.blocks_per_level);
        set(&mut config.heads, self.heads);
        set(&mut config.groups, self.groups);
        if let Some(Sizes(mults)) = &self.channel_mults {
            config.channel_mults = mults.clone();
        }
        if let Some(Sizes(sides)) = &self.attention_resolutions {
            config.attention_resolutions = sides.clone();
        }
        config
    }
}

/// How a training run ended.
pub enum Finished {
    /// It reached --steps (or was already there).
    Done,
    /// A signal stopped it after it saved a checkpoint.
    Interrupted,
}

/// Trains as `args` say; one rank of a data-parallel run with `replicas` (every rank trains, rank 0 alone prints
/// and writes files).
pub fn train(gpu: &Gpu, args: TrainArgs, replicas: Option<Rc<dyn Replicas>>) -> Result<Finished> {
    let lead = super::leads(replicas.as_deref());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(args.preset.to_string()));
    let (log_every, checkpoint_every, sample_every) = (
        args.log_every.max(1),
        args.checkpoint_every.max(1),
        args.sample_every.max(1),
    );
    let mut config = args.model.apply(args.preset.config());
    config.dropout = args.dropout;
    config.validate()?;
    // Rank 0 opens the data first, so that on its machine (or a shared cache folder) the others load the images
    // it decoded and cached instead of all decoding them at once. (If it fails, its error ends the job while the
    // others wait.)
    if let Some(r) = replicas.as_ref().filter(|r| r.rank() != 0) {
        r.barrier();
    }
    let dataset = open_dataset(args.data.as_deref(), &config, args.background, lead)?;
    if let Some(r) = replicas.as_ref().filter(|r| r.rank() == 0) {
        r.barrier();
    }
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
    let record = resume.as_ref().map(|c| &c.training);
    let mut resolved = Resolved {
        differences: Vec::new(),
    };
    // The dataset has no default to fall back on: what was opened is compared with what the checkpoint recorded.
    resolved.pick(
        Setting::Data,
        Some(dataset.description.clone()),
        record.map(|r| r.dataset.clone()),
        String::new(),
    );
    let defaults = settings.clone();
    settings.schedule = resolved.pick(
        Setting::Schedule,
        args.schedule,
        record.map(|r| r.schedule),
        defaults.schedule,
    );
    settings.batch = resolved.pick(
        Setting::Batch,
        args.batch,
        record.map(|r| r.batch),
        defaults.batch,
    );
    settings.grad_accum = resolved.pick(
        Setting::GradAccum,
        args.grad_accum,
        record.map(|r| r.grad_accum),
        defaults.grad_accum,
    );
    settings.lr = resolved.pick(Setting::Lr, args.lr, record.map(|r| r.lr), defaults.lr);
    settings.warmup = resolved.pick(
        Setting::Warmup,
        args.warmup,
        record.map(|r| r.warmup),
        defaults.warmup,
    );
    settings.ema_decay = resolved.pick(
        Setting::Ema,
        args.ema,
        record.map(|r| r.ema),
        defaults.ema_decay,
    );
    let clip = resolved.pick(
        Setting::Clip,
        args.clip,
        record.map(|r| r.clip),
        defaults.grad_clip.unwrap_or(0.0),
    );
    settings.grad_clip = (clip > 0.0).then_some(clip);
    settings.flip = resolved.pick(
        Setting::Flip,
        args.flip,
        record.map(|r| r.flip),
        defaults.flip,
    );
    settings.seed = resolved.pick(
        Setting::Seed,
        args.seed,
        resume.as_ref().map(|c| c.seed),
        defaults.seed,
    );
    let recorded_prediction = record
        .map(|r| PredictionArg::of(r.prediction))
        .transpose()?;
    settings.target = resolved
        .pick(
            Setting::Prediction,
            args.prediction,
            recorded_prediction,
            PredictionArg::of(defaults.target)?,
        )
        .prediction();
    settings.min_snr_gamma = resolved
        .pick(
            Setting::MinSnrGamma,
            args.min_snr_gamma,
            record.map(|r| Gamma(r.min_snr_gamma)),
            Gamma(defaults.min_snr_gamma),
        )
        .0;
    settings.zero_terminal_snr = resolved.pick(
        Setting::ZeroTerminalSnr,
        args.zero_terminal_snr,
        record.map(|r| r.zero_terminal_snr),
        defaults.zero_terminal_snr,
    );
    let warmup = args.ema_warmup.map(|Gamma(power)| {
        Warmup(match power {
            Some(power) => EmaWarmup::Power {
                power,
                inv_gamma: args.ema_inv_gamma.unwrap_or(1.0),
            },
            None => EmaWarmup::Ddpm,
        })
    });
    settings.ema_warmup = resolved
        .pick(
            Setting::EmaWarmup,
            warmup,
            record.map(|r| Warmup(r.ema_warmup)),
            Warmup(defaults.ema_warmup),
        )
        .0;
    let (allowed, refused): (Vec<_>, Vec<_>) = resolved
        .differences
        .into_iter()
        .partition(|(setting, _)| args.overrides.contains(setting));
    if !refused.is_empty() {
        let names: Vec<String> = refused.iter().map(|(s, _)| value_name(s)).collect();
        let lines: Vec<&str> = refused.iter().map(|(_, line)| line.as_str()).collect();
        return Err(Error::Usage(format!(
            "--resume: {} differ{} from the checkpoint's record:\n  {}\nLeave {} out to continue with the \
             checkpoint's values, or change {} with --override {} (the change is recorded in the checkpoint)",
            names.join(", "),
            if refused.len() == 1 { "s" } else { "" },
            lines.join("\n  "),
            if refused.len() == 1 { "it" } else { "them" },
            if refused.len() == 1 { "it" } else { "them" },
            names.join(",")
        )));
    }
    settings.check_objectives()?;
    settings.micro_batch = args.micro_batch;
    settings.memory_budget = super::budget_bytes(args.memory_budget);
    settings.placement = match args.data_on {
        DataOn::Auto => Placement::Auto,
        DataOn::Gpu => Placement::Gpu,
        DataOn::Host => Placement::Host,
    };
    if lead {
        std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    }

    let mut trainer = Trainer::with_replicas(
        gpu,
        settings.clone(),
        &dataset,
        resume.as_ref(),
        replicas.clone(),
    )?;
    let start_step = trainer.step;
    for (_, line) in &allowed {
        let line = line.replace("(checkpoint: ", "(was ");
        say!(lead, "--override: {line} from step {start_step}");
        trainer.record_change(format!("step {start_step}: {line}"));
    }
    if start_step >= args.steps {
        if resume.is_some() {
            say!(
                lead,
                "{} is already at step {start_step} ≥ --steps {}",
                checkpoint_path.display(),
                args.steps
            );
        } else {
            say!(
                lead,
                "--steps 0: nothing to train (the data and the model were checked)"
            );
        }
        return Ok(Finished::Done);
    }
    let (_, ranks) = trainer.rank();
    say!(
        lead,
        "training {} ({} parameters) on {} for steps {}..{} at batch {}{}, {}",
        args.preset,
        ParamLayout::new(&config).count(),
        dataset.description,
        start_step,
        args.steps,
        settings.batch,
        if settings.grad_accum > 1 {
            format!(
                " × {} accumulated = {} images per step",
                settings.grad_accum,
                settings.batch * settings.grad_accum
            )
        } else {
            String::new()
        },
        if ranks > 1 {
            format!(
                "on {ranks} ranks of {} images each (data-parallel, one all-reduce of {:.1} MB per step; rank 0 \
                 on {})",
                settings.batch * settings.grad_accum / ranks,
                trainer.exchange_stats().map_or(0, |s| s.bytes_per_step) as f64 / 1e6,
                gpu.describe()
            )
        } else {
            format!("on {}", gpu.describe())
        }
    );
    let mut objective = vec![format!("predicts {}", PredictionArg::of(settings.target)?)];
    if let Some(gamma) = settings.min_snr_gamma {
        objective.push(format!("Min-SNR-γ loss weights (γ = {gamma})"));
    }
    if settings.zero_terminal_snr {
        objective.push("schedule rescaled to zero terminal SNR".into());
    }
    if let EmaWarmup::Power { power, inv_gamma } = settings.ema_warmup {
        objective.push(format!("EMA warm-up 1 − (1 + k/{inv_gamma})^−{power}"));
    }
    say!(lead, "objective: {}", objective.join(", "));
    say!(lead, "{}", trainer.placement_note());
    let plan = trainer.plan();
    say!(
        lead,
        "memory: about {:.0} MB on the GPU ({:.0} MB + {:.1} MB per image; largest buffer {:.0} MB), {} image{} \
         per pass",
        plan.bytes as f64 / 1e6,
        plan.fixed as f64 / 1e6,
        plan.per_image as f64 / 1e6,
        plan.largest as f64 / 1e6,
        plan.micro_batch,
        if plan.micro_batch == 1 { "" } else { "s" }
    );
    if let Some(note) = &plan.note {
        say!(lead, "{note}");
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        // Ctrl-C, SIGTERM and SIGHUP (ctrlc's `termination` feature): the first asks the loop to save and stop;
        // a second stops at once (a save it cuts short leaves only a temporary file, removed by the next save).
        // A second handler cannot be installed in the same process (tests); then a signal simply kills the run.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                if lead {
                    eprintln!("interrupted again: stopping without saving");
                }
                std::process::exit(super::INTERRUPTED_EXIT);
            }
            if lead {
                eprintln!(
                    "interrupted: saving a checkpoint after this step (again to stop at once)"
                );
            }
        });
    }
    let bar = if lead {
        indicatif::ProgressBar::new(args.steps)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_position(start_step);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} elapsed, ETA {eta_precise}]",
        )
        .expect("valid template"),
    );
    let started = Instant::now();
    let metrics_path = out.join("metrics.csv");
    let metrics = match lead {
        true => Some(std::cell::RefCell::new(MetricsLog::open(
            &metrics_path,
            start_step,
        )?)),
        false => None,
    };
    // Redrawn from the whole log (earlier invocations included) beside each grid; the last step always samples.
    let plot_loss = || diffuse::plot::write_loss_png(&metrics_path, &out.join("loss.png"));
    // Every rank reads its state back and compares it with the others'; rank 0 writes it.
    let save = |trainer: &Trainer| -> Result<()> {
        let ckpt = trainer.checkpoint(gpu)?;
        trainer.verify_replicas(&ckpt)?;
        match lead {
            true => ckpt.save(&checkpoint_path),
            false => Ok(()),
        }
    };
    let show = |report: &LossReport| -> Result<()> {
        let Some(metrics) = &metrics else {
            return Ok(());
        };
        let seconds = started.elapsed().as_secs_f64();
        let rate = (report.step - start_step) as f64 / seconds;
        metrics.borrow_mut().write(
            report,
            settings.lr_at(report.step - 1),
            rate * (settings.batch * settings.grad_accum) as f64,
            seconds,
        )?;
        let message = format!(
            "loss {:.4}  grad-norm {:.3}  {rate:.2} steps/s",
            report.loss, report.grad_norm
        );
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            // Not a terminal (a log file, CI): one plain line per report instead of a bar.
            println!("step {}/{}  {message}", report.step, args.steps);
        }
        bar.set_message(message);
        Ok(())
    };
    while trainer.step < args.steps {
        let step = trainer.step + 1;
        let sample_due = step % sample_every == 0 || step == args.steps;
        // Every step that saves or samples reports too, so that its loss is known to be finite first (a step
        // that stops always reports).
        let report = step % log_every == 0 || step % checkpoint_every == 0 || sample_due;
        // Read once: a Ctrl-C arriving later in this step is seen by the next one, which then saves. Across ranks
        // the step's all-reduce tells every rank whether any was asked, so all stop at the same step.
        let stopping = trainer.step_or_stop(gpu, report, interrupted.load(Ordering::SeqCst))?;
        let last = step == args.steps || stopping;
        let checkpoint_due = step % checkpoint_every == 0 || last;
        // Reports arrive a step or more late: the GPU keeps running while the host prints them.
        for report in trainer.poll_losses(gpu)? {
            show(&report)?;
        }
        bar.set_position(step);
        if checkpoint_due || sample_due {
            // Waiting here is what makes a diverged run stop before its checkpoint could overwrite a good one.
            for report in trainer.wait_losses(gpu)? {
                show(&report)?;
            }
        }
        if checkpoint_due {
            save(&trainer)?;
        }
        if sample_due && lead {
            // A class-conditional run previews every class, one per column, twice; others 16 images.
            let (n, columns) = match config.num_classes {
                Some(count) => (args.preview.unwrap_or(2 * count), Some(count)),
                None => (args.preview.unwrap_or(16), None),
            };
            if n > 0 {
                let ckpt = trainer.checkpoint(gpu)?;
                let path = out.join(format!("samples-{step:07}.png"));
                // The run's seed every time (the checkpoint's on resume): every grid starts from the same noise, so
                // consecutive grids show what training changed.
                let pixels = sample_grid(gpu, &ckpt, n, settings.seed)?;
                super::sample::check_finite(&pixels, &format!("the preview of step {step}"))?;
                image_io::save_grid_png(
                    &path,
                    &pixels,
                    n,
                    config.in_channels,
                    config.image_size,
                    columns.map(|c| c.min(n)),
                )?;
                bar.println(format!("step {step}: wrote {}", path.display()));
            }
            plot_loss()?;
        }
        if stopping {
            if lead {
                plot_loss()?;
            }
            bar.abandon();
            say!(
                lead,
                "interrupted: saved {} at step {step}; continue with --resume",
                checkpoint_path.display()
            );
            return Ok(Finished::Interrupted);
        }
    }
    bar.finish();
    say!(
        lead,
        "done: {} steps in {:.1} s; checkpoint {}",
        args.steps - start_step,
        started.elapsed().as_secs_f64(),
        checkpoint_path.display()
    );
    Ok(Finished::Done)
}

/// `metrics.csv` in the run's folder: one row per loss report (step, mean loss since the last report, gradient norm,
/// learning rate, images per second, wall seconds since the run began, across resumes). A resumed run first drops
/// the rows past its checkpoint's step (the lost steps are trained again) and carries the wall time on.
struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
    /// Wall seconds of the earlier invocations of the run (the last kept row's).
    earlier: f64,
}

const METRICS_HEADER: &str = "step,loss,grad_norm,lr,images_per_s,wall_s";

impl MetricsLog {
    fn open(path: &std::path::Path, start_step: u64) -> Result<MetricsLog> {
        let io = |e| Error::io(path, e);
        let mut kept = vec![METRICS_HEADER.to_string()];
        let mut earlier = 0.0;
        if start_step > 0 {
            if let Ok(text) = std::fs::read_to_string(path) {
                for line in text.lines().skip(1) {
                    let fields: Vec<&str> = line.split(',').collect();
                    match (
                        fields.first().and_then(|s| s.parse::<u64>().ok()),
                        fields.last(),
                    ) {
                        (Some(step), Some(wall)) if step <= start_step => {
                            earlier = wall.parse().unwrap_or(earlier);
                            kept.push(line.to_string());
                        }
                        _ => {}
                    }
                }
            }
        }
        let mut text = kept.join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io)?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
            earlier,
        })
    }

    fn write(
        &mut self,
        report: &LossReport,
        lr: f64,
        images_per_s: f64,
        seconds: f64,
    ) -> Result<()> {
        use std::io::Write;
        writeln!(
            self.file,
            "{},{},{},{lr},{images_per_s:.3},{:.3}",
            report.step,
            report.loss,
            report.grad_norm,
            self.earlier + seconds
        )
        .map_err(|e| Error::io(&self.path, e))
    }
}

/// n samples of the checkpoint's EMA weights with 50 DDIM steps (the preview written during training), in
/// batches that fit, batch k from the seed `diffuse sample` gives it; a class-conditional model draws image i of
/// class i mod C.
fn sample_grid(gpu: &Gpu, ckpt: &Checkpoint, n: usize, seed: u64) -> Result<Vec<f32>> {
    let schedule = ckpt.training.sampling_schedule()?;
    let list = samplers::timesteps(
        schedule.num_steps(),
        50.min(schedule.num_steps()),
        Spacing::Trailing,
    )?;
    let plan = samplers::ddim(&schedule, &list, 0.0, Clip::IMAGES)?;
    let params = ParamBuffers::upload(gpu, &ParamLayout::new(&ckpt.config), &ckpt.ema)?;
    let classes: Option<Vec<u32>> = ckpt
        .config
        .num_classes
        .map(|count| (0..n).map(|i| (i % count) as u32).collect());
    let batch = n.min(max_batch(gpu, &ckpt.config, &params, false, None)?);
    Batched {
        config: &ckpt.config,
        params: &params,
        prediction: ckpt.training.prediction,
        guidance: 0.0,
        classes: classes.as_deref(),
        given: None,
        frames: 0,
        seed,
    }
    .run(gpu, &plan, n, batch, |_| ())
    .map(|samples| samples.pixels)
}
