//! CPU reference of shaders/conv2d.wgsl (and conv2d_subgroup.wgsl), in f64: 2-D convolution over NCHW with
//! PyTorch semantics (cross-correlation, zero padding), weight [Co, Ci, k, k], optional bias [Co].
//!
//!   forward:          y[n,o,i,j]   = b[o] + Σ_{c,u,v} w[o,c,u,v] · x[n, c, s·i + u − p, s·j + v − p]
//!   backward input:   d_x[n,c,h,w] = Σ_{o,u,v} d_y[n,o,i,j] · w[o,c,u,v]
//!                                    over the (i, j) with s·i + u − p = h and s·j + v − p = w
//!   backward weight:  d_w[o,c,u,v] = Σ_{n,i,j} d_y[n,o,i,j] · x[n, c, s·i + u − p, s·j + v − p]
//!   backward bias:    d_b[o]       = Σ_{n,i,j} d_y[n,o,i,j]
//!
//! Out-of-range x reads are zero. Output size: Ho = ⌊(H + 2p − k) / s⌋ + 1 (so ⌈H/2⌉ for k = 3, s = 2, p = 1).
//! All four are linear in each argument, so calling them on |inputs| gives Σ|terms| for the error bounds.

/// The geometry of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub n: usize,
    pub ci: usize,
    pub co: usize,
    pub h: usize,
    pub w: usize,
    /// Kernel size (square).
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv2dShape {
    pub fn ho(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn wo(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn x_len(&self) -> usize {
        self.n * self.ci * self.h * self.w
    }

    pub fn y_len(&self) -> usize {
        self.n * self.co * self.ho() * self.wo()
    }

    pub fn w_len(&self) -> usize {
        self.co * self.ci * self.k * self.k
    }

    /// 2·N·Co·Ho·Wo·Ci·k²: the multiply-adds of the forward (and of each backward).
    pub fn flops(&self) -> f64 {
        2.0 * (self.n * self.co * self.ho() * self.wo() * self.ci * self.k * self.k) as f64
    }

    /// The input coordinate read by output coordinate `o` at tap `t`, if inside the image.
    fn source(&self, o: usize, t: usize, size: usize) -> Option<usize> {
        (self.stride * o + t)
            .checked_sub(self.pad)
            .filter(|&i| i < size)
    }

    /// Calls `f(x_index, y_index, w_index)` for every multiply-add of the convolution.
    fn for_each_term(&self, mut f: impl FnMut(usize, usize, usize)) {
        let (ho, wo, k) = (self.ho(), self.wo(), self.k);
        for n in 0..self.n {
            for o in 0..self.co {
                for c in 0..self.ci {
                    for u in 0..k {
                        for i in 0..ho {
                            let Some(h) = self.source(i, u, self.h) else {
                                continue;
                            };
                            for v in 0..k {
                                let wi = ((o * self.ci + c) * k + u) * k + v;
                                for j in 0..wo {
                                    let Some(w) = self.source(j, v, self.w) else {
                                        continue;
                                    };
                                    let xi = ((n * self.ci + c) * self.h + h) * self.w + w;
                                    let yi = ((n * self.co + o) * ho + i) * wo + j;
                                    f(xi, yi, wi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y [N, Co, Ho, Wo] from x [N, Ci, H, W], w [Co, Ci, k, k] and an optional bias [Co].
pub fn forward(s: &Conv2dShape, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
    let plane = s.ho() * s.wo();
    let mut y: Vec<f64> = (0..s.y_len())
        .map(|i| bias.map_or(0.0, |b| b[(i / plane) % s.co]))
        .collect();
    s.for_each_term(|xi, yi, wi| y[yi] += w[wi] * x[xi]);
    y
}

/// d_x [N, Ci, H, W] from d_y [N, Co, Ho, Wo] and w: the adjoint of [`forward`] in x.
pub fn backward_input(s: &Conv2dShape, d_y: &[f64], w: &[f64]) -> Vec<f64> {
    let mut d_x = vec![0.0; s.x_len()];
    s.for_each_term(|xi, yi, wi| d_x[xi] += w[wi] * d_y[yi]);
    d_x
}

/// d_w [Co, Ci, k, k] from x and d_y: the adjoint of [`forward`] in w.
pub fn backward_weight(s: &Conv2dShape, x: &[f64], d_y: &[f64]) -> Vec<f64> {
    let mut d_w = vec![0.0; s.w_len()];
    s.for_each_term(|xi, yi, wi| d_w[wi] += d_y[yi] * x[xi]);
    d_w
}

/// d_b [Co] = Σ over n, i, j of d_y.
pub fn backward_bias(s: &Conv2dShape, d_y: &[f64]) -> Vec<f64> {
    let plane = s.ho() * s.wo();
    let mut d_b = vec![0.0; s.co];
    for (i, g) in d_y.iter().enumerate() {
        d_b[(i / plane) % s.co] += g;
    }
    d_b
}

/// Element-wise |v|, for the Σ|terms| of the error bounds.
pub fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}
