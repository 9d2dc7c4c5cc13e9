//! Every WGSL file, compiled into the binary. The runtime and `tests/shaders.rs` both read this table; the test
//! checks it against the files in `shaders/`, so a file missing here (or a row whose file is gone) fails CI.

/// Environment variable naming a folder to read `<name>.wgsl` from at run time instead of the compiled-in table:
/// for kernel development (edit a shader, rerun a benchmark or test, no rebuild). Never set in normal use.
pub const SHADER_DIR_ENV: &str = "DIFFUSE_SHADER_DIR";

/// (name, source) of each `shaders/<name>.wgsl`.
#[rustfmt::skip]
pub const SHADERS: &[(&str, &str)] = &[
    ("analytic", include_str!("../../shaders/analytic.wgsl")),
    ("attention", include_str!("../../shaders/attention.wgsl")),
    ("batch", include_str!("../../shaders/batch.wgsl")),
    ("conv2d", include_str!("../../shaders/conv2d.wgsl")),
    ("conv2d_subgroup", include_str!("../../shaders/conv2d_subgroup.wgsl")),
    ("elementwise", include_str!("../../shaders/elementwise.wgsl")),
    ("embedding", include_str!("../../shaders/embedding.wgsl")),
    ("group_norm", include_str!("../../shaders/group_norm.wgsl")),
    ("loss", include_str!("../../shaders/loss.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("matmul_subgroup", include_str!("../../shaders/matmul_subgroup.wgsl")),
    ("noise", include_str!("../../shaders/noise.wgsl")),
    ("optimizer", include_str!("../../shaders/optimizer.wgsl")),
    ("random", include_str!("../../shaders/random.wgsl")),
    ("step", include_str!("../../shaders/step.wgsl")),
    ("vlb", include_str!("../../shaders/vlb.wgsl")),
];

/// The WGSL source of `shaders/<name>.wgsl`.
pub fn source(name: &str) -> Option<&'static str> {
    SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
