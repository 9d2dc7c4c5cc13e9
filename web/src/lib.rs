//! diffuse in a browser tab: the library's trainer and samplers on the visitor's GPU through WebGPU, behind a
//! small JavaScript API the page (web/www/) drives.
//!
//! - this file: [`Studio`] (the GPU, the data, the newest checkpoint) and what needs no GPU work: data, checkpoint
//!   bytes in and out, the adapter's description;
//! - `training.rs`: a training run (the library's `Run`), reporting to the page as it goes;
//! - `noising.rs`: the noise-level slider, x_t of an image and the model's x̂₀ at t;
//! - `sampling.rs`: a sampler stepped one submission at a time, so the page shows each step and stays responsive;
//! - `js.rs`: the few conversions between Rust values and JavaScript ones.
//!
//! Every method that waits on the GPU returns a promise. Several may be pending at once (the slider's x̂₀ while a
//! run trains): each borrows the shared state only between awaits, never across one.

mod js;
mod noising;
mod sampling;
mod training;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use diffuse::checkpoint::Checkpoint;
use diffuse::data::{Dataset, Fit};
use diffuse::gpu::Gpu;
use diffuse::model::UNetConfig;
use diffuse::train::run::StopFlag;
use wasm_bindgen::prelude::*;

pub use sampling::Sampling;

#[wasm_bindgen(start)]
fn start() {
    // A panic's message goes to the console instead of an anonymous "unreachable" trap.
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&format!("diffuse panicked: {info}").into());
    }));
}

/// What the page trains on: the built-in digits, or images dropped on it (kept encoded, so that each model gets
/// them fitted to its own size and channels, as the desktop loader fits a folder).
enum Data {
    Digits,
    Files(Vec<(String, Vec<u8>)>),
}

/// A dataset and the (channels, size) it was fitted to.
type Fitted = ((usize, usize), Rc<Dataset>);

pub(crate) struct Inner {
    pub gpu: Gpu,
    data: RefCell<Data>,
    /// The last dataset built: the digits decode once, not at every run.
    fitted: RefCell<Option<Fitted>>,
    /// The newest checkpoint that passed a run's checks, or the one loaded: what training continues, the slider
    /// and the samplers use, and a download saves.
    model: RefCell<Option<Rc<Checkpoint>>>,
    /// The running training's stop flag.
    stop: RefCell<Option<StopFlag>>,
}

impl Inner {
    pub fn model(&self) -> Result<Rc<Checkpoint>, JsValue> {
        self.model
            .borrow()
            .clone()
            .ok_or_else(|| js::error("no model yet: train one, or load a checkpoint"))
    }

    /// The current data fitted to `config` (its channels and size).
    pub fn dataset(&self, config: &UNetConfig) -> Result<Rc<Dataset>, JsValue> {
        let key = (config.in_channels, config.image_size);
        if let Some((k, d)) = &*self.fitted.borrow() {
            if *k == key {
                return Ok(d.clone());
            }
        }
        let fit = Fit {
            channels: config.in_channels,
            size: config.image_size,
            background: [255, 255, 255],
        };
        let dataset = match &*self.data.borrow() {
            Data::Digits => Dataset::builtin(fit),
            Data::Files(files) => {
                let files: Vec<(&str, &[u8])> = files
                    .iter()
                    .map(|(n, b)| (n.as_str(), b.as_slice()))
                    .collect();
                Dataset::from_encoded(&files, fit, "images dropped on the page")
            }
        }
        .map_err(js::from)?;
        let dataset = Rc::new(dataset);
        *self.fitted.borrow_mut() = Some((key, dataset.clone()));
        Ok(dataset)
    }
}

/// The page's handle on diffuse: one GPU device, the data, the newest model.
#[wasm_bindgen]
pub struct Studio {
    inner: Rc<Inner>,
}

/// Opens the browser's GPU (WebGPU) with the limits the native build asks for. The error says what is missing: no
/// WebGPU, no adapter, or an adapter below WebGPU's default limits.
#[wasm_bindgen]
pub async fn open() -> Result<Studio, JsValue> {
    let gpu = Gpu::open_async(None, 0).await.map_err(js::from)?;
    Ok(Studio {
        inner: Rc::new(Inner {
            gpu,
            data: RefCell::new(Data::Digits),
            fitted: RefCell::new(None),
            model: RefCell::new(None),
            stop: RefCell::new(None),
        }),
    })
}

#[wasm_bindgen]
impl Studio {
    /// "adapter (backend, kind)" and the limits that bound what fits.
    pub fn describe(&self) -> String {
        let gpu = &self.inner.gpu;
        // Browsers keep the adapter's name to themselves (fingerprinting); what they do tell is its kind.
        let kind = match gpu.info.device_type {
            wgpu::DeviceType::Cpu => "a software (CPU) fallback adapter: expect it slow",
            _ => "a GPU",
        };
        let name = match gpu.info.name.as_str() {
            "" => "the browser's WebGPU adapter",
            named => named,
        };
        format!(
            "{name} ({kind}); largest buffer binding {} MB",
            gpu.limits.max_storage_buffer_binding_size / 1_000_000
        )
    }

    /// Why the GPU device was lost, once it has been (the page then offers the last checkpoint).
    pub fn lost(&self) -> Option<String> {
        self.inner.gpu.lost()
    }

    /// Train on the built-in digits (10,000 MNIST images) from now on.
    pub fn use_digits(&self) {
        *self.inner.data.borrow_mut() = Data::Digits;
        *self.inner.fitted.borrow_mut() = None;
    }

    /// Train on these encoded images (PNG or JPEG: `names[i]` and `files[i]`) from now on; they are decoded
    /// and fitted to the model when training starts, and never leave the page. Returns how many decode.
    pub fn use_images(
        &self,
        names: Vec<String>,
        files: Vec<js_sys::Uint8Array>,
    ) -> Result<usize, JsValue> {
        let files: Vec<(String, Vec<u8>)> = names
            .into_iter()
            .zip(files.iter().map(|f| f.to_vec()))
            .collect();
        *self.inner.data.borrow_mut() = Data::Files(files);
        *self.inner.fitted.borrow_mut() = None;
        // Decode now, at the size of the model that would train, so that a bad drop is told at once.
        let config = match self.inner.model.borrow().as_ref() {
            Some(ckpt) => ckpt.config.clone(),
            None => diffuse::model::Preset::Tiny.config(),
        };
        let dataset = self.inner.dataset(&config)?;
        Ok(dataset.len)
    }

    /// What the current data is, with what decoding it noted (files skipped).
    pub fn data_description(&self) -> String {
        match self.inner.fitted.borrow().as_ref() {
            Some((_, d)) => std::iter::once(d.description.clone())
                .chain(d.notes.iter().cloned())
                .collect::<Vec<_>>()
                .join("\n"),
            None => match &*self.inner.data.borrow() {
                Data::Digits => "built-in MNIST subset (10,000 digits)".into(),
                Data::Files(f) => format!("{} files dropped on the page", f.len()),
            },
        }
    }

    /// Loads a checkpoint (`diffuse train`'s `checkpoint.safetensors`) to sample from or keep training.
    pub fn load_checkpoint(&self, bytes: &[u8], name: &str) -> Result<String, JsValue> {
        let ckpt = Checkpoint::from_bytes(bytes, Path::new(name)).map_err(js::from)?;
        let line = describe_model(&ckpt);
        *self.inner.model.borrow_mut() = Some(Rc::new(ckpt));
        Ok(line)
    }

    /// The newest checkpoint as the bytes of `checkpoint.safetensors` (what `diffuse train` writes: the desktop
    /// binary samples it and resumes it), or None before there is one.
    pub fn checkpoint_bytes(&self) -> Result<Option<Vec<u8>>, JsValue> {
        match self.inner.model.borrow().as_ref() {
            Some(ckpt) => ckpt.to_bytes().map(Some).map_err(js::from),
            None => Ok(None),
        }
    }

    /// One line about the current model, or None.
    pub fn model_description(&self) -> Option<String> {
        self.inner.model.borrow().as_deref().map(describe_model)
    }

    /// The current model's classes (0 for an unconditional one).
    pub fn classes(&self) -> usize {
        self.inner
            .model
            .borrow()
            .as_ref()
            .and_then(|c| c.config.num_classes)
            .unwrap_or(0)
    }

    /// Trains (see `training.rs` for `options`), reporting through `on(event, data)`; resolves with the step
    /// reached. Continues the current model unless `options.fresh`.
    pub fn train(&self, options: JsValue, on: js_sys::Function) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(training::train(inner, options, on))
    }

    /// Asks the running training to stop: it saves a checkpoint at the next step, then ends. Returns whether one
    /// was running.
    pub fn stop(&self) -> bool {
        match self.inner.stop.borrow().as_ref() {
            Some(flag) => {
                flag.set();
                true
            }
            None => false,
        }
    }

    /// The slider: x_t of training image `index` at timestep `t`, and the current model's x̂₀ from it; resolves to
    /// `{ xt, x0, alphaBar, snr }` with the images as PNG bytes.
    pub fn noising(&self, index: usize, t: usize, seed: f64) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(noising::noising(inner, index, t, seed as u64))
    }

    /// A sampling run (see `sampling.rs` for `options`), stepped by the page.
    pub fn sampling(&self, options: JsValue) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            sampling::Sampling::build(inner, options)
                .await
                .map(JsValue::from)
        })
    }
}

fn describe_model(ckpt: &Checkpoint) -> String {
    let c = &ckpt.config;
    format!(
        "{} px, {} channel{}, base {} channels, {}, step {}",
        c.image_size,
        c.in_channels,
        if c.in_channels == 1 { "" } else { "s" },
        c.base_channels,
        match c.num_classes {
            Some(n) => format!("{n} classes"),
            None => "unconditional".into(),
        },
        ckpt.step
    )
}

/// The samplers the page offers, as `[name, help]` pairs (`diffuse sample --sampler`'s names and help).
#[wasm_bindgen]
pub fn samplers() -> js_sys::Array {
    diffuse::sample::spec::SamplerKind::NAMES
        .iter()
        .map(|(name, help)| js_sys::Array::of2(&(*name).into(), &(*help).into()))
        .collect()
}
