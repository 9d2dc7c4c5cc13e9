//! Data-parallel training under `mpirun` (built with `--features mpi`; `.ci/run` installs OpenMPI and runs these).
//!
//! The bound on 2 ranks against one process is derived from the summation order. Each rank computes the gradient
//! of its slice with the same kernels a one-process pass of that many images runs, on the same draws, and the
//! all-reduce adds the two slices' gradients (and loss sums): one IEEE addition, which is commutative. A
//! one-process run at `--micro-batch` = the slice adds the same two addends, so the two runs must agree bit for
//! bit — losses, gradient norms, weights, EMA and Adam's moments: the bound is zero. Against one pass of the whole
//! batch only the order of the sums over images inside the kernels changes; see
//! `two_ranks_match_one_whole_batch_pass_within_the_summation_bound`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diffuse::checkpoint::Checkpoint;

const RANKS: &str = "2";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("diffuse-mpi-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

const EXE: &str = env!("CARGO_BIN_EXE_diffuse");

/// `mpirun <launch>` (or, for an empty `launch`, `diffuse` alone) with the environment every run here needs and its
/// output piped; add the arguments.
fn command(launch: &[&str]) -> Command {
    let mut cmd = if launch.is_empty() {
        Command::new(EXE)
    } else {
        let mut c = Command::new("mpirun");
        c.arg("--oversubscribe").args(launch);
        c
    };
    // OpenMPI refuses to run as root without these (CI runs as root); one lavapipe thread per rank on 2 cores.
    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("LP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn spawn(mut cmd: Command) -> std::process::Child {
    cmd.spawn()
        .expect("start mpirun: install OpenMPI (apt-get install -y openmpi-bin libopenmpi-dev)")
}

/// `mpirun -np <np> diffuse <args>` (or `diffuse <args>` for np = None), killed if it outlives `limit`: a hung
/// collective fails the test instead of the CI run. (success, stdout, stderr)
fn run(np: Option<&str>, args: &[&str], limit: Duration) -> (bool, String, String) {
    let mut cmd = match np {
        Some(np) => command(&["-np", np, EXE]),
        None => command(&[]),
    };
    cmd.args(args);
    wait_with_limit(spawn(cmd), limit)
}

/// A long 2-rank training run into `out` in the background (for the tests that stop it), with `extra` flags.
fn start_long_run(out: &str, extra: &[&str]) -> std::process::Child {
    let mut cmd = command(&["-np", RANKS, EXE]);
    cmd.args([
        "train",
        "--preset",
        "tiny",
        "--batch",
        "4",
        "--steps",
        "100000",
        "--preview",
        "0",
        "--out",
        out,
    ])
    .args(extra);
    spawn(cmd)
}

fn wait_with_limit(mut child: std::process::Child, limit: Duration) -> (bool, String, String) {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "still running after {limit:?}, killed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("collect output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const LIMIT: Duration = Duration::from_secs(300);

fn train(np: Option<&str>, out: &Path, steps: u64, extra: &[&str]) -> String {
    let (steps, out_s) = (steps.to_string(), out.to_str().unwrap().to_string());
    let mut args = vec![
        "train",
        "--preset",
        "tiny",
        "--steps",
        &steps,
        "--log-every",
        "1",
        "--checkpoint-every",
        "2",
        "--preview",
        "0",
        "--out",
        &out_s,
    ];
    args.extend_from_slice(extra);
    let (ok, stdout, stderr) = run(np, &args, LIMIT);
    assert!(
        ok,
        "{np:?} ranks, train {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

/// (step, loss, grad_norm) of every row of metrics.csv, as written (f32 values printed exactly).
fn losses(out: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            (f[0].to_string(), f[1].to_string(), f[2].to_string())
        })
        .collect()
}

fn checkpoint(out: &Path) -> Checkpoint {
    Checkpoint::load(&out.join("checkpoint.safetensors")).expect("load the checkpoint")
}

/// Every number a resumed run depends on, bit for bit.
fn assert_same_state(what: &str, a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(
        (a.step, a.rng_offset, a.training.settings.seed),
        (b.step, b.rng_offset, b.training.settings.seed),
        "{what}: step, RNG offset, seed"
    );
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    assert!(bits(&a.params) == bits(&b.params), "{what}: weights differ");
    assert!(bits(&a.ema) == bits(&b.ema), "{what}: EMA weights differ");
    let (am, av) = a.adam.as_ref().expect("Adam moments");
    let (bm, bv) = b.adam.as_ref().expect("Adam moments");
    assert!(
        bits(am) == bits(bm) && bits(av) == bits(bv),
        "{what}: Adam moments differ"
    );
}

#[test]
fn two_ranks_reproduce_one_process_bit_for_bit() {
    // Resident data, batch 4: each rank takes 2 images; the one-process run passes over them 2 at a time.
    let ranks = scratch("resident-2");
    let stdout = train(Some(RANKS), &ranks, 3, &["--batch", "4"]);
    assert!(
        stdout.contains("on 2 ranks of 2 images each"),
        "rank 0 says how the step is split: {stdout}"
    );
    assert_eq!(
        stdout.matches("done:").count(),
        1,
        "rank 0 alone prints: {stdout}"
    );
    let one = scratch("resident-1");
    train(None, &one, 3, &["--batch", "4", "--micro-batch", "2"]);
    assert_eq!(losses(&ranks), losses(&one), "losses and gradient norms");
    assert_eq!(losses(&ranks).len(), 3);
    assert_same_state(
        "2 ranks vs --micro-batch 2",
        &checkpoint(&ranks),
        &checkpoint(&one),
    );

    // Streamed data with gradient accumulation, flips, label drops and dropout masks: every draw a rank makes is
    // its slice of the one-process draw. Batch 2 × 2 accumulated: each rank one pass of 2, the one-process run
    // two passes of 2 (its default plan).
    let extra = [
        "--batch",
        "2",
        "--grad-accum",
        "2",
        "--data-on",
        "host",
        "--flip",
        "--dropout",
        "0.2",
        "--class-conditional",
    ];
    let ranks = scratch("streamed-2");
    train(Some(RANKS), &ranks, 3, &extra);
    let one = scratch("streamed-1");
    train(None, &one, 3, &extra);
    assert_eq!(losses(&ranks), losses(&one), "losses and gradient norms");
    assert_same_state(
        "streamed, 2 ranks vs 1",
        &checkpoint(&ranks),
        &checkpoint(&one),
    );
}

#[test]
fn two_ranks_match_one_whole_batch_pass_within_the_summation_bound() {
    // One pass of 4 images against two ranks of 2. The first step starts from the same weights and draws, and each
    // image's forward pass is the same per-image arithmetic, so the step's loss differs only in how the n = 4·784
    // non-negative squared errors are summed: any order of such a sum is within (n−1)u of the exact one (u =
    // 2⁻²⁴), so two orders differ by at most 2(n−1)u, plus one rounding each for the mean's division, the halving
    // and the two ranks' addition. Later steps start from weights that differ in the last bits (the gradient's
    // sums over images are reordered too), so only the first step has a bound this tight.
    let ranks = scratch("whole-2");
    train(Some(RANKS), &ranks, 1, &["--batch", "4"]);
    let one = scratch("whole-1");
    train(None, &one, 1, &["--batch", "4"]);
    let loss = |out: &Path| losses(out)[0].1.parse::<f64>().unwrap();
    let (a, b) = (loss(&ranks), loss(&one));
    let n = 4.0 * 784.0;
    let u = f64::powi(2.0, -24);
    let bound = (2.0 * (n - 1.0) + 4.0) * u * b;
    assert!(
        (a - b).abs() <= bound,
        "first-step loss: 2 ranks {a}, one pass {b}, bound {bound:e}"
    );
}

#[test]
fn three_ranks_agree_with_one_process_up_to_the_order_of_three_addends() {
    // An odd number of ranks: batch 6, slices of 2. At the first step (same weights, same draws) each slice's
    // mean loss l_r is the same in both runs (the same 2-image kernels); the step's loss is Σ ⅓·l_r, which one
    // process accumulates left to right (a multiply-add per slice) and MPI adds in an order of its choosing (a
    // product per rank, then two additions). Either way at most three roundings of non-negative terms, each
    // within (1 + u)³ − 1 ≈ 3u of the exact sum (u = 2⁻²⁴), so the two differ by at most twice that. The replica
    // check at the start and at the checkpoint of step 2 holds the three ranks to identical weights: the run fails if
    // MPI gave them different sums.
    let ranks = scratch("three");
    let stdout = train(Some("3"), &ranks, 2, &["--batch", "6"]);
    assert!(stdout.contains("on 3 ranks of 2 images each"), "{stdout}");
    let one = scratch("three-1");
    train(None, &one, 2, &["--batch", "6", "--micro-batch", "2"]);
    let first = |out: &Path| losses(out)[0].1.parse::<f64>().unwrap();
    let (a, b) = (first(&ranks), first(&one));
    let per_sum = (1.0 + f64::powi(2.0, -24)).powi(3) - 1.0;
    let bound = 2.0 * per_sum / (1.0 - per_sum) * b;
    assert!(
        (a - b).abs() <= bound,
        "first-step loss: 3 ranks {a}, one process {b}, bound {bound:e}"
    );
    assert_eq!(checkpoint(&ranks).step, 2);
}

#[test]
fn a_checkpoint_resumes_on_any_number_of_ranks() {
    let extra = ["--batch", "4", "--micro-batch", "2"];
    let straight = scratch("resume-straight");
    train(None, &straight, 4, &extra);

    // 2 ranks to step 2, then one process to step 4.
    let from_ranks = scratch("resume-from-2");
    train(Some(RANKS), &from_ranks, 2, &["--batch", "4"]);
    let mut resumed = extra.to_vec();
    resumed.push("--resume");
    train(None, &from_ranks, 4, &resumed);
    assert_eq!(losses(&from_ranks), losses(&straight));
    assert_same_state(
        "2 ranks then 1 vs 1 throughout",
        &checkpoint(&from_ranks),
        &checkpoint(&straight),
    );

    // One process to step 2, then 2 ranks to step 4.
    let to_ranks = scratch("resume-to-2");
    train(None, &to_ranks, 2, &extra);
    train(Some(RANKS), &to_ranks, 4, &["--batch", "4", "--resume"]);
    assert_eq!(losses(&to_ranks), losses(&straight));
    assert_same_state(
        "1 then 2 ranks vs 1 throughout",
        &checkpoint(&to_ranks),
        &checkpoint(&straight),
    );
}

#[test]
fn an_error_on_the_ranks_ends_the_job_with_its_message() {
    // A step that does not split over the ranks: refused before training, and no rank is left waiting.
    let out = scratch("uneven");
    let out_s = out.to_str().unwrap();
    let (ok, stdout, stderr) = run(
        Some(RANKS),
        &["train", "--preset", "tiny", "--batch", "3", "--out", out_s],
        LIMIT,
    );
    assert!(!ok, "must fail: {stdout}");
    assert!(
        stderr.contains("do not split evenly over 2 ranks") && stderr.contains("rank"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A micro-batch larger than a rank's slice.
    let (ok, _, stderr) = run(
        Some(RANKS),
        &[
            "train",
            "--preset",
            "tiny",
            "--batch",
            "4",
            "--micro-batch",
            "4",
            "--out",
            out_s,
        ],
        LIMIT,
    );
    assert!(!ok);
    assert!(
        stderr.contains(
            "--micro-batch 4 must divide both --batch 4 and the 2 images each of the 2 ranks"
        ),
        "{stderr}"
    );
}

#[test]
fn replicas_that_differ_are_an_error_and_nothing_is_saved() {
    // Two ranks given different seeds start from different weights: the replica check refuses to train them.
    let out = scratch("differ");
    let out_s = out.to_str().unwrap();
    let common = [
        "train", "--preset", "tiny", "--batch", "4", "--steps", "2", "--out", out_s,
    ];
    // MPI's multiple-program form: one rank with each seed.
    let mut cmd = command(&["-np", "1", EXE]);
    cmd.args(common)
        .args(["--seed", "1", ":", "-np", "1", EXE])
        .args(common)
        .args(["--seed", "2"]);
    let (ok, stdout, stderr) = wait_with_limit(spawn(cmd), LIMIT);
    assert!(!ok, "must fail: {stdout}");
    assert!(
        stderr.contains("copies of the model differ at step 0"),
        "{stderr}"
    );
    assert!(!out.join("checkpoint.safetensors").exists());
}

#[test]
fn a_rank_that_dies_ends_the_job_and_the_last_checkpoint_stays_good() {
    let out = scratch("killed");
    let out_s = out.to_str().unwrap().to_string();
    let child = start_long_run(&out_s, &["--checkpoint-every", "1"]);
    // Wait for a checkpoint, then kill rank 1 (found by its environment: OpenMPI gives each rank its number).
    let started = Instant::now();
    let ckpt = out.join("checkpoint.safetensors");
    while !ckpt.exists() {
        assert!(started.elapsed() < LIMIT, "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rank1 = find_rank(&out_s, 1).expect("rank 1's process");
    let killed = Command::new("kill")
        .args(["-KILL", &rank1.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let (ok, _, stderr) = wait_with_limit(child, LIMIT);
    assert!(!ok, "the job must fail when a rank dies");
    assert!(
        stderr.contains("rank 1") || stderr.contains("signal 9"),
        "mpirun names the dead rank: {stderr}"
    );
    // The last checkpoint is whole and loads (written atomically, never half overwritten).
    let last = Checkpoint::load(&ckpt).expect("the last checkpoint loads");
    assert!(last.step >= 1);
}

/// The process of rank `rank` of the job writing to `out` (its command line names `out`).
fn find_rank(out: &str, rank: usize) -> Option<u32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let has =
            |bytes: &[u8], text: &str| bytes.split(|&b| b == 0).any(|part| part == text.as_bytes());
        if has(&cmdline, out) && has(&environ, &wanted) && !has(&cmdline, "mpirun") {
            return Some(pid);
        }
    }
    None
}

#[test]
fn bench_under_mpirun_reports_the_all_reduce_per_step() {
    let (ok, stdout, stderr) = run(Some(RANKS), &["bench", "--quick", "--json", "-"], LIMIT);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    let cases = json["cases"].as_array().expect("cases");
    let case = cases
        .iter()
        .find(|c| c["name"] == "train_allreduce")
        .expect("a data-parallel training case");
    let reduce = &case["allreduce"];
    // The tiny preset's flat gradient (its tensors 256-byte aligned), the loss sum and the stop flag, as f32.
    let layout = diffuse::model::ParamLayout::new(&diffuse::model::Preset::Tiny.config());
    assert_eq!(
        reduce["bytes"].as_u64(),
        Some(4 * (layout.padded_len as u64 + 2))
    );
    let share = reduce["share"].as_f64().unwrap();
    assert!(share > 0.0 && share < 1.0, "share of the step {share}");
    assert!(reduce["ms_per_step"].as_f64().unwrap() > 0.0);
}

#[test]
fn ctrl_c_on_mpirun_stops_every_rank_at_the_same_step_and_saves() {
    let out = scratch("interrupted");
    let out_s = out.to_str().unwrap().to_string();
    let child = start_long_run(&out_s, &["--log-every", "1"]);
    // Once training runs, Ctrl-C (SIGINT to mpirun, which passes it to every rank). The ranks see it at
    // different steps; the step's all-reduce makes them agree, and rank 0 saves at that step.
    let started = Instant::now();
    while losses_if_any(&out).len() < 3 {
        assert!(started.elapsed() < LIMIT, "training did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    let (_, stdout, stderr) = wait_with_limit(child, LIMIT);
    assert!(stdout.contains("interrupted: saved"), "{stdout}\n{stderr}");
    let saved = checkpoint(&out);
    let last = losses(&out).last().cloned().expect("a metrics row");
    assert_eq!(saved.step.to_string(), last.0, "saved at the last step run");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn losses_if_any(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.csv"))
        .map(|t| t.lines().skip(1).map(String::from).collect())
        .unwrap_or_default()
}

#[test]
fn rank_0_decodes_an_image_folder_once_and_alone_tells_about_it() {
    // 1,000 files: the size from which the decode cache keeps a folder. Rank 0 decodes and caches it; rank 1
    // opens it after, from the cache; only rank 0's notes are printed.
    let dir = scratch("folder");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..1000u32 {
        let shade = (i % 251) as u8;
        image::RgbImage::from_pixel(8, 8, image::Rgb([shade, 255 - shade, 128]))
            .save(dir.join(format!("{i:04}.png")))
            .unwrap();
    }
    let cache = scratch("folder-cache");
    let out = scratch("folder-run");
    let mut cmd = command(&["-np", RANKS, EXE]);
    cmd.args([
        "train",
        "--data",
        dir.to_str().unwrap(),
        "--preset",
        "tiny",
        "--channels",
        "3",
        "--image-size",
        "8",
        "--attention-resolutions",
        "none",
        "--steps",
        "1",
        "--batch",
        "2",
        "--preview",
        "0",
        "--out",
        out.to_str().unwrap(),
    ])
    .env("DIFFUSE_CACHE_DIR", &cache);
    let (ok, stdout, stderr) = wait_with_limit(spawn(cmd), LIMIT);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(
        stderr.matches("decoded 1000 images").count(),
        1,
        "rank 0 decodes and says so: {stderr}"
    );
    assert!(
        !stderr.contains("using the decoded images cached"),
        "rank 1 loads from the cache without a word: {stderr}"
    );
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        1,
        "one cache file"
    );
    assert_eq!(checkpoint(&out).step, 1);
}

#[test]
fn sampling_split_over_ranks_gives_the_images_of_one_process() {
    // 5 images in batches of 2 on 2 ranks: rank 0 samples batches 0 and 2, rank 1 batch 1 (and nothing in the
    // second round); each batch keeps its seed, so rank 0's gathered file equals one process's bit for bit.
    let dir = scratch("sample");
    std::fs::create_dir_all(&dir).unwrap();
    let args = |name: &str| {
        let (png, npy) = (
            dir.join(format!("{name}.png")),
            dir.join(format!("{name}.npy")),
        );
        (
            png.to_str().unwrap().to_string(),
            npy.to_str().unwrap().to_string(),
        )
    };
    let (png2, npy2) = args("ranks");
    let (ok, stdout, stderr) = run(
        Some(RANKS),
        &[
            "sample", "-n", "5", "--batch", "2", "--steps", "4", "--out", &png2, "--npy", &npy2,
        ],
        LIMIT,
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains("on 2 ranks"), "{stdout}");
    assert_eq!(
        stdout.matches("wrote").count(),
        2,
        "rank 0 alone writes: {stdout}"
    );
    let (png1, npy1) = args("one");
    let (ok, _, stderr) = run(
        None,
        &[
            "sample", "-n", "5", "--batch", "2", "--steps", "4", "--out", &png1, "--npy", &npy1,
        ],
        LIMIT,
    );
    assert!(ok, "{stderr}");
    let read = |p: &str| std::fs::read(p).expect("npy written");
    assert!(read(&npy1) == read(&npy2), "the images differ");
    assert!(std::fs::read(&png1).unwrap() == std::fs::read(&png2).unwrap());
}

#[test]
fn eval_refuses_to_run_as_several_ranks() {
    let (ok, _, stderr) = run(Some(RANKS), &["eval", "--images", "2"], LIMIT);
    assert!(!ok);
    assert!(
        stderr.contains("diffuse eval runs as one process") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
