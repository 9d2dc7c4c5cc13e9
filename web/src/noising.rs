//! The noise-level slider: x_t = √ᾱ_t·x₀ + √(1 − ᾱ_t)·ε of a training image, made by the training kernel
//! (shaders/noise.wgsl) from the same Philox noise each time, and the current model's x̂₀ from it: one DDIM step
//! from t to 0 (x̂₀ clamped to [−1, 1]) with its EMA weights, as the samplers see them.

use std::rc::Rc;

use diffuse::checkpoint::Checkpoint;
use diffuse::diffusion::samplers::{ddim, Clip, Prediction};
use diffuse::diffusion::Schedule;
use diffuse::gpu::{DType, Gpu, Recorder, Tensor};
use diffuse::image_io::grid_png;
use diffuse::kernels::{noise, random};
use diffuse::model::{ParamBuffers, ParamLayout, Preset};
use diffuse::sample::{Sampler, UNetDenoiser};
use wasm_bindgen::prelude::*;

use crate::js::{self, object};
use crate::Inner;

pub async fn noising(
    inner: Rc<Inner>,
    index: usize,
    t: usize,
    seed: u64,
) -> Result<JsValue, JsValue> {
    let model = inner.model.borrow().clone();
    // Without a model, the slider shows the forward process alone, at the size a new model would train.
    let config = match &model {
        Some(ckpt) => ckpt.config.clone(),
        None => Preset::Tiny.config(),
    };
    let schedule = match &model {
        Some(ckpt) => ckpt.training.schedule(),
        None => diffuse::train::TrainSettings::new(config.clone()).noise_schedule(),
    }
    .map_err(js::from)?;
    let dataset = inner.dataset(&config)?;
    if index >= dataset.len {
        return Err(js::error(&format!(
            "image {index} of a dataset of {}",
            dataset.len
        )));
    }
    let steps = schedule.num_steps();
    if t >= steps {
        return Err(js::error(&format!("timestep {t} of a schedule of {steps}")));
    }
    let gpu = &inner.gpu;
    let shape = [1, config.in_channels, config.image_size, config.image_size];
    let image = dataset.image(index);
    let label = dataset.labels.as_ref().map(|l| l[index]);
    let x_t = gpu
        .build_async(|| forward(gpu, &schedule, &shape, &image, t, seed))
        .await
        .map_err(js::from)?;
    let noisy = x_t.read_f32_async(gpu).await.map_err(js::from)?;
    let x0 = match &model {
        Some(ckpt) => Some(predict(gpu, ckpt, &x_t, t, label, seed).await?),
        None => None,
    };
    let png = |pixels: &[f32]| {
        grid_png(pixels, 1, config.in_channels, config.image_size, None).map_err(js::from)
    };
    let alpha_bar = schedule.alphas_cumprod[t];
    Ok(object(&[
        ("xt", js::bytes(&png(&noisy)?)),
        (
            "x0",
            match x0 {
                Some(pixels) => js::bytes(&png(&pixels)?),
                None => JsValue::NULL,
            },
        ),
        ("alphaBar", alpha_bar.into()),
        ("snr", (alpha_bar / (1.0 - alpha_bar)).into()),
        ("steps", (steps as f64).into()),
    ]))
}

/// x_t of `image` at `t`, with ε drawn from `seed` (stream 0), submitted; the tensor holds it once done.
fn forward(
    gpu: &Gpu,
    schedule: &Schedule,
    shape: &[usize],
    image: &[f32],
    t: usize,
    seed: u64,
) -> diffuse::Result<Tensor> {
    let x0 = Tensor::from_f32(gpu, shape, image)?;
    let eps = Tensor::zeros(gpu, shape, DType::F32)?;
    let (x_t, target) = (
        Tensor::zeros(gpu, shape, DType::F32)?,
        Tensor::zeros(gpu, shape, DType::F32)?,
    );
    let timestep = Tensor::from_u32(gpu, &[1], &[t as u32])?;
    let table = noise::upload_table(gpu, &schedule.noise_table())?;
    let rng = random::rng_state(gpu, 0)?;
    let dispatches = [
        random::fill_normal(gpu, &eps, seed, 0, &rng)?,
        noise::noise_forward(
            gpu,
            &x0,
            &eps,
            &timestep,
            &table,
            Prediction::Epsilon,
            &x_t,
            &target,
        )?,
    ];
    let mut rec = Recorder::new(gpu);
    rec.dispatch(&dispatches);
    rec.submit();
    Ok(x_t)
}

/// The model's x̂₀ from `x_t` at `t`: one DDIM step to the end, x̂₀ clamped to [−1, 1]; a class-conditional model
/// is told the image's class.
async fn predict(
    gpu: &Gpu,
    ckpt: &Checkpoint,
    x_t: &Tensor,
    t: usize,
    label: Option<u32>,
    seed: u64,
) -> Result<Vec<f32>, JsValue> {
    let schedule = ckpt.training.sampling_schedule().map_err(js::from)?;
    let clamp = Clip::Clamp { lo: -1.0, hi: 1.0 };
    let plan = ddim(&schedule, &[t], 0.0, clamp).map_err(js::from)?;
    let classes = label
        .filter(|_| ckpt.config.num_classes.is_some())
        .map(|c| vec![c]);
    let build = || {
        let layout = ParamLayout::new(&ckpt.config);
        let params = ParamBuffers::upload(gpu, &layout, &ckpt.ema)?;
        let trained = ckpt.training.trained();
        let config = &ckpt.config;
        let model = UNetDenoiser::new(gpu, config, &params, 1, classes.as_deref(), 0.0, trained)?;
        Sampler::from_initial(gpu, &plan, &model, x_t, seed)
    };
    let sampler = gpu.build_async(build).await.map_err(js::from)?;
    sampler.run_async(gpu).await.map_err(js::from)
}
