//! Compute pipelines (compiled once per device, cached) and dispatches (a pipeline with its bind group and
//! workgroup count, built once per fixed workload and recorded as often as needed).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::context::{Gpu, KernelKey};
use crate::gpu::shaders;
use crate::gpu::tensor::Tensor;

/// A compiled entry point and what its WGSL declares, read with naga.
pub struct Kernel {
    pub name: String,
    pub pipeline: wgpu::ComputePipeline,
    /// The group-0 bindings that the entry point statically uses, by ascending binding number.
    pub used_bindings: Vec<UsedBinding>,
    /// The names of every group-0 variable the module declares: what a dispatch may name.
    pub declared: Vec<String>,
    /// The byte size of the module's uniform (its `Params`) in WGSL's layout, if it declares one.
    pub uniform_size: Option<u64>,
    /// The entry point's workgroup size as its WGSL declares it (with the pipeline constants applied): the one
    /// place it is written; grids are computed from it ([`Kernel::grid_for`]).
    pub workgroup_size: [u32; 3],
}

impl Kernel {
    /// Invocations per workgroup.
    pub fn invocations(&self) -> usize {
        self.workgroup_size.iter().map(|&d| d as usize).product()
    }

    /// Refuses a kernel whose workgroup is not the `invocations` its wrapper sizes a reduction for (a Rust
    /// constant that must agree with the WGSL).
    pub fn check_invocations(&self, invocations: usize) -> Result<()> {
        if self.invocations() != invocations {
            return Err(Error::Binding {
                kernel: self.name.clone(),
                message: format!(
                    "the wrapper sizes its reduction for workgroups of {invocations} but the shader declares {}",
                    self.invocations()
                ),
            });
        }
        Ok(())
    }

    /// The workgroups that give each of `items` one invocation.
    pub fn workgroups_for(&self, items: usize) -> u32 {
        items.div_ceil(self.invocations()) as u32
    }

    /// [`Kernel::workgroups_for`] as a grid, 2-D where one dimension is not enough (see [`grid_1d`]).
    pub fn grid_for(&self, items: usize) -> [u32; 3] {
        grid_1d(self.workgroups_for(items))
    }
}

/// One binding an entry point uses, as declared in its WGSL.
#[derive(Clone, Debug)]
pub struct UsedBinding {
    pub binding: u32,
    /// The WGSL variable name: what a dispatch binds a tensor by.
    pub name: String,
    /// A `read_write` storage buffer.
    pub writable: bool,
    /// The uniform buffer, which the dispatch fills with its params.
    pub uniform: bool,
}

/// What [`Kernel`] records of a module and one of its entry points.
struct Reflection {
    used: Vec<UsedBinding>,
    declared: Vec<String>,
    uniform_size: Option<u64>,
    workgroup_size: [u32; 3],
}

/// The group-0 bindings an entry point uses (wgpu's automatic layout keeps exactly these), every group-0 name the
/// module declares, the size of its uniform and the entry point's workgroup size under `constants`, read with naga.
fn reflect(
    shader: &str,
    source: &str,
    entry: &str,
    constants: &[(&'static str, f64)],
) -> Result<Reflection> {
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
    let mut layouter = naga::proc::Layouter::default();
    layouter
        .update(module.to_ctx())
        .map_err(|e| err(e.to_string()))?;
    let function_info = info.get_entry_point(index);
    let group0 = || {
        module
            .global_variables
            .iter()
            .filter(|(_, var)| var.binding.as_ref().is_some_and(|b| b.group == 0))
    };
    let mut used: Vec<UsedBinding> = group0()
        .filter(|(handle, _)| !function_info[*handle].is_empty())
        .map(|(_, var)| UsedBinding {
            binding: var.binding.as_ref().expect("group 0").binding,
            name: var.name.clone().unwrap_or_default(),
            writable: matches!(
                var.space,
                naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE)
            ),
            uniform: var.space == naga::AddressSpace::Uniform,
        })
        .collect();
    used.sort_unstable_by_key(|u| u.binding);
    let declared = group0()
        .map(|(_, var)| var.name.clone().unwrap_or_default())
        .collect();
    let uniform_size = group0()
        .find(|(_, var)| var.space == naga::AddressSpace::Uniform)
        .map(|(_, var)| u64::from(layouter[var.ty].size));
    // A workgroup size set by an override is known once the pipeline constants are applied.
    let mut values = naga::back::PipelineConstants::default();
    for (name, value) in constants {
        values.insert(name.to_string(), *value);
    }
    let stage = module.entry_points[index].stage;
    let (resolved, _) = naga::back::pipeline_constants::process_overrides(
        &module,
        &info,
        Some((stage, entry)),
        &values,
    )
    .map_err(|e| err(format!("pipeline constants: {e}")))?;
    let workgroup_size = resolved
        .entry_points
        .iter()
        .find(|ep| ep.name == entry)
        .map(|ep| ep.workgroup_size)
        .ok_or_else(|| err("no such entry point after the pipeline constants".to_string()))?;
    Ok(Reflection {
        used,
        declared,
        uniform_size,
        workgroup_size,
    })
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

    /// As [`Gpu::kernel`] for an entry point whose workgroup size is the override `WG`: `invocations` is the
    /// wrapper's constant, the one place that size is written (for reductions whose Rust side sizes its partial
    /// sums and error bounds by it).
    pub fn kernel_sized(
        &self,
        shader: &'static str,
        entry: &'static str,
        invocations: usize,
    ) -> Result<Arc<Kernel>> {
        self.kernel_with(shader, entry, &[("WG", invocations as f64)])
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
        let source = load_source(shader, entry)?;
        let source = source.as_str();
        let reflection = reflect(shader, source, entry, constants)?;
        let label = format!("{shader}::{entry}");
        let pipeline = self.create_pipeline(
            shader,
            entry,
            &label,
            source,
            constants,
            zero_initialize_workgroup_memory,
        )?;
        let kernel = Arc::new(Kernel {
            name: label,
            pipeline,
            used_bindings: reflection.used,
            declared: reflection.declared,
            uniform_size: reflection.uniform_size,
            workgroup_size: reflection.workgroup_size,
        });
        self.kernels
            .lock()
            .expect("kernel cache poisoned")
            .insert(key, kernel.clone());
        Ok(kernel)
    }

    /// Builds the pipeline of one entry point, turning wgpu's validation errors into [`Error::Shader`] (natively;
    /// a browser reports them to the scope `Gpu::build_async` opens).
    fn create_pipeline(
        &self,
        shader: &'static str,
        entry: &'static str,
        label: &str,
        source: &str,
        constants: &[(&'static str, f64)],
        zero_initialize_workgroup_memory: bool,
    ) -> Result<wgpu::ComputePipeline> {
        // Native only: a browser answers a scope from its event loop (`Gpu::build_async` scopes a whole build).
        #[cfg(not(target_arch = "wasm32"))]
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        // wgpu hands WGSL to a browser's compiler untouched: the browser's copy is made here.
        #[cfg(target_arch = "wasm32")]
        let source = &shaders::for_browser(shader, source);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(shader),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: None,
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory,
                },
                cache: None,
            });
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(e) = crate::gpu::future::block_on(scope.pop()) {
            return Err(Error::Shader {
                file: shader.to_string(),
                entry: entry.to_string(),
                message: e.to_string(),
            });
        }
        Ok(pipeline)
    }
}

/// The WGSL of `shader`, imports resolved: from the folder [`shaders::SHADER_DIR_ENV`] names when it is set (to
/// edit shaders without rebuilding), else from the compiled-in table.
fn load_source(shader: &'static str, entry: &'static str) -> Result<String> {
    match std::env::var_os(shaders::SHADER_DIR_ENV) {
        Some(dir) => shaders::module_source(shader, |name| {
            let path = std::path::Path::new(&dir).join(format!("{name}.wgsl"));
            std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))
        }),
        None => shaders::module_source(shader, |name| {
            shaders::source(name)
                .map(str::to_string)
                .ok_or_else(|| Error::Shader {
                    file: name.to_string(),
                    entry: entry.to_string(),
                    message: "not in the shader table (src/gpu/shaders.rs)".to_string(),
                })
        }),
    }
}

fn refuse(kernel: &Kernel, message: String) -> Error {
    Error::Binding {
        kernel: kernel.name.clone(),
        message,
    }
}

/// The tensor given for the shader variable `used`.
fn tensor_for<'t>(
    kernel: &Kernel,
    tensors: &[(&str, &'t Tensor)],
    used: &UsedBinding,
) -> Result<&'t Tensor> {
    let found = tensors.iter().find(|(name, _)| *name == used.name);
    found.map(|(_, t)| *t).ok_or_else(|| {
        let message = format!(
            "no tensor given for `{}` (binding {})",
            used.name, used.binding
        );
        refuse(kernel, message)
    })
}

/// Refuses a call the kernel cannot take: a grid over the adapter's limit, a tensor for a variable the shader does
/// not declare, params whose size is not the WGSL uniform's.
fn check_call(
    gpu: &Gpu,
    kernel: &Kernel,
    params_size: u64,
    tensors: &[(&str, &Tensor)],
    workgroups: [u32; 3],
) -> Result<()> {
    let limit = gpu.limits.max_compute_workgroups_per_dimension;
    if workgroups.iter().any(|&w| w > limit) {
        return Err(Error::Gpu(format!(
            "{}: grid {workgroups:?} exceeds the adapter's {limit} workgroups per dimension",
            kernel.name
        )));
    }
    if let Some((name, _)) = tensors
        .iter()
        .find(|(name, _)| !kernel.declared.iter().any(|d| d == name))
    {
        return Err(refuse(
            kernel,
            format!(
                "the shader declares no variable `{name}` (it declares {})",
                kernel.declared.join(", ")
            ),
        ));
    }
    match kernel.uniform_size.filter(|&size| size != params_size) {
        Some(size) => Err(refuse(
            kernel,
            format!(
                "the params are {params_size} bytes but the WGSL uniform is {size}: the Rust struct and its WGSL \
                 twin differ"
            ),
        )),
        None => Ok(()),
    }
}

/// wgpu refuses a dispatch that binds one buffer both read-only and writable (even as disjoint views), and panics
/// when it is recorded: caught here, naming both variables. Writable bindings may share a buffer.
fn check_aliasing(kernel: &Kernel, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let storage = kernel.used_bindings.iter().filter(|u| !u.uniform);
    for out in storage.clone().filter(|u| u.writable) {
        let out_buffer = tensor_for(kernel, tensors, out)?.buffer();
        for input in storage.clone().filter(|u| !u.writable) {
            if tensor_for(kernel, tensors, input)?.buffer() == out_buffer {
                return Err(refuse(
                    kernel,
                    format!(
                        "output `{}` shares a buffer with input `{}`; give the output a buffer of its own",
                        out.name, input.name
                    ),
                ));
            }
        }
    }
    Ok(())
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
    /// The storage buffers it binds, the bytes it binds of each, and whether each is a shared workspace, for
    /// [`footprint`].
    buffers: Vec<(wgpu::Buffer, u64, bool)>,
}

/// The GPU memory a list of dispatches needs: every distinct storage buffer they bind, counted once, at the most any
/// of them binds of it (a shared workspace may be larger than this workload asks of it, from an earlier one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    pub bytes: u64,
    /// The largest single buffer (what the per-binding limit applies to).
    pub largest: u64,
}

// wgpu::Buffer hashes and compares by its id, which never changes: its interior mutability is not in the key.
#[allow(clippy::mutable_key_type)]
pub fn footprint<'a>(dispatches: impl IntoIterator<Item = &'a Dispatch>) -> Footprint {
    let mut used = std::collections::HashMap::new();
    for (b, bytes, _) in dispatches.into_iter().flat_map(|d| &d.buffers) {
        let most = used.entry(b.clone()).or_insert(0);
        *most = (*most).max(*bytes);
    }
    Footprint {
        bytes: used.values().sum(),
        largest: used.values().copied().max().unwrap_or(0),
    }
}

/// One buffer of a workload at batch 1 and at batch 2.
#[derive(Clone, Copy, Debug)]
pub struct BufferGrowth {
    pub at_one: u64,
    pub at_two: u64,
    /// A shared workspace: its users choose variants that fit one binding.
    pub workspace: bool,
}

/// Every distinct buffer of one workload built at batch 1 (`one`) and at batch 2 (`two`), paired by where they are
/// bound. None where the two lists differ in kernels or bindings (a variant chosen by the batch size), so that no
/// buffer can be paired.
#[allow(clippy::mutable_key_type)] // as in `footprint`
pub fn buffer_growth(one: &[Dispatch], two: &[Dispatch]) -> Option<Vec<BufferGrowth>> {
    if one.len() != two.len() {
        return None;
    }
    let mut pairs = std::collections::HashMap::new();
    for (a, b) in one.iter().zip(two) {
        if a.kernel.name != b.kernel.name || a.buffers.len() != b.buffers.len() {
            return None;
        }
        for ((_, x, _), (buffer, y, workspace)) in a.buffers.iter().zip(&b.buffers) {
            let most = pairs.entry(buffer.clone()).or_insert(BufferGrowth {
                at_one: 0,
                at_two: 0,
                workspace: *workspace,
            });
            most.at_one = most.at_one.max(*x);
            most.at_two = most.at_two.max(*y);
        }
    }
    Some(pairs.into_values().collect())
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

    /// Binds `params` as the kernel's uniform and each `(name, tensor)` to the WGSL variable of that name; the
    /// variables the entry point does not use are left out (wgpu's automatic layout drops them). Refused: a name
    /// the module does not declare, a used variable with no tensor, params whose size differs from the WGSL
    /// uniform's, an output sharing a buffer with an input, a grid past the adapter's limit.
    pub fn new<P: bytemuck::Pod>(
        gpu: &Gpu,
        kernel: &Arc<Kernel>,
        params: &P,
        tensors: &[(&str, &Tensor)],
        workgroups: [u32; 3],
    ) -> Result<Dispatch> {
        let params_size = std::mem::size_of::<P>() as u64;
        check_call(gpu, kernel, params_size, tensors, workgroups)?;
        check_aliasing(kernel, tensors)?;
        let uniform = gpu.create_buffer_init(
            "uniform params",
            &[params_size as usize / 4],
            bytemuck::bytes_of(params),
            wgpu::BufferUsages::UNIFORM,
        )?;
        let mut entries = Vec::with_capacity(kernel.used_bindings.len());
        let mut buffers = Vec::new();
        for used in &kernel.used_bindings {
            let resource = if used.uniform {
                uniform.as_entire_binding()
            } else {
                let t = tensor_for(kernel, tensors, used)?;
                buffers.push((t.buffer().clone(), t.byte_size(), t.workspace));
                t.binding()
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
            buffers,
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
        self.gpu.submit([self.encoder.finish()])
    }
}

impl Gpu {
    /// Records `dispatches` in one pass, submits once and waits: the simple path for tests and one-off calls.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run<'a>(&self, dispatches: impl IntoIterator<Item = &'a Dispatch>) -> Result<()> {
        crate::gpu::future::block_on(self.run_async(dispatches))
    }

    /// [`Gpu::run`], without blocking.
    pub async fn run_async<'a>(
        &self,
        dispatches: impl IntoIterator<Item = &'a Dispatch>,
    ) -> Result<()> {
        let mut rec = Recorder::new(self);
        rec.dispatch(dispatches);
        rec.submit();
        self.idle().await
    }
}
