//! Shared test harness: one GPU for the whole test binary, deterministic inputs, and the closeness check that prints
//! the worst element. Not every module uses every helper.
#![allow(dead_code)]

use std::sync::OnceLock;

use diffuse::gpu::Gpu;
// The test inputs and the closeness check live in the library, so that the browser's tests (web/tests) share them.
use diffuse::kernels::SubgroupPath;
use diffuse::model::UNetConfig;
pub use diffuse::reference::{check_close, uniform};

/// The test GPU (DIFFUSE_ADAPTER picks one). No adapter fails the test with the install hint; tests never skip.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(None) {
        Ok(gpu) => gpu,
        Err(e) => panic!("{e}"),
    })
}

/// The same adapter with `Auto` choosing as on a GPU (Tuning::Gpu: the implicit-GEMM convolutions, their fused
/// epilogues, the tiled products): the GPU path, forced on lavapipe.
pub fn gpu_path() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new(None) {
        Ok(gpu) => gpu.with_tuning(diffuse::gpu::Tuning::Gpu),
        Err(e) => panic!("{e}"),
    })
}

/// `uniform`, widened to f64 for the reference (the same values the GPU sees).
pub fn uniform64(n: usize, seed: u64) -> Vec<f64> {
    diffuse::reference::to_f64(&uniform(n, seed))
}

/// Panics with the worst element and `what` (the case) unless every element is within its bound.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], bound: impl Fn(usize) -> f64) {
    if let Err(e) = check_close(got, want, bound) {
        panic!("{what}: {e}");
    }
}

/// An f32 tensor of `shape` filled with NaN: the output of a kernel that must overwrite it (the gradient contract
/// in src/kernels/mod.rs). A kernel that adds into its output (`+=` where `=` is meant) or leaves an element
/// unwritten then fails the comparison; a zeroed output would hide both.
pub fn nan_tensor(shape: &[usize]) -> diffuse::gpu::Tensor {
    let len = shape.iter().product();
    diffuse::gpu::Tensor::from_f32(gpu(), shape, &vec![f32::NAN; len]).expect("NaN-filled tensor")
}

/// `ulps` units in the last place of an f32 of magnitude |want|: the bound for results rounded a fixed number of
/// times (pointwise ops), or for transcendentals within the WGSL accuracy spec.
pub fn ulps(want: f64, ulps: f64) -> f64 {
    ulps * diffuse::reference::F32_UNIT_ROUNDOFF * 2.0 * want.abs().max(f32::MIN_POSITIVE as f64)
}

/// A tiny U-Net that still has every kind of layer: two levels, a channel change (1×1 skip convs), attention with
/// 2 heads, class conditioning (3 classes), 8×8×1 images.
pub fn tiny_unet() -> UNetConfig {
    UNetConfig {
        in_channels: 1,
        image_size: 8,
        base_channels: 16,
        channel_mults: vec![1, 2],
        blocks_per_level: 1,
        attention_resolutions: vec![4],
        groups: 4,
        heads: 2,
        num_classes: Some(3),
        dropout: 0.0,
        conventions: Default::default(),
    }
}

/// Checks a family's choice between its portable and subgroup kernels (`takes(path)`: whether its policy in
/// src/kernels/select.rs takes the subgroup ones) against whether the adapter can run the subgroup ones: never on `Portable`, on `Auto` exactly
/// on CPU adapters that can, and `Subgroup` refused, with the way out named, exactly where it cannot.
pub fn check_subgroup_choice(
    available: bool,
    takes: impl Fn(SubgroupPath) -> diffuse::error::Result<bool>,
) {
    assert!(!takes(SubgroupPath::Portable).unwrap());
    assert_eq!(
        takes(SubgroupPath::Auto).unwrap(),
        available && gpu().info.device_type == wgpu::DeviceType::Cpu
    );
    match takes(SubgroupPath::Subgroup) {
        Ok(taken) => assert!(taken && available),
        Err(e) => {
            assert!(!available, "refused on an adapter that has them: {e}");
            assert!(e.to_string().contains("Path::Portable"), "{e}");
        }
    }
}

/// The paths of a family with subgroup kernels that this adapter runs: the portable kernels everywhere, the
/// subgroup ones where it can (`available`).
pub fn subgroup_paths(available: bool) -> Vec<SubgroupPath> {
    let mut paths = vec![SubgroupPath::Portable];
    if available {
        paths.push(SubgroupPath::Subgroup);
    }
    paths
}
