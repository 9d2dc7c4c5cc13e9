//! A training run in the page: the library's [`Run`] (the same loop `diffuse train` drives) with outputs that keep
//! the newest checkpoint in memory and hand metrics and preview grids to the page.
//!
//! `options` (all optional): `fresh` (start a new model instead of continuing the current one), `preset` ("tiny"
//! or "small"), `channels` and `size` (the model's images), `conditional` (one class per digit, with
//! classifier-free guidance), `batch`, `lr`, `warmup`, `seed`, `steps` (how many more steps), `every` (checkpoint
//! and preview interval), `logEvery`, `preview` (images per grid). A continued model keeps its recorded settings,
//! as `diffuse train --resume` does.
//!
//! Events, as `on(name, data)`: `started` {step, note}, `metrics` {step, loss, gradNorm, lr, stepsPerS,
//! imagesPerS, seconds}, `position` {step}, `checkpoint` {step}, `preview` {step, png}, `note` {line}.

use std::rc::Rc;

use diffuse::checkpoint::Checkpoint;
use diffuse::image_io::grid_png;
use diffuse::model::{Preset, UNetConfig};
use diffuse::train::run::{Cadence, Finished, Metrics, Outputs, Preview, Progress, Run, StopFlag};
use diffuse::train::{TrainSettings, Trainer};
use js_sys::Function;
use wasm_bindgen::prelude::*;

use crate::js::{self, emit, object, Options};
use crate::Inner;

pub async fn train(inner: Rc<Inner>, options: JsValue, on: Function) -> Result<JsValue, JsValue> {
    if inner.stop.borrow().is_some() {
        return Err(js::error("a training run is already going: stop it first"));
    }
    let opts = Options(options);
    let resume = match opts.flag("fresh") {
        true => None,
        false => inner.model.borrow().clone(),
    };
    let (settings, dataset) = match resume.as_deref() {
        Some(ckpt) => (ckpt.training.settings.clone(), inner.dataset(&ckpt.config)?),
        None => fresh(&inner, &opts)?,
    };
    let cadence = cadence(&opts)?;
    let gpu = &inner.gpu;
    let build = || Trainer::new(gpu, settings, &dataset, resume.as_deref());
    let mut trainer = gpu.build_async(build).await.map_err(js::from)?;
    let cadence = Cadence {
        steps: trainer.step + cadence.steps,
        ..cadence
    };
    emit(
        &on,
        "started",
        object(&[
            ("step", (trainer.step as f64).into()),
            ("note", describe(&trainer, &dataset.description).into()),
        ]),
    );
    let stop = StopFlag::default();
    *inner.stop.borrow_mut() = Some(stop.clone());
    let finished = Run {
        gpu,
        trainer: &mut trainer,
        cadence,
        stop,
        outputs: Some(&mut Page {
            inner: &inner,
            on: &on,
        }),
        progress: &mut Page {
            inner: &inner,
            on: &on,
        },
    }
    .go_async()
    .await;
    *inner.stop.borrow_mut() = None;
    let stopped = matches!(finished.map_err(js::from)?, Finished::Stopped { .. });
    Ok(object(&[
        ("step", (trainer.step as f64).into()),
        ("stopped", stopped.into()),
    ]))
}

/// A new model's settings (the library's defaults where the page gives none) and its data.
fn fresh(
    inner: &Inner,
    opts: &Options,
) -> Result<(TrainSettings, Rc<diffuse::data::Dataset>), JsValue> {
    let name = opts.text("preset", "tiny");
    let preset = match Preset::from_name(&name) {
        Some(p @ (Preset::Tiny | Preset::Small)) => p,
        _ => {
            return Err(js::error(&format!(
                "preset {name:?}: the page trains tiny or small (larger models: the desktop binary)"
            )))
        }
    };
    let base = preset.config();
    let mut config = UNetConfig {
        in_channels: opts.count("channels", base.in_channels, 1)?,
        image_size: opts.count("size", base.image_size, 4)?,
        ..base
    };
    let dataset = inner.dataset(&config)?;
    if opts.flag("conditional") {
        if dataset.labels.is_none() {
            return Err(js::error(&format!(
                "class-conditional training needs labelled images, and {} has none: train unconditionally",
                dataset.description
            )));
        }
        config.num_classes = Some(dataset.class_names.len());
    }
    let mut s = TrainSettings::new(config);
    s.batch = opts.count("batch", s.batch, 1)?;
    s.lr = opts.number("lr", s.lr)?;
    s.warmup = opts.count("warmup", s.warmup as usize, 0)? as u64;
    s.seed = opts.count("seed", s.seed as usize, 0)? as u64;
    Ok((s, dataset))
}

/// The run's cadence, with `steps` counted from where the model is.
fn cadence(opts: &Options) -> Result<Cadence, JsValue> {
    let every = opts.count("every", 50, 1)? as u64;
    let cadence = Cadence {
        steps: opts.count("steps", 200, 1)? as u64,
        log_every: opts.count("logEvery", 5, 1)? as u64,
        checkpoint_every: every,
        sample_every: every,
        preview: Some(opts.count("preview", 16, 0)?),
    };
    cadence.validate().map_err(js::from)?;
    Ok(cadence)
}

fn describe(trainer: &Trainer, data: &str) -> String {
    let s = &trainer.settings;
    format!(
        "{data}; batch {} ({} per pass), lr {}, {} dispatches per step; {}",
        s.batch * s.grad_accum,
        trainer.plan().micro_batch,
        s.lr,
        trainer.dispatch_count(),
        trainer.placement_note()
    )
}

/// The page as the run's outputs and progress.
struct Page<'a> {
    inner: &'a Inner,
    on: &'a Function,
}

impl Outputs for Page<'_> {
    fn checkpoint(&mut self, ckpt: &Checkpoint) -> diffuse::Result<()> {
        *self.inner.model.borrow_mut() = Some(Rc::new(ckpt.clone()));
        emit(
            self.on,
            "checkpoint",
            object(&[("step", (ckpt.step as f64).into())]),
        );
        Ok(())
    }

    fn metrics(&mut self, row: &Metrics) -> diffuse::Result<()> {
        let r = &row.report;
        let fields = [
            ("step", r.step as f64),
            ("loss", r.loss),
            ("gradNorm", r.grad_norm),
            ("lr", row.lr),
            ("stepsPerS", row.steps_per_s),
            ("imagesPerS", row.images_per_s),
            ("seconds", row.seconds),
        ];
        let fields: Vec<(&str, JsValue)> = fields.iter().map(|&(k, v)| (k, v.into())).collect();
        emit(self.on, "metrics", object(&fields));
        Ok(())
    }

    fn preview(&mut self, p: &Preview) -> diffuse::Result<String> {
        let png = grid_png(&p.pixels, p.n, p.channels, p.size, p.columns)?;
        emit(
            self.on,
            "preview",
            object(&[("step", (p.step as f64).into()), ("png", js::bytes(&png))]),
        );
        Ok(format!("preview of step {}", p.step))
    }

    /// The page draws its loss curve live from the metrics.
    fn loss_plot(&mut self) -> diffuse::Result<()> {
        Ok(())
    }
}

impl Progress for Page<'_> {
    fn position(&mut self, step: u64) {
        emit(
            self.on,
            "position",
            object(&[("step", (step as f64).into())]),
        );
    }

    fn note(&mut self, line: &str) {
        emit(self.on, "note", object(&[("line", line.into())]));
    }
}
