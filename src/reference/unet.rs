//! CPU reference of the whole U-Net forward pass, in f64, composed of the kernel references. It is written
//! independently of the GPU graph builder (`model/unet.rs`), in the order of the PyTorch twin's `forward`, so a
//! wiring mistake in either one shows up as a disagreement.

use crate::dropout::{dropout_threshold, DROPOUT_STREAM};
use crate::model::config::DEFAULT_MAX_PERIOD;
use crate::model::{Architecture, Block, ParamLayout, UNetConfig};
use crate::reference::{attention, conv2d, elementwise, embedding, group_norm, random};

/// An activation: values and NCHW (or [N, F]) shape.
#[derive(Clone, Debug)]
struct T {
    v: Vec<f64>,
    shape: Vec<usize>,
}

struct Model<'a> {
    config: &'a UNetConfig,
    layout: ParamLayout,
    params: &'a [f64],
    /// Training-mode dropout: the (seed, offset) of the draws, and the next layer's index.
    dropout: Option<(u64, u64)>,
    dropout_layer: std::cell::Cell<u32>,
}

impl Model<'_> {
    fn p(&self, name: &str) -> &[f64] {
        let spec = self
            .layout
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name}"));
        &self.params[spec.offset..spec.offset + spec.len()]
    }

    /// The convolution `prefix` with PyTorch's padding (k/2 on every side).
    fn conv(&self, x: &T, prefix: &str, stride: usize) -> T {
        let k = self
            .layout
            .get(&format!("{prefix}.weight"))
            .expect("conv weight")
            .shape[2];
        self.conv_padded(x, prefix, stride, k / 2)
    }

    /// The stride-2 convolution; with Ho et al.'s padding (`Conventions::downsample_padding` 0), x gets a row and
    /// a column of zeros after its last and the convolution no padding (TensorFlow's "SAME" at even sides).
    fn downsample(&self, x: &T, prefix: &str) -> T {
        if self.config.conventions.downsample_padding == 1 {
            return self.conv(x, prefix, 2);
        }
        let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        let mut padded = vec![0.0; n * c * (h + 1) * (w + 1)];
        for (plane, rows) in x.v.chunks(h * w).enumerate() {
            for (r, row) in rows.chunks(w).enumerate() {
                let at = (plane * (h + 1) + r) * (w + 1);
                padded[at..at + w].copy_from_slice(row);
            }
        }
        let padded = T {
            v: padded,
            shape: vec![n, c, h + 1, w + 1],
        };
        self.conv_padded(&padded, prefix, 2, 0)
    }

    fn conv_padded(&self, x: &T, prefix: &str, stride: usize, pad: usize) -> T {
        let w = self
            .layout
            .get(&format!("{prefix}.weight"))
            .expect("conv weight");
        let (co, k) = (w.shape[0], w.shape[2]);
        let s = conv2d::Conv2dShape {
            n: x.shape[0],
            ci: x.shape[1],
            co,
            h: x.shape[2],
            w: x.shape[3],
            k,
            stride,
            pad,
        };
        let y = conv2d::forward(
            &s,
            &x.v,
            self.p(&format!("{prefix}.weight")),
            Some(self.p(&format!("{prefix}.bias"))),
        );
        T {
            v: y,
            shape: vec![s.n, co, s.ho(), s.wo()],
        }
    }

    /// y = x·wᵀ + b for x [N, in], w [out, in].
    fn linear(&self, x: &T, prefix: &str) -> T {
        let w = self.p(&format!("{prefix}.weight"));
        let b = self.p(&format!("{prefix}.bias"));
        let (n, fin) = (x.shape[0], x.shape[1]);
        let fout = b.len();
        let mut y = Vec::with_capacity(n * fout);
        for i in 0..n {
            for o in 0..fout {
                y.push(
                    b[o] + (0..fin)
                        .map(|k| x.v[i * fin + k] * w[o * fin + k])
                        .sum::<f64>(),
                );
            }
        }
        T {
            v: y,
            shape: vec![n, fout],
        }
    }

    fn group_norm(&self, x: &T, prefix: &str, silu: bool) -> T {
        let s = group_norm::Shape {
            n: x.shape[0],
            c: x.shape[1],
            hw: x.shape[2] * x.shape[3],
            groups: self.config.groups,
        };
        let out = group_norm::forward(
            &x.v,
            self.p(&format!("{prefix}.weight")),
            self.p(&format!("{prefix}.bias")),
            s,
            self.config.conventions.norm_eps as f64,
            silu,
        );
        T {
            v: out.y,
            shape: x.shape.clone(),
        }
    }

    fn add(a: &T, b: &T) -> T {
        T {
            v: elementwise::add_scaled(&a.v, &b.v, 1.0),
            shape: a.shape.clone(),
        }
    }

    fn res_block(&self, x: &T, temb: &T, prefix: &str, c_in: usize, c_out: usize) -> T {
        let h = self.conv(
            &self.group_norm(x, &format!("{prefix}.norm1"), true),
            &format!("{prefix}.conv1"),
            1,
        );
        let e = self.linear(temb, &format!("{prefix}.temb"));
        let h = T {
            v: elementwise::add_channel_bias(&h.v, &e.v, h.shape[2] * h.shape[3]),
            shape: h.shape,
        };
        let mut h = self.group_norm(&h, &format!("{prefix}.norm2"), true);
        if let (Some((seed, offset)), true) = (self.dropout, self.config.dropout > 0.0) {
            let layer = self.dropout_layer.get();
            self.dropout_layer.set(layer + 1);
            let (n, scale) = dropout_threshold(self.config.dropout as f64);
            let stream = DROPOUT_STREAM + layer;
            h.v = random::dropout(&h.v, n, scale, seed, stream, offset);
        }
        let h = self.conv(&h, &format!("{prefix}.conv2"), 1);
        let skip = if c_in != c_out {
            self.conv(x, &format!("{prefix}.skip"), 1)
        } else {
            x.clone()
        };
        Self::add(&skip, &h)
    }

    fn attention_block(&self, x: &T, prefix: &str) -> T {
        let qkv = self.conv(
            &self.group_norm(x, &format!("{prefix}.norm"), false),
            &format!("{prefix}.qkv"),
            1,
        );
        let s = attention::Shape {
            n: x.shape[0],
            c: x.shape[1],
            heads: self.config.heads,
            l: x.shape[2] * x.shape[3],
        };
        let (out, _) = attention::forward(&qkv.v, s);
        let proj = self.conv(
            &T {
                v: out,
                shape: x.shape.clone(),
            },
            &format!("{prefix}.proj"),
            1,
        );
        Self::add(x, &proj)
    }

    fn block(&self, block: &Block, h: &T, temb: &T) -> T {
        match block {
            Block::Res {
                prefix,
                c_in,
                c_out,
                ..
            } => self.res_block(h, temb, prefix, *c_in, *c_out),
            Block::Attention { prefix, .. } => self.attention_block(h, prefix),
            Block::Downsample { prefix, .. } => self.downsample(h, prefix),
            Block::Upsample { prefix, .. } => {
                let [n, c, s, _] = [h.shape[0], h.shape[1], h.shape[2], h.shape[3]];
                let up = T {
                    v: elementwise::upsample_nearest2x_forward(&h.v, n * c, s, s),
                    shape: vec![n, c, 2 * s, 2 * s],
                };
                self.conv(&up, prefix, 1)
            }
        }
    }
}

/// ε̂ = UNet(x, t[, labels]) for x [N, C, S, S], timesteps t [N], class labels [N] (class-conditional configs; the
/// label `num_classes` is "no class"), parameters in the flat layout of `ParamLayout::new(config)`. Inference mode:
/// no dropout.
pub fn forward(
    config: &UNetConfig,
    params: &[f64],
    x: &[f64],
    t: &[f64],
    labels: Option<&[u32]>,
) -> Vec<f64> {
    forward_training(config, params, x, t, labels, None)
}

/// [`forward`] in training mode: with `dropout` = (seed, rng offset), each residual block drops as
/// shaders/random.wgsl's dropout does with that draw (layer k on stream `DROPOUT_STREAM + k`).
pub fn forward_training(
    config: &UNetConfig,
    params: &[f64],
    x: &[f64],
    t: &[f64],
    labels: Option<&[u32]>,
    dropout: Option<(u64, u64)>,
) -> Vec<f64> {
    let m = Model {
        config,
        layout: ParamLayout::new(config),
        params,
        dropout,
        dropout_layer: std::cell::Cell::new(0),
    };
    let n = t.len();
    let s = config.image_size;
    let temb = m.time_embedding(t, labels);
    let arch = Architecture::new(config);
    let x = T {
        v: x.to_vec(),
        shape: vec![n, config.in_channels, s, s],
    };
    let mut hs = m.down_path(&arch, &x, &temb);
    let mut h = hs.last().expect("skips").clone();
    for block in &arch.middle {
        h = m.block(block, &h, &temb);
    }
    let h = m.up_path(&arch, h, &mut hs, &temb);
    let h = m.group_norm(&h, "out.0", true);
    m.conv(&h, "out.2", 1).v
}

impl Model<'_> {
    /// silu(MLP(sinusoid(t)) [+ class embedding]): what every residual block adds per channel.
    fn time_embedding(&self, t: &[f64], labels: Option<&[u32]>) -> T {
        let config = self.config;
        let n = t.len();
        let ch = config.base_channels;
        let sinusoid = T {
            v: embedding::timestep_embedding(
                t,
                ch,
                (DEFAULT_MAX_PERIOD, config.conventions.freq_shift),
            ),
            shape: vec![n, ch],
        };
        let t1 = self.linear(&sinusoid, "temb.0");
        let t1 = T {
            v: elementwise::silu_forward(&t1.v),
            shape: t1.shape,
        };
        let mut temb = self.linear(&t1, "temb.2");
        if let (Some(classes), Some(labels)) = (config.num_classes, labels) {
            let tdim = config.time_embed_dim();
            let class = embedding::class_embedding_forward(
                labels,
                self.p("class_emb.weight"),
                classes + 1,
                tdim,
            );
            temb = Model::add(
                &temb,
                &T {
                    v: class,
                    shape: temb.shape.clone(),
                },
            );
        }
        T {
            v: elementwise::silu_forward(&temb.v),
            shape: temb.shape,
        }
    }

    /// conv_in and the down path, returning every skip the up path consumes (the last is the middle's input).
    fn down_path(&self, arch: &Architecture, x: &T, temb: &T) -> Vec<T> {
        let mut hs = vec![self.conv(x, "conv_in", 1)];
        // The down path in stages: a residual block with its attention, or a downsampling conv; each saves a skip.
        let mut i = 0;
        while i < arch.down.len() {
            let mut h = self.block(&arch.down[i], hs.last().expect("skips"), temb);
            if matches!(arch.down[i], Block::Res { .. })
                && matches!(arch.down.get(i + 1), Some(Block::Attention { .. }))
            {
                i += 1;
                h = self.block(&arch.down[i], &h, temb);
            }
            hs.push(h);
            i += 1;
        }
        hs
    }

    /// The up path from `h`, each residual block taking [h; skip] with the skips popped from `hs`.
    fn up_path(&self, arch: &Architecture, mut h: T, hs: &mut Vec<T>, temb: &T) -> T {
        for block in &arch.up {
            if matches!(block, Block::Res { .. }) {
                let skip = hs.pop().expect("a skip per up-path residual block");
                let [n, c, s, _] = [h.shape[0], h.shape[1], h.shape[2], h.shape[3]];
                let cs = skip.shape[1];
                h = T {
                    v: elementwise::concat_channels(&h.v, &skip.v, n, c, cs, s * s),
                    shape: vec![n, c + cs, s, s],
                };
            }
            h = self.block(block, &h, temb);
        }
        h
    }
}
