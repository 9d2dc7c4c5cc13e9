//! `diffuse bench --quick --json -` runs every case and writes well-formed JSON whose every figure is positive:
//! a benchmark that silently stops running a case is a defect.

use std::process::Command;

#[test]
fn quick_bench_json_is_well_formed_and_every_figure_is_positive() {
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(["bench", "--quick", "--json", "-"])
        .output()
        .expect("run diffuse bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "diffuse bench failed: {stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)));
    assert!(
        doc["adapter"].as_str().is_some_and(|s| !s.is_empty()),
        "{doc}"
    );
    assert!(
        matches!(doc["clock"].as_str(), Some("gpu-timestamps" | "wall-clock")),
        "{doc}"
    );
    let cases = doc["cases"].as_array().expect("cases array");
    // Every family registered in the benchmark must report; the list grows with the kernels.
    for family in [
        "silu_forward",
        "matmul",
        "linear_fwd_bwd",
        "draw_t_and_noise",
        "mse_forward_backward",
        "grad_norm_clip_adamw_ema",
        "train_step",
        "unet_forward",
        "sample_ddim",
        "sample_ddpm",
    ] {
        assert!(
            cases.iter().any(|c| c["name"] == family),
            "case {family} missing from {doc}"
        );
    }
    // Quick mode skips nothing; sampling cases report images/s and network evaluations/s.
    assert_eq!(doc["skipped"].as_array().map(Vec::len), Some(0), "{doc}");
    for case in cases.iter().filter(|c| c["name"] == "sample_ddpm") {
        let items = case["items"].as_array().expect("items");
        for what in ["img", "eval"] {
            assert!(
                items
                    .iter()
                    .any(|i| i["item"] == what && i["per_s"].as_f64().is_some_and(|v| v > 0.0)),
                "{what}/s missing from {case}"
            );
        }
    }
    for case in cases {
        for key in ["median_ms", "min_ms", "max_ms", "rate"] {
            let v = case[key].as_f64().unwrap_or(f64::NAN);
            assert!(
                v > 0.0 && v.is_finite(),
                "{key} of {case} is not a positive number"
            );
        }
        assert!(
            case["host_ms"].as_f64().is_some_and(|v| v > 0.0),
            "host_ms of {case}"
        );
        assert!(
            case["memory_bytes"].as_u64().is_some_and(|v| v > 0),
            "memory_bytes of {case}"
        );
        assert!(case["min_ms"].as_f64() <= case["median_ms"].as_f64());
        assert!(case["median_ms"].as_f64() <= case["max_ms"].as_f64());
        assert!(
            case["reps"].as_u64().is_some_and(|r| r >= 1)
                && case["runs"].as_u64().is_some_and(|r| r >= 1)
        );
    }
}

/// `--breakdown` names beside each kernel the variant choice that recorded it (src/kernels/select.rs), so that a
/// reader can tell which kernels ran on this adapter.
#[test]
fn the_breakdown_names_each_kernels_variant_choice() {
    let out = Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args([
            "bench",
            "--quick",
            "--filter",
            "unet_forward",
            "--breakdown",
        ])
        .output()
        .expect("run diffuse bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "diffuse bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The dispatches timed in sequence in one submission, as the case runs them (lavapipe writes timestamps
    // inside passes), and the case's time beyond the kernels' sum spread over its dispatches.
    let header = stdout
        .lines()
        .find(|l| l.contains("µs per dispatch beyond its kernel"))
        .unwrap_or_else(|| panic!("no breakdown header in:\n{stdout}"));
    assert!(
        header.contains("in-pass timestamps between dispatches")
            || header.contains("a pass per dispatch")
            || header.contains("each dispatch alone"),
        "{header}"
    );
    for family in ["conv2d: ", "matmul: ", "group_norm: "] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(" × ") && l.contains(&format!("[{family}"))),
            "no kernel labelled [{family}…] in:\n{stdout}"
        );
    }
}

/// `--breakdown`'s two ways of timing dispatches in sequence, each forced: timestamps between dispatches inside one
/// pass, and a pass per dispatch with timestamps at its boundaries (what adapters without in-pass timestamps get).
/// Each gives one finite, non-negative time per dispatch, across more dispatches than one query set holds (4,096
/// timestamps: 2 per dispatch at pass boundaries), and the dispatches' work is done each time.
#[test]
fn dispatches_in_sequence_are_timed_inside_a_pass_and_at_pass_boundaries() {
    use diffuse::gpu::{Tensor, Timer};
    use diffuse::kernels::elementwise;
    let gpu = crate::common::gpu();
    let timer = Timer::new(gpu);
    let x = Tensor::from_f32(gpu, &[64], &[1.0; 64]).unwrap();
    let y = Tensor::from_f32(gpu, &[64], &[0.0; 64]).unwrap();
    let add = elementwise::axpy(gpu, 1.0, &x, &y).unwrap();
    let dispatches = vec![&add; 2100];
    let mut runs = 0.0;
    for inside in [true, false] {
        if inside && !gpu.caps.timestamps_inside_passes {
            continue;
        }
        let Some((seconds, how)) = timer.sequence_placed(gpu, &dispatches, inside).unwrap() else {
            return; // no timestamps on this adapter: nothing to place
        };
        runs += 2100.0;
        assert_eq!(seconds.len(), dispatches.len(), "{how}");
        assert!(
            seconds.iter().all(|s| s.is_finite() && *s >= 0.0),
            "{how}: {seconds:?}"
        );
        assert!(seconds.iter().sum::<f64>() > 0.0, "{how}: no time at all");
        assert_eq!(y.read_f32(gpu).unwrap(), vec![runs as f32; 64], "{how}");
    }
}
