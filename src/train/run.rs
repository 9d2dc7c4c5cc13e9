//! The run loop every front end drives (the CLI, the bench, the tests, a web page): steps, loss reports, the
//! checkpoint and preview cadence, and the stop flag a front end sets on a signal or a button. What a run writes
//! goes through [`Outputs`] ([`Folder`]: a run folder with `checkpoint.safetensors`, `metrics.csv`,
//! `samples-*.png` and `loss.png`); what a person sees goes through [`Progress`]. In a data-parallel run every rank
//! runs the loop (each step and each checkpoint's comparison of the replicas are collective); only the lead rank
//! is given outputs.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::checkpoint::Checkpoint;
use crate::diffusion::process::Objective;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::{ParamBuffers, ParamLayout};
use crate::sample::spec::{SamplerKind, SamplerSpec};
use crate::sample::{max_batch, Batched};
use crate::time::Instant;

use super::{LossReport, Trainer};

/// How often a run reports, saves and previews, and the step it ends at.
#[derive(Clone, Copy, Debug)]
pub struct Cadence {
    /// The step count the run ends at (a resumed run continues up to it).
    pub steps: u64,
    /// Read the loss back every this many steps (the GPU runs ahead in between).
    pub log_every: u64,
    pub checkpoint_every: u64,
    /// Preview and redraw the loss plot every this many steps (and at the last).
    pub sample_every: u64,
    /// Images per preview grid (0: none, only the loss plot); None: 16, or two per class.
    pub preview: Option<usize>,
}

impl Cadence {
    /// Whether step `step` (1-based) samples a preview, and whether it reports (every step that saves or samples
    /// reports too, so that its loss is known to be finite first).
    fn due(&self, step: u64) -> (bool, bool) {
        let sample = step.is_multiple_of(self.sample_every) || step == self.steps;
        let report = step.is_multiple_of(self.log_every)
            || step.is_multiple_of(self.checkpoint_every)
            || sample;
        (sample, report)
    }

    /// Refuses a zero interval: "every 0 steps" means nothing.
    pub fn validate(&self) -> Result<()> {
        for (flag, every) in [
            ("--log-every", self.log_every),
            ("--checkpoint-every", self.checkpoint_every),
            ("--sample-every", self.sample_every),
        ] {
            if every == 0 {
                return Err(Error::Usage(format!(
                    "{flag} must be at least 1 (a number of steps)"
                )));
            }
        }
        Ok(())
    }
}

/// A request to stop after the current step, set by a front end (a signal handler, a button) from any thread;
/// clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Asks the run to stop; returns whether it had been asked already.
    pub fn set(&self) -> bool {
        self.0.swap(true, Ordering::SeqCst)
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One row of the metrics log: a loss report with the learning rate, throughput and wall time beside it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metrics {
    pub report: LossReport,
    pub lr: f64,
    pub steps_per_s: f64,
    pub images_per_s: f64,
    /// Seconds since this invocation of the run began.
    pub seconds: f64,
}

/// A preview grid: `n` images (NCHW, values in [-1, 1]) from the same noise each time.
pub struct Preview {
    pub step: u64,
    pub pixels: Vec<f32>,
    pub n: usize,
    pub channels: usize,
    pub size: usize,
    /// Images per row (a class-conditional model: one class per column), None: square.
    pub columns: Option<usize>,
}

/// Where a run's products go.
pub trait Outputs {
    /// Keeps a checkpoint that has passed every check (finite, the replicas agree); must be atomic.
    fn checkpoint(&mut self, ckpt: &Checkpoint) -> Result<()>;
    fn metrics(&mut self, row: &Metrics) -> Result<()>;
    /// Keeps a preview; returns what to tell the user ("wrote runs/small/samples-0001000.png").
    fn preview(&mut self, preview: &Preview) -> Result<String>;
    /// Redraws the loss curve from every row kept so far.
    fn loss_plot(&mut self) -> Result<()>;
}

/// What a person sees as the run goes; every method may do nothing.
pub trait Progress {
    fn report(&mut self, _row: &Metrics, _steps: u64) {}
    /// The step count after each submitted step.
    fn position(&mut self, _step: u64) {}
    fn note(&mut self, _line: &str) {}
}

/// A [`Progress`] that shows nothing (other ranks, tests).
pub struct Silent;

impl Progress for Silent {}

/// How a training run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// It reached `Cadence::steps` (or was already there).
    Done,
    /// The stop flag stopped it after it saved a checkpoint.
    Stopped { step: u64 },
}

/// A run of `trainer` to `cadence.steps`: `outputs` None on every rank but the lead one.
pub struct Run<'a> {
    pub gpu: &'a Gpu,
    pub trainer: &'a mut Trainer,
    pub cadence: Cadence,
    pub stop: StopFlag,
    pub outputs: Option<&'a mut dyn Outputs>,
    pub progress: &'a mut dyn Progress,
}

impl Run<'_> {
    /// Trains until `cadence.steps` or a stop, which saves a checkpoint first. A diverged loss or non-finite
    /// weights end the run with an error before anything from them is saved.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn go(self) -> Result<Finished> {
        crate::gpu::future::block_on(self.go_async())
    }

    /// [`Run::go`], without blocking (a browser: the page's event loop runs between steps).
    pub async fn go_async(mut self) -> Result<Finished> {
        self.cadence.validate()?;
        let clock = Clock {
            started: Instant::now(),
            start_step: self.trainer.step,
        };
        while self.trainer.step < self.cadence.steps {
            let step = self.trainer.step + 1;
            let (sample_due, report) = self.cadence.due(step);
            // Read once: a stop arriving later in this step is seen by the next one. Across ranks the step's
            // all-reduce tells every rank whether any was asked, so all stop at the same step.
            let stopping = self
                .trainer
                .step_async(self.gpu, report, self.stop.is_set())
                .await?;
            let last = step == self.cadence.steps || stopping;
            let checkpoint_due = step.is_multiple_of(self.cadence.checkpoint_every) || last;
            // Reports arrive a step or more late: the GPU keeps running while the host shows them.
            let reports = self.trainer.poll_losses(self.gpu)?;
            self.show(&clock, reports)?;
            self.progress.position(step);
            if checkpoint_due || sample_due {
                // Waiting here is what makes a diverged run stop before its checkpoint could overwrite a good one.
                let reports = self.trainer.wait_losses_async(self.gpu).await?;
                self.show(&clock, reports)?;
            }
            if checkpoint_due {
                self.save().await?;
            }
            if sample_due || stopping {
                self.preview(step, sample_due).await?;
            }
            if stopping {
                return Ok(Finished::Stopped { step });
            }
        }
        Ok(Finished::Done)
    }

    fn show(&mut self, clock: &Clock, reports: Vec<LossReport>) -> Result<()> {
        for report in reports {
            let row = clock.metrics(self.trainer, report);
            if let Some(outputs) = self.outputs.as_deref_mut() {
                outputs.metrics(&row)?;
            }
            self.progress.report(&row, self.cadence.steps);
        }
        Ok(())
    }

    /// Every rank reads its state back and compares it with the others'; the lead rank keeps it.
    async fn save(&mut self) -> Result<()> {
        let ckpt = self.trainer.checkpoint_async(self.gpu).await?;
        self.trainer.verify_replicas(&ckpt)?;
        match self.outputs.as_deref_mut() {
            Some(outputs) => outputs.checkpoint(&ckpt),
            None => Ok(()),
        }
    }

    /// A preview grid (when `grid` and the cadence asks for images) and the loss plot, on the lead rank.
    async fn preview(&mut self, step: u64, grid: bool) -> Result<()> {
        let Some(outputs) = self.outputs.as_deref_mut() else {
            return Ok(());
        };
        let config = &self.trainer.settings.model;
        // A class-conditional run previews every class, one per column, twice; others 16 images.
        let (n, columns) = match config.num_classes {
            Some(count) => (self.cadence.preview.unwrap_or(2 * count), Some(count)),
            None => (self.cadence.preview.unwrap_or(16), None),
        };
        if grid && n > 0 {
            let ckpt = self.trainer.checkpoint_async(self.gpu).await?;
            // The run's seed every time (the checkpoint's on resume): every grid starts from the same noise, so
            // consecutive grids show what training changed.
            let seed = self.trainer.settings.seed;
            // A stop asked for meanwhile ends the preview at the next sampler step, not at its end (minutes for
            // a large model on a CPU adapter); the next training step then sees it, saves and stops.
            let stop = self.stop.clone();
            let asked = move || stop.is_set();
            let pixels = match preview_pixels(self.gpu, &ckpt, n, seed, Some(&asked)).await {
                Err(Error::Stopped(_)) => {
                    self.progress.note(&format!(
                        "the preview of step {step} was cut short by the stop"
                    ));
                    return outputs.loss_plot();
                }
                other => other?,
            };
            crate::sample::check_finite(&pixels, &format!("the preview of step {step}"))?;
            let preview = Preview {
                step,
                pixels,
                n,
                channels: config.in_channels,
                size: config.image_size,
                columns: columns.map(|c| c.min(n)),
            };
            let line = outputs.preview(&preview)?;
            self.progress.note(&line);
        }
        outputs.loss_plot()
    }
}

/// The wall clock of this invocation, for the rates of the metrics log.
struct Clock {
    started: Instant,
    start_step: u64,
}

impl Clock {
    fn metrics(&self, trainer: &Trainer, report: LossReport) -> Metrics {
        let seconds = self.started.elapsed().as_secs_f64();
        let steps_per_s = (report.step - self.start_step) as f64 / seconds;
        let s = &trainer.settings;
        Metrics {
            report,
            lr: s.lr_at(report.step - 1),
            steps_per_s,
            images_per_s: steps_per_s * (s.batch * s.grad_accum) as f64,
            seconds,
        }
    }
}

/// n samples of the checkpoint's EMA weights with 50 DDIM steps (the preview written during training), in
/// batches that fit, batch k from the seed `diffuse sample` gives it; a class-conditional model draws image i of
/// class i mod C. `stop`: asked after every step ([`Batched::stop`]).
pub async fn preview_pixels(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    n: usize,
    seed: u64,
    stop: Option<&dyn Fn() -> bool>,
) -> Result<Vec<f32>> {
    // DDPM: DDIM's defaults (η = 0, trailing spacing, x̂₀ clamped to [−1, 1]); a score-based model: Heun on
    // Karras σ (EDM's sampler), about 50 evaluations.
    let objective = &ckpt.training.settings.objective;
    let kind = match objective {
        Objective::Ddpm => SamplerKind::Ddim,
        _ => SamplerKind::Heun,
    };
    let plan =
        SamplerSpec::new(kind, 50).plan_trained(objective, || ckpt.training.sampling_schedule())?;
    let params = ParamBuffers::upload(gpu, &ParamLayout::new(&ckpt.config), &ckpt.ema)?;
    let classes: Option<Vec<u32>> = ckpt
        .config
        .num_classes
        .map(|count| (0..n).map(|i| (i % count) as u32).collect());
    let batch = n.min(max_batch(gpu, &ckpt.config, &params, false, None)?);
    Batched {
        config: &ckpt.config,
        params: &params,
        trained: ckpt.training.trained(),
        guidance: 0.0,
        classes: classes.as_deref(),
        given: None,
        frames: 0,
        seed,
        stop,
    }
    .run_async(gpu, &plan, n, batch, |_| ())
    .await
    .map(|samples| samples.pixels)
}

/// A run folder: `checkpoint.safetensors` (written atomically), `metrics.csv`, `samples-<step>.png` and
/// `loss.png`.
pub struct Folder {
    pub dir: PathBuf,
    metrics: MetricsLog,
}

impl Folder {
    /// Opens (making it if needed) the run folder `dir` for a run starting at `start_step`.
    pub fn open(dir: &Path, start_step: u64) -> Result<Folder> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Folder {
            dir: dir.to_path_buf(),
            metrics: MetricsLog::open(&dir.join("metrics.csv"), start_step)?,
        })
    }

    pub fn checkpoint_path(dir: &Path) -> PathBuf {
        dir.join("checkpoint.safetensors")
    }

    /// The most bytes a checkpoint of `config` takes: weights, EMA weights and Adam's two moments in f32, and a
    /// MiB for the safetensors header, the metadata, `metrics.csv` and a preview grid.
    pub fn checkpoint_bytes(config: &crate::model::UNetConfig) -> u64 {
        ParamLayout::new(config).padded_len as u64 * 4 * 4 + (1 << 20)
    }

    /// Refuses a run whose folder `dir` is on a disk with `available` bytes free, fewer than one checkpoint's
    /// `needed`: found at start-up, not when the first save fails hours later. (A save writes the new file beside
    /// the last one before renaming it over, so that is what a save needs free.)
    pub fn check_room(dir: &Path, needed: u64, available: u64) -> Result<()> {
        if available >= needed {
            return Ok(());
        }
        let mb = |b: u64| b as f64 / 1e6;
        Err(Error::Usage(format!(
            "--out {}: its disk has {:.1} MB free, and a checkpoint of this model takes up to {:.1} MB (written \
             beside the last one, then renamed over it); free some space, or give --out a folder on another disk",
            dir.display(),
            mb(available),
            mb(needed)
        )))
    }
}

impl Outputs for Folder {
    fn checkpoint(&mut self, ckpt: &Checkpoint) -> Result<()> {
        ckpt.save(&Folder::checkpoint_path(&self.dir))
    }

    fn metrics(&mut self, row: &Metrics) -> Result<()> {
        self.metrics.write(row)
    }

    fn preview(&mut self, p: &Preview) -> Result<String> {
        let path = self.dir.join(format!("samples-{:07}.png", p.step));
        crate::image_io::save_grid_png(&path, &p.pixels, p.n, p.channels, p.size, p.columns)?;
        Ok(format!("step {}: wrote {}", p.step, path.display()))
    }

    /// Redrawn from the whole log (earlier invocations of the run included).
    fn loss_plot(&mut self) -> Result<()> {
        crate::plot::write_loss_png(&self.metrics.path, &self.dir.join("loss.png"))
    }
}

/// `metrics.csv` in the run's folder: one row per loss report (step, mean loss since the last report, gradient
/// norm, learning rate, images per second, wall seconds since the run began, across resumes). A resumed run first
/// drops the rows past its checkpoint's step (the lost steps are trained again) and carries the wall time on.
struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
    /// Wall seconds of the earlier invocations of the run (the last kept row's).
    earlier: f64,
}

const METRICS_HEADER: &str = "step,loss,grad_norm,lr,images_per_s,wall_s";

impl MetricsLog {
    fn open(path: &Path, start_step: u64) -> Result<MetricsLog> {
        let io = |e| Error::io(path, e);
        let mut kept = vec![METRICS_HEADER.to_string()];
        let mut earlier = 0.0;
        let text = match start_step {
            0 => String::new(),
            _ => std::fs::read_to_string(path).unwrap_or_default(),
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split(',').collect();
            let step = fields.first().and_then(|s| s.parse::<u64>().ok());
            if let (Some(step), Some(wall)) = (step, fields.last()) {
                if step <= start_step {
                    earlier = wall.parse().unwrap_or(earlier);
                    kept.push(line.to_string());
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

    fn write(&mut self, row: &Metrics) -> Result<()> {
        use std::io::Write;
        let r = &row.report;
        writeln!(
            self.file,
            "{},{},{},{},{:.3},{:.3}",
            r.step,
            r.loss,
            r.grad_norm,
            row.lr,
            row.images_per_s,
            self.earlier + row.seconds
        )
        .map_err(|e| Error::io(&self.path, e))
    }
}
