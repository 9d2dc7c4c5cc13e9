//! A diffuse checkpoint written as a diffusers folder that `DDPMPipeline.from_pretrained` and
//! `UNet2DModel.from_pretrained` load with no missing, unexpected or mismatched keys. Every config key is written
//! out: one left absent would be read as `UNet2DModel`'s default, which is not diffuse's network.

use std::path::Path;

use serde_json::{json, Value};

use super::names::{self, Source};
use crate::checkpoint::{write_atomically, Checkpoint};
use crate::diffusion::process::Objective;
use crate::diffusion::samplers::{Clip, DdpmVariance, Spacing};
use crate::diffusion::{NamedSchedule, Prediction};
use crate::error::{Error, Result};
use crate::model::{Architecture, Block, ParamLayout, UNetConfig};
use crate::sample::SamplingDefaults;

/// The diffusers version whose loading the fixtures checked (tests/twin/diffusers_fixtures.py).
pub const DIFFUSERS_VERSION: &str = "0.42.1";

/// What was written, and what of the model `DDPMPipeline` cannot run.
pub struct Exported {
    pub notes: Vec<String>,
}

/// Writes `ckpt` (its EMA weights, or its raw ones with `raw`) into `dir` as a diffusers folder.
pub fn export(ckpt: &Checkpoint, raw: bool, dir: &Path) -> Result<Exported> {
    let config = &ckpt.config;
    if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(Error::data(
            dir,
            "is not empty: give a new folder to export into (it gets model_index.json, unet/ and scheduler/)",
        ));
    }
    let unet = unet_config(config)?;
    let weights = state_dict(config, if raw { &ckpt.params } else { &ckpt.ema })?;
    let mut notes = Vec::new();
    let settings = &ckpt.training.settings;
    let pipeline = settings.objective == Objective::Ddpm;
    let create = |d: &Path| std::fs::create_dir_all(d).map_err(|e| Error::io(d, e));
    create(&dir.join("unet"))?;
    write_json(&dir.join("unet").join("config.json"), &unet)?;
    write_atomically(&dir.join("unet").join(super::WEIGHTS), &weights)?;
    if pipeline {
        create(&dir.join("scheduler"))?;
        write_json(
            &dir.join("scheduler").join("scheduler_config.json"),
            &scheduler_config(ckpt)?,
        )?;
        write_json(&dir.join("model_index.json"), &model_index())?;
    } else {
        notes.push(format!(
            "a {} model: its network is written as a UNet2DModel (its time input is the process's noise \
             coordinate, not a DDPM timestep), but no DDPM scheduler or pipeline, which would sample it wrongly",
            settings.objective.name()
        ));
    }
    if config.num_classes.is_some() {
        notes.push(format!(
            "class-conditional: UNet2DModel loads it (num_class_embeds {}, the last row diffuse's \"no class\"), \
             but DDPMPipeline passes no class_labels; call the UNet2DModel with class_labels yourself",
            config.num_classes.unwrap_or(0) + 1
        ));
    }
    Ok(Exported { notes })
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

fn model_index() -> Value {
    json!({
        "_class_name": "DDPMPipeline",
        "_diffusers_version": DIFFUSERS_VERSION,
        "scheduler": ["diffusers", "DDPMScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
    })
}

/// `UNet2DModel`'s config for diffuse's network, every key that shapes it explicit.
fn unet_config(c: &UNetConfig) -> Result<Value> {
    let levels = c.channel_mults.len();
    let attention: Vec<bool> = (0..levels)
        .map(|l| c.attention_resolutions.contains(&(c.image_size >> l)))
        .collect();
    let down: Vec<&str> = attention
        .iter()
        .map(|&a| if a { "AttnDownBlock2D" } else { "DownBlock2D" })
        .collect();
    let up: Vec<&str> = attention
        .iter()
        .rev()
        .map(|&a| if a { "AttnUpBlock2D" } else { "UpBlock2D" })
        .collect();
    let channels: Vec<usize> = c
        .channel_mults
        .iter()
        .map(|m| m * c.base_channels)
        .collect();
    Ok(json!({
        "_class_name": "UNet2DModel",
        "_diffusers_version": DIFFUSERS_VERSION,
        "sample_size": c.image_size,
        "in_channels": c.in_channels,
        "out_channels": c.in_channels,
        "center_input_sample": false,
        "time_embedding_type": "positional",
        "time_embedding_dim": null,
        "freq_shift": c.conventions.freq_shift,
        "flip_sin_to_cos": true,
        "down_block_types": down,
        "mid_block_type": "UNetMidBlock2D",
        "up_block_types": up,
        "block_out_channels": channels,
        "layers_per_block": c.blocks_per_level,
        "mid_block_scale_factor": 1,
        "downsample_padding": c.conventions.downsample_padding,
        "downsample_type": "conv",
        "upsample_type": "conv",
        "dropout": shortest(c.dropout),
        "act_fn": "silu",
        "attention_head_dim": head_dim(c)?,
        "norm_num_groups": c.groups,
        "attn_norm_num_groups": null,
        "norm_eps": shortest(c.conventions.norm_eps),
        "resnet_time_scale_shift": "default",
        "add_attention": true,
        "class_embed_type": null,
        "num_class_embeds": c.num_classes.map(|k| k + 1),
        "num_train_timesteps": null,
    }))
}

/// An f32 as the shortest decimal that reads back as it (1e-5, not 9.99999974737875e-06).
fn shortest(x: f32) -> Value {
    json!(x
        .to_string()
        .parse::<f64>()
        .expect("an f32 prints as a number"))
}

/// `attention_head_dim`: null for one head (UNet2DModel then uses each block's width), else the channels per head,
/// which must be the same at every attention layer (UNet2DModel takes one number for all).
fn head_dim(c: &UNetConfig) -> Result<Value> {
    if c.heads == 1 {
        return Ok(Value::Null);
    }
    let arch = Architecture::new(c);
    let widths: Vec<usize> = arch
        .down
        .iter()
        .chain(&arch.middle)
        .filter_map(|b| match b {
            Block::Attention { channels, .. } => Some(*channels),
            _ => None,
        })
        .collect();
    if widths.iter().any(|&w| w != widths[0]) {
        return Err(Error::Usage(format!(
            "this model has {} heads at attention widths {widths:?}: UNet2DModel takes one number of channels per \
             head for every attention layer, so it cannot hold different head widths",
            c.heads
        )));
    }
    Ok(json!(widths[0] / c.heads))
}

/// The scheduler the model was trained with, as `DDPMScheduler` reads it; sampling as the model's own scheduler
/// did (an imported model's), else as `diffuse sample --sampler ddpm` does (variance β, x̂₀ clipped to ±1, trailing
/// timesteps).
fn scheduler_config(ckpt: &Checkpoint) -> Result<Value> {
    let s = &ckpt.training.settings;
    let sampling = ckpt.training.scheduler.unwrap_or(SamplingDefaults {
        spacing: Spacing::Trailing,
        variance: DdpmVariance::Beta,
        clip: Clip::ClampKeepEps { lo: -1.0, hi: 1.0 },
    });
    let (spacing, offset) = match sampling.spacing {
        Spacing::Leading { steps_offset } => ("leading", steps_offset),
        Spacing::Trailing => ("trailing", 0),
        Spacing::Linspace => ("linspace", 0),
    };
    let variance = match sampling.variance {
        DdpmVariance::Beta => "fixed_large",
        DdpmVariance::PosteriorBeta => "fixed_small",
    };
    // (clip_sample, its range, thresholding, its ratio, its largest threshold)
    let (clip, range, thresholding, ratio, max) = match sampling.clip {
        Clip::None => (false, 1.0, false, 0.995, 1.0),
        Clip::Clamp { hi, .. } | Clip::ClampKeepEps { hi, .. } => (true, hi, false, 0.995, 1.0),
        Clip::Dynamic { ratio, max } => (false, 1.0, true, ratio, max),
    };
    let (schedule, start, end) = match s.schedule {
        NamedSchedule::Linear => ("linear", json!(1e-4), json!(0.02)),
        NamedSchedule::Cosine => ("squaredcos_cap_v2", json!(1e-4), json!(0.02)),
    };
    let prediction = match s.target {
        Prediction::Epsilon => "epsilon",
        Prediction::Sample => "sample",
        Prediction::Velocity => "v_prediction",
        Prediction::Score => {
            return Err(Error::Usage(
                "a DDPM model that predicts the score has no DDPMScheduler prediction_type".into(),
            ))
        }
    };
    Ok(json!({
        "_class_name": "DDPMScheduler",
        "_diffusers_version": DIFFUSERS_VERSION,
        "num_train_timesteps": s.timesteps,
        "beta_schedule": schedule,
        "beta_start": start,
        "beta_end": end,
        "trained_betas": null,
        "variance_type": variance,
        "clip_sample": clip,
        "clip_sample_range": range,
        "prediction_type": prediction,
        "thresholding": thresholding,
        "dynamic_thresholding_ratio": ratio,
        "sample_max_value": max,
        "timestep_spacing": spacing,
        "steps_offset": offset,
        "rescale_betas_zero_snr": s.zero_terminal_snr,
    }))
}

/// The weights under `UNet2DModel`'s names and shapes, as a safetensors file with save_pretrained's metadata.
fn state_dict(config: &UNetConfig, flat: &[f32]) -> Result<Vec<u8>> {
    let layout = ParamLayout::new(config);
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for spec in &layout.params {
        let values = &flat[spec.offset..spec.offset + spec.len()];
        // Attention's 1×1 convolutions are linears in diffusers: [C, C, 1, 1] → [C, C].
        let linear = |shape: &[usize]| match shape {
            [o, i, 1, 1] => vec![*o, *i],
            other => other.to_vec(),
        };
        match names::source(&spec.name, config.blocks_per_level) {
            Source::Tensor(name) => {
                let shape = if name.contains(".to_out.0.") {
                    linear(&spec.shape)
                } else {
                    spec.shape.clone()
                };
                tensors.push((name, shape, bytes(values)));
            }
            Source::Stacked(parts) => {
                let mut shape = linear(&spec.shape);
                shape[0] /= 3;
                for (part, chunk) in parts.into_iter().zip(values.chunks(spec.len() / 3)) {
                    tensors.push((part, shape.clone(), bytes(chunk)));
                }
            }
        }
    }
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .expect("the shape and bytes agree");
            (name.clone(), view)
        })
        .collect::<Vec<_>>();
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::Usage(format!("serialising the diffusers weights: {e}")))
}
