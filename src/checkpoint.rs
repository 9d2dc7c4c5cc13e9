//! Checkpoints: safetensors files holding the model weights, the EMA weights, the optimizer state, and in the
//! metadata the step, the RNG state, the model config and the training settings. Tensor names follow PyTorch's
//! `state_dict` of the twin module (see docs/checkpoint.md): the model's own under their plain names
//! (`conv_in.weight`), the others behind a prefix (`ema.conv_in.weight`, `adam_m.…`, `adam_v.…`).
//! Files are written atomically (temporary file, fsync, rename), so a crash never leaves a torn checkpoint.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

use crate::error::{Error, Result};
use crate::model::{ParamLayout, UNetConfig};

/// Bumped when the layout of a checkpoint changes incompatibly.
pub const FORMAT: &str = "diffuse-checkpoint-1";

/// Everything a run needs to continue exactly where it stopped, or to sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub config: UNetConfig,
    /// Optimizer steps taken.
    pub step: u64,
    /// The run's RNG seed and the counter offset its next step starts from.
    pub seed: u64,
    pub rng_offset: u64,
    /// Model parameters, in the flat padded layout of `ParamLayout::new(&config)`.
    pub params: Vec<f32>,
    /// EMA of the parameters (same layout).
    pub ema: Vec<f32>,
    /// Adam's first and second moments (same layout); absent in a sampling-only checkpoint.
    pub adam: Option<(Vec<f32>, Vec<f32>)>,
    /// Other settings worth keeping (schedule, learning rate, dataset description, …), stored as metadata strings.
    pub extra: HashMap<String, String>,
}

fn config_to_metadata(c: &UNetConfig, meta: &mut HashMap<String, String>) {
    let list = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    meta.insert("model.in_channels".into(), c.in_channels.to_string());
    meta.insert("model.image_size".into(), c.image_size.to_string());
    meta.insert("model.base_channels".into(), c.base_channels.to_string());
    meta.insert("model.channel_mults".into(), list(&c.channel_mults));
    meta.insert(
        "model.blocks_per_level".into(),
        c.blocks_per_level.to_string(),
    );
    meta.insert(
        "model.attention_resolutions".into(),
        list(&c.attention_resolutions),
    );
    meta.insert("model.groups".into(), c.groups.to_string());
    meta.insert("model.heads".into(), c.heads.to_string());
    meta.insert(
        "model.num_classes".into(),
        c.num_classes.map_or("none".into(), |n| n.to_string()),
    );
    meta.insert("model.dropout".into(), c.dropout.to_string());
}

fn config_from_metadata(path: &Path, meta: &HashMap<String, String>) -> Result<UNetConfig> {
    let get = |k: &str| {
        meta.get(k).ok_or_else(|| {
            Error::data(
                path,
                format!("checkpoint metadata lacks {k:?}: not a diffuse checkpoint?"),
            )
        })
    };
    let num = |k: &str| -> Result<usize> {
        get(k)?
            .parse()
            .map_err(|_| Error::data(path, format!("checkpoint metadata {k:?} is not a number")))
    };
    let list = |k: &str| -> Result<Vec<usize>> {
        let s = get(k)?;
        if s.is_empty() {
            return Ok(Vec::new());
        }
        s.split(',')
            .map(|x| {
                x.parse().map_err(|_| {
                    Error::data(
                        path,
                        format!("checkpoint metadata {k:?} is not a list of numbers"),
                    )
                })
            })
            .collect()
    };
    let config = UNetConfig {
        in_channels: num("model.in_channels")?,
        image_size: num("model.image_size")?,
        base_channels: num("model.base_channels")?,
        channel_mults: list("model.channel_mults")?,
        blocks_per_level: num("model.blocks_per_level")?,
        attention_resolutions: list("model.attention_resolutions")?,
        groups: num("model.groups")?,
        heads: num("model.heads")?,
        num_classes: match get("model.num_classes")?.as_str() {
            "none" => None,
            _ => Some(num("model.num_classes")?),
        },
        dropout: get("model.dropout")?.parse().map_err(|_| {
            Error::data(
                path,
                "checkpoint metadata \"model.dropout\" is not a number",
            )
        })?,
    };
    config
        .validate()
        .map_err(|e| Error::data(path, e.to_string()))?;
    Ok(config)
}

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically: a temporary file beside it, flushed to disk, then renamed over
    /// `path`. An existing checkpoint at `path` stays intact until the new one is complete.
    pub fn save(&self, path: &Path) -> Result<()> {
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
        let mut meta = HashMap::new();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("step".into(), self.step.to_string());
        meta.insert("seed".into(), self.seed.to_string());
        meta.insert("rng_offset".into(), self.rng_offset.to_string());
        config_to_metadata(&self.config, &mut meta);
        for (k, v) in &self.extra {
            meta.insert(format!("extra.{k}"), v.clone());
        }
        let bytes = safetensors::serialize(tensors, Some(meta))
            .map_err(|e| Error::Usage(format!("serialising the checkpoint: {e}")))?;
        write_atomically(path, &bytes)
    }

    /// Reads a checkpoint, checking its format, config and every tensor's presence and shape.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let corrupt = |e: safetensors::SafeTensorError| {
            Error::data(
                path,
                format!("not a readable safetensors file (truncated or corrupt?): {e}"),
            )
        };
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(corrupt)?;
        let meta = header.metadata().clone().unwrap_or_default();
        match meta.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => {
                return Err(Error::data(
                    path,
                    format!("checkpoint format {f:?}; this diffuse reads {FORMAT:?}"),
                ))
            }
            None => {
                return Err(Error::data(
                    path,
                    "a safetensors file without diffuse's metadata: not a diffuse checkpoint",
                ))
            }
        }
        let config = config_from_metadata(path, &meta)?;
        let number = |k: &str| -> Result<u64> {
            meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                Error::data(
                    path,
                    format!("checkpoint metadata {k:?} is missing or not a number"),
                )
            })
        };
        let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(corrupt)?;
        let layout = ParamLayout::new(&config);
        let read_set = |prefix: &str| -> Result<Option<Vec<f32>>> {
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
        };
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
        let extra = meta
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("extra.").map(|k| (k.to_string(), v.clone())))
            .collect();
        Ok(Checkpoint {
            config,
            step: number("step")?,
            seed: number("seed")?,
            rng_offset: number("rng_offset")?,
            params,
            ema,
            adam,
            extra,
        })
    }
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
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
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
