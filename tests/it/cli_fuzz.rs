//! The binary run over random combinations of `diffuse train` flags, in range and out of range, on the built-in
//! digits, a small RGB folder or a path that does not exist (seeded, so a failure replays). Every run must end
//! without a panic or an abort; a refusal must name a flag or the file; a run that succeeds must leave a
//! checkpoint that `diffuse sample` and `--resume` accept.

use std::path::{Path, PathBuf};
use std::process::Command;

use diffuse::model::SplitMix64;

/// Runs of `train` per test: each a second or three on lavapipe (the tiny preset, one or two steps).
const CASES: usize = 20;

/// (flag, values in range, values out of range); an empty value is a switch given alone.
const FLAGS: &[(&str, &[&str], &[&str])] = &[
    (
        "--batch",
        &["1", "2", "3"],
        &["0", "-2", "x", "99999999999"],
    ),
    ("--grad-accum", &["1", "2"], &["0"]),
    ("--micro-batch", &["1"], &["0", "5"]),
    ("--lr", &["0.001", "0"], &["nan", "-1", "inf"]),
    ("--warmup", &["0", "3"], &["-1"]),
    ("--ema", &["0.9", "0"], &["1.5", "nan"]),
    ("--clip", &["1", "0"], &["-1"]),
    ("--schedule", &["linear", "cosine"], &["bogus"]),
    ("--timesteps", &["10", "1000"], &["0", "1"]),
    (
        "--objective",
        &["ddpm", "ncsn", "ve", "vp", "subvp", "edm"],
        &["nope"],
    ),
    ("--sigma-max", &["20", "data"], &["-1", "0"]),
    ("--levels", &["10"], &["0"]),
    ("--beta-max", &["10"], &["-3"]),
    ("--weighting", &["likelihood"], &["w"]),
    ("--p-std", &["1.0"], &["0"]),
    ("--prediction", &["eps", "v", "x0"], &["score", "q"]),
    ("--min-snr-gamma", &["5"], &["0"]),
    ("--zero-terminal-snr", &[""], &[]),
    ("--flip", &[""], &["maybe"]),
    ("--class-conditional", &[""], &[]),
    ("--dropout", &["0.1"], &["1", "-0.1"]),
    ("--seed", &["7"], &["-1"]),
    ("--sample-every", &["1"], &["0"]),
    ("--preview", &["0", "2"], &["-1"]),
    ("--checkpoint-every", &["1"], &["0"]),
    ("--data-on", &["host", "gpu", "auto"], &["disk"]),
    ("--channels", &["1", "3"], &["2", "0"]),
    ("--base-channels", &["8", "16"], &["0", "7"]),
    ("--groups", &["4", "2"], &["3", "0"]),
    ("--heads", &["1", "2"], &["0", "3"]),
    ("--channel-mults", &["1,2", "1"], &["0", "x"]),
    ("--image-size", &["12", "28"], &["0", "13"]),
    ("--attention-resolutions", &["14", "7"], &["5"]),
];

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-cli-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Six 12×12 RGB images.
fn rgb_folder(dir: &Path) -> PathBuf {
    let folder = dir.join("rgb");
    std::fs::create_dir_all(&folder).unwrap();
    for k in 0..6u8 {
        image::RgbImage::from_fn(12, 12, |x, y| {
            image::Rgb([40 * k, (x * 20) as u8, (y * 20) as u8])
        })
        .save(folder.join(format!("{k}.png")))
        .unwrap();
    }
    folder
}

/// Runs the binary; (exit code or None for a signal, stdout + stderr).
fn run(args: &[String]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .expect("run diffuse");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn pick<'a>(rng: &mut SplitMix64, from: &'a [&'a str]) -> &'a str {
    from[(rng.next_u64() % from.len() as u64) as usize]
}

/// One random `train` command: the tiny preset, one or two steps, three to six flags (each out of range with
/// probability 1/6), and the data.
fn case(rng: &mut SplitMix64, out: &Path, data: &[Option<String>]) -> Vec<String> {
    let mut args: Vec<String> = ["train", "--preset", "tiny", "--out"]
        .map(String::from)
        .into();
    args.push(out.display().to_string());
    args.extend(["--steps".into(), (1 + rng.next_u64() % 2).to_string()]);
    let mut flags: Vec<usize> = (0..FLAGS.len()).collect();
    for _ in 0..3 + rng.next_u64() % 4 {
        let (name, good, bad) = FLAGS[flags.remove((rng.next_u64() % flags.len() as u64) as usize)];
        let value = match bad.is_empty() || !rng.next_u64().is_multiple_of(6) {
            true => pick(rng, good),
            false => pick(rng, bad),
        };
        args.push(name.into());
        if !value.is_empty() {
            args.push(value.into());
        }
    }
    if let Some(path) = &data[(rng.next_u64() % data.len() as u64) as usize] {
        args.extend(["--data".into(), path.clone()]);
    }
    args
}

/// Whether `text` names a flag of `train` or the data path given.
fn names_a_flag_or_file(text: &str, args: &[String]) -> bool {
    let data = args.iter().skip_while(|a| *a != "--data").nth(1);
    FLAGS.iter().any(|(name, _, _)| text.contains(name))
        || ["--data", "--steps", "--out", "--preset"]
            .iter()
            .any(|f| text.contains(f))
        || data.is_some_and(|d| text.contains(d.as_str()))
}

#[test]
fn random_train_flags_end_cleanly_and_successes_leave_a_usable_checkpoint() {
    let dir = scratch();
    let rgb = rgb_folder(&dir).display().to_string();
    let missing = dir.join("no-such-folder").display().to_string();
    // The built-in digits twice as often as the others.
    let data = [None, None, Some(rgb), Some(missing)];
    let mut rng = SplitMix64::new(20261207);
    let mut outcomes = [0usize; 2];
    for i in 0..CASES {
        let out = dir.join(format!("case-{i}"));
        let args = case(&mut rng, &out, &data);
        let shown = args.join(" ");
        let (code, text) = run(&args);
        assert!(
            code.is_some() && code != Some(101) && !text.contains("panicked"),
            "case {i} panicked or was killed ({code:?}): diffuse {shown}\n{text}"
        );
        if code != Some(0) {
            assert!(
                text.contains("error") && names_a_flag_or_file(&text, &args),
                "case {i}: a refusal that names no flag or file: diffuse {shown}\n{text}"
            );
            outcomes[1] += 1;
            continue;
        }
        outcomes[0] += 1;
        let ckpt = out.join("checkpoint.safetensors");
        assert!(
            ckpt.exists(),
            "case {i}: no checkpoint: diffuse {shown}\n{text}"
        );
        let sample: Vec<String> = [
            "sample",
            "--sampler",
            "euler",
            "--steps",
            "2",
            "-n",
            "1",
            "--checkpoint",
        ]
        .map(String::from)
        .into_iter()
        .chain([ckpt.display().to_string(), "--out".into()])
        .chain([out.join("sample.png").display().to_string()])
        .collect();
        let (code, text) = run(&sample);
        assert_eq!(
            code,
            Some(0),
            "case {i}: sample refused the checkpoint of diffuse {shown}\n{text}"
        );
        let steps_at = args.iter().position(|a| a == "--steps").unwrap() + 1;
        let mut resume = args.clone();
        resume[steps_at] = "3".into();
        resume.push("--resume".into());
        let (code, text) = run(&resume);
        assert_eq!(
            code,
            Some(0),
            "case {i}: --resume refused the checkpoint of diffuse {shown}\n{text}"
        );
    }
    eprintln!(
        "cli fuzz: {} runs succeeded, {} were refused",
        outcomes[0], outcomes[1]
    );
    // Both outcomes occur, or the test shows nothing.
    assert!(
        outcomes[0] > 0 && outcomes[1] > 0,
        "succeeded, refused: {outcomes:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
