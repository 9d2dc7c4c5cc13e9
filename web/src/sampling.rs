//! A sampling run the page steps through: the desktop samplers' plans (`SamplerSpec`, as `diffuse sample` builds
//! them), one sampler step per submission, x read back after each so the page plays the denoising trajectory and
//! its event loop runs between steps.
//!
//! `options` (all optional): `sampler` (a `diffuse sample --sampler` name), `steps`, `seed`, `images`, `class` (a
//! class of a class-conditional model, or -1: one per column), `guidance` (the classifier-free guidance weight w),
//! `eta` (DDIM's η). Batch 0 of `diffuse sample --seed S` draws the same noise as `seed` S here.

use std::cell::Cell;
use std::rc::Rc;

use diffuse::checkpoint::Checkpoint;
use diffuse::image_io::grid_png;
use diffuse::model::{ParamBuffers, ParamLayout};
use diffuse::sample::spec::{SamplerKind, SamplerSpec};
use diffuse::sample::{batch_seed, max_batch, Sampler, UNetDenoiser};
use wasm_bindgen::prelude::*;

use crate::js::{self, object, Options};
use crate::Inner;

/// A sampler recorded for the current model, and the next step to submit.
#[wasm_bindgen]
pub struct Sampling {
    inner: Rc<Inner>,
    run: Rc<Run>,
}

struct Run {
    sampler: Sampler,
    next: Cell<usize>,
    images: usize,
    channels: usize,
    size: usize,
    /// Images per row: one class per column when every class is drawn.
    columns: Option<usize>,
}

impl Sampling {
    pub(crate) async fn build(inner: Rc<Inner>, options: JsValue) -> Result<Sampling, JsValue> {
        let opts = Options(options);
        let ckpt = inner.model()?;
        let name = opts.text("sampler", "ddim");
        let kind = SamplerKind::from_name(&name).ok_or_else(|| {
            let names: Vec<&str> = SamplerKind::NAMES.iter().map(|(n, _)| *n).collect();
            js::error(&format!("sampler {name:?}: one of {}", names.join(", ")))
        })?;
        let mut spec = SamplerSpec::new(kind, opts.count("steps", 50, 1)?);
        spec.eta = opts.number("eta", spec.eta)?;
        let plan = spec
            .plan_trained(&ckpt.training.settings.objective, || {
                ckpt.training.sampling_schedule()
            })
            .map_err(js::from)?;
        let images = opts.count("images", 16, 1)?;
        let (classes, columns) = classes(&ckpt, &opts, images)?;
        let guidance = opts.number("guidance", 0.0)? as f32;
        let seed = batch_seed(opts.count("seed", 0, 0)? as u64, 0);
        let gpu = &inner.gpu;
        let config = &ckpt.config;
        let build = || {
            let params = ParamBuffers::upload(gpu, &ParamLayout::new(config), &ckpt.ema)?;
            let guided = classes.is_some() && guidance != 0.0;
            let most = max_batch(gpu, config, &params, guided, None)?;
            if images > most {
                return Err(diffuse::Error::Usage(format!(
                    "{images} images do not fit one batch on this GPU (at most {most}): ask for fewer"
                )));
            }
            let trained = ckpt.training.trained();
            let model = UNetDenoiser::new(
                gpu,
                config,
                &params,
                images,
                classes.as_deref(),
                guidance,
                trained,
            )?;
            let shape = [
                images,
                config.in_channels,
                config.image_size,
                config.image_size,
            ];
            Sampler::new(gpu, &plan, &model, &shape, seed)
        };
        let sampler = gpu.build_async(build).await.map_err(js::from)?;
        let run = Run {
            sampler,
            next: Cell::new(0),
            images,
            channels: config.in_channels,
            size: config.image_size,
            columns,
        };
        Ok(Sampling {
            inner,
            run: Rc::new(run),
        })
    }
}

/// The classes to draw: the option's one for every image, one per column for -1, none for an unconditional model.
fn classes(
    ckpt: &Checkpoint,
    opts: &Options,
    images: usize,
) -> Result<(Option<Vec<u32>>, Option<usize>), JsValue> {
    let Some(count) = ckpt.config.num_classes else {
        return Ok((None, None));
    };
    let class = opts.number("class", -1.0)?;
    if class < 0.0 {
        let all = (0..images).map(|i| (i % count) as u32).collect();
        return Ok((Some(all), Some(count.min(images))));
    }
    if class.fract() != 0.0 || class >= count as f64 {
        return Err(js::error(&format!(
            "class {class}: the model has classes 0 to {}",
            count - 1
        )));
    }
    Ok((Some(vec![class as u32]), None))
}

#[wasm_bindgen]
impl Sampling {
    /// The plan's number of steps.
    pub fn steps(&self) -> usize {
        self.run.sampler.steps()
    }

    /// Whether every step has run.
    pub fn done(&self) -> bool {
        self.run.next.get() >= self.run.sampler.steps()
    }

    /// Submits the next step and resolves to `{ step, steps, png }`: x after it, as a PNG grid.
    pub fn step(&self) -> js_sys::Promise {
        let (inner, run) = (self.inner.clone(), self.run.clone());
        wasm_bindgen_futures::future_to_promise(async move {
            let k = run.next.get();
            let gpu = &inner.gpu;
            run.sampler.submit_step(gpu, k).map_err(js::from)?;
            run.next.set(k + 1);
            let x = run.sampler.x_after(k).expect("step k was just submitted");
            let pixels = x.read_f32_async(gpu).await.map_err(js::from)?;
            let png = grid_png(&pixels, run.images, run.channels, run.size, run.columns)
                .map_err(js::from)?;
            Ok(object(&[
                ("step", ((k + 1) as f64).into()),
                ("steps", (run.sampler.steps() as f64).into()),
                ("png", js::bytes(&png)),
            ]))
        })
    }
}
