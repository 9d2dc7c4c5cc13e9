//! Training on the GPU: a tiny model overfits a few images, one submission per step, and a run resumed from a
//! checkpoint continues exactly as the uninterrupted run (same losses, step for step, bit for bit).

mod common;

use std::collections::HashMap;

use common::gpu;
use diffuse::checkpoint::Checkpoint;
use diffuse::data::Dataset;
use diffuse::model::UNetConfig;
use diffuse::train::{TrainSettings, Trainer};

fn tiny() -> UNetConfig {
    UNetConfig {
        in_channels: 1,
        image_size: 8,
        base_channels: 16,
        channel_mults: vec![1, 2],
        blocks_per_level: 1,
        attention_resolutions: vec![4],
        groups: 4,
        heads: 1,
        num_classes: Some(2),
        dropout: 0.0,
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
                pixels.push(if on { 1.0 } else { -1.0 });
            }
        }
    }
    Dataset {
        pixels,
        len: 4,
        channels: 1,
        size: 8,
        labels: Some(vec![0, 0, 1, 1]),
        class_names: vec!["bar".into(), "square".into()],
        description: "test pattern".into(),
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
            trainer.step(gpu).unwrap();
            trainer.take_loss(gpu).unwrap().0
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
    let gpu = gpu();
    let data = few_images();
    let mut straight = Trainer::new(gpu, settings(), &data, None).unwrap();
    let all = losses(&mut straight, 12);

    let mut first_half = Trainer::new(gpu, settings(), &data, None).unwrap();
    let head = losses(&mut first_half, 6);
    let dir = std::env::temp_dir().join(format!("diffuse-resume-{}", std::process::id()));
    let path = dir.join("run.safetensors");
    first_half
        .checkpoint(gpu, HashMap::new())
        .unwrap()
        .save(&path)
        .unwrap();
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
fn a_step_is_one_submission_and_a_mismatched_checkpoint_is_refused() {
    let gpu = gpu();
    let data = few_images();
    let trainer = Trainer::new(gpu, settings(), &data, None).unwrap();
    assert!(
        trainer.dispatch_count() > 100,
        "the whole step is recorded as one list of dispatches"
    );
    let mut ckpt = trainer.checkpoint(gpu, HashMap::new()).unwrap();
    ckpt.config.base_channels = 8;
    let err = Trainer::new(gpu, settings(), &data, Some(&ckpt))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("another model configuration"), "{err}");
    let mut rgb = data.clone();
    rgb.channels = 3;
    let err = Trainer::new(gpu, settings(), &rgb, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("3×8×8"), "{err}");
}
