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
