//! The score-based processes of src/diffusion/process.rs against constants computed independently in Python
//! (`math` in f64, from score_sde's `sde_lib.py` and EDM's table 1 formulas), and their training points.

use diffuse::diffusion::process::{edm_preconditioning, ncsn_sigmas, Objective, Sde, Weighting};

/// Relative agreement to 1e-12: the Rust and Python f64 computations differ only in rounding order.
fn close(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-12 * want.abs().max(1e-300),
        "{what}: {got:e} vs Python's {want:e}"
    );
}

#[test]
fn sde_marginals_diffusions_and_priors_match_score_sde() {
    // (t, VP mean coefficient, VP std, sub-VP std, β(t), sub-VP g²)
    let vp = [
        (
            1e-5,
            0.9999994995026252,
            0.0010004971259352385,
            1.0009944990046723e-06,
            0.10019900000000001,
            2.005971952131436e-07,
        ),
        (
            0.5,
            0.2811828807967524,
            0.9596542020680363,
            0.9209361875468394,
            10.049999999999999,
            9.987176581281732,
        ),
        (
            1.0,
            0.006571586494929619,
            0.9999784068923386,
            0.9999568142509396,
            20.0,
            19.99999996269982,
        ),
    ];
    for (t, mean, std, sub_std, beta, sub_g2) in vp {
        let at = format!("t = {t}");
        let (a, s) = Sde::VP.marginal(t);
        close(&format!("VP mean {at}"), a, mean);
        close(&format!("VP std {at}"), s, std);
        let (a, s) = Sde::SUB_VP.marginal(t);
        close(&format!("sub-VP mean {at}"), a, mean);
        close(&format!("sub-VP std {at}"), s, sub_std);
        let (f, g2) = Sde::VP.drift_diffusion2(t);
        close(&format!("VP β {at}"), g2, beta);
        close(&format!("VP drift {at}"), f, -0.5 * beta);
        close(
            &format!("sub-VP g² {at}"),
            Sde::SUB_VP.drift_diffusion2(t).1,
            sub_g2,
        );
    }
    // (t, σ(t), g²(t)) of the VE SDE with σ ∈ [0.01, 50] (Python gave σ(½) = 0.7071067811865476 = 1/√2).
    for (t, sigma, g2) in [
        (1e-5, 0.010000851755591462, 0.0017037288333184577),
        (0.5, std::f64::consts::FRAC_1_SQRT_2, 8.51719319141624),
        (1.0, 50.0, 42585.96595708119),
    ] {
        close(&format!("VE σ t = {t}"), Sde::VE.marginal(t).1, sigma);
        close(&format!("VE g² t = {t}"), Sde::VE.drift_diffusion2(t).1, g2);
    }
    let z = [0.5, -1.25, 2.0];
    close("VP prior", Sde::VP.prior_logp(&z), -5.6630655996140185);
    close(
        "sub-VP prior",
        Sde::SUB_VP.prior_logp(&z),
        -5.6630655996140185,
    );
    close("VE prior", Sde::VE.prior_logp(&z), -14.494047115898455);
}

#[test]
fn edm_preconditioning_and_ncsn_levels_match_the_papers() {
    // (σ, c_skip, c_out, c_in, c_noise, λ) with σ_d = 0.5.
    for (sigma, skip, out, c_in, noise, lambda) in [
        (
            0.002,
            0.9999840002559959,
            0.0019999840001919972,
            1.9999840001919975,
            -1.5536520246055479,
            250004.00000000003,
        ),
        (
            2.5,
            0.038461538461538464,
            0.4902903378454601,
            0.3922322702763681,
            0.22907268296853878,
            4.16,
        ),
        (
            80.0,
            3.906097418069607e-05,
            0.49999023466109294,
            0.012499755866527323,
            1.0955066586684703,
            4.00015625,
        ),
    ] {
        let (s, o, i, n) = edm_preconditioning(sigma, 0.5);
        close(&format!("c_skip σ = {sigma}"), s, skip);
        close(&format!("c_out σ = {sigma}"), o, out);
        close(&format!("c_in σ = {sigma}"), i, c_in);
        close(&format!("c_noise σ = {sigma}"), n, noise);
        // EDM's weight makes the F-space loss unweighted: λ·c_out² = 1.
        close(&format!("λ·c_out² σ = {sigma}"), lambda * o * o, 1.0);
    }
    let sigmas = ncsn_sigmas(0.01, 50.0, 10).unwrap();
    close("σ_1", sigmas[0], 50.0);
    close("σ_5", sigmas[4], 1.1349672651536735);
    close("σ_10", sigmas[9], 0.01);
}

#[test]
fn training_points_are_the_papers_losses() {
    // EDM at the draw n = 1 (σ = e⁰ = 1): F's target is (x₀ − c_skip·x)/c_out with x = x₀ + σ·ε.
    let q = Objective::EDM.point(1.0).unwrap();
    let (skip, out, c_in, noise) = edm_preconditioning(1.0, 0.5);
    close("EDM σ", q.sigma, 1.0);
    close("EDM c_in", q.c_in, c_in);
    close("EDM c_noise", q.c_noise, noise);
    close("EDM k₀", q.k_x0, (1.0 - skip) / out);
    close("EDM k_ε", q.k_eps, -skip * q.sigma / out);
    // The VP likelihood weight is g²/σ² = β(t)/(1 − e^{2l}); σ² weighting is 1; t = t_min + (1 − t_min)·u.
    let likely = Objective::Sde {
        sde: Sde::VP,
        weighting: Weighting::Likelihood,
        t_min: 1e-5,
    };
    let t = 1e-5 + (1.0 - 1e-5) * 0.5;
    let (alpha, sigma) = Sde::VP.marginal(t);
    let q = likely.point(0.5).unwrap();
    close("VP α", q.alpha, alpha);
    close(
        "VP weight",
        q.weight,
        Sde::VP.drift_diffusion2(t).1 / (sigma * sigma),
    );
    close("VP c_noise", q.c_noise, 999.0 * t);
    assert_eq!(Objective::sde(Sde::VP).point(0.5).unwrap().weight, 1.0);
    // NCSN draws level ⌊u·L⌋: u = 0.45 of 10 levels is σ_5.
    let ncsn = Objective::Ncsn {
        sigma_min: 0.01,
        sigma_max: 50.0,
        levels: 10,
    };
    close(
        "NCSN σ",
        ncsn.point(0.45).unwrap().sigma,
        1.1349672651536735,
    );
    assert!(Objective::Ddpm.point(0.5).is_none());
}
