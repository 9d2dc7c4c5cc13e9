use std::process::ExitCode;

use clap::{Parser, Subcommand};

use diffuse::commands;
use diffuse::gpu::{list_adapters, Gpu};

/// diffuse: train denoising diffusion models and sample from them, every step a WGSL compute shader on the GPU.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters wgpu can see, which one diffuse would pick, and the limits and features that matter.
    Info {
        /// Adapter to mark as chosen: an index from this list or part of its name (default: DIFFUSE_ADAPTER, else
        /// the first discrete GPU, else any).
        #[arg(long)]
        adapter: Option<String>,
    },
    /// Train a DDPM U-Net on the GPU: on the bundled MNIST digits by default, or on your own images (a folder of
    /// PNG/JPEG, flat or one subfolder per class; or MNIST-format IDX files). Writes checkpoints and sample grids
    /// to --out; Ctrl-C saves a checkpoint and stops; --resume continues exactly where a run stopped.
    Train {
        /// Training data: an image folder or IDX file/folder (default: the built-in 10,000-digit MNIST subset).
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Model size: small (28×28×1, 1.1 M parameters), medium (28×28×1, 6.5 M), rgb32 (32×32×3).
        #[arg(long, default_value = "small")]
        preset: String,
        /// Condition on the dataset's classes (MNIST labels or subfolders), for `diffuse sample --class`.
        #[arg(long)]
        class_conditional: bool,
        /// Total optimizer steps (a resumed run continues up to this count).
        #[arg(long, default_value_t = 10_000)]
        steps: u64,
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Peak learning rate (Adam), reached after --warmup steps.
        #[arg(long, default_value_t = 2e-4)]
        lr: f64,
        #[arg(long, default_value_t = 500)]
        warmup: u64,
        /// EMA decay of the weights used for sampling.
        #[arg(long, default_value_t = 0.999)]
        ema: f64,
        /// Global gradient-norm clip (0 turns it off).
        #[arg(long, default_value_t = 1.0)]
        clip: f64,
        /// Noise schedule: linear (Ho et al.) or cosine (Nichol & Dhariwal).
        #[arg(long, default_value = "linear")]
        schedule: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder for checkpoint.safetensors and samples-*.png (default: runs/<preset>).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        #[arg(long, default_value_t = 1000)]
        sample_every: u64,
        #[arg(long, default_value_t = 500)]
        checkpoint_every: u64,
        /// Read the loss back every this many steps (the GPU runs ahead in between).
        #[arg(long, default_value_t = 25)]
        log_every: u64,
        /// Continue the run in --out from its checkpoint.
        #[arg(long)]
        resume: bool,
        /// Colour (R,G,B) that transparent pixels are composited onto.
        #[arg(long, default_value = "255,255,255", value_parser = parse_rgb)]
        background: [u8; 3],
        #[arg(long)]
        adapter: Option<String>,
    },
    /// Generate images from a checkpoint (default: the model bundled in assets/).
    Sample {
        /// A checkpoint written by `diffuse train`.
        #[arg(long)]
        checkpoint: Option<std::path::PathBuf>,
        /// ddpm (ancestral), ddim (η = --eta), sde (reverse-time SDE, Euler–Maruyama), ode (probability-flow ODE,
        /// Heun), pc (predictor–corrector), langevin (annealed Langevin, for VE/NCSN models).
        #[arg(long, default_value = "ddim")]
        sampler: String,
        /// Sampling steps (model evaluations; Heun uses about two per step).
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// DDIM's η: 0 is deterministic, 1 is DDPM-like.
        #[arg(long, default_value_t = 0.0)]
        eta: f64,
        /// How the steps are chosen among the T training timesteps: trailing (default; starts at T−1),
        /// leading (diffusers' DDIM default), linspace.
        #[arg(long, default_value = "trailing")]
        spacing: String,
        /// Number of images.
        #[arg(short, long, default_value_t = 16)]
        num: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Class to generate (class-conditional models).
        #[arg(long)]
        class: Option<u32>,
        /// Classifier-free guidance weight w (ε̂ = (1+w)·ε(x,c) − w·ε(x,∅)); 0 turns guidance off.
        #[arg(long, default_value_t = 0.0)]
        guidance: f32,
        /// The PNG grid to write.
        #[arg(long, default_value = "samples.png")]
        out: std::path::PathBuf,
        /// Also write the raw samples [N, C, H, W] in [−1, 1] as .npy.
        #[arg(long)]
        npy: Option<std::path::PathBuf>,
        /// Start from this x_T ([N, C, H, W] float32 .npy) instead of drawing it: reproducible runs and
        /// comparisons with other tools.
        #[arg(long)]
        noise: Option<std::path::PathBuf>,
        /// Also write the denoising trajectory as an animated GIF.
        #[arg(long)]
        gif: Option<std::path::PathBuf>,
        /// Sample with the raw training weights instead of their EMA.
        #[arg(long)]
        raw_weights: bool,
        #[arg(long)]
        adapter: Option<String>,
    },
    /// Time every kernel family on the shapes the U-Net presets use, headless and with no dataset. GPU time comes
    /// from timestamp queries where the adapter has them, else wall-clock; each figure is the median of several
    /// runs after a warm-up, with the min and max beside it.
    Bench {
        /// GPU adapter: an index from `diffuse info` or part of its name (default: DIFFUSE_ADAPTER, else the first
        /// discrete GPU, else any).
        #[arg(long)]
        adapter: Option<String>,
        /// Run only the cases whose name or shape contains this text (e.g. `conv2d`, `silu`).
        #[arg(long)]
        filter: Option<String>,
        /// A fast smoke run on small shapes with few repetitions (what CI runs); its numbers are not measurements.
        #[arg(long)]
        quick: bool,
        /// Also write the results as JSON to this file (`-` for standard output, replacing the table).
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn info(adapter: Option<&str>) -> diffuse::Result<()> {
    let adapters = list_adapters();
    if adapters.is_empty() {
        // Gpu::new reports what to install.
        Gpu::new(adapter)?;
    }
    println!("adapters ({}):", adapters.len());
    for a in &adapters {
        let f = a.features;
        let l = &a.limits;
        println!("  [{}] {}", a.index, a.info.name);
        println!(
            "      backend {:?}, type {:?}, driver {} {}",
            a.info.backend, a.info.device_type, a.info.driver, a.info.driver_info
        );
        println!(
            "      limits: {} storage buffers/stage, {} B workgroup memory, {} invocations/workgroup, \
             {} MiB per storage binding, {} MiB per buffer",
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20
        );
        println!(
            "      features: timestamps {}, timestamps inside passes {}, subgroups {}, f16 {}",
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY)),
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)),
            yes(f.contains(wgpu::Features::SUBGROUP)),
            yes(f.contains(wgpu::Features::SHADER_F16)),
        );
    }
    let gpu = Gpu::new(adapter)?;
    println!("chosen: {}", gpu.describe());
    Ok(())
}

fn bench(
    adapter: Option<&str>,
    filter: Option<String>,
    quick: bool,
    json: Option<std::path::PathBuf>,
) -> diffuse::Result<()> {
    let gpu = Gpu::new(adapter)?;
    let to_stdout = json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if !to_stdout {
        println!(
            "adapter: {}   diffuse {}",
            gpu.describe(),
            env!("CARGO_PKG_VERSION")
        );
    }
    let options = diffuse::bench::Options { filter, quick };
    let (rows, clock) = diffuse::bench::run(&gpu, &options, !to_stdout)?;
    if rows.is_empty() {
        return Err(diffuse::Error::Usage(
            "no benchmark case matches --filter; run without it to see the case names".to_string(),
        ));
    }
    let text = diffuse::bench::to_json(&gpu, clock, &rows);
    match json {
        Some(path) if to_stdout => {
            let _ = path;
            print!("{text}");
        }
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| diffuse::Error::Usage(format!("writing {}: {e}", path.display())))?,
        None => {}
    }
    if !to_stdout {
        println!("clock: {clock}");
    }
    Ok(())
}

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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { adapter } => info(adapter.as_deref()),
        Command::Bench {
            adapter,
            filter,
            quick,
            json,
        } => bench(adapter.as_deref(), filter, quick, json),
        Command::Train {
            data,
            preset,
            class_conditional,
            steps,
            batch,
            lr,
            warmup,
            ema,
            clip,
            schedule,
            seed,
            out,
            sample_every,
            checkpoint_every,
            log_every,
            resume,
            background,
            adapter,
        } => Gpu::new(adapter.as_deref()).and_then(|gpu| {
            let preset_name = preset.clone();
            let args = commands::TrainArgs {
                data,
                preset,
                class_conditional,
                steps,
                batch,
                lr,
                warmup,
                ema,
                clip,
                schedule,
                seed,
                out: out.unwrap_or_else(|| std::path::Path::new("runs").join(&preset_name)),
                sample_every: sample_every.max(1),
                checkpoint_every: checkpoint_every.max(1),
                log_every: log_every.max(1),
                resume,
                background,
            };
            commands::train(&gpu, args)
        }),
        Command::Sample {
            checkpoint,
            sampler,
            steps,
            eta,
            spacing,
            num,
            seed,
            class,
            guidance,
            out,
            npy,
            noise,
            gif,
            raw_weights,
            adapter,
        } => Gpu::new(adapter.as_deref()).and_then(|gpu| {
            let args = commands::SampleArgs {
                checkpoint,
                sampler,
                steps,
                eta,
                spacing,
                num,
                seed,
                class,
                guidance,
                out,
                npy,
                noise,
                gif,
                raw_weights,
            };
            commands::sample(&gpu, args)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
