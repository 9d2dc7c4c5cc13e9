//! Training on the GPU: a tiny model overfits a few images, one submission per step, and a run resumed from a
//! checkpoint continues exactly as the uninterrupted run (same losses, step for step, bit for bit).

use crate::common;

use common::gpu;
use diffuse::checkpoint::Checkpoint;
use diffuse::data::Dataset;
use diffuse::model::UNetConfig;
use diffuse::train::run::{
    Cadence, Finished, Folder, Metrics, Outputs, Preview, Progress, Run, Silent, StopFlag,
};
use diffuse::train::{Placement, TrainSettings, Trainer, MAX_IN_FLIGHT};

fn tiny() -> UNetConfig {
    UNetConfig {
        heads: 1,
        num_classes: Some(2),
        ..common::tiny_unet()
    }
}

/// Four 8×8 images: two bars and two squares, labelled by shape.
fn few_images() -> Dataset {
    let mut pixels = Vec::new();
    for k in 0..4 {
        for y in 0..8 {
            for x in 0..8 {
                let on = if k < 2 {
                    x == 2 + 3 * k
                } else {
                    (2..6).contains(&x) && (2..6).contains(&y) && k == 2 || (x + y) % 7 == 0
                };
                pixels.push(if on { 255u8 } else { 0 });
            }
        }
    }
    Dataset {
        pixels: pixels.into(),
        len: 4,
        channels: 1,
        size: 8,
        labels: Some(vec![0, 0, 1, 1]),
        class_names: vec!["bar".into(), "square".into()],
        description: "test pattern".into(),
        notes: Vec::new(),
    }
}

fn settings() -> TrainSettings {
    let mut s = TrainSettings::new(tiny());
    s.batch = 4;
    s.lr = 2e-3;
    s.warmup = 10;
    s.seed = 3;
    s
}

fn losses(trainer: &mut Trainer, steps: usize) -> Vec<f64> {
    let gpu = gpu();
    (0..steps)
        .map(|_| {
            trainer.step(gpu, true).unwrap();
            let reports = trainer.wait_losses(gpu).unwrap();
            assert_eq!(reports.len(), 1);
            reports[0].loss
        })
        .collect()
}

#[test]
fn training_a_tiny_model_on_four_images_drives_the_loss_down() {
    let gpu = gpu();
    let mut trainer = Trainer::new(gpu, settings(), &few_images(), None).unwrap();
    let history = losses(&mut trainer, 150);
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&history[..20]), mean(&history[130..]));
    // ε-prediction starts near E[ε²] = 1 (zero-initialised output conv); learning must cut it substantially.
    assert!(first > 0.5, "initial loss {first}");
    assert!(
        last < 0.6 * first,
        "loss went from {first:.3} to {last:.3}: not learning"
    );
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_losses_exactly() {
    check_resume(settings());
}

#[test]
fn a_resumed_run_with_flips_repeats_the_uninterrupted_losses_exactly() {
    let mut s = settings();
    s.flip = true;
    check_resume(s);
}

#[test]
fn a_resumed_run_with_dropout_draws_the_same_masks_as_the_uninterrupted_one() {
    let mut s = settings();
    s.model.dropout = 0.2;
    check_resume(s);
}

#[test]
fn a_resumed_streaming_run_repeats_the_uninterrupted_losses_exactly() {
    let mut s = settings();
    s.flip = true;
    s.placement = Placement::Host;
    check_resume(s);
}

#[test]
fn streamed_batches_are_bit_identical_to_resident_ones() {
    let gpu = gpu();
    let data = few_images();
    let run = |placement| {
        let mut s = settings();
        s.flip = true;
        s.placement = placement;
        let mut trainer = Trainer::new(gpu, s, &data, None).unwrap();
        // More steps than the upload ring has slots, so slots are reused.
        let l = losses(&mut trainer, 7);
        (trainer.streams(), l, trainer.checkpoint(gpu).unwrap())
    };
    let (resident_streams, resident_losses, resident) = run(Placement::Gpu);
    let (streams, streamed_losses, streamed) = run(Placement::Host);
    assert!(!resident_streams && streams);
    assert_eq!(streamed_losses, resident_losses);
    assert!(
        streamed.params == resident.params && streamed.rng_offset == resident.rng_offset,
        "the same batches must give the same weights, bit for bit"
    );
    let auto = Trainer::new(gpu, settings(), &data, None).unwrap();
    assert!(
        !auto.streams(),
        "a dataset that fits one binding stays on the GPU"
    );
    assert!(auto.placement_note().contains("resident on the GPU"));
}

fn check_resume(settings: TrainSettings) {
    let settings = || settings.clone();
    let gpu = gpu();
    let data = few_images();
    let mut straight = Trainer::new(gpu, settings(), &data, None).unwrap();
    let all = losses(&mut straight, 12);

    let mut first_half = Trainer::new(gpu, settings(), &data, None).unwrap();
    let head = losses(&mut first_half, 6);
    let s = settings();
    let dir = std::env::temp_dir().join(format!(
        "diffuse-resume-{}-{}-{}-{:?}-{:?}-{:?}-{}-{:?}-{:?}-{}-{}-{}",
        std::process::id(),
        s.model.dropout,
        s.flip,
        s.placement,
        s.max_shard,
        s.micro_batch,
        s.grad_accum,
        s.target,
        s.min_snr_gamma,
        s.zero_terminal_snr,
        s.ema_warmup,
        s.objective.to_string().replace([':', ',', '='], "-")
    ));
    let path = dir.join("run.safetensors");
    first_half.checkpoint(gpu).unwrap().save(&path).unwrap();
    drop(first_half);
    let ckpt = Checkpoint::load(&path).unwrap();
    assert_eq!(ckpt.step, 6);
    let mut resumed = Trainer::new(gpu, settings(), &data, Some(&ckpt)).unwrap();
    let tail = losses(&mut resumed, 6);
    assert_eq!(
        [head, tail].concat(),
        all,
        "resuming must reproduce the uninterrupted losses bit for bit"
    );
}

#[test]
fn reports_collected_without_waiting_are_the_means_of_the_steps_they_cover() {
    let gpu = gpu();
    let data = few_images();
    let mut each = Trainer::new(gpu, settings(), &data, None).unwrap();
    let per_step = losses(&mut each, 9);

    let mut grouped = Trainer::new(gpu, settings(), &data, None).unwrap();
    let mut reports = Vec::new();
    for i in 1..=9u64 {
        grouped.step(gpu, i % 3 == 0).unwrap();
        reports.extend(grouped.poll_losses(gpu).unwrap());
    }
    let polled = reports.len();
    reports.extend(grouped.wait_losses(gpu).unwrap());
    assert!(grouped.wait_losses(gpu).unwrap().is_empty());
    assert!(polled <= 3);
    let steps: Vec<u64> = reports.iter().map(|r| r.step).collect();
    assert_eq!(steps, [3, 6, 9], "one report per requesting step, in order");
    for (report, chunk) in reports.iter().zip(per_step.chunks(3)) {
        // The GPU sums three f32 losses (two roundings of at most u·|partial sum| each, u = 2⁻²⁴), then the
        // host divides in f64 (error negligible here): the mean agrees with the per-step losses' mean to
        // 2u·Σ/3.
        let want = chunk.iter().sum::<f64>() / 3.0;
        let u = f32::EPSILON as f64 / 2.0;
        let bound = 2.0 * u * chunk.iter().sum::<f64>() / 3.0 + 1e-15;
        assert!(
            (report.loss - want).abs() <= bound,
            "step {}: {} vs {want}",
            report.step,
            report.loss
        );
        assert!(report.grad_norm > 0.0);
    }
}

#[test]
fn a_diverging_run_is_reported_as_an_error() {
    let gpu = gpu();
    let mut s = settings();
    s.lr = 1e30;
    s.warmup = 0;
    let mut trainer = Trainer::new(gpu, s, &few_images(), None).unwrap();
    for _ in 0..3 {
        trainer.step(gpu, false).unwrap();
    }
    trainer.step(gpu, true).unwrap();
    let err = trainer.wait_losses(gpu).unwrap_err().to_string();
    assert!(err.contains("diverged at step 4"), "{err}");
}

#[test]
fn a_step_is_one_submission_and_a_mismatched_checkpoint_is_refused() {
    let gpu = gpu();
    let data = few_images();
    let trainer = Trainer::new(gpu, settings(), &data, None).unwrap();
    assert!(
        trainer.dispatch_count() > 100,
        "the whole step is recorded as one list of dispatches"
    );
    // Counted on a device of its own: the shared test GPU's counter also counts the submissions of the tests
    // running beside this one. Both placements (the streamed one records its upload into the step), with and
    // without the loss report (whose copies ride in the same submission).
    let own = diffuse::gpu::Gpu::new(None).unwrap();
    for placement in [Placement::Gpu, Placement::Host] {
        let mut s = settings();
        s.placement = placement;
        let mut counted = Trainer::new(&own, s, &data, None).unwrap();
        for report in [false, true, false] {
            let before = own.submissions();
            counted.step(&own, report).unwrap();
            assert_eq!(
                own.submissions() - before,
                1,
                "a training step ({placement:?}, report {report}) must be one queue submission"
            );
        }
        assert_eq!(counted.wait_losses(&own).unwrap().len(), 1);
    }
    let mut ckpt = trainer.checkpoint(gpu).unwrap();
    ckpt.config.base_channels = 8;
    let err = Trainer::new(gpu, settings(), &data, Some(&ckpt))
        .err()
        .unwrap()
        .to_string();
    // Named as the flag that differs, with both values, not as a dump of the configuration.
    let base = settings().model.base_channels;
    assert!(
        err.contains("another model: --base-channels (checkpoint 8, asked")
            && err.contains(&format!("asked {base})"))
            && !err.contains("UNetConfig"),
        "{err}"
    );
    let mut rgb = data.clone();
    rgb.channels = 3;
    let err = Trainer::new(gpu, settings(), &rgb, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("3×8×8"), "{err}");
}

/// Shards as small as the tiny model's largest parameter allows: the most cuts.
fn smallest_shard() -> usize {
    diffuse::model::ParamLayout::new(&tiny())
        .params
        .iter()
        .map(|p| p.len().div_ceil(64) * 64)
        .max()
        .unwrap()
}

#[test]
fn parameters_cut_into_shards_train_exactly_as_one_buffer() {
    let gpu = gpu();
    let data = few_images();
    let run = |max_shard: Option<usize>| {
        let mut s = settings();
        // Without clipping every update is element-wise, so the cut cannot change a bit (with it, the norm's
        // summation order would differ).
        s.grad_clip = None;
        s.max_shard = max_shard;
        let mut trainer = Trainer::new(gpu, s, &data, None).unwrap();
        let shards = trainer.net.params.shards().len();
        (
            shards,
            losses(&mut trainer, 4),
            trainer.checkpoint(gpu).unwrap(),
        )
    };
    let (one, whole_losses, whole) = run(None);
    let (many, cut_losses, cut) = run(Some(smallest_shard()));
    assert_eq!(one, 1);
    assert!(many >= 4, "{many} shards");
    assert_eq!(cut_losses, whole_losses);
    assert!(cut.params == whole.params && cut.ema == whole.ema && cut.adam == whole.adam);
}

#[test]
fn a_resumed_run_with_sharded_parameters_repeats_the_uninterrupted_losses_exactly() {
    let mut s = settings();
    s.max_shard = Some(smallest_shard());
    check_resume(s);
}

#[test]
fn a_resumed_run_in_micro_batches_with_accumulation_repeats_the_uninterrupted_losses_exactly() {
    let mut s = settings();
    s.batch = 2;
    s.grad_accum = 2;
    s.micro_batch = Some(1);
    s.model.dropout = 0.2;
    s.placement = Placement::Host;
    check_resume(s);
}

/// Micro-batches and accumulation change only the order of sums: the gradient of the same four images, noise,
/// timesteps, flips and dropout masks is the whole batch's.
///
/// Bound: tests/it/unet.rs holds the tiny U-Net's gradient to 40·γ₂₈₈·Σ|gᵢvᵢ| of the exact one along a direction
/// v; two such computations differ by at most twice that, plus the one f32 add per pass that sums the micro-batch
/// gradients (γ(passes)·Σ|gᵢvᵢ|). The 1/passes scaling is exact (a power of two). Directions: random signs over
/// each parameter tensor in turn, so an error confined to one tensor cannot hide in a sum over all.
#[test]
fn micro_batched_and_accumulated_gradients_equal_the_whole_batchs() {
    use diffuse::reference::gamma;
    let gpu = gpu();
    let data = few_images();
    let first_step = |batch: usize, grad_accum: usize, micro_batch: Option<usize>| {
        let mut s = settings();
        s.batch = batch;
        s.grad_accum = grad_accum;
        s.micro_batch = micro_batch;
        s.flip = true;
        s.model.dropout = 0.2;
        let mut trainer = Trainer::new(gpu, s, &data, None).unwrap();
        let loss = losses(&mut trainer, 1)[0];
        (trainer.plan().passes, loss, trainer.gradient(gpu).unwrap())
    };
    let (passes, whole_loss, whole) = first_step(4, 1, None);
    assert_eq!(passes, 1);
    let layout = diffuse::model::ParamLayout::new(&tiny());
    for (batch, accum, micro, want_passes) in
        [(4, 1, Some(2), 2), (4, 1, Some(1), 4), (2, 2, None, 2)]
    {
        let (passes, loss, split) = first_step(batch, accum, micro);
        let what = format!("batch {batch} × {accum} in passes of {micro:?}");
        assert_eq!(passes, want_passes, "{what}");
        let bound = 2.0 * 40.0 * gamma(288) + gamma(passes);
        assert!(
            (loss - whole_loss).abs() <= bound * whole_loss,
            "{what}: loss {loss} vs {whole_loss}"
        );
        for (k, p) in layout.params.iter().enumerate() {
            let signs = common::uniform(p.len(), 300 + k as u64);
            let range = p.offset..p.offset + p.len();
            let dot = |g: &[f32]| -> (f64, f64) {
                g[range.clone()]
                    .iter()
                    .zip(&signs)
                    .fold((0.0, 0.0), |(s, a), (&g, &v)| {
                        let t = g as f64 * v.signum() as f64;
                        (s + t, a + t.abs())
                    })
            };
            let ((a, mag_a), (b, mag_b)) = (dot(&whole), dot(&split));
            assert!(
                (a - b).abs() <= bound * mag_a.max(mag_b),
                "{what}: {} along a random direction: {a} vs {b}",
                p.name
            );
        }
    }
}

#[test]
fn a_batch_over_the_memory_budget_is_split_into_micro_batches_that_fit() {
    let gpu = gpu();
    let data = few_images();
    let plan = |micro_batch: Option<usize>, budget: Option<u64>| {
        let mut s = settings();
        s.micro_batch = micro_batch;
        s.memory_budget = budget;
        Trainer::new(gpu, s, &data, None).map(|t| t.plan().clone())
    };
    let whole = plan(None, None).unwrap();
    let halves = plan(Some(2), None).unwrap();
    assert!((whole.micro_batch, whole.passes) == (4, 1) && whole.note.is_none());
    assert!(halves.bytes < whole.bytes && halves.passes == 2);
    // A budget that holds two images per pass but not four: the batch is split in two, and the run says so.
    let split = plan(None, Some(halves.bytes)).unwrap();
    assert_eq!((split.micro_batch, split.passes), (2, 2));
    let note = split.note.unwrap();
    assert!(
        note.contains("batch 4 does not fit") && note.contains("2 micro-batches of 2"),
        "{note}"
    );
    // Nothing fits: the error names the budget and what to change.
    let err = plan(None, Some(1000)).unwrap_err().to_string();
    assert!(
        err.contains("one image at a time does not fit") && err.contains("--memory-budget"),
        "{err}"
    );
    let err = plan(Some(3), None).unwrap_err().to_string();
    assert!(
        err.contains("--micro-batch 3 must divide --batch 4"),
        "{err}"
    );
}

/// A 64×64 RGB U-Net small enough for CI (three levels down to 16×16, attention there) and eight images of
/// coloured shapes, streamed and flipped as a photo folder would be.
fn rgb64_run() -> (TrainSettings, Dataset) {
    let config = UNetConfig {
        in_channels: 3,
        image_size: 64,
        base_channels: 8,
        channel_mults: vec![1, 2, 2],
        blocks_per_level: 1,
        attention_resolutions: vec![16],
        groups: 4,
        heads: 2,
        num_classes: None,
        dropout: 0.0,
        conventions: Default::default(),
    };
    let mut pixels = Vec::new();
    for k in 0..8usize {
        let colour = [(k * 37) % 256, (k * 91 + 60) % 256, 255 - (k * 53) % 256];
        for rgb in colour {
            for y in 0..64usize {
                for x in 0..64usize {
                    // A disc of radius 12–26 at a position that varies with k, on black.
                    let (cx, cy, r) = (20 + 3 * k, 44 - 2 * k, 12 + 2 * k);
                    let inside = (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2)
                        < (r * r) as i64;
                    pixels.push(if inside { rgb as u8 } else { 0 });
                }
            }
        }
    }
    let data = Dataset {
        pixels: pixels.into(),
        len: 8,
        channels: 3,
        size: 64,
        labels: None,
        class_names: Vec::new(),
        description: "coloured discs".into(),
        notes: Vec::new(),
    };
    let mut s = TrainSettings::new(config);
    s.batch = 4;
    s.lr = 2e-3;
    s.warmup = 10;
    s.flip = true;
    s.placement = Placement::Host;
    s.seed = 5;
    (s, data)
}

#[test]
fn a_64px_rgb_model_learns_and_resumes_exactly() {
    let gpu = gpu();
    let (settings, data) = rgb64_run();
    let mut trainer = Trainer::new(gpu, settings.clone(), &data, None).unwrap();
    let history = losses(&mut trainer, 60);
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&history[..10]), mean(&history[50..]));
    assert!(
        last < 0.7 * first,
        "loss went from {first:.3} to {last:.3}: not learning"
    );
    // Resume halfway through a run: the losses continue bit for bit.
    let path = std::env::temp_dir()
        .join(format!("diffuse-rgb64-{}", std::process::id()))
        .join("run.safetensors");
    let mut straight = Trainer::new(gpu, settings.clone(), &data, None).unwrap();
    let all = losses(&mut straight, 6);
    let mut first_half = Trainer::new(gpu, settings.clone(), &data, None).unwrap();
    let head = losses(&mut first_half, 3);
    first_half.checkpoint(gpu).unwrap().save(&path).unwrap();
    let ckpt = Checkpoint::load(&path).unwrap();
    let mut resumed = Trainer::new(gpu, settings, &data, Some(&ckpt)).unwrap();
    assert_eq!([head, losses(&mut resumed, 3)].concat(), all);
}

#[test]
fn one_non_finite_weight_in_any_shard_stops_the_checkpoint() {
    // The check reads two norms computed on the GPU; one bad value in the last shard of the parameters or of the
    // EMA, with the parameters cut into as many shards as possible, must make its norm non-finite.
    let gpu = gpu();
    let data = few_images();
    let mut s = settings();
    s.max_shard = Some(smallest_shard());
    let good = Trainer::new(gpu, s.clone(), &data, None)
        .unwrap()
        .checkpoint(gpu)
        .expect("freshly initialised weights are finite");
    let last = diffuse::model::ParamLayout::new(&tiny())
        .params
        .last()
        .map(|p| p.offset + p.len() - 1)
        .unwrap();
    for (value, in_ema, says) in [
        (f32::NAN, true, "the EMA weights at step 0"),
        (f32::INFINITY, false, "the weights at step 0"),
    ] {
        let mut bad = good.clone();
        let set = if in_ema {
            &mut bad.ema
        } else {
            &mut bad.params
        };
        set[last] = value;
        let trainer = Trainer::new(gpu, s.clone(), &data, Some(&bad)).unwrap();
        assert!(
            trainer.net.params.shards().len() > 1,
            "the test needs shards"
        );
        let Err(err) = trainer.checkpoint(gpu) else {
            panic!("{says}: the checkpoint was made");
        };
        let err = err.to_string();
        assert!(err.starts_with(says) && err.contains("non-finite"), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The training objectives: x₀ and v targets, Min-SNR-γ weighting, zero terminal SNR, the EMA warm-up. Each trains
// the tiny model until its loss falls, and resumes bit for bit.
// ---------------------------------------------------------------------------------------------------------------

use diffuse::diffusion::Prediction;
use diffuse::optim::EmaWarmup;

/// The objectives under test, each a change of `settings()`.
fn objective(name: &str) -> TrainSettings {
    let mut s = settings();
    match name {
        "x0" => s.target = Prediction::Sample,
        "v" => s.target = Prediction::Velocity,
        "min-snr eps" => s.min_snr_gamma = Some(5.0),
        "min-snr v" => {
            s.target = Prediction::Velocity;
            s.min_snr_gamma = Some(5.0);
        }
        "zero-terminal-snr v" => {
            s.target = Prediction::Velocity;
            s.zero_terminal_snr = true;
        }
        "ema warm-up" => {
            s.ema_warmup = EmaWarmup::Power {
                power: 0.75,
                inv_gamma: 1.0,
            }
        }
        // The score-based objectives with their papers' defaults but σ_max: 16 is the largest distance two 8×8
        // images in [−1, 1] can have (NCSNv2's rule).
        "ncsn" => s.objective = "ncsn:sigma_max=16,levels=10".parse().unwrap(),
        "ve" => s.objective = "ve:sigma_max=16".parse().unwrap(),
        "vp" => s.objective = "vp".parse().unwrap(),
        "subvp likelihood" => s.objective = "subvp:weighting=likelihood".parse().unwrap(),
        "edm" => s.objective = "edm".parse().unwrap(),
        other => panic!("no objective {other}"),
    }
    s
}

/// 150 steps of the tiny model: the mean loss of the last 20 must be under 0.6× that of the first 20, the
/// criterion `training_a_tiny_model_on_four_images_drives_the_loss_down` holds ε-prediction to. Whatever the
/// target and weighting, the zero-initialised output conv starts every prediction at 0, so the first losses are
/// the (weighted) mean square of the target, and a model that learns nothing keeps them.
fn check_loss_falls(name: &str) {
    let gpu = gpu();
    let mut trainer = Trainer::new(gpu, objective(name), &few_images(), None).unwrap();
    let history = losses(&mut trainer, 150);
    let mean = |r: &[f64]| r.iter().sum::<f64>() / r.len() as f64;
    let (first, last) = (mean(&history[..20]), mean(&history[130..]));
    assert!(
        history.iter().all(|l| l.is_finite()) && last < 0.6 * first,
        "{name}: loss went from {first:.3} to {last:.3}: not learning"
    );
}

#[test]
fn x0_prediction_learns_and_resumes_exactly() {
    check_loss_falls("x0");
    check_resume(objective("x0"));
}

#[test]
fn v_prediction_learns_and_resumes_exactly() {
    check_loss_falls("v");
    check_resume(objective("v"));
}

#[test]
fn min_snr_weighted_eps_prediction_learns_and_resumes_exactly() {
    check_loss_falls("min-snr eps");
    check_resume(objective("min-snr eps"));
}

#[test]
fn min_snr_weighted_v_prediction_learns_and_resumes_exactly() {
    check_loss_falls("min-snr v");
    check_resume(objective("min-snr v"));
}

#[test]
fn zero_terminal_snr_v_prediction_learns_and_resumes_exactly() {
    check_loss_falls("zero-terminal-snr v");
    check_resume(objective("zero-terminal-snr v"));
}

#[test]
fn ema_warmup_learns_and_resumes_exactly() {
    check_loss_falls("ema warm-up");
    check_resume(objective("ema warm-up"));
}

#[test]
fn the_warmed_up_ema_of_a_short_run_is_a_trained_model() {
    // The raw weights' loss does not see the EMA, so this checks what the EMA warm-up is for: after 150 steps the
    // EMA weights (decay 1 − 150^(−3/4) ≈ 0.977 by then, an average over the last ~40 steps) must be a trained
    // model, their loss under 0.6× that of the initial weights (the criterion of `check_loss_falls`). Each loss is
    // the mean over 20 steps at learning rate 0, so the weights measured do not move.
    let gpu = gpu();
    let data = few_images();
    let frozen = |resume: Option<&Checkpoint>| {
        let mut s = objective("ema warm-up");
        s.lr = 0.0;
        let mut trainer = Trainer::new(gpu, s, &data, resume).unwrap();
        losses(&mut trainer, 20).iter().sum::<f64>() / 20.0
    };
    let mut trainer = Trainer::new(gpu, objective("ema warm-up"), &data, None).unwrap();
    losses(&mut trainer, 150);
    let mut ckpt = trainer.checkpoint(gpu).unwrap();
    ckpt.params = ckpt.ema.clone();
    let (initial, ema) = (frozen(None), frozen(Some(&ckpt)));
    assert!(
        ema < 0.6 * initial,
        "the EMA weights' loss {ema:.3} vs the initial weights' {initial:.3}: the EMA did not follow training"
    );
}

#[test]
fn each_objective_changes_the_training_and_is_recorded() {
    // The first step's loss differs from plain ε-prediction's (same batch, noise and timesteps), so each setting
    // reaches the GPU; and the checkpoint records it.
    let gpu = gpu();
    let data = few_images();
    let first = |s: TrainSettings| {
        let mut trainer = Trainer::new(gpu, s, &data, None).unwrap();
        let loss = losses(&mut trainer, 1)[0];
        (loss, trainer.checkpoint(gpu).unwrap().training.settings)
    };
    let (plain, record) = first(settings());
    assert_eq!(
        (
            record.target,
            record.min_snr_gamma,
            record.zero_terminal_snr,
            record.ema_warmup
        ),
        (Prediction::Epsilon, None, false, EmaWarmup::Ddpm)
    );
    for name in ["x0", "v", "min-snr eps", "min-snr v", "zero-terminal-snr v"] {
        let s = objective(name);
        let (loss, record) = first(s.clone());
        assert_ne!(loss, plain, "{name}: the loss is plain ε-prediction's");
        assert_eq!(
            (
                record.target,
                record.min_snr_gamma,
                record.zero_terminal_snr
            ),
            (s.target, s.min_snr_gamma, s.zero_terminal_snr),
            "{name}"
        );
    }
    let (_, record) = first(objective("ema warm-up"));
    assert_eq!(record.ema_warmup, objective("ema warm-up").ema_warmup);
}

#[test]
fn zero_terminal_snr_with_eps_prediction_is_refused_with_the_reason() {
    let mut s = settings();
    s.zero_terminal_snr = true;
    let err = Trainer::new(gpu(), s, &few_images(), None)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        err.contains("--zero-terminal-snr needs --prediction v")
            && err.contains("says nothing about x₀")
            && err.contains("add --prediction v"),
        "{err}"
    );
}

#[test]
fn ema_warmup_decays_follow_diffusers_formula_and_the_default_is_unchanged() {
    // diffusers' EMAModel with use_ema_warmup: 1 − (1 + k/inv_gamma)^(−power), capped at the decay, floored at 0.
    for (power, inv_gamma, decay) in [
        (0.75, 1.0, 0.999),
        (2.0 / 3.0, 1.0, 0.9999),
        (0.5, 3.0, 0.99),
    ] {
        let mut s = settings();
        s.ema_decay = decay;
        s.ema_warmup = EmaWarmup::Power { power, inv_gamma };
        for k in (0..200u64).chain([1_000, 31_622, 1_000_000]) {
            let want = (1.0 - (1.0 + k as f64 / inv_gamma).powf(-power))
                .min(decay)
                .max(0.0);
            assert_eq!(
                s.ema_decay_at(k),
                want,
                "power {power} inv_gamma {inv_gamma} step {k}"
            );
        }
        assert_eq!(s.ema_decay_at(0), 0.0, "the first step copies the weights");
        assert_eq!(s.ema_decay_at(u64::MAX / 2), decay, "capped at the decay");
    }
    // Without a warm-up setting (and in every checkpoint from before it): min(decay, (1 + k)/(10 + k)).
    let s = settings();
    assert_eq!(s.ema_warmup, EmaWarmup::Ddpm);
    for k in 0..2000u64 {
        assert_eq!(
            s.ema_decay_at(k),
            0.999f64.min((1.0 + k as f64) / (10.0 + k as f64))
        );
    }
}

#[test]
fn the_optimizers_ema_follows_the_warmup_decays_step_by_step() {
    // Each step's EMA against ema_k = d_k·ema_(k−1) + (1 − d_k)·w_k from the GPU's previous EMA and this step's
    // weights. The kernel rounds d_k and 1 − d_k to f32, and makes two products and a sum: ≤ 3 roundings, each
    // ≤ u times the magnitudes, so |error| ≤ γ(3)·(d|e| + (1 − d)|w|) per element (as tests/it/optimizer.rs).
    use diffuse::reference::gamma;
    let gpu = gpu();
    let s = objective("ema warm-up");
    let mut trainer = Trainer::new(gpu, s.clone(), &few_images(), None).unwrap();
    let mut ema: Vec<f32> = trainer.checkpoint(gpu).unwrap().ema;
    for k in 0..4u64 {
        trainer.step(gpu, false).unwrap();
        let ckpt = trainer.checkpoint(gpu).unwrap();
        let d = s.ema_decay_at(k);
        if k == 0 {
            assert_eq!(d, 0.0);
            assert!(
                ckpt.ema == ckpt.params,
                "the warm-up's first decay is 0: the EMA is the weights, bit for bit"
            );
        }
        for (i, ((&e, &w), &got)) in ema.iter().zip(&ckpt.params).zip(&ckpt.ema).enumerate() {
            let (e, w) = (e as f64, w as f64);
            let want = d * e + (1.0 - d) * w;
            let bound = gamma(3) * (d * e.abs() + (1.0 - d) * w.abs());
            assert!(
                (got as f64 - want).abs() <= bound,
                "step {k} element {i}: EMA {got} vs {want} (decay {d})"
            );
        }
        ema = ckpt.ema;
    }
    // The default warm-up's first decay is 0.1: the EMA is not the weights after one step.
    let mut plain = Trainer::new(gpu, settings(), &few_images(), None).unwrap();
    plain.step(gpu, false).unwrap();
    let ckpt = plain.checkpoint(gpu).unwrap();
    assert!(ckpt.ema != ckpt.params);
}

#[test]
fn at_most_two_steps_are_ever_queued_and_the_cap_is_reached() {
    let gpu = gpu();
    let mut trainer = Trainer::new(gpu, settings(), &few_images(), None).unwrap();
    // No step reports, so nothing but the cap's fence waits for the GPU between submissions.
    for _ in 0..6 {
        trainer.step(gpu, false).unwrap();
        assert!(trainer.most_in_flight() <= MAX_IN_FLIGHT);
    }
    assert_eq!(
        trainer.most_in_flight(),
        MAX_IN_FLIGHT,
        "six unreported steps never queued two at once: the counter counts nothing"
    );
}

/// A front end's outputs kept in memory: what the run loop hands over, in order.
#[derive(Default)]
struct Kept {
    checkpoints: Vec<u64>,
    metrics: Vec<u64>,
    previews: Vec<(u64, usize)>,
    plots: usize,
}

impl Outputs for Kept {
    fn checkpoint(&mut self, ckpt: &Checkpoint) -> diffuse::Result<()> {
        self.checkpoints.push(ckpt.step);
        Ok(())
    }
    fn metrics(&mut self, row: &Metrics) -> diffuse::Result<()> {
        self.metrics.push(row.report.step);
        Ok(())
    }
    fn preview(&mut self, p: &Preview) -> diffuse::Result<String> {
        assert_eq!(p.pixels.len(), p.n * p.channels * p.size * p.size);
        self.previews.push((p.step, p.n));
        Ok(String::new())
    }
    fn loss_plot(&mut self) -> diffuse::Result<()> {
        self.plots += 1;
        Ok(())
    }
}

/// Sets the stop flag when the run reaches `at`, as a signal handler or a Stop button would.
struct StopAt {
    flag: StopFlag,
    at: u64,
}

impl Progress for StopAt {
    fn position(&mut self, step: u64) {
        if step == self.at {
            self.flag.set();
        }
    }
}

fn cadence(steps: u64) -> Cadence {
    Cadence {
        steps,
        log_every: 2,
        checkpoint_every: 3,
        sample_every: 4,
        preview: Some(2),
    }
}

#[test]
fn the_run_loop_keeps_its_cadence_and_a_stop_saves_after_the_next_step() {
    let gpu = gpu();
    let mut trainer = Trainer::new(gpu, settings(), &few_images(), None).unwrap();
    let mut kept = Kept::default();
    let finished = Run {
        gpu,
        trainer: &mut trainer,
        cadence: cadence(5),
        stop: StopFlag::default(),
        outputs: Some(&mut kept),
        progress: &mut Silent,
    }
    .go()
    .unwrap();
    assert_eq!(finished, Finished::Done);
    // Reports at 2 and 4 (log), 3 (checkpoint), 4 and 5 (previews; 5 is the last step).
    assert_eq!(kept.metrics, [2, 3, 4, 5]);
    assert_eq!(kept.checkpoints, [3, 5]);
    assert_eq!(kept.previews, [(4, 2), (5, 2)]);
    assert_eq!(kept.plots, 2);

    // Continued to 20 with a stop asked at step 6: the step after it (7) is the last, and it is saved.
    let flag = StopFlag::default();
    let mut kept = Kept::default();
    let finished = Run {
        gpu,
        trainer: &mut trainer,
        cadence: cadence(20),
        stop: flag.clone(),
        outputs: Some(&mut kept),
        progress: &mut StopAt { flag, at: 6 },
    }
    .go()
    .unwrap();
    assert_eq!(finished, Finished::Stopped { step: 7 });
    assert_eq!(kept.checkpoints, [6, 7]);
    assert_eq!(kept.metrics.last(), Some(&7), "a stopping step reports");
    assert_eq!(trainer.step, 7);

    // "Every 0 steps" is refused before any step.
    let mut zero = cadence(30);
    zero.sample_every = 0;
    let err = Run {
        gpu,
        trainer: &mut trainer,
        cadence: zero,
        stop: StopFlag::default(),
        outputs: None,
        progress: &mut Silent,
    }
    .go()
    .unwrap_err();
    assert!(err.to_string().contains("--sample-every"), "{err}");
    assert_eq!(trainer.step, 7);
}

/// The dispatches of one training step of each preset of the digits at batch 32, on the kernels `Auto` takes for
/// CPU adapters and on those it takes for GPUs (`Gpu::with_tuning`, each on a device of its own): pinned exactly,
/// so that every change in the count is seen and written down (docs/kernels.md, "Dispatches per step"; issue 26
/// asked the GPU path of `small` for 450 or fewer).
#[test]
fn a_training_step_records_the_known_number_of_dispatches() {
    use diffuse::data::Fit;
    use diffuse::gpu::Tuning;
    use diffuse::model::Preset;
    let digits = Dataset::builtin(Fit {
        channels: 1,
        size: 28,
        background: [255; 3],
    })
    .unwrap();
    let mut counts = Vec::new();
    for tuning in [Tuning::Cpu, Tuning::Gpu] {
        // Whatever DIFFUSE_TUNING says for the other tests.
        let device = diffuse::gpu::Gpu::new(None).unwrap().with_tuning(tuning);
        for preset in [Preset::Tiny, Preset::Small, Preset::Medium] {
            let mut s = TrainSettings::new(preset.config());
            s.batch = 32;
            let trainer = Trainer::new(&device, s, &digits, None).unwrap();
            let passes = 32 / trainer.plan().micro_batch;
            counts.push((tuning, preset.name(), passes, trainer.dispatch_count()));
        }
    }
    let want = [
        (Tuning::Cpu, "tiny", 1, 456),
        (Tuning::Cpu, "small", 1, 736),
        (Tuning::Cpu, "medium", 1, 1133),
        (Tuning::Gpu, "tiny", 1, 328),
        (Tuning::Gpu, "small", 1, 414),
        (Tuning::Gpu, "medium", 1, 603),
    ];
    assert_eq!(counts, want);
}

#[test]
fn ncsn_learns_and_resumes_exactly() {
    check_loss_falls("ncsn");
    check_resume(objective("ncsn"));
}

#[test]
fn the_ve_sde_learns_and_resumes_exactly() {
    check_loss_falls("ve");
    check_resume(objective("ve"));
}

#[test]
fn the_vp_sde_learns_and_resumes_exactly() {
    check_loss_falls("vp");
    check_resume(objective("vp"));
}

#[test]
fn the_likelihood_weighted_sub_vp_sde_learns_and_resumes_exactly() {
    check_loss_falls("subvp likelihood");
    check_resume(objective("subvp likelihood"));
}

#[test]
fn edm_learns_and_resumes_exactly() {
    check_loss_falls("edm");
    check_resume(objective("edm"));
}

#[test]
fn a_score_based_checkpoint_records_its_objective_and_samples_on_its_process() {
    // The record reads back as the same objective, parameters and all; the samplers over noise levels run on it
    // (finite images), and the ones built on DDPM's timesteps refuse, naming those that work.
    use diffuse::sample::batched::Batched;
    use diffuse::sample::spec::{SamplerKind, SamplerSpec};
    let gpu = gpu();
    for name in ["ncsn", "vp", "edm"] {
        let s = objective(name);
        let mut trainer = Trainer::new(gpu, s.clone(), &few_images(), None).unwrap();
        losses(&mut trainer, 2);
        let ckpt = trainer.checkpoint(gpu).unwrap();
        assert_eq!(ckpt.training.settings.objective, s.objective, "{name}");
        let params = diffuse::model::ParamBuffers::upload(
            gpu,
            &diffuse::model::ParamLayout::new(&ckpt.config),
            &ckpt.ema,
        )
        .unwrap();
        for kind in [SamplerKind::Heun, SamplerKind::DpmSolver, SamplerKind::Ode] {
            let plan = SamplerSpec::new(kind, 6)
                .plan_trained(&s.objective, || ckpt.training.sampling_schedule())
                .unwrap();
            let samples = Batched {
                config: &ckpt.config,
                params: &params,
                trained: ckpt.training.trained(),
                guidance: 1.5,
                classes: Some(&[1]),
                given: None,
                frames: 0,
                seed: 4,
                stop: None,
            }
            .run(gpu, &plan, 3, 2, |_| ())
            .unwrap();
            assert!(
                samples.pixels.len() == 3 * 64 && samples.pixels.iter().all(|v| v.is_finite()),
                "{name} {kind:?}"
            );
        }
        let refused = SamplerSpec::new(SamplerKind::Ddim, 6)
            .plan_trained(&s.objective, || ckpt.training.sampling_schedule())
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("euler, heun, ode, dpm++2m, unipc, sde, pc or langevin"),
            "{refused}"
        );
        let no_schedule = ckpt.training.schedule().unwrap_err().to_string();
        assert!(
            no_schedule.contains("no DDPM timestep schedule"),
            "{no_schedule}"
        );
    }
}

#[test]
fn ddpm_flags_with_a_score_based_objective_are_refused() {
    let mut s = objective("edm");
    s.target = Prediction::Velocity;
    let err = Trainer::new(gpu(), s, &few_images(), None)
        .err()
        .expect("must be refused")
        .to_string();
    assert!(
        err.contains("--prediction") && err.contains("--objective edm"),
        "{err}"
    );
}

/// A run is refused at start-up on a disk without room for one checkpoint, whose size the estimate bounds: at
/// least the bytes a checkpoint of the model serialises to, at most a MiB and a half more.
#[test]
fn a_disk_without_room_for_a_checkpoint_is_refused_up_front() {
    let gpu = gpu();
    let data = few_images();
    let mut s = settings();
    s.model.num_classes = Some(2);
    let trainer = Trainer::new(gpu, s.clone(), &data, None).unwrap();
    let written = trainer.checkpoint(gpu).unwrap().to_bytes().unwrap().len() as u64;
    let needed = Folder::checkpoint_bytes(&s.model);
    assert!(
        written <= needed && needed <= written + (3 << 19),
        "estimate {needed} for {written} bytes"
    );
    let dir = std::path::Path::new("runs/full-disk");
    assert!(Folder::check_room(dir, needed, needed).is_ok());
    let e = Folder::check_room(dir, needed, needed - 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--out runs/full-disk") && e.contains("MB free") && e.contains("another disk"),
        "{e}"
    );
}
