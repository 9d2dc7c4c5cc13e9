//! diffusers models imported (src/interop/diffusers) and held to what diffusers computes with them: the fixtures
//! in tests/fixtures/diffusers, written by tests/twin/diffusers_fixtures.py (torch 2.15.0, diffusers 0.42.1), are
//! tiny UNet2DModels (16×16×3, channels 8 and 16, attention at 8×8) with every parameter redrawn at random.
//!
//! Tolerances. The f64 reference against diffusers in float64 (the same network, summed in another order): the
//! forward chains about 40 reductions, the longest of k = 512 terms (a GroupNorm over 2 channels of 16×16), each
//! off by at most γ₅₁₂ in f64 relative to the activations' scale, which GroupNorm resets after every block:
//! |Δ| ≤ 40·γ₅₁₂(f64)·max|ε̂|, about 5·10⁻¹². The GPU against the same float64 output: the same count in f32,
//! 40·γ₅₁₂·max|ε̂| (tests/it/unet.rs's form at this depth); the f32 frequencies and arguments of the embedding
//! (≤ u·(2.01·999 + 8) = 1.2·10⁻⁴ at t = 999, tests/it/embedding.rs) are within it.

use std::path::{Path, PathBuf};

use crate::common;

use common::gpu;
use diffuse::checkpoint::Checkpoint;
use diffuse::interop::diffusers::{self, Imported};
use diffuse::model::unet::Net;
use diffuse::model::{Conventions, ParamBuffers, ParamLayout};
use diffuse::reference::{gamma, to_f64, unet as reference};

const FIXTURES: &str = "tests/fixtures/diffusers";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(FIXTURES)
        .join(name)
}

fn import(name: &str) -> Checkpoint {
    diffusers::import(&fixture(name)).unwrap().checkpoint
}

/// An `.npy` of little-endian f64 (`<f8`) in C order, as numpy writes it.
fn npy_f64(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains("'descr': '<f8'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    bytes[10 + header_len..]
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn npy_f32(path: &Path) -> Vec<f32> {
    diffuse::image_io::read_npy(path).unwrap().1
}

/// γ_k in f64 (unit roundoff 2⁻⁵³).
fn gamma64(k: usize) -> f64 {
    let ku = k as f64 * f64::EPSILON / 2.0;
    ku / (1.0 - ku)
}

/// Holds the import of `name` to diffusers' ε̂ for the inputs stored with `inputs`: the f64 reference and the GPU.
fn check_against_diffusers(name: &str, inputs: &str) {
    let ckpt = import(name);
    let dir = fixture(inputs);
    let (x, t) = (npy_f32(&dir.join("x.npy")), npy_f32(&dir.join("t.npy")));
    let want = npy_f64(&dir.join("eps64.npy"));
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        scale > 0.1,
        "{name}: diffusers' output must not be trivially small ({scale})"
    );

    let config = &ckpt.config;
    let t64 = to_f64(&t);
    let got = reference::forward(config, &to_f64(&ckpt.params), &to_f64(&x), &t64, None);
    let worst = got
        .iter()
        .zip(&want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    let bound = 40.0 * gamma64(512) * scale;
    assert!(
        worst <= bound,
        "{name}: the f64 reference is {worst:e} from diffusers (bound {bound:e})"
    );

    let gpu = gpu();
    let params = ParamBuffers::upload(gpu, &ParamLayout::new(config), &ckpt.params).unwrap();
    let net = Net::new(gpu, config, &params, t.len()).unwrap();
    net.input.write_f32(gpu, &x).unwrap();
    let steps: Vec<u32> = t.iter().map(|&v| v as u32).collect();
    net.timesteps.write_u32(gpu, &steps).unwrap();
    gpu.run(&net.forward(gpu).unwrap()).unwrap();
    let got = net.output().read_f32(gpu).unwrap();
    common::assert_close(&format!("{name} on the GPU"), &got, &want, |_| {
        40.0 * gamma(512) * scale
    });
}

#[test]
fn google_style_models_compute_what_diffusers_computes() {
    // Ho et al.'s conventions, read from the config: [sin, cos], the frequency shift, TF padding, ε 1e-6.
    let ckpt = import("google");
    let c = &ckpt.config;
    assert_eq!(
        c.conventions,
        Conventions {
            norm_eps: 1e-6,
            freq_shift: 1,
            downsample_padding: 0
        }
    );
    assert_eq!(
        (
            c.image_size,
            c.in_channels,
            c.base_channels,
            &c.channel_mults,
            c.blocks_per_level,
            c.heads
        ),
        (16, 3, 8, &vec![1, 2], 1, 1)
    );
    assert_eq!((&c.attention_resolutions, c.groups), (&vec![8], 4));
    assert_eq!(ParamLayout::new(c).count(), 45_259);
    check_against_diffusers("google", "google");
    // The 2022 uploads' attention names (query, key, value, proj_attn) give the same weights.
    assert_eq!(import("google-old-names").params, ckpt.params);
    check_against_diffusers("google-old-names", "google");
}

#[test]
fn a_config_with_only_what_train_unconditional_sets_takes_unet2dmodels_defaults() {
    // Absent keys as diffusers reads them: [cos, sin], no shift, padding 1, ε 1e-5, and 8 channels per head (2
    // heads at 16 channels), not DDPM's; the scheduler beside the unet/ folder is found from it.
    let ckpt = import("minimal/unet");
    assert_eq!(ckpt.config.conventions, Conventions::default());
    assert_eq!(ckpt.config.heads, 2);
    assert_eq!(
        ckpt.training.settings.schedule,
        diffuse::diffusion::NamedSchedule::Cosine
    );
    check_against_diffusers("minimal", "minimal");
}

#[test]
fn the_scheduler_config_sets_the_schedule_t_and_the_prediction() {
    let Imported { checkpoint, notes } = diffusers::import(&fixture("google")).unwrap();
    let s = &checkpoint.training.settings;
    assert_eq!(
        (s.timesteps, s.schedule, s.target, s.zero_terminal_snr),
        (
            1000,
            diffuse::diffusion::NamedSchedule::Linear,
            diffuse::diffusion::Prediction::Epsilon,
            false
        )
    );
    // The EMA is what sampling reads: the imported weights, with no optimizer state.
    assert_eq!(checkpoint.ema, checkpoint.params);
    assert!(checkpoint.adam.is_none());
    // How its scheduler samples becomes the model's sampling defaults: leading spacing, β, clip_sample ±1.
    use diffuse::diffusion::samplers::{Clip, DdpmVariance, Spacing};
    let google = diffuse::sample::SamplingDefaults {
        spacing: Spacing::LEADING,
        variance: DdpmVariance::Beta,
        clip: Clip::ClampKeepEps { lo: -1.0, hi: 1.0 },
    };
    assert_eq!(checkpoint.training.scheduler, Some(google));
    assert!(
        notes
            .iter()
            .any(|n| n.contains("--spacing leading, --variance large")),
        "{notes:?}"
    );
    // minimal's scheduler is DDPMScheduler(beta_schedule="squaredcos_cap_v2"): fixed_small by default.
    let minimal = import("minimal").training.scheduler.unwrap();
    assert_eq!(minimal.variance, DdpmVariance::PosteriorBeta);
    // Other scheduler settings, each as diffusers reads it.
    let sched = |d: &Path| d.join("scheduler").join("scheduler_config.json");
    let dir = copy_of("google", "thresholding");
    set_key(&sched(&dir), "thresholding", serde_json::json!(true));
    set_key(&sched(&dir), "sample_max_value", serde_json::json!(1.5));
    set_key(&sched(&dir), "steps_offset", serde_json::json!(1));
    let read = diffusers::import(&dir)
        .unwrap()
        .checkpoint
        .training
        .scheduler
        .unwrap();
    assert_eq!(
        read.clip,
        Clip::Dynamic {
            ratio: 0.995,
            max: 1.5
        }
    );
    assert_eq!(read.spacing, Spacing::Leading { steps_offset: 1 });
    let _ = std::fs::remove_dir_all(&dir);
    let err = error_after("google", "offset", |d| {
        set_key(&sched(d), "timestep_spacing", serde_json::json!("trailing"));
        set_key(&sched(d), "steps_offset", serde_json::json!(1));
    });
    assert!(err.contains("\"steps_offset\" 1"), "{err}");
}

/// A copy of fixture `name` in a scratch folder, for a test to damage.
fn copy_of(name: &str, tag: &str) -> PathBuf {
    let to = std::env::temp_dir().join(format!("diffuse-diffusers-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&to);
    copy_dir(&fixture(name), &to);
    to
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The import's error for a copy of `name` after `edit`.
fn error_after(name: &str, tag: &str, edit: impl FnOnce(&Path)) -> String {
    let dir = copy_of(name, tag);
    edit(&dir);
    let err = match diffusers::import(&dir) {
        Ok(_) => panic!("{tag}: imported"),
        Err(e) => e.to_string(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    err
}

/// Rewrites key `key` of the JSON file `file` (null removes it).
fn set_key(file: &Path, key: &str, value: serde_json::Value) {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let map = json.as_object_mut().unwrap();
    match value {
        serde_json::Value::Null => map.remove(key),
        v => map.insert(key.to_string(), v),
    };
    std::fs::write(file, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

#[test]
fn configs_diffuse_cannot_compute_are_refused_by_key_and_value() {
    use serde_json::json;
    let unet = |d: &Path| d.join("unet").join("config.json");
    for (tag, key, value, says) in [
        (
            "block",
            "down_block_types",
            json!(["DownBlock2D", "SkipDownBlock2D"]),
            "\"SkipDownBlock2D\"",
        ),
        ("variance", "out_channels", json!(6), "learned variance"),
        (
            "asymmetric",
            "up_block_types",
            json!(["UpBlock2D", "UpBlock2D"]),
            "attention on one path only",
        ),
        ("act", "act_fn", json!("gelu"), "\"act_fn\" is \"gelu\""),
        (
            "fourier",
            "time_embedding_type",
            json!("fourier"),
            "\"time_embedding_type\" is \"fourier\"",
        ),
        ("shift", "freq_shift", json!(2), "\"freq_shift\" is 2"),
        (
            "channels",
            "block_out_channels",
            json!([8, 12]),
            "multiple of the first",
        ),
        (
            "heads",
            "attention_head_dim",
            json!(3),
            "\"attention_head_dim\" is 3",
        ),
        (
            "scale-shift",
            "resnet_time_scale_shift",
            json!("scale_shift"),
            "scale_shift",
        ),
        ("classes", "num_class_embeds", json!(3), "class-conditional"),
        (
            "size",
            "sample_size",
            json!([16, 8]),
            "\"sample_size\" is [16,8]",
        ),
    ] {
        let err = error_after("google", tag, |d| set_key(&unet(d), key, value));
        assert!(
            err.contains(says) && err.contains("config.json"),
            "{tag}: {err}"
        );
    }
    let err = error_after("google", "scheduler", |d| {
        set_key(
            &d.join("scheduler").join("scheduler_config.json"),
            "variance_type",
            json!("learned_range"),
        )
    });
    assert!(
        err.contains("\"variance_type\" is \"learned_range\""),
        "{err}"
    );
    let err = error_after("google", "pipeline", |d| {
        set_key(
            &d.join("model_index.json"),
            "unet",
            json!(["diffusers", "UNet2DConditionModel"]),
        )
    });
    assert!(
        err.contains("UNet2DConditionModel") && err.contains("model_index.json"),
        "{err}"
    );
}

/// A safetensors file's tensors: name, shape, bytes.
type Stored = Vec<(String, Vec<usize>, Vec<u8>)>;

fn read_tensors(path: &Path) -> Stored {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.data().to_vec()))
        .collect()
}

fn write_tensors(path: &Path, tensors: &Stored, dtype: safetensors::Dtype) {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, s, d)| {
            let view = safetensors::tensor::TensorView::new(dtype, s.clone(), d).unwrap();
            (n.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn weights_that_do_not_fit_the_config_are_named() {
    use serde_json::json;
    let weights = |d: &Path| d.join("unet").join(diffusers::WEIGHTS);
    let rewrite = |d: &Path, edit: &dyn Fn(&mut Stored)| {
        let mut tensors = read_tensors(&weights(d));
        edit(&mut tensors);
        write_tensors(&weights(d), &tensors, safetensors::Dtype::F32);
    };
    let missing = "mid_block.attentions.0.to_k.weight";
    let err = error_after("google", "missing", |d| {
        rewrite(d, &|t| t.retain(|(n, _, _)| n != missing))
    });
    assert!(err.contains(missing) && err.contains("missing"), "{err}");
    let err = error_after("google", "extra", |d| {
        rewrite(d, &|t| t.push(("extra.weight".into(), vec![1], vec![0; 4])))
    });
    assert!(
        err.contains("extra.weight") && err.contains("no place"),
        "{err}"
    );
    // The config says 16 channels at the second level; weights for 32 there do not fit.
    let err = error_after("google", "shape", |d| {
        set_key(
            &d.join("unet").join("config.json"),
            "block_out_channels",
            json!([8, 32]),
        )
    });
    assert!(
        err.contains("has shape") && err.contains("config.json implies"),
        "{err}"
    );
    let err = error_after("google", "truncated", |d| {
        let bytes = std::fs::read(weights(d)).unwrap();
        std::fs::write(weights(d), &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(err.contains("truncated or corrupt"), "{err}");
}

#[test]
fn torch_pickles_are_read_as_plain_state_dicts_only() {
    // The 2022 uploads' .bin: the same weights as the safetensors file.
    assert_eq!(import("google-bin").params, import("google").params);
    // A pickle holding anything but tensors (here a datetime.date beside one) is refused by entry and type.
    let err = diffusers::import(&fixture("foreign-bin/unet"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("\"saved_on\"")
            && err.contains("datetime.date")
            && err.contains("not a tensor"),
        "{err}"
    );
    let err = error_after("google-bin", "truncated-bin", |d| {
        let path = d.join("unet").join("diffusion_pytorch_model.bin");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(err.contains("not a readable torch state dict"), "{err}");
}

#[test]
fn half_precision_weights_are_widened_exactly() {
    // The google weights stored as bf16 and as f16 import as those values widened to f32.
    use safetensors::Dtype::{BF16, F16};
    let ckpt = import("google");
    let round = |x: f32, dtype| match dtype {
        BF16 => half::bf16::from_f32(x).to_f32(),
        _ => half::f16::from_f32(x).to_f32(),
    };
    for (tag, dtype) in [("bf16", BF16), ("f16", F16)] {
        let dir = copy_of("google", tag);
        let path = dir.join("unet").join(diffusers::WEIGHTS);
        let narrowed: Stored = read_tensors(&path)
            .into_iter()
            .map(|(n, s, d)| {
                let data = d
                    .chunks_exact(4)
                    .flat_map(|b| {
                        let x = f32::from_le_bytes(b.try_into().unwrap());
                        match dtype {
                            BF16 => half::bf16::from_f32(x).to_le_bytes(),
                            _ => half::f16::from_f32(x).to_le_bytes(),
                        }
                    })
                    .collect();
                (n, s, data)
            })
            .collect();
        write_tensors(&path, &narrowed, dtype);
        let imported = diffusers::import(&dir).unwrap().checkpoint;
        let want: Vec<f32> = ckpt.params.iter().map(|&x| round(x, dtype)).collect();
        assert_eq!(imported.params, want, "{tag}");
        assert_ne!(
            imported.params, ckpt.params,
            "{tag}: narrowing changed some values"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn every_ddim_step_diffusers_took_is_diffuses_step_on_the_imported_model() {
    // diffusers' DDIMScheduler (η = 0, leading spacing, clip_sample ±1 keeping ε̂, ᾱ = 1 after the last step) ran
    // 10 steps from a fixed x_T (ddim_x holds each state). Each step is redone here in f64 from diffusers' state,
    // with the f64 reference network, the schedule diffuse built from the imported scheduler config and diffuse's
    // leading timesteps: x̂₀ = clamp((x − σ·ε̂)/α, ±1), x' = α'·x̂₀ + σ'·ε̂. diffusers took it in f32: its ε̂ within
    // E = 40·γ₅₁₂·max|ε̂| (the network bound above); its ᾱ_t, a float32 cumulative product of t + 1 factors
    // 1 − β (each β a rounded linspace value), within r_t = γ_{3(t+1)} relative, so α within α·r_t/2 and σ within
    // ᾱ·r_t/(2σ); three roundings in each of x̂₀ and x'. The clamp is 1-Lipschitz.
    use diffuse::diffusion::samplers::{timesteps, Spacing};
    let ckpt = import("google");
    let dir = fixture("google");
    let states = npy_f32(&dir.join("ddim_x.npy"));
    let list = timesteps(1000, 10, Spacing::LEADING).unwrap();
    let stored: Vec<usize> = npy_f32(&dir.join("ddim_t.npy"))
        .iter()
        .map(|&t| t as usize)
        .collect();
    assert_eq!(list, stored, "diffuse's leading timesteps are diffusers'");
    let schedule = ckpt.training.settings.noise_schedule().unwrap();
    let params = to_f64(&ckpt.params);
    let len = states.len() / 11;
    for (k, &t) in list.iter().enumerate() {
        let x = to_f64(&states[k * len..(k + 1) * len]);
        let eps = reference::forward(&ckpt.config, &params, &x, &[t as f64; 3], None);
        let e_net = 40.0 * gamma(512) * eps.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // (α, σ, Δα, Δσ) of index t, and of the next (ᾱ = 1 exactly after the last).
        let level = |t: Option<usize>| {
            let Some(t) = t else {
                return (1.0, 0.0, 0.0, 0.0);
            };
            let (abar, r) = (schedule.alphas_cumprod[t], gamma(3 * (t + 1)));
            let (a, s) = (abar.sqrt(), (1.0 - abar).sqrt());
            (a, s, a * r / 2.0, abar * r / (2.0 * s))
        };
        let (a, s, da, ds) = level(Some(t));
        let (a2, s2, da2, ds2) = level(list.get(k + 1).copied());
        let mut want = Vec::with_capacity(len);
        let mut bound = Vec::with_capacity(len);
        for (xi, ei) in x.iter().zip(&eps) {
            let raw = (xi - s * ei) / a;
            let x0 = raw.clamp(-1.0, 1.0);
            let d_x0 = (s * e_net + ds * ei.abs()) / a
                + raw.abs() * da / a
                + gamma(3) * (xi.abs() + s * ei.abs()) / a;
            want.push(a2 * x0 + s2 * ei);
            bound.push(
                a2 * d_x0
                    + s2 * e_net
                    + da2 * x0.abs()
                    + ds2 * ei.abs()
                    + gamma(3) * (a2 * x0.abs() + s2 * ei.abs()),
            );
        }
        let next = &states[(k + 1) * len..(k + 2) * len];
        common::assert_close(&format!("DDIM step {k} from t = {t}"), next, &want, |i| {
            bound[i]
        });
    }
}

/// A tiny diffuse model with every parameter random (GroupNorm γ and β included), as the golden export's source:
/// 16×16×3, channels 8 and 16, attention with 2 heads at 8×8 (so `attention_head_dim` 8 is written), no classes.
fn tiny_diffuse_model() -> Checkpoint {
    let config = diffuse::model::UNetConfig {
        in_channels: 3,
        image_size: 16,
        base_channels: 8,
        channel_mults: vec![1, 2],
        blocks_per_level: 1,
        attention_resolutions: vec![8],
        groups: 4,
        heads: 2,
        num_classes: None,
        dropout: 0.0,
        conventions: Conventions::default(),
    };
    let layout = ParamLayout::new(&config);
    let noise = common::uniform(layout.padded_len, 2024);
    let mut params = layout.init(5);
    for spec in &layout.params {
        for i in spec.offset..spec.offset + spec.len() {
            params[i] += 0.3 * noise[i];
        }
    }
    let ema: Vec<f32> = params.iter().map(|v| 0.9 * v).collect();
    Checkpoint {
        config: config.clone(),
        step: 12,
        rng_offset: 0,
        params,
        ema,
        adam: None,
        training: diffuse::checkpoint::TrainingRecord {
            settings: diffuse::train::TrainSettings::new(config),
            dataset: "none: random weights for the export test".into(),
            changes: Vec::new(),
            class_names: Vec::new(),
            scheduler: None,
        },
    }
}

/// The pipeline files of a diffusers folder, as the golden copy holds them.
const EXPORTED: [&str; 4] = [
    "model_index.json",
    "unet/config.json",
    "unet/diffusion_pytorch_model.safetensors",
    "scheduler/scheduler_config.json",
];

#[test]
fn an_export_is_the_golden_folder_which_diffusers_loaded_and_computed_with() {
    // tests/fixtures/diffusers/diffuse-tiny.safetensors is tiny_diffuse_model(); `diffuse export` of it must
    // write exactly the golden folder export/, which the fixture script loaded in diffusers (no missing,
    // unexpected or mismatched keys) and ran (eps64.npy). DIFFUSE_BLESS=1 rewrites both files from the code;
    // then rerun tests/twin/diffusers_fixtures.py and commit what changed.
    let source = fixture("diffuse-tiny.safetensors");
    let golden = fixture("export");
    let bless = std::env::var_os("DIFFUSE_BLESS").is_some();
    if bless {
        tiny_diffuse_model().save(&source).unwrap();
    }
    let ckpt = Checkpoint::load(&source).unwrap();
    assert_eq!(
        ckpt,
        tiny_diffuse_model(),
        "the committed checkpoint is what the code makes"
    );
    let out = std::env::temp_dir().join(format!("diffuse-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (source_s, out_s) = (source.to_str().unwrap(), out.to_str().unwrap());
    let export = ["export", "--checkpoint", source_s, "--diffusers", out_s];
    let (ok, said) = diffuse(&export);
    assert!(ok, "{said}");
    for file in EXPORTED {
        if bless {
            std::fs::create_dir_all(golden.join(file).parent().unwrap()).unwrap();
            std::fs::copy(out.join(file), golden.join(file)).unwrap();
        }
        let (got, want) = (
            std::fs::read(out.join(file)).unwrap(),
            std::fs::read(golden.join(file)).unwrap(),
        );
        assert!(
            got == want,
            "{file} differs from the golden export in {}",
            golden.display()
        );
    }
    // Into a folder that is not empty it refuses, before writing anything.
    let (ok, said) = diffuse(&export);
    assert!(!ok && said.contains("not empty"), "{said}");
    let _ = std::fs::remove_dir_all(&out);
    // Read back: the EMA weights exactly, the network and the schedule as they were.
    let back = import("export");
    assert_eq!((&back.config, &back.params), (&ckpt.config, &ckpt.ema));
    assert_eq!(
        back.training.settings.schedule,
        ckpt.training.settings.schedule
    );
    // What diffusers computed with the golden folder is what diffuse computes with the checkpoint's EMA.
    check_against_diffusers("export", "export");
}

/// Runs the binary: (success, stdout + stderr).
fn diffuse(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_diffusers_model_fine_tunes_on_a_folder_of_images_and_resumes() {
    // The google-style fixture (Ho et al.'s conventions) trained 2 steps on eight 16×16 RGB images: the run
    // starts from its weights, keeps its schedule and conventions, records where it started, and resumes.
    let dir = std::env::temp_dir().join(format!("diffuse-fine-tune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for k in 0..8u8 {
        image::RgbImage::from_fn(16, 16, |x, y| {
            image::Rgb([30 * k, (x * 15) as u8, (y * 15) as u8])
        })
        .save(images.join(format!("{k}.png")))
        .unwrap();
    }
    let out = dir.join("run");
    let (init, images_s, out_s) = (
        fixture("google"),
        images.to_str().unwrap().to_string(),
        out.to_str().unwrap().to_string(),
    );
    let common = [
        "--data",
        &images_s,
        "--out",
        &out_s,
        "--batch",
        "4",
        "--preview",
        "0",
        "--log-every",
        "1",
    ];
    let mut args = vec!["train", "--init", init.to_str().unwrap(), "--steps", "2"];
    args.extend(common);
    let (ok, said) = diffuse(&args);
    assert!(ok && said.contains("fine-tuning: --init"), "{said}");
    let ckpt = Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let imported = import("google");
    assert_eq!(ckpt.step, 2);
    assert_eq!(
        ckpt.config, imported.config,
        "the network and its conventions are the model's"
    );
    assert_eq!(
        ckpt.training.settings.schedule,
        imported.training.settings.schedule
    );
    assert!(
        ckpt.training.changes[0].starts_with("step 0: --init"),
        "{:?}",
        ckpt.training.changes
    );
    assert_eq!(
        ckpt.training.scheduler, imported.training.scheduler,
        "it samples as the model did"
    );
    // Trained from the imported weights: near them after two small steps, and not equal.
    let moved = ckpt
        .params
        .iter()
        .zip(&imported.params)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(moved > 0.0 && moved < 0.01, "the weights moved {moved}");
    let mut args = vec!["train", "--resume", "--steps", "3"];
    args.extend(common);
    let (ok, said) = diffuse(&args);
    assert!(ok, "{said}");
    assert_eq!(
        Checkpoint::load(&out.join("checkpoint.safetensors"))
            .unwrap()
            .step,
        3
    );
    // --init takes the model's network: a preset beside it is refused before anything is read.
    let (ok, said) = diffuse(&[
        "train",
        "--init",
        init.to_str().unwrap(),
        "--preset",
        "tiny",
    ]);
    assert!(!ok && said.contains("--init takes the network"), "{said}");
    // A folder that is neither a checkpoint nor a diffusers model says what it should be.
    let (ok, said) = diffuse(&["sample", "--checkpoint", images.to_str().unwrap()]);
    assert!(
        !ok && said.contains("not a diffusers model directory"),
        "{said}"
    );
    // --init and --resume exclude each other.
    let mut args = vec![
        "train",
        "--resume",
        "--init",
        init.to_str().unwrap(),
        "--steps",
        "4",
    ];
    args.extend(common);
    let (ok, said) = diffuse(&args);
    assert!(
        !ok && said.contains("--init") && said.contains("--resume"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sampling_an_imported_model_follows_its_scheduler_unless_a_flag_says_otherwise() {
    // DDIM from diffusers' x_T with no flags but the sampler: the scheduler's leading spacing and clip_sample, the
    // same bits as with them given; trailing spacing (diffuse's own default) gives another image.
    let dir = std::env::temp_dir().join(format!("diffuse-scheduler-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let states = npy_f32(&fixture("google").join("ddim_x.npy"));
    let x_t = dir.join("x_t.npy");
    diffuse::image_io::write_npy(&x_t, &[3, 3, 16, 16], &states[..3 * 3 * 16 * 16]).unwrap();
    let model = fixture("google");
    let run = |extra: &[&str]| {
        let npy = dir.join("out.npy");
        let mut args = vec![
            "sample",
            "--checkpoint",
            model.to_str().unwrap(),
            "--noise",
            x_t.to_str().unwrap(),
            "--sampler",
            "ddim",
            "--steps",
            "10",
            "--npy",
            npy.to_str().unwrap(),
            "--out",
        ];
        let png = dir.join("out.png");
        args.push(png.to_str().unwrap());
        args.extend_from_slice(extra);
        let (ok, said) = diffuse(&args);
        assert!(ok, "{said}");
        (npy_f32(&npy), said)
    };
    let (defaults, said) = run(&[]);
    assert!(said.contains("sampling as its scheduler does"), "{said}");
    let (explicit, _) = run(&["--spacing", "leading", "--clip", "clamp-keep-eps"]);
    assert_eq!(defaults, explicit);
    let (trailing, _) = run(&["--spacing", "trailing"]);
    assert_ne!(defaults, trailing);
    // --variance belongs to ddpm; ddpm takes both.
    let (ok, said) = diffuse(&[
        "sample",
        "--checkpoint",
        model.to_str().unwrap(),
        "--sampler",
        "ddim",
        "--variance",
        "small",
    ]);
    assert!(!ok && said.contains("--variance"), "{said}");
    let _ = std::fs::remove_dir_all(&dir);
}
