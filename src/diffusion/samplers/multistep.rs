//! Multistep solvers on x̂₀ over noise levels: DPM-Solver++(2M) and UniPC.

use super::level::{check_walk, NoiseLevel};
use super::plan::{Corrector, History, Multistep, Plan, Step, X0Bound};
use crate::error::Result;

/// x̂₀ = p·x + q·ε̂ at a level: (1/α, −σ/α).
fn x0_from_epsilon(level: &NoiseLevel) -> (f64, f64) {
    (1.0 / level.alpha, -level.sigma / level.alpha)
}

/// φ = e^(−h) − 1 for the step from λ_s to λ_t (h = λ_t − λ_s), −1 where t is clean data (h = ∞).
fn phi(from: &NoiseLevel, to: &NoiseLevel) -> f64 {
    if to.sigma == 0.0 {
        -1.0
    } else {
        (-(to.lambda() - from.lambda())).exp_m1()
    }
}

/// A multistep step from level s to t (a = σ_t/σ_s, x̂₀ from ε̂ at s), with its history weights and corrector.
fn multistep_step(
    s: NoiseLevel,
    t: NoiseLevel,
    bound: X0Bound,
    corrector: Option<Corrector>,
    b: History,
) -> Step {
    let (p, q) = x0_from_epsilon(&s);
    Step::Multistep(Multistep {
        level: s,
        p,
        q,
        bound,
        corrector,
        a: t.sigma / s.sigma,
        b,
    })
}

/// DPM-Solver++(2M) (Lu et al. 2022, algorithm 2; diffusers' DPMSolverMultistepScheduler with
/// `algorithm_type="dpmsolver++"`, `solver_type="midpoint"`, order 2): one evaluation per level, stepping in
/// λ = log(α/σ) with the data prediction m = x̂₀. From level s to t, h = λ_t − λ_s, and with the previous level s'
/// (h' = λ_s − λ_s'):
///
/// ```text
///   first order (the first step; DDIM):  x_t = (σ_t/σ_s)·x − α_t·(e^(−h) − 1)·m
///   second order (midpoint):             x_t = (σ_t/σ_s)·x − α_t·(e^(−h) − 1)·(m + (h/2h')·(m − m'))
/// ```
/// The last step is first order where it lands on clean data (σ = 0, where the second-order term is unbounded),
/// and also, with `lower_order_final`, where there are fewer than 15 levels (diffusers' rule: it steadies few-step
/// runs). `end` is where the last step lands: [`NoiseLevel::CLEAN`] (diffusers' `final_sigmas_type="zero"`) or
/// the smallest training level (`"sigma_min"`). x̂₀ is bounded by `bound` before use (diffusers' thresholding).
pub fn dpm_solver_2m(
    levels: &[NoiseLevel],
    end: NoiseLevel,
    lower_order_final: bool,
    bound: X0Bound,
) -> Result<Plan> {
    check_walk(levels, &end)?;
    let n = levels.len();
    let steps = (0..n)
        .map(|i| {
            let (s, t) = (levels[i], levels.get(i + 1).copied().unwrap_or(end));
            let last = i + 1 == n;
            let first_order = i == 0 || (last && (t.sigma == 0.0 || (lower_order_final && n < 15)));
            let k = -t.alpha * phi(&s, &t);
            let b = if first_order {
                History {
                    m: k,
                    ..History::default()
                }
            } else {
                // (m − m')/r with r = h'/h; written with h/h' so that h = 0 (a repeated level) gives 0, not ∞·0.
                let ratio = (t.lambda() - s.lambda()) / (s.lambda() - levels[i - 1].lambda());
                History {
                    m: k * (1.0 + ratio / 2.0),
                    m1: -k * ratio / 2.0,
                    m2: 0.0,
                }
            };
            multistep_step(s, t, bound, None, b)
        })
        .collect();
    Ok(Plan {
        name: format!("dpm-solver++(2m) {n} steps"),
        init_scale: 1.0,
        steps,
    })
}

/// UniPC (Zhao et al. 2023) of order 2 with B(h) = e^h − 1 ("bh2"), on the data prediction, as diffusers'
/// UniPCMultistepScheduler: at each level the model's x̂₀ m first corrects the sample the previous step produced
/// (UniC, which reuses this evaluation, so the corrector costs no extra one), then the predictor (UniP) steps
/// from the corrected sample. With hh = −h and B = e^hh − 1 (h = λ_t − λ_s):
///
/// ```text
///   UniP, order 1:  x_t = (σ_t/σ_s)·x_c − α_t·B·m
///   UniP, order 2:  x_t = (σ_t/σ_s)·x_c − α_t·B·m − α_t·B·½·(m' − m)/r,       r = (λ_s' − λ_s)/h
///   UniC at t, with the previous corrected sample x_s and m_s, m_s' (orders as the predictor that led here):
///     order 1:      x_c = (σ_t/σ_s)·x_s − α_t·B·m_s − α_t·B·½·(m_t − m_s)
///     order 2:      x_c = (σ_t/σ_s)·x_s − α_t·B·m_s − α_t·B·(ρ₀·(m_s' − m_s)/r + ρ₁·(m_t − m_s))
///                   with (ρ₀, ρ₁) solving [[1, 1], [r, 1]]·ρ = (g₁, g₂)/B, g₁ = (e^hh − 1)/hh − 1,
///                   g₂ = 2·(g₁/hh − ½)  (UniPC's φ-functions, r = (λ_s' − λ_s)/h)
/// ```
/// Order 1 on the first step (no history yet) and where the step lands on clean data; with `lower_order_final`
/// also on the last step (diffusers' default). `end` and `bound` as for [`dpm_solver_2m`].
pub fn unipc_bh2(
    levels: &[NoiseLevel],
    end: NoiseLevel,
    lower_order_final: bool,
    bound: X0Bound,
) -> Result<Plan> {
    check_walk(levels, &end)?;
    let n = levels.len();
    // The predictor's order at step i (diffusers' `this_order`): warm-up, then 2 unless lowered at the end.
    let order = |i: usize| {
        let t = levels.get(i + 1).copied().unwrap_or(end);
        let cap = if lower_order_final { (n - i).min(2) } else { 2 };
        if t.sigma == 0.0 {
            1
        } else {
            cap.min(i.min(2) + 1)
        }
    };
    let steps = (0..n)
        .map(|i| {
            let s = levels[i];
            let t = levels.get(i + 1).copied().unwrap_or(end);
            let corrector = (i > 0).then(|| {
                // UniC from level i − 1 to level i, at the order of the predictor that stepped it.
                let (from, to) = (levels[i - 1], s);
                let hh = -(to.lambda() - from.lambda());
                let big_b = phi(&from, &to);
                let (g1, g2) = {
                    let g1 = big_b / hh - 1.0;
                    (g1, 2.0 * (g1 / hh - 0.5))
                };
                let at = to.alpha;
                let history = if order(i - 1) == 1 {
                    History {
                        m: -at * big_b * 0.5,
                        m1: -at * big_b + at * big_b * 0.5,
                        m2: 0.0,
                    }
                } else {
                    let r = (levels[i - 2].lambda() - from.lambda()) / -hh;
                    let (b1, b2) = (g1 / big_b, g2 / big_b);
                    let rho0 = (b1 - b2) / (1.0 - r);
                    let rho1 = b1 - rho0;
                    History {
                        m: -at * big_b * rho1,
                        m1: -at * big_b + at * big_b * (rho0 / r + rho1),
                        m2: -at * big_b * rho0 / r,
                    }
                };
                Corrector {
                    s: to.sigma / from.sigma,
                    history,
                }
            });
            let big_b = phi(&s, &t);
            let b = if order(i) == 1 {
                History {
                    m: -t.alpha * big_b,
                    ..History::default()
                }
            } else {
                // ½·(m' − m)/r with r = (λ_s' − λ_s)/h.
                let half_over_r =
                    0.5 * (t.lambda() - s.lambda()) / (levels[i - 1].lambda() - s.lambda());
                History {
                    m: -t.alpha * big_b + t.alpha * big_b * half_over_r,
                    m1: -t.alpha * big_b * half_over_r,
                    m2: 0.0,
                }
            };
            multistep_step(s, t, bound, corrector, b)
        })
        .collect();
    Ok(Plan {
        name: format!("unipc bh2 {n} steps"),
        init_scale: 1.0,
        steps,
    })
}
