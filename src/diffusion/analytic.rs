//! The exact model: for data from a mixture of isotropic Gaussians the optimal predictions E[ε | x], E[x₀ | x],
//! E[v | x] and the score ∇ log p(x) at any noise level are closed-form, so the samplers can be tested without a
//! network. No wgpu here; shaders/analytic.wgsl computes the same on the GPU (reference: src/reference/analytic.rs).
//!
//! Data: p(x₀) = Σ_k w_k·N(x₀; μ_k, s_k²·I) in R^D (`factorized = false`), or the product over coordinates d of the
//! one-dimensional mixtures Σ_k w_k·N(x₀_d; μ_kd, s_k²) (`factorized = true`: every coordinate independent, e.g.
//! 8-bit data as 256 point masses per coordinate). s_k² = 0 is a point mass.
//!
//! At a noise level x = α·x₀ + σ·ε (see [`NoiseLevel`]), component k's marginal is N(α·μ_k, v_k·I) with
//! v_k = α²·s_k² + σ², and the posterior weight of component k is r_k(x) ∝ w_k·N(x; α·μ_k, v_k·I) (over the whole
//! vector, or per coordinate when factorized). Within component k, x₀ and ε are jointly Gaussian with x, so
//!
//! ```text
//!   E[ε  | x, k] = (σ/v_k)·(x − α·μ_k)
//!   E[x₀ | x, k] = μ_k + (α·s_k²/v_k)·(x − α·μ_k)
//!   ∇ log N(x; α·μ_k, v_k) = −(x − α·μ_k)/v_k
//! ```
//! and each prediction is the r-weighted average of its per-component value g_k = c1_k·(x − α·μ_k) + c2·μ_k:
//!
//! | prediction | c1_k                     | c2  |
//! |------------|--------------------------|-----|
//! | ε          | σ/v_k                    | 0   |
//! | x₀         | α·s_k²/v_k               | 1   |
//! | v = αε−σx₀ | α·σ·(1 − s_k²)/v_k       | −σ  |
//! | score      | −1/v_k                   | 0   |
//!
//! (The score of a mixture is Σ_k r_k·∇ log N_k: the weights r_k are exactly the ones that make this hold.)

use crate::diffusion::samplers::{Multistep, NoiseLevel, Plan, Prediction, Step};
use crate::error::{Error, Result};

/// A mixture of isotropic Gaussians (see the module header).
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianMixture {
    /// w_k, positive, summing to 1.
    pub weights: Vec<f64>,
    /// μ_k ∈ R^D, [K][D].
    pub means: Vec<Vec<f64>>,
    /// s_k² ≥ 0.
    pub variances: Vec<f64>,
    /// Coordinates independent (a product of 1-D mixtures) instead of one mixture over R^D.
    pub factorized: bool,
}

impl GaussianMixture {
    /// N(μ, s²·I).
    pub fn gaussian(mean: Vec<f64>, variance: f64) -> Result<GaussianMixture> {
        Self::new(vec![1.0], vec![mean], vec![variance], false)
    }

    pub fn new(
        weights: Vec<f64>,
        means: Vec<Vec<f64>>,
        variances: Vec<f64>,
        factorized: bool,
    ) -> Result<GaussianMixture> {
        let k = weights.len();
        let bad = |m: String| Err(Error::Usage(format!("Gaussian mixture: {m}")));
        if k == 0 || means.len() != k || variances.len() != k {
            return bad(format!(
                "{k} weights, {} means and {} variances: need the same number ≥ 1 of each",
                means.len(),
                variances.len()
            ));
        }
        let d = means[0].len();
        if d == 0 || means.iter().any(|m| m.len() != d) {
            return bad("every mean must have the same dimension ≥ 1".to_string());
        }
        if weights.iter().any(|&w| w.is_nan() || w <= 0.0)
            || (weights.iter().sum::<f64>() - 1.0).abs() > 1e-9
        {
            return bad(format!(
                "weights must be positive and sum to 1, got {weights:?}"
            ));
        }
        if variances.iter().any(|&v| v.is_nan() || v < 0.0) {
            return bad(format!("variances must be ≥ 0, got {variances:?}"));
        }
        Ok(GaussianMixture {
            weights,
            means,
            variances,
            factorized,
        })
    }

    /// D, the data dimension.
    pub fn dim(&self) -> usize {
        self.means[0].len()
    }

    /// K, the number of components.
    pub fn components(&self) -> usize {
        self.weights.len()
    }

    /// The per-component coefficients (c1_k, c2) of `prediction` at `level` (table in the module header).
    pub fn coefficients(&self, k: usize, level: &NoiseLevel, prediction: Prediction) -> (f64, f64) {
        let (a, s) = (level.alpha, level.sigma);
        let s2 = self.variances[k];
        let v = a * a * s2 + s * s;
        match prediction {
            Prediction::Epsilon => (s / v, 0.0),
            Prediction::Sample => (a * s2 / v, 1.0),
            Prediction::Velocity => (a * s * (1.0 - s2) / v, -s),
            Prediction::Score => (-1.0 / v, 0.0),
        }
    }

    /// log(w_k·N(x_dims; α·μ_k, v_k)) over the coordinates `dims` of one sample x.
    fn log_joint(
        &self,
        k: usize,
        x: &[f64],
        dims: std::ops::Range<usize>,
        level: &NoiseLevel,
    ) -> f64 {
        let (a, s) = (level.alpha, level.sigma);
        let v = a * a * self.variances[k] + s * s;
        let n = dims.len() as f64;
        let sq: f64 = dims.map(|d| (x[d] - a * self.means[k][d]).powi(2)).sum();
        self.weights[k].ln() - 0.5 * n * (2.0 * std::f64::consts::PI * v).ln() - 0.5 * sq / v
    }

    /// Posterior weights r_k(x) of one sample x ∈ R^D, over the whole vector ([K]), or per coordinate when
    /// factorized ([D][K]; then `dims` selects coordinate d alone).
    fn responsibilities(
        &self,
        x: &[f64],
        dims: std::ops::Range<usize>,
        level: &NoiseLevel,
    ) -> Vec<f64> {
        let logs: Vec<f64> = (0..self.components())
            .map(|k| self.log_joint(k, x, dims.clone(), level))
            .collect();
        let m = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logs.iter().map(|l| (l - m).exp()).collect();
        let total: f64 = e.iter().sum();
        e.into_iter().map(|v| v / total).collect()
    }

    /// The exact prediction of kind `prediction` for one sample x ∈ R^D at `level`.
    pub fn predict(&self, x: &[f64], level: &NoiseLevel, prediction: Prediction) -> Vec<f64> {
        let d_all = self.dim();
        let joint = (!self.factorized).then(|| self.responsibilities(x, 0..d_all, level));
        (0..d_all)
            .map(|d| {
                let r = match &joint {
                    Some(r) => r.clone(),
                    None => self.responsibilities(x, d..d + 1, level),
                };
                (0..self.components())
                    .map(|k| {
                        let (c1, c2) = self.coefficients(k, level, prediction);
                        let mu = self.means[k][d];
                        r[k] * (c1 * (x[d] - level.alpha * mu) + c2 * mu)
                    })
                    .sum()
            })
            .collect()
    }

    /// The exact prediction for a batch x: [N·D].
    pub fn predict_batch(&self, x: &[f64], level: &NoiseLevel, prediction: Prediction) -> Vec<f64> {
        x.chunks(self.dim())
            .flat_map(|xs| self.predict(xs, level, prediction))
            .collect()
    }

    /// Mean of each coordinate: Σ_k w_k·μ_kd.
    pub fn mean(&self) -> Vec<f64> {
        (0..self.dim())
            .map(|d| {
                (0..self.components())
                    .map(|k| self.weights[k] * self.means[k][d])
                    .sum()
            })
            .collect()
    }

    /// Variance of each coordinate: Σ_k w_k·(s_k² + μ_kd²) − mean_d².
    pub fn variance(&self) -> Vec<f64> {
        let mean = self.mean();
        (0..self.dim())
            .map(|d| {
                (0..self.components())
                    .map(|k| self.weights[k] * (self.variances[k] + self.means[k][d].powi(2)))
                    .sum::<f64>()
                    - mean[d].powi(2)
            })
            .collect()
    }
}

/// The mean and variance of each coordinate of the output of `plan` run with the exact model of a single Gaussian
/// N(μ, s²I) (K = 1), starting from x = init_scale·z: exact in f64, with no sampling error, because every step is
/// then an affine map of x (and of a multistep solver's state) plus independent Gaussian noise
/// (ε*(x) = (σ/v)(x − αμ) is affine). What a sampler's samples converge to; the difference from (μ, s²) is the
/// sampler's discretisation error. Steps that bound x̂₀ are not affine and are refused.
pub fn gaussian_moments_after(data: &GaussianMixture, plan: &Plan) -> Result<Vec<(f64, f64)>> {
    if data.components() != 1 {
        return Err(Error::Usage(
            "moments are propagated exactly for a single Gaussian only".to_string(),
        ));
    }
    (0..data.dim())
        .map(|d| {
            // The state u = (x, s, m₁, m₂) of a multistep solver (src/diffusion/samplers/plan.rs, `Multistep`) is
            // Gaussian: mean vector and covariance, each step an affine map u ← A·u + k + c·z·e_x.
            let mut moments = StateMoments {
                mean: [0.0; 4],
                cov: [[0.0; 4]; 4],
            };
            moments.cov[0][0] = data_init_var(plan);
            for step in &plan.steps {
                moments.advance(&AffineStep::of(data, step, d)?);
            }
            Ok((moments.mean[0], moments.cov[0][0]))
        })
        .collect()
}

/// ε*(x) = g·x + h at a level, coordinate d: the exact model of a single Gaussian, affine in x.
fn affine_eps(data: &GaussianMixture, level: &NoiseLevel, d: usize) -> (f64, f64) {
    let (g, _) = data.coefficients(0, level, Prediction::Epsilon);
    (g, -g * level.alpha * data.means[0][d])
}

/// The refusal of a step that bounds x̂₀, whose output is no affine map of x.
fn not_affine<T>() -> Result<T> {
    Err(Error::Usage(
        "steps that bound x̂₀ are not affine: no exact moments".to_string(),
    ))
}

/// One sampler step as an affine map of the solver state u = (x, s, m₁, m₂): u ← A·u + k + c·z·e_x.
struct AffineStep {
    a: [[f64; 4]; 4],
    k: [f64; 4],
    c: f64,
}

impl AffineStep {
    /// The map of `step` at coordinate d (a non-multistep step keeps s, m₁, m₂ as they are).
    fn of(data: &GaussianMixture, step: &Step, d: usize) -> Result<AffineStep> {
        let mut a = [[0.0; 4]; 4];
        let mut k = [0.0; 4];
        for (i, row) in a.iter_mut().enumerate().skip(1) {
            row[i] = 1.0;
        }
        let mut c = 0.0;
        match *step {
            Step::Linear {
                level,
                a: ax,
                b,
                c: cz,
            } => {
                let (g, h) = affine_eps(data, &level, d);
                a[0][0] = ax + b * g;
                k[0] = b * h;
                c = cz;
            }
            Step::Heun {
                level,
                next,
                a: ax,
                b,
                churn,
            } => {
                let (g1, h1) = affine_eps(data, &level, d);
                let (g2, h2) = affine_eps(data, &next, d);
                let (p1, p0) = (ax + b * g1, b * h1); // x' = p1·x + p0
                let half = b / 2.0;
                a[0][0] = ax + half * (g1 + g2 * p1);
                k[0] = half * (h1 + g2 * p0 + h2);
                // From x̂ = p·x + q·z: the map's slope times each.
                if let Some(ch) = churn {
                    c = a[0][0] * ch.q;
                    a[0][0] *= ch.p;
                }
            }
            Step::Clipped { .. } => return not_affine(),
            Step::Multistep(ref m) => {
                if m.bound != crate::diffusion::samplers::X0Bound::None {
                    return not_affine();
                }
                (a, k) = multistep_map(m, affine_eps(data, &m.level, d));
            }
        }
        Ok(AffineStep { a, k, c })
    }
}

/// A multistep solver step's A and k (it draws no noise), from ε*(x) = g·x + h at its level.
fn multistep_map(m: &Multistep, (g, h): (f64, f64)) -> ([[f64; 4]; 4], [f64; 4]) {
    // m = (p + q·g)·x + q·h, as a row over u.
    let row_m = [m.p + m.q * g, 0.0, 0.0, 0.0];
    let k_m = m.q * h;
    // x_c as a row over u (and constant).
    let (row_c, k_c) = match m.corrector {
        Some(cr) => {
            let w = cr.history;
            let mut row = [0.0, cr.s, w.m1, w.m2];
            for (r, &v) in row.iter_mut().zip(&row_m) {
                *r += w.m * v;
            }
            (row, w.m * k_m)
        }
        None => ([1.0, 0.0, 0.0, 0.0], 0.0),
    };
    let b = m.b;
    let mut row_y = [0.0, 0.0, b.m1, b.m2];
    for j in 0..4 {
        row_y[j] += m.a * row_c[j] + b.m * row_m[j];
    }
    (
        [row_y, row_c, row_m, [0.0, 0.0, 1.0, 0.0]],
        [m.a * k_c + b.m * k_m, k_c, k_m, 0.0],
    )
}

/// The solver state's Gaussian law, which the steps carry forward exactly.
struct StateMoments {
    mean: [f64; 4],
    cov: [[f64; 4]; 4],
}

impl StateMoments {
    /// The law after one step: mean ← A·mean + k, covariance ← A·C·Aᵀ + c²·e_x·e_xᵀ.
    fn advance(&mut self, step: &AffineStep) {
        let (a, k, c) = (step.a, step.k, step.c);
        let (mean, mut cov) = (self.mean, self.cov);
        let mut new_mean = k;
        for i in 0..4 {
            for j in 0..4 {
                new_mean[i] += a[i][j] * mean[j];
            }
        }
        // A·C·Aᵀ + c²·e_x·e_xᵀ
        let mut ac = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                ac[i][j] = (0..4).map(|l| a[i][l] * cov[l][j]).sum();
            }
        }
        for i in 0..4 {
            for j in 0..4 {
                cov[i][j] = (0..4).map(|l| ac[i][l] * a[j][l]).sum();
            }
        }
        cov[0][0] += c * c;
        (self.mean, self.cov) = (new_mean, cov);
    }
}

fn data_init_var(plan: &Plan) -> f64 {
    plan.init_scale * plan.init_scale
}

/// The exact probability-flow map from the noise level of x_init = N(α·μ, α²s² + σ²) marginal back to the data
/// N(μ, s²) for a single Gaussian: x₀ = μ + s·(x − α·μ)/√(α²s² + σ²), coordinate by coordinate. DDIM with η = 0
/// converges to it as the number of steps grows.
pub fn gaussian_flow_map(data: &GaussianMixture, level: &NoiseLevel, x: &[f64]) -> Vec<f64> {
    let d_all = data.dim();
    let s2 = data.variances[0];
    let scale = (s2 / (level.alpha * level.alpha * s2 + level.sigma * level.sigma)).sqrt();
    x.iter()
        .enumerate()
        .map(|(i, &xi)| {
            let mu = data.means[0][i % d_all];
            mu + scale * (xi - level.alpha * mu)
        })
        .collect()
}
