//! The U-Net's layers and parameter layout. Parameter names and shapes follow PyTorch's `state_dict` of the twin
//! module in `shared/bench/torch_baseline.py` (conv weight [out, in, kh, kw], linear weight [out, in]), so a
//! checkpoint loads into PyTorch by name. All parameters live in one flat f32 buffer, each tensor starting at a
//! multiple of 64 elements (256 bytes, the binding alignment) so that kernels can bind it as a view.

use crate::model::config::UNetConfig;

/// One block of the network, in execution order.
#[derive(Clone, Debug, PartialEq)]
pub enum Block {
    /// GroupNorm → SiLU → conv3×3 (+ time embedding) → GroupNorm → SiLU → dropout → conv3×3, plus the skip (a 1×1
    /// conv when channels change). Up-path blocks take the concatenation [h; skip], so their c_in includes it.
    Res {
        prefix: String,
        c_in: usize,
        c_out: usize,
        resolution: usize,
    },
    /// GroupNorm → 1×1 conv to q, k, v → softmax(qkᵀ/√d)·v → 1×1 conv, added to the input.
    Attention {
        prefix: String,
        channels: usize,
        resolution: usize,
    },
    /// Stride-2 conv3×3 (resolution halves).
    Downsample {
        prefix: String,
        channels: usize,
        resolution: usize,
    },
    /// Nearest ×2 upsampling → conv3×3 (resolution doubles).
    Upsample {
        prefix: String,
        channels: usize,
        resolution: usize,
    },
}

/// The blocks of the down path, the middle and the up path, with the channel count of every skip the down path
/// saves (consumed in reverse by the up path's residual blocks).
#[derive(Clone, Debug)]
pub struct Architecture {
    pub down: Vec<Block>,
    pub middle: Vec<Block>,
    pub up: Vec<Block>,
    pub skip_channels: Vec<usize>,
    /// Channels entering the output GroupNorm.
    pub out_channels: usize,
}

impl Architecture {
    pub fn new(config: &UNetConfig) -> Architecture {
        let down = DownPath::new(config);
        let (mut cur, res) = (down.channels, down.resolution);
        let middle = vec![
            Block::Res {
                prefix: "mid.0".into(),
                c_in: cur,
                c_out: cur,
                resolution: res,
            },
            Block::Attention {
                prefix: "mid.1".into(),
                channels: cur,
                resolution: res,
            },
            Block::Res {
                prefix: "mid.2".into(),
                c_in: cur,
                c_out: cur,
                resolution: res,
            },
        ];
        let skip_channels = down.skips.clone();
        let up = up_path(config, down.skips, &mut cur, res);
        Architecture {
            down: down.blocks,
            middle,
            up,
            skip_channels,
            out_channels: cur,
        }
    }
}

/// The down path and where it leaves off, which the middle and the up path continue from.
struct DownPath {
    blocks: Vec<Block>,
    /// The channel count of every skip the down path saves, the stem's first.
    skips: Vec<usize>,
    /// Channels and resolution at the bottom of the path.
    channels: usize,
    resolution: usize,
}

impl DownPath {
    /// Builds the down path: per level, residual blocks (with attention at the chosen resolutions), then a
    /// downsample on every level but the last.
    fn new(config: &UNetConfig) -> DownPath {
        let ch = config.base_channels;
        let levels = config.channel_mults.len();
        let mut res = config.image_size;
        let mut cur = ch;
        let mut skips = vec![ch];
        let mut down = Vec::new();
        let mut index = 0;
        for (level, &mult) in config.channel_mults.iter().enumerate() {
            for _ in 0..config.blocks_per_level {
                let c_out = ch * mult;
                push_res(config, &mut down, &format!("down.{index}"), cur, c_out, res);
                cur = c_out;
                skips.push(cur);
                index += 1;
            }
            if level + 1 != levels {
                down.push(Block::Downsample {
                    prefix: format!("down.{index}.0"),
                    channels: cur,
                    resolution: res,
                });
                skips.push(cur);
                res /= 2;
                index += 1;
            }
        }
        DownPath {
            blocks: down,
            skips,
            channels: cur,
            resolution: res,
        }
    }
}

/// Builds the up path from the bottom (`cur` channels at `res`), each residual block taking one of `skips` from
/// the end; leaves in `cur` the channels it ends with.
fn up_path(
    config: &UNetConfig,
    mut skips: Vec<usize>,
    cur: &mut usize,
    mut res: usize,
) -> Vec<Block> {
    let ch = config.base_channels;
    let mut up = Vec::new();
    let mut index = 0;
    for (level, &mult) in config.channel_mults.iter().enumerate().rev() {
        for _ in 0..=config.blocks_per_level {
            let c_out = ch * mult;
            let skip = skips.pop().expect("one skip per up block");
            push_res(
                config,
                &mut up,
                &format!("up.{index}"),
                *cur + skip,
                c_out,
                res,
            );
            *cur = c_out;
            index += 1;
        }
        if level != 0 {
            up.push(Block::Upsample {
                prefix: format!("up.{index}.1"),
                channels: *cur,
                resolution: res,
            });
            res *= 2;
            index += 1;
        }
    }
    up
}

/// Appends residual block `{slot}.0`, and attention block `{slot}.1` where `res` is an attention resolution: the
/// unit both paths repeat.
fn push_res(
    config: &UNetConfig,
    blocks: &mut Vec<Block>,
    slot: &str,
    c_in: usize,
    c_out: usize,
    res: usize,
) {
    blocks.push(Block::Res {
        prefix: format!("{slot}.0"),
        c_in,
        c_out,
        resolution: res,
    });
    if config.attention_resolutions.contains(&res) {
        blocks.push(Block::Attention {
            prefix: format!("{slot}.1"),
            channels: c_out,
            resolution: res,
        });
    }
}

/// One named parameter tensor and where it lives in the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    /// Element offset in the flat buffer (a multiple of [`ALIGN`]).
    pub offset: usize,
}

impl ParamSpec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Elements between tensor starts are rounded up to this (256 bytes: the storage-binding offset alignment).
pub const ALIGN: usize = 64;

/// Every parameter of a configuration, in PyTorch `state_dict` order, with its flat-buffer offset.
#[derive(Clone, Debug)]
pub struct ParamLayout {
    pub params: Vec<ParamSpec>,
    /// Length of the flat buffer, padding included.
    pub padded_len: usize,
}

impl ParamLayout {
    pub fn new(config: &UNetConfig) -> ParamLayout {
        let ch = config.base_channels;
        let tdim = config.time_embed_dim();
        let mut named = Named::default();
        named.linear("temb.0", tdim, ch);
        named.linear("temb.2", tdim, tdim);
        named.conv("conv_in", ch, config.in_channels, 3);
        let arch = Architecture::new(config);
        for block in arch.down.iter().chain(&arch.middle).chain(&arch.up) {
            named.block(block, tdim);
        }
        named.norm("out.0", arch.out_channels);
        named.conv("out.2", config.in_channels, arch.out_channels, 3);
        if let Some(classes) = config.num_classes {
            // Row `classes` is the "no class" embedding used for classifier-free guidance.
            named.add("class_emb.weight".into(), &[classes + 1, tdim]);
        }
        named.place()
    }

    /// The number of parameters (padding excluded), as PyTorch would count them.
    pub fn count(&self) -> usize {
        self.params.iter().map(ParamSpec::len).sum()
    }

    pub fn get(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// The parameters' names and shapes in `state_dict` order, gathered layer by layer before they get offsets.
#[derive(Default)]
struct Named(Vec<(String, Vec<usize>)>);

impl Named {
    fn add(&mut self, name: String, shape: &[usize]) {
        self.0.push((name, shape.to_vec()));
    }

    /// A conv layer's weight [co, ci, k, k] and bias [co].
    fn conv(&mut self, p: &str, co: usize, ci: usize, k: usize) {
        self.add(format!("{p}.weight"), &[co, ci, k, k]);
        self.add(format!("{p}.bias"), &[co]);
    }

    /// A GroupNorm's γ (`weight`) and β (`bias`), one per channel.
    fn norm(&mut self, p: &str, c: usize) {
        self.add(format!("{p}.weight"), &[c]);
        self.add(format!("{p}.bias"), &[c]);
    }

    /// A linear layer's weight [o, i] and bias [o].
    fn linear(&mut self, p: &str, o: usize, i: usize) {
        self.add(format!("{p}.weight"), &[o, i]);
        self.add(format!("{p}.bias"), &[o]);
    }

    /// One block's layers, in the order its PyTorch twin registers them.
    fn block(&mut self, block: &Block, tdim: usize) {
        match block {
            Block::Res {
                prefix,
                c_in,
                c_out,
                ..
            } => {
                self.norm(&format!("{prefix}.norm1"), *c_in);
                self.conv(&format!("{prefix}.conv1"), *c_out, *c_in, 3);
                self.linear(&format!("{prefix}.temb"), *c_out, tdim);
                self.norm(&format!("{prefix}.norm2"), *c_out);
                self.conv(&format!("{prefix}.conv2"), *c_out, *c_out, 3);
                if c_in != c_out {
                    self.conv(&format!("{prefix}.skip"), *c_out, *c_in, 1);
                }
            }
            Block::Attention {
                prefix, channels, ..
            } => {
                self.norm(&format!("{prefix}.norm"), *channels);
                self.conv(&format!("{prefix}.qkv"), 3 * channels, *channels, 1);
                self.conv(&format!("{prefix}.proj"), *channels, *channels, 1);
            }
            Block::Downsample {
                prefix, channels, ..
            }
            | Block::Upsample {
                prefix, channels, ..
            } => {
                self.conv(prefix, *channels, *channels, 3);
            }
        }
    }

    /// Gives each tensor its offset, every start rounded up to [`ALIGN`] so kernels can bind it as a view.
    fn place(self) -> ParamLayout {
        let mut offset = 0;
        let params = self
            .0
            .into_iter()
            .map(|(name, shape)| {
                let spec = ParamSpec {
                    name,
                    shape,
                    offset,
                };
                offset += spec.len().div_ceil(ALIGN) * ALIGN;
                spec
            })
            .collect();
        ParamLayout {
            params,
            padded_len: offset,
        }
    }
}

/// SplitMix64: a small, well-mixed generator for host-side draws that happen once (initialisation, the timesteps
/// `diffuse eval` picks); per-step draws run on the GPU (Philox).
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [−1, 1).
    pub fn symmetric(&mut self) -> f64 {
        self.unit() * 2.0 - 1.0
    }
}

impl ParamLayout {
    /// Initial parameters (flat, padded), deterministic in `seed`: PyTorch's defaults for Conv2d and Linear
    /// (weights and biases uniform in ±1/√fan_in), GroupNorm γ = 1 and β = 0, class embeddings N(0, 1)-like
    /// (uniform with unit variance), and — as Ho et al. and improved-diffusion do — zeros for the last conv of every
    /// residual block, the attention output projection and the output conv, so every block starts as the identity.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64(seed ^ 0x5EED_D1FF_05E0_0001);
        let mut flat = vec![0.0f32; self.padded_len];
        for p in &self.params {
            let zero_init = p.name.contains(".conv2.")
                || p.name.contains(".proj.")
                || p.name.starts_with("out.2.");
            let is_norm = p.name.contains("norm") || p.name.starts_with("out.0.");
            // Values are constant (zero init, GroupNorm) or uniform in ±bound.
            let (constant, bound) = if zero_init {
                (0.0, 0.0)
            } else if is_norm {
                (
                    if p.name.ends_with(".weight") {
                        1.0
                    } else {
                        0.0
                    },
                    0.0,
                )
            } else if p.name == "class_emb.weight" {
                (0.0, 3f64.sqrt())
            } else {
                // fan_in of weight [out, in, …] is in·k·k; a bias shares the fan_in of its weight.
                let weight = self.get(&p.name.replace(".bias", ".weight")).unwrap_or(p);
                let fan_in: usize = weight.shape[1..].iter().product::<usize>().max(1);
                (0.0, 1.0 / (fan_in as f64).sqrt())
            };
            for v in &mut flat[p.offset..p.offset + p.len()] {
                *v = (constant + bound * rng.symmetric()) as f32;
            }
        }
        flat
    }
}

/// Forward FLOPs of one image, counted as the PyTorch twin's benchmark counts them: 2 × the multiply-adds of every
/// convolution, linear layer and attention product (QKᵀ and PV); normalisation and pointwise work are not counted.
pub fn forward_flops(config: &UNetConfig) -> f64 {
    let layout = ParamLayout::new(config);
    let arch = Architecture::new(config);
    let mut macs = 0usize;
    // Output resolution of each conv: walk the blocks as the network does.
    let conv = |name: &str, res: usize| -> usize {
        let w = &layout
            .get(&format!("{name}.weight"))
            .expect("conv weight")
            .shape;
        w[0] * res * res * w[1] * w[2] * w[3]
    };
    let s = config.image_size;
    macs += conv("conv_in", s) + conv("out.2", s);
    let tdim = config.time_embed_dim();
    macs += tdim * config.base_channels + tdim * tdim;
    for block in arch.down.iter().chain(&arch.middle).chain(&arch.up) {
        match block {
            Block::Res {
                prefix,
                c_in,
                c_out,
                resolution,
            } => {
                macs += conv(&format!("{prefix}.conv1"), *resolution)
                    + conv(&format!("{prefix}.conv2"), *resolution);
                macs += c_out * tdim;
                if c_in != c_out {
                    macs += conv(&format!("{prefix}.skip"), *resolution);
                }
            }
            Block::Attention {
                prefix,
                channels,
                resolution,
            } => {
                let l = resolution * resolution;
                macs += conv(&format!("{prefix}.qkv"), *resolution)
                    + conv(&format!("{prefix}.proj"), *resolution);
                macs += 2 * channels * l * l;
            }
            Block::Downsample {
                prefix, resolution, ..
            } => macs += conv(prefix, resolution / 2),
            Block::Upsample {
                prefix, resolution, ..
            } => macs += conv(prefix, resolution * 2),
        }
    }
    2.0 * macs as f64
}
