//! Checkpoints: exact round trips, PyTorch-style names, atomic writes, and clear errors for foreign, truncated
//! and mismatched files, none of which overwrite anything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use diffuse::checkpoint::{Checkpoint, TrainingRecord};
use diffuse::diffusion::{NamedSchedule, Prediction};
use diffuse::model::{ParamLayout, UNetConfig};
use diffuse::optim::EmaWarmup;
use diffuse::train::TrainSettings;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample_checkpoint(classes: Option<usize>) -> Checkpoint {
    let mut config = UNetConfig::preset("small").unwrap();
    config.num_classes = classes;
    let layout = ParamLayout::new(&config);
    // Distinct values per tensor and position; padding stays zero, as in a real run.
    let mut params = vec![0.0f32; layout.padded_len];
    for (k, p) in layout.params.iter().enumerate() {
        for i in 0..p.len() {
            params[p.offset + i] = k as f32 + i as f32 * 1e-3;
        }
    }
    let scaled = |s: f32| params.iter().map(|v| v * s).collect::<Vec<f32>>();
    let mut settings = TrainSettings::new(config.clone());
    settings.schedule = NamedSchedule::Cosine;
    // Every training objective away from its default, so that each must survive the round trip.
    settings.target = Prediction::Velocity;
    settings.flip = true;
    settings.warmup = 10;
    settings.ema_decay = 0.99;
    settings.ema_warmup = EmaWarmup::Power {
        power: 0.75,
        inv_gamma: 2.5,
    };
    settings.min_snr_gamma = Some(5.0);
    settings.zero_terminal_snr = true;
    settings.grad_clip = None;
    settings.grad_accum = 2;
    settings.seed = 0xDEAD_BEEF_1234;
    Checkpoint {
        config,
        step: 12_345,
        rng_offset: 98_765,
        ema: scaled(0.5),
        adam: Some((scaled(0.25), scaled(0.125))),
        params,
        training: TrainingRecord {
            settings,
            dataset: "test digits (4 images)".into(),
            changes: vec!["step 7: --lr 0.0002 (was 0.001)".into()],
            class_names: (0..classes.unwrap_or(0))
                .map(|k| format!("class {k}"))
                .collect(),
            scheduler: None,
        },
    }
}

#[test]
fn checkpoints_round_trip_exactly() {
    let dir = scratch("round-trip");
    for classes in [None, Some(10)] {
        let ckpt = sample_checkpoint(classes);
        let path = dir.join("run.safetensors");
        ckpt.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), ckpt);
        // The bytes a page offers for download read back the same, and so do a file's bytes held in memory (the
        // metadata's key order may differ from one serialisation to the next: safetensors writes a HashMap).
        let bytes = ckpt.to_bytes().unwrap();
        assert!(Checkpoint::from_bytes(&bytes, &path).unwrap() == ckpt);
        let file = std::fs::read(&path).unwrap();
        assert_eq!(file.len(), bytes.len());
        assert!(Checkpoint::from_bytes(&file, &path).unwrap() == ckpt);
    }
    let mut no_optimizer = sample_checkpoint(None);
    no_optimizer.adam = None;
    no_optimizer.save(&dir.join("ema.safetensors")).unwrap();
    assert_eq!(
        Checkpoint::load(&dir.join("ema.safetensors")).unwrap().adam,
        None
    );
}

#[test]
fn tensors_carry_pytorch_names_and_layouts() {
    let dir = scratch("names");
    let path = dir.join("run.safetensors");
    sample_checkpoint(None).save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(
        file.tensor("conv_in.weight").unwrap().shape(),
        [32, 1, 3, 3]
    );
    assert_eq!(file.tensor("temb.0.weight").unwrap().shape(), [128, 32]);
    assert_eq!(file.tensor("ema.out.2.bias").unwrap().shape(), [1]);
    assert!(file.tensor("adam_v.mid.1.qkv.weight").is_ok());
}

#[test]
fn saving_replaces_atomically_and_leaves_no_temporary_files() {
    let dir = scratch("atomic");
    let path = dir.join("run.safetensors");
    let mut ckpt = sample_checkpoint(None);
    ckpt.save(&path).unwrap();
    ckpt.step += 1;
    ckpt.save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap().step, 12_346);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["run.safetensors"]);
}

#[test]
fn truncated_foreign_and_mismatched_files_are_clear_errors() {
    let dir = scratch("bad");
    let path = dir.join("run.safetensors");
    sample_checkpoint(None).save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = Checkpoint::load(&truncated).unwrap_err().to_string();
    assert!(err.contains("truncated or corrupt"), "{err}");

    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"definitely not a checkpoint").unwrap();
    assert!(Checkpoint::load(&garbage)
        .unwrap_err()
        .to_string()
        .contains("truncated or corrupt"));

    let foreign = dir.join("foreign.safetensors");
    let data = [0u8; 8];
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
    std::fs::write(
        &foreign,
        safetensors::serialize([("w", view)], None).unwrap(),
    )
    .unwrap();
    assert!(Checkpoint::load(&foreign)
        .unwrap_err()
        .to_string()
        .contains("not a diffuse checkpoint"));

    // The same tensors under another config's metadata: shapes no longer fit.
    let mut other = sample_checkpoint(None);
    other.config = UNetConfig::preset("medium").unwrap();
    other.params = vec![0.0; ParamLayout::new(&other.config).padded_len];
    other.ema = other.params.clone();
    other.adam = None;
    let medium = dir.join("medium.safetensors");
    other.save(&medium).unwrap();
    let medium_bytes = std::fs::read(&medium).unwrap();
    let (_, medium_header) = safetensors::SafeTensors::read_metadata(&medium_bytes).unwrap();
    let small = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mixed = safetensors::serialize(small.tensors(), medium_header.metadata().clone()).unwrap();
    let mismatched = dir.join("mismatched.safetensors");
    std::fs::write(&mismatched, mixed).unwrap();
    let err = Checkpoint::load(&mismatched).unwrap_err().to_string();
    assert!(err.contains("the config needs"), "{err}");

    let err = Checkpoint::load(&dir.join("absent.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("absent.safetensors"), "{err}");
}

/// Copies the checkpoint at `from` to `to` with its metadata changed by `edit`, tensors untouched.
fn with_metadata(from: &Path, to: &Path, edit: impl FnOnce(&mut HashMap<String, String>)) {
    let bytes = std::fs::read(from).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    edit(&mut meta);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    std::fs::write(
        to,
        safetensors::serialize(file.tensors(), Some(meta)).unwrap(),
    )
    .unwrap();
}

#[test]
fn an_unknown_metadata_key_is_refused_by_name() {
    let dir = scratch("unknown-key");
    let path = dir.join("run.safetensors");
    sample_checkpoint(Some(3)).save(&path).unwrap();
    for key in ["extra.lr_schedule", "model.kernel_size", "optimizer"] {
        let edited = dir.join("edited.safetensors");
        with_metadata(&path, &edited, |m| {
            m.insert(key.into(), "1".into());
        });
        let err = Checkpoint::load(&edited).unwrap_err().to_string();
        assert!(
            err.contains(&format!("unknown checkpoint metadata \"{key}\""))
                && err.contains("edited.safetensors"),
            "{err}"
        );
    }
}

#[test]
fn every_metadata_key_but_the_later_ones_is_required_and_named_when_missing() {
    let dir = scratch("missing-key");
    let path = dir.join("run.safetensors");
    sample_checkpoint(Some(3)).save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let keys: Vec<String> = header.metadata().clone().unwrap().into_keys().collect();
    // format + step, seed, rng_offset + 13 model keys + 17 extra keys (class_names: a conditional model).
    assert_eq!(keys.len(), 34, "{keys:?}");
    let later = [
        "extra.flip",
        "extra.warmup",
        "extra.ema",
        "extra.clip",
        "extra.grad_accum",
        "extra.changes",
        "extra.ema_warmup",
        "extra.min_snr_gamma",
        "extra.zero_terminal_snr",
        "extra.objective",
        "model.norm_eps",
        "model.freq_shift",
        "model.downsample_padding",
    ];
    for key in keys
        .iter()
        .filter(|k| k.as_str() != "format" && !later.contains(&k.as_str()))
    {
        let edited = dir.join("edited.safetensors");
        with_metadata(&path, &edited, |m| {
            m.remove(key);
        });
        let err = Checkpoint::load(&edited).unwrap_err().to_string();
        assert!(
            err.contains(&format!("lacks \"{key}\"")) && err.contains("edited.safetensors"),
            "{key}: {err}"
        );
    }
    // Without `format` it is no diffuse checkpoint at all.
    let edited = dir.join("edited.safetensors");
    with_metadata(&path, &edited, |m| {
        m.remove("format");
    });
    let err = Checkpoint::load(&edited).unwrap_err().to_string();
    assert!(err.contains("not a diffuse checkpoint"), "{err}");
    // The keys that came later have defaults: files from before them trained without flips, with `diffuse
    // train`'s defaults of the time, and were never resumed with --override.
    with_metadata(&path, &edited, |m| {
        for key in later {
            m.remove(key);
        }
    });
    let training = Checkpoint::load(&edited).unwrap().training;
    let s = &training.settings;
    assert_eq!(
        (
            s.flip,
            s.warmup,
            s.ema_decay,
            s.grad_clip,
            s.grad_accum,
            training.changes.len()
        ),
        (false, 500, 0.999, Some(1.0), 1, 0)
    );
    // Files from before the training objectives: the EMA's (1 + k)/(10 + k) warm-up, the plain MSE, the schedule
    // as named.
    assert_eq!(
        (s.ema_warmup, s.min_snr_gamma, s.zero_terminal_snr),
        (EmaWarmup::Ddpm, None, false)
    );
    // Files from before the score-based objectives: DDPM.
    assert_eq!(s.objective, diffuse::diffusion::process::Objective::Ddpm);
    // Files from before the imports: diffuse's own numerical conventions.
    assert_eq!(s.model.conventions, diffuse::model::Conventions::default());
}

#[test]
fn an_imported_models_sampling_defaults_round_trip_and_a_bad_one_is_named() {
    use diffuse::diffusion::samplers::{Clip, DdpmVariance, Spacing};
    let dir = scratch("scheduler");
    let path = dir.join("run.safetensors");
    let mut ckpt = sample_checkpoint(None);
    for defaults in [
        diffuse::sample::SamplingDefaults {
            spacing: Spacing::Leading { steps_offset: 1 },
            variance: DdpmVariance::PosteriorBeta,
            clip: Clip::ClampKeepEps { lo: -1.5, hi: 1.5 },
        },
        diffuse::sample::SamplingDefaults {
            spacing: Spacing::Linspace,
            variance: DdpmVariance::Beta,
            clip: Clip::Dynamic {
                ratio: 0.9,
                max: 2.0,
            },
        },
    ] {
        ckpt.training.scheduler = Some(defaults);
        ckpt.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), ckpt);
    }
    let edited = dir.join("edited.safetensors");
    with_metadata(&path, &edited, |m| {
        m.insert(
            "extra.scheduler".into(),
            "spacing=sideways,variance=large,clip=none".into(),
        );
    });
    let err = Checkpoint::load(&edited).unwrap_err().to_string();
    assert!(
        err.contains("extra.scheduler") && err.contains("spacing=sideways"),
        "{err}"
    );
}

#[test]
fn imported_conventions_round_trip() {
    let dir = scratch("conventions");
    let path = dir.join("run.safetensors");
    let mut ckpt = sample_checkpoint(None);
    ckpt.config.conventions = diffuse::model::Conventions {
        norm_eps: 1e-6,
        freq_shift: 1,
        downsample_padding: 0,
    };
    ckpt.training.settings.model = ckpt.config.clone();
    ckpt.save(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), ckpt);
}

#[test]
fn a_bad_metadata_value_is_named_with_its_key() {
    let dir = scratch("bad-value");
    let path = dir.join("run.safetensors");
    sample_checkpoint(Some(3)).save(&path).unwrap();
    let edited = dir.join("edited.safetensors");
    for (key, value, says) in [
        ("extra.schedule", "quadratic", "not one of linear, cosine"),
        (
            "extra.prediction",
            "noise",
            "not one of epsilon, sample, velocity, score",
        ),
        ("extra.timesteps", "many", "not a number"),
        ("extra.flip", "yes", "not true or false"),
        ("extra.zero_terminal_snr", "yes", "not true or false"),
        (
            "extra.objective",
            "score",
            "not one of ddpm, ncsn, ve, vp, subvp, edm",
        ),
        (
            "extra.objective",
            "ve:sigma_max=x",
            "sigma_max: not a number",
        ),
        (
            "extra.objective",
            "edm:beta_min=1",
            "--objective edm has no beta-min",
        ),
        (
            "extra.objective",
            "ve:sigma_min=5,sigma_max=1",
            "must exceed",
        ),
        (
            "extra.min_snr_gamma",
            "-5",
            "not \"none\" or a positive number",
        ),
        (
            "extra.ema_warmup",
            "power=0",
            "not \"ddpm\" or \"power=P,inv_gamma=G\"",
        ),
        (
            "extra.ema_warmup",
            "power=-1,inv_gamma=1",
            "not \"ddpm\" or \"power=P,inv_gamma=G\"",
        ),
        ("model.channel_mults", "1,two", "not a list of numbers"),
        (
            "extra.class_names",
            "a\nb",
            "the model has 3 classes but the record names 2",
        ),
    ] {
        with_metadata(&path, &edited, |m| {
            m.insert(key.into(), value.into());
        });
        let err = Checkpoint::load(&edited).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(says), "{key}: {err}");
    }
}

#[test]
fn the_bundled_model_loads_with_what_it_recorded() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/small-mnist.safetensors");
    let ckpt = Checkpoint::load(&path).unwrap();
    let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    // It predates the keys of the training objectives: their documented defaults (ε-prediction's plain MSE, the
    // DDPM EMA warm-up, no rescaling); the rest as recorded (linear schedule, T = 1000, warm-up 500, EMA 0.999,
    // clip 1, no accumulation, no flips: `diffuse train`'s defaults), with its own lr, batch and seed.
    let mut settings = TrainSettings::new(ckpt.config.clone());
    settings.lr = 5e-4;
    settings.batch = 32;
    settings.seed = 1;
    assert_eq!(
        ckpt.training,
        TrainingRecord {
            settings,
            dataset: "built-in MNIST subset (10,000 digits)".into(),
            changes: Vec::new(),
            class_names: digits,
            scheduler: None,
        }
    );
    assert_eq!((ckpt.step, ckpt.config.num_classes), (6004, Some(10)));
}

#[test]
fn crafted_config_sizes_are_refused_before_anything_is_allocated() {
    let dir = scratch("crafted");
    let path = dir.join("run.safetensors");
    sample_checkpoint(Some(3)).save(&path).unwrap();
    let edited = dir.join("edited.safetensors");
    for (key, value, says) in [
        (
            "model.base_channels",
            "1000000000000",
            "outside the bounds 1..=4096",
        ),
        ("model.num_classes", "0", "outside the bounds 1..="),
        (
            "model.channel_mults",
            "1,2,2,2,2,2,2,2,2,2",
            "has 10 entries",
        ),
        (
            "extra.timesteps",
            "18446744073709551615",
            "outside the bounds 1..=",
        ),
        ("model.freq_shift", "2", "outside the bounds 0..=1"),
        ("model.downsample_padding", "3", "outside the bounds 0..=1"),
        ("model.norm_eps", "-1", "GroupNorm ε -1 must be positive"),
        ("model.norm_eps", "tiny", "not a number"),
        // Within every bound, but the tensors it needs could not fit in the file.
        ("model.base_channels", "4096", "more than this"),
    ] {
        with_metadata(&path, &edited, |m| {
            m.insert(key.into(), value.into());
        });
        let err = Checkpoint::load(&edited).unwrap_err().to_string();
        assert!(
            err.contains(says) && err.contains("edited.safetensors"),
            "{key}: {err}"
        );
    }
    // Where the user meets it: `diffuse sample --checkpoint`.
    with_metadata(&path, &edited, |m| {
        m.insert("model.num_classes".into(), "0".into());
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(["sample", "--checkpoint", edited.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("\"model.num_classes\" is 0, outside"),
        "{stderr}"
    );
}
