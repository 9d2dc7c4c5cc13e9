//! Schedules against closed forms and pinned values. The conformance table below was computed independently
//! (Python, f64, straight from the formulas in Ho et al. 2020 and Nichol & Dhariwal 2021); a refactor that changes
//! any schedule coefficient beyond 1e-12 relative fails here.

use diffuse::diffusion::{timestep, BetaSchedule, Schedule};

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs()
}

#[test]
fn conformance_table_pins_schedule_coefficients() {
    let linear = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    let cosine = Schedule::new(BetaSchedule::COSINE, 1000).unwrap();
    // (what, got, want)
    let table = [
        ("linear ᾱ[0]", linear.alphas_cumprod[0], 0.9999),
        (
            "linear ᾱ[499]",
            linear.alphas_cumprod[499],
            0.07858724288177821,
        ),
        (
            "linear ᾱ[999]",
            linear.alphas_cumprod[999],
            4.0358297653756754e-05,
        ),
        (
            "linear β̃[1]",
            linear.posterior_variance[1],
            5.4531876613021935e-05,
        ),
        (
            "linear β̃[999]",
            linear.posterior_variance[999],
            0.01999998352656061,
        ),
        ("cosine β[0]", cosine.betas[0], 4.128422482196914e-05),
        ("cosine ᾱ[0]", cosine.alphas_cumprod[0], 0.999958715775178),
        (
            "cosine ᾱ[499]",
            cosine.alphas_cumprod[499],
            0.4938435904406382,
        ),
        (
            "cosine ᾱ[999]",
            cosine.alphas_cumprod[999],
            2.4287669070348567e-09,
        ),
        ("cosine β[999] (clipped)", cosine.betas[999], 0.999),
        (
            "cosine posterior_mean_coef1[10]",
            cosine.posterior_mean_coef1[10],
            0.12459223552239282,
        ),
    ];
    for (what, got, want) in table {
        assert!(
            close(got, want, 1e-12),
            "{what}: got {got:e}, want {want:e}"
        );
    }
}

#[test]
fn linear_schedule_has_the_ddpm_endpoints() {
    let s = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    assert_eq!(s.num_steps(), 1000);
    assert!(close(s.betas[0], 1e-4, 1e-15) && close(s.betas[999], 0.02, 1e-15));
    // ᾱ_T of DDPM's linear schedule ≈ 4.04e-5: x at the last index is almost pure noise.
    assert!(s.alphas_cumprod[999] < 5e-5 && s.alphas_cumprod[999] > 3e-5);
}

#[test]
fn cosine_alpha_bar_is_f_of_t_over_f_of_0_where_unclipped() {
    let (t_max, s_off) = (1000.0, 0.008);
    let f = |t: f64| {
        (((t / t_max + s_off) / (1.0 + s_off)) * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    let s = Schedule::new(BetaSchedule::COSINE, 1000).unwrap();
    // Index t is paper step t + 1, so ᾱ[t] = f(t + 1)/f(0) for every t before the clip at β = 0.999 bites.
    for t in [0, 1, 10, 500, 900, 990] {
        assert!(
            close(s.alphas_cumprod[t], f(t as f64 + 1.0) / f(0.0), 1e-10),
            "t = {t}"
        );
    }
    assert!(s.betas.iter().all(|&b| b <= 0.999));
}

#[test]
fn derived_tables_satisfy_their_definitions() {
    for kind in [BetaSchedule::LINEAR, BetaSchedule::COSINE] {
        for steps in [1, 2, 7, 1000] {
            let s = Schedule::new(kind, steps).unwrap();
            for t in 0..steps {
                let ab = s.alphas_cumprod[t];
                let prev = if t == 0 { 1.0 } else { s.alphas_cumprod[t - 1] };
                assert!(close(s.alphas_cumprod_prev[t], prev, 1e-15));
                assert!(close(ab, prev * s.alphas[t], 1e-14));
                assert!(close(
                    s.sqrt_alphas_cumprod[t].powi(2) + s.sqrt_one_minus_alphas_cumprod[t].powi(2),
                    1.0,
                    1e-14
                ));
                assert!(close(
                    s.sqrt_recip_alphas_cumprod[t] * s.sqrt_alphas_cumprod[t],
                    1.0,
                    1e-14
                ));
                // β̃_t matches its definition and never exceeds β_t.
                let var = s.betas[t] * (1.0 - prev) / (1.0 - ab);
                assert!(
                    close(s.posterior_variance[t], var, 1e-12)
                        || (var == 0.0 && s.posterior_variance[t] == 0.0)
                );
                assert!(s.posterior_variance[t] <= s.betas[t] * (1.0 + 1e-12));
            }
            // Index 0: the posterior is a point mass (β̃_0 = 0), x_{-1} is x_0 itself.
            assert_eq!(s.posterior_variance[0], 0.0);
            assert!(close(s.posterior_mean_coef1[0], 1.0, 1e-12));
        }
    }
}

#[test]
fn posterior_mean_recovers_x0_consistently() {
    // With x_t = √ᾱ_t·x0 (no noise), μ̃ = coef1·x0 + coef2·x_t must equal √ᾱ_{t−1}·x0 (the noiseless x_{t−1}).
    let s = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    for t in [0, 1, 100, 999] {
        let x0 = 0.7;
        let mean = s.posterior_mean_coef1[t] * x0
            + s.posterior_mean_coef2[t] * s.sqrt_alphas_cumprod[t] * x0;
        assert!(
            close(mean, s.alphas_cumprod_prev[t].sqrt() * x0, 1e-12),
            "t = {t}"
        );
    }
}

#[test]
fn timestep_convention_walks_down_and_adds_no_noise_at_the_end() {
    let order: Vec<usize> = timestep::sampling_order(5).collect();
    assert_eq!(order, [4, 3, 2, 1, 0]);
    assert!(timestep::adds_noise(1) && !timestep::adds_noise(0));
}

#[test]
fn bad_schedules_are_refused() {
    assert!(Schedule::new(BetaSchedule::LINEAR, 0).is_err());
    let err = Schedule::new(
        BetaSchedule::Linear {
            beta_start: 0.0,
            beta_end: 0.02,
        },
        10,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("β[0]"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------------
// Zero terminal SNR (Lin et al. 2024, algorithm 1) and Min-SNR-γ weights (Hang et al. 2023).
// ---------------------------------------------------------------------------------------------------------------

use diffuse::diffusion::schedule::SAMPLING_TERMINAL_ALPHA_BAR;
use diffuse::diffusion::{NamedSchedule, Prediction};

#[test]
fn the_zero_terminal_snr_rescale_zeroes_the_last_alpha_bar_and_keeps_the_first() {
    for kind in [BetaSchedule::LINEAR, BetaSchedule::COSINE] {
        for t_max in [2usize, 3, 1000] {
            let base = Schedule::new(kind, t_max).unwrap();
            let z = base.rescaled_zero_terminal_snr().unwrap();
            let what = format!("{kind:?} T={t_max}");
            assert_eq!(z.alphas_cumprod[t_max - 1], 0.0, "{what}: ᾱ_(T−1)");
            assert_eq!(z.alphas_cumprod[0], base.alphas_cumprod[0], "{what}: ᾱ_0");
            assert_eq!(z.betas[t_max - 1], 1.0, "{what}: β_(T−1)");
            assert!(z.zero_terminal_snr() && !base.zero_terminal_snr());
            for t in 0..t_max {
                assert!(
                    z.betas[t] > 0.0 && z.betas[t] <= 1.0,
                    "{what}: β[{t}] = {}",
                    z.betas[t]
                );
                // α_t = 1 − β_t and ᾱ = Π α: the tables agree with each other (one rounding per product).
                let product: f64 = z.alphas[..=t].iter().product();
                assert!(
                    (product - z.alphas_cumprod[t]).abs() <= 4.0 * (t + 1) as f64 * f64::EPSILON,
                    "{what}: Πα[..={t}] = {product}, ᾱ = {}",
                    z.alphas_cumprod[t]
                );
                // √ᾱ' is the affine map of √ᾱ that sends √ᾱ_(T−1) to 0 and fixes √ᾱ_0.
                let (s0, s_last) = (
                    base.sqrt_alphas_cumprod[0],
                    base.sqrt_alphas_cumprod[t_max - 1],
                );
                let want = (base.sqrt_alphas_cumprod[t] - s_last) * s0 / (s0 - s_last);
                assert!(
                    (z.sqrt_alphas_cumprod[t] - want).abs() <= 1e-15,
                    "{what}: √ᾱ'[{t}] = {} vs {want}",
                    z.sqrt_alphas_cumprod[t]
                );
            }
            // The posterior tables stay finite at the last index (β̃ = 1 − ᾱ_(T−2), coef2 = 0).
            let last = t_max - 1;
            assert!(z.posterior_variance[last].is_finite() && z.posterior_mean_coef2[last] == 0.0);
        }
    }
}

#[test]
fn the_zero_terminal_snr_rescale_matches_the_pinned_values_of_diffusers_algorithm() {
    // Computed independently (plain Python, f64) by porting diffusers' `rescale_zero_terminal_snr`
    // (src/diffusers/schedulers/scheduling_ddim.py: √ᾱ shifted by √ᾱ_(T−1), scaled by √ᾱ_0/(√ᾱ_0 − √ᾱ_(T−1)),
    // squared, un-cumprod'ed, β = 1 − α) onto the same base schedules. diffusers itself runs it in f32, so its
    // tables agree with these to ~1e-6 relative; the f64 port pins ours to 1e-10 (the cancellation
    // √ᾱ_t − √ᾱ_(T−1) near the end costs two or three of f64's 16 digits).
    let linear = Schedule::new(BetaSchedule::LINEAR, 1000)
        .unwrap()
        .rescaled_zero_terminal_snr()
        .unwrap();
    let cosine = Schedule::new(BetaSchedule::COSINE, 1000)
        .unwrap()
        .rescaled_zero_terminal_snr()
        .unwrap();
    let table = [
        ("linear ᾱ[1]", linear.alphas_cumprod[1], 0.9997793254331531),
        (
            "linear ᾱ[499]",
            linear.alphas_cumprod[499],
            0.07602875054711472,
        ),
        (
            "linear ᾱ[998]",
            linear.alphas_cumprod[998],
            4.213262465088072e-09,
        ),
        ("linear β[0]", linear.betas[0], 9.999999999998899e-05),
        ("linear β[500]", linear.betas[500], 0.010292617426392092),
        ("linear β[998]", linear.betas[998], 0.7522672311504667),
        ("cosine ᾱ[1]", cosine.alphas_cumprod[1], 0.9999125736533471),
        (
            "cosine ᾱ[499]",
            cosine.alphas_cumprod[499],
            0.4938230007559878,
        ),
        (
            "cosine ᾱ[998]",
            cosine.alphas_cumprod[998],
            2.277811478992018e-06,
        ),
        ("cosine β[0]", cosine.betas[0], 4.128422482208016e-05),
        ("cosine β[500]", cosine.betas[500], 0.0031559125879835337),
        ("cosine β[998]", cosine.betas[998], 0.7579675808279058),
    ];
    for (what, got, want) in table {
        assert!(close(got, want, 1e-10), "{what}: {got} vs {want}");
    }
    assert!(Schedule::new(BetaSchedule::LINEAR, 1)
        .unwrap()
        .rescaled_zero_terminal_snr()
        .is_err());
    // The named schedule of a run builds the same table.
    let built = NamedSchedule::Cosine.build(1000, true).unwrap();
    assert_eq!(built.alphas_cumprod, cosine.alphas_cumprod);
    assert_eq!(
        NamedSchedule::Linear
            .build(1000, false)
            .unwrap()
            .alphas_cumprod,
        Schedule::new(BetaSchedule::LINEAR, 1000)
            .unwrap()
            .alphas_cumprod
    );
}

#[test]
fn sampling_sees_a_small_positive_terminal_alpha_bar_and_nothing_else_changes() {
    assert_eq!(SAMPLING_TERMINAL_ALPHA_BAR, 2f64.powi(-24));
    // Cosine: ᾱ_998 = 2.3·10⁻⁶, so the terminal ᾱ is diffusers' 2⁻²⁴; linear: ᾱ_998 = 4.2·10⁻⁹ < 2⁻²⁴, so it is
    // half of that, and ᾱ still decreases strictly.
    for (named, want) in [
        (NamedSchedule::Cosine, None),
        (NamedSchedule::Linear, Some(0.5)),
    ] {
        let z = named.build(1000, true).unwrap();
        let s = z.for_sampling();
        let terminal = want.map_or(SAMPLING_TERMINAL_ALPHA_BAR, |f| f * z.alphas_cumprod[998]);
        assert_eq!(s.alphas_cumprod[999], terminal, "{named}");
        assert_eq!(s.alphas_cumprod[..999], z.alphas_cumprod[..999], "{named}");
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]), "{named}");
        assert!(
            s.betas.iter().all(|&b| b > 0.0 && b < 1.0),
            "{named}: every step's β in (0, 1)"
        );
        assert!(s.sqrt_recip_alphas_cumprod.iter().all(|v| v.is_finite()));
    }
    // A schedule with a nonzero terminal ᾱ is used as it is.
    let linear = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    assert_eq!(linear.for_sampling().alphas_cumprod, linear.alphas_cumprod);
}

/// The targets' errors in terms of the x₀ error, at one noise level: ε̂ − ε, v̂ − v and x̂₀ − x₀ for a model whose
/// x₀ estimate is off by `dx` (x_t fixed, so ε̂ = (x_t − α·x̂₀)/σ and v̂ = α·ε̂ − σ·x̂₀).
fn target_errors(alpha: f64, sigma: f64, dx: f64) -> [(Prediction, f64); 3] {
    let (x0, eps) = (0.3, -1.2);
    let x_t = alpha * x0 + sigma * eps;
    let x0_hat = x0 + dx;
    let eps_hat = (x_t - alpha * x0_hat) / sigma;
    let v = alpha * eps - sigma * x0;
    let v_hat = alpha * eps_hat - sigma * x0_hat;
    [
        (Prediction::Epsilon, eps_hat - eps),
        (Prediction::Velocity, v_hat - v),
        (Prediction::Sample, x0_hat - x0),
    ]
}

#[test]
fn min_snr_weights_make_every_target_weigh_the_x0_error_by_min_snr_gamma() {
    // The derivation in `Schedule::min_snr_weights`, checked numerically: for each target, w·(target error)² =
    // min(SNR, γ)·(x₀ error)² at every timestep where SNR > 0 (σ > 0 there, so every target is defined).
    let gamma = 5.0;
    for schedule in [
        Schedule::new(BetaSchedule::LINEAR, 1000).unwrap(),
        Schedule::new(BetaSchedule::COSINE, 1000).unwrap(),
        NamedSchedule::Linear.build(1000, true).unwrap(),
    ] {
        let snr = schedule.snr();
        for prediction in [
            Prediction::Epsilon,
            Prediction::Velocity,
            Prediction::Sample,
        ] {
            let w = schedule.min_snr_weights(gamma, prediction).unwrap();
            for t in (0..999).step_by(37).chain([998]) {
                let (alpha, sigma) = (
                    schedule.sqrt_alphas_cumprod[t],
                    schedule.sqrt_one_minus_alphas_cumprod[t],
                );
                let dx = 0.01;
                let err = target_errors(alpha, sigma, dx)
                    .into_iter()
                    .find(|(p, _)| *p == prediction)
                    .unwrap()
                    .1;
                let want = snr[t].min(gamma) * dx * dx;
                // The errors come from differences of O(1) values: ~1e-16 absolute, over dx = 1e-2, relative
                // 1e-14, amplified by 1/σ ≤ 100 for the ε target at small t.
                assert!(
                    close(w[t] * err * err, want, 1e-9),
                    "{prediction:?} t={t}: w·err² = {} vs min(SNR, γ)·dx² = {want}",
                    w[t] * err * err
                );
            }
        }
    }
}

#[test]
fn min_snr_weights_at_zero_snr_are_the_limits_and_bad_gammas_are_refused() {
    let z = NamedSchedule::Linear.build(1000, true).unwrap();
    let last = |p| z.min_snr_weights(5.0, p).unwrap()[999];
    // ε: min(SNR, γ)/SNR → 1 as SNR → 0; v: 0/(0 + 1) = 0; x₀: min(0, γ) = 0.
    assert_eq!(last(Prediction::Epsilon), 1.0);
    assert_eq!(last(Prediction::Velocity), 0.0);
    assert_eq!(last(Prediction::Sample), 0.0);
    // Where SNR ≥ γ the ε weight is γ/SNR < 1, and where SNR < γ it is 1: the low-noise end is cut.
    let linear = Schedule::new(BetaSchedule::LINEAR, 1000).unwrap();
    let w = linear.min_snr_weights(5.0, Prediction::Epsilon).unwrap();
    assert!(w[0] < 1e-3 && w[999] == 1.0);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let err = linear
            .min_snr_weights(bad, Prediction::Epsilon)
            .unwrap_err()
            .to_string();
        assert!(err.contains("γ must be a positive number"), "{err}");
    }
    let err = linear
        .min_snr_weights(5.0, Prediction::Score)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not the score"), "{err}");
}
