//! CPU reference of shaders/conv2d_winograd.wgsl, in f64: the 3×3, stride-1, padding-1 convolution computed the
//! way the GPU computes it, with Winograd's F(4×4, 3×3) (Lavin & Gray 2016): for each 4×4 output tile,
//!
//!   Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A   (+ bias)
//!
//! with d_c the 6×6 input patch (zero outside the image) and g_c the 3×3 weights of input channel c.
//!
//! Two uses: in exact arithmetic this equals [`conv2d::forward`](super::conv2d::forward) (tests/it/conv2d.rs checks
//! that, which checks the matrices below); and with `magnitudes = true`, run on |x| and |w|, every matrix entry
//! and every input is replaced by its magnitude, which gives the Σ|terms| that bounds the rounding error of the
//! GPU's transforms (their intermediate values exceed the result, so the direct convolution's Σ|terms| does not
//! bound it).

use super::conv2d::Conv2dShape;

/// Bᵀ: the input transform (interpolation points 0, −1, 1, −2, 2 and ∞).
pub const BT: [[f64; 6]; 6] = [
    [4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
    [0.0, -4.0, -4.0, 1.0, 1.0, 0.0],
    [0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
    [0.0, -2.0, -1.0, 2.0, 1.0, 0.0],
    [0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
    [0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
];

/// G: the weight transform.
pub const G: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Aᵀ: the output transform.
pub const AT: [[f64; 6]; 4] = [
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    [0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
    [0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
    [0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
];

/// Output rows and columns per tile, and the side of the input patch a tile reads.
pub const TILE: usize = 4;
const PATCH: usize = 6;

/// y [N, Co, H, W] from x [N, Ci, H, W], w [Co, Ci, 3, 3] and an optional bias [Co], for `s` with k = 3,
/// stride 1, padding 1. With `magnitudes` every matrix entry is taken as its magnitude (see the module doc).
pub fn forward(
    s: &Conv2dShape,
    x: &[f64],
    w: &[f64],
    bias: Option<&[f64]>,
    magnitudes: bool,
) -> Vec<f64> {
    let (bt, g, at) = matrices(s, magnitudes);

    // U[o][c] = G g Gᵀ (6×6).
    let u: Vec<[[f64; 6]; 6]> = (0..s.co * s.ci)
        .map(|oc| {
            let taps = &w[oc * 9..oc * 9 + 9];
            let mut out = [[0.0; 6]; 6];
            for (a, row) in out.iter_mut().enumerate() {
                for (b, e) in row.iter_mut().enumerate() {
                    for r in 0..3 {
                        for c in 0..3 {
                            *e += g[a][r] * taps[r * 3 + c] * g[b][c];
                        }
                    }
                }
            }
            out
        })
        .collect();

    let (h, wd) = (s.h, s.w);
    let mut y = vec![0.0; s.y_len()];
    for n in 0..s.n {
        for ti in 0..h.div_ceil(TILE) {
            for tj in 0..wd.div_ceil(TILE) {
                let v = input_tiles(s, x, [n, ti, tj], &bt);
                for o in 0..s.co {
                    let mut z = [[0.0; 6]; 6];
                    for (c, vc) in v.iter().enumerate() {
                        let uc = &u[o * s.ci + c];
                        for a in 0..PATCH {
                            for b in 0..PATCH {
                                z[a][b] += uc[a][b] * vc[a][b];
                            }
                        }
                    }
                    let b0 = bias.map_or(0.0, |b| b[o]);
                    for i in 0..TILE {
                        for j in 0..TILE {
                            let (row, col) = (TILE * ti + i, TILE * tj + j);
                            if row >= h || col >= wd {
                                continue;
                            }
                            let mut e = b0;
                            for a in 0..PATCH {
                                for b in 0..PATCH {
                                    e += at[i][a] * z[a][b] * at[j][b];
                                }
                            }
                            y[((n * s.co + o) * h + row) * wd + col] = e;
                        }
                    }
                }
            }
        }
    }
    y
}

/// Bᵀ, G and Aᵀ, or their magnitudes, for `s`, which must be a 3×3 convolution with stride 1 and padding 1.
#[allow(clippy::type_complexity)] // the three matrices, named at every call site
fn matrices(s: &Conv2dShape, magnitudes: bool) -> (Vec<[f64; 6]>, Vec<[f64; 3]>, Vec<[f64; 6]>) {
    assert!(
        s.k == 3 && s.stride == 1 && s.pad == 1,
        "F(4×4, 3×3) is for 3×3 convolutions with stride 1 and padding 1, got {s:?}"
    );
    let m = |v: f64| if magnitudes { v.abs() } else { v };
    (
        BT.iter().map(|r| r.map(m)).collect(),
        G.iter().map(|r| r.map(m)).collect(),
        AT.iter().map(|r| r.map(m)).collect(),
    )
}

/// The weights w' [Ci, Co, 3, 3] whose forward is the backward input of w [Co, Ci, 3, 3] (stride 1, padding 1):
/// w'[c, o, u, v] = w[o, c, 2 − u, 2 − v].
pub fn flipped_transposed(s: &Conv2dShape, w: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; w.len()];
    for o in 0..s.co {
        for c in 0..s.ci {
            for t in 0..9 {
                out[(c * s.co + o) * 9 + t] = w[(o * s.ci + c) * 9 + 8 - t];
            }
        }
    }
    out
}

/// The shape of the forward that computes `s`'s backward input: channels swapped.
pub fn transposed_shape(s: &Conv2dShape) -> Conv2dShape {
    Conv2dShape {
        ci: s.co,
        co: s.ci,
        ..*s
    }
}

/// V[c] = Bᵀ d B for every input channel c of tile (ti, tj) of image n, d the 6×6 patch of x the tile reads (zero
/// outside the image), with `bt` = Bᵀ or its magnitudes.
fn input_tiles(
    s: &Conv2dShape,
    x: &[f64],
    [n, ti, tj]: [usize; 3],
    bt: &[[f64; 6]],
) -> Vec<[[f64; 6]; 6]> {
    let (h, wd) = (s.h, s.w);
    (0..s.ci)
        .map(|c| {
            let d = |r: usize, q: usize| -> f64 {
                let (row, col) = (TILE * ti + r, TILE * tj + q);
                // Patch (r, q) is input (row − 1, col − 1): zero outside the image.
                if row == 0 || col == 0 || row > h || col > wd {
                    0.0
                } else {
                    x[((n * s.ci + c) * h + row - 1) * wd + col - 1]
                }
            };
            let mut out = [[0.0; 6]; 6];
            for (a, row) in out.iter_mut().enumerate() {
                for (b, e) in row.iter_mut().enumerate() {
                    for r in 0..PATCH {
                        for q in 0..PATCH {
                            *e += bt[a][r] * d(r, q) * bt[b][q];
                        }
                    }
                }
            }
            out
        })
        .collect()
}

/// d_w [Co, Ci, 3, 3] from x [N, Ci, H, W] and d_y [N, Co, H, W] the way the GPU computes it: per tile
/// dZ = A dY Aᵀ (d_y zero past the image) and V = Bᵀ d B, dU = Σ_tiles dZ ⊙ V, then d_w = Gᵀ dU G (the chain rule
/// through [`forward`]'s linear maps). With `magnitudes` every matrix entry is taken as its magnitude.
pub fn backward_weight(s: &Conv2dShape, x: &[f64], d_y: &[f64], magnitudes: bool) -> Vec<f64> {
    let (bt, g, at) = matrices(s, magnitudes);
    let (h, wd) = (s.h, s.w);
    let mut du = vec![[[0.0; 6]; 6]; s.co * s.ci];
    for n in 0..s.n {
        for ti in 0..h.div_ceil(TILE) {
            for tj in 0..wd.div_ceil(TILE) {
                let v = input_tiles(s, x, [n, ti, tj], &bt);
                for o in 0..s.co {
                    let dy = |i: usize, j: usize| -> f64 {
                        let (row, col) = (TILE * ti + i, TILE * tj + j);
                        if row >= h || col >= wd {
                            0.0
                        } else {
                            d_y[((n * s.co + o) * h + row) * wd + col]
                        }
                    };
                    // dZ = A dY Aᵀ, A = (Aᵀ)ᵀ.
                    let mut dz = [[0.0; 6]; 6];
                    for (a, row) in dz.iter_mut().enumerate() {
                        for (b, e) in row.iter_mut().enumerate() {
                            for i in 0..TILE {
                                for j in 0..TILE {
                                    *e += at[i][a] * dy(i, j) * at[j][b];
                                }
                            }
                        }
                    }
                    for (c, vc) in v.iter().enumerate() {
                        let u = &mut du[o * s.ci + c];
                        for a in 0..PATCH {
                            for b in 0..PATCH {
                                u[a][b] += dz[a][b] * vc[a][b];
                            }
                        }
                    }
                }
            }
        }
    }
    let mut d_w = vec![0.0; s.w_len()];
    for (oc, u) in du.iter().enumerate() {
        for r in 0..3 {
            for q in 0..3 {
                let mut e = 0.0;
                for a in 0..PATCH {
                    for b in 0..PATCH {
                        e += g[a][r] * u[a][b] * g[b][q];
                    }
                }
                d_w[oc * 9 + r * 3 + q] = e;
            }
        }
    }
    d_w
}
