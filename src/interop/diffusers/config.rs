//! `unet/config.json` of a `UNet2DModel` → [`UNetConfig`]. Absent keys take `UNet2DModel.__init__`'s defaults as of
//! diffusers 0.42.1 (the version the fixtures were made with, tests/twin/diffusers_fixtures.py), which are not
//! DDPM's: an importer that assumed DDPM's would get the google models wrong. A value diffuse's network cannot
//! compute is refused by key and value.

use serde_json::{json, Value};

use super::json::Config;
use crate::error::Result;
use crate::model::{Conventions, UNetConfig};

/// `UNet2DModel`'s defaults for the keys that shape the network.
const DEFAULT_DOWN: [&str; 4] = [
    "DownBlock2D",
    "AttnDownBlock2D",
    "AttnDownBlock2D",
    "AttnDownBlock2D",
];
const DEFAULT_UP: [&str; 4] = [
    "AttnUpBlock2D",
    "AttnUpBlock2D",
    "AttnUpBlock2D",
    "UpBlock2D",
];
const DEFAULT_CHANNELS: [usize; 4] = [224, 448, 672, 896];
const DEFAULT_HEAD_DIM: usize = 8;

/// What the config says: diffuse's network, and whether the embedding is [sin, cos] (`flip_sin_to_cos` false),
/// which the importer turns into diffuse's [cos, sin] by permuting the first embedding layer's columns.
pub struct UNet2D {
    pub config: UNetConfig,
    pub sin_first: bool,
}

pub fn read(c: &Config) -> Result<UNet2D> {
    refuse_what_diffuse_lacks(c)?;
    let in_channels = c.uint("in_channels", Some(3))?.unwrap_or(0);
    let out_channels = c.uint("out_channels", Some(3))?.unwrap_or(0);
    if out_channels != in_channels {
        return Err(c.error(format!(
            "\"out_channels\" is {out_channels} with \"in_channels\" {in_channels}: diffuse's network predicts \
             as many channels as it reads (a learned variance, out_channels = 2 × in_channels, is not supported)"
        )));
    }
    let image_size = sample_size(c)?;
    let channels = c.uints("block_out_channels", &DEFAULT_CHANNELS)?;
    let base = channels.first().copied().unwrap_or(0);
    if base == 0 || channels.iter().any(|&ch| ch == 0 || ch % base != 0) {
        return Err(c.error(format!(
            "\"block_out_channels\" is {channels:?}: diffuse builds each level's channels as a multiple of the \
             first level's, so every entry must be a positive multiple of the first"
        )));
    }
    let attention = attention_levels(c, channels.len())?;
    let groups = c.uint("norm_num_groups", Some(32))?.ok_or_else(|| {
        c.error("\"norm_num_groups\" is null: diffuse's GroupNorms need a group count")
    })?;
    let config = UNetConfig {
        in_channels,
        image_size,
        base_channels: base,
        channel_mults: channels.iter().map(|ch| ch / base).collect(),
        blocks_per_level: c.uint("layers_per_block", Some(2))?.unwrap_or(0),
        attention_resolutions: attention.iter().map(|&l| image_size >> l).collect(),
        groups,
        heads: heads(c, &channels, &attention)?,
        num_classes: None,
        dropout: c.number("dropout", 0.0)? as f32,
        conventions: Conventions {
            norm_eps: c.number("norm_eps", 1e-5)? as f32,
            freq_shift: binary(c, "freq_shift", 0)?,
            downsample_padding: binary(c, "downsample_padding", 1)?,
        },
    };
    config.validate().map_err(|e| {
        c.error(format!(
            "the network it describes is not one diffuse builds: {e}"
        ))
    })?;
    Ok(UNet2D {
        config,
        sin_first: !c.boolean("flip_sin_to_cos", true)?,
    })
}

/// The keys whose other values change the network into one diffuse does not have.
fn refuse_what_diffuse_lacks(c: &Config) -> Result<()> {
    let rows: [(&str, Value, &[Value], &str); 12] = [
        ("center_input_sample", json!(false), &[json!(false)], "diffuse does not rescale its input"),
        (
            "time_embedding_type",
            json!("positional"),
            &[json!("positional")],
            "diffuse's embedding is the sinusoidal (positional) one",
        ),
        ("act_fn", json!("silu"), &[json!("silu"), json!("swish")], "diffuse's activation is SiLU"),
        (
            "mid_block_type",
            json!("UNetMidBlock2D"),
            &[json!("UNetMidBlock2D")],
            "diffuse's network has UNetMidBlock2D's middle (resnet, attention, resnet)",
        ),
        ("add_attention", json!(true), &[json!(true)], "diffuse's middle block always has attention"),
        (
            "mid_block_scale_factor",
            json!(1),
            &[json!(1), json!(1.0)],
            "diffuse's middle block does not rescale its output",
        ),
        (
            "resnet_time_scale_shift",
            json!("default"),
            &[json!("default")],
            "diffuse adds the time embedding (scale_shift is not supported)",
        ),
        ("downsample_type", json!("conv"), &[json!("conv")], "diffuse downsamples with a stride-2 convolution"),
        ("upsample_type", json!("conv"), &[json!("conv")], "diffuse upsamples by nearest ×2 and a convolution"),
        (
            "class_embed_type",
            Value::Null,
            &[Value::Null],
            "diffuse's class conditioning is a learned table (num_class_embeds)",
        ),
        (
            "num_class_embeds",
            Value::Null,
            &[Value::Null],
            "class-conditional diffusers models are not imported yet (their table has no \"no class\" row, \
             which diffuse's has)",
        ),
        ("time_embedding_dim", Value::Null, &[Value::Null], "diffuse's time embedding is 4 × the first level's channels"),
    ];
    for (key, default, allowed, why) in rows {
        c.only(key, &default, allowed, why)?;
    }
    // attn_norm_num_groups: null means norm_num_groups, the only count diffuse's attention norm takes.
    if let Some(g) = c.uint("attn_norm_num_groups", None)? {
        if Some(g) != c.uint("norm_num_groups", Some(32))? {
            return Err(c.error(format!(
                "\"attn_norm_num_groups\" is {g}: diffuse's attention GroupNorms have norm_num_groups groups"
            )));
        }
    }
    Ok(())
}

/// `sample_size`: a side, or [side, side].
fn sample_size(c: &Config) -> Result<usize> {
    let bad = |v: &Value| {
        c.error(format!(
            "\"sample_size\" is {v}: diffuse needs the square image side the model was trained at"
        ))
    };
    match c.get("sample_size") {
        None | Some(Value::Null) => Err(bad(&Value::Null)),
        Some(Value::Array(sides)) => match sides.as_slice() {
            [h, w] if h == w && h.as_u64().is_some() => Ok(h.as_u64().unwrap_or(0) as usize),
            _ => Err(bad(&Value::Array(sides.clone()))),
        },
        Some(_) => c
            .uint("sample_size", None)?
            .ok_or_else(|| bad(&Value::Null)),
    }
}

/// The levels with attention: the down blocks' attention mirrored by the up blocks', which diffuse's network
/// (attention at the same sides on the way down and up) requires.
fn attention_levels(c: &Config, levels: usize) -> Result<Vec<usize>> {
    let down = c.strings("down_block_types", &DEFAULT_DOWN)?;
    let up = c.strings("up_block_types", &DEFAULT_UP)?;
    if down.len() != levels || up.len() != levels {
        return Err(c.error(format!(
            "\"down_block_types\" ({}), \"up_block_types\" ({}) and \"block_out_channels\" ({levels}) must have \
             one entry per level",
            down.len(),
            up.len()
        )));
    }
    let kind = |key: &str, name: &str, plain: &str, attn: &str| match name {
        n if n == plain => Ok(false),
        n if n == attn => Ok(true),
        other => Err(c.error(format!(
            "\"{key}\" has {other:?}: diffuse builds {plain} and {attn} only"
        ))),
    };
    let mut attention = Vec::new();
    for level in 0..levels {
        let d = kind(
            "down_block_types",
            &down[level],
            "DownBlock2D",
            "AttnDownBlock2D",
        )?;
        let u = kind(
            "up_block_types",
            &up[levels - 1 - level],
            "UpBlock2D",
            "AttnUpBlock2D",
        )?;
        if d != u {
            return Err(c.error(format!(
                "level {level} has attention on one path only (down {:?}, up {:?}): diffuse's network has \
                 attention at the same levels on the way down and up",
                down[level],
                up[levels - 1 - level]
            )));
        }
        if d {
            attention.push(level);
        }
    }
    Ok(attention)
}

/// `attention_head_dim` (channels per head) as diffuse's one head count: null is one head at every attention
/// (UNet2DModel then uses the block's width), a number d gives C/d heads, which must be the same C/d at every
/// attention layer, the middle one included.
fn heads(c: &Config, channels: &[usize], attention: &[usize]) -> Result<usize> {
    let Some(d) = c.uint("attention_head_dim", Some(DEFAULT_HEAD_DIM))? else {
        return Ok(1);
    };
    let widths: Vec<usize> = attention
        .iter()
        .map(|&l| channels[l])
        .chain(channels.last().copied())
        .collect();
    let heads: Vec<usize> = widths.iter().map(|w| w / d.max(1)).collect();
    if d == 0 || widths.iter().any(|w| w % d != 0) || heads.iter().any(|&h| h != heads[0]) {
        return Err(c.error(format!(
            "\"attention_head_dim\" is {d} with attention at widths {widths:?}: diffuse takes one head count for \
             every attention layer, so each width must be the same multiple of it (or give null: one head)"
        )));
    }
    Ok(heads[0])
}

/// A key that is 0 or 1.
fn binary(c: &Config, key: &str, default: usize) -> Result<usize> {
    match c.uint(key, Some(default))? {
        Some(v @ (0 | 1)) => Ok(v),
        _ => Err(c.error(format!(
            "\"{key}\" is {}: diffuse computes 0 and 1",
            c.get(key).cloned().unwrap_or(Value::Null)
        ))),
    }
}
