//! `diffuse info`: the adapters wgpu sees, the one diffuse would choose, and on each the kernel variants `Auto`
//! takes and why.

use diffuse::gpu::{list_adapters, AdapterSummary, Gpu};
use diffuse::kernels::select::{self, Choice};
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
    println!("chosen: {}", Gpu::new(adapter)?.describe());
    for a in &adapters {
        print_kernels(a);
    }
    Ok(())
}

/// The `Auto` table of one adapter. Each is opened in turn, not just the chosen one: a device costs a fraction of
/// a second, and another adapter's table shows what choosing it would change. One that cannot be opened says why
/// and the rest still print.
fn print_kernels(a: &AdapterSummary) {
    let table = Gpu::new(Some(&a.index.to_string()))
        .and_then(|gpu| Ok((gpu.describe(), select::auto_table(&gpu)?)));
    match table {
        Ok((name, rows)) => {
            println!("kernels on [{}] {name} (Auto):", a.index);
            print_table(&rows);
        }
        Err(e) => println!("kernels on [{}] {}: not opened: {e}", a.index, a.info.name),
    }
}

/// Rows in columns family, case, variant, why, padded to the widest entry (padding counts chars, so × and ≥
/// align).
fn print_table(rows: &[Choice]) {
    let cells = |c: &Choice| {
        [
            c.family.to_string(),
            c.case.clone(),
            c.variant.clone(),
            c.why.clone(),
        ]
    };
    let mut lines = vec![["family", "case", "variant", "why"].map(String::from)];
    lines.extend(rows.iter().map(cells));
    let mut widths = [0; 4];
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for [family, case, variant, why] in &lines {
        println!(
            "  {family:<0$}  {case:<1$}  {variant:<2$}  {why}",
            widths[0], widths[1], widths[2]
        );
    }
}
