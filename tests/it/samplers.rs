//! The samplers' scalars on the CPU (src/diffusion/samplers/): the DDIM spacings and a conformance table of
//! coefficients, both computed independently in Python (plain f64 floats; numpy's arange/linspace/round rebuilt
//! with Python's round-half-to-even, the script is in the comment of each table); the identities that tie the
//! samplers together; the conversions between ε, x₀, v and the score; and the folding of those conversions into
//! the step scalars.

use crate::common;

use diffuse::diffusion::analytic::GaussianMixture;
use diffuse::diffusion::samplers::{
    self, check_timesteps, timesteps, Clip, DdpmVariance, FoldedStep, NoiseLevel, Plan, Prediction,
    Process, Spacing, Start, Step, X0Bound,
};

/// The probability-flow ODE sampler over a timestep list: Heun on the list's VP levels, to clean data, from the
/// N(0, I) prior.
fn ode(schedule: &Schedule, list: &[usize]) -> Result<Plan, diffuse::Error> {
    samplers::heun(
        &samplers::vp_levels(schedule, list)?,
        NoiseLevel::CLEAN,
        Start::Prior,
    )
}

use diffuse::diffusion::{BetaSchedule, Schedule, VeSchedule};
use diffuse::reference::step as reference;

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-300)
}

fn linear() -> Schedule {
    Schedule::new(BetaSchedule::LINEAR, 1000).unwrap()
}

fn cosine() -> Schedule {
    Schedule::new(BetaSchedule::COSINE, 1000).unwrap()
}

/// (a, b, c) of a step.
type Abc = (f64, f64, f64);

fn linear_coefficients(step: &Step) -> Abc {
    match *step {
        Step::Linear { a, b, c, .. } => (a, b, c),
        Step::Heun { a, b, .. } => (a, b, 0.0),
        Step::Clipped { .. } | Step::Multistep(_) => panic!("not a linear step"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Spacings.
// ---------------------------------------------------------------------------------------------------------------

/// T = 1000. Python: leading = [i·(T//S) + offset for i in range(S)][::-1]; trailing = [round(T + i·(−T/S)) − 1];
/// linspace = [round(i·((T−1)/(S−1))) for i in range(S)][::-1] with the last point T−1 (numpy's linspace).
/// S = 7 exercises the rounding: trailing's 428.57 → 429 − 1, linspace's ties 499.5 → 500 and 832.5 → 832 (half
/// to even, as numpy; Rust's f64::round would give 833).
#[test]
fn ddim_spacings_match_the_diffusers_formulas_computed_in_python() {
    let cases: [(Spacing, usize, &[usize]); 8] = [
        (Spacing::LEADING, 7, &[852, 710, 568, 426, 284, 142, 0]),
        (
            Spacing::Leading { steps_offset: 1 },
            7,
            &[853, 711, 569, 427, 285, 143, 1],
        ),
        (Spacing::Trailing, 7, &[999, 856, 713, 570, 428, 285, 142]),
        (Spacing::Linspace, 7, &[999, 832, 666, 500, 333, 166, 0]),
        (
            Spacing::LEADING,
            50,
            &[
                980, 960, 940, 920, 900, 880, 860, 840, 820, 800, 780, 760, 740, 720, 700, 680,
                660, 640, 620, 600, 580, 560, 540, 520, 500, 480, 460, 440, 420, 400, 380, 360,
                340, 320, 300, 280, 260, 240, 220, 200, 180, 160, 140, 120, 100, 80, 60, 40, 20, 0,
            ],
        ),
        (
            Spacing::Leading { steps_offset: 1 },
            50,
            &[
                981, 961, 941, 921, 901, 881, 861, 841, 821, 801, 781, 761, 741, 721, 701, 681,
                661, 641, 621, 601, 581, 561, 541, 521, 501, 481, 461, 441, 421, 401, 381, 361,
                341, 321, 301, 281, 261, 241, 221, 201, 181, 161, 141, 121, 101, 81, 61, 41, 21, 1,
            ],
        ),
        (
            Spacing::Trailing,
            50,
            &[
                999, 979, 959, 939, 919, 899, 879, 859, 839, 819, 799, 779, 759, 739, 719, 699,
                679, 659, 639, 619, 599, 579, 559, 539, 519, 499, 479, 459, 439, 419, 399, 379,
                359, 339, 319, 299, 279, 259, 239, 219, 199, 179, 159, 139, 119, 99, 79, 59, 39,
                19,
            ],
        ),
        (
            Spacing::Linspace,
            50,
            &[
                999, 979, 958, 938, 917, 897, 877, 856, 836, 816, 795, 775, 754, 734, 714, 693,
                673, 652, 632, 612, 591, 571, 550, 530, 510, 489, 469, 449, 428, 408, 387, 367,
                347, 326, 306, 285, 265, 245, 224, 204, 183, 163, 143, 122, 102, 82, 61, 41, 20, 0,
            ],
        ),
    ];
    for (spacing, s, want) in cases {
        assert_eq!(
            timesteps(1000, s, spacing).unwrap(),
            want,
            "{spacing:?} S={s}"
        );
    }
}

#[test]
fn trailing_is_the_default_and_starts_at_the_last_index() {
    assert_eq!(Spacing::default(), Spacing::Trailing);
    for s in [1, 3, 10, 50, 999, 1000] {
        for spacing in [Spacing::Trailing, Spacing::Linspace] {
            let list = timesteps(1000, s, spacing).unwrap();
            assert_eq!(list.len(), s);
            if spacing == Spacing::Trailing || s > 1 {
                assert_eq!(list[0], 999, "{spacing:?} S={s} starts at T−1");
            }
        }
        // Leading stops short of T−1 unless S divides T into steps of 1.
        let leading = timesteps(1000, s, Spacing::LEADING).unwrap();
        assert_eq!(leading.len(), s);
        assert_eq!(*leading.last().unwrap(), 0);
    }
    // With S = T every spacing is every index.
    let all: Vec<usize> = (0..1000).rev().collect();
    for spacing in [Spacing::Trailing, Spacing::LEADING, Spacing::Linspace] {
        assert_eq!(timesteps(1000, 1000, spacing).unwrap(), all, "{spacing:?}");
    }
}

#[test]
fn bad_timestep_lists_are_refused() {
    assert!(timesteps(1000, 0, Spacing::Trailing).is_err());
    assert!(timesteps(10, 11, Spacing::Trailing).is_err());
    // steps_offset pushes the first index past T−1.
    let e = timesteps(1000, 1000, Spacing::Leading { steps_offset: 1 }).unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
    assert!(check_timesteps(10, &[]).is_err());
    let e = check_timesteps(10, &[5, 5, 1]).unwrap_err();
    assert!(e.to_string().contains("strictly decrease"), "{e}");
    assert!(check_timesteps(10, &[10, 3]).is_err());
    assert!(check_timesteps(10, &[9, 4, 0]).is_ok());
    let s = linear();
    let e = samplers::ddim(&s, &[999, 0], 1.5, Clip::None).unwrap_err();
    assert!(e.to_string().contains("η"), "{e}");
    assert!(samplers::ddpm(&s, &[1, 2], DdpmVariance::Beta, Clip::None).is_err());
    assert!(VeSchedule::geometric(0.01, 1.0, 10).is_err());
    let ve = VeSchedule::geometric(1.0, 0.01, 10).unwrap();
    assert!(samplers::annealed_langevin(&ve, 0, 1e-5, true).is_err());
    assert!(samplers::predictor_corrector(Process::Ve { levels: &ve }, 1, 0.0).is_err());
}

// ---------------------------------------------------------------------------------------------------------------
// Conformance table.
// ---------------------------------------------------------------------------------------------------------------

/// Coefficients (a, b, c) of x ← a·x + b·ε̂ + c·z, pinned to 1e-12 relative. Python, from the closed forms:
/// ᾱ by running product of (1 − β); DDIM: σ = η√((1−ᾱp)/(1−ᾱ))√(1−ᾱ/ᾱp), a = √(ᾱp/ᾱ),
/// b = √(1−ᾱp−σ²) − √ᾱp·√(1−ᾱ)/√ᾱ; DDPM: α = ᾱ/ᾱp, a = 1/√α, b = −(1−α)/(√α√(1−ᾱ)), c = √var; EM: B = ln(ᾱp/ᾱ),
/// (1 + B/2, −B/√(1−ᾱ), √B); Heun: (√(ᾱp/ᾱ), √ᾱp·(σ(ᾱp) − σ(ᾱ))), σ(x) = √((1−x)/x); VE: σ_i = 50·e^{i·ln(0.01/50)/9},
/// Langevin b = −ε_i/(2σ_i), c = √ε_i with ε_i = 2e-5·σ_i²/0.01².
#[test]
fn conformance_table_pins_sampler_coefficients() {
    let (lin, cos) = (linear(), cosine());
    let trailing50 = timesteps(1000, 50, Spacing::Trailing).unwrap();
    let leading50 = timesteps(1000, 50, Spacing::LEADING).unwrap();
    let trailing100 = timesteps(1000, 100, Spacing::Trailing).unwrap();
    let full: Vec<usize> = (0..1000).rev().collect();
    let ve = VeSchedule::geometric(50.0, 0.01, 10).unwrap();
    let step = |plan: Plan, k: usize| linear_coefficients(&plan.steps[k]);
    let linspace50 = timesteps(1000, 50, Spacing::Linspace).unwrap();
    let linspace7 = timesteps(1000, 7, Spacing::Linspace).unwrap();
    let table: [(&str, Abc, Abc); 12] = [
        (
            "ddim linear trailing50 η=0 step 0",
            step(
                samplers::ddim(&lin, &trailing50, 0.0, Clip::None).unwrap(),
                0,
            ),
            (1.2215204039754861, -0.22152586449013834, 0.0),
        ),
        (
            "ddim linear trailing50 η=0 step 49",
            step(
                samplers::ddim(&lin, &trailing50, 0.0, Clip::None).unwrap(),
                49,
            ),
            (1.0028970651823639, -0.07617429587071081, 0.0),
        ),
        (
            "ddim cosine trailing50 η=1 step 10",
            step(
                samplers::ddim(&cos, &trailing50, 1.0, Clip::None).unwrap(),
                10,
            ),
            (
                1.0962396816116031,
                -0.19334655155822944,
                0.40541158165554375,
            ),
        ),
        (
            "ddim linear leading50 η=0.5 step 3",
            step(
                samplers::ddim(&lin, &leading50, 0.5, Clip::None).unwrap(),
                3,
            ),
            (1.2020812085301373, -0.24137177540092503, 0.2774583191004917),
        ),
        (
            "ddim cosine linspace50 η=0.3 step 7",
            step(
                samplers::ddim(&cos, &linspace50, 0.3, Clip::None).unwrap(),
                7,
            ),
            (1.1370294686182276, -0.15143078657459685, 0.1417004368216164),
        ),
        (
            "ddim linear linspace7 η=0 step 6 (index 0 → clean)",
            step(
                samplers::ddim(&lin, &linspace7, 0.0, Clip::None).unwrap(),
                6,
            ),
            (1.0000500037503124, -0.010000500037502573, 0.0),
        ),
        (
            "ddpm linear β̃ t=500",
            step(
                samplers::ddpm(&lin, &full, DdpmVariance::PosteriorBeta, Clip::None).unwrap(),
                999 - 500,
            ),
            (
                1.0050682520090377,
                -0.010528789939619723,
                0.10025635031712275,
            ),
        ),
        (
            "ddpm cosine β t=999",
            step(
                samplers::ddpm(&cos, &full, DdpmVariance::Beta, Clip::None).unwrap(),
                0,
            ),
            (31.622776601683782, -31.59115386344587, 0.999499874937461),
        ),
        (
            "ddpm cosine trailing50 β̃ step 1",
            step(
                samplers::ddpm(&cos, &trailing50, DdpmVariance::PosteriorBeta, Clip::None).unwrap(),
                1,
            ),
            (1.9990287220570462, -1.499514120303922, 0.8646231749254597),
        ),
        (
            "euler-maruyama linear trailing100 step 0",
            step(samplers::euler_maruyama(&lin, &trailing100).unwrap(), 0),
            (1.1005562209225332, -0.20111650024580438, 0.4484556185901415),
        ),
        (
            "heun linear trailing50 step 5",
            step(ode(&lin, &trailing50).unwrap(), 5),
            (1.1969712561579855, -0.19700370676406068, 0.0),
        ),
        (
            "langevin σ_4 of 50→0.01 (10 levels), ε = 2e-5",
            step(samplers::annealed_langevin(&ve, 1, 2e-5, false).unwrap(), 3),
            (1.0, -0.29240177382128657, 1.3076604860118304),
        ),
    ];
    for (what, got, want) in table {
        for (g, w) in [(got.0, want.0), (got.1, want.1), (got.2, want.2)] {
            assert!(
                close(g, w, 1e-12) || (w == 0.0 && g.abs() < 1e-15),
                "{what}: got {got:?}, want {want:?}"
            );
        }
    }
    assert!(close(ve.sigmas[3], 2.9240177382128656, 1e-12));
}

// ---------------------------------------------------------------------------------------------------------------
// Identities between samplers and the timestep convention.
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn ddim_with_eta_one_over_every_index_is_ddpm_with_posterior_variance() {
    for s in [linear(), cosine()] {
        for list in [
            (0..1000).rev().collect::<Vec<_>>(),
            timesteps(1000, 37, Spacing::Trailing).unwrap(),
        ] {
            let ddim = samplers::ddim(&s, &list, 1.0, Clip::None).unwrap();
            let ddpm = samplers::ddpm(&s, &list, DdpmVariance::PosteriorBeta, Clip::None).unwrap();
            for (k, (x, y)) in ddim.steps.iter().zip(&ddpm.steps).enumerate() {
                let (x, y) = (linear_coefficients(x), linear_coefficients(y));
                // DDPM drops the noise of the last step by the timestep convention; DDIM's σ is 0 there anyway.
                for (g, w) in [(x.0, y.0), (x.1, y.1), (x.2, y.2)] {
                    assert!(
                        (g - w).abs() <= 1e-10 * w.abs().max(1.0),
                        "step {k}: {x:?} vs {y:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn deterministic_ddim_is_heuns_euler_predictor() {
    let s = cosine();
    let list = timesteps(1000, 20, Spacing::Trailing).unwrap();
    let ddim = samplers::ddim(&s, &list, 0.0, Clip::None).unwrap();
    let heun = ode(&s, &list).unwrap();
    assert_eq!(heun.evaluations(), 2 * 20 - 1);
    for (x, y) in ddim.steps.iter().zip(&heun.steps) {
        let (x, y) = (linear_coefficients(x), linear_coefficients(y));
        assert!(
            close(y.0, x.0, 1e-12) && close(y.1, x.1, 1e-9),
            "{x:?} {y:?}"
        );
    }
}

#[test]
fn clipped_steps_equal_linear_steps_where_the_clip_does_not_bite() {
    // Without clipping, the x̂₀ form (coef1·x̂₀ + coef2·x) and the ε form are the same map.
    let s = linear();
    let list = timesteps(1000, 25, Spacing::Trailing).unwrap();
    let wide = Clip::Clamp {
        lo: -1e30,
        hi: 1e30,
    };
    for (plain, clipped) in [
        (
            samplers::ddpm(&s, &list, DdpmVariance::Beta, Clip::None).unwrap(),
            samplers::ddpm(&s, &list, DdpmVariance::Beta, wide).unwrap(),
        ),
        (
            samplers::ddim(&s, &list, 0.3, Clip::None).unwrap(),
            samplers::ddim(&s, &list, 0.3, wide).unwrap(),
        ),
    ] {
        for (x, y) in plain.steps.iter().zip(&clipped.steps) {
            let (a, b, c) = linear_coefficients(x);
            let Step::Clipped {
                p, q, u, w, c: c2, ..
            } = *y
            else {
                panic!("expected a clipped step")
            };
            assert!(close(u * p + w, a, 1e-10), "{}: x coefficient", plain.name);
            assert!(close(u * q, b, 1e-10), "{}: ε coefficient", plain.name);
            assert_eq!(c, c2);
        }
    }
}

#[test]
fn every_sampler_ends_without_noise_and_vp_ones_start_at_the_last_index() {
    let (s, ve) = (linear(), VeSchedule::geometric(10.0, 0.01, 30).unwrap());
    let list = timesteps(1000, 40, Spacing::default()).unwrap();
    let plans = [
        samplers::ddpm(&s, &list, DdpmVariance::Beta, Clip::None).unwrap(),
        samplers::ddim(&s, &list, 1.0, Clip::None).unwrap(),
        samplers::euler_maruyama(&s, &list).unwrap(),
        ode(&s, &list).unwrap(),
        samplers::predictor_corrector(
            Process::Vp {
                schedule: &s,
                timesteps: &list,
            },
            2,
            0.16,
        )
        .unwrap(),
        samplers::annealed_langevin(&ve, 5, 1e-5, true).unwrap(),
        samplers::predictor_corrector(Process::Ve { levels: &ve }, 1, 0.16).unwrap(),
    ];
    for plan in &plans {
        let last = plan.steps.last().unwrap();
        assert!(
            !last.adds_noise(),
            "{}: the last step adds noise",
            plan.name
        );
        assert!(
            plan.steps[..plan.steps.len() - 1]
                .iter()
                .any(Step::adds_noise)
                || plan.name.contains("heun")
        );
        if plan.init_scale == 1.0 {
            assert_eq!(plan.steps[0].level().t, 999.0, "{}", plan.name);
        } else {
            assert_eq!(plan.init_scale, 10.0, "{}: VE starts at σ_1", plan.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Predictions and folding.
// ---------------------------------------------------------------------------------------------------------------

const KINDS: [Prediction; 4] = [
    Prediction::Epsilon,
    Prediction::Sample,
    Prediction::Velocity,
    Prediction::Score,
];

/// The value of each prediction kind for a known (x₀, ε) at `level`, straight from its definition.
fn truth(kind: Prediction, x0: f64, eps: f64, level: &NoiseLevel) -> f64 {
    match kind {
        Prediction::Epsilon => eps,
        Prediction::Sample => x0,
        Prediction::Velocity => level.alpha * eps - level.sigma * x0,
        Prediction::Score => -eps / level.sigma,
    }
}

#[test]
fn conversions_between_epsilon_x0_v_and_score_are_exact() {
    let s = cosine();
    for level in [
        NoiseLevel::vp(&s, 0),
        NoiseLevel::vp(&s, 500),
        NoiseLevel::vp(&s, 990),
        NoiseLevel::ve(3.7),
    ] {
        for (x0, eps) in [(0.3, -1.2), (-0.9, 0.4)] {
            let x = level.alpha * x0 + level.sigma * eps;
            for from in KINDS {
                for to in KINDS {
                    let (cx, co) = from.convert(to, &level);
                    let got = cx * x + co * truth(from, x0, eps, &level);
                    let want = truth(to, x0, eps, &level);
                    assert!(
                        (got - want).abs() <= 1e-9 * (1.0 + want.abs()),
                        "{from:?} → {to:?} at {level:?}: {got} vs {want}"
                    );
                }
            }
            // The score is −ε/√(1 − ᾱ_t) for VP.
            if level.alpha < 1.0 {
                let (_, co) = Prediction::Epsilon.convert(Prediction::Score, &level);
                let t = level.t as usize;
                assert!(close(co, -1.0 / s.sqrt_one_minus_alphas_cumprod[t], 1e-14));
            }
        }
    }
}

/// Runs `plan` on the CPU with the exact model of `data` predicting `kind`, from fixed x and noise.
fn run(plan: &Plan, data: &GaussianMixture, kind: Prediction, x_init: &[f64]) -> Vec<f64> {
    let model = |x: &[f64], level: &NoiseLevel| data.predict_batch(x, level, kind);
    let mut noise = |k: usize| common::uniform64(x_init.len(), 1000 + k as u64);
    reference::sample(plan, kind, &model, x_init, &mut noise)
}

#[test]
fn folded_steps_give_the_same_samples_for_every_prediction_kind() {
    // The exact model's ε, x₀, v and score are four views of one denoiser; folding the conversion into the step
    // scalars must make the four runs agree (to f64 rounding amplified along the chain).
    let data = GaussianMixture::new(
        vec![0.3, 0.7],
        vec![vec![-0.6, 0.2], vec![0.5, -0.1]],
        vec![0.04, 0.09],
        false,
    )
    .unwrap();
    let s = cosine();
    let list = timesteps(1000, 12, Spacing::Trailing).unwrap();
    let ve = VeSchedule::geometric(5.0, 0.02, 8).unwrap();
    let clip = Clip::Clamp { lo: -0.7, hi: 0.7 };
    let plans = [
        samplers::ddpm(&s, &list, DdpmVariance::Beta, clip).unwrap(),
        samplers::ddim(&s, &list, 0.5, Clip::None).unwrap(),
        samplers::euler_maruyama(&s, &list).unwrap(),
        ode(&s, &list).unwrap(),
        samplers::annealed_langevin(&ve, 3, 1e-4, true).unwrap(),
        samplers::predictor_corrector(Process::Ve { levels: &ve }, 1, 0.16).unwrap(),
    ];
    let x_init: Vec<f64> = common::uniform64(16, 7).iter().map(|v| 2.0 * v).collect();
    for plan in &plans {
        let x_init: Vec<f64> = x_init.iter().map(|v| v * plan.init_scale).collect();
        let want = run(plan, &data, Prediction::Epsilon, &x_init);
        for kind in &KINDS[1..] {
            let got = run(plan, &data, *kind, &x_init);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-9, "{} {kind:?}: {g} vs {w}", plan.name);
            }
        }
    }
}

#[test]
fn folding_for_epsilon_is_the_identity() {
    let s = linear();
    let list = timesteps(1000, 10, Spacing::Trailing).unwrap();
    let plan = samplers::ddim(&s, &list, 0.2, Clip::None).unwrap();
    for step in &plan.steps {
        let (a, b, c) = linear_coefficients(step);
        assert_eq!(
            step.fold(Prediction::Epsilon),
            FoldedStep::Linear { a, b, c }
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Multistep solvers: diffusers' pinned results, and the order of convergence on the exact Gaussian model.
// ---------------------------------------------------------------------------------------------------------------

/// diffusers' scheduler tests (tests/schedulers/test_scheduler_dpm_multi.py, test_scheduler_unipc.py): a 4×3×8×8
/// sample holding i/768 for i = 0 … 767, the toy model ε = x·t/(t + 1) (t the timestep the model is called with),
/// 10 steps of the linear schedule with "linspace" timesteps (linspace(0, 999, 11) rounded, reversed, the last
/// dropped: 999, 899, …, 100) and the last step to index 0's level ("sigma_min"). They pin mean |x| to 4 decimals
/// of a float32 run, ±5·10⁻⁵; our f64 loop differs from float32 by ~10⁻⁶ (a dozen roundings of O(1) values per
/// element). So |ours − pin| ≤ 6·10⁻⁵.
fn diffusers_toy_loop(plan: &Plan, prediction: Prediction) -> f64 {
    let x: Vec<f64> = (0..768).map(|i| i as f64 / 768.0).collect();
    let model = |x: &[f64], level: &NoiseLevel| -> Vec<f64> {
        x.iter().map(|v| v * level.t / (level.t + 1.0)).collect()
    };
    let out = reference::sample_in(plan, prediction, &model, &x, 192, &mut |_| unreachable!());
    out.iter().map(|v| v.abs()).sum::<f64>() / out.len() as f64
}

/// diffusers' "linspace" timesteps of DPM-Solver and UniPC: linspace(0, T − 1, S + 1), rounded half to even,
/// reversed, without the final 0.
fn solver_linspace(num_train: usize, steps: usize) -> Vec<usize> {
    let step = (num_train - 1) as f64 / steps as f64;
    (1..=steps)
        .rev()
        .map(|i| {
            if i == steps {
                num_train - 1
            } else {
                (i as f64 * step).round_ties_even() as usize
            }
        })
        .collect()
}

/// σ̃_t = √((1 − ᾱ_t)/ᾱ_t) as diffusers computes it: from a float32 ᾱ (torch.linspace of β in float32, 1 − β
/// and the cumulative product in float32, then numpy on that float32 array). It matters at the small end:
/// 1 − ᾱ₀ = 10⁻⁴ is held to ±6·10⁻⁸, so σ̃₀ (σ_min, where the last steps land) is off by ~10⁻⁴ relative, which
/// moves a Karras run's mean |x| by ~4·10⁻⁴: more than the pin's rounding.
fn diffusers_sigmas() -> Vec<f64> {
    let mut cumprod = 1.0f32;
    (0..1000)
        .map(|i| {
            let beta = (1e-4 + (0.02 - 1e-4) * i as f64 / 999.0) as f32;
            cumprod *= 1.0 - beta;
            ((1.0 - cumprod) / cumprod).sqrt() as f64
        })
        .collect()
}

/// A VP level at σ̃ (α = 1/√(1 + σ̃²), σ = σ̃·α) with the network at timestep t.
fn level_at(t: f64, sigma_tilde: f64) -> NoiseLevel {
    let alpha = 1.0 / (1.0 + sigma_tilde * sigma_tilde).sqrt();
    NoiseLevel {
        t,
        alpha,
        sigma: sigma_tilde * alpha,
    }
}

fn assert_pin(what: &str, got: f64, pin: f64) {
    assert_pin_within(what, got, pin, 6e-5);
}

fn assert_pin_within(what: &str, got: f64, pin: f64, tolerance: f64) {
    assert!(
        (got - pin).abs() <= tolerance,
        "{what}: mean |x| = {got:.6}, diffusers pins {pin}"
    );
}

#[test]
fn dpm_solver_and_unipc_reproduce_diffusers_pinned_results() {
    let lin = linear();
    let list = solver_linspace(1000, 10);
    assert_eq!(list, [999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
    let sig = diffusers_sigmas();
    let levels: Vec<NoiseLevel> = list.iter().map(|&t| level_at(t as f64, sig[t])).collect();
    let sigma_min = level_at(0.0, sig[0]);
    let dpm = |bound| samplers::dpm_solver_2m(&levels, sigma_min, false, bound).unwrap();
    // test_full_loop_no_noise: lower_order_final off, final σ at σ_min.
    assert_pin(
        "dpm-solver++(2m)",
        diffusers_toy_loop(&dpm(X0Bound::None), Prediction::Epsilon),
        0.3301,
    );
    // test_full_loop_with_v_prediction: the toy output read as v.
    assert_pin(
        "dpm-solver++(2m), v",
        diffusers_toy_loop(&dpm(X0Bound::None), Prediction::Velocity),
        0.2251,
    );
    // test_full_loop_no_noise_thres: thresholding with ratio 0.87 and sample_max_value 0.5, where torch.clamp(q,
    // min=1, max=0.5) is 0.5 whatever the quantile: x̂₀ = clamp(x̂₀, −0.5, 0.5)/0.5.
    let thresholded = X0Bound::Dynamic {
        ratio: 0.87,
        max: 0.5,
    };
    assert_pin(
        "dpm-solver++(2m), thresholding",
        diffusers_toy_loop(&dpm(thresholded), Prediction::Epsilon),
        1.1364,
    );
    // test_full_loop_with_karras_and_v_prediction: Karras σ (ρ = 7) between σ̃ of indices 0 and 999, the network
    // at the rounded timesteps, the last step from σ_min to σ_min.
    let karras: Vec<NoiseLevel> =
        samplers::karras_sigmas(sig[0], sig[999], 10, samplers::KARRAS_RHO)
            .into_iter()
            .map(|s| level_at(samplers::level_at_sigma(&lin, s).t, s))
            .collect();
    // Our own Karras levels, from the f64 schedule, differ from those only by the float32 σ̃ above.
    let ours = samplers::karras_levels(&lin, 10).unwrap();
    for (a, b) in karras.iter().zip(&ours) {
        assert_eq!(a.t, b.t);
        assert!(
            close(a.sigma / a.alpha, b.sigma / b.alpha, 1e-3),
            "{a:?} {b:?}"
        );
    }
    let plan = samplers::dpm_solver_2m(&karras, sigma_min, false, X0Bound::None).unwrap();
    // This pin dates from diffusers' first Karras DPM-Solver (524535b, April 2023), which stepped with the
    // discrete ᾱ of the rounded timesteps; its refactor onto σ̃ itself (8263cf0, September 2023), which we follow,
    // kept the pin under the test's own tolerance of 10⁻³. So 10⁻³ here too: the σ̃ themselves are checked above.
    assert_pin_within(
        "dpm-solver++(2m), karras, v",
        diffusers_toy_loop(&plan, Prediction::Velocity),
        0.2096,
        1e-3,
    );
    // test_scheduler_unipc.py test_full_loop_no_noise: bh2, order 2, lower_order_final on, σ_min at the end.
    let plan = samplers::unipc_bh2(&levels, sigma_min, true, X0Bound::None).unwrap();
    assert_pin(
        "unipc bh2",
        diffusers_toy_loop(&plan, Prediction::Epsilon),
        0.2464,
    );
}

/// The largest |x − exact| over a few starting points of a deterministic plan run in f64 with the exact model of a
/// Gaussian N(μ, s²), against the exact probability-flow map between the plan's first level a and `end` b:
/// x_b = α_b·μ + √((α_b²s² + σ_b²)/(α_a²s² + σ_a²))·(x_a − α_a·μ).
fn flow_error(plan: &Plan, end: &NoiseLevel) -> f64 {
    let (mu, s2) = (0.5, 0.25);
    let data = GaussianMixture::gaussian(vec![mu], s2).unwrap();
    let x: Vec<f64> = [-2.0, -0.7, 0.0, 0.4, 1.3, 2.2]
        .iter()
        .map(|v| v * plan.init_scale)
        .collect();
    let a = *plan.steps[0].level();
    let var = |l: &NoiseLevel| l.alpha * l.alpha * s2 + l.sigma * l.sigma;
    let got = reference::sample(
        plan,
        Prediction::Epsilon,
        &|x, level| data.predict_batch(x, level, Prediction::Epsilon),
        &x,
        &mut |_| unreachable!("deterministic"),
    );
    got.iter()
        .zip(&x)
        .map(|(g, xa)| {
            let want = end.alpha * mu + (var(end) / var(&a)).sqrt() * (xa - a.alpha * mu);
            (g - want).abs()
        })
        .fold(0.0, f64::max)
}

/// Each deterministic solver's error against the exact flow of Gaussian data falls like N^(−order) as its number
/// of levels N doubles. The levels are Karras et al.'s from σ̃_max to σ̃_min and every solver ends at σ̃_min, so
/// every step shrinks as N grows (a timestep list does not do that near the data end: its last level before
/// clean data is index T/N − 1, a λ-step of ~½·log(T/N)). The observed order log₂(e(N)/e(2N)) from N = 100 to
/// 200 must reach the method's order less 0.25 (room for the pre-asymptotic bend; an order-1 method posing as
/// order 2 fails by 0.75). Measured from N = 100 to 200: Euler 1.00, Heun 2.03, DPM-Solver++(2M) 2.05, UniPC
/// 3.04 (order 2 with its corrector is order 3, Zhao et al. 2023, theorem 3.3).
#[test]
fn each_solver_converges_at_its_order_on_gaussian_data() {
    let lin = linear();
    let karras = |n| samplers::karras_levels(&lin, n).unwrap();
    let end = |n| *karras(n).last().unwrap();
    type Build<'a> = Box<dyn Fn(usize) -> Plan + 'a>;
    let cases: Vec<(&str, f64, Build)> = vec![
        (
            "euler",
            1.0,
            Box::new(|n| samplers::euler(&karras(n), end(n), Start::Sigma).unwrap()),
        ),
        (
            "heun",
            2.0,
            Box::new(|n| samplers::heun(&karras(n), end(n), Start::Sigma).unwrap()),
        ),
        (
            "dpm++2m",
            2.0,
            Box::new(|n| {
                samplers::dpm_solver_2m(&karras(n), end(n), false, X0Bound::None).unwrap()
            }),
        ),
        (
            "unipc",
            3.0,
            Box::new(|n| samplers::unipc_bh2(&karras(n), end(n), false, X0Bound::None).unwrap()),
        ),
    ];
    for (name, order, build) in cases {
        let errors: Vec<f64> = [25, 50, 100, 200]
            .iter()
            .map(|&n| flow_error(&build(n), &end(n)))
            .collect();
        let observed: Vec<f64> = errors.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
        eprintln!("{name}: errors {errors:.3?}, observed orders {observed:.2?}");
        let last = observed[observed.len() - 1];
        assert!(
            last >= order - 0.25,
            "{name} must converge at order {order}: errors {errors:?}, observed {observed:?}"
        );
    }
}

#[test]
fn ncsnv2_step_rule_gives_the_papers_step() {
    // NCSNv2 (Song & Ermon 2020), CIFAR-10: L = 232 levels from 50 to 0.01, T = 5 steps per level, ε = 6.2·10⁻⁶ at
    // σ_L = 0.01: r = ε/σ_L² ≈ 0.062. The minimum of |ratio − 1| computed in Python (ternary search, f64):
    // r = 0.061840250249640336; with 50 levels from 10 to 0.05 and T = 20: r = 0.069022.
    let gamma = (50.0f64 / 0.01).powf(1.0 / 231.0);
    let r = samplers::ncsnv2_relative_step(gamma, 5).unwrap();
    assert!((r - 0.061840250249640336).abs() < 1e-8, "{r}");
    let r = samplers::ncsnv2_relative_step((10.0f64 / 0.05).powf(1.0 / 49.0), 20).unwrap();
    assert!((r - 0.069022).abs() < 2e-6, "{r}");
    assert!(samplers::ncsnv2_relative_step(1.0, 5).is_err());
    assert!(samplers::ncsnv2_relative_step(1.1, 0).is_err());
}
