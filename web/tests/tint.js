// The Tint gate's browser half: compiles WGSL modules with the browser's own WebGPU (not wgpu), on a device with
// WebGPU's default limits, and creates a pipeline for every entry point. Called from tests/browser.rs.
//
// modules: [{ name, source, entries: [names], constants: { name: value }, subgroups: bool }]. Modules that use
// subgroups compile on a second device that has the feature (their source then starts with `enable subgroups;`).
// Chrome refuses a second requestDevice on one adapter, so each device gets an adapter of its own.
export async function compileAll(modules) {
  const device = async (features) => {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) throw new Error("no WebGPU adapter (Chromium needs --enable-unsafe-webgpu)");
    for (const f of features) {
      if (!adapter.features.has(f)) throw new Error(`the adapter lacks ${f}, which the gate needs`);
    }
    return adapter.requestDevice({ requiredFeatures: features });
  };
  const plain = await device([]);
  const withSubgroups = modules.some((m) => m.subgroups) ? await device(["subgroups"]) : null;
  const errors = [];
  let pipelines = 0;
  for (const m of modules) {
    const d = m.subgroups ? withSubgroups : plain;
    d.pushErrorScope("validation");
    const module = d.createShaderModule({ label: m.name, code: m.source });
    const info = await module.getCompilationInfo();
    for (const msg of info.messages.filter((x) => x.type === "error")) {
      errors.push(`${m.name}:${msg.lineNum}:${msg.linePos}: ${msg.message}`);
    }
    for (const entry of m.entries) {
      try {
        await d.createComputePipelineAsync({
          label: `${m.name}::${entry}`,
          layout: "auto",
          compute: { module, entryPoint: entry, constants: m.constants },
        });
        pipelines += 1;
      } catch (e) {
        errors.push(`${m.name}::${entry}: ${e.message}`);
      }
    }
    const scoped = await d.popErrorScope();
    if (scoped) errors.push(`${m.name}: ${scoped.message}`);
  }
  return { pipelines, errors };
}
