//! `diffuse train`: arguments, the progress bar, Ctrl-C, checkpoints and preview grids. The training step itself
//! is `diffuse::train`.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use clap::builder::PossibleValuesParser;

use diffuse::checkpoint::Checkpoint;
use diffuse::data::Dataset;
use diffuse::diffusion::process::Objective;
use diffuse::distributed::Replicas;
use diffuse::gpu::Gpu;
use diffuse::model::{ParamLayout, Preset, UNetConfig};
use diffuse::optim::EmaWarmup;
use diffuse::train::run::{Cadence, Finished, Folder, Metrics, Outputs, Progress, Run, StopFlag};
use diffuse::train::table::{self, OnResume, SETTINGS};
use diffuse::train::{TrainSettings, Trainer};
use diffuse::{Error, Result};

use super::settings::SettingFlags;
use super::{at_least_one, open_dataset, parse_rgb, probability_below_one};

/// `diffuse train`: see `--help` for what each option does.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training data: an image folder or IDX file/folder (default: the built-in 10,000-digit MNIST subset).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Model size: the U-Net configuration the model flags below start from [default: small; with --resume and no
    /// model flags, the checkpoint's network].
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Condition on the dataset's classes (MNIST labels or subfolders), for `diffuse sample --class`.
    #[arg(long)]
    pub class_conditional: bool,
    /// Total optimizer steps (a resumed run continues up to this count).
    #[arg(long, allow_negative_numbers = true, default_value_t = 10_000)]
    pub steps: u64,
    /// The training settings: one flag per row of the library's settings table.
    #[command(flatten)]
    pub settings: SettingFlags,
    /// Dropout probability in every residual block, in [0, 1) (Ho et al. used 0.1 on CIFAR-10): a regulariser for
    /// long runs on small datasets. Training only; sampling never drops.
    #[arg(long, allow_negative_numbers = true, value_parser = probability_below_one)]
    pub dropout: Option<f32>,
    /// Output folder for checkpoint.safetensors, samples-*.png, metrics.csv and loss.png (default: runs/<preset>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write a preview grid (samples-<step>.png, from the same noise each time) and redraw loss.png this often.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1000, value_parser = at_least_one_step)]
    pub sample_every: u64,
    /// Images in each preview grid (default 16, or two per class); 0 writes no grids (only loss.png): a preview of
    /// a large model takes minutes on a CPU adapter.
    #[arg(long, allow_negative_numbers = true)]
    pub preview: Option<usize>,
    /// Save checkpoint.safetensors this often (and at the last step, and on Ctrl-C).
    #[arg(long, allow_negative_numbers = true, default_value_t = 500, value_parser = at_least_one_step)]
    pub checkpoint_every: u64,
    /// Read the loss back every this many steps (the GPU runs ahead in between).
    #[arg(long, allow_negative_numbers = true, default_value_t = 25, value_parser = at_least_one_step)]
    pub log_every: u64,
    /// Continue the run in --out from its checkpoint, with its settings: a flag that differs from the checkpoint's
    /// record is refused unless --override names it.
    #[arg(long)]
    pub resume: bool,
    /// Start a new run from this model's weights instead of random ones: a checkpoint written by `diffuse train`
    /// (its EMA weights) or a diffusers model folder (docs/diffusers.md). The network, and the noise process
    /// (objective, schedule, T, prediction), are the model's: --preset and the model flags are not used.
    #[arg(long, value_name = "MODEL", conflicts_with = "resume")]
    pub init: Option<PathBuf>,
    /// With --resume: the settings that may differ from the checkpoint's, comma-separated (e.g. lr,batch); each
    /// change is recorded in the checkpoint (`extra.changes`).
    #[arg(
        long = "override",
        value_delimiter = ',',
        requires = "resume",
        value_parser = overridable()
    )]
    pub overrides: Vec<String>,
    /// Colour (R,G,B) that transparent pixels are composited onto.
    #[arg(long, default_value = "255,255,255", value_parser = parse_rgb)]
    pub background: [u8; 3],
    /// GPU adapter: an index from `diffuse info` or part of its name (default: DIFFUSE_ADAPTER, else the first
    /// discrete GPU, else any; under `mpirun`, each rank the one its local rank picks: docs/distributed.md).
    #[arg(long)]
    pub adapter: Option<String>,
}

/// `--override`'s names: the data, and every setting a resume may change.
fn overridable() -> PossibleValuesParser {
    let names = SETTINGS
        .iter()
        .filter(|row| row.on_resume == OnResume::Override)
        .map(|row| row.name);
    PossibleValuesParser::new(std::iter::once("data").chain(names))
}

/// An interval in steps: "every 0 steps" means nothing.
fn at_least_one_step(text: &str) -> std::result::Result<u64, String> {
    at_least_one(text).map(|n| n as u64)
}

/// `--channels`: what images have (a PNG or JPEG is read as grayscale or RGB; alpha is composited away).
fn grayscale_or_rgb(text: &str) -> std::result::Result<usize, String> {
    match text.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!(
            "{text}: images are read as 1 channel (grayscale) or 3 (RGB); give 1 or 3"
        )),
    }
}

/// Overrides of the preset's U-Net configuration, each defaulting to the preset's value; stored in the checkpoint.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// Square image side in pixels; must be divisible by 2^(levels − 1).
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub image_size: Option<usize>,
    /// Image channels: 1 (grayscale) or 3 (RGB).
    #[arg(long, allow_negative_numbers = true, help_heading = "Model", value_parser = grayscale_or_rgb)]
    pub channels: Option<usize>,
    /// Channels of the first level (the time embedding has four times as many).
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub base_channels: Option<usize>,
    /// Channel multiplier of each level, comma-separated (e.g. 1,2,2,2): one level per entry.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_sizes, help_heading = "Model")]
    pub channel_mults: Option<Sizes>,
    /// Residual blocks per level on the way down.
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub blocks_per_level: Option<usize>,
    /// Feature-map sides with self-attention, comma-separated (e.g. 16,8), or `none`.
    #[arg(long, allow_negative_numbers = true, value_parser = parse_sizes, help_heading = "Model")]
    pub attention_resolutions: Option<Sizes>,
    /// Attention heads; must divide the channel count where attention is used.
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
    pub heads: Option<usize>,
    /// GroupNorm groups; must divide every channel count.
    #[arg(long, allow_negative_numbers = true, help_heading = "Model")]
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

/// Trains as `args` say; one rank of a data-parallel run with `replicas` (every rank trains, rank 0 alone prints
/// and writes files).
pub fn train(gpu: &Gpu, args: TrainArgs, replicas: Option<Rc<dyn Replicas>>) -> Result<Finished> {
    let lead = super::leads(replicas.as_deref());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(args.preset().to_string()));
    let (init, init_note) = match &args.init {
        Some(path) => {
            let (start, note) = fine_tune_start(super::open_model(Some(path), lead)?, path);
            (Some(start), Some(note))
        }
        None => (None, None),
    };
    let config = match &init {
        Some(start) => init_config(&args, &start.config)?,
        None => model_config(&args)?,
    };
    // One run per folder, checked before anything is read or written (rank 0 writes the files, so it alone locks).
    let _lock = lead
        .then(|| super::lock::RunLock::for_run(&out))
        .transpose()?;
    let checkpoint_path = Folder::checkpoint_path(&out);
    let resume = load_resume(args.resume, &checkpoint_path)?;
    // A resume without model flags continues the checkpoint's network (an imported one has no flags).
    let config = match &resume {
        Some(ckpt) if !args.gives_layers() => UNetConfig {
            dropout: args.dropout.unwrap_or(ckpt.config.dropout),
            ..ckpt.config.clone()
        },
        _ => config,
    };
    let (config, dataset) = open_data(&args, config, replicas.as_deref(), lead)?;
    let init = init.map(|start| fits_init(start, &config)).transpose()?;
    let (mut settings, changes) =
        resolve_settings(&args, config, &dataset, resume.as_ref(), init.as_ref())?;
    if lead {
        // The lock made the folder, so its disk can be asked; a system that cannot say is not refused.
        if let Ok(available) = fs4::available_space(&out) {
            let needed = Folder::checkpoint_bytes(&settings.model);
            Folder::check_room(&out, needed, available)?;
        }
    }
    if settings.sigma_max_from_data && resume.is_none() {
        measure_sigma_max(gpu, &mut settings, &dataset, lead)?;
    }
    let start = resume.as_ref().or(init.as_ref());
    let mut trainer = Trainer::with_replicas(gpu, settings, &dataset, start, replicas.clone())?;
    let start_step = trainer.step;
    if let Some(note) = init_note {
        say!(lead, "fine-tuning: {note}");
        trainer.record_change(format!("step 0: {note}"));
    }
    for line in changes {
        let line = line.replace("(checkpoint: ", "(was ");
        say!(lead, "--override: {line} from step {start_step}");
        trainer.record_change(format!("step {start_step}: {line}"));
    }
    if start_step >= args.steps {
        match resume {
            Some(_) => say!(
                lead,
                "{} is already at step {start_step} ≥ --steps {}",
                checkpoint_path.display(),
                args.steps
            ),
            None => say!(
                lead,
                "--steps 0: nothing to train (the data and the model were checked)"
            ),
        }
        return Ok(Finished::Done);
    }
    if lead {
        describe(gpu, &args, &trainer, &dataset.description);
    }
    let mut folder = match lead {
        true => Some(Folder::open(&out, start_step)?),
        false => None,
    };
    let mut bar = Bar::new(lead, start_step, args.steps);
    let started = Instant::now();
    let finished = Run {
        gpu,
        trainer: &mut trainer,
        cadence: Cadence {
            steps: args.steps,
            log_every: args.log_every,
            checkpoint_every: args.checkpoint_every,
            sample_every: args.sample_every,
            preview: args.preview,
        },
        stop: stop_on_signals(lead),
        outputs: folder.as_mut().map(|f| f as &mut dyn Outputs),
        progress: &mut bar,
    }
    .go()?;
    let checkpoint = checkpoint_path.display();
    match finished {
        Finished::Stopped { step } => {
            bar.bar.abandon();
            say!(
                lead,
                "interrupted: saved {checkpoint} at step {step}; continue with --resume"
            );
        }
        Finished::Done => {
            bar.bar.finish();
            let seconds = started.elapsed().as_secs_f64();
            let steps = args.steps - start_step;
            say!(
                lead,
                "done: {steps} steps in {seconds:.1} s; checkpoint {checkpoint}"
            );
        }
    }
    Ok(finished)
}

impl TrainArgs {
    fn preset(&self) -> Preset {
        self.preset.unwrap_or(Preset::Small)
    }

    /// Whether --preset or a model flag is given: what decides the parameters' layout.
    fn gives_layers(&self) -> bool {
        let m = &self.model;
        self.preset.is_some()
            || m.image_size.is_some()
            || m.channels.is_some()
            || m.base_channels.is_some()
            || m.channel_mults.is_some()
            || m.blocks_per_level.is_some()
            || m.attention_resolutions.is_some()
            || m.heads.is_some()
            || m.groups.is_some()
    }
}

/// The model the flags ask for, validated before anything is opened or written.
fn model_config(args: &TrainArgs) -> Result<UNetConfig> {
    let mut config = args.model.apply(args.preset().config());
    config.dropout = args.dropout.unwrap_or(0.0);
    config.validate()?;
    Ok(config)
}

/// A fine-tune's network: the model's, with the run's --dropout; a flag that would change it is refused.
fn init_config(args: &TrainArgs, model: &UNetConfig) -> Result<UNetConfig> {
    if args.gives_layers() {
        return Err(Error::Usage(
            "--init takes the network from the model it starts from: leave out --preset and the model flags \
             (--dropout may be given)"
                .into(),
        ));
    }
    Ok(UNetConfig {
        dropout: args.dropout.unwrap_or(model.dropout),
        ..model.clone()
    })
}

/// The model configuration and the dataset, its classes counted for a class-conditional model. Rank 0 opens the
/// data first, so that on its machine (or a shared cache folder) the others load the images it decoded and
/// cached instead of all decoding them at once (if it fails, its error ends the job while the others wait).
fn open_data(
    args: &TrainArgs,
    mut config: UNetConfig,
    replicas: Option<&dyn Replicas>,
    lead: bool,
) -> Result<(UNetConfig, Dataset)> {
    if let Some(r) = replicas.filter(|r| r.rank() != 0) {
        r.barrier();
    }
    let dataset = open_dataset(args.data.as_deref(), &config, args.background, lead)?;
    if let Some(r) = replicas.filter(|r| r.rank() == 0) {
        r.barrier();
    }
    if args.class_conditional {
        if dataset.labels.is_none() {
            return Err(Error::Usage(format!(
                "--class-conditional needs labels, and {} has none (use MNIST IDX with labels, or one subfolder per \
                 class)",
                dataset.description
            )));
        }
        config.num_classes = Some(dataset.class_names.len());
    }
    Ok((config, dataset))
}

/// What a fine-tune starts from (`--init`): the model's EMA weights as both its weights and its average, no
/// optimizer state, step 0; its record (the noise process) is the new run's base. Also the line the new run's
/// record keeps of where it started.
fn fine_tune_start(model: Checkpoint, path: &Path) -> (Checkpoint, String) {
    let note = format!(
        "--init {} (step {} of a model trained on {})",
        path.display(),
        model.step,
        model.training.dataset
    );
    let start = Checkpoint {
        params: model.ema.clone(),
        step: 0,
        rng_offset: 0,
        adam: None,
        ..model
    };
    (start, note)
}

/// The fine-tune's start with the run's network (its --dropout), which must have the model's parameters: a
/// class-conditional model needs --class-conditional and data with as many classes, an unconditional one neither.
fn fits_init(start: Checkpoint, config: &UNetConfig) -> Result<Checkpoint> {
    if ParamLayout::new(&start.config).params != ParamLayout::new(config).params {
        return Err(Error::Usage(format!(
            "--init: this run's data and flags ask for another network than the model's: {}",
            start.config.differences(config).join(", ")
        )));
    }
    Ok(Checkpoint {
        config: config.clone(),
        ..start
    })
}

/// The checkpoint to resume (`--resume`), or None for a new run, which must not write over another.
fn load_resume(resume: bool, path: &Path) -> Result<Option<Checkpoint>> {
    match (resume, path.exists()) {
        (true, true) => Ok(Some(Checkpoint::load(path)?)),
        (true, false) => Err(Error::Usage(format!(
            "--resume: no checkpoint at {}",
            path.display()
        ))),
        (false, true) => Err(Error::Usage(format!(
            "{} already holds a run; continue it with --resume, or choose another --out",
            path.display()
        ))),
        (false, false) => Ok(None),
    }
}

/// The run's settings: the flags over the defaults, or on `--resume` over the checkpoint's record, where a flag
/// that differs from the record is refused unless `--override` names it. Returns the settings and the changes
/// `--override` allowed ("--lr 0.002 (checkpoint: 0.001)").
fn resolve_settings(
    args: &TrainArgs,
    config: UNetConfig,
    dataset: &Dataset,
    resume: Option<&Checkpoint>,
    init: Option<&Checkpoint>,
) -> Result<(TrainSettings, Vec<String>)> {
    let base = match (resume, init) {
        (Some(ckpt), _) => TrainSettings {
            model: config,
            ..ckpt.training.settings.clone()
        },
        // A fine-tune keeps the noise process the model learned; the rest starts from the defaults.
        (None, Some(start)) => {
            let s = &start.training.settings;
            TrainSettings {
                objective: s.objective,
                schedule: s.schedule,
                timesteps: s.timesteps,
                target: s.target,
                zero_terminal_snr: s.zero_terminal_snr,
                ..TrainSettings::new(config)
            }
        }
        (None, None) => TrainSettings::new(config),
    };
    // On a resume, `--sigma-max data` is the number the run measured when it started.
    let recorded = resume.and_then(|c| c.training.settings.objective.sigma_max());
    let given: Vec<_> = args
        .settings
        .0
        .iter()
        .map(|(row, text)| match (row.name, text.trim(), recorded) {
            ("sigma-max", "data", Some(sigma_max)) => (*row, sigma_max.to_string()),
            _ => (*row, text.clone()),
        })
        .collect();
    let (settings, differences) = table::resolve(&base, &given, resume.is_some())?;
    // The dataset has no flag of its own: what was opened is compared with what the checkpoint recorded.
    let mut lines: Vec<(&str, OnResume, String)> = differences
        .into_iter()
        .map(|d| (d.setting.name, d.setting.on_resume, d.line))
        .collect();
    if let Some(recorded) = resume.map(|c| &c.training.dataset) {
        if *recorded != dataset.description {
            let line = format!("--data {} (checkpoint: {recorded})", dataset.description);
            lines.insert(0, ("data", OnResume::Override, line));
        }
    }
    let (allowed, refused): (Vec<_>, Vec<_>) =
        lines.into_iter().partition(|(name, on_resume, _)| {
            *on_resume == OnResume::Override && args.overrides.iter().any(|o| o == name)
        });
    if !refused.is_empty() {
        return Err(refusal(&refused));
    }
    // Checked before σ_max is measured too (that takes a while), so with it as if measured.
    let measured = TrainSettings {
        sigma_max_from_data: false,
        ..settings.clone()
    };
    measured.check_objectives()?;
    Ok((
        settings,
        allowed.into_iter().map(|(_, _, line)| line).collect(),
    ))
}

/// `--sigma-max data`: σ_max set to the largest distance between two of the training images (every rank measures
/// the same, exactly: the kernel counts in integers).
fn measure_sigma_max(
    gpu: &Gpu,
    settings: &mut TrainSettings,
    dataset: &Dataset,
    lead: bool,
) -> Result<()> {
    let pairs = dataset.len as f64 * (dataset.len as f64 - 1.0) / 2.0;
    say!(
        lead,
        "--sigma-max data: measuring the largest distance between two of the {} training images ({pairs:.3e} \
         pairs)…",
        dataset.len
    );
    let started = Instant::now();
    let measured = diffuse::data::farthest::sigma_max_from_data(gpu, dataset);
    let (sigma_max, pair) = diffuse::gpu::future::block_on(measured)?;
    settings
        .objective
        .set("sigma_max", &sigma_max.to_string())
        .map_err(Error::Usage)?;
    // The trainer checks the objective with its measured σ_max (against --sigma-min) before it starts.
    settings.sigma_max_from_data = false;
    say!(
        lead,
        "--sigma-max data: σ_max = {sigma_max:.4}, between images {} and {} ({:.1} s)",
        pair.first,
        pair.second,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `--resume`'s refusal of flags that differ from the checkpoint's record, naming each and the way out.
fn refusal(refused: &[(&str, OnResume, String)]) -> Error {
    let names: Vec<&str> = refused.iter().map(|(name, _, _)| *name).collect();
    let lines: Vec<&str> = refused.iter().map(|(_, _, line)| line.as_str()).collect();
    let (one, them) = match refused.len() {
        1 => (true, "it"),
        _ => (false, "them"),
    };
    let fixed: Vec<&str> = refused
        .iter()
        .filter(|(_, on_resume, _)| *on_resume == OnResume::Fixed)
        .map(|(name, _, _)| *name)
        .collect();
    let mut message = format!(
        "--resume: {} differ{} from the checkpoint's record:\n  {}\nLeave {them} out to continue with the \
         checkpoint's values",
        names.join(", "),
        if one { "s" } else { "" },
        lines.join("\n  "),
    );
    match fixed.is_empty() {
        true => message.push_str(&format!(
            ", or change {them} with --override {} (the change is recorded in the checkpoint)",
            names.join(",")
        )),
        false => message.push_str(&format!(
            "; no resume changes {} (the trained network depends on it): start a new run with another --out",
            fixed.join(", ")
        )),
    }
    Error::Usage(message)
}

/// The lines that open a run: what trains on what, the objective, where the data lives, the memory plan.
fn describe(gpu: &Gpu, args: &TrainArgs, trainer: &Trainer, data: &str) {
    let s = &trainer.settings;
    let (_, ranks) = trainer.rank();
    let images = s.batch * s.grad_accum;
    let accumulated = match s.grad_accum {
        1 => String::new(),
        k => format!(" × {k} accumulated = {images} images per step"),
    };
    let place = match ranks {
        1 => format!("on {}", gpu.describe()),
        _ => format!(
            "on {ranks} ranks of {} images each (data-parallel, one all-reduce of {:.1} MB per step; rank 0 on {})",
            images / ranks,
            trainer.exchange_stats().map_or(0, |e| e.bytes_per_step) as f64 / 1e6,
            gpu.describe()
        ),
    };
    println!(
        "training {} ({} parameters) on {data} for steps {}..{} at batch {}{accumulated}, {place}",
        match (&args.init, args.resume && !args.gives_layers()) {
            (Some(path), _) => format!("the model of {}", path.display()),
            (None, true) => "the checkpoint's network".to_string(),
            (None, false) => args.preset().to_string(),
        },
        ParamLayout::new(&s.model).count(),
        trainer.step,
        args.steps,
        s.batch,
    );
    println!("objective: {}", objective(s));
    println!("{}", trainer.placement_note());
    let plan = trainer.plan();
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "memory: about {:.0} MB on the GPU ({:.0} MB + {:.1} MB per image; largest buffer {:.0} MB), {} image{} \
         per pass",
        mb(plan.bytes),
        mb(plan.fixed),
        mb(plan.per_image),
        mb(plan.largest),
        plan.micro_batch,
        if plan.micro_batch == 1 { "" } else { "s" }
    );
    if let Some(note) = &plan.note {
        println!("{note}");
    }
}

/// "predicts v, Min-SNR-γ loss weights (γ = 5), …", or the score-based objective with its parameters.
fn objective(s: &TrainSettings) -> String {
    let prediction = table::setting("prediction").expect("a row");
    let mut parts = match s.objective {
        Objective::Ddpm => vec![format!("predicts {}", (prediction.get)(s))],
        other => vec![other.to_string()],
    };
    if let Some(gamma) = s.min_snr_gamma {
        parts.push(format!("Min-SNR-γ loss weights (γ = {gamma})"));
    }
    if s.zero_terminal_snr {
        parts.push("schedule rescaled to zero terminal SNR".into());
    }
    if let EmaWarmup::Power { power, inv_gamma } = s.ema_warmup {
        parts.push(format!("EMA warm-up 1 − (1 + k/{inv_gamma})^−{power}"));
    }
    parts.join(", ")
}

/// Ctrl-C, SIGTERM and SIGHUP (ctrlc's `termination` feature): the first asks the run to save and stop; a second
/// stops at once (a save it cuts short leaves only a temporary file, removed by the next save). A second handler
/// cannot be installed in the same process (tests); then a signal simply kills the run.
fn stop_on_signals(lead: bool) -> StopFlag {
    let stop = StopFlag::default();
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if flag.set() {
            if lead {
                eprintln!("interrupted again: stopping without saving");
            }
            std::process::exit(super::INTERRUPTED_EXIT);
        }
        if lead {
            eprintln!("interrupted: saving a checkpoint after this step (again to stop at once)");
        }
    });
    stop
}

/// The progress bar (loss, steps/s, ETA) on a terminal; one plain line per report elsewhere (a log file, CI).
struct Bar {
    bar: indicatif::ProgressBar,
    plain: bool,
}

impl Bar {
    fn new(lead: bool, start_step: u64, steps: u64) -> Bar {
        let bar = match lead {
            true => indicatif::ProgressBar::new(steps),
            false => indicatif::ProgressBar::hidden(),
        };
        bar.set_position(start_step);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} elapsed, ETA {eta_precise}]",
            )
            .expect("valid template"),
        );
        let plain = lead && !std::io::IsTerminal::is_terminal(&std::io::stderr());
        Bar { bar, plain }
    }
}

impl Progress for Bar {
    fn report(&mut self, row: &Metrics, steps: u64) {
        let r = &row.report;
        let message = format!(
            "loss {:.4}  grad-norm {:.3}  {:.2} steps/s",
            r.loss, r.grad_norm, row.steps_per_s
        );
        if self.plain {
            println!("step {}/{steps}  {message}", r.step);
        }
        self.bar.set_message(message);
    }

    fn position(&mut self, step: u64) {
        self.bar.set_position(step);
    }

    fn note(&mut self, line: &str) {
        // A hidden bar (no terminal) drops what it is asked to print: a log gets the line plainly.
        match self.plain {
            true => println!("{line}"),
            false => self.bar.println(line),
        }
    }
}
