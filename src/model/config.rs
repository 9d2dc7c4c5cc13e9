//! The U-Net's configuration and its named presets.

use crate::error::{Error, Result};

/// improved-diffusion's `max_period`: the longest wavelength of the timestep embedding, in timesteps. A fixed part of
/// the architecture (not a [`UNetConfig`] field): the GPU net (`model/unet.rs`) and its CPU reference
/// (`reference/unet.rs`) both embed with it; the embedding kernel and its reference take the period as an argument.
pub const DEFAULT_MAX_PERIOD: f64 = 10_000.0;

/// The DDPM U-Net of Ho et al. 2020, as configured (see `model/params.rs` for the layers this implies).
#[derive(Clone, Debug, PartialEq)]
pub struct UNetConfig {
    /// Image channels: 1 (grayscale) or 3 (RGB).
    pub in_channels: usize,
    /// Square image side in pixels; must be divisible by 2^(levels − 1).
    pub image_size: usize,
    /// Channels of the first level ("ch"); the time embedding has 4·ch.
    pub base_channels: usize,
    /// Channel multiplier of each level; the number of levels is its length.
    pub channel_mults: Vec<usize>,
    /// Residual blocks per level on the way down (the way up has one more, for the extra skip).
    pub blocks_per_level: usize,
    /// Feature-map sides at which self-attention follows the residual blocks (e.g. 7 for 28×28 inputs).
    pub attention_resolutions: Vec<usize>,
    /// GroupNorm groups; must divide every channel count.
    pub groups: usize,
    /// Attention heads; must divide the channel count where attention is used.
    pub heads: usize,
    /// Number of classes for class conditioning (a learned embedding with one extra "no class" entry, for
    /// classifier-free guidance); None for an unconditional model.
    pub num_classes: Option<usize>,
    /// Dropout probability inside residual blocks (0 disables it).
    pub dropout: f32,
    /// The numerical conventions that differ between ports of the same network (diffuse's own by default).
    pub conventions: Conventions,
}

/// Where ports of Ho et al.'s network differ in the arithmetic while agreeing on the parameters: diffuse trains
/// with PyTorch's and improved-diffusion's choices; the google/ddpm-* checkpoints keep Ho et al.'s TensorFlow ones
/// (`crate::interop::diffusers` reads them from a `UNet2DModel` config). The sin/cos order of the embedding is not
/// here: an importer permutes the first embedding layer's columns instead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conventions {
    /// ε of every GroupNorm (PyTorch's 1e-5; Ho et al.'s 1e-6).
    pub norm_eps: f32,
    /// The timestep embedding's frequencies are exp(−ln(10⁴)·i/(half − freq_shift)): 0 here and in
    /// improved-diffusion, 1 in Ho et al. (`diffusers`' `freq_shift`).
    pub freq_shift: usize,
    /// The stride-2 convolutions' padding: 1 on every side (PyTorch's, ⌈H/2⌉ outputs), or 0 after one row and
    /// column of zeros at the bottom and right (TensorFlow's "SAME" for even sides, Ho et al.'s; `diffusers`'
    /// `downsample_padding`).
    pub downsample_padding: usize,
}

impl Default for Conventions {
    fn default() -> Conventions {
        Conventions {
            norm_eps: 1e-5,
            freq_shift: 0,
            downsample_padding: 1,
        }
    }
}

/// The named model sizes: what `diffuse train --preset` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    Tiny,
    Small,
    Medium,
    Rgb32,
    Rgb64,
    Rgb128,
}

impl Preset {
    /// Every preset, in declaration order (so that `NAMES[p as usize]` is `p`'s).
    pub const ALL: [Preset; 6] = [
        Preset::Tiny,
        Preset::Small,
        Preset::Medium,
        Preset::Rgb32,
        Preset::Rgb64,
        Preset::Rgb128,
    ];
    /// Each preset's name and what it is: the one table of both.
    pub const NAMES: [(&'static str, &'static str); 6] = [
        ("tiny", "28×28×1, ch 8, ×1,2, attention at 14×14: 45 k parameters, for smoke tests and quick tries"),
        ("small", "28×28×1, ch 32, ×1,2,2, 1 block, attention at 7×7, 8 groups: 1,112,801 parameters"),
        ("medium", "The same with ch 64, 2 blocks, 16 groups: 6,469,889 parameters"),
        ("rgb32", "32×32×3, ch 64, ×1,2,2,2, 2 blocks, attention at 16×16, 16 groups"),
        (
            "rgb64",
            "64×64×3: Ho et al. 2020's CIFAR-10 network (ch 128, ×1,2,2,2, 2 blocks, attention at 16×16, 32 \
             groups): 35,746,307 parameters",
        ),
        (
            "rgb128",
            "128×128×3: Ho et al. 2020's 256×256 network (ch 128, ×1,1,2,2,4,4, 2 blocks, attention at 16×16, 32 \
             groups): 109,733,379 parameters",
        ),
    ];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize].0
    }

    pub fn from_name(name: &str) -> Option<Preset> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// `--preset`'s choices, from [`Preset::NAMES`].
#[cfg(feature = "cli")]
impl clap::ValueEnum for Preset {
    fn value_variants<'a>() -> &'a [Self] {
        &Preset::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = Preset::NAMES[*self as usize];
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}

impl Preset {
    pub fn config(self) -> UNetConfig {
        let base = UNetConfig {
            in_channels: 1,
            image_size: 28,
            base_channels: 32,
            channel_mults: vec![1, 2, 2],
            blocks_per_level: 1,
            attention_resolutions: vec![7],
            groups: 8,
            heads: 1,
            num_classes: None,
            dropout: 0.0,
            conventions: Conventions::default(),
        };
        match self {
            // For smoke tests and quick experiments on a CPU adapter: every kind of layer, a fraction of the cost.
            Preset::Tiny => UNetConfig {
                base_channels: 8,
                channel_mults: vec![1, 2],
                attention_resolutions: vec![14],
                groups: 4,
                ..base
            },
            Preset::Small => base,
            Preset::Medium => UNetConfig {
                base_channels: 64,
                blocks_per_level: 2,
                groups: 16,
                ..base
            },
            Preset::Rgb32 => UNetConfig {
                in_channels: 3,
                image_size: 32,
                base_channels: 64,
                channel_mults: vec![1, 2, 2, 2],
                blocks_per_level: 2,
                attention_resolutions: vec![16],
                groups: 16,
                ..base
            },
            // Ho et al. (2020), appendix B: their CIFAR-10 model, here on 64×64 images (one more halving of the
            // input before the same four levels would change the network; the levels run at 64, 32, 16, 8).
            Preset::Rgb64 => UNetConfig {
                in_channels: 3,
                image_size: 64,
                base_channels: 128,
                channel_mults: vec![1, 2, 2, 2],
                blocks_per_level: 2,
                attention_resolutions: vec![16],
                groups: 32,
                ..base
            },
            // Ho et al. (2020): their CelebA-HQ/LSUN 256×256 model's six levels, here on 128×128 images (levels at
            // 128 … 4, attention at 16×16 as theirs).
            Preset::Rgb128 => UNetConfig {
                in_channels: 3,
                image_size: 128,
                base_channels: 128,
                channel_mults: vec![1, 1, 2, 2, 4, 4],
                blocks_per_level: 2,
                attention_resolutions: vec![16],
                groups: 32,
                ..base
            },
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The largest value of each size a model may have: far above any preset, and the same bounds for what `train`
/// accepts and what the checkpoint reader accepts (which checks them before it sizes anything by them), so every
/// model that trains can be read back.
pub struct Limits {
    pub in_channels: usize,
    pub image_size: usize,
    /// Also the most groups and heads.
    pub base_channels: usize,
    pub levels: usize,
    pub channel_mult: usize,
    pub blocks_per_level: usize,
    pub attention_resolutions: usize,
}

pub const LIMITS: Limits = Limits {
    in_channels: 16,
    image_size: 4096,
    base_channels: 4096,
    levels: 8,
    channel_mult: 64,
    blocks_per_level: 64,
    attention_resolutions: 8,
};

impl UNetConfig {
    /// (what, value, limit) of every bounded size, as `validate` names them.
    fn sizes(&self) -> Vec<(&'static str, usize, usize)> {
        let l = &LIMITS;
        let mut sizes = vec![
            (
                "image channels (--channels)",
                self.in_channels,
                l.in_channels,
            ),
            ("image size (--image-size)", self.image_size, l.image_size),
            (
                "base channels (--base-channels)",
                self.base_channels,
                l.base_channels,
            ),
            ("groups (--groups)", self.groups, l.base_channels),
            ("heads (--heads)", self.heads, l.base_channels),
            (
                "levels (--channel-mults)",
                self.channel_mults.len(),
                l.levels,
            ),
            (
                "blocks per level (--blocks-per-level)",
                self.blocks_per_level,
                l.blocks_per_level,
            ),
            (
                "attention resolutions (--attention-resolutions)",
                self.attention_resolutions.len(),
                l.attention_resolutions,
            ),
        ];
        sizes.extend(
            self.channel_mults
                .iter()
                .map(|&m| ("channel multiplier", m, l.channel_mult)),
        );
        sizes.extend(
            self.attention_resolutions
                .iter()
                .map(|&r| ("attention resolution", r, l.image_size)),
        );
        sizes
    }

    /// Where this configuration (a checkpoint's) differs from `asked`, each as its `diffuse train` flag with both
    /// values, "--base-channels (checkpoint 8, asked 32)": what a refused `--resume` says, in the user's terms.
    pub fn differences(&self, asked: &UNetConfig) -> Vec<String> {
        let list = |v: &[usize]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let classes = |c: Option<usize>| c.map_or("none".to_string(), |n| n.to_string());
        let fields = [
            (
                "--image-size",
                self.image_size.to_string(),
                asked.image_size.to_string(),
            ),
            (
                "--channels",
                self.in_channels.to_string(),
                asked.in_channels.to_string(),
            ),
            (
                "--base-channels",
                self.base_channels.to_string(),
                asked.base_channels.to_string(),
            ),
            (
                "--channel-mults",
                list(&self.channel_mults),
                list(&asked.channel_mults),
            ),
            (
                "--blocks-per-level",
                self.blocks_per_level.to_string(),
                asked.blocks_per_level.to_string(),
            ),
            (
                "--attention-resolutions",
                list(&self.attention_resolutions),
                list(&asked.attention_resolutions),
            ),
            (
                "--groups",
                self.groups.to_string(),
                asked.groups.to_string(),
            ),
            ("--heads", self.heads.to_string(), asked.heads.to_string()),
            (
                "--class-conditional (classes)",
                classes(self.num_classes),
                classes(asked.num_classes),
            ),
            (
                "--dropout",
                self.dropout.to_string(),
                asked.dropout.to_string(),
            ),
            (
                "the numerical conventions (an imported model's)",
                self.conventions.to_string(),
                asked.conventions.to_string(),
            ),
        ];
        fields
            .into_iter()
            .filter(|(_, mine, theirs)| mine != theirs)
            .map(|(flag, mine, theirs)| format!("{flag} (checkpoint {mine}, asked {theirs})"))
            .collect()
    }

    /// The preset called `name` (see [`Preset`]).
    pub fn preset(name: &str) -> Result<UNetConfig> {
        let preset = Preset::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Preset::NAMES.iter().map(|(name, _)| *name).collect();
            Error::Usage(format!(
                "unknown preset {name:?}; the presets are {}",
                names.join(", ")
            ))
        })?;
        let config = preset.config();
        config.validate()?;
        Ok(config)
    }

    /// Width of the time embedding (4·ch, as in Ho et al.).
    pub fn time_embed_dim(&self) -> usize {
        4 * self.base_channels
    }

    /// Checks that the configuration describes a buildable network that a checkpoint can hold (within
    /// [`LIMITS`]); the message says what to change.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Usage(format!("invalid model configuration: {m}")));
        for (what, value, limit) in self.sizes() {
            if value > limit {
                return bad(format!(
                    "{what} {value} is past the most a checkpoint holds ({limit}); give at most {limit}"
                ));
            }
        }
        if self.in_channels == 0 || self.base_channels == 0 || self.channel_mults.is_empty() {
            return bad(
                "--channels and --base-channels must be positive and --channel-mults non-empty"
                    .into(),
            );
        }
        if self.channel_mults.contains(&0)
            || self.blocks_per_level == 0
            || self.groups == 0
            || self.heads == 0
        {
            return bad(
                "--channel-mults, --blocks-per-level, --groups and --heads must be ≥ 1".into(),
            );
        }
        let down = 1 << (self.channel_mults.len() - 1);
        if self.image_size == 0 || !self.image_size.is_multiple_of(down) {
            return bad(format!(
                "--image-size {} must be divisible by {down} (2^(levels − 1) for the {} levels of --channel-mults)",
                self.image_size,
                self.channel_mults.len()
            ));
        }
        for &m in &self.channel_mults {
            let c = self.base_channels * m;
            if !c.is_multiple_of(self.groups) {
                return bad(format!(
                    "--groups {} must divide every channel count (--base-channels × each multiplier), not {c}",
                    self.groups
                ));
            }
            if !c.is_multiple_of(self.heads) {
                return bad(format!(
                    "--heads {} must divide every channel count (--base-channels × each multiplier), not {c}",
                    self.heads
                ));
            }
        }
        let sides: Vec<usize> = (0..self.channel_mults.len())
            .map(|level| self.image_size >> level)
            .collect();
        if let Some(r) = self
            .attention_resolutions
            .iter()
            .find(|r| !sides.contains(r))
        {
            return bad(format!(
                "--attention-resolutions {r} is not the side of any level's feature map: give some of {sides:?}"
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("--dropout {} must lie in [0, 1)", self.dropout));
        }
        self.conventions
            .validate()
            .map_err(|m| Error::Usage(format!("invalid model configuration: {m}")))
    }
}

impl std::fmt::Display for Conventions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GroupNorm ε {:e}, frequency shift {}, downsampling padding {}",
            self.norm_eps, self.freq_shift, self.downsample_padding
        )
    }
}

impl Conventions {
    fn validate(&self) -> std::result::Result<(), String> {
        let c = self;
        if !(c.norm_eps.is_finite() && c.norm_eps > 0.0) {
            return Err(format!(
                "GroupNorm ε {} must be positive and finite",
                c.norm_eps
            ));
        }
        if c.freq_shift > 1 || c.downsample_padding > 1 {
            return Err(format!(
                "the embedding's frequency shift ({}) and the downsampling's padding ({}) are each 0 or 1",
                c.freq_shift, c.downsample_padding
            ));
        }
        Ok(())
    }
}
