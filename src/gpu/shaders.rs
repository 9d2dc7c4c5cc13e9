//! Every WGSL file, compiled into the binary. The runtime and `tests/it/shaders.rs` both read this table; the test
//! checks it against the files in `shaders/`, so a file missing here (or a row whose file is gone) fails CI.

/// Environment variable naming a folder to read `<name>.wgsl` from at run time instead of the compiled-in table:
/// for kernel development (edit a shader, rerun a benchmark or test, no rebuild). Never set in normal use.
pub const SHADER_DIR_ENV: &str = "DIFFUSE_SHADER_DIR";

/// (name, source) of each `shaders/<name>.wgsl`.
#[rustfmt::skip]
pub const SHADERS: &[(&str, &str)] = &[
    ("analytic", include_str!("../../shaders/analytic.wgsl")),
    ("attention", include_str!("../../shaders/attention.wgsl")),
    ("attention_common", include_str!("../../shaders/attention_common.wgsl")),
    ("attention_subgroup", include_str!("../../shaders/attention_subgroup.wgsl")),
    ("batch", include_str!("../../shaders/batch.wgsl")),
    ("conv2d", include_str!("../../shaders/conv2d.wgsl")),
    ("conv2d_common", include_str!("../../shaders/conv2d_common.wgsl")),
    ("conv2d_gemm", include_str!("../../shaders/conv2d_gemm.wgsl")),
    ("conv2d_subgroup", include_str!("../../shaders/conv2d_subgroup.wgsl")),
    ("conv2d_winograd", include_str!("../../shaders/conv2d_winograd.wgsl")),
    ("elementwise", include_str!("../../shaders/elementwise.wgsl")),
    ("embedding", include_str!("../../shaders/embedding.wgsl")),
    ("group_norm", include_str!("../../shaders/group_norm.wgsl")),
    ("group_norm_common", include_str!("../../shaders/group_norm_common.wgsl")),
    ("group_norm_subgroup", include_str!("../../shaders/group_norm_subgroup.wgsl")),
    ("loss", include_str!("../../shaders/loss.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("matmul_common", include_str!("../../shaders/matmul_common.wgsl")),
    ("matmul_subgroup", include_str!("../../shaders/matmul_subgroup.wgsl")),
    ("noise", include_str!("../../shaders/noise.wgsl")),
    ("optimizer", include_str!("../../shaders/optimizer.wgsl")),
    ("pairwise", include_str!("../../shaders/pairwise.wgsl")),
    ("random", include_str!("../../shaders/random.wgsl")),
    ("step", include_str!("../../shaders/step.wgsl")),
    ("vlb", include_str!("../../shaders/vlb.wgsl")),
];

/// Files that are not modules of their own but the shared start of others (WGSL has no includes): (module,
/// prelude). The module's source is the prelude's text followed by its own, so the line numbers in a compiler
/// message about the module count the prelude's lines first.
pub const PRELUDES: &[(&str, &str)] = &[
    ("attention", "attention_common"),
    ("attention_subgroup", "attention_common"),
    ("conv2d", "conv2d_common"),
    ("conv2d_subgroup", "conv2d_common"),
    ("group_norm", "group_norm_common"),
    ("group_norm_subgroup", "group_norm_common"),
    ("matmul", "matmul_common"),
    ("matmul_subgroup", "matmul_common"),
];

/// Whether `shaders/<name>.wgsl` is only a prelude of other modules.
pub fn is_prelude(name: &str) -> bool {
    PRELUDES.iter().any(|(_, p)| *p == name)
}

/// The text of `shaders/<name>.wgsl` as compiled in.
pub fn source(name: &str) -> Option<&'static str> {
    SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The module `name` as the driver gets it: its prelude (if it has one) followed by its own file, each read by
/// `read` (the compiled-in table, or a folder during kernel development).
pub fn module_source<E>(name: &str, read: impl Fn(&str) -> Result<String, E>) -> Result<String, E> {
    let own = read(name)?;
    match PRELUDES.iter().find(|(m, _)| *m == name) {
        Some((_, prelude)) => Ok(format!("{}\n{own}", read(prelude)?)),
        None => Ok(own),
    }
}

/// The module `name`'s text as a browser's WebGPU compiler must get it. WGSL wants `enable subgroups;` at the top of
/// a module that calls subgroup built-ins, and naga, which parses every module first (for reflection), rejects that
/// directive; so only the text handed to a browser carries it (its compiler's line numbers then count one more).
pub fn for_browser(name: &str, source: &str) -> String {
    match name.ends_with("_subgroup") {
        true => format!("enable subgroups;\n{source}"),
        false => source.to_string(),
    }
}
