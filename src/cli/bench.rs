//! `diffuse bench`: the table (or JSON) of `diffuse::bench`'s cases on one adapter.

use std::path::PathBuf;
use std::rc::Rc;

use diffuse::distributed::Replicas;
use diffuse::{Error, Result};

#[derive(clap::Args)]
pub struct BenchArgs {
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
    json: Option<PathBuf>,
    /// For whole-model cases (training step, forward pass), also time each dispatch alone and print the
    /// time per kernel, largest first: where the time goes.
    #[arg(long)]
    breakdown: bool,
}

/// Runs the benchmark; under `mpirun` (`replicas`), the data-parallel training cases, reported by rank 0.
pub fn bench(args: BenchArgs, replicas: Option<Rc<dyn Replicas>>) -> Result<()> {
    let gpu = super::rank_gpu(args.adapter.as_deref(), replicas.as_deref())?;
    let lead = super::leads(replicas.as_deref());
    let to_stdout = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    if !to_stdout && lead {
        println!(
            "adapter: {}   diffuse {}",
            gpu.describe(),
            env!("CARGO_PKG_VERSION")
        );
    }
    let options = diffuse::bench::Options {
        filter: args.filter,
        quick: args.quick,
        breakdown: args.breakdown,
    };
    let report = diffuse::bench::run(&gpu, &options, !to_stdout && lead, replicas)?;
    if !lead {
        return Ok(());
    }
    if report.rows.is_empty() && report.skipped.is_empty() {
        return Err(Error::Usage(
            "no benchmark case matches --filter; run without it to see the case names".to_string(),
        ));
    }
    let text = diffuse::bench::to_json(&gpu, &report);
    match args.json {
        Some(_) if to_stdout => print!("{text}"),
        Some(path) => std::fs::write(&path, text)
            .map_err(|e| Error::Usage(format!("writing {}: {e}", path.display())))?,
        None => {}
    }
    if !to_stdout {
        println!("clock: {}", report.clock);
    }
    Ok(())
}
