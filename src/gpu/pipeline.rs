//! Compute pipelines (compiled once per device, cached) and dispatches (a pipeline with its bind group and
//! workgroup count, built once per fixed workload and recorded as often as needed).

use std::sync::Arc;

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::context::{Gpu, KernelKey};
use crate::gpu::shaders;
use crate::gpu::tensor::Tensor;

/// A compiled entry point and the bindings it uses.
pub struct Kernel {
    pub name: String,
    pub pipeline: wgpu::ComputePipeline,
    /// The group-0 bindings that the entry point statically uses, by ascending binding number.
    pub used_bindings: Vec<UsedBinding>,
}

/// One binding an entry point uses, as declared in its WGSL.
#[derive(Clone, Debug)]
pub struct UsedBinding {
    pub binding: u32,
    /// The WGSL variable name, for messages.
    pub name: String,
    /// A `read_write` storage buffer.
    pub writable: bool,
}

/// The group-0 bindings an entry point uses, read with naga (wgpu's automatic layout keeps exactly these).
fn used_bindings(shader: &str, source: &str, entry: &str) -> Result<Vec<UsedBinding>> {
    let err = |message: String| Error::Shader {
        file: shader.to_string(),
        entry: entry.to_string(),
        message,
    };
    let module = naga::front::wgsl::parse_str(source).map_err(|e| err(e.emit_to_string(source)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .map_err(|e| err(e.emit_to_string(source)))?;
    let index = module
        .entry_points
        .iter()
        .position(|ep| ep.name == entry)
        .ok_or_else(|| err("no such entry point".to_string()))?;
    let function_info = info.get_entry_point(index);
    let mut used: Vec<UsedBinding> = module
        .global_variables
        .iter()
        .filter(|(handle, _)| !function_info[*handle].is_empty())
        .filter_map(|(_, var)| {
            let b = var.binding.as_ref().filter(|b| b.group == 0)?;
            let writable = matches!(
                var.space,
                naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE)
            );
            Some(UsedBinding { binding: b.binding, name: var.name.clone().unwrap_or_default(), writable })
        })
        .collect();
    used.sort_unstable_by_key(|u| u.binding);
    Ok(used)
}

impl Gpu {
    /// The pipeline for `shader`'s `entry`, compiled on first use and cached for the life of the device.
    pub fn kernel(&self, shader: &'static str, entry: &'static str) -> Result<Arc<Kernel>> {
        self.kernel_with(shader, entry, &[])
    }

    /// As [`Gpu::kernel`], with WGSL `override` constants (workgroup sizes, tile sizes).
    pub fn kernel_with(
        &self,
        shader: &'static str,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Kernel>> {
        self.compile(shader, entry, constants, true)
    }

    /// As [`Gpu::kernel_with`], without wgpu's zero-initialisation of workgroup memory. Only for entry points that
    /// write every workgroup-memory element before reading it (their shader header must say so): zeroing costs time
    /// on every dispatch, and on GL it becomes one huge array constructor that Mesa compiles for seconds.
    pub fn kernel_uninit_workgroup(
        &self,
        shader: &'static str,
        entry: &'static str,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Kernel>> {
        self.compile(shader, entry, constants, false)
    }

    fn compile(
        &self,
        shader: &'static str,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        zero_initialize_workgroup_memory: bool,
    ) -> Result<Arc<Kernel>> {
        let key = KernelKey {
            shader,
            entry,
            constants: constants.iter().map(|(n, v)| (*n, v.to_bits())).collect(),
            zero_initialize_workgroup_memory,
        };
        if let Some(k) = self
            .kernels
            .lock()
            .expect("kernel cache poisoned")
            .get(&key)
        {
            return Ok(k.clone());
        }
        let source = match std::env::var_os(shaders::SHADER_DIR_ENV) {
            Some(dir) => shaders::module_source(shader, |name| {
                let path = std::path::Path::new(&dir).join(format!("{name}.wgsl"));
                std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))
            })?,
            None => shaders::module_source(shader, |name| {
                shaders::source(name)
                    .map(str::to_string)
                    .ok_or_else(|| Error::Shader {
                        file: name.to_string(),
                        entry: entry.to_string(),
                        message: "not in the shader table (src/gpu/shaders.rs)".to_string(),
                    })
            })?,
        };
        let source = source.as_str();
        let used = used_bindings(shader, source, entry)?;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let label = format!("{shader}::{entry}");
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader {
                file: shader.to_string(),
                entry: entry.to_string(),
                message: e.to_string(),
            });
        }
        let kernel = Arc::new(Kernel {
            name: label,
            pipeline,
            used_bindings: used,
        });
        self.kernels
            .lock()
            .expect("kernel cache poisoned")
            .insert(key, kernel.clone());
        Ok(kernel)
    }
}

/// One recorded-ready compute dispatch: pipeline, bind group (uniform params at binding 0 plus the tensors),
/// and the workgroup grid. Build once, record every step.
#[derive(Clone)]
pub struct Dispatch {
    pub kernel: Arc<Kernel>,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// The variant choice that produced it, for families with several (src/kernels/select.rs): printed by
    /// `diffuse bench --breakdown` beside the kernel.
    pub choice: Option<&'static str>,
}

impl Dispatch {
    /// This dispatch labelled with the variant choice that produced it.
    pub fn chosen(self, choice: &'static str) -> Dispatch {
        Dispatch {
            choice: Some(choice),
            ..self
        }
    }

    /// As [`Dispatch::chosen`], keeping a label already there (a product inside a convolution keeps its own).
    pub fn chosen_if_unlabelled(self, choice: &'static str) -> Dispatch {
        let choice = self.choice.unwrap_or(choice);
        self.chosen(choice)
    }

    /// Binds `params` as a uniform at binding 0 and each `(binding, tensor)`; bindings the entry point does not use
    /// are left out (wgpu's automatic layout drops them), and a used binding with no tensor is an error.
    pub fn new<P: bytemuck::Pod>(
        gpu: &Gpu,
        kernel: &Arc<Kernel>,
        params: &P,
        tensors: &[(u32, &Tensor)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let limit = gpu.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > limit) {
            return Err(Error::Gpu(format!(
                "{}: grid {workgroups:?} exceeds the adapter's {limit} workgroups per dimension",
                kernel.name
            )));
        }
        let uniform = gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let tensor_of = |used: &UsedBinding| {
            tensors
                .iter()
                .find(|(b, _)| *b == used.binding)
                .map(|(_, t)| *t)
                .ok_or_else(|| {
                    Error::Gpu(format!(
                        "{}: no tensor given for binding {} ({})",
                        kernel.name, used.binding, used.name
                    ))
                })
        };
        // wgpu refuses a dispatch that binds one buffer both read-only and writable (even as disjoint views), and
        // panics when it is recorded: catch it here, naming both variables. Writable bindings may share a buffer.
        let storage = kernel.used_bindings.iter().filter(|u| u.binding != 0);
        for out in storage.clone().filter(|u| u.writable) {
            let out_buffer = tensor_of(out)?.buffer();
            for input in storage.clone().filter(|u| !u.writable) {
                if tensor_of(input)?.buffer() == out_buffer {
                    return Err(Error::Binding {
                        kernel: kernel.name.clone(),
                        message: format!(
                            "output `{}` shares a buffer with input `{}`; give the output a buffer of its own",
                            out.name, input.name
                        ),
                    });
                }
            }
        }
        let mut entries = Vec::with_capacity(kernel.used_bindings.len());
        for used in &kernel.used_bindings {
            let resource = if used.binding == 0 {
                uniform.as_entire_binding()
            } else {
                tensor_of(used)?.binding()
            };
            entries.push(wgpu::BindGroupEntry {
                binding: used.binding,
                resource,
            });
        }
        let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&kernel.name),
            layout: &kernel.pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Ok(Dispatch {
            kernel: kernel.clone(),
            bind_group,
            workgroups,
            choice: None,
        })
    }
}

/// Splits `groups` workgroups into an (x, y) grid within the per-dimension limit. Shaders that use it recover the
/// linear workgroup index as `wg.y * num_workgroups.x + wg.x` and must skip indices past their work.
pub fn grid_1d(groups: u32) -> [u32; 3] {
    const MAX: u32 = 65535;
    if groups <= MAX {
        [groups.max(1), 1, 1]
    } else {
        let y = groups.div_ceil(MAX);
        [groups.div_ceil(y), y, 1]
    }
}

/// Records dispatches into one command encoder; `submit` sends them as one queue submission.
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    encoder: wgpu::CommandEncoder,
}

impl<'g> Recorder<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        let encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("diffuse"),
            });
        Recorder { gpu, encoder }
    }

    /// Records `dispatches` in order, in one compute pass.
    pub fn dispatch<'a>(&mut self, dispatches: impl IntoIterator<Item = &'a Dispatch>) {
        let mut pass = self
            .encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
        for d in dispatches {
            pass.set_pipeline(&d.kernel.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
        }
    }

    /// Copies all of `src` into `dst` (same byte size).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> Result<()> {
        if src.byte_size() != dst.byte_size() {
            return Err(Error::shape(
                "copy",
                format!(
                    "source {:?} and destination {:?} differ in size",
                    src.shape(),
                    dst.shape()
                ),
            ));
        }
        self.encoder.copy_buffer_to_buffer(
            src.buffer(),
            src.byte_offset(),
            dst.buffer(),
            dst.byte_offset(),
            src.byte_size(),
        );
        Ok(())
    }

    pub(crate) fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    pub fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        &mut self.encoder
    }

    pub fn submit(self) -> wgpu::SubmissionIndex {
        self.gpu.queue.submit([self.encoder.finish()])
    }
}

impl Gpu {
    /// Records `dispatches` in one pass, submits once and waits: the simple path for tests and one-off calls.
    pub fn run<'a>(&self, dispatches: impl IntoIterator<Item = &'a Dispatch>) -> Result<()> {
        let mut rec = Recorder::new(self);
        rec.dispatch(dispatches);
        rec.submit();
        self.wait()
    }
}
