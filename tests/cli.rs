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
