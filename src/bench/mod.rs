//! `diffuse bench`: times every kernel family on the shapes the U-Net presets use. Each case is built once
//! (tensors, dispatches), warmed up, then timed over several runs; a run records the case's dispatches `reps`
//! times in one pass and one submission, so per-call time = run time / reps. Reported: median, min and max per
//! call, and GFLOP/s (for arithmetic-bound kernels) or GB/s (for memory-bound ones) at the median. Whole sampling
//! runs are timed end to end instead (wall clock from the first submission to the images read back), as a user
//! sees them.

mod cases;

use crate::time::Instant;
use std::rc::Rc;

use crate::distributed::Replicas;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Timer};
use crate::train::ExchangeStats;

/// What a case's figure of merit counts per call.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// Floating-point operations (a multiply-add is 2).
    Flops(f64),
    /// Bytes read plus bytes written, each element once.
    Bytes(f64),
}

pub struct Case {
    /// What one call records (empty for a whole run).
    pub dispatches: Vec<Dispatch>,
    pub work: Work,
    /// How `work` was counted, e.g. "2·M·N·K".
    pub formula: &'static str,
    /// Items per call and their units, for further rates (e.g. 32 "img" → img/s).
    pub items: Vec<(f64, &'static str)>,
    /// Set for cases timed as whole runs by the wall clock instead of as recorded dispatches.
    pub whole_run: Option<WholeRun>,
    /// For data-parallel training runs: what the all-reduces have cost so far (read before and after the runs).
    pub exchange: Option<Box<dyn Fn() -> ExchangeStats>>,
}

/// Does a whole run once and returns the host's recording and submitting time (seconds).
pub type RunOnce = Box<dyn Fn(&Gpu) -> Result<f64>>;

/// A case that is a whole program of several submissions (a sampling run): `run` does it once, waits for the
/// result, and returns the host's time spent recording and submitting (seconds); timed `runs` times.
pub struct WholeRun {
    pub run: RunOnce,
    pub runs: usize,
}

/// Builds a case's tensors and dispatches on a device.
pub type BuildCase = Box<dyn Fn(&Gpu) -> Result<Case>>;

/// A named case whose tensors are only built when it is selected.
pub struct CaseSpec {
    pub name: &'static str,
    pub shape: String,
    pub build: BuildCase,
    /// Minutes long on a CPU adapter (lavapipe): skipped there unless `--filter` selects it.
    pub long: bool,
}

pub struct Options {
    /// Only cases whose "name shape" contains this substring.
    pub filter: Option<String>,
    /// Fewer, shorter runs on smaller shapes: a smoke test, not a measurement.
    pub quick: bool,
    /// For cases of many dispatches (a training step, a forward pass): also time each dispatch alone and print
    /// the time per kernel, largest first.
    pub breakdown: bool,
}

/// Where a case's time goes: per kernel entry point (its name and the variant choice that recorded it,
/// src/kernels/select.rs), the dispatches and their seconds, largest first; and how the dispatches were timed.
struct Breakdown {
    kernels: Vec<(String, usize, f64)>,
    how: &'static str,
}

/// Each dispatch's time (median of 3 runs) as the case runs them, in order in one submission, where the adapter
/// has timestamps ([`Timer::sequence`]); else each dispatch alone, in a submission of its own.
fn breakdown(gpu: &Gpu, timer: &Timer, dispatches: &[&Dispatch]) -> Result<Breakdown> {
    let mut runs = Vec::with_capacity(3);
    let mut how = "each dispatch alone, in a submission of its own (wall clock)";
    for _ in 0..3 {
        match timer.sequence(gpu, dispatches)? {
            Some((times, method)) => {
                runs.push(times);
                how = method;
            }
            None => runs.push(
                dispatches
                    .iter()
                    .map(|d| timer.time(gpu, &[*d], 1))
                    .collect::<Result<Vec<f64>>>()?,
            ),
        }
    }
    let mut by_kernel: Vec<(String, usize, f64)> = Vec::new();
    for (i, d) in dispatches.iter().enumerate() {
        let mut times = [runs[0][i], runs[1][i], runs[2][i]];
        times.sort_by(f64::total_cmp);
        let name = match d.choice {
            Some(choice) => format!("{}  [{choice}]", d.kernel.name),
            None => d.kernel.name.clone(),
        };
        match by_kernel.iter_mut().find(|k| k.0 == name) {
            Some(k) => {
                k.1 += 1;
                k.2 += times[1];
            }
            None => by_kernel.push((name, 1, times[1])),
        }
    }
    by_kernel.sort_by(|a, b| b.2.total_cmp(&a.2));
    Ok(Breakdown {
        kernels: by_kernel,
        how,
    })
}

#[derive(Clone, Debug)]
pub struct Row {
    pub name: String,
    pub shape: String,
    pub formula: &'static str,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub runs: usize,
    pub reps: usize,
    /// GFLOP/s or GB/s at the median, per `unit`.
    pub rate: f64,
    pub unit: &'static str,
    /// Items per second at the median (e.g. images/s), where the case counts items.
    pub items_per_s: Vec<(f64, &'static str)>,
    /// Host time per call spent recording and submitting the dispatches (median), in ms.
    pub host_ms: f64,
    /// Bytes of GPU buffers the case allocated (tensors, scratch, uniforms): fixed workloads allocate only once.
    pub memory_bytes: u64,
    /// Data-parallel training runs: the all-reduce's cost per step.
    pub exchange: Option<ExchangeRow>,
}

/// The cost of a data-parallel step's gradient exchange, per step, over the timed runs.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeRow {
    /// Bytes each rank sends into the all-reduce.
    pub bytes: u64,
    /// Milliseconds in MPI_Allreduce, every rank having arrived.
    pub allreduce_ms: f64,
    /// Milliseconds waiting for this rank's passes and reading the gradient back, waiting for the slowest rank,
    /// and handing the sum to the GPU.
    pub readback_ms: f64,
    pub wait_ms: f64,
    pub upload_ms: f64,
    /// allreduce_ms as a share of the whole step's wall time.
    pub share: f64,
}

impl ExchangeRow {
    /// The cost per step between two readings of the stats, over `seconds` of timed runs.
    fn between(before: ExchangeStats, after: ExchangeStats, seconds: f64) -> ExchangeRow {
        let steps = (after.steps - before.steps).max(1) as f64;
        let allreduce = after.allreduce_s - before.allreduce_s;
        ExchangeRow {
            bytes: after.bytes_per_step,
            allreduce_ms: allreduce / steps * 1e3,
            readback_ms: (after.readback_s - before.readback_s) / steps * 1e3,
            wait_ms: (after.wait_s - before.wait_s) / steps * 1e3,
            upload_ms: (after.upload_s - before.upload_s) / steps * 1e3,
            share: allreduce / seconds.max(1e-12),
        }
    }
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// What a benchmark run produced.
pub struct Report {
    pub rows: Vec<Row>,
    /// "gpu-timestamps" or "wall-clock".
    pub clock: &'static str,
    /// Cases left out because they are long on this adapter ("name shape").
    pub skipped: Vec<String>,
}

/// Runs the selected cases, printing one line each as it finishes. As one rank of a data-parallel run
/// (`replicas`, every rank running the same command) it runs the data-parallel training cases instead, and only
/// rank 0 prints.
pub fn run(
    gpu: &Gpu,
    options: &Options,
    print: bool,
    replicas: Option<Rc<dyn Replicas>>,
) -> Result<Report> {
    let timer = Timer::new(gpu);
    let cpu_adapter = gpu.info.device_type == wgpu::DeviceType::Cpu;
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let specs = match replicas {
        Some(replicas) => cases::distributed(options.quick, replicas),
        None => cases::all(options.quick),
    };
    for spec in specs {
        let label = format!("{} {}", spec.name, spec.shape);
        match &options.filter {
            Some(f) if !label.contains(f.as_str()) => continue,
            None if spec.long && cpu_adapter => {
                if print {
                    println!(
                        "{label:<59} skipped: minutes long on a CPU adapter; run it with --filter"
                    );
                }
                skipped.push(label);
                continue;
            }
            _ => {}
        }
        let row = measure(gpu, &timer, options, &spec, print)?;
        if print {
            println!("{}", format_row(&row));
        }
        rows.push(row);
    }
    Ok(Report {
        rows,
        clock: timer.clock().name(),
        skipped,
    })
}

/// Builds `spec`'s case and times it: the row, and with `--breakdown` each dispatch alone (printed).
fn measure(
    gpu: &Gpu,
    timer: &Timer,
    options: &Options,
    spec: &CaseSpec,
    print: bool,
) -> Result<Row> {
    let before = gpu.allocated_bytes();
    let case = (spec.build)(gpu)?;
    let memory_bytes = gpu.allocated_bytes() - before;
    let dispatches: Vec<&Dispatch> = case.dispatches.iter().collect();
    let exchange_before = case.exchange.as_ref().map(|stats| stats());
    let (runs, reps, timings) = time_case(gpu, timer, options.quick, &case, &dispatches)?;
    let exchange = match (exchange_before, &case.exchange) {
        (Some(before), Some(stats)) => Some(ExchangeRow::between(
            before,
            stats(),
            timings.iter().map(|t| t.0).sum(),
        )),
        _ => None,
    };
    let mut per_call: Vec<f64> = timings.iter().map(|t| t.0).collect();
    let mut host: Vec<f64> = timings.iter().map(|t| t.1).collect();
    per_call.sort_by(f64::total_cmp);
    host.sort_by(f64::total_cmp);
    let med = median(&per_call);
    let (rate, unit) = match case.work {
        Work::Flops(f) => (f / med * 1e-9, "GFLOP/s"),
        Work::Bytes(b) => (b / med * 1e-9, "GB/s"),
    };
    if options.breakdown && dispatches.len() > 1 && print {
        print_breakdown(&breakdown(gpu, timer, &dispatches)?, dispatches.len(), med);
    }
    Ok(Row {
        name: spec.name.to_string(),
        shape: spec.shape.clone(),
        formula: case.formula,
        median_ms: med * 1e3,
        min_ms: per_call[0] * 1e3,
        max_ms: per_call[per_call.len() - 1] * 1e3,
        runs,
        reps,
        rate,
        unit,
        items_per_s: case
            .items
            .iter()
            .map(|&(n, what)| (n / med, what))
            .collect(),
        host_ms: median(&host) * 1e3,
        memory_bytes,
        exchange,
    })
}

/// A case's runs: (runs, reps per run, each run's (GPU or wall seconds per call, host seconds per call)).
type Timings = (usize, usize, Vec<(f64, f64)>);

/// A whole run by the wall clock, else the recorded dispatches after a warm-up, `reps` sized so that a run lasts
/// about a target time.
fn time_case(
    gpu: &Gpu,
    timer: &Timer,
    quick: bool,
    case: &Case,
    dispatches: &[&Dispatch],
) -> Result<Timings> {
    if let Some(whole) = &case.whole_run {
        let timings = (0..whole.runs)
            .map(|_| {
                let start = Instant::now();
                let host = (whole.run)(gpu)?;
                Ok((start.elapsed().as_secs_f64(), host))
            })
            .collect::<Result<_>>()?;
        return Ok((whole.runs, 1, timings));
    }
    let (runs, target_s) = if quick { (3, 0.02) } else { (7, 0.25) };
    // The warm-up (pipeline caches, first-touch of memory) also sizes `reps`.
    let once = timer.time(gpu, dispatches, 1)?.max(1e-7);
    let reps = ((target_s / once).ceil() as usize).clamp(1, 1000);
    let timings = (0..runs)
        .map(|_| {
            timer
                .time_with_host(gpu, dispatches, reps)
                .map(|(g, h)| (g / reps as f64, h / reps as f64))
        })
        .collect::<Result<_>>()?;
    Ok((runs, reps, timings))
}

/// `--breakdown`'s lines: each kernel's time, and the case's median `step` seconds minus the kernels' sum spread
/// over its dispatches: what each dispatch costs beyond its kernel (launch, barriers between dispatches).
fn print_breakdown(b: &Breakdown, dispatches: usize, step: f64) {
    let total: f64 = b.kernels.iter().map(|k| k.2).sum();
    println!(
        "    {}: {:.3} ms in all ({dispatches} dispatches); the whole case {:.3} ms: {:.2} µs per dispatch beyond \
         its kernel",
        b.how,
        total * 1e3,
        step * 1e3,
        (step - total) / dispatches as f64 * 1e6
    );
    for (name, count, seconds) in &b.kernels {
        println!(
            "    {:>9.3} ms  {:>5.1}%  {count:>4} × {name}",
            seconds * 1e3,
            100.0 * seconds / total
        );
    }
}

pub fn format_row(r: &Row) -> String {
    // Whole-model cases also show the host's recording time per call and the GPU memory they allocated.
    let items = if r.items_per_s.is_empty() {
        String::new()
    } else {
        let rates: Vec<String> = r
            .items_per_s
            .iter()
            // Three significant digits for slow rates (a 1000-step run on a CPU: 0.025 img/s).
            .map(|(v, what)| {
                if *v < 1.0 {
                    format!("{v:.3} {what}/s")
                } else {
                    format!("{v:.1} {what}/s")
                }
            })
            .collect();
        let mib = r.memory_bytes as f64 / (1u64 << 20) as f64;
        format!(
            "  {}  host {:.2} ms  {mib:.0} MiB",
            rates.join("  "),
            r.host_ms
        )
    };
    // Data-parallel runs: what the all-reduce costs per step, and its share of the step.
    let exchange = match &r.exchange {
        Some(x) => format!(
            "\n    all-reduce of {:.1} MB: {:.3} ms per step ({:.1}% of the step); before it: this rank's \
             passes and the gradient's readback {:.3} ms, waiting for the slowest rank {:.3} ms; upload {:.3} ms",
            x.bytes as f64 / 1e6,
            x.allreduce_ms,
            100.0 * x.share,
            x.readback_ms,
            x.wait_ms,
            x.upload_ms
        ),
        None => String::new(),
    };
    format!(
        "{:<30} {:<28} median {:>9.3} ms  [{:.3} … {:.3}]  {:>8.2} {:<7}  ({}){items}{exchange}",
        r.name, r.shape, r.median_ms, r.min_ms, r.max_ms, r.rate, r.unit, r.formula
    )
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The results as a JSON document: adapter, clock, one object per case, and the cases skipped.
pub fn to_json(gpu: &Gpu, report: &Report) -> String {
    let cases: Vec<String> = report
        .rows
        .iter()
        .map(|r| {
            format!(
                "    {{\"name\": {}, \"shape\": {}, \"formula\": {}, \"median_ms\": {:e}, \"min_ms\": {:e}, \
                 \"max_ms\": {:e}, \"runs\": {}, \"reps\": {}, \"rate\": {:e}, \"unit\": {}, \"host_ms\": {:e}, \"memory_bytes\": {}{}}}",
                json_string(&r.name),
                json_string(&r.shape),
                json_string(r.formula),
                r.median_ms,
                r.min_ms,
                r.max_ms,
                r.runs,
                r.reps,
                r.rate,
                json_string(r.unit),
                r.host_ms,
                r.memory_bytes,
                match &r.exchange {
                    Some(x) => format!(
                        ", \"allreduce\": {{\"bytes\": {}, \"ms_per_step\": {:e}, \"share\": {:e}, \
                         \"readback_ms\": {:e}, \"wait_ms\": {:e}, \"upload_ms\": {:e}}}",
                        x.bytes, x.allreduce_ms, x.share, x.readback_ms, x.wait_ms, x.upload_ms
                    ),
                    None => String::new(),
                } + &if r.items_per_s.is_empty() {
                    String::new()
                } else {
                    let rates: Vec<String> = r
                        .items_per_s
                        .iter()
                        .map(|(v, what)| format!("{{\"per_s\": {v:e}, \"item\": {}}}", json_string(what)))
                        .collect();
                    format!(", \"items\": [{}]", rates.join(", "))
                }
            )
        })
        .collect();
    format!(
        "{{\n  \"adapter\": {},\n  \"backend\": {},\n  \"clock\": {},\n  \"diffuse\": {},\n  \"cases\": [\n{}\n  ],\n  \"skipped\": [{}]\n}}\n",
        json_string(&gpu.info.name),
        json_string(&format!("{:?}", gpu.info.backend)),
        json_string(report.clock),
        json_string(env!("CARGO_PKG_VERSION")),
        cases.join(",\n"),
        report
            .skipped
            .iter()
            .map(|s| json_string(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}
