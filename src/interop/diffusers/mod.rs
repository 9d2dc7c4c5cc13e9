//! A diffusers `UNet2DModel` directory read as a diffuse [`Checkpoint`]: what `DDPMPipeline.save_pretrained` and
//! `train_unconditional.py` write, and the google/ddpm-* uploads. `UNet2DModel` was built to port Ho et al.'s
//! DDPM, whose network is diffuse's, so the import is a renaming (names.rs) under the config's numerical
//! conventions (config.rs, [`crate::model::Conventions`]), with the scheduler's training side (scheduler.rs).
//! docs/diffusers.md says what is read and what is refused.
//!
//!   dir/model_index.json                                   (optional; its "unet" must be a UNet2DModel)
//!   dir/unet/config.json
//!   dir/unet/diffusion_pytorch_model.safetensors           (f32, f16 or bf16)
//!   dir/scheduler/scheduler_config.json                    (else DDPMScheduler's defaults, said in a note)
//!
//! `dir` may also be the `unet/` folder itself. export.rs writes a diffuse model the other way.

mod config;
pub mod export;
mod json;
pub mod names;
mod scheduler;
#[cfg(not(target_arch = "wasm32"))]
mod torch;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

use crate::checkpoint::{Checkpoint, TrainingRecord};
use crate::error::{Error, Result};
use crate::model::{ParamLayout, UNetConfig};
use crate::train::TrainSettings;
use json::Config;
use names::Source;

/// An imported model and what the user should know about it (defaults assumed, how its scheduler samples).
pub struct Imported {
    pub checkpoint: Checkpoint,
    pub notes: Vec<String>,
}

/// The weights file of a `unet/` folder.
pub const WEIGHTS: &str = "diffusion_pytorch_model.safetensors";

/// Whether `path` looks like a diffusers model directory (a pipeline's or a `unet/` folder).
pub fn is_model_dir(path: &Path) -> bool {
    path.join("unet").join("config.json").is_file() || path.join("config.json").is_file()
}

/// Reads the diffusers model in `dir` (see the module docs).
pub fn import(dir: &Path) -> Result<Imported> {
    let (unet, scheduler_file) = locate(dir)?;
    let unet_config = Config::read(&unet.join("config.json"))?;
    check_class(&unet_config, "UNet2DModel")?;
    let net = config::read(&unet_config)?;
    let mut notes = Vec::new();
    let scheduler = match scheduler_file {
        Some(file) => scheduler::read(&Config::read(&file)?)?,
        None => {
            notes.push(format!(
                "{}: no scheduler/scheduler_config.json beside it, so DDPMScheduler's defaults are assumed \
                 (linear β from 1e-4 to 0.02, T = 1000, ε prediction)",
                dir.display()
            ));
            scheduler::Scheduler::defaults()
        }
    };
    notes.push(format!(
        "sampling as its scheduler does unless a flag says otherwise: {}",
        scheduler.sampling.as_flags()
    ));
    let params = weights(&unet, &net.config, net.sin_first)?;
    let mut settings = TrainSettings::new(net.config.clone());
    scheduler.apply(&mut settings);
    let checkpoint = Checkpoint {
        config: net.config,
        step: 0,
        rng_offset: 0,
        ema: params.clone(),
        params,
        adam: None,
        training: TrainingRecord {
            settings,
            dataset: format!("imported from the diffusers model {}", dir.display()),
            changes: Vec::new(),
            class_names: Vec::new(),
            scheduler: Some(scheduler.sampling),
        },
    };
    Ok(Imported { checkpoint, notes })
}

/// The `unet/` folder and the scheduler config (if any) of `dir`.
fn locate(dir: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let index = dir.join("model_index.json");
    if index.is_file() {
        let index = Config::read(&index)?;
        let unet = index.get("unet").cloned().unwrap_or_default();
        if unet != serde_json::json!(["diffusers", "UNet2DModel"]) {
            return Err(index.error(format!(
                "its \"unet\" is {unet}: diffuse imports DDPM pipelines, whose network is a diffusers UNet2DModel \
                 (a UNet2DConditionModel is a latent or text-conditioned model)"
            )));
        }
    }
    let (unet, scheduler) = if dir.join("unet").join("config.json").is_file() {
        (dir.join("unet"), dir.join("scheduler"))
    } else if dir.join("config.json").is_file() {
        (dir.to_path_buf(), dir.join("..").join("scheduler"))
    } else {
        return Err(Error::data(
            dir,
            "not a diffusers model directory: it has neither unet/config.json nor config.json",
        ));
    };
    let scheduler = scheduler.join("scheduler_config.json");
    Ok((unet, scheduler.is_file().then_some(scheduler)))
}

fn check_class(c: &Config, want: &str) -> Result<()> {
    match c.string("_class_name", None)? {
        Some(name) if name != want => Err(c.error(format!(
            "\"_class_name\" is {name:?}: diffuse imports a {want} here"
        ))),
        _ => Ok(()),
    }
}

/// The flat parameters of `config` from the `unet/` folder's weights, every tensor of the file used once.
fn weights(unet: &Path, config: &UNetConfig, sin_first: bool) -> Result<Vec<f32>> {
    let tensors = Tensors::open(unet)?;
    let layout = ParamLayout::new(config);
    let mut flat = vec![0.0; layout.padded_len];
    for spec in &layout.params {
        let values = match names::source(&spec.name, config.blocks_per_level) {
            Source::Tensor(name) => tensors.read(&name, &spec.shape)?,
            Source::Stacked(parts) => {
                let mut part_shape = spec.shape.clone();
                part_shape[0] /= 3;
                let mut values = Vec::with_capacity(spec.len());
                for name in &parts {
                    values.extend(tensors.read(name, &part_shape)?);
                }
                values
            }
        };
        flat[spec.offset..spec.offset + spec.len()].copy_from_slice(&values);
        if sin_first && spec.name == "temb.0.weight" {
            names::swap_column_halves(
                &mut flat[spec.offset..spec.offset + spec.len()],
                spec.shape[1],
            );
        }
    }
    tensors.all_used()?;
    Ok(flat)
}

/// A stored tensor: its shape, element type and little-endian bytes.
struct Stored {
    shape: Vec<usize>,
    dtype: Element,
    data: Vec<u8>,
}

/// The element types a weight may have: the three diffuse reads, and any other by name (refused when read).
#[derive(Clone, Debug, PartialEq)]
enum Element {
    F32,
    F16,
    BF16,
    Other(String),
}

/// A diffusers state dict by current name (the 2022 attention names read as today's), each tensor taken once.
struct Tensors {
    path: PathBuf,
    stored: HashMap<String, Stored>,
    /// current name → the name in the file
    by_name: HashMap<String, String>,
    used: std::cell::RefCell<HashSet<String>>,
}

impl Tensors {
    /// The weights file of `unet`: safetensors, else (natively) a torch pickle.
    fn open(unet: &Path) -> Result<Tensors> {
        let path = unet.join(WEIGHTS);
        if path.is_file() {
            return Tensors::new(path.clone(), safetensors_file(&path)?);
        }
        #[cfg(not(target_arch = "wasm32"))]
        if unet.join(torch::WEIGHTS).is_file() {
            let path = unet.join(torch::WEIGHTS);
            return Tensors::new(path.clone(), torch::read(&path)?);
        }
        Err(missing_weights(unet))
    }

    fn new(path: PathBuf, stored: HashMap<String, Stored>) -> Result<Tensors> {
        let by_name = stored
            .keys()
            .map(|n| (names::current_name(n), n.clone()))
            .collect();
        Ok(Tensors {
            path,
            stored,
            by_name,
            used: Default::default(),
        })
    }

    fn error(&self, message: String) -> Error {
        Error::data(&self.path, message)
    }

    /// The values of `name`, which must hold `shape` (a linear's [o, i] for a 1×1 convolution's [o, i, 1, 1]).
    fn read(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let stored_name = self.by_name.get(name).ok_or_else(|| {
            self.error(format!(
                "the weight {name} is missing: the file does not hold the network config.json describes"
            ))
        })?;
        let tensor = &self.stored[stored_name];
        let squeezed = |s: &[usize]| s.iter().rev().skip_while(|&&d| d == 1).count();
        let fits = tensor.shape == shape
            || (shape.len() == 4 && tensor.shape == shape[..squeezed(shape).max(2)]);
        if !fits {
            return Err(self.error(format!(
                "{stored_name} has shape {:?} where config.json implies {shape:?}: the weights and the config \
                 describe different networks",
                tensor.shape
            )));
        }
        self.used.borrow_mut().insert(stored_name.clone());
        let values = to_f32(&tensor.dtype, &tensor.data).ok_or_else(|| {
            self.error(format!(
                "{stored_name} is {:?}: diffuse reads F32, F16 and BF16 weights",
                tensor.dtype
            ))
        })?;
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(self.error(format!(
                "{stored_name} holds {bad}: the weights are damaged"
            )));
        }
        Ok(values)
    }

    /// Refuses a file with tensors the network has no place for (naming a few).
    fn all_used(&self) -> Result<()> {
        let used = self.used.borrow();
        let mut extra: Vec<&str> = self
            .stored
            .keys()
            .filter(|n| !used.contains(*n))
            .map(String::as_str)
            .collect();
        if extra.is_empty() {
            return Ok(());
        }
        extra.sort_unstable();
        Err(self.error(format!(
            "{} tensors have no place in the network config.json describes (e.g. {}): the weights and the config \
             describe different networks",
            extra.len(),
            extra[..extra.len().min(3)].join(", ")
        )))
    }
}

fn missing_weights(unet: &Path) -> Error {
    let has = |name: &str| unet.join(name).is_file();
    let message = if has("diffusion_pytorch_model.bin") {
        "holds diffusion_pytorch_model.bin (a torch pickle), which this build (the browser's) does not read: load \
         the safetensors twin, or convert it once with `python -c \"import torch; from safetensors.torch import \
         save_file; save_file(torch.load('diffusion_pytorch_model.bin'), 'diffusion_pytorch_model.safetensors')\"` \
         in that folder (docs/diffusers.md)"
            .to_string()
    } else if has("diffusion_pytorch_model.safetensors.index.json") {
        "holds a sharded model (diffusion_pytorch_model.safetensors.index.json), which diffuse does not read".into()
    } else {
        format!("has no {WEIGHTS} (nor diffusion_pytorch_model.bin)")
    };
    Error::data(unet, message)
}

/// Every tensor of a safetensors file.
fn safetensors_file(path: &Path) -> Result<HashMap<String, Stored>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let file = SafeTensors::deserialize(&bytes).map_err(|e| {
        Error::data(
            path,
            format!("not a readable safetensors file (truncated or corrupt?): {e}"),
        )
    })?;
    Ok(file
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let dtype = match view.dtype() {
                Dtype::F32 => Element::F32,
                Dtype::F16 => Element::F16,
                Dtype::BF16 => Element::BF16,
                other => Element::Other(format!("{other:?}")),
            };
            let stored = Stored {
                shape: view.shape().to_vec(),
                dtype,
                data: view.data().to_vec(),
            };
            (name, stored)
        })
        .collect())
}

/// Little-endian values of `dtype` as f32 (None for a type diffuse does not read).
fn to_f32(dtype: &Element, data: &[u8]) -> Option<Vec<f32>> {
    let words = |n: usize| data.chunks_exact(n);
    Some(match dtype {
        Element::F32 => words(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Element::F16 => words(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Element::BF16 => words(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Element::Other(_) => return None,
    })
}
