//! CPU reference of shaders/matmul.wgsl, in f64: the batched product with transposes, and `linear` (PyTorch
//! layout: weight [out, in], y = x·wᵀ + b) with its three gradients.

/// Shape of one product C[b] = op(A[b])·op(B[b]), where op(A) is [m, k] and op(B) is [k, n]. Storage is
/// row-major: A is [batch, m, k], or [batch, k, m] when `trans_a`; B is [batch, k, n], or [batch, n, k] when
/// `trans_b`; C is [batch, m, n].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl MatmulShape {
    pub fn a_len(&self) -> usize {
        self.batch * self.m * self.k
    }

    pub fn b_len(&self) -> usize {
        self.batch * self.k * self.n
    }

    pub fn c_len(&self) -> usize {
        self.batch * self.m * self.n
    }

    /// op(A)[b, i, l] as an index into A's storage.
    fn a_index(&self, b: usize, i: usize, l: usize) -> usize {
        let (m, k) = (self.m, self.k);
        b * m * k + if self.trans_a { l * m + i } else { i * k + l }
    }

    /// op(B)[b, l, j] as an index into B's storage.
    fn b_index(&self, b: usize, l: usize, j: usize) -> usize {
        let (k, n) = (self.k, self.n);
        b * k * n + if self.trans_b { j * k + l } else { l * n + j }
    }
}

/// C[b, i, j] = Σ_l op(A)[b, i, l]·op(B)[b, l, j].
pub fn matmul(a: &[f64], b: &[f64], s: &MatmulShape) -> Vec<f64> {
    assert_eq!(
        a.len(),
        s.a_len(),
        "A holds {} elements, {s:?} needs {}",
        a.len(),
        s.a_len()
    );
    assert_eq!(
        b.len(),
        s.b_len(),
        "B holds {} elements, {s:?} needs {}",
        b.len(),
        s.b_len()
    );
    let mut c = vec![0.0; s.c_len()];
    for bt in 0..s.batch {
        for i in 0..s.m {
            for j in 0..s.n {
                c[(bt * s.m + i) * s.n + j] = (0..s.k)
                    .map(|l| a[s.a_index(bt, i, l)] * b[s.b_index(bt, l, j)])
                    .sum();
            }
        }
    }
    c
}

/// y [rows, out] = x [rows, in] · wᵀ (w: [out, in]) + bias [out].
pub fn linear_forward(
    x: &[f64],
    w: &[f64],
    bias: Option<&[f64]>,
    rows: usize,
    inp: usize,
    out: usize,
) -> Vec<f64> {
    let s = MatmulShape {
        batch: 1,
        m: rows,
        n: out,
        k: inp,
        trans_a: false,
        trans_b: true,
    };
    let mut y = matmul(x, w, &s);
    if let Some(bias) = bias {
        for row in y.chunks_mut(out) {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
    }
    y
}

/// d_x [rows, in] = d_y [rows, out] · w [out, in].
pub fn linear_backward_input(
    d_y: &[f64],
    w: &[f64],
    rows: usize,
    inp: usize,
    out: usize,
) -> Vec<f64> {
    matmul(
        d_y,
        w,
        &MatmulShape {
            batch: 1,
            m: rows,
            n: inp,
            k: out,
            trans_a: false,
            trans_b: false,
        },
    )
}

/// d_w [out, in] = d_yᵀ · x, with d_y [rows, out] and x [rows, in].
pub fn linear_backward_weight(
    d_y: &[f64],
    x: &[f64],
    rows: usize,
    inp: usize,
    out: usize,
) -> Vec<f64> {
    matmul(
        d_y,
        x,
        &MatmulShape {
            batch: 1,
            m: out,
            n: inp,
            k: rows,
            trans_a: true,
            trans_b: false,
        },
    )
}

/// d_b[j] = Σ_r d_y[r, j].
pub fn linear_backward_bias(d_y: &[f64], out: usize) -> Vec<f64> {
    let mut d_b = vec![0.0; out];
    for row in d_y.chunks(out) {
        d_b.iter_mut().zip(row).for_each(|(acc, v)| *acc += v);
    }
    d_b
}
