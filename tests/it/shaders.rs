//! Every `shaders/*.wgsl` is parsed and validated by naga with WebGPU's baseline capabilities, then translated to
//! SPIR-V, MSL and HLSL, so a shader that Metal or DX12 would reject fails here, where only Vulkan runs. The files
//! on disk must equal the shader table the binary is built from, so a check of zero shaders cannot pass.

use std::collections::BTreeSet;
use std::path::Path;

use diffuse::gpu::shaders::{self, SHADERS};

fn shader_files_on_disk() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .map(|p| {
            p.file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn shader_table_lists_exactly_the_files_in_shaders_dir() {
    let on_disk = shader_files_on_disk();
    let in_table: BTreeSet<String> = SHADERS.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(
        in_table.len(),
        SHADERS.len(),
        "the shader table names a file twice"
    );
    assert_eq!(
        on_disk, in_table,
        "shaders/*.wgsl and src/gpu/shaders.rs disagree"
    );
    assert!(
        !on_disk.is_empty(),
        "no shaders found: the check would be vacuous"
    );
    // The table's text is the file's text (include_str! of the right file).
    for (name, source) in SHADERS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("shaders")
            .join(format!("{name}.wgsl"));
        assert_eq!(
            &std::fs::read_to_string(&path).expect("read shader"),
            source,
            "{name}: table text differs"
        );
    }
}

/// The capabilities a shader may use: WebGPU's baseline, except for the per-adapter variants named
/// `*_subgroup.wgsl`, which may use subgroup operations (their wrappers only pick them where the adapter has
/// `SUBGROUP`). A portable shader that uses subgroups by accident therefore fails here.
fn capabilities(name: &str) -> naga::valid::Capabilities {
    if name.ends_with("_subgroup") {
        naga::valid::Capabilities::SUBGROUP | naga::valid::Capabilities::SUBGROUP_BARRIER
    } else {
        naga::valid::Capabilities::default()
    }
}

/// A value for every override the module leaves without a default (the workgroup sizes the wrappers set): 64,
/// a size every such shader takes.
fn unset_overrides(module: &naga::Module) -> naga::back::PipelineConstants {
    let mut values = naga::back::PipelineConstants::default();
    for (_, o) in module.overrides.iter().filter(|(_, o)| o.init.is_none()) {
        values.insert(o.name.clone().expect("a named override"), 64.0);
    }
    values
}

/// Parses, validates and translates one WGSL source; returns the number of entry points translated.
fn validate_and_translate(name: &str, source: &str) -> Result<usize, String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| e.emit_to_string(source))?;
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), capabilities(name))
        .validate(&module)
        .map_err(|e| e.emit_to_string(source))?;
    if module.entry_points.is_empty() {
        return Err("no entry points".to_string());
    }
    for ep in &module.entry_points {
        let stage = ep.stage;
        let (module, info) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some((stage, &ep.name)),
            &unset_overrides(&module),
        )
        .map_err(|e| format!("{}: overrides: {e}", ep.name))?;

        let spv_pipeline = naga::back::spv::PipelineOptions {
            shader_stage: stage,
            entry_point: ep.name.clone(),
        };
        naga::back::spv::write_vec(
            &module,
            &info,
            &naga::back::spv::Options::default(),
            Some(&spv_pipeline),
        )
        .map_err(|e| format!("{}: SPIR-V: {e}", ep.name))?;

        // Subgroup operations need MSL 2.1 (simd_*) and HLSL shader model 6.0 (wave intrinsics).
        let subgroups = capabilities(name).contains(naga::valid::Capabilities::SUBGROUP);
        let msl_options = naga::back::msl::Options {
            lang_version: if subgroups { (2, 1) } else { (2, 0) },
            ..Default::default()
        };
        let msl_pipeline = naga::back::msl::PipelineOptions {
            entry_point: Some((stage, ep.name.clone())),
            ..Default::default()
        };
        naga::back::msl::write_string(&module, &info, &msl_options, &msl_pipeline)
            .map_err(|e| format!("{}: MSL: {e}", ep.name))?;

        let hlsl_options = naga::back::hlsl::Options {
            shader_model: if subgroups {
                naga::back::hlsl::ShaderModel::V6_0
            } else {
                naga::back::hlsl::ShaderModel::V5_1
            },
            ..Default::default()
        };
        let hlsl_pipeline = naga::back::hlsl::PipelineOptions {
            entry_point: Some((stage, ep.name.clone())),
        };
        let mut hlsl = String::new();
        naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
            .write(&module, &info, None)
            .map_err(|e| format!("{}: HLSL: {e}", ep.name))?;
    }
    Ok(module.entry_points.len())
}

#[test]
fn every_shader_validates_and_translates_to_spirv_msl_and_hlsl() {
    let mut checked = 0;
    let mut failures = Vec::new();
    // Preludes are checked as part of the modules they start (they have no entry points of their own).
    for (name, _) in SHADERS.iter().filter(|(n, _)| !shaders::is_prelude(n)) {
        let source = shaders::module_source(name, |n| {
            shaders::source(n).map(str::to_string).ok_or(n.to_string())
        })
        .expect("every prelude is in the table");
        match validate_and_translate(name, &source) {
            Ok(entry_points) => checked += entry_points,
            Err(e) => failures.push(format!("shaders/{name}.wgsl: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        checked >= SHADERS.len(),
        "checked {checked} entry points in {} files",
        SHADERS.len()
    );
}

#[test]
fn the_checker_rejects_a_broken_shader() {
    // Proof that the harness can fail: a type error (parser) and a write to a read-only buffer (validator).
    let type_error = "@compute @workgroup_size(1) fn main() { let x: f32 = 1u; }";
    assert!(validate_and_translate("type_error", type_error).is_err());
    let write_to_read_only = "@group(0) @binding(0) var<storage, read> a: array<f32>;
        @compute @workgroup_size(1) fn main() { a[0] = 1.0; }";
    assert!(validate_and_translate("write_to_read_only", write_to_read_only).is_err());
    // Subgroup operations are allowed only in the `*_subgroup` variants.
    let uses_subgroups = "@group(0) @binding(0) var<storage, read_write> a: array<f32>;
        @compute @workgroup_size(64) fn main(@builtin(local_invocation_index) i: u32) { a[i] = subgroupAdd(a[i]); }";
    assert!(validate_and_translate("portable", uses_subgroups).is_err());
    assert!(validate_and_translate("variant_subgroup", uses_subgroups).is_ok());
}
