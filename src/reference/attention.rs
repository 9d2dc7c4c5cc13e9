//! CPU reference of shaders/attention.wgsl, in f64: multi-head self-attention over the H·W positions of a feature
//! map, laid out as the U-Net's 1×1 convolutions produce and consume it.
//!
//! Per batch entry n and head h (d = C/heads, L = H·W; q, k, v are [d, L] with q[e, i] = qkv[n, h·d + e, i] and k,
//! v at channel offsets C and 2C):
//!   S_ij = Σ_e q[e, i]·k[e, j] / √d,  P_ij = exp(S_ij − lse_i) with lse_i = log Σ_j exp(S_ij),
//!   out[e, i] = Σ_j P_ij·v[e, j].
//! Backward: with d_P_ij = Σ_e d_out[e, i]·v[e, j], the softmax Jacobian ∂P_ij/∂S_il = P_ij·(δ_jl − P_il) gives
//!   d_S_ij = P_ij·(d_P_ij − Σ_l P_il·d_P_il), and Σ_l P_il·d_P_il = Σ_e d_out[e, i]·out[e, i]; then
//!   d_q[e, i] = Σ_j d_S_ij·k[e, j]/√d,  d_k[e, j] = Σ_i d_S_ij·q[e, i]/√d,  d_v[e, j] = Σ_i P_ij·d_out[e, i].

/// qkv [n, 3c, L] with `heads` heads of size c/heads.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub heads: usize,
    pub l: usize,
}

impl Shape {
    /// Head size d = C/heads.
    pub fn d(&self) -> usize {
        self.c / self.heads
    }

    /// Index into qkv [N, 3C, L] of part (0 = q, 1 = k, 2 = v), batch n, head h, head channel e, position i.
    pub fn qkv(&self, part: usize, n: usize, h: usize, e: usize, i: usize) -> usize {
        ((n * 3 + part) * self.c + h * self.d() + e) * self.l + i
    }

    /// Index into out [N, C, L] of batch n, head h, head channel e, position i.
    pub fn out(&self, n: usize, h: usize, e: usize, i: usize) -> usize {
        (n * self.c + h * self.d() + e) * self.l + i
    }

    /// Index into a [N, heads, L, L] score tensor.
    pub fn score(&self, n: usize, h: usize, i: usize, j: usize) -> usize {
        ((n * self.heads + h) * self.l + i) * self.l + j
    }

    /// Index into lse [N, heads, L].
    pub fn row(&self, n: usize, h: usize, i: usize) -> usize {
        (n * self.heads + h) * self.l + i
    }
}

/// S [N, heads, L, L] = qᵀ·k/√d per head.
pub fn scores(qkv: &[f64], s: Shape) -> Vec<f64> {
    let scale = 1.0 / (s.d() as f64).sqrt();
    let mut out = vec![0.0; s.n * s.heads * s.l * s.l];
    for n in 0..s.n {
        for h in 0..s.heads {
            for i in 0..s.l {
                for j in 0..s.l {
                    let dot: f64 = (0..s.d())
                        .map(|e| qkv[s.qkv(0, n, h, e, i)] * qkv[s.qkv(1, n, h, e, j)])
                        .sum();
                    out[s.score(n, h, i, j)] = dot * scale;
                }
            }
        }
    }
    out
}

/// P = the row softmax of `scores`, and lse [N, heads, L].
pub fn softmax(scores: &[f64], s: Shape) -> (Vec<f64>, Vec<f64>) {
    let mut p = scores.to_vec();
    let lse = p
        .chunks_mut(s.l)
        .map(|row| {
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            row.iter_mut().for_each(|v| *v = (*v - lse).exp());
            lse
        })
        .collect();
    (p, lse)
}

/// (out [N, C, L], lse [N, heads, L]).
pub fn forward(qkv: &[f64], s: Shape) -> (Vec<f64>, Vec<f64>) {
    let (p, lse) = softmax(&scores(qkv, s), s);
    let mut out = vec![0.0; s.n * s.c * s.l];
    for n in 0..s.n {
        for h in 0..s.heads {
            for e in 0..s.d() {
                for i in 0..s.l {
                    out[s.out(n, h, e, i)] = (0..s.l)
                        .map(|j| p[s.score(n, h, i, j)] * qkv[s.qkv(2, n, h, e, j)])
                        .sum();
                }
            }
        }
    }
    (out, lse)
}

/// d_qkv [N, 3C, L] for an upstream gradient d_out [N, C, L].
pub fn backward(qkv: &[f64], d_out: &[f64], s: Shape) -> Vec<f64> {
    let scale = 1.0 / (s.d() as f64).sqrt();
    let (p, _) = softmax(&scores(qkv, s), s);
    let mut d_qkv = vec![0.0; qkv.len()];
    let (d, l) = (s.d(), s.l);
    for n in 0..s.n {
        for h in 0..s.heads {
            let p_at = |i: usize, j: usize| p[s.score(n, h, i, j)];
            let d_p = |i: usize, j: usize| -> f64 {
                (0..d)
                    .map(|e| d_out[s.out(n, h, e, i)] * qkv[s.qkv(2, n, h, e, j)])
                    .sum()
            };
            let mut d_s = vec![0.0; l * l];
            for i in 0..l {
                let row: Vec<f64> = (0..l).map(|j| d_p(i, j)).collect();
                let mean: f64 = (0..l).map(|j| p_at(i, j) * row[j]).sum();
                for j in 0..l {
                    d_s[i * l + j] = p_at(i, j) * (row[j] - mean);
                }
            }
            for e in 0..d {
                for j in 0..l {
                    d_qkv[s.qkv(2, n, h, e, j)] =
                        (0..l).map(|i| p_at(i, j) * d_out[s.out(n, h, e, i)]).sum();
                }
                for i in 0..l {
                    d_qkv[s.qkv(0, n, h, e, i)] = scale
                        * (0..l)
                            .map(|j| d_s[i * l + j] * qkv[s.qkv(1, n, h, e, j)])
                            .sum::<f64>();
                }
                for j in 0..l {
                    d_qkv[s.qkv(1, n, h, e, j)] = scale
                        * (0..l)
                            .map(|i| d_s[i * l + j] * qkv[s.qkv(0, n, h, e, i)])
                            .sum::<f64>();
                }
            }
        }
    }
    d_qkv
}
