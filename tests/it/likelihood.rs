//! The exact likelihood's math (src/diffusion/likelihood.rs): the adaptive solver against closed-form solutions,
//! and the probability-flow log-density of the exact model of Gaussian data against the closed-form marginal
//! density, on every family's process.

use diffuse::diffusion::likelihood::{dopri45, log_density, Flow, Tolerance};
use diffuse::diffusion::process::{Objective, Sde};
use diffuse::diffusion::{BetaSchedule, Schedule};

#[test]
fn dopri45_solves_linear_and_forced_odes_to_its_tolerance() {
    // y' = −y·u from 0 to 3 (y = e^{−u²/2}) and y' = cos u (y = sin u), backwards too; tolerances 1e-8: the error
    // at the end is within 100× the tolerance times the size of y (the controller bounds local errors only).
    let tol = Tolerance {
        rtol: 1e-8,
        atol: 1e-8,
    };
    let mut decay = |u: f64, y: &[f64]| vec![-y[0] * u];
    let (y, solve) = dopri45(&mut decay, 0.0, 3.0, &[1.0], tol).unwrap();
    let want = (-4.5f64).exp();
    assert!(
        (y[0] - want).abs() <= 1e-6 * want.max(1e-8) + 1e-6,
        "{} vs {want}",
        y[0]
    );
    assert!(
        solve.evaluations == 2 + 6 * (solve.accepted + solve.rejected),
        "{solve:?}"
    );
    let mut forced = |u: f64, _: &[f64]| vec![u.cos()];
    let (y, _) = dopri45(&mut forced, 0.0, 10.0, &[0.0], tol).unwrap();
    assert!((y[0] - 10f64.sin()).abs() <= 1e-6, "{}", y[0]);
    let (y, _) = dopri45(&mut forced, 10.0, 0.0, &[10f64.sin()], tol).unwrap();
    assert!(y[0].abs() <= 1e-6, "{}", y[0]);
}

/// Data N(μ, s²·I) in D = 3; the exact ε̂ at (α, σ) and its divergence with respect to x̃ = x/α.
const MU: [f64; 3] = [0.5, -1.0, 0.2];
const S2: f64 = 0.09;

fn gaussian_flow(alpha: f64, sigma: f64, x_tilde: &[f64]) -> diffuse::Result<(Vec<f64>, Vec<f64>)> {
    let v = alpha * alpha * S2 + sigma * sigma;
    let eps = x_tilde
        .iter()
        .zip(MU.iter().cycle())
        .map(|(xt, m)| sigma * (alpha * xt - alpha * m) / v)
        .collect();
    let images = x_tilde.len() / 3;
    Ok((eps, vec![alpha * 3.0 * sigma / v; images]))
}

/// ln N(x; α·μ, (α²s² + σ²)·I): the marginal density of x at (α, σ).
fn marginal_logp(alpha: f64, sigma: f64, x: &[f64]) -> f64 {
    let v = alpha * alpha * S2 + sigma * sigma;
    x.iter()
        .zip(MU)
        .map(|(x, m)| {
            -0.5 * (2.0 * std::f64::consts::PI * v).ln() - (x - alpha * m).powi(2) / (2.0 * v)
        })
        .sum()
}

#[test]
fn the_flow_of_the_exact_model_gives_the_closed_form_density_on_every_process() {
    // Each process's α(σ̃) over its own range of σ̃, the prior the exact marginal at σ̃_hi (so only the solver
    // errs): ln p(x) at the data level must match the closed form within 1e-6·(1 + |ln p|) at rtol = atol = 1e-7
    // (measured: ≤ 4.2e-6 in 270–380 evaluations, the local errors of ~50 steps adding up). A wrong Jacobian term (D·ln α, 15 nats at VP's σ̃_hi) or sign would miss by far more.
    let tol = Tolerance {
        rtol: 1e-7,
        atol: 1e-7,
    };
    let ddpm = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    let ddpm_alpha = |ratio: f64| 1.0 / (1.0 + ratio * ratio).sqrt();
    let ab = &ddpm.alphas_cumprod;
    let ddpm_range = (
        ((1.0 - ab[999]) / ab[999]).sqrt(),
        ((1.0 - ab[0]) / ab[0]).sqrt(),
    );
    type AlphaAt = Box<dyn Fn(f64) -> f64>;
    let mut cases: Vec<(String, (f64, f64), AlphaAt)> =
        vec![("ddpm".into(), ddpm_range, Box::new(ddpm_alpha))];
    for name in ["ncsn", "ve", "vp", "subvp", "edm"] {
        let objective: Objective = name.parse().unwrap();
        let range = objective.ratio_range().unwrap();
        cases.push((
            name.into(),
            range,
            Box::new(move |ratio| objective.level_at_ratio(ratio).alpha),
        ));
    }
    for (name, (hi, lo), alpha) in &cases {
        // Two images solved as one system, as `diffuse eval --exact` solves a batch.
        let x = [0.4, -0.9, 0.1, 1.5, 0.3, -0.6];
        {
            let (a_hi, a_lo) = (alpha(*hi), alpha(*lo));
            let mut model = |xt: &[f64], ratio: f64| {
                let a = alpha(ratio);
                gaussian_flow(a, ratio * a, xt)
            };
            let prior = |x_hi: &[f64]| marginal_logp(a_hi, hi * a_hi, x_hi);
            let flow = Flow {
                lo: *lo,
                hi: *hi,
                alpha: &|r| alpha(r),
                eps_and_divergence: &mut model,
                prior_logp: &prior,
            };
            let (got, solve) = log_density(&x, 2, flow, tol).unwrap();
            for (image, got) in got.iter().enumerate() {
                let want = marginal_logp(a_lo, lo * a_lo, &x[3 * image..3 * image + 3]);
                assert!(
                    (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{name}, image {image}: {got} vs the closed form {want} ({solve:?})"
                );
            }
        }
    }
    // With the process's own prior instead (N(0, I), or N(0, σ_max²·I)), the error is the prior's mismatch: for
    // VP at σ̃_hi = 152, α_hi·μ ≈ 0.007 and the variance 1 − α_hi²(1 − s²): 0.0036 nats here.
    let vp: Objective = "vp".parse().unwrap();
    let (hi, lo) = vp.ratio_range().unwrap();
    let alpha = |r: f64| vp.level_at_ratio(r).alpha;
    let mut model = |xt: &[f64], ratio: f64| gaussian_flow(alpha(ratio), ratio * alpha(ratio), xt);
    let x = [0.4, -0.9, 0.1];
    let flow = Flow {
        lo,
        hi,
        alpha: &alpha,
        eps_and_divergence: &mut model,
        prior_logp: &|x_hi: &[f64]| Sde::VP.prior_logp(x_hi),
    };
    let (got, _) = log_density(&x, 1, flow, tol).unwrap();
    let want = marginal_logp(alpha(lo), lo * alpha(lo), &x);
    assert!((got[0] - want).abs() < 0.01, "{} vs {want}", got[0]);
}

#[test]
fn dopri45_starts_within_the_interval_and_refuses_a_collapsing_step() {
    // A nearly flat start (y' ≈ 0 at u0, so scipy's first guess is huge) must not probe far outside [u0, u1]:
    // the flow of a barely trained model is undefined there (σ̃ = e^600). And a solution that blows up (y' =
    // (1 − u)^−4 up to u = 1) makes the steps collapse or y overflow: an error, not a loop; so does a NaN.
    let tol = Tolerance {
        rtol: 1e-3,
        atol: 1e-3,
    };
    let mut probed = Vec::new();
    let mut flat_start = |u: f64, _: &[f64]| {
        probed.push(u);
        vec![1e-6 * u.exp()]
    };
    let (y, _) = dopri45(&mut flat_start, 0.0, 2.0, &[48.0], tol).unwrap();
    assert!(
        probed.iter().all(|&u| (0.0..=2.0).contains(&u)),
        "{probed:?}"
    );
    assert!(
        (y[0] - (48.0 + 1e-6 * (2f64.exp() - 1.0))).abs() < 1e-6,
        "{}",
        y[0]
    );
    let mut blows_up = |u: f64, _: &[f64]| vec![(1.0 - u).powi(-4)];
    let err = dopri45(&mut blows_up, 0.0, 2.0, &[0.0], tol)
        .unwrap_err()
        .to_string();
    assert!(err.contains("probability-flow ODE"), "{err}");
    let mut not_a_number = |u: f64, _: &[f64]| vec![if u > 1.0 { f64::NAN } else { 1.0 }];
    let err = dopri45(&mut not_a_number, 0.0, 2.0, &[0.0], tol)
        .unwrap_err()
        .to_string();
    assert!(err.contains("non-finite"), "{err}");
}
