//! The U-Net on the GPU: a graph of kernel calls built once for a batch size, whose forward and backward passes
//! are lists of dispatches recorded every step. The backward is written out op by op: every forward op in [`Op`]
//! has its backward in [`Backward::op`], so it is easy to check that nothing is missing.
//!
//! Gradients of activations follow the contract of `kernels/mod.rs`: the first consumer to be differentiated
//! writes a tensor's gradient, later ones add to it (in place where the kernel can, else through a scratch tensor
//! and `axpy`). Parameter gradients land in one flat tensor with the parameters' layout, each written exactly once
//! per step (every parameter feeds one op), so the optimizer runs over the whole model in one dispatch.

use crate::dropout::DROPOUT_STREAM;
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::conv2d::Conv2dOptions;
use crate::kernels::group_norm::GroupNorm;
use crate::kernels::random::Stream;
use crate::kernels::{attention, conv2d, elementwise, embedding, group_norm, matmul, random};
use crate::model::config::DEFAULT_MAX_PERIOD;
use crate::model::{Architecture, Block, ParamBuffers, ParamLayout, UNetConfig};

/// An activation of the graph (index into `Net::acts`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Act(usize);

/// One forward op, with what its backward needs.
enum Op {
    /// y = conv(x, w) + b (+ e[n, c] + r where fused, see [`Fused`])
    Conv {
        x: Act,
        w: String,
        b: String,
        y: Act,
        stride: usize,
        /// The forward's packed copy of x, kept for the weight gradient (Conv2dOptions::saved_input); None
        /// where the forward packs nothing.
        saved: Option<Tensor>,
        fused: Fused,
    },
    /// y = x·wᵀ + b
    Linear {
        x: Act,
        w: String,
        b: String,
        y: Act,
    },
    /// y = [silu](GroupNorm(x)·γ + β); saves mean, rstd
    GroupNorm {
        x: Act,
        gamma: String,
        beta: String,
        y: Act,
        norm: GroupNorm,
        mean: Tensor,
        rstd: Tensor,
    },
    /// y = x·σ(x)
    Silu { x: Act, y: Act },
    /// y[n,c,h,w] = x[n,c,h,w] + e[n,c]
    AddChannelBias { x: Act, e: Act, y: Act },
    /// y = a + b
    Add { a: Act, b: Act, y: Act },
    /// y = [a; b] along channels
    Concat { a: Act, b: Act, y: Act },
    /// y = nearest ×2 upsampling of x
    Upsample { x: Act, y: Act },
    /// y[n, c, r, q] = x[n, c, r + s, q + s], zero outside x (elementwise::shift)
    Shift { x: Act, y: Act, s: i32 },
    /// out = softmax(q·kᵀ/√d)·v from qkv; saves the row log-sum-exp
    Attention {
        qkv: Act,
        out: Act,
        lse: Tensor,
        heads: usize,
    },
    /// y = x·mask/(1 − p), the mask drawn from Philox stream `stream` at the step's rng offset (training only);
    /// its backward is the same draw applied to ∂L/∂y
    Dropout { x: Act, y: Act, stream: u32 },
    /// y = sinusoidal embedding of the timesteps (an input: no gradient)
    TimestepEmbedding { y: Act },
    /// y = table[labels] (class conditioning)
    ClassEmbedding { table: String, y: Act },
}

/// What a convolution's epilogue adds where its forward runs on the implicit GEMM (conv2d::fuses_epilogue): the
/// AddChannelBias and Add ops that would follow it, folded in (a dispatch each forward, and Add's gradient copy).
#[derive(Clone, Copy, Debug, Default)]
struct Fused {
    /// e [N, C]: y[n, c, ·, ·] += e[n, c] (a residual block's time embedding).
    time: Option<Act>,
    /// r of y's shape: y += r (the residual connection).
    residual: Option<Act>,
}

/// Where a training net's dropout masks come from: the trainer's seed and rng state (whose offset advances once
/// per step, so each step draws new masks, and the backward pass reuses the forward's).
#[derive(Clone, Debug)]
pub struct DropoutDraw {
    pub seed: u64,
    pub state: Tensor,
}

/// The U-Net for one batch size: activation buffers, the op graph, and views of the flat parameter and gradient
/// tensors.
pub struct Net {
    pub config: UNetConfig,
    pub layout: ParamLayout,
    pub batch: usize,
    /// All parameters, flat ([`ParamLayout::padded_len`]), in one or more shards.
    pub params: ParamBuffers,
    /// ∂L/∂params, cut as `params`; written by the backward pass.
    pub grads: ParamBuffers,
    /// The noisy input x_t [N, C, S, S] (written by the caller before the forward pass).
    pub input: Tensor,
    /// Timestep indices [N] u32, or a real noise coordinate [N] f32 ([`Net::with_real_noise_level`]); written by
    /// the caller.
    pub timesteps: Tensor,
    /// Class labels [N] u32 (class-conditional models only; the "no class" label is `num_classes`).
    pub labels: Option<Tensor>,
    acts: Vec<Tensor>,
    /// Activations that need no gradient (the input and what derives from the timesteps alone).
    no_grad: Vec<bool>,
    ops: Vec<Op>,
    output: Act,
    /// Training nets with dropout > 0 (inference nets leave dropout out: it is the identity there).
    dropout: Option<DropoutDraw>,
    dropout_layers: u32,
}

impl Net {
    /// Builds the inference graph for `batch` images (no dropout), with parameters in `params` (flat,
    /// `layout.padded_len`).
    pub fn new(gpu: &Gpu, config: &UNetConfig, params: &ParamBuffers, batch: usize) -> Result<Net> {
        Self::build_net(gpu, config, params, batch, None)
    }

    /// Builds the training graph: as [`Net::new`], plus dropout (`config.dropout`) after each residual block's
    /// second normalisation, its masks drawn from `dropout`.
    pub fn for_training(
        gpu: &Gpu,
        config: &UNetConfig,
        params: &ParamBuffers,
        batch: usize,
        dropout: DropoutDraw,
    ) -> Result<Net> {
        Self::build_net(gpu, config, params, batch, Some(dropout))
    }

    fn build_net(
        gpu: &Gpu,
        config: &UNetConfig,
        params: &ParamBuffers,
        batch: usize,
        dropout: Option<DropoutDraw>,
    ) -> Result<Net> {
        config.validate()?;
        let layout = ParamLayout::new(config);
        if params.len() != layout.padded_len {
            return Err(Error::shape(
                "Net::new",
                format!(
                    "the parameters must hold {} values, got {}",
                    layout.padded_len,
                    params.len()
                ),
            ));
        }
        let s = config.image_size;
        let input = Tensor::zeros(gpu, &[batch, config.in_channels, s, s], DType::F32)?;
        let mut net = Net {
            config: config.clone(),
            layout: layout.clone(),
            batch,
            params: params.clone(),
            grads: params.zeros_like(gpu)?,
            timesteps: Tensor::zeros(gpu, &[batch], DType::U32)?,
            labels: match config.num_classes {
                Some(_) => Some(Tensor::zeros(gpu, &[batch], DType::U32)?),
                None => None,
            },
            input: input.clone(),
            acts: vec![input],
            no_grad: vec![true],
            ops: Vec::new(),
            output: Act(0),
            dropout: dropout.filter(|_| config.dropout > 0.0),
            dropout_layers: 0,
        };
        net.output = net.build(gpu)?;
        Ok(net)
    }

    /// The net conditioned on a real noise coordinate: `timesteps` becomes [N] f32 (the score-based objectives'
    /// c_noise, `crate::diffusion::process`), which the sinusoidal embedding reads as it reads integer timesteps.
    pub fn with_real_noise_level(mut self, gpu: &Gpu) -> Result<Net> {
        self.timesteps = Tensor::zeros(gpu, &[self.batch], DType::F32)?;
        Ok(self)
    }

    /// The network's prediction [N, C, S, S] (ε, x_0 or v, as trained).
    pub fn output(&self) -> &Tensor {
        &self.acts[self.output.0]
    }

    fn shape(&self, a: Act) -> &[usize] {
        self.acts[a.0].shape()
    }

    fn new_act(&mut self, gpu: &Gpu, shape: &[usize], no_grad: bool) -> Result<Act> {
        self.acts.push(Tensor::zeros(gpu, shape, DType::F32)?);
        self.no_grad.push(no_grad);
        Ok(Act(self.acts.len() - 1))
    }

    /// The output of an op with parameters: it always needs a gradient (for the parameters' sake).
    fn with_params(&mut self, gpu: &Gpu, shape: &[usize]) -> Result<Act> {
        self.new_act(gpu, shape, false)
    }

    /// The output of a parameter-free op: it needs a gradient unless all its inputs are constants.
    fn derived(&mut self, gpu: &Gpu, shape: &[usize], from: &[Act]) -> Result<Act> {
        let no_grad = from.iter().all(|a| self.no_grad[a.0]);
        self.new_act(gpu, shape, no_grad)
    }

    fn param(&self, gpu: &Gpu, flat: &ParamBuffers, name: &str) -> Result<Tensor> {
        let spec = self
            .layout
            .get(name)
            .ok_or_else(|| Error::Usage(format!("internal: no parameter named {name}")))?;
        flat.view(gpu, spec)
    }

    // ---- forward builders: each allocates its output and appends one op -------------------------------------

    fn conv(&mut self, gpu: &Gpu, x: Act, prefix: &str, stride: usize) -> Result<Act> {
        self.conv_fused(gpu, x, prefix, stride, Fused::default())
    }

    /// Whether the convolution `prefix` of x adds a channel bias and a residual in its epilogue.
    fn fuses(&self, gpu: &Gpu, x: Act, prefix: &str, stride: usize) -> Result<bool> {
        let weight = self.param(gpu, &self.params, &format!("{prefix}.weight"))?;
        conv2d::fuses_epilogue(gpu, conv2d::Path::Auto, self.shape(x), &weight, stride)
    }

    /// A convolution with what `fused` adds in its epilogue (which the caller checked with [`Net::fuses`]).
    fn conv_fused(
        &mut self,
        gpu: &Gpu,
        x: Act,
        prefix: &str,
        stride: usize,
        fused: Fused,
    ) -> Result<Act> {
        let w = format!("{prefix}.weight");
        let [n, _, h, wd] = <[usize; 4]>::try_from(self.shape(x)).expect("NCHW");
        let co = self.layout.get(&w).expect("conv weight").shape[0];
        let (ho, wo) = (h.div_ceil(stride), wd.div_ceil(stride));
        let y = self.with_params(gpu, &[n, co, ho, wo])?;
        let weight = self.param(gpu, &self.params, &w)?;
        let saved =
            conv2d::saved_input_len(gpu, conv2d::Path::Auto, self.shape(x), &weight, stride)?
                .map(|len| Tensor::zeros(gpu, &[len], DType::F32))
                .transpose()?;
        self.ops.push(Op::Conv {
            x,
            w,
            b: format!("{prefix}.bias"),
            y,
            stride,
            saved,
            fused,
        });
        Ok(y)
    }

    fn linear(&mut self, gpu: &Gpu, x: Act, prefix: &str) -> Result<Act> {
        let w = format!("{prefix}.weight");
        let out = self.layout.get(&w).expect("linear weight").shape[0];
        let y = self.with_params(gpu, &[self.shape(x)[0], out])?;
        self.ops.push(Op::Linear {
            x,
            w,
            b: format!("{prefix}.bias"),
            y,
        });
        Ok(y)
    }

    fn group_norm(&mut self, gpu: &Gpu, x: Act, prefix: &str, silu: bool) -> Result<Act> {
        let shape = self.shape(x).to_vec();
        let y = self.with_params(gpu, &shape)?;
        let norm = GroupNorm::new(self.config.groups).with_eps(self.config.conventions.norm_eps);
        let norm = if silu { norm.with_silu() } else { norm };
        let stats = [shape[0], self.config.groups];
        self.ops.push(Op::GroupNorm {
            x,
            gamma: format!("{prefix}.weight"),
            beta: format!("{prefix}.bias"),
            y,
            norm,
            mean: Tensor::zeros(gpu, &stats, DType::F32)?,
            rstd: Tensor::zeros(gpu, &stats, DType::F32)?,
        });
        Ok(y)
    }

    fn silu(&mut self, gpu: &Gpu, x: Act) -> Result<Act> {
        let shape = self.shape(x).to_vec();
        let y = self.derived(gpu, &shape, &[x])?;
        self.ops.push(Op::Silu { x, y });
        Ok(y)
    }

    fn add(&mut self, gpu: &Gpu, a: Act, b: Act) -> Result<Act> {
        let shape = self.shape(a).to_vec();
        let y = self.derived(gpu, &shape, &[a, b])?;
        self.ops.push(Op::Add { a, b, y });
        Ok(y)
    }

    fn res_block(
        &mut self,
        gpu: &Gpu,
        x: Act,
        temb: Act,
        prefix: &str,
        c_in: usize,
        c_out: usize,
    ) -> Result<Act> {
        let h = self.group_norm(gpu, x, &format!("{prefix}.norm1"), true)?;
        let e = self.linear(gpu, temb, &format!("{prefix}.temb"))?;
        let conv1 = format!("{prefix}.conv1");
        let with_time = if self.fuses(gpu, h, &conv1, 1)? {
            let time = Fused {
                time: Some(e),
                residual: None,
            };
            self.conv_fused(gpu, h, &conv1, 1, time)?
        } else {
            let h = self.conv(gpu, h, &conv1, 1)?;
            let shape = self.shape(h).to_vec();
            let with_time = self.derived(gpu, &shape, &[h, e])?;
            self.ops.push(Op::AddChannelBias {
                x: h,
                e,
                y: with_time,
            });
            with_time
        };
        let mut h = self.group_norm(gpu, with_time, &format!("{prefix}.norm2"), true)?;
        if self.dropout.is_some() {
            let shape = self.shape(h).to_vec();
            let dropped = self.derived(gpu, &shape, &[h])?;
            self.ops.push(Op::Dropout {
                x: h,
                y: dropped,
                stream: DROPOUT_STREAM + self.dropout_layers,
            });
            self.dropout_layers += 1;
            h = dropped;
        }
        let skip = if c_in != c_out {
            self.conv(gpu, x, &format!("{prefix}.skip"), 1)?
        } else {
            x
        };
        self.conv_plus(gpu, h, &format!("{prefix}.conv2"), skip)
    }

    /// conv(x) + r (stride 1): one op where the convolution adds r in its epilogue, else a convolution and an Add.
    fn conv_plus(&mut self, gpu: &Gpu, x: Act, prefix: &str, r: Act) -> Result<Act> {
        if self.fuses(gpu, x, prefix, 1)? {
            let residual = Fused {
                time: None,
                residual: Some(r),
            };
            return self.conv_fused(gpu, x, prefix, 1, residual);
        }
        let y = self.conv(gpu, x, prefix, 1)?;
        self.add(gpu, r, y)
    }

    fn attention_block(&mut self, gpu: &Gpu, x: Act, prefix: &str) -> Result<Act> {
        let h = self.group_norm(gpu, x, &format!("{prefix}.norm"), false)?;
        let qkv = self.conv(gpu, h, &format!("{prefix}.qkv"), 1)?;
        let shape = self.shape(x).to_vec();
        let out = self.derived(gpu, &shape, &[qkv])?;
        let lse = Tensor::zeros(
            gpu,
            &[shape[0], self.config.heads, shape[2] * shape[3]],
            DType::F32,
        )?;
        self.ops.push(Op::Attention {
            qkv,
            out,
            lse,
            heads: self.config.heads,
        });
        self.conv_plus(gpu, out, &format!("{prefix}.proj"), x)
    }

    fn block(&mut self, gpu: &Gpu, block: &Block, h: Act, temb: Act) -> Result<Act> {
        match block {
            Block::Res {
                prefix,
                c_in,
                c_out,
                ..
            } => self.res_block(gpu, h, temb, prefix, *c_in, *c_out),
            Block::Attention { prefix, .. } => self.attention_block(gpu, h, prefix),
            Block::Downsample { prefix, .. } => self.downsample(gpu, h, prefix),
            Block::Upsample { prefix, .. } => {
                let [n, c, s, _] = <[usize; 4]>::try_from(self.shape(h)).expect("NCHW");
                let up = self.derived(gpu, &[n, c, 2 * s, 2 * s], &[h])?;
                self.ops.push(Op::Upsample { x: h, y: up });
                self.conv(gpu, up, prefix, 1)
            }
        }
    }

    /// The stride-2 convolution. Ho et al.'s padding (zeros after the last row and column only, see
    /// [`crate::model::Conventions`]) is the convolution with padding 1 of x behind a zero row and column, its
    /// first output row and column cropped: the same sums, through the convolution kernels as they are.
    fn downsample(&mut self, gpu: &Gpu, x: Act, prefix: &str) -> Result<Act> {
        if self.config.conventions.downsample_padding == 1 {
            return self.conv(gpu, x, prefix, 2);
        }
        let [n, c, h, w] = <[usize; 4]>::try_from(self.shape(x)).expect("NCHW");
        let bordered = self.derived(gpu, &[n, c, h + 1, w + 1], &[x])?;
        self.ops.push(Op::Shift {
            x,
            y: bordered,
            s: -1,
        });
        let y = self.conv(gpu, bordered, prefix, 2)?;
        let [_, co, ho, wo] = <[usize; 4]>::try_from(self.shape(y)).expect("NCHW");
        let cropped = self.derived(gpu, &[n, co, ho - 1, wo - 1], &[y])?;
        self.ops.push(Op::Shift {
            x: y,
            y: cropped,
            s: 1,
        });
        Ok(cropped)
    }

    /// The whole network, in the order of the PyTorch twin's forward.
    fn build(&mut self, gpu: &Gpu) -> Result<Act> {
        let n = self.batch;
        let ch = self.config.base_channels;
        // Time embedding: sinusoid(t) → Linear → SiLU → Linear (+ class embedding), then SiLU once for all blocks.
        let sinusoid = self.new_act(gpu, &[n, ch], true)?;
        self.ops.push(Op::TimestepEmbedding { y: sinusoid });
        let t1 = self.linear(gpu, sinusoid, "temb.0")?;
        let t1 = self.silu(gpu, t1)?;
        let mut temb = self.linear(gpu, t1, "temb.2")?;
        if self.config.num_classes.is_some() {
            let tdim = self.config.time_embed_dim();
            let class = self.new_act(gpu, &[n, tdim], false)?;
            self.ops.push(Op::ClassEmbedding {
                table: "class_emb.weight".into(),
                y: class,
            });
            temb = self.add(gpu, temb, class)?;
        }
        let temb = self.silu(gpu, temb)?;

        let arch = Architecture::new(&self.config);
        let mut skips = vec![self.conv(gpu, Act(0), "conv_in", 1)?];
        let mut h = skips[0];
        let mut blocks = arch.down.iter().peekable();
        while let Some(block) = blocks.next() {
            h = self.block(gpu, block, h, temb)?;
            // A residual block's attention (if any) belongs to the same stage: the skip is saved after it.
            if matches!(block, Block::Res { .. }) {
                if let Some(attn @ Block::Attention { .. }) = blocks.peek() {
                    h = self.block(gpu, attn, h, temb)?;
                    blocks.next();
                }
            }
            skips.push(h);
        }
        for block in &arch.middle {
            h = self.block(gpu, block, h, temb)?;
        }
        for block in &arch.up {
            if matches!(block, Block::Res { .. }) {
                let skip = skips.pop().expect("one skip per up-path residual block");
                let [n, c, s, _] = <[usize; 4]>::try_from(self.shape(h)).expect("NCHW");
                let cs = self.shape(skip)[1];
                let cat = self.derived(gpu, &[n, c + cs, s, s], &[h, skip])?;
                self.ops.push(Op::Concat {
                    a: h,
                    b: skip,
                    y: cat,
                });
                h = cat;
            }
            h = self.block(gpu, block, h, temb)?;
        }
        let h = self.group_norm(gpu, h, "out.0", true)?;
        self.conv(gpu, h, "out.2", 1)
    }

    // ---- the passes ------------------------------------------------------------------------------------------

    /// One dropout layer's mask applied to `x` (forward) or to ∂L/∂y (backward: the same mask). Micro-batch `part`
    /// takes the masks of its images in the whole batch: elements from part·len(x) on.
    fn dropout(
        &self,
        gpu: &Gpu,
        part: usize,
        x: &Tensor,
        stream: u32,
        y: &Tensor,
    ) -> Result<Dispatch> {
        let draw = self
            .dropout
            .as_ref()
            .expect("dropout ops exist only in training nets");
        random::dropout(
            gpu,
            x,
            self.config.dropout as f64,
            draw.seed,
            Stream::from_element(stream, part * x.len()),
            &draw.state,
            y,
        )
    }

    /// The forward pass: reads `input`, `timesteps` (and `labels`), writes every activation and `output()`.
    pub fn forward(&self, gpu: &Gpu) -> Result<Vec<Dispatch>> {
        self.forward_part(gpu, 0)
    }

    /// The forward pass of micro-batch `part` of a larger batch (its images are part·batch.. of it): the same as
    /// [`Net::forward`] but for the dropout masks, which are those of these images in the whole batch.
    pub fn forward_part(&self, gpu: &Gpu, part: usize) -> Result<Vec<Dispatch>> {
        let mut out = Vec::new();
        for op in &self.ops {
            out.extend(self.forward_op(gpu, part, op)?);
        }
        Ok(out)
    }

    // ---- the passes' views of the graph: activations and the parameters' and gradients' slices -------------

    /// An activation's tensor, so that ops can name their operands by `Act`.
    fn act(&self, x: Act) -> &Tensor {
        &self.acts[x.0]
    }

    /// A parameter's slice of the flat parameters, for the kernels that read it.
    fn param_value(&self, gpu: &Gpu, name: &str) -> Result<Tensor> {
        self.param(gpu, &self.params, name)
    }

    /// A parameter's slice of the flat gradient, for the kernels that write ∂L/∂param.
    fn param_grad(&self, gpu: &Gpu, name: &str) -> Result<Tensor> {
        self.param(gpu, &self.grads, name)
    }

    // ---- forward: one kernel call per op --------------------------------------------------------------------

    /// The dispatches of one forward op, so the forward pass reads as a table of ops → kernels.
    fn forward_op(&self, gpu: &Gpu, part: usize, op: &Op) -> Result<Vec<Dispatch>> {
        let a = |x: &Act| self.act(*x); // short, so each arm fits a line
        Ok(match op {
            Op::Conv {
                x,
                w,
                b,
                y,
                stride,
                saved,
                fused,
            } => self.conv_forward(gpu, *x, (w, b), *y, *stride, saved.as_ref(), fused)?,
            Op::Linear { x, w, b, y } => {
                let (w, b) = (self.param_value(gpu, w)?, self.param_value(gpu, b)?);
                vec![matmul::linear_forward(gpu, a(x), &w, Some(&b), a(y))?]
            }
            Op::GroupNorm {
                x,
                gamma,
                beta,
                y,
                norm,
                mean,
                rstd,
            } => vec![self.group_norm_forward(gpu, norm, *x, gamma, beta, *y, mean, rstd)?],
            Op::Silu { x, y } => vec![elementwise::silu_forward(gpu, a(x), a(y))?],
            Op::AddChannelBias { x, e, y } => {
                vec![elementwise::add_channel_bias(gpu, a(x), a(e), a(y))?]
            }
            Op::Add { a: l, b: r, y } => {
                vec![elementwise::add_scaled(gpu, a(l), a(r), 1.0, a(y))?]
            }
            Op::Concat { a: l, b: r, y } => {
                vec![elementwise::concat_channels(gpu, a(l), a(r), a(y))?]
            }
            Op::Upsample { x, y } => {
                vec![elementwise::upsample_nearest2x_forward(gpu, a(x), a(y))?]
            }
            Op::Shift { x, y, s } => vec![elementwise::shift(gpu, a(x), *s, a(y))?],
            Op::Attention {
                qkv,
                out,
                lse,
                heads,
            } => attention::attention_forward(gpu, a(qkv), *heads, a(out), lse)?,
            Op::Dropout { x, y, stream } => {
                vec![self.dropout(gpu, part, a(x), *stream, a(y))?]
            }
            Op::TimestepEmbedding { y } => vec![embedding::timestep_embedding(
                gpu,
                &self.timesteps,
                (DEFAULT_MAX_PERIOD, self.config.conventions.freq_shift),
                a(y),
            )?],
            Op::ClassEmbedding { table, y } => {
                let table = self.param_value(gpu, table)?;
                vec![embedding::class_embedding_forward(
                    gpu,
                    self.labels(),
                    &table,
                    a(y),
                )?]
            }
        })
    }

    /// The class labels, which only class-conditional nets (the only ones with class-embedding ops) have.
    fn labels(&self) -> &Tensor {
        self.labels
            .as_ref()
            .expect("class-conditional nets have labels")
    }

    /// Op::Conv's forward, keeping the packed input for the weight gradient where the forward packs one.
    #[allow(clippy::too_many_arguments)] // one argument per field of Op::Conv
    fn conv_forward(
        &self,
        gpu: &Gpu,
        x: Act,
        (w, b): (&str, &str),
        y: Act,
        stride: usize,
        saved: Option<&Tensor>,
        fused: &Fused,
    ) -> Result<Vec<Dispatch>> {
        conv2d::forward(
            gpu,
            self.act(x),
            &self.param_value(gpu, w)?,
            Some(&self.param_value(gpu, b)?),
            self.act(y),
            stride,
            Conv2dOptions {
                saved_input: saved,
                channel_bias: fused.time.map(|e| self.act(e)),
                residual: fused.residual.map(|r| self.act(r)),
                ..Default::default()
            },
        )
    }

    /// Op::GroupNorm's forward, saving mean and rstd for the backward.
    #[allow(clippy::too_many_arguments)] // one argument per field of Op::GroupNorm
    fn group_norm_forward(
        &self,
        gpu: &Gpu,
        norm: &GroupNorm,
        x: Act,
        gamma: &str,
        beta: &str,
        y: Act,
        mean: &Tensor,
        rstd: &Tensor,
    ) -> Result<Dispatch> {
        group_norm::group_norm_forward(
            gpu,
            norm,
            self.act(x),
            &self.param_value(gpu, gamma)?,
            &self.param_value(gpu, beta)?,
            self.act(y),
            mean,
            rstd,
        )
    }

    // ---- backward: the ops in reverse, each writing its inputs' and parameters' gradients ------------------

    /// The backward pass from `d_output` (∂L/∂output, [N, C, S, S]): writes `grads` (every parameter's gradient).
    pub fn backward(&self, gpu: &Gpu, d_output: &Tensor) -> Result<Vec<Dispatch>> {
        self.backward_part(gpu, d_output, 0)
    }

    /// The backward pass that also writes ∂L/∂input, returned beside the dispatches: for d_output = v it is the
    /// vector–Jacobian product vᵀ·∂output/∂input, what the exact likelihood's divergence estimator needs. The
    /// parameters' gradients are skipped (GroupNorm's γ and β come out of the kernel that gives ∂L/∂x).
    pub fn backward_to_input(
        &self,
        gpu: &Gpu,
        d_output: &Tensor,
    ) -> Result<(Vec<Dispatch>, Tensor)> {
        let mut backward = self.backward_recorder(gpu, d_output, 0, true)?;
        for op in self.ops.iter().rev() {
            backward.op(op)?;
        }
        let d_input = backward.grads.tensors[0].clone().ok_or_else(|| {
            Error::shape("Net::backward_to_input", "the input reaches no convolution")
        })?;
        Ok((backward.out, d_input))
    }

    /// The backward pass of micro-batch `part` (see [`Net::forward_part`]).
    pub fn backward_part(
        &self,
        gpu: &Gpu,
        d_output: &Tensor,
        part: usize,
    ) -> Result<Vec<Dispatch>> {
        let mut backward = self.backward_recorder(gpu, d_output, part, false)?;
        for op in self.ops.iter().rev() {
            backward.op(op)?;
        }
        Ok(backward.out)
    }

    /// A backward pass from `d_output`, ready to record its ops; `input_grad`: also ∂L/∂input.
    fn backward_recorder<'a>(
        &'a self,
        gpu: &'a Gpu,
        d_output: &Tensor,
        part: usize,
        input_grad: bool,
    ) -> Result<Backward<'a>> {
        if d_output.shape() != self.output().shape() {
            return Err(Error::shape(
                "Net::backward",
                format!(
                    "d_output must be {:?}, got {:?}",
                    self.output().shape(),
                    d_output.shape()
                ),
            ));
        }
        let mut grads = Grads {
            tensors: vec![None; self.acts.len()],
        };
        grads.tensors[self.output.0] = Some(d_output.clone());
        Ok(Backward {
            net: self,
            gpu,
            part,
            grads,
            out: Vec::new(),
            input_grad,
        })
    }
}

/// The backward pass under construction: what every op's backward reads (net, device, micro-batch) and writes
/// (activation gradients, dispatches), so each op's backward is one short method.
struct Backward<'a> {
    net: &'a Net,
    gpu: &'a Gpu,
    part: usize,
    grads: Grads,
    out: Vec<Dispatch>,
    /// Whether ∂L/∂input is wanted (the input, activation 0, is otherwise a constant). Then the parameters'
    /// gradients are not: [`Net::backward_to_input`] skips their kernels (GroupNorm's come with ∂L/∂x anyway).
    input_grad: bool,
}

impl Backward<'_> {
    /// Whether ∂L/∂x is computed: x is not a constant, or it is the input and its gradient is wanted.
    fn wants(&self, x: Act) -> bool {
        !self.net.no_grad[x.0] || (self.input_grad && x.0 == 0)
    }

    /// Appends one op's backward, so the backward pass reads as a table of ops → gradient kernels.
    fn op(&mut self, op: &Op) -> Result<()> {
        match op {
            Op::Conv {
                x,
                w,
                b,
                y,
                stride,
                saved,
                fused,
            } => {
                self.conv(*x, w, b, *y, *stride, saved.as_ref())?;
                self.conv_fused(*y, fused)
            }
            Op::Linear { x, w, b, y } => self.linear(*x, w, b, *y),
            Op::GroupNorm {
                x,
                gamma,
                beta,
                y,
                norm,
                mean,
                rstd,
            } => self.group_norm(*x, gamma, beta, *y, norm, mean, rstd),
            Op::Silu { x, y } => self.silu(*x, *y),
            Op::AddChannelBias { x, e, y } => self.add_channel_bias(*x, *e, *y),
            Op::Add { a, b, y } => self.add(*a, *b, *y),
            Op::Concat { a, b, y } => self.concat(*a, *b, *y),
            Op::Upsample { x, y } => self.upsample(*x, *y),
            Op::Shift { x, y, s } => self.shift(*x, *y, *s),
            Op::Attention {
                qkv,
                out,
                lse,
                heads,
            } => self.attention(*qkv, *out, lse, *heads),
            Op::Dropout { x, y, stream } => self.dropout(*x, *y, *stream),
            Op::TimestepEmbedding { .. } => Ok(()),
            Op::ClassEmbedding { table, y } => self.class_embedding(table, *y),
        }
    }

    /// Op::Conv: the weight and bias gradients, then ∂L/∂x unless x is a constant (the input image).
    fn conv(
        &mut self,
        x: Act,
        w: &str,
        b: &str,
        y: Act,
        stride: usize,
        saved: Option<&Tensor>,
    ) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_y = self.grads.get(y);
        if !self.input_grad {
            self.out.extend(conv2d::backward_weight(
                gpu,
                net.act(x),
                &d_y,
                &net.param_grad(gpu, w)?,
                Some(&net.param_grad(gpu, b)?),
                stride,
                Conv2dOptions {
                    saved_input: saved,
                    ..Default::default()
                },
            )?);
        }
        if self.wants(x) {
            let (d_x, accumulate) = self.grads.target(gpu, x, net.act(x))?;
            self.out.extend(conv2d::backward_input(
                gpu,
                &d_y,
                &net.param_value(gpu, w)?,
                &d_x,
                stride,
                Conv2dOptions {
                    accumulate,
                    ..Default::default()
                },
            )?);
        }
        Ok(())
    }

    /// Op::Conv's fused epilogue, after the convolution's own gradients (which read d_y before the residual may
    /// take its tensor): e's gradient as in [`Backward::add_channel_bias`], r's as one input of [`Backward::add`].
    fn conv_fused(&mut self, y: Act, fused: &Fused) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_y = self.grads.get(y);
        if let Some(e) = fused.time {
            self.grads.write(gpu, e, net.act(e), &mut self.out, |d_e| {
                Ok(vec![elementwise::channel_bias_backward(gpu, &d_y, d_e)?])
            })?;
        }
        if let Some(r) = fused.residual.filter(|r| !net.no_grad[r.0]) {
            self.grads.pass_through(gpu, r, &d_y, true, &mut self.out)?;
        }
        Ok(())
    }

    /// Op::Linear: the weight and bias gradients, then ∂L/∂x unless x is a constant.
    fn linear(&mut self, x: Act, w: &str, b: &str, y: Act) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_y = self.grads.get(y);
        if !self.input_grad {
            let d_w = net.param_grad(gpu, w)?;
            self.out
                .push(matmul::linear_backward_weight(gpu, &d_y, net.act(x), &d_w)?);
            let d_b = net.param_grad(gpu, b)?;
            self.out
                .push(matmul::linear_backward_bias(gpu, &d_y, &d_b)?);
        }
        if !net.no_grad[x.0] {
            let w = net.param_value(gpu, w)?;
            self.grads.write(gpu, x, net.act(x), &mut self.out, |d_x| {
                Ok(vec![matmul::linear_backward_input(gpu, &d_y, &w, d_x)?])
            })?;
        }
        Ok(())
    }

    /// Op::GroupNorm: ∂L/∂x, ∂L/∂γ and ∂L/∂β in one kernel.
    #[allow(clippy::too_many_arguments)] // one argument per field of Op::GroupNorm
    fn group_norm(
        &mut self,
        x: Act,
        gamma: &str,
        beta: &str,
        y: Act,
        norm: &GroupNorm,
        mean: &Tensor,
        rstd: &Tensor,
    ) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_y = self.grads.get(y);
        let (d_gamma, d_beta) = (net.param_grad(gpu, gamma)?, net.param_grad(gpu, beta)?);
        let (gamma, beta) = (net.param_value(gpu, gamma)?, net.param_value(gpu, beta)?);
        // d_gamma and d_beta are written whether or not x needs a gradient; x always does here.
        self.grads.write(gpu, x, net.act(x), &mut self.out, |d_x| {
            group_norm::group_norm_backward(
                gpu,
                norm,
                net.act(x),
                &gamma,
                &beta,
                mean,
                rstd,
                &d_y,
                d_x,
                &d_gamma,
                &d_beta,
            )
        })
    }

    /// Op::Silu: ∂L/∂x = ∂L/∂y · silu′(x).
    fn silu(&mut self, x: Act, y: Act) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_y = self.grads.get(y);
        self.grads.write(gpu, x, net.act(x), &mut self.out, |d_x| {
            Ok(vec![elementwise::silu_backward(
                gpu,
                net.act(x),
                &d_y,
                d_x,
            )?])
        })
    }

    /// Op::AddChannelBias: e's gradient sums d_y over the pixels; x's is d_y itself.
    fn add_channel_bias(&mut self, x: Act, e: Act, y: Act) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_y = self.grads.get(y);
        self.grads.write(gpu, e, net.act(e), &mut self.out, |d_e| {
            Ok(vec![elementwise::channel_bias_backward(gpu, &d_y, d_e)?])
        })?;
        self.grads.pass_through(gpu, x, &d_y, true, &mut self.out)?;
        Ok(())
    }

    /// Op::Add: both inputs that need a gradient take d_y, at most one of them by sharing its tensor.
    fn add(&mut self, l: Act, r: Act, y: Act) -> Result<()> {
        let d_y = self.grads.get(y);
        let mut shared = false;
        for input in [l, r] {
            if !self.net.no_grad[input.0] {
                shared |= self
                    .grads
                    .pass_through(self.gpu, input, &d_y, !shared, &mut self.out)?;
            }
        }
        Ok(())
    }

    /// Op::Concat: d_y split along channels into the two inputs' gradients.
    fn concat(&mut self, l: Act, r: Act, y: Act) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_y = self.grads.get(y);
        let (d_l, acc_l) = self.grads.scratch_or_target(gpu, l, net.act(l))?;
        let (d_r, acc_r) = self.grads.scratch_or_target(gpu, r, net.act(r))?;
        self.out
            .push(elementwise::split_channels(gpu, &d_y, &d_l, &d_r)?);
        self.grads.finish(gpu, l, d_l, acc_l, &mut self.out)?;
        self.grads.finish(gpu, r, d_r, acc_r, &mut self.out)
    }

    /// Op::Upsample: each input pixel's gradient sums its 2×2 block of d_y.
    fn upsample(&mut self, x: Act, y: Act) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_y = self.grads.get(y);
        self.grads.write(gpu, x, net.act(x), &mut self.out, |d_x| {
            Ok(vec![elementwise::upsample_nearest2x_backward(
                gpu, &d_y, d_x,
            )?])
        })
    }

    /// Op::Shift: the shift back, into x's size.
    fn shift(&mut self, x: Act, y: Act, s: i32) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_y = self.grads.get(y);
        self.grads.write(gpu, x, net.act(x), &mut self.out, |d_x| {
            Ok(vec![elementwise::shift(gpu, &d_y, -s, d_x)?])
        })
    }

    /// Op::Attention: ∂L/∂qkv from the saved log-sum-exp.
    fn attention(&mut self, qkv: Act, o: Act, lse: &Tensor, heads: usize) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        let d_o = self.grads.get(o);
        self.grads
            .write(gpu, qkv, net.act(qkv), &mut self.out, |d_qkv| {
                attention::attention_backward(
                    gpu,
                    net.act(qkv),
                    heads,
                    net.act(o),
                    lse,
                    &d_o,
                    d_qkv,
                )
            })
    }

    /// Op::Dropout: the forward's mask applied to d_y.
    fn dropout(&mut self, x: Act, y: Act, stream: u32) -> Result<()> {
        let (net, gpu, part) = (self.net, self.gpu, self.part);
        let d_y = self.grads.get(y);
        self.grads.write(gpu, x, net.act(x), &mut self.out, |d_x| {
            Ok(vec![net.dropout(gpu, part, &d_y, stream, d_x)?])
        })
    }

    /// Op::ClassEmbedding: the table's gradient, scattered by label (labels take none).
    fn class_embedding(&mut self, table: &str, y: Act) -> Result<()> {
        let (net, gpu) = (self.net, self.gpu);
        if self.input_grad {
            return Ok(());
        }
        let d_y = self.grads.get(y);
        let d_table = net.param_grad(gpu, table)?;
        self.out.push(embedding::class_embedding_backward(
            gpu,
            net.labels(),
            &d_y,
            &d_table,
        )?);
        Ok(())
    }
}

/// The gradient tensors of the activations during the construction of the backward pass.
struct Grads {
    tensors: Vec<Option<Tensor>>,
}

impl Grads {
    /// ∂L/∂act, which every consumer has written by the time its producer is differentiated.
    fn get(&self, act: Act) -> Tensor {
        self.tensors[act.0]
            .clone()
            .expect("the gradient of an activation is written before its producer runs")
    }

    /// Where to write ∂L/∂act: a fresh tensor (overwrite) or the existing one (the kernel adds to it).
    fn target(&mut self, gpu: &Gpu, act: Act, like: &Tensor) -> Result<(Tensor, bool)> {
        match &self.tensors[act.0] {
            Some(t) => Ok((t.clone(), true)),
            None => {
                let t = Tensor::zeros(gpu, like.shape(), DType::F32)?;
                self.tensors[act.0] = Some(t.clone());
                Ok((t, false))
            }
        }
    }

    /// For kernels that only overwrite: the gradient tensor itself if it is fresh, else a scratch tensor that
    /// [`Grads::finish`] adds in.
    fn scratch_or_target(&mut self, gpu: &Gpu, act: Act, like: &Tensor) -> Result<(Tensor, bool)> {
        match &self.tensors[act.0] {
            Some(_) => Ok((Tensor::zeros(gpu, like.shape(), DType::F32)?, true)),
            None => self.target(gpu, act, like),
        }
    }

    fn finish(
        &mut self,
        gpu: &Gpu,
        act: Act,
        written: Tensor,
        scratch: bool,
        out: &mut Vec<Dispatch>,
    ) -> Result<()> {
        if scratch {
            out.push(elementwise::axpy(gpu, 1.0, &written, &self.get(act))?);
        }
        Ok(())
    }

    /// Runs an overwriting kernel into ∂L/∂act, accumulating through a scratch tensor where needed.
    fn write(
        &mut self,
        gpu: &Gpu,
        act: Act,
        like: &Tensor,
        out: &mut Vec<Dispatch>,
        kernel: impl FnOnce(&Tensor) -> Result<Vec<Dispatch>>,
    ) -> Result<()> {
        let (dst, scratch) = self.scratch_or_target(gpu, act, like)?;
        out.extend(kernel(&dst)?);
        self.finish(gpu, act, dst, scratch, out)
    }

    /// ∂L/∂act += d_y for ops whose local Jacobian is the identity (additions). Returns whether `act` took d_y's
    /// tensor as its own gradient: allowed when `may_share` (d_y is final once its producer is differentiated, and
    /// no other live gradient holds that tensor), so each tensor is the gradient of at most one live activation.
    fn pass_through(
        &mut self,
        gpu: &Gpu,
        act: Act,
        d_y: &Tensor,
        may_share: bool,
        out: &mut Vec<Dispatch>,
    ) -> Result<bool> {
        match &self.tensors[act.0] {
            Some(existing) => {
                out.push(elementwise::axpy(gpu, 1.0, d_y, existing)?);
                Ok(false)
            }
            None if may_share => {
                self.tensors[act.0] = Some(d_y.clone());
                Ok(true)
            }
            None => {
                let copy = Tensor::zeros(gpu, d_y.shape(), DType::F32)?;
                out.push(elementwise::scale(gpu, d_y, 1.0, &copy)?);
                self.tensors[act.0] = Some(copy);
                Ok(false)
            }
        }
    }
}
