//! The subcommands: one file each, with its clap arguments and the code that runs it. Shared here: what more than
//! one command reads (the bundled checkpoint, `--data`, `--background`).

mod bench;
mod eval;
mod info;
mod sample;
mod train;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use diffuse::data::{Dataset, Fit};
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
    /// List the GPU adapters wgpu can see, which one diffuse would pick, and the limits and features that matter.
    Info(info::InfoArgs),
    /// Train a DDPM U-Net on the GPU: on the bundled MNIST digits by default, or on your own images (a folder of
    /// PNG/JPEG, flat or one subfolder per class; or MNIST-format IDX files). Writes checkpoints and sample grids
    /// to --out; Ctrl-C saves a checkpoint and stops; --resume continues exactly where a run stopped.
    Train(train::TrainArgs),
    /// Generate images from a checkpoint (default: the model bundled in assets/).
    Sample(sample::SampleArgs),
    /// Estimate the variational bound (bits/dim, lower is better; Ho et al. report it for their models) of a
    /// checkpoint on a dataset: per image, the decoder and last terms plus a stratified sample of the others.
    Eval(eval::EvalArgs),
    /// Time every kernel family on the shapes the U-Net presets use, headless and with no dataset. GPU time comes
    /// from timestamp queries where the adapter has them, else wall-clock; each figure is the median of several
    /// runs after a warm-up, with the min and max beside it.
    Bench(bench::BenchArgs),
}

/// Runs the chosen subcommand.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info(args) => info::info(args),
        Command::Bench(args) => bench::bench(args),
        Command::Train(args) => {
            Gpu::new(args.adapter.as_deref()).and_then(|gpu| train::train(&gpu, args))
        }
        Command::Eval(args) => {
            Gpu::new(args.adapter.as_deref()).and_then(|gpu| eval::eval(&gpu, args))
        }
        Command::Sample(args) => {
            Gpu::new(args.adapter.as_deref()).and_then(|gpu| sample::sample(&gpu, args))
        }
    }
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

/// `--data` (or the built-in MNIST subset when absent), fitted to the model's channels and size.
fn open_dataset(data: Option<&Path>, config: &UNetConfig, background: [u8; 3]) -> Result<Dataset> {
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

/// The name a user types for a choice (`--sampler ddim`), for messages.
fn value_name(value: &impl clap::ValueEnum) -> String {
    let value = value.to_possible_value().expect("no variant is skipped");
    value.get_name().to_string()
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

/// `--memory-budget` in GB as bytes.
fn budget_bytes(gb: Option<f64>) -> Result<Option<u64>> {
    match gb {
        Some(gb) if !(gb.is_finite() && gb > 0.0) => Err(Error::Usage(format!(
            "--memory-budget {gb}: give the GPU memory the run may use in GB, e.g. 6 or 0.5"
        ))),
        gb => Ok(gb.map(|gb| (gb * 1e9) as u64)),
    }
}
