//! diffuse's parameter names ↔ `UNet2DModel`'s state-dict names. The networks are the same, so the mapping is a
//! renaming, plus three rearrangements: diffuse's attention holds q, k and v as one 1×1 convolution [3C, C, 1, 1]
//! where diffusers has three linears [C, C] (stacked in the order q, k, v: diffuse's heads take the same channel
//! ranges), its 1×1 convolutions are diffusers' linears, and a [sin, cos] embedding (`flip_sin_to_cos` false)
//! reaches diffuse's [cos, sin] with the two column halves of the first embedding layer swapped.

/// Where a diffuse parameter's values come from in a diffusers state dict.
#[derive(Debug, PartialEq)]
pub enum Source {
    /// One tensor of the same number of values (a linear for a 1×1 convolution).
    Tensor(String),
    /// q, k and v, stacked along the first axis.
    Stacked([String; 3]),
}

/// The attention projections' names, current and as the 2022 uploads spell them (diffusers renames those on load).
pub const ATTENTION_NAMES: [(&str, &str); 4] = [
    ("to_q", "query"),
    ("to_k", "key"),
    ("to_v", "value"),
    ("to_out.0", "proj_attn"),
];

/// The diffusers name(s) of diffuse parameter `name` in a network of `blocks` residual blocks per level.
pub fn source(name: &str, blocks: usize) -> Source {
    let (layer, leaf) = name
        .rsplit_once('.')
        .expect("parameter names end in .weight or .bias");
    let (block, sub) = split_block(layer);
    let to = mapped_block(block, blocks);
    let joined = |sub: &str| format!("{to}.{sub}.{leaf}");
    match sub {
        None => Source::Tensor(format!("{to}.{leaf}")),
        Some("qkv") => Source::Stacked(["to_q", "to_k", "to_v"].map(joined)),
        Some(sub) => Source::Tensor(joined(match sub {
            "temb" => "time_emb_proj",
            "skip" => "conv_shortcut",
            "norm" => "group_norm",
            "proj" => "to_out.0",
            same => same,
        })),
    }
}

/// ("down.3.0", Some("conv1")) from "down.3.0.conv1": a block's prefix and the layer inside it, if any.
fn split_block(layer: &str) -> (&str, Option<&str>) {
    let parts: Vec<&str> = layer.split('.').collect();
    match parts[0] {
        "down" | "up" if parts.len() > 3 => {
            (&layer[..layer.len() - parts[3].len() - 1], Some(parts[3]))
        }
        "mid" if parts.len() > 2 => (&layer[..layer.len() - parts[2].len() - 1], Some(parts[2])),
        _ => (layer, None),
    }
}

/// The diffusers module of a diffuse block or top-level layer (src/model/params.rs names them).
fn mapped_block(block: &str, blocks: usize) -> String {
    let parts: Vec<&str> = block.split('.').collect();
    let index = |i: usize| parts[i].parse::<usize>().expect("a numbered block");
    match parts[0] {
        "down" => {
            let (level, j) = (index(1) / (blocks + 1), index(1) % (blocks + 1));
            match (j == blocks, parts[2]) {
                (true, _) => format!("down_blocks.{level}.downsamplers.0.conv"),
                (false, "0") => format!("down_blocks.{level}.resnets.{j}"),
                _ => format!("down_blocks.{level}.attentions.{j}"),
            }
        }
        "up" => {
            let (level, j) = (index(1) / (blocks + 2), index(1) % (blocks + 2));
            match (j == blocks + 1, parts[2]) {
                (true, _) => format!("up_blocks.{level}.upsamplers.0.conv"),
                (false, "0") => format!("up_blocks.{level}.resnets.{j}"),
                _ => format!("up_blocks.{level}.attentions.{j}"),
            }
        }
        "mid" => match parts[1] {
            "0" => "mid_block.resnets.0".into(),
            "1" => "mid_block.attentions.0".into(),
            _ => "mid_block.resnets.1".into(),
        },
        "temb" if parts[1] == "0" => "time_embedding.linear_1".into(),
        "temb" => "time_embedding.linear_2".into(),
        "out" if parts[1] == "0" => "conv_norm_out".into(),
        "out" => "conv_out".into(),
        "class_emb" => "class_embedding".into(),
        _ => block.to_string(),
    }
}

/// The current spelling of a state-dict name that may use the 2022 attention names.
pub fn current_name(name: &str) -> String {
    let Some((module, leaf)) = name.rsplit_once('.') else {
        return name.to_string();
    };
    for (new, old) in ATTENTION_NAMES {
        if let Some(attention) = module.strip_suffix(&format!(".{old}")) {
            if attention.contains("attentions.") {
                return format!("{attention}.{new}.{leaf}");
            }
        }
    }
    name.to_string()
}

/// Swaps the two column halves of a [rows, 2·half] row-major matrix: [sin | cos] inputs ↔ [cos | sin].
pub fn swap_column_halves(values: &mut [f32], cols: usize) {
    let half = cols / 2;
    for row in values.chunks_mut(cols) {
        let (a, b) = row.split_at_mut(half);
        a.swap_with_slice(&mut b[..half]);
    }
}
