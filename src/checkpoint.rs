//! Checkpoints: safetensors files holding the model weights, the EMA weights, the optimizer state, and in the
//! metadata the step, the RNG state, the model config and the training settings. Tensor names follow PyTorch's
//! `state_dict` of the twin module (see docs/checkpoint.md): the model's own under their plain names
//! (`conv_in.weight`), the others behind a prefix (`ema.conv_in.weight`, `adam_m.…`, `adam_v.…`).
//! Files are written atomically (temporary file, fsync, rename), so a crash never leaves a torn checkpoint.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::diffusion::process::{Objective, Trained};
use crate::diffusion::{Prediction, Schedule};
use crate::error::{Error, Result};
use crate::model::{Conventions, ParamLayout, UNetConfig};
use crate::sample::SamplingDefaults;
use crate::train::table::SETTINGS;
use crate::train::TrainSettings;

/// Bumped when the layout of a checkpoint changes incompatibly.
pub const FORMAT: &str = "diffuse-checkpoint-1";

/// Everything a run needs to continue exactly where it stopped, or to sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub config: UNetConfig,
    /// Optimizer steps taken.
    pub step: u64,
    /// The counter offset of the run's next step (its seed is `training.settings.seed`).
    pub rng_offset: u64,
    /// Model parameters, in the flat padded layout of `ParamLayout::new(&config)`.
    pub params: Vec<f32>,
    /// EMA of the parameters (same layout).
    pub ema: Vec<f32>,
    /// Adam's first and second moments (same layout); absent in a sampling-only checkpoint.
    pub adam: Option<(Vec<f32>, Vec<f32>)>,
    pub training: TrainingRecord,
}

/// How the run was trained: what sampling needs (the schedule, T, the prediction, the class names) and what a
/// reader of the file wants to know (the data, the learning rate, the batch, the flips). Stored as the metadata
/// keys of the settings table (`crate::train::table`, docs/checkpoint.md) and `extra.dataset`, `extra.changes`,
/// `extra.class_names`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainingRecord {
    /// The run's settings: those the table records as the run had them; the others (where the data lived, the
    /// micro-batch, the budget) as [`TrainSettings::new`] makes them. `settings.model` is the checkpoint's config.
    pub settings: TrainSettings,
    /// Where the training images came from (`Dataset::description`).
    pub dataset: String,
    /// Settings changed on resuming (`--override`), one line each, oldest first: "step 40: --lr 0.001 (was 0.0002)".
    pub changes: Vec<String>,
    /// The class names in label order: one per class of a class-conditional model, none for an unconditional one.
    pub class_names: Vec<String>,
    /// How the model's own scheduler samples (an imported model's; `extra.scheduler`), else None.
    pub scheduler: Option<SamplingDefaults>,
}

impl TrainingRecord {
    /// The noise schedule the model was trained with, which sampling and evaluation must use. A score-based
    /// model has none: an error that says so.
    pub fn schedule(&self) -> Result<Schedule> {
        let objective = self.settings.objective;
        if objective != Objective::Ddpm {
            return Err(Error::Usage(format!(
                "this checkpoint holds a score-based model (--objective {}), which has no DDPM timestep schedule: \
                 sample it with `diffuse sample` (any sampler but ddpm and ddim); DDPM's variational bound \
                 (`diffuse eval`) and the web page's noising view need a DDPM model",
                objective.name()
            )));
        }
        self.settings.noise_schedule()
    }

    /// What the network's output means.
    pub fn trained(&self) -> Trained {
        Trained {
            objective: self.settings.objective,
            target: self.settings.target,
        }
    }

    /// What the (wrapped) network predicts.
    pub fn prediction(&self) -> Prediction {
        self.trained().prediction()
    }

    /// The schedule the samplers use: [`TrainingRecord::schedule`] with a zero terminal ᾱ raised to 2⁻²⁴
    /// ([`Schedule::for_sampling`]).
    pub fn sampling_schedule(&self) -> Result<Schedule> {
        Ok(self.schedule()?.for_sampling())
    }

    /// Whether this record can describe a model configured as `config`: `Err` says why not.
    fn check(&self, config: &UNetConfig) -> std::result::Result<(), String> {
        let classes = config.num_classes.unwrap_or(0);
        if self.class_names.len() != classes {
            return Err(format!(
                "the model has {classes} classes but the record names {}",
                self.class_names.len()
            ));
        }
        match self.class_names.iter().find(|n| n.contains('\n')) {
            // One name per line is how the metadata stores the list.
            Some(name) => Err(format!("class name {name:?} holds a line break")),
            None => Ok(()),
        }
    }
}

/// The most classes a checkpoint may name (`model.num_classes`): a bound far above any real run, checked before a
/// class table is sized by it.
pub const MAX_CLASSES: usize = 1 << 20;
pub use crate::train::table::MAX_TIMESTEPS;

/// Every metadata key, written here and read back by [`Fields`]; docs/checkpoint.md explains each.
fn to_metadata(ckpt: &Checkpoint) -> HashMap<String, String> {
    let c = &ckpt.config;
    let r = &ckpt.training;
    let list = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut meta = HashMap::from([
        ("format", FORMAT.to_string()),
        ("step", ckpt.step.to_string()),
        ("rng_offset", ckpt.rng_offset.to_string()),
        ("model.in_channels", c.in_channels.to_string()),
        ("model.image_size", c.image_size.to_string()),
        ("model.base_channels", c.base_channels.to_string()),
        ("model.channel_mults", list(&c.channel_mults)),
        ("model.blocks_per_level", c.blocks_per_level.to_string()),
        (
            "model.attention_resolutions",
            list(&c.attention_resolutions),
        ),
        ("model.groups", c.groups.to_string()),
        ("model.heads", c.heads.to_string()),
        (
            "model.num_classes",
            c.num_classes.map_or("none".into(), |n| n.to_string()),
        ),
        ("model.dropout", c.dropout.to_string()),
        ("model.norm_eps", c.conventions.norm_eps.to_string()),
        ("model.freq_shift", c.conventions.freq_shift.to_string()),
        (
            "model.downsample_padding",
            c.conventions.downsample_padding.to_string(),
        ),
        ("extra.dataset", r.dataset.clone()),
        ("extra.changes", r.changes.join("\n")),
    ]);
    if c.num_classes.is_some() {
        meta.insert("extra.class_names", r.class_names.join("\n"));
    }
    if let Some(scheduler) = &r.scheduler {
        meta.insert("extra.scheduler", scheduler.to_text());
    }
    for row in SETTINGS {
        if let Some(key) = row.key {
            meta.insert(key, row.store(&r.settings));
        }
    }
    meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A checkpoint's metadata as it is read: each key is taken once, so whatever is left at the end is a key this
/// version does not know. Every error names the key; `Error::data` adds the file.
struct Fields<'a> {
    path: &'a Path,
    meta: HashMap<String, String>,
}

impl Fields<'_> {
    fn error(&self, message: String) -> Error {
        Error::data(self.path, message)
    }

    fn take(&mut self, key: &str) -> Result<String> {
        self.meta
            .remove(key)
            .ok_or_else(|| self.error(format!("checkpoint metadata lacks {key:?}")))
    }

    /// `key` parsed as `what` (e.g. "a number").
    fn parse<T: std::str::FromStr>(&mut self, key: &str, what: &str) -> Result<T> {
        let text = self.take(key)?;
        text.parse().map_err(|_| {
            self.error(format!(
                "checkpoint metadata {key:?} is {text:?}, not {what}"
            ))
        })
    }

    /// `key` as a comma-separated list of numbers ("" for none).
    fn list(&mut self, key: &str) -> Result<Vec<usize>> {
        let text = self.take(key)?;
        if text.is_empty() {
            return Ok(Vec::new());
        }
        text.split(',')
            .map(|x| x.parse())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| {
                self.error(format!(
                    "checkpoint metadata {key:?} is {text:?}, not a list of numbers"
                ))
            })
    }

    /// `key` as a number in `bounds`: every size read from a file is bounded before anything is sized by it.
    fn bounded(&mut self, key: &str, bounds: std::ops::RangeInclusive<usize>) -> Result<usize> {
        let value = self.parse(key, "a number")?;
        self.check_bounds(key, value, &bounds)?;
        Ok(value)
    }

    fn check_bounds(
        &self,
        key: &str,
        value: usize,
        bounds: &std::ops::RangeInclusive<usize>,
    ) -> Result<()> {
        if bounds.contains(&value) {
            return Ok(());
        }
        Err(self.error(format!(
            "checkpoint metadata {key:?} is {value}, outside the bounds {}..={} this diffuse reads",
            bounds.start(),
            bounds.end()
        )))
    }

    /// `key` as a list of at most `len` numbers, each in `bounds`.
    fn bounded_list(
        &mut self,
        key: &str,
        len: std::ops::RangeInclusive<usize>,
        bounds: std::ops::RangeInclusive<usize>,
    ) -> Result<Vec<usize>> {
        let list = self.list(key)?;
        if !len.contains(&list.len()) {
            return Err(self.error(format!(
                "checkpoint metadata {key:?} has {} entries, outside the bounds {}..={} this diffuse reads",
                list.len(),
                len.start(),
                len.end()
            )));
        }
        for &value in &list {
            self.check_bounds(key, value, &bounds)?;
        }
        Ok(list)
    }

    /// The numerical conventions; a file that predates their keys was written by a diffuse that had only its own.
    fn conventions(&mut self) -> Result<Conventions> {
        let own = Conventions::default();
        let mut or_own = |key: &str, own: String| {
            if !self.meta.contains_key(key) {
                self.meta.insert(key.to_string(), own);
            }
        };
        or_own("model.norm_eps", own.norm_eps.to_string());
        or_own("model.freq_shift", own.freq_shift.to_string());
        or_own(
            "model.downsample_padding",
            own.downsample_padding.to_string(),
        );
        Ok(Conventions {
            norm_eps: self.parse("model.norm_eps", "a number")?,
            freq_shift: self.bounded("model.freq_shift", 0..=1)?,
            downsample_padding: self.bounded("model.downsample_padding", 0..=1)?,
        })
    }

    /// The model config, each field bounded (far above any preset) before the layout is sized by it, then
    /// validated as a whole.
    fn config(&mut self) -> Result<UNetConfig> {
        let num_classes = match self.take("model.num_classes")?.as_str() {
            "none" => None,
            text => {
                let n = text.parse().map_err(|_| {
                    self.error(format!(
                        "checkpoint metadata \"model.num_classes\" is {text:?}, not a number or \"none\""
                    ))
                })?;
                self.check_bounds("model.num_classes", n, &(1..=MAX_CLASSES))?;
                Some(n)
            }
        };
        let l = &crate::model::config::LIMITS;
        let config = UNetConfig {
            in_channels: self.bounded("model.in_channels", 1..=l.in_channels)?,
            image_size: self.bounded("model.image_size", 1..=l.image_size)?,
            base_channels: self.bounded("model.base_channels", 1..=l.base_channels)?,
            channel_mults: self.bounded_list(
                "model.channel_mults",
                1..=l.levels,
                1..=l.channel_mult,
            )?,
            blocks_per_level: self.bounded("model.blocks_per_level", 1..=l.blocks_per_level)?,
            attention_resolutions: self.bounded_list(
                "model.attention_resolutions",
                0..=l.attention_resolutions,
                1..=l.image_size,
            )?,
            groups: self.bounded("model.groups", 1..=l.base_channels)?,
            heads: self.bounded("model.heads", 1..=l.base_channels)?,
            num_classes,
            dropout: self.parse("model.dropout", "a number")?,
            conventions: self.conventions()?,
        };
        config.validate().map_err(|e| self.error(e.to_string()))?;
        Ok(config)
    }

    /// The recorded settings, each through its row of the settings table; a key a file predates takes the value
    /// every run had before the key existed.
    fn settings(&mut self, config: &UNetConfig) -> Result<TrainSettings> {
        let mut settings = TrainSettings::new(config.clone());
        for row in SETTINGS {
            let Some(key) = row.key else { continue };
            let text = match (self.meta.remove(key), row.before_key) {
                (Some(text), _) => text,
                (None, Some(text)) => text.to_string(),
                (None, None) => {
                    return Err(self.error(format!("checkpoint metadata lacks {key:?}")))
                }
            };
            row.load(&mut settings, &text)
                .map_err(|e| self.error(format!("checkpoint metadata {key:?} is {text:?}, {e}")))?;
        }
        // Each parameter read; together they must still make a process (σ_max above σ_min, …).
        settings.objective.validate().map_err(|e| {
            self.error(format!(
                "checkpoint metadata \"extra.objective\" is {:?}, {e}",
                settings.objective.to_string()
            ))
        })?;
        Ok(settings)
    }

    fn training(&mut self, config: &UNetConfig) -> Result<TrainingRecord> {
        let settings = self.settings(config)?;
        let changes = match self.meta.remove("extra.changes") {
            Some(text) => text.lines().map(str::to_string).collect(),
            None => Vec::new(),
        };
        let class_names = match config.num_classes {
            Some(_) => self
                .take("extra.class_names")?
                .lines()
                .map(str::to_string)
                .collect(),
            None => Vec::new(),
        };
        let scheduler = match self.meta.remove("extra.scheduler") {
            Some(text) => Some(SamplingDefaults::from_text(&text).map_err(|e| {
                self.error(format!(
                    "checkpoint metadata \"extra.scheduler\" is {text:?}: {e}"
                ))
            })?),
            None => None,
        };
        let record = TrainingRecord {
            settings,
            dataset: self.take("extra.dataset")?,
            changes,
            class_names,
            scheduler,
        };
        record
            .check(config)
            .map_err(|e| self.error(format!("checkpoint metadata \"extra.class_names\": {e}")))?;
        Ok(record)
    }

    /// Takes `format`, refusing a file of another format or none (a safetensors file that is no checkpoint).
    fn format(&mut self) -> Result<()> {
        match self.meta.remove("format") {
            Some(f) if f == FORMAT => Ok(()),
            Some(f) => Err(self.error(format!(
                "checkpoint format {f:?}; this diffuse reads {FORMAT:?}"
            ))),
            None => Err(self.error(
                "a safetensors file without diffuse's metadata: not a diffuse checkpoint".into(),
            )),
        }
    }

    /// Refuses keys nobody took: a newer diffuse's settings would otherwise be dropped without a word.
    fn finish(self) -> Result<()> {
        let mut unknown: Vec<&String> = self.meta.keys().collect();
        if unknown.is_empty() {
            return Ok(());
        }
        unknown.sort();
        let quoted: Vec<String> = unknown.iter().map(|k| format!("{k:?}")).collect();
        Err(self.error(format!(
            "unknown checkpoint metadata {}: written by another version of diffuse?",
            quoted.join(", ")
        )))
    }
}

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically: a temporary file beside it, flushed to disk, then renamed over
    /// `path`. An existing checkpoint at `path` stays intact until the new one is complete.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomically(path, &self.to_bytes()?)
    }

    /// The checkpoint as the bytes of a safetensors file (what [`Checkpoint::save`] writes; a page offers them
    /// for download).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let layout = ParamLayout::new(&self.config);
        let mut sets: Vec<(&str, &[f32])> = vec![("", &self.params), ("ema.", &self.ema)];
        if let Some((m, v)) = &self.adam {
            sets.push(("adam_m.", m));
            sets.push(("adam_v.", v));
        }
        let mut tensors = Vec::new();
        for (prefix, flat) in &sets {
            if flat.len() != layout.padded_len {
                return Err(Error::Usage(format!(
                    "internal: {prefix}params hold {} values, the layout needs {}",
                    flat.len(),
                    layout.padded_len
                )));
            }
            for p in &layout.params {
                let data: &[u8] = bytemuck::cast_slice(&flat[p.offset..p.offset + p.len()]);
                let view = TensorView::new(Dtype::F32, p.shape.clone(), data)
                    .map_err(|e| Error::Usage(format!("internal: tensor {}: {e}", p.name)))?;
                tensors.push((format!("{prefix}{}", p.name), view));
            }
        }
        self.training
            .check(&self.config)
            .map_err(|e| Error::Usage(format!("cannot record the training run: {e}")))?;
        let meta = to_metadata(self);
        safetensors::serialize(tensors, Some(meta))
            .map_err(|e| Error::Usage(format!("serialising the checkpoint: {e}")))
    }

    /// Reads a checkpoint, checking its format, every metadata key (none missing, none unknown), its config, and
    /// every tensor's presence and shape.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, path)
    }

    /// [`Checkpoint::load`] of a file's bytes held in memory (an upload); `path` names them in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
        let corrupt = |e: safetensors::SafeTensorError| {
            Error::data(
                path,
                format!("not a readable safetensors file (truncated or corrupt?): {e}"),
            )
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(corrupt)?;
        let mut fields = Fields {
            path,
            meta: header.metadata().clone().unwrap_or_default(),
        };
        fields.format()?;
        let config = fields.config()?;
        let training = fields.training(&config)?;
        let (step, rng_offset) = (
            fields.parse("step", "a number")?,
            fields.parse("rng_offset", "a number")?,
        );
        fields.finish()?;
        let layout = ParamLayout::new(&config);
        fits_in(&layout, bytes.len(), path)?;
        let tensors = safetensors::SafeTensors::deserialize(bytes).map_err(corrupt)?;
        let read_set = |prefix: &str| read_set(&tensors, &layout, prefix, path);
        let params = read_set("")?.expect("the model's own set is required");
        let ema = read_set("ema.")?
            .ok_or_else(|| Error::data(path, "the EMA weights (ema.*) are missing"))?;
        let adam = match (read_set("adam_m.")?, read_set("adam_v.")?) {
            (Some(m), Some(v)) => Some((m, v)),
            (None, None) => None,
            _ => {
                return Err(Error::data(
                    path,
                    "only one of Adam's moments (adam_m.*, adam_v.*) is present",
                ))
            }
        };
        Ok(Checkpoint {
            config,
            step,
            rng_offset,
            params,
            ema,
            adam,
            training,
        })
    }
}

/// The weights and the EMA are both in the file, so a config whose tensors could not fit in its `len` bytes is
/// damaged metadata: refused before anything is allocated, which bounds every allocation by the file's size.
fn fits_in(layout: &ParamLayout, len: usize, path: &Path) -> Result<()> {
    let values: u64 = layout.params.iter().map(|p| p.len() as u64).sum();
    let needed = values.saturating_mul(2 * 4);
    if needed <= len as u64 {
        return Ok(());
    }
    Err(Error::data(
        path,
        format!(
            "the config needs {values} parameters for the weights and the EMA ({needed} bytes), more than this \
             {len}-byte file holds: its metadata does not match its tensors, or is damaged"
        ),
    ))
}

/// The tensors named `prefix` + each parameter's name, flat in `layout`'s order; None if a prefixed set is absent
/// altogether (an optional set: the EMA's absence is the caller's error, Adam's moments may be absent).
fn read_set(
    tensors: &safetensors::SafeTensors,
    layout: &ParamLayout,
    prefix: &str,
    path: &Path,
) -> Result<Option<Vec<f32>>> {
    let mut flat = vec![0.0f32; layout.padded_len];
    for (i, p) in layout.params.iter().enumerate() {
        let name = format!("{prefix}{}", p.name);
        let view = match tensors.tensor(&name) {
            Ok(v) => v,
            Err(_) if i == 0 && !prefix.is_empty() => return Ok(None),
            Err(_) => return Err(Error::data(path, format!("tensor {name} is missing"))),
        };
        if view.dtype() != Dtype::F32 || view.shape() != p.shape.as_slice() {
            return Err(Error::data(
                path,
                format!(
                    "tensor {name} is {:?} {:?}; the config needs F32 {:?}",
                    view.dtype(),
                    view.shape(),
                    p.shape
                ),
            ));
        }
        for (dst, chunk) in flat[p.offset..p.offset + p.len()]
            .iter_mut()
            .zip(view.data().chunks_exact(4))
        {
            *dst = f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
    }
    Ok(Some(flat))
}

/// Writes `bytes` to a temporary file in `path`'s folder, syncs it, and renames it over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "checkpoint".into());
    let prefix = format!(".{name}.tmp-");
    // A save killed before its rename (SIGKILL, a power cut) leaves its temporary file: remove any, ours or not.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Persist the rename itself (the directory entry); not possible on every platform, so best effort.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}
