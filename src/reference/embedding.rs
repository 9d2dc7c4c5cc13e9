//! CPU reference of shaders/embedding.wgsl, in f64.

/// freq_i = exp(−ln(max_period)·i/(half − shift)) for i < half.
fn frequencies(half: usize, max_period: f64, shift: usize) -> Vec<f64> {
    (0..half)
        .map(|i| (-max_period.ln() * i as f64 / (half - shift) as f64).exp())
        .collect()
}

/// Sinusoidal timestep embedding (improved-diffusion's `timestep_embedding`; Ho et al.'s frequencies with shift
/// 1): for each t, with half = ⌊D/2⌋ and freq_i = exp(−ln(max_period)·i/(half − shift)), the row
/// [cos(t·freq_0..half), sin(t·freq_0..half)] and, for odd D, a trailing 0. Returns [N, D] row-major.
pub fn timestep_embedding(t: &[f64], dim: usize, (max_period, shift): (f64, usize)) -> Vec<f64> {
    let half = dim / 2;
    let freq = frequencies(half, max_period, shift);
    let mut emb = Vec::with_capacity(t.len() * dim);
    for &tn in t {
        emb.extend(freq.iter().map(|f| (tn * f).cos()));
        emb.extend(freq.iter().map(|f| (tn * f).sin()));
        if dim % 2 == 1 {
            emb.push(0.0);
        }
    }
    emb
}

/// The arguments t·freq_i behind each column of [`timestep_embedding`] (0 for the padding column): the GPU's
/// error grows with them.
pub fn timestep_arguments(t: &[f64], dim: usize, (max_period, shift): (f64, usize)) -> Vec<f64> {
    let half = dim / 2;
    let freq = frequencies(half, max_period, shift);
    let mut args = Vec::with_capacity(t.len() * dim);
    for &tn in t {
        for _ in 0..2 {
            args.extend(freq.iter().map(|f| tn * f));
        }
        if dim % 2 == 1 {
            args.push(0.0);
        }
    }
    args
}

/// y[n, :] = table[labels[n], :] for table [classes, D]; a label ≥ classes gives a zero row.
pub fn class_embedding_forward(
    labels: &[u32],
    table: &[f64],
    classes: usize,
    dim: usize,
) -> Vec<f64> {
    let mut y = Vec::with_capacity(labels.len() * dim);
    for &label in labels {
        let c = label as usize;
        if c < classes {
            y.extend_from_slice(&table[c * dim..(c + 1) * dim]);
        } else {
            y.extend(std::iter::repeat_n(0.0, dim));
        }
    }
    y
}

/// d_table[c, :] = Σ_{n: labels[n] = c} d_y[n, :]; labels ≥ classes contribute nothing.
pub fn class_embedding_backward(
    labels: &[u32],
    d_y: &[f64],
    classes: usize,
    dim: usize,
) -> Vec<f64> {
    let mut d_table = vec![0.0; classes * dim];
    for (n, &label) in labels.iter().enumerate() {
        let c = label as usize;
        if c < classes {
            for j in 0..dim {
                d_table[c * dim + j] += d_y[n * dim + j];
            }
        }
    }
    d_table
}
