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
    Train(commands::TrainArgs),
    /// Generate images from a checkpoint (default: the model bundled in assets/).
    Sample(commands::SampleArgs),
    /// Estimate the variational bound (bits/dim, lower is better; Ho et al. report it for their models) of a
    /// checkpoint on a dataset: per image, the decoder and last terms plus a stratified sample of the others.
    Eval(commands::EvalArgs),
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
        /// For whole-model cases (training step, forward pass), also time each dispatch alone and print the
        /// time per kernel, largest first: where the time goes.
        #[arg(long)]
        breakdown: bool,
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
    breakdown: bool,
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
    let options = diffuse::bench::Options {
        filter,
        quick,
        breakdown,
    };
    let report = diffuse::bench::run(&gpu, &options, !to_stdout)?;
    if report.rows.is_empty() && report.skipped.is_empty() {
        return Err(diffuse::Error::Usage(
            "no benchmark case matches --filter; run without it to see the case names".to_string(),
        ));
    }
    let text = diffuse::bench::to_json(&gpu, &report);
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
        println!("clock: {}", report.clock);
    }
    Ok(())
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
            breakdown,
        } => bench(adapter.as_deref(), filter, quick, json, breakdown),
        Command::Train(args) => {
            Gpu::new(args.adapter.as_deref()).and_then(|gpu| commands::train(&gpu, args))
        }
        Command::Eval(args) => {
            Gpu::new(args.adapter.as_deref()).and_then(|gpu| commands::eval(&gpu, args))
        }
        Command::Sample(args) => {
            Gpu::new(args.adapter.as_deref()).and_then(|gpu| commands::sample(&gpu, args))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
