//! Exact log-likelihood through the probability-flow ODE (Song et al. 2021, appendix D.2; score_sde's
//! `likelihood.py`), in the one coordinate every family shares: x̃ = x/α at σ̃ = σ/α, where the flow is
//! dx̃/dσ̃ = ε̂(x) whatever the process. Integrated in u = ln σ̃ from the data's level to the prior's by an adaptive
//! Dormand–Prince 5(4) solver, with the log-density carried along:
//!
//! ```text
//!   dx̃/du = σ̃·ε̂(α·x̃),      d(Δ)/du = σ̃·div_x̃ ε̂ = σ̃·α·div_x ε̂
//!   ln p_lo(x̃_lo) = ln p_hi(x̃_hi) + Δ,        (d ln p(x̃(σ̃))/dσ̃ = −div of the flow)
//!   ln p(x) = ln p̃_lo(x/α_lo) − D·ln α_lo,    ln p̃_hi(x̃) = ln prior(α_hi·x̃) + D·ln α_hi
//! ```
//! The divergence comes from the caller: exact for the Gaussian model of the tests, Skilling–Hutchinson's
//! E_v[vᵀ·(∂ε̂/∂x̃)·v] for a network. Plain f64; the GPU's part (the network and its vector–Jacobian product) plugs
//! in as `flow`. The solver's controller is scipy's `RK45` (its default tolerances 1e-3/1e-6 are score_sde's
//! `rtol = atol = 1e-5` here, stated by the caller).

use crate::error::{Error, Result};

/// Error tolerances of the adaptive solver: a step is accepted when the embedded error estimate e satisfies
/// √(mean((e_i/(atol + rtol·max(|y_i|, |y'_i|)))²)) ≤ 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// score_sde's likelihood tolerances.
    pub const SCORE_SDE: Tolerance = Tolerance {
        rtol: 1e-5,
        atol: 1e-5,
    };
}

/// What an ODE solve took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Solve {
    /// Evaluations of the right-hand side.
    pub evaluations: usize,
    /// Steps accepted and rejected.
    pub accepted: usize,
    pub rejected: usize,
}

/// Dormand & Prince 1980, RK5(4)7M: nodes, the stage matrix, the fifth-order weights and their difference from
/// the embedded fourth-order ones (scipy's `RK45` tableau; FSAL: the last stage is the next step's first).
const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
const E: [f64; 7] = [
    -71.0 / 57600.0,
    0.0,
    71.0 / 16695.0,
    -71.0 / 1920.0,
    17253.0 / 339200.0,
    -22.0 / 525.0,
    1.0 / 40.0,
];

/// The most steps one solve may take before it is called stiff or mis-posed.
pub const MAX_STEPS: usize = 100_000;

/// The right-hand side y' = f(u, y).
type Rhs<'a> = dyn FnMut(f64, &[f64]) -> Vec<f64> + 'a;

/// √(mean(v²)): scipy's RMS norm of a scaled error.
fn rms(v: &[f64]) -> f64 {
    (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt()
}

/// Each element's error scale atol + rtol·max(|a_i|, |b_i|).
fn error_scale(tol: Tolerance, a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| tol.atol + tol.rtol * x.abs().max(y.abs()))
        .collect()
}

/// scipy's `select_initial_step`: h0 from the scaled sizes of y and y' = k0, refined by one Euler probe (one
/// evaluation of f), and kept within the interval's `span` as scipy ≥ 1.11 has it (a slow start would otherwise
/// probe far outside it).
fn first_step(
    f: &mut Rhs,
    u: f64,
    y: &[f64],
    k0: &[f64],
    direction: f64,
    span: f64,
    tol: Tolerance,
) -> f64 {
    let sc = error_scale(tol, y, y);
    let scaled = |v: &[f64]| rms(&v.iter().zip(&sc).map(|(a, s)| a / s).collect::<Vec<_>>());
    let (d0, d1) = (scaled(y), scaled(k0));
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        (0.01 * d0 / d1).min(span)
    };
    let probe: Vec<f64> = y
        .iter()
        .zip(k0)
        .map(|(a, k)| a + direction * h0 * k)
        .collect();
    let k_probe = f(u + direction * h0, &probe);
    let change: Vec<f64> = k_probe.iter().zip(k0).map(|(a, b)| a - b).collect();
    let d2 = scaled(&change) / h0;
    let h1 = if d1.max(d2) <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(0.2)
    };
    (100.0 * h0).min(h1).min(span)
}

/// One Dormand–Prince step of signed size `dh` from (u, y) with y' = k0 there: the fifth-order solution, its
/// scaled error's RMS norm, and f at the new point (the seventh stage: FSAL). Six evaluations of f.
fn dopri_step(
    f: &mut Rhs,
    u: f64,
    y: &[f64],
    k0: &[f64],
    dh: f64,
    tol: Tolerance,
) -> (Vec<f64>, f64, Vec<f64>) {
    let combine = |k: &[Vec<f64>], weights: &[f64]| -> Vec<f64> {
        (0..y.len())
            .map(|i| weights.iter().zip(k).map(|(w, kj)| w * kj[i]).sum::<f64>())
            .collect()
    };
    let mut k = vec![k0.to_vec()];
    for s in 1..7 {
        let ys: Vec<f64> = y
            .iter()
            .zip(combine(&k, &A[s][..s]))
            .map(|(a, d)| a + dh * d)
            .collect();
        k.push(f(u + dh * C[s], &ys));
    }
    // The sixth stage's point is the fifth-order solution; the seventh stage is f there.
    let y_new: Vec<f64> = y
        .iter()
        .zip(combine(&k, &A[6]))
        .map(|(a, d)| a + dh * d)
        .collect();
    let sc = error_scale(tol, y, &y_new);
    let error: Vec<f64> = combine(&k, &E)
        .iter()
        .zip(&sc)
        .map(|(e, s)| dh * e / s)
        .collect();
    let k_new = k.pop().expect("seven stages");
    (y_new, rms(&error), k_new)
}

/// y(u1) for y' = f(u, y), y(u0) = y0, by Dormand–Prince 5(4) with scipy's step-size control (safety 0.9, factor
/// in [0.2, 10], error exponent −1/5; the first step from [`first_step`]).
pub fn dopri45(
    f: &mut Rhs,
    u0: f64,
    u1: f64,
    y0: &[f64],
    tol: Tolerance,
) -> Result<(Vec<f64>, Solve)> {
    let direction = (u1 - u0).signum();
    let (mut u, mut y) = (u0, y0.to_vec());
    let mut k0 = f(u, &y);
    let mut h = first_step(f, u, &y, &k0, direction, (u1 - u0).abs(), tol);
    let mut solve = Solve {
        evaluations: 2,
        accepted: 0,
        rejected: 0,
    };
    while direction * (u1 - u) > 0.0 {
        // A step too small to move u (or a non-finite one) would loop for ever.
        if !(h.is_finite() && u + direction * h != u) {
            return Err(Error::Usage(format!(
                "the probability-flow ODE's step fell to {h:e} at u = {u}: the model's flow is not smooth there"
            )));
        }
        if solve.accepted + solve.rejected >= MAX_STEPS {
            return Err(Error::Usage(format!(
                "the probability-flow ODE took more than {MAX_STEPS} steps at u = {u}: loosen the tolerance"
            )));
        }
        h = h.min((u1 - u).abs());
        let (y_new, e, k_new) = dopri_step(f, u, &y, &k0, direction * h, tol);
        solve.evaluations += 6;
        if e.is_nan() {
            return Err(Error::Usage(format!(
                "the probability-flow ODE met a non-finite value at u = {u}"
            )));
        }
        if e <= 1.0 {
            (u, y, k0) = (u + direction * h, y_new, k_new);
            solve.accepted += 1;
            h *= if e == 0.0 {
                10.0
            } else {
                (0.9 * e.powf(-0.2)).clamp(0.2, 10.0)
            };
        } else {
            solve.rejected += 1;
            h *= (0.9 * e.powf(-0.2)).max(0.2);
        }
    }
    Ok((y, solve))
}

/// (ε̂(x), div_x̃ ε̂ per image) at x̃ (a batch, flat) and σ̃: the model evaluated at x = α·x̃, and each image's
/// divergence with respect to its x̃ (exact, or a Hutchinson estimate).
pub type EpsAndDivergence<'a> = dyn FnMut(&[f64], f64) -> Result<(Vec<f64>, Vec<f64>)> + 'a;

/// What [`log_density`] needs of a model and its process.
pub struct Flow<'a> {
    /// σ̃ of the data's level and of the prior's (σ̃_lo < σ̃_hi).
    pub lo: f64,
    pub hi: f64,
    /// α at σ̃ (1 for VE-type processes).
    pub alpha: &'a dyn Fn(f64) -> f64,
    pub eps_and_divergence: &'a mut EpsAndDivergence<'a>,
    /// ln of the prior's density at one image's x_hi = α_hi·x̃_hi (the process's prior, or in tests the exact
    /// marginal).
    pub prior_logp: &'a dyn Fn(&[f64]) -> f64,
}

/// ln p(x) of each of `images` images (x flat, images × D) at the flow's data level, by the probability-flow ODE
/// (the module header) solved as one system, as score_sde does with a batch; and what the solve took.
pub fn log_density(
    x: &[f64],
    images: usize,
    flow: Flow,
    tol: Tolerance,
) -> Result<(Vec<f64>, Solve)> {
    if !(flow.lo > 0.0 && flow.hi > flow.lo) {
        return Err(Error::Usage(format!(
            "the likelihood's flow needs 0 < σ̃_lo < σ̃_hi, got {} and {}",
            flow.lo, flow.hi
        )));
    }
    if images == 0 || !x.len().is_multiple_of(images) {
        return Err(Error::Usage(format!(
            "{} values are not {images} images",
            x.len()
        )));
    }
    let (n, d) = (x.len(), x.len() / images);
    let (alpha_lo, alpha_hi) = ((flow.alpha)(flow.lo), (flow.alpha)(flow.hi));
    let mut y: Vec<f64> = x.iter().map(|v| v / alpha_lo).collect();
    y.extend(std::iter::repeat_n(0.0, images));
    let eps_and_div = flow.eps_and_divergence;
    // The right-hand side cannot fail inside the solver: the first error is kept and the solve stopped by NaN.
    let mut failure = None;
    let mut rhs = |u: f64, y: &[f64]| {
        let sigma = u.exp();
        match eps_and_div(&y[..n], sigma) {
            Ok((eps, div)) => {
                let mut dy: Vec<f64> = eps.iter().map(|e| sigma * e).collect();
                dy.extend(div.iter().map(|v| sigma * v));
                dy
            }
            Err(e) => {
                failure.get_or_insert(e);
                vec![f64::NAN; y.len()]
            }
        }
    };
    let solved = dopri45(&mut rhs, flow.lo.ln(), flow.hi.ln(), &y, tol);
    if let Some(e) = failure {
        return Err(e);
    }
    let (end, solve) = solved?;
    let df = d as f64;
    let densities = (0..images)
        .map(|i| {
            let x_hi: Vec<f64> = end[i * d..(i + 1) * d]
                .iter()
                .map(|v| alpha_hi * v)
                .collect();
            let prior = (flow.prior_logp)(&x_hi) + df * alpha_hi.ln();
            prior + end[n + i] - df * alpha_lo.ln()
        })
        .collect();
    Ok((densities, solve))
}
