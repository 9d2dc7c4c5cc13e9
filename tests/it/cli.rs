//! The binary as a user meets it: clear errors and non-zero exits, never a panic.

use std::process::Command;

fn diffuse(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_diffuse"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run diffuse");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn info_lists_adapters_and_names_the_chosen_one() {
    let (ok, stdout, stderr) = diffuse(&["info"], &[]);
    assert!(ok, "diffuse info failed: {stderr}");
    assert!(
        stdout.contains("[0]") && stdout.contains("chosen:"),
        "{stdout}"
    );
}

/// The cells of a table's lines after its heading: columns are separated by at least two spaces.
fn cells(table: &str) -> Vec<Vec<&str>> {
    table.lines().skip(1).map(line_cells).collect()
}

fn line_cells(line: &str) -> Vec<&str> {
    let cells = line.split("  ").map(str::trim);
    cells.filter(|c| !c.is_empty()).collect()
}

/// After the adapters, a table per adapter of what `Auto` runs (`select::auto_table`): a heading naming it, a
/// header row, and a row for each kernel family with several variants.
#[test]
fn info_prints_each_adapters_kernel_variants_and_why() {
    let (ok, stdout, stderr) = diffuse(&["info"], &[]);
    assert!(ok, "diffuse info failed: {stderr}");
    let listed = stdout.matches("\n  [").count();
    let sections: Vec<&str> = stdout.split("kernels on [").skip(1).collect();
    assert_eq!(
        sections.len(),
        listed,
        "a section per listed adapter: {stdout}"
    );
    // An adapter that cannot be opened says so instead; the chosen one was opened above, so one table at least.
    let tables: Vec<&str> = sections
        .into_iter()
        .filter(|s| {
            !s.lines()
                .next()
                .unwrap_or_default()
                .contains(": not opened:")
        })
        .collect();
    assert!(!tables.is_empty(), "{stdout}");
    for table in tables {
        let heading = table.lines().next().unwrap_or_default();
        assert!(heading.ends_with("(Auto):"), "{heading}");
        let rows = cells(table);
        assert_eq!(rows[0], ["family", "case", "variant", "why"], "{table}");
        for family in ["group_norm", "attention", "matmul", "conv2d"] {
            let row = rows.iter().find(|r| r[0] == family);
            // Every variant name starts with its family's ("conv2d: Winograd F(4×4,3×3)"), except the split.
            let named =
                row.is_some_and(|r| r.len() == 4 && r[2].starts_with(&format!("{family}: ")));
            assert!(named, "{family}: {table}");
        }
    }
}

/// DIFFUSE_TUNING=gpu makes `Auto` choose as on a GPU on this CPU adapter (the table `info` prints says why);
/// a value it does not know is refused, naming the accepted ones.
#[test]
fn the_tuning_variable_switches_the_kernels_and_refuses_unknown_values() {
    let (ok, stdout, stderr) = diffuse(&["info"], &[("DIFFUSE_TUNING", "gpu")]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("GPU: register blocking not measured there"),
        "{stdout}"
    );
    let (ok, stdout, _) = diffuse(&["info"], &[("DIFFUSE_TUNING", "auto")]);
    assert!(ok && !stdout.contains("GPU: register blocking"), "{stdout}");
    let (ok, stdout, stderr) = diffuse(&["info"], &[("DIFFUSE_TUNING", "fast")]);
    let said = format!("{stdout}{stderr}");
    assert!(!ok, "{said}");
    assert!(
        said.contains("DIFFUSE_TUNING=\"fast\"") && said.contains("auto") && said.contains("gpu"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
}

#[test]
fn no_adapter_is_a_clear_error_with_the_install_hint() {
    // Linux builds have no DX12 backend, so this backend choice finds no adapter at all.
    let (ok, _, stderr) = diffuse(&["info"], &[("WGPU_BACKEND", "dx12")]);
    assert!(!ok, "must exit non-zero");
    assert!(
        stderr.contains("no GPU adapter found") && stderr.contains("mesa-vulkan-drivers"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unknown_adapter_name_lists_the_adapters() {
    let (ok, _, stderr) = diffuse(&["info", "--adapter", "no-such-gpu-xyz"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("no-such-gpu-xyz") && stderr.contains("[0]"),
        "{stderr}"
    );
    let (ok, _, stderr) = diffuse(&["info"], &[("DIFFUSE_ADAPTER", "99")]);
    assert!(!ok, "an index past the list must fail");
    assert!(stderr.contains("\"99\""), "{stderr}");
}

#[test]
fn bench_with_a_filter_matching_nothing_says_so() {
    let (ok, _, stderr) = diffuse(&["bench", "--quick", "--filter", "no-such-case"], &[]);
    assert!(!ok);
    assert!(stderr.contains("--filter"), "{stderr}");
}

#[test]
fn every_closed_choice_keeps_its_names_and_refuses_others() {
    // (subcommand, option, the names users type, a name that must be refused)
    let choices = [
        (
            "train",
            "--preset",
            "tiny, small, medium, rgb32, rgb64, rgb128",
            "huge",
        ),
        ("train", "--schedule", "linear, cosine", "quadratic"),
        ("train", "--prediction", "eps, x0, v", "score"),
        (
            "sample",
            "--sampler",
            "ddpm, ddim, sde, ode, pc, langevin, dpm++2m, unipc, euler, heun",
            "lms",
        ),
        (
            "sample",
            "--clip",
            "none, clamp, clamp-keep-eps, dynamic",
            "soft",
        ),
        (
            "sample",
            "--spacing",
            "trailing, leading, linspace",
            "uniform",
        ),
        ("eval", "--variance", "small, large", "learned"),
    ];
    for (command, option, names, bad) in choices {
        let (ok, stdout, stderr) = diffuse(&[command, "-h"], &[]);
        assert!(ok, "{stderr}");
        // Each option's list is distinct, so finding it anywhere in the help pins it.
        assert!(
            stdout.contains(option) && stdout.contains(&format!("[possible values: {names}]")),
            "{command} -h: {stdout}"
        );
        // Refused before any GPU work, naming the value and listing the choices.
        let (ok, _, stderr) = diffuse(&[command, option, bad], &[]);
        assert!(
            !ok && stderr.contains(&format!("invalid value '{bad}' for '{option}"))
                && stderr.contains(names),
            "{command} {option} {bad}: {stderr}"
        );
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn train_then_sample_end_to_end_with_the_tiny_preset() {
    let dir = scratch("e2e");
    let out = dir.join("run");
    let out_s = out.to_str().unwrap();
    let train = [
        "train",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--batch",
        "4",
        "--log-every",
        "1",
        "--out",
        out_s,
    ];
    let (ok, stdout, stderr) = diffuse(&train, &[]);
    assert!(ok, "train failed: {stderr}");
    assert!(
        stdout.contains("step 2/2") && stdout.contains("loss"),
        "{stdout}"
    );
    let ckpt = out.join("checkpoint.safetensors");
    assert!(ckpt.exists() && out.join("samples-0000002.png").exists());
    let plot = image::open(out.join("loss.png")).expect("loss.png beside the grid");
    assert_eq!(
        (plot.width(), plot.height()),
        (diffuse::plot::WIDTH, diffuse::plot::HEIGHT)
    );

    // Starting again over an existing run is refused (nothing is overwritten); --resume continues it.
    let before = std::fs::read(&ckpt).unwrap();
    let (ok, _, stderr) = diffuse(&train, &[]);
    assert!(!ok && stderr.contains("--resume"), "{stderr}");
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        before,
        "a refused run must not touch the checkpoint"
    );
    let mut resume = train.to_vec();
    resume[4] = "3";
    resume.push("--resume");
    let (ok, stdout, stderr) = diffuse(&resume, &[]);
    assert!(ok, "resume failed: {stderr}");
    assert!(stdout.contains("steps 2..3"), "{stdout}");
    // The metrics log: a header and one row per reported step, the resumed run's row appended with the learning
    // rate of its warm-up and the wall time carried on.
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("step,loss,grad_norm,lr,images_per_s,wall_s")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        rows.iter().map(|r| r[0]).collect::<Vec<_>>(),
        [1.0, 2.0, 3.0],
        "{csv}"
    );
    for (k, row) in rows.iter().enumerate() {
        // Default peak 2e-4 over 500 warm-up steps: step s (1-based) runs at 2e-4·s/500.
        let lr = 2e-4 * (k + 1) as f64 / 500.0;
        assert!((row[3] - lr).abs() < 1e-12 * lr.max(1e-12) + 1e-18, "{csv}");
        assert!(row[1].is_finite() && row[2] > 0.0 && row[4] > 0.0, "{csv}");
    }
    assert!(
        rows.windows(2).all(|w| w[1][5] >= w[0][5]),
        "wall time must not go back: {csv}"
    );
    // loss.png was redrawn at the resumed run's end from the whole log, steps 1–3.
    let losses = diffuse::plot::read_losses(&out.join("metrics.csv")).unwrap();
    assert_eq!(losses.len(), 3);
    assert!(
        image::open(out.join("loss.png")).unwrap().to_rgb8() == diffuse::plot::loss_curve(&losses),
        "loss.png is not the plot of the whole metrics log"
    );

    // A run that diverges (an absurd learning rate) stops with a clear error and leaves the last good
    // checkpoint as it was.
    let good = std::fs::read(&ckpt).unwrap();
    let mut diverge = train.to_vec();
    diverge[4] = "6";
    diverge.extend([
        "--resume",
        "--lr",
        "1e30",
        "--warmup",
        "0",
        "--override",
        "lr,warmup",
    ]);
    let (ok, _, stderr) = diffuse(&diverge, &[]);
    assert!(!ok && stderr.contains("diverged"), "{stderr}");
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        good,
        "a diverged run must not overwrite the checkpoint"
    );

    // The bound on three images, four terms each, in batches of five (a short last batch).
    let ckpt_s = ckpt.to_str().unwrap();
    let eval = [
        "eval",
        "--checkpoint",
        ckpt_s,
        "--images",
        "3",
        "--timesteps",
        "4",
        "--batch",
        "5",
    ];
    let (ok, stdout, stderr) = diffuse(&eval, &[]);
    assert!(ok, "eval failed: {stderr}");
    let bpd: f64 = stdout
        .split("variational bound: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no bound in {stdout}"));
    // A bound in bits is positive; a model trained for three steps must still give a finite one.
    assert!(bpd.is_finite() && bpd > 0.0, "{stdout}");
    assert!(stdout.contains("12 network evaluations"), "{stdout}");
    let (ok, _, stderr) = diffuse(&["eval", "--checkpoint", ckpt_s, "--timesteps", "2"], &[]);
    assert!(!ok && stderr.contains("at least 3"), "{stderr}");
    // The exact likelihood of the same model through its VP flow, three images in batches of two, a loose
    // tolerance (few steps): finite bits/dim, and what the solves took.
    let exact = [
        "eval",
        "--checkpoint",
        ckpt_s,
        "--exact",
        "--images",
        "3",
        "--batch",
        "2",
        "--tolerance",
        "0.01",
    ];
    let (ok, stdout, stderr) = diffuse(&exact, &[]);
    assert!(ok, "eval --exact failed: {stderr}");
    let bpd: f64 = stdout
        .split("tolerance 1e-2): ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exact likelihood in {stdout}"));
    assert!(
        bpd.is_finite() && stdout.contains("3 images of"),
        "{stdout}"
    );

    // Sampling: PNG grid, raw .npy, trajectory GIF; then again from that .npy as x_T.
    let png = dir.join("s.png");
    let npy = dir.join("s.npy");
    let gif = dir.join("s.gif");
    let args = [
        "sample",
        "--checkpoint",
        ckpt_s,
        "--steps",
        "4",
        "-n",
        "2",
        "--out",
        png.to_str().unwrap(),
        "--npy",
        npy.to_str().unwrap(),
        "--gif",
        gif.to_str().unwrap(),
    ];
    let (ok, _, stderr) = diffuse(&args, &[]);
    assert!(ok, "sample failed: {stderr}");
    assert!(png.exists() && npy.exists() && gif.exists());
    // Three images in batches of two: one grid and one .npy of all three, the first batch exactly what the run of
    // two above drew (same seed), the second from its own seed; a GIF cannot span batches.
    let npy3 = dir.join("s3.npy");
    let mut batched = args[..9].to_vec();
    batched[6] = "3";
    batched.extend(["--npy", npy3.to_str().unwrap(), "--batch", "2"]);
    let (ok, stdout, stderr) = diffuse(&batched, &[]);
    assert!(
        ok && stdout.contains("batch 2/2: 3 of 3 images"),
        "{stdout}{stderr}"
    );
    let (shape2, two) = diffuse::image_io::read_npy(&npy).unwrap();
    let (shape3, three) = diffuse::image_io::read_npy(&npy3).unwrap();
    assert_eq!((shape2[0], shape3[0]), (2, 3));
    assert_eq!(shape2[1..], shape3[1..]);
    assert_eq!(
        three[..two.len()],
        two[..],
        "the first batch must repeat the run of two"
    );
    let image = two.len() / 2;
    assert_ne!(
        three[two.len()..],
        two[..image],
        "the second batch must draw its own noise"
    );
    // ... and that noise is the seed's own: batch 1 of seed 0 is the run of one image from SplitMix64(0)'s first draw.
    let npy1 = dir.join("s1.npy");
    let seed1 = diffuse::model::SplitMix64::new(0).next_u64().to_string();
    let mut alone = args[..9].to_vec();
    alone[6] = "1";
    alone.extend(["--npy", npy1.to_str().unwrap(), "--seed", &seed1]);
    let (ok, _, stderr) = diffuse(&alone, &[]);
    assert!(ok, "{stderr}");
    assert_eq!(
        diffuse::image_io::read_npy(&npy1).unwrap().1,
        three[two.len()..]
    );
    batched.extend(["--gif", gif.to_str().unwrap()]);
    let (ok, _, stderr) = diffuse(&batched, &[]);
    assert!(!ok && stderr.contains("--gif"), "{stderr}");
    let (ok, _, stderr) = diffuse(
        &[
            "sample",
            "--checkpoint",
            ckpt_s,
            "--sampler",
            "ddpm",
            "--steps",
            "3",
            "--noise",
            npy.to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "sample from --noise failed: {stderr}");
    let (ok, stdout, stderr) = diffuse(
        &[
            "sample",
            "--checkpoint",
            ckpt_s,
            "--sampler",
            "langevin",
            "--steps",
            "40",
            "-n",
            "2",
            "--out",
            png.to_str().unwrap(),
        ],
        &[],
    );
    // 2 levels × 20 Langevin steps, then the denoising step: 41 model evaluations.
    assert!(
        ok && stdout.contains("41 model evaluations"),
        "{stdout}{stderr}"
    );
    let (ok, _, stderr) = diffuse(&["sample", "--checkpoint", ckpt_s, "--class", "3"], &[]);
    assert!(!ok && stderr.contains("unconditional"), "{stderr}");
}

#[test]
fn preview_grids_start_from_the_same_noise_at_every_step_and_after_resuming() {
    // With a zero learning rate and no weight averaging the weights never change, so grids drawn from one seed
    // must be identical; a seed that moved with the step (or was lost on resume) would change them.
    let dir = scratch("preview-seed");
    let out = dir.join("run");
    let mut train = vec![
        "train",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--batch",
        "2",
        "--sample-every",
        "1",
        "--lr",
        "0",
        "--warmup",
        "0",
        "--ema",
        "0",
        "--out",
        out.to_str().unwrap(),
        "--seed",
        "7",
    ];
    let (ok, _, stderr) = diffuse(&train, &[]);
    assert!(ok, "train failed: {stderr}");
    // Resumed without --seed: the checkpoint's seed (7) must still be the one the grid is drawn from.
    train[4] = "3";
    train.truncate(train.len() - 2);
    train.push("--resume");
    let (ok, _, stderr) = diffuse(&train, &[]);
    assert!(ok, "resume failed: {stderr}");
    let grid = |step: u32| std::fs::read(out.join(format!("samples-{step:07}.png"))).unwrap();
    let first = grid(1);
    assert!(grid(2) == first, "the grids of steps 1 and 2 differ");
    assert!(grid(3) == first, "the resumed run's grid differs");
}

#[test]
fn bad_training_input_is_a_clear_error() {
    let dir = scratch("bad-input");
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = dir.join("run");
    let (ok, _, stderr) = diffuse(
        &[
            "train",
            "--preset",
            "tiny",
            "--data",
            empty.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && stderr.contains("no usable images"), "{stderr}");
    let (ok, _, stderr) = diffuse(&["train", "--preset", "huge"], &[]);
    assert!(
        !ok && stderr.contains("invalid value 'huge' for '--preset")
            && stderr.contains("tiny, small, medium, rgb32"),
        "{stderr}"
    );
    let (ok, _, stderr) = diffuse(&["train", "--preset", "tiny", "--dropout", "1.5"], &[]);
    assert!(!ok && stderr.contains("dropout"), "{stderr}");
    let (ok, _, stderr) = diffuse(
        &[
            "train",
            "--preset",
            "tiny",
            "--resume",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && stderr.contains("no checkpoint"), "{stderr}");
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let (ok, _, stderr) = diffuse(&["sample", "--checkpoint", corrupt.to_str().unwrap()], &[]);
    assert!(!ok && stderr.contains("truncated or corrupt"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_class_conditional_model_samples_by_index_name_or_all_classes() {
    let dir = scratch("classes");
    let out = dir.join("run");
    let (ok, _, stderr) = diffuse(
        &[
            "train",
            "--preset",
            "tiny",
            "--class-conditional",
            "--steps",
            "1",
            "--batch",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "train failed: {stderr}");
    // The preview of a class-conditional run: two images of each of the 10 digits, one class per column.
    let preview = image::open(out.join("samples-0000001.png")).unwrap();
    assert_eq!(
        (preview.width(), preview.height()),
        (10 * 30 + 2, 2 * 30 + 2)
    );
    let ckpt = out.join("checkpoint.safetensors");
    let ckpt_s = ckpt.to_str().unwrap();
    for class in ["all", "7"] {
        let png = dir.join(format!("{class}.png"));
        let (ok, _, stderr) = diffuse(
            &[
                "sample",
                "--checkpoint",
                ckpt_s,
                "--steps",
                "2",
                "-n",
                "12",
                "--class",
                class,
                "--guidance",
                "1.5",
                "--out",
                png.to_str().unwrap(),
            ],
            &[],
        );
        assert!(ok, "--class {class} failed: {stderr}");
    }
    // --class all lays out one class per column: 12 images in 10 columns, 2 rows.
    let grid = image::open(dir.join("all.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (10 * 30 + 2, 2 * 30 + 2));
    let (ok, _, stderr) = diffuse(&["sample", "--checkpoint", ckpt_s, "--class", "seven"], &[]);
    assert!(
        !ok && stderr.contains("one of: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"),
        "{stderr}"
    );
    let (ok, _, stderr) = diffuse(&["sample", "--checkpoint", ckpt_s, "--class", "10"], &[]);
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");
}

/// The model flags override the preset's configuration field by field; the checkpoint records the result, and a
/// configuration that cannot be built is refused before anything is written, saying what to change.
#[test]
fn model_flags_override_the_preset_and_reach_the_checkpoint() {
    let dir = scratch("model-flags");
    let out = dir.join("run");
    let mut train = vec![
        "train",
        "--preset",
        "tiny",
        "--steps",
        "1",
        "--batch",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    train.extend([
        "--base-channels",
        "16",
        "--channel-mults",
        "1,2",
        "--blocks-per-level",
        "2",
        "--attention-resolutions",
        "none",
        "--groups",
        "8",
        "--heads",
        "2",
    ]);
    let (ok, _, stderr) = diffuse(&train, &[]);
    assert!(ok, "train failed: {stderr}");
    let ckpt = diffuse::checkpoint::Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    let want = diffuse::model::UNetConfig {
        base_channels: 16,
        blocks_per_level: 2,
        attention_resolutions: Vec::new(),
        groups: 8,
        heads: 2,
        ..diffuse::model::Preset::Tiny.config()
    };
    assert_eq!(ckpt.config, want);

    for (flag, value, message) in [
        ("--groups", "5", "--groups 5 must divide"),
        (
            "--attention-resolutions",
            "5",
            "--attention-resolutions 5 is not",
        ),
        (
            "--image-size",
            "27",
            "--image-size 27 must be divisible by 2",
        ),
        ("--heads", "3", "--heads 3 must divide every channel count"),
        ("--channel-mults", "1,x", "\"x\" is not a whole number"),
    ] {
        let other = dir.join(format!("bad{flag}"));
        let args = [
            "train",
            "--preset",
            "tiny",
            "--steps",
            "1",
            "--out",
            other.to_str().unwrap(),
            flag,
            value,
        ];
        let (ok, _, stderr) = diffuse(&args, &[]);
        assert!(!ok && stderr.contains(message), "{flag} {value}: {stderr}");
        assert!(
            !other.join("checkpoint.safetensors").exists(),
            "{flag} {value} wrote a checkpoint"
        );
    }
}

#[test]
fn a_seventy_thousand_image_idx_set_trains_resident_and_streamed() {
    // The size of Fashion-MNIST: the built-in 10,000 digits seven times over, as official IDX files.
    let dir = scratch("idx70k");
    let digits = diffuse::data::Dataset::builtin(diffuse::data::Fit {
        channels: 1,
        size: 28,
        background: [0; 3],
    })
    .unwrap();
    let mut images = Vec::new();
    for v in [0x0803u32, 70_000, 28, 28] {
        images.extend_from_slice(&v.to_be_bytes());
    }
    let mut labels = Vec::new();
    for v in [0x0801u32, 70_000] {
        labels.extend_from_slice(&v.to_be_bytes());
    }
    let digit_labels: Vec<u8> = digits
        .labels
        .as_ref()
        .unwrap()
        .iter()
        .map(|&l| l as u8)
        .collect();
    for _ in 0..7 {
        images.extend_from_slice(&digits.pixels);
        labels.extend_from_slice(&digit_labels);
    }
    std::fs::write(dir.join("train-images-idx3-ubyte"), images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
    let data = dir.to_str().unwrap().to_string();
    for (data_on, placed) in [
        ("auto", "resident on the GPU"),
        ("host", "streamed from host memory"),
    ] {
        let out = dir.join(data_on);
        let (ok, stdout, stderr) = diffuse(
            &[
                "train",
                "--preset",
                "tiny",
                "--data",
                &data,
                "--data-on",
                data_on,
                "--steps",
                "2",
                "--batch",
                "4",
                "--log-every",
                "1",
                "--preview",
                "0",
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        );
        assert!(ok, "{data_on}: {stderr}");
        assert!(
            stdout.contains("70000 images")
                && stdout.contains(placed)
                && stdout.contains("step 2/2"),
            "{stdout}"
        );
        // --preview 0: the loss curve, no grid.
        assert!(out.join("loss.png").exists() && !out.join("samples-0000002.png").exists());
    }
}

#[test]
fn sampling_more_than_fits_runs_in_batches_that_fit_and_says_how_to_repeat_it() {
    let dir = scratch("fit");
    let png = dir.join("grid.png");
    let run = |extra: &[&str], npy: &std::path::Path| {
        let mut args = vec![
            "sample",
            "-n",
            "8",
            "--steps",
            "2",
            "--out",
            png.to_str().unwrap(),
            "--npy",
            npy.to_str().unwrap(),
        ];
        args.extend(extra);
        let (ok, stdout, stderr) = diffuse(&args, &[]);
        assert!(ok, "{stderr}");
        (stdout, diffuse::image_io::read_npy(npy).unwrap().1)
    };
    // The bundled small model needs about 17 MB for one image and 4 MB more per image: 40 MB holds three.
    let (stdout, budgeted) = run(&["--memory-budget", "0.04"], &dir.join("a.npy"));
    assert!(
        stdout.contains(
            "--batch 8 does not fit this adapter and --memory-budget: sampling in batches of 3"
        ) && stdout.contains("batch 3/3: 8 of 8 images"),
        "{stdout}"
    );
    let (_, by_hand) = run(&["--batch", "3"], &dir.join("b.npy"));
    assert_eq!(budgeted, by_hand, "the note's --batch repeats the images");
    let (ok, _, stderr) = diffuse(&["sample", "-n", "2", "--memory-budget", "0.001"], &[]);
    assert!(
        !ok && stderr.contains("one image does not fit")
            && stderr.contains("--memory-budget allows 1 MB"),
        "{stderr}"
    );
}

#[test]
fn numeric_flags_refuse_nan_infinities_and_negatives_naming_the_range() {
    // (subcommand, flag=value, the range the message must state). `--flag=value` so that clap reads "-1" as a value.
    let cases = [
        ("train", "--lr=nan", "finite number ≥ 0"),
        ("train", "--lr=-1e-4", "finite number ≥ 0"),
        ("train", "--lr=inf", "finite number ≥ 0"),
        ("train", "--clip=-1", "finite number ≥ 0"),
        ("train", "--clip=NaN", "finite number ≥ 0"),
        ("train", "--ema=1.5", "in [0, 1]"),
        ("train", "--ema=nan", "in [0, 1]"),
        ("train", "--dropout=nan", "in [0, 1)"),
        ("train", "--dropout=1", "in [0, 1)"),
        ("train", "--memory-budget=0", "finite number > 0"),
        ("train", "--memory-budget=inf", "finite number > 0"),
        ("train", "--batch=0", "at least 1"),
        ("train", "--grad-accum=0", "at least 1"),
        ("train", "--warmup=-5", "warmup"),
        ("sample", "--guidance=nan", "finite number ≥ 0"),
        ("sample", "--guidance=-2", "finite number ≥ 0"),
        ("sample", "--eta=-1", "finite number ≥ 0"),
        ("sample", "--eta=inf", "finite number ≥ 0"),
        ("sample", "--steps=0", "at least 1"),
        ("sample", "--num=0", "at least 1"),
        ("sample", "--memory-budget=-1", "finite number > 0"),
        ("eval", "--batch=0", "at least 1"),
        ("eval", "--timesteps=0", "at least 1"),
    ];
    for (command, arg, range) in cases {
        let flag = arg.split('=').next().unwrap();
        let (ok, _, stderr) = diffuse(&[command, arg], &[]);
        assert!(!ok, "{command} {arg} was accepted");
        assert!(
            stderr.contains(&format!("'{flag}")) && stderr.contains(range),
            "{command} {arg}: the message must name the flag and {range:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn a_negative_value_apart_from_its_flag_gets_the_flags_own_message() {
    // `--eta -1` (not `--eta=-1`): clap would take "-1" for an unknown flag and say nothing of the range.
    for (command, flag, value, range) in [
        ("sample", "--eta", "-1", "finite number ≥ 0"),
        ("sample", "-n", "-2", "≥ 1"),
        ("sample", "--guidance", "-1", "finite number ≥ 0"),
        ("sample", "--steps", "-5", "≥ 1"),
        ("eval", "--images", "-3", "≥ 1"),
        ("eval", "--tolerance", "-1", "finite number > 0"),
    ] {
        let (ok, _, stderr) = diffuse(&[command, flag, value], &[]);
        assert!(
            !ok && stderr.contains(&format!("invalid value '{value}'")) && stderr.contains(range),
            "{command} {flag} {value}: {stderr}"
        );
    }
}

#[test]
fn guidance_needs_a_class_and_a_class_conditional_model() {
    // The bundled model is class-conditional: guidance without --class would change nothing.
    let (ok, _, stderr) = diffuse(
        &["sample", "--guidance", "2", "--steps", "1", "-n", "1"],
        &[],
    );
    assert!(
        !ok && stderr.contains("--guidance 2 needs --class"),
        "{stderr}"
    );
    let dir = scratch("guidance");
    let out = dir.join("run");
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &["--steps", "1"]), &[]);
    assert!(ok, "train failed: {stderr}");
    let ckpt = out.join("checkpoint.safetensors");
    let (ok, _, stderr) = diffuse(
        &[
            "sample",
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--guidance",
            "1.5",
            "--steps",
            "1",
        ],
        &[],
    );
    assert!(
        !ok && stderr.contains("--guidance 1.5: this model is unconditional"),
        "{stderr}"
    );
}

/// `diffuse train` of the tiny preset into `out`, writing no preview grids, then `extra`.
fn tiny_run<'a>(out: &'a std::path::Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--preset",
        "tiny",
        "--batch",
        "2",
        "--preview",
        "0",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn sample_reports_every_model_evaluation_of_a_two_evaluation_sampler() {
    // Heun with 3 timesteps: two Heun steps of two evaluations each, then a last Euler step of one.
    let dir = scratch("ode-count");
    let png = dir.join("ode.png");
    let (ok, stdout, stderr) = diffuse(
        &[
            "sample",
            "--sampler",
            "ode",
            "--steps",
            "3",
            "-n",
            "1",
            "--out",
            png.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ode (5 model evaluations)"), "{stdout}");
}

#[test]
fn a_step_that_leaves_non_finite_weights_saves_no_checkpoint() {
    // The loss of step 1 is computed before its update, so it is finite; an infinite learning rate (1e39 is past
    // f32's range) then makes the weights infinite or NaN, which the checkpoint must not receive.
    let dir = scratch("non-finite-weights");
    let out = dir.join("run");
    let (ok, _, stderr) = diffuse(
        &tiny_run(&out, &["--steps", "1", "--lr", "1e39", "--warmup", "0"]),
        &[],
    );
    assert!(!ok, "a run with non-finite weights must fail");
    assert!(
        stderr.contains("at step 1 hold non-finite values") && stderr.contains("refusing to save"),
        "{stderr}"
    );
    assert!(!out.join("checkpoint.safetensors").exists());
}

#[test]
fn non_finite_samples_are_refused_not_written_as_black_images() {
    let dir = scratch("non-finite-samples");
    let bundled =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/small-mnist.safetensors");
    let mut ckpt = diffuse::checkpoint::Checkpoint::load(&bundled).unwrap();
    ckpt.ema.iter_mut().for_each(|v| *v = f32::NAN);
    let broken = dir.join("nan.safetensors");
    ckpt.save(&broken).unwrap();
    let png = dir.join("nan.png");
    // The SDE sampler clips nothing, so NaN cannot be clamped into range on the way.
    let (ok, _, stderr) = diffuse(
        &[
            "sample",
            "--checkpoint",
            broken.to_str().unwrap(),
            "--sampler",
            "sde",
            "--steps",
            "2",
            "-n",
            "1",
            "--out",
            png.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok, "NaN samples must fail");
    assert!(
        stderr.contains("sampling: 784 of 784 sample values are not finite"),
        "{stderr}"
    );
    assert!(!png.exists(), "a PNG was written from NaN samples");
}

#[test]
fn resume_refuses_changed_settings_unless_overridden_and_records_the_change() {
    use diffuse::checkpoint::Checkpoint;
    let dir = scratch("resume-settings");
    let out = dir.join("run");
    let first = [
        "--steps", "1", "--lr", "0.001", "--seed", "3", "--clip", "0",
    ];
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &first), &[]);
    assert!(ok, "train failed: {stderr}");
    let ckpt_path = out.join("checkpoint.safetensors");
    let changed = [
        "--steps", "2", "--resume", "--lr", "0.002", "--seed", "5", "--flip", "--ema", "0.9",
    ];
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &changed), &[]);
    assert!(!ok, "changed settings were accepted");
    for line in [
        "lr, ema, flip, seed differ from the checkpoint's record",
        "--lr 0.002 (checkpoint: 0.001)",
        "--ema 0.9 (checkpoint: 0.999)",
        "--flip true (checkpoint: false)",
        "--seed 5 (checkpoint: 3)",
        "--override lr,ema,flip,seed",
    ] {
        assert!(stderr.contains(line), "missing {line:?}: {stderr}");
    }
    assert_eq!(
        Checkpoint::load(&ckpt_path).unwrap().step,
        1,
        "nothing may run"
    );
    // Flags left out take the checkpoint's values, not the defaults.
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &["--steps", "2", "--resume"]), &[]);
    assert!(ok, "a plain resume failed: {stderr}");
    let ckpt = Checkpoint::load(&ckpt_path).unwrap();
    assert_eq!(
        (
            ckpt.step,
            ckpt.training.settings.seed,
            ckpt.training.settings.lr,
            ckpt.training.settings.grad_clip
        ),
        (2, 3, 0.001, None)
    );
    assert!(ckpt.training.changes.is_empty());
    let overridden = [
        "--steps",
        "3",
        "--resume",
        "--lr",
        "0.002",
        "--override",
        "lr",
    ];
    let (ok, stdout, stderr) = diffuse(&tiny_run(&out, &overridden), &[]);
    assert!(ok, "an overridden change failed: {stderr}");
    assert!(
        stdout.contains("--override: --lr 0.002 (was 0.001) from step 2"),
        "{stdout}"
    );
    let ckpt = Checkpoint::load(&ckpt_path).unwrap();
    assert_eq!(ckpt.training.settings.lr, 0.002);
    assert_eq!(ckpt.training.changes, ["step 2: --lr 0.002 (was 0.001)"]);
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &["--override", "lr"]), &[]);
    assert!(
        !ok && stderr.contains("--resume"),
        "--override without --resume: {stderr}"
    );
}

#[test]
fn sigterm_saves_a_checkpoint_removes_stale_temporaries_and_exits_130() {
    use std::io::BufRead;
    let dir = scratch("sigterm");
    let out = dir.join("run");
    std::fs::create_dir_all(&out).unwrap();
    // What a save killed before its rename leaves behind.
    let stale = out.join(".checkpoint.safetensors.tmp-4242");
    std::fs::write(&stale, b"torn").unwrap();
    let args = tiny_run(
        &out,
        &[
            "--steps",
            "100000",
            "--log-every",
            "1",
            "--checkpoint-every",
            "100000",
            "--sample-every",
            "100000",
        ],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run diffuse");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let progress = line.starts_with("step ");
        seen.push(line);
        if progress {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.starts_with("step ")),
        "no progress line: {seen:?}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "stdout after the signal: {rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.starts_with("interrupted: saved")),
        "{rest:?}"
    );
    let ckpt = diffuse::checkpoint::Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert!(ckpt.step >= 1);
    assert!(!stale.exists(), "the stale temporary file is still there");
}

#[test]
fn a_headless_run_prints_no_window_system_noise() {
    // Without XDG_RUNTIME_DIR (a server, a container, CI), Mesa's device-selection layer made libwayland print
    // "error: XDG_RUNTIME_DIR is invalid or not set" on every run, which reads as diffuse failing.
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .output()
        .expect("run diffuse");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("chosen:"));
}

/// Starts a long `small` run in `out`, waits for its first progress line, sends `signals` one after another, and
/// returns the exit status with everything the run printed after them.
fn signalled_run(out: &std::path::Path, signals: &[&str]) -> (std::process::ExitStatus, String) {
    use std::io::BufRead;
    let out_s = out.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args([
            "train",
            "--preset",
            "small",
            "--batch",
            "16",
            "--preview",
            "0",
            "--steps",
            "100000",
            "--log-every",
            "1",
            "--checkpoint-every",
            "100000",
            "--out",
            out_s,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run diffuse");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("step ") {
            break;
        }
    }
    // Each signal after the first waits until the run has said it took the one before: two signals of one kind
    // pending at once merge into one, and on a loaded machine the handler may not run for a while. A step takes
    // seconds here, so the next lands long before the step and the checkpoint's fsync are done.
    let pid = child.id().to_string();
    let (said_tx, said) = std::sync::mpsc::channel();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        for line in stderr.lines() {
            let _ = said_tx.send(line.unwrap());
        }
    });
    let mut heard = Vec::new();
    for (i, signal) in signals.iter().enumerate() {
        if i > 0 {
            let wait = std::time::Duration::from_secs(60);
            while !heard
                .iter()
                .any(|l: &String| l.starts_with("interrupted: saving"))
            {
                heard.push(
                    said.recv_timeout(wait)
                        .expect("the run acknowledges the signal"),
                );
            }
        }
        let sent = Command::new("kill").args([signal, pid.as_str()]).status();
        assert!(sent.unwrap().success());
    }
    let mut rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    reader.join().unwrap();
    rest.extend(heard);
    rest.extend(said.try_iter());
    (child.wait().unwrap(), rest.join("\n"))
}

#[test]
fn sighup_saves_like_ctrl_c_and_a_second_signal_stops_at_once() {
    let dir = scratch("signals");
    let (status, said) = signalled_run(&dir.join("hup"), &["-HUP"]);
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("interrupted: saved"), "{said}");
    assert!(dir.join("hup").join("checkpoint.safetensors").exists());
    let (status, said) = signalled_run(&dir.join("twice"), &["-INT", "-INT"]);
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(
        said.contains("interrupted again: stopping without saving")
            && !said.contains("interrupted: saved"),
        "{said}"
    );
    assert!(!dir.join("twice").join("checkpoint.safetensors").exists());
}

#[test]
fn eval_refuses_a_dataset_label_the_model_has_no_class_for_in_both_estimates() {
    // Eleven class folders against the bundled model's ten classes: the eleventh label has no class embedding
    // (its index would be the model's "no class" row), so the bound and the exact likelihood both refuse it.
    let dir = scratch("eleven-classes");
    for k in 0..11u8 {
        let class = dir.join(format!("c{k:02}"));
        std::fs::create_dir_all(&class).unwrap();
        image::GrayImage::from_fn(28, 28, |x, y| {
            image::Luma([((x + y) as u8).wrapping_mul(4 + k)])
        })
        .save(class.join("a.png"))
        .unwrap();
    }
    let data = dir.to_str().unwrap();
    for extra in [&[][..], &["--exact"][..]] {
        let mut args = vec!["eval", "--data", data, "--images", "11"];
        args.extend_from_slice(extra);
        let (ok, _, stderr) = diffuse(&args, &[]);
        assert!(
            !ok && stderr.contains("the dataset has label 10, but the model has 10 classes"),
            "{extra:?}: {stderr}"
        );
    }
}

#[test]
fn ctrl_c_during_a_preview_cuts_it_short_then_saves_and_stops() {
    // A preview of 64 `small` images (50 sampler steps of a minute or more on a CPU adapter) starts after step 2;
    // Ctrl-C then ends it at the next sampler step, and the run saves at the next training step and exits.
    use std::io::BufRead;
    let dir = scratch("preview-stop");
    let out = dir.join("run");
    let mut child = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args([
            "train",
            "--batch",
            "8",
            "--steps",
            "1000",
            "--log-every",
            "1",
            "--sample-every",
            "2",
        ])
        .args([
            "--preview",
            "64",
            "--checkpoint-every",
            "1000",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("step 2/") {
            break;
        }
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let status = child.wait().unwrap();
    let said = format!("{}\n{stderr}", rest.join("\n"));
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(
        said.contains("the preview of step 2 was cut short by the stop"),
        "{said}"
    );
    assert!(
        !out.join("samples-0000002.png").exists(),
        "no grid from a cut preview"
    );
    let saved = diffuse::checkpoint::Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(saved.step, 3, "{said}");
}

#[test]
fn few_step_samplers_run_and_their_clip_and_karras_choices_are_checked() {
    let dir = scratch("few-step");
    let png = dir.join("s.png");
    let out = png.to_str().unwrap();
    // Each runs from the bundled model and reports its evaluations: Heun with --steps 5 is 3 levels, 5 evaluations.
    for (sampler, steps, extra, evaluations) in [
        ("dpm++2m", "4", &["--karras"][..], 4),
        (
            "unipc",
            "4",
            &["--clip", "dynamic", "--threshold-max", "1.5"][..],
            4,
        ),
        ("euler", "4", &[][..], 4),
        ("heun", "5", &[][..], 5),
    ] {
        let mut args = vec![
            "sample",
            "--sampler",
            sampler,
            "--steps",
            steps,
            "-n",
            "2",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = diffuse(&args, &[]);
        assert!(ok, "{sampler}: {stderr}");
        assert!(
            stdout.contains(&format!("{sampler} ({evaluations} model evaluations)")),
            "{sampler}: {stdout}"
        );
    }
    // A clip where the sampler has no x̂₀ to clip, and Karras σ for a sampler tied to the timesteps, are refused
    // before any GPU work, saying what to do.
    let (ok, _, stderr) = diffuse(
        &[
            "sample",
            "--sampler",
            "euler",
            "--clip",
            "clamp",
            "--out",
            out,
        ],
        &[],
    );
    assert!(
        !ok && stderr.contains("--clip clamp") && stderr.contains("leave --clip out"),
        "{stderr}"
    );
    let (ok, _, stderr) = diffuse(
        &["sample", "--sampler", "ddim", "--karras", "--out", out],
        &[],
    );
    assert!(
        !ok && stderr.contains("--karras") && stderr.contains("dpm++2m"),
        "{stderr}"
    );
    let (ok, _, stderr) = diffuse(&["sample", "--threshold-max", "0.5", "--out", out], &[]);
    assert!(!ok && stderr.contains("--threshold-max"), "{stderr}");
}

#[test]
fn the_training_objectives_reach_the_checkpoint_resume_every_sampler_and_eval() {
    use diffuse::checkpoint::Checkpoint;
    use diffuse::diffusion::Prediction;
    use diffuse::optim::EmaWarmup;
    let dir = scratch("objectives");
    let out = dir.join("run");
    let out_s = out.to_str().unwrap();
    // ε-prediction cannot take a zero-terminal-SNR schedule: refused before anything is written, saying why.
    let (ok, _, stderr) = diffuse(
        &tiny_run(&out, &["--steps", "1", "--zero-terminal-snr"]),
        &[],
    );
    assert!(!ok, "eps with --zero-terminal-snr was accepted");
    assert!(
        stderr.contains("--zero-terminal-snr needs --prediction v")
            && stderr.contains("says nothing about x₀"),
        "{stderr}"
    );
    assert!(!out.join("checkpoint.safetensors").exists());
    // Bad values are refused by name when parsed.
    for (args, says) in [
        (&["--min-snr-gamma", "0"][..], "--min-snr-gamma"),
        (&["--ema-warmup", "0"][..], "--ema-warmup"),
        (&["--ema-inv-gamma", "2"][..], "--ema-warmup"),
    ] {
        let (ok, _, stderr) = diffuse(&tiny_run(&out, args), &[]);
        assert!(!ok && stderr.contains(says), "{args:?}: {stderr}");
    }

    // Every objective at once, with a preview grid sampled through the rescaled schedule.
    let objectives = [
        "--prediction",
        "v",
        "--zero-terminal-snr",
        "--min-snr-gamma",
        "5",
        "--ema-warmup",
        "0.75",
    ];
    let mut train = vec![
        "train",
        "--preset",
        "tiny",
        "--batch",
        "2",
        "--preview",
        "2",
        "--steps",
        "2",
        "--out",
        out_s,
    ];
    train.extend(objectives);
    let (ok, stdout, stderr) = diffuse(&train, &[]);
    assert!(ok, "train failed: {stderr}");
    assert!(
        stdout.contains(
            "objective: predicts v, Min-SNR-γ loss weights (γ = 5), schedule rescaled to zero terminal SNR, \
             EMA warm-up 1 − (1 + k/1)^−0.75"
        ),
        "{stdout}"
    );
    assert!(out.join("samples-0000002.png").exists());
    let ckpt_path = out.join("checkpoint.safetensors");
    let record = Checkpoint::load(&ckpt_path).unwrap().training;
    let want = (
        Prediction::Velocity,
        true,
        Some(5.0),
        EmaWarmup::Power {
            power: 0.75,
            inv_gamma: 1.0,
        },
    );
    let got = |r: &diffuse::checkpoint::TrainingRecord| {
        (
            r.settings.target,
            r.settings.zero_terminal_snr,
            r.settings.min_snr_gamma,
            r.settings.ema_warmup,
        )
    };
    assert_eq!(got(&record), want);

    // --resume without the flags keeps them; with different values it refuses, naming each.
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &["--steps", "3", "--resume"]), &[]);
    assert!(ok, "a plain resume failed: {stderr}");
    let ckpt = Checkpoint::load(&ckpt_path).unwrap();
    assert_eq!((ckpt.step, got(&ckpt.training)), (3, want));
    let changed = [
        "--steps",
        "4",
        "--resume",
        "--prediction",
        "x0",
        "--zero-terminal-snr",
        "false",
        "--min-snr-gamma",
        "off",
        "--ema-warmup",
        "0.75",
        "--ema-inv-gamma",
        "2",
    ];
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &changed), &[]);
    assert!(!ok, "changed objectives were accepted");
    for line in [
        "--prediction x0 (checkpoint: v)",
        "--min-snr-gamma off (checkpoint: 5)",
        "--zero-terminal-snr false (checkpoint: true)",
        "--ema-warmup 0.75 --ema-inv-gamma 2 (checkpoint: 0.75 --ema-inv-gamma 1)",
        "--override prediction,min-snr-gamma,zero-terminal-snr,ema-warmup",
    ] {
        assert!(stderr.contains(line), "missing {line:?}: {stderr}");
    }
    assert_eq!(
        Checkpoint::load(&ckpt_path).unwrap().step,
        3,
        "nothing may run"
    );

    // Every sampler reads the v-prediction and the rescaled schedule from the checkpoint.
    let ckpt_s = ckpt_path.to_str().unwrap();
    for sampler in ["ddpm", "ddim", "sde", "ode", "pc", "langevin"] {
        let png = dir.join(format!("{sampler}.png"));
        let (ok, _, stderr) = diffuse(
            &[
                "sample",
                "--checkpoint",
                ckpt_s,
                "--sampler",
                sampler,
                "--steps",
                "3",
                "-n",
                "2",
                "--out",
                png.to_str().unwrap(),
            ],
            &[],
        );
        assert!(ok && png.exists(), "{sampler}: {stderr}");
    }
    // And `diffuse eval` bounds the v-model on it, its last term (ᾱ = 0) included.
    let (ok, stdout, stderr) = diffuse(
        &[
            "eval",
            "--checkpoint",
            ckpt_s,
            "--images",
            "2",
            "--timesteps",
            "3",
        ],
        &[],
    );
    assert!(ok, "eval failed: {stderr}");
    let bound: f64 = stdout
        .split("variational bound: ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no bound in {stdout}"));
    assert!(bound.is_finite() && bound > 0.0, "{stdout}");
}

// A build with the feature would join the (faked) MPI job instead: tests/it/distributed.rs covers that build.
#[cfg(not(feature = "mpi"))]
#[test]
fn a_build_without_mpi_refuses_to_run_as_one_of_several_ranks() {
    for var in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"] {
        let (ok, _, stderr) = diffuse(
            &["train", "--preset", "tiny", "--steps", "0"],
            &[(var, "2")],
        );
        assert!(!ok, "{var}: must refuse");
        assert!(
            stderr.contains("one of 2 ranks") && stderr.contains("--features mpi"),
            "{var}: {stderr}"
        );
    }
    let (ok, _, stderr) = diffuse(
        &["bench", "--quick", "--filter", "x"],
        &[("OMPI_COMM_WORLD_SIZE", "3")],
    );
    assert!(!ok && stderr.contains("one of 3 ranks"), "{stderr}");
}

#[test]
fn timesteps_are_recorded_and_no_resume_changes_them() {
    use diffuse::checkpoint::Checkpoint;
    let out = scratch("timesteps");
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &["--steps", "1", "--timesteps", "50"]), &[]);
    assert!(ok, "{stderr}");
    let ckpt_path = out.join("checkpoint.safetensors");
    let ckpt = Checkpoint::load(&ckpt_path).unwrap();
    assert_eq!(ckpt.training.settings.timesteps, 50);
    // A plain resume keeps T; another T is refused, and --override cannot name it.
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &["--steps", "2", "--resume"]), &[]);
    assert!(ok, "{stderr}");
    let changed = ["--steps", "3", "--resume", "--timesteps", "60"];
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &changed), &[]);
    assert!(
        !ok && stderr.contains("--timesteps 60 (checkpoint: 50)")
            && stderr.contains("no resume changes timesteps"),
        "{stderr}"
    );
    let overridden = [&changed[..], &["--override", "timesteps"]].concat();
    let (ok, _, stderr) = diffuse(&tiny_run(&out, &overridden), &[]);
    assert!(
        !ok && stderr.contains("invalid value 'timesteps' for '--override"),
        "{stderr}"
    );
    let ckpt = Checkpoint::load(&ckpt_path).unwrap();
    assert_eq!((ckpt.step, ckpt.training.settings.timesteps), (2, 50));
}

/// `diffuse sample`'s files are checked before it samples: each named with its format's extension (a grid called
/// .jpg once held PNG bytes, and an .npy given as --out too was written over the grid), each refusal naming the
/// flag and the extension. Nothing is written.
#[test]
fn sample_refuses_outputs_named_for_another_format() {
    let dir = scratch("sample-outputs");
    let at = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let cases: [(&[String], [&str; 2]); 4] = [
        (&["--out".into(), at("grid.jpg")], ["--out", ".png"]),
        (
            &["--out".into(), at("grid.png"), "--npy".into(), at("x.npz")],
            ["--npy", ".npy"],
        ),
        (
            &["--out".into(), at("g.png"), "--gif".into(), at("g.png")],
            ["--gif", ".gif"],
        ),
        (
            &[
                "--out".into(),
                at("same.npy"),
                "--npy".into(),
                at("same.npy"),
            ],
            ["--out", ".png"],
        ),
    ];
    for (flags, words) in cases {
        let mut args = vec!["sample", "--num", "1", "--steps", "1"];
        args.extend(flags.iter().map(String::as_str));
        let (ok, _, stderr) = diffuse(&args, &[]);
        assert!(!ok, "{args:?} was accepted");
        for word in words {
            assert!(stderr.contains(word), "{args:?}: {word} not in {stderr}");
        }
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            0,
            "{args:?} wrote a file"
        );
    }
    let (ok, _, stderr) = diffuse(
        &[
            "sample",
            "--num",
            "1",
            "--steps",
            "1",
            "--out",
            &at("Grid.PNG"),
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(dir.join("Grid.PNG").exists());
}

/// One run per output folder: while a run trains, a second on the same --out stops before it starts, naming the
/// first (its pid); once the first is gone, even killed without a chance to clean up, the folder is free again.
#[test]
fn a_second_run_on_the_same_folder_is_refused_and_a_killed_run_leaves_no_stale_lock() {
    let dir = scratch("run-lock");
    let out = dir.join("run");
    let out_s = out.to_str().unwrap();
    let train = |steps: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_diffuse"));
        cmd.args([
            "train", "--preset", "tiny", "--steps", steps, "--batch", "4", "--out", out_s,
        ])
        .args([
            "--preview",
            "0",
            "--sample-every",
            "1000000",
            "--checkpoint-every",
            "1000000",
        ]);
        cmd
    };
    let mut first = train("1000000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = format!("pid {}", first.id());
    let lock = out.join(".diffuse-lock");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.contains(&pid)) {
        assert!(
            started.elapsed().as_secs() < 60,
            "the first run never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = train("1").output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr).into_owned();
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(!second.status.success(), "the second run was let in");
    assert!(
        stderr.contains(&pid) && stderr.contains(out_s) && stderr.contains("--out"),
        "{stderr}"
    );

    let third = train("1").output().unwrap();
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(
        third.status.success(),
        "the killed run's lock outlived it: {stderr}"
    );
    assert!(out.join("checkpoint.safetensors").exists());
}

/// Inputs checked before the work: a --noise file holding NaN is refused by name before sampling (it once ran and
/// then blamed the model's weights), and --channels other than 1 or 3 is refused by train (a 2-channel model trained
/// on grayscale digits).
#[test]
fn a_noise_file_with_nan_and_a_channel_count_images_cannot_have_are_refused_up_front() {
    let dir = scratch("nan-noise");
    let noise = dir.join("noise.npy");
    let mut values = vec![0.5f32; 2 * 28 * 28];
    values[7] = f32::NAN;
    diffuse::image_io::write_npy(&noise, &[2, 1, 28, 28], &values).unwrap();
    let out = dir.join("grid.png");
    let (ok, stdout, stderr) = diffuse(
        &[
            "sample",
            "--steps",
            "2",
            "--noise",
            noise.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok && !out.exists(), "{stdout}");
    assert!(
        stderr.contains("noise.npy") && stderr.contains("1 of 1568") && !stderr.contains("weights"),
        "{stderr}"
    );
    assert!(!stdout.contains("samples"), "it sampled first: {stdout}");

    let (ok, _, stderr) = diffuse(
        &[
            "train",
            "--channels",
            "2",
            "--steps",
            "1",
            "--out",
            dir.join("c2").to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !ok && stderr.contains("--channels") && stderr.contains("1 or 3"),
        "{stderr}"
    );
    assert!(!dir.join("c2").exists(), "the refused run made its folder");
}

/// Model flags are held to the bounds the checkpoint reader enforces (model::config::LIMITS), before anything is
/// opened or written: `--blocks-per-level 65` once trained a model whose checkpoint the same binary refused to read.
#[test]
fn model_flags_past_what_a_checkpoint_holds_are_refused_before_the_run_starts() {
    let dir = scratch("past-limits");
    let l = &diffuse::model::config::LIMITS;
    let cases = [
        (
            "--blocks-per-level",
            (l.blocks_per_level + 1).to_string(),
            "blocks per level",
        ),
        ("--channel-mults", "1,1,1,1,1,1,1,1,1".to_string(), "levels"),
        (
            "--channel-mults",
            format!("1,{}", l.channel_mult + 1),
            "channel multiplier",
        ),
        (
            "--attention-resolutions",
            "1,2,3,4,5,6,7,8,9".to_string(),
            "attention resolutions",
        ),
    ];
    for (flag, value, words) in cases {
        let out = dir.join("run");
        let args = [
            "train",
            "--preset",
            "tiny",
            flag,
            &value,
            "--steps",
            "1",
            "--out",
            out.to_str().unwrap(),
        ];
        let (ok, _, stderr) = diffuse(&args, &[]);
        assert!(
            !ok && stderr.contains(words) && stderr.contains("checkpoint holds"),
            "{args:?}: {stderr}"
        );
        assert!(!out.exists(), "{args:?}: the refused run made its folder");
    }
}

/// `--sigma-max data` measures NCSNv2's σ_max on a new run (a black and a white 28×28 digit are 2·√784 = 56 apart
/// in training units, the grey one nearer both), records the number, and a resume keeps it without measuring;
/// an objective without σ_max refuses the flag by name.
#[test]
fn sigma_max_from_data_is_measured_once_and_recorded() {
    let dir = scratch("sigma-max-data");
    let data = dir.join("images");
    std::fs::create_dir_all(&data).unwrap();
    for (name, value) in [("black", 0u8), ("grey", 100), ("white", 255)] {
        image::GrayImage::from_pixel(28, 28, image::Luma([value]))
            .save(data.join(format!("{name}.png")))
            .unwrap();
    }
    let out = dir.join("run");
    let data_s = data.to_str().unwrap();
    let args = |objective: &'static str, steps: &'static str| {
        tiny_run(&out, &[]).into_iter().chain([
            "--data",
            data_s,
            "--objective",
            objective,
            "--sigma-max",
            "data",
            "--steps",
            steps,
        ])
    };
    let (ok, _, stderr) = diffuse(&args("vp", "1").collect::<Vec<_>>(), &[]);
    assert!(
        !ok && stderr.contains("--objective vp has no sigma-max"),
        "{stderr}"
    );

    let (ok, stdout, stderr) = diffuse(&args("ncsn", "1").collect::<Vec<_>>(), &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("σ_max = 56.0000, between images 0 and 2"),
        "{stdout}"
    );
    let ckpt = diffuse::checkpoint::Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(ckpt.training.settings.objective.sigma_max(), Some(56.0));

    let resumed: Vec<&str> = args("ncsn", "2").chain(["--resume"]).collect();
    let (ok, stdout, stderr) = diffuse(&resumed, &[]);
    assert!(ok, "{stderr}");
    assert!(!stdout.contains("measuring"), "{stdout}");
    let ckpt = diffuse::checkpoint::Checkpoint::load(&out.join("checkpoint.safetensors")).unwrap();
    assert_eq!(
        (ckpt.step, ckpt.training.settings.objective.sigma_max()),
        (2, Some(56.0))
    );
}
