//! CPU reference of shaders/elementwise.wgsl, in f64.

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub fn silu_forward(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v * sigmoid(v)).collect()
}

/// d/dx [x·σ(x)] = σ(x) + x·σ(x)·(1 − σ(x)).
pub fn silu_backward(x: &[f64], d_y: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(d_y)
        .map(|(&v, &g)| {
            let s = sigmoid(v);
            g * s * (1.0 + v * (1.0 - s))
        })
        .collect()
}

pub fn add_scaled(a: &[f64], b: &[f64], alpha: f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + alpha * y).collect()
}

/// [N, Ca, HW] ⧺ [N, Cb, HW] → [N, Ca+Cb, HW].
pub fn concat_channels(
    a: &[f64],
    b: &[f64],
    n: usize,
    ca: usize,
    cb: usize,
    hw: usize,
) -> Vec<f64> {
    let mut y = Vec::with_capacity(n * (ca + cb) * hw);
    for i in 0..n {
        y.extend_from_slice(&a[i * ca * hw..(i + 1) * ca * hw]);
        y.extend_from_slice(&b[i * cb * hw..(i + 1) * cb * hw]);
    }
    y
}

/// The inverse of [`concat_channels`]: d_y → (d_a, d_b).
pub fn split_channels(
    d_y: &[f64],
    n: usize,
    ca: usize,
    cb: usize,
    hw: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut d_a, mut d_b) = (Vec::new(), Vec::new());
    for i in 0..n {
        let row = &d_y[i * (ca + cb) * hw..(i + 1) * (ca + cb) * hw];
        d_a.extend_from_slice(&row[..ca * hw]);
        d_b.extend_from_slice(&row[ca * hw..]);
    }
    (d_a, d_b)
}

/// x [planes, H, W] → y [planes, 2H, 2W], nearest neighbour.
pub fn upsample_nearest2x_forward(x: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
    let mut y = vec![0.0; planes * 4 * h * w];
    for p in 0..planes {
        for oy in 0..2 * h {
            for ox in 0..2 * w {
                y[(p * 2 * h + oy) * 2 * w + ox] = x[(p * h + oy / 2) * w + ox / 2];
            }
        }
    }
    y
}

/// The adjoint of [`upsample_nearest2x_forward`]: each input gathers its 2×2 block.
pub fn upsample_nearest2x_backward(d_y: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
    let mut d_x = vec![0.0; planes * h * w];
    for p in 0..planes {
        for oy in 0..2 * h {
            for ox in 0..2 * w {
                d_x[(p * h + oy / 2) * w + ox / 2] += d_y[(p * 2 * h + oy) * 2 * w + ox];
            }
        }
    }
    d_x
}

/// y[p, r, q] = x[p, r + s, q + s] inside x's (h, w) plane, else 0, for `planes` planes of y's size `out`.
pub fn shift(
    x: &[f64],
    planes: usize,
    (h, w): (usize, usize),
    s: isize,
    out: (usize, usize),
) -> Vec<f64> {
    let (oh, ow) = out;
    let inside = |i: usize, size: usize| {
        let j = i as isize + s;
        (0..size as isize).contains(&j).then_some(j as usize)
    };
    let mut y = vec![0.0; planes * oh * ow];
    for p in 0..planes {
        for r in 0..oh {
            for q in 0..ow {
                if let (Some(rs), Some(qs)) = (inside(r, h), inside(q, w)) {
                    y[(p * oh + r) * ow + q] = x[(p * h + rs) * w + qs];
                }
            }
        }
    }
    y
}

/// y[r, j] = x[r, j] + e[r] for rows r = (n, c) of length hw.
pub fn add_channel_bias(x: &[f64], e: &[f64], hw: usize) -> Vec<f64> {
    x.iter().enumerate().map(|(i, v)| v + e[i / hw]).collect()
}

/// d_e[r] = Σ_j d_y[r, j].
pub fn channel_bias_backward(d_y: &[f64], hw: usize) -> Vec<f64> {
    d_y.chunks(hw).map(|row| row.iter().sum()).collect()
}
