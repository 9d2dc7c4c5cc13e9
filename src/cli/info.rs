//! `diffuse info`: the adapters wgpu sees and the one diffuse would choose.

use diffuse::gpu::{list_adapters, Gpu};
use diffuse::Result;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Adapter to mark as chosen: an index from this list or part of its name (default: DIFFUSE_ADAPTER, else
    /// the first discrete GPU, else any).
    #[arg(long)]
    adapter: Option<String>,
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

pub fn info(args: InfoArgs) -> Result<()> {
    let adapter = args.adapter.as_deref();
    let adapters = list_adapters();
    if adapters.is_empty() {
        // Gpu::new reports what to install.
        Gpu::new(adapter)?;
    }
    println!("adapters ({}):", adapters.len());
    for a in &adapters {
        let f = a.features;
        let l = &a.limits;
        println!("  [{}] {}", a.index, a.info.name);
        println!(
            "      backend {:?}, type {:?}, driver {} {}",
            a.info.backend, a.info.device_type, a.info.driver, a.info.driver_info
        );
        println!(
            "      limits: {} storage buffers/stage, {} B workgroup memory, {} invocations/workgroup, \
             {} MiB per storage binding, {} MiB per buffer",
            l.max_storage_buffers_per_shader_stage,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_storage_buffer_binding_size >> 20,
            l.max_buffer_size >> 20
        );
        println!(
            "      features: timestamps {}, timestamps inside passes {}, subgroups {}, f16 {}",
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY)),
            yes(f.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)),
            yes(f.contains(wgpu::Features::SUBGROUP)),
            yes(f.contains(wgpu::Features::SHADER_F16)),
        );
    }
    let gpu = Gpu::new(adapter)?;
    println!("chosen: {}", gpu.describe());
    Ok(())
}
