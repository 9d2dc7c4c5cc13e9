//! The subcommands: one file each, with its clap arguments and the code that runs it. Shared here: what more than
//! one command reads (the bundled checkpoint, `--data`, `--background`).

/// Prints a line where `$lead` (this process is rank 0, or the only one): what a person reads, once per job.
macro_rules! say {
    ($lead:expr, $($arg:tt)*) => {
        if $lead {
            println!($($arg)*);
        }
    };
}

mod bench;
mod eval;
mod export;
mod info;
mod lock;
mod sample;
mod settings;
mod train;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use clap::{Parser, Subcommand};

use diffuse::checkpoint::Checkpoint;
use diffuse::data::{Dataset, Fit};
use diffuse::distributed::Replicas;
use diffuse::gpu::Gpu;
use diffuse::model::UNetConfig;
use diffuse::{Error, Result};

/// diffuse: train denoising diffusion models and sample from them, every step a WGSL compute shader on the GPU.
#[derive(Parser)]
#[command(version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters wgpu can see, which one diffuse would pick, the limits and features that matter, and
    /// which kernel variants each runs and why.
    Info(info::InfoArgs),
    /// Train a DDPM U-Net on the GPU: on the bundled MNIST digits by default, or on your own images (a folder of
    /// PNG/JPEG, flat or one subfolder per class; or MNIST-format IDX files). Writes checkpoints and sample grids
    /// to --out; Ctrl-C saves a checkpoint and stops; --resume continues exactly where a run stopped.
    Train(Box<train::TrainArgs>),
    /// Generate images from a checkpoint (default: the model bundled in assets/).
    Sample(sample::SampleArgs),
    /// Estimate the variational bound (bits/dim, lower is better; Ho et al. report it for their models) of a
    /// checkpoint on a dataset: per image, the decoder and last terms plus a stratified sample of the others.
    Eval(eval::EvalArgs),
    /// Time every kernel family on the shapes the U-Net presets use, headless and with no dataset. GPU time comes
    /// from timestamp queries where the adapter has them, else wall-clock; each figure is the median of several
    /// runs after a warm-up, with the min and max beside it.
    Bench(bench::BenchArgs),
    /// Write a checkpoint as a diffusers folder (UNet2DModel and DDPMScheduler) for Python users: EMA weights by
    /// default, every config key written out (docs/diffusers.md).
    Export(export::ExportArgs),
}

/// The exit status of a run stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) after saving, or by a second signal
/// at once: 128 + SIGINT, the shell's convention for Ctrl-C (the handler cannot tell the signals apart).
pub const INTERRUPTED_EXIT: i32 = 130;

/// Runs the chosen subcommand; returns the exit status of a run that ended without an error.
pub fn run(cli: Cli) -> Result<u8> {
    let done = |()| 0;
    match cli.command {
        Command::Info(args) => info::info(args).map(done),
        Command::Export(args) => export::run(args).map(done),
        Command::Bench(args) => {
            let replicas = replicas()?;
            end_job_on_error(
                replicas.as_deref(),
                bench::bench(args, replicas.clone()).map(done),
            )
        }
        Command::Train(args) => {
            let replicas = replicas()?;
            let result = rank_gpu(args.adapter.as_deref(), replicas.as_deref())
                .and_then(|gpu| train::train(&gpu, *args, replicas.clone()))
                .map(|finished| match finished {
                    diffuse::train::run::Finished::Done => 0,
                    diffuse::train::run::Finished::Stopped { .. } => INTERRUPTED_EXIT as u8,
                });
            end_job_on_error(replicas.as_deref(), result)
        }
        Command::Eval(args) => {
            if let Some(replicas) = replicas()? {
                let refused = Err(Error::Usage(
                    "diffuse eval runs as one process: start it without mpirun (train, sample and bench \
                     split over ranks)"
                        .into(),
                ));
                return end_job_on_error(Some(&*replicas), refused);
            }
            Gpu::new(args.adapter.as_deref())
                .and_then(|gpu| eval::eval(&gpu, args))
                .map(done)
        }
        Command::Sample(args) => {
            let replicas = replicas()?;
            let result = rank_gpu(args.adapter.as_deref(), replicas.as_deref())
                .and_then(|gpu| sample::sample(&gpu, args, replicas.as_deref()))
                .map(done);
            end_job_on_error(replicas.as_deref(), result)
        }
    }
}

/// The ranks of this data-parallel run: with the `mpi` feature, MPI's world when this process was started by
/// `mpirun`/`srun` with more than one rank; else None (one process, the whole step).
fn replicas() -> Result<Option<Rc<dyn Replicas>>> {
    #[cfg(feature = "mpi")]
    {
        if let Some(world) = diffuse::distributed::mpi::MpiWorld::init() {
            if world.ranks() > 1 {
                return Ok(Some(Rc::new(world)));
            }
        }
        Ok(None)
    }
    #[cfg(not(feature = "mpi"))]
    {
        // Started by an MPI launcher with several ranks, a build without MPI would run that many independent
        // trainings into one --out folder, each overwriting the others' checkpoints.
        let launched = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .filter_map(|v| v.trim().parse::<usize>().ok())
            .max()
            .unwrap_or(1);
        if launched > 1 {
            return Err(Error::Usage(format!(
                "this process is one of {launched} ranks started by an MPI launcher, but this diffuse was built \
                 without MPI, so each rank would do the whole job alone and write the same files. Build with `cargo build \
                 --release --features mpi` (needs OpenMPI: apt-get install openmpi-bin libopenmpi-dev \
                 libclang-dev), or run without mpirun"
            )));
        }
        Ok(None)
    }
}

/// Whether this process speaks and writes for the job: rank 0 of several, or the only one.
fn leads(replicas: Option<&dyn Replicas>) -> bool {
    replicas.is_none_or(|r| r.rank() == 0)
}

/// The adapter of this rank: `--adapter` (or DIFFUSE_ADAPTER) if given, else the one its local rank picks.
fn rank_gpu(adapter: Option<&str>, replicas: Option<&dyn Replicas>) -> Result<Gpu> {
    Gpu::for_local_rank(adapter, replicas.map_or(0, |r| r.local_rank()))
}

/// In a run of several ranks, an error on one rank ends them all (the others would wait for it in the next
/// all-reduce forever): the message, which rank said it, then MPI_Abort. Files are written atomically, so the
/// last checkpoint stays good.
fn end_job_on_error(replicas: Option<&dyn Replicas>, result: Result<u8>) -> Result<u8> {
    if let (Err(e), Some(replicas)) = (&result, replicas) {
        if replicas.rank() != 0 {
            // Most errors (bad arguments, unreadable data) strike every rank alike: give rank 0 a moment to say
            // it and end the job, so the message is shown once; an error of this rank alone still ends it.
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        eprintln!(
            "error on rank {} of {}: {e}\nending every rank of the job",
            replicas.rank(),
            replicas.ranks()
        );
        replicas.abort(1);
    }
    result
}

/// Where `diffuse sample` and `diffuse eval` look when no checkpoint is given: the model shipped in `assets/`.
const BUNDLED_CHECKPOINT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/assets/small-mnist.safetensors"
);

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

/// The model to sample or evaluate: a diffuse checkpoint, or a diffusers model directory (imported; its notes
/// printed where `tell`), else the bundled model.
fn open_model(given: Option<&PathBuf>, tell: bool) -> Result<Checkpoint> {
    let path = checkpoint_or_bundled(given)?;
    if !path.is_dir() {
        return Checkpoint::load(&path);
    }
    if !diffuse::interop::diffusers::is_model_dir(&path) {
        return Err(Error::data(
            &path,
            "is a folder but not a diffusers model directory (no unet/config.json or config.json): give a \
             diffuse checkpoint file (e.g. runs/small/checkpoint.safetensors) or a diffusers model folder",
        ));
    }
    let imported = diffuse::interop::diffusers::import(&path)?;
    if tell {
        for note in &imported.notes {
            println!("note: {note}");
        }
    }
    Ok(imported.checkpoint)
}

/// `--data` (or the built-in MNIST subset when absent), fitted to the model's channels and size; its notes
/// (skipped files, the decode cache) printed where `tell` (one rank of a job tells).
fn open_dataset(
    data: Option<&Path>,
    config: &UNetConfig,
    background: [u8; 3],
    tell: bool,
) -> Result<Dataset> {
    let fit = Fit {
        channels: config.in_channels,
        size: config.image_size,
        background,
    };
    let dataset = match data {
        Some(path) => Dataset::open(path, fit),
        None => Dataset::builtin(fit),
    }?;
    if tell {
        for note in &dataset.notes {
            eprintln!("{note}");
        }
    }
    Ok(dataset)
}

/// `--background R,G,B`.
fn parse_rgb(text: &str) -> Result<[u8; 3], String> {
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

pub(crate) use diffuse::values::{
    at_least_one, at_least_unity, non_negative, non_negative_or_infinite, positive,
    probability_below_one, unit_interval,
};
