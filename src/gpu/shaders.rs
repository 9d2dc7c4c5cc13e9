//! Every WGSL file, compiled into the binary. The runtime and `tests/shaders.rs` both read this table; the test
//! checks it against the files in `shaders/`, so a file missing here (or a row whose file is gone) fails CI.

/// (name, source) of each `shaders/<name>.wgsl`.
pub const SHADERS: &[(&str, &str)] = &[
    ("elementwise", include_str!("../../shaders/elementwise.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("matmul_subgroup", include_str!("../../shaders/matmul_subgroup.wgsl")),
];

/// The WGSL source of `shaders/<name>.wgsl`.
pub fn source(name: &str) -> Option<&'static str> {
    SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}
