//! The headless GPU context: adapter choice, device, queue, and the pipeline cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::future::block_on;
use crate::gpu::future::{oneshot, received, Receiver};
use crate::gpu::pipeline::Kernel;
use crate::gpu::{DType, Tensor};

/// Environment variable that picks an adapter by index or name substring (same as `--adapter`).
pub const ADAPTER_ENV: &str = "DIFFUSE_ADAPTER";

/// Environment variable that makes `Auto` choose kernels as for another kind of adapter (see [`Tuning`]): `gpu`,
/// `cpu` or `auto` (the adapter's own kind, the default).
pub const TUNING_ENV: &str = "DIFFUSE_TUNING";

/// Whose kernels `Auto` takes (`kernels::select`): those measured fastest on CPU adapters (lavapipe, llvmpipe), or
/// those meant for GPUs. The adapter's kind decides, unless [`TUNING_ENV`] or [`Gpu::with_tuning`] says otherwise:
/// how a CPU adapter runs and tests the GPU path whole (a training step, `diffuse bench`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    Cpu,
    Gpu,
}

impl Tuning {
    fn for_adapter(info: &wgpu::AdapterInfo) -> Result<Tuning> {
        let own = match info.device_type {
            wgpu::DeviceType::Cpu => Tuning::Cpu,
            _ => Tuning::Gpu,
        };
        match std::env::var(TUNING_ENV).ok().as_deref().map(str::trim) {
            None | Some("" | "auto") => Ok(own),
            Some("cpu") => Ok(Tuning::Cpu),
            Some("gpu") => Ok(Tuning::Gpu),
            Some(other) => Err(Error::Usage(format!(
                "{TUNING_ENV}={other:?}: expected auto (the adapter's kind), cpu or gpu"
            ))),
        }
    }
}

/// What the kernels may use beyond WebGPU's baseline, read off the opened device.
#[derive(Clone, Debug)]
pub struct Capabilities {
    pub timestamps: bool,
    pub timestamps_inside_passes: bool,
    pub subgroups: bool,
    pub f16: bool,
}

/// One adapter as `diffuse info` shows it.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub index: usize,
    pub info: wgpu::AdapterInfo,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
}

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub caps: Capabilities,
    /// Whose kernels `Auto` takes on this device.
    pub tuning: Tuning,
    pub(crate) kernels: Mutex<HashMap<KernelKey, Arc<Kernel>>>,
    /// Bytes of every tensor created on this device so far (uniform and transient readback buffers excluded):
    /// what a fixed workload allocates, since nothing is allocated per step.
    pub(crate) allocated: std::sync::atomic::AtomicU64,
    /// Queue submissions made through [`Gpu::submit`] so far (every submission diffuse makes goes through it).
    submissions: std::sync::atomic::AtomicU64,
    /// Errors no error scope caught, kept for [`Gpu::check_errors`] (see `Gpu::open`).
    uncaptured: Arc<Mutex<Uncaptured>>,
    /// Shared scratch tensors by slot name (see [`Gpu::workspace`]).
    workspaces: Mutex<HashMap<&'static str, Tensor>>,
    /// Why the device was lost, once it is (see [`Gpu::lost`]).
    lost: Arc<Mutex<Option<String>>>,
}

/// The first error wgpu reported outside any error scope, and how many followed it (an invalid object makes every
/// later use of it fail too, so the first is the one that explains the rest).
#[derive(Default)]
struct Uncaptured {
    first: Option<Reported>,
    later: usize,
}

/// An error as wgpu reported it, kept as text: wgpu's own error is not `Send` on wasm32, and the handler that
/// keeps it must be.
enum Reported {
    OutOfMemory,
    Other(String),
}

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub(crate) struct KernelKey {
    pub shader: &'static str,
    pub entry: &'static str,
    /// Override constants, as (name, value bits).
    pub constants: Vec<(&'static str, u64)>,
    pub zero_initialize_workgroup_memory: bool,
}

/// An instance over `backends`, unless WGPU_BACKEND names others (the other WGPU_* variables are honoured too).
fn instance(backends: wgpu::Backends) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    wgpu::Instance::new(desc.with_env())
}

fn backends_tried() -> String {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all())
        & wgpu::Instance::enabled_backend_features();
    format!("{backends:?}")
}

/// Every adapter wgpu can see, in enumeration order (the order `--adapter N` indexes).
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Vec<AdapterSummary> {
    block_on(list_adapters_async())
}

/// [`list_adapters`], without blocking.
pub async fn list_adapters_async() -> Vec<AdapterSummary> {
    enumerate()
        .await
        .into_iter()
        .enumerate()
        .map(|(index, a)| AdapterSummary {
            index,
            info: a.get_info(),
            features: a.features(),
            limits: a.limits(),
        })
        .collect()
}

/// The adapters of `backends`: Vulkan/Metal/DX12 ones first, then GL, so indices stay stable.
async fn enumerate_backends(
    instance: &wgpu::Instance,
    backends: wgpu::Backends,
) -> Vec<wgpu::Adapter> {
    let mut adapters = instance
        .enumerate_adapters(backends & wgpu::Backends::PRIMARY)
        .await;
    adapters.extend(
        instance
            .enumerate_adapters(backends - wgpu::Backends::PRIMARY)
            .await,
    );
    adapters
}

async fn enumerate() -> Vec<wgpu::Adapter> {
    enumerate_backends(&instance(wgpu::Backends::all()), wgpu::Backends::all()).await
}

/// Higher is preferred: a discrete GPU first, a software rasteriser last; Vulkan/Metal/DX12 before GL.
fn preference(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 1,
        wgpu::DeviceType::Other => 0,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 1,
        _ => 0,
    };
    (kind, backend)
}

/// Picks the adapter named by `wanted` (an index or a case-insensitive name substring), else the preferred one:
/// the `nth` (modulo their count) of the adapters of the preferred kind, in enumeration order.
fn choose(adapters: Vec<wgpu::Adapter>, wanted: Option<&str>, nth: usize) -> Result<wgpu::Adapter> {
    if adapters.is_empty() {
        return Err(Error::NoAdapter {
            backends: backends_tried(),
        });
    }
    let Some(wanted) = wanted.map(str::trim).filter(|w| !w.is_empty()) else {
        let best = adapters
            .iter()
            .map(|a| preference(&a.get_info()))
            .max()
            .expect("adapters is not empty");
        let mut preferred: Vec<wgpu::Adapter> = adapters
            .into_iter()
            .filter(|a| preference(&a.get_info()) == best)
            .collect();
        let pick = nth % preferred.len();
        return Ok(preferred.swap_remove(pick));
    };
    let available = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let info = a.get_info();
            format!(
                "  [{i}] {} ({:?}, {:?})",
                info.name, info.backend, info.device_type
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let found = match wanted.parse::<usize>() {
        Ok(index) => adapters.into_iter().nth(index),
        Err(_) => {
            let needle = wanted.to_lowercase();
            adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&needle))
        }
    };
    found.ok_or_else(|| Error::AdapterNotFound {
        wanted: wanted.to_string(),
        available,
    })
}

/// The limits to ask of an adapter offering `offered`: WebGPU's defaults, which every adapter honours and the
/// kernels are written to fit, with only buffer sizes raised to what the adapter offers so that large tensors fit
/// where the hardware allows. An adapter below a default is refused, naming the limit.
fn device_limits(info: &wgpu::AdapterInfo, offered: &wgpu::Limits) -> Result<wgpu::Limits> {
    let defaults = wgpu::Limits::default();
    for (what, have, need) in [
        (
            "storage buffers per shader stage",
            offered.max_storage_buffers_per_shader_stage,
            defaults.max_storage_buffers_per_shader_stage,
        ),
        (
            "workgroup memory (bytes)",
            offered.max_compute_workgroup_storage_size,
            defaults.max_compute_workgroup_storage_size,
        ),
        (
            "invocations per workgroup",
            offered.max_compute_invocations_per_workgroup,
            defaults.max_compute_invocations_per_workgroup,
        ),
    ] {
        if have < need {
            return Err(Error::RequestDevice {
                adapter: info.name.clone(),
                message: format!(
                    "it offers {have} {what}; diffuse needs {need} (WebGPU's default)"
                ),
            });
        }
    }
    Ok(wgpu::Limits {
        max_storage_buffer_binding_size: offered.max_storage_buffer_binding_size,
        max_buffer_size: offered.max_buffer_size,
        ..defaults
    })
}

/// wgpu's default handler panics on any error outside an error scope, from whichever call reported it. Recording
/// it instead lets the next wait (or poll of a pending read) return it as an Error, on the thread that asked for
/// results and with this process's context, so `main` prints it and exits non-zero.
fn record_uncaptured(device: &wgpu::Device) -> Arc<Mutex<Uncaptured>> {
    let uncaptured = Arc::new(Mutex::new(Uncaptured::default()));
    let sink = uncaptured.clone();
    device.on_uncaptured_error(Arc::new(move |error| {
        let mut sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match sink.first {
            None => {
                sink.first = Some(match error {
                    wgpu::Error::OutOfMemory { .. } => Reported::OutOfMemory,
                    other => Reported::Other(other.to_string().trim_end().to_string()),
                })
            }
            Some(_) => sink.later += 1,
        }
    }));
    uncaptured
}

/// Keeps the reason the device was lost, for [`Gpu::lost`] (a destroyed device, when the Gpu is dropped, is
/// not a loss to report).
fn record_lost(device: &wgpu::Device) -> Arc<Mutex<Option<String>>> {
    let lost = Arc::new(Mutex::new(None));
    let sink = lost.clone();
    device.set_device_lost_callback(move |reason, message| {
        if reason != wgpu::DeviceLostReason::Destroyed {
            let mut sink = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            *sink = Some(format!("the GPU device was lost ({reason:?}): {message}"));
        }
    });
    lost
}

impl Gpu {
    /// Opens the adapter chosen by `adapter` (index or name substring), else by DIFFUSE_ADAPTER, else the preferred one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(adapter: Option<&str>) -> Result<Gpu> {
        block_on(Self::open_async(adapter, 0))
    }

    /// As [`Gpu::new`], for the `local_rank`-th process of a data-parallel run on this machine: without a choice
    /// it takes the `local_rank`-th adapter of the preferred kind (one GPU per rank), wrapping around where the
    /// machine has fewer.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn for_local_rank(adapter: Option<&str>, local_rank: usize) -> Result<Gpu> {
        block_on(Self::open_async(adapter, local_rank))
    }

    /// [`Gpu::for_local_rank`], without blocking (a browser's one adapter, where there is no choice to make).
    pub async fn open_async(adapter: Option<&str>, local_rank: usize) -> Result<Gpu> {
        let from_env = std::env::var(ADAPTER_ENV).ok();
        let wanted = adapter
            .or(from_env.as_deref())
            .filter(|w| !w.trim().is_empty());
        let adapters = if wanted.is_some() {
            enumerate().await
        } else {
            // Start GL (wgpu's fallback, through EGL) only where no Vulkan/Metal/DX12 adapter exists.
            let all = wgpu::Backends::all();
            let primary = enumerate_backends(&instance(wgpu::Backends::PRIMARY), all).await;
            if primary.is_empty() {
                enumerate_backends(&instance(wgpu::Backends::SECONDARY), all).await
            } else {
                primary
            }
        };
        let adapter = choose(adapters, wanted, local_rank)?;
        Self::open(adapter).await
    }

    async fn open(adapter: wgpu::Adapter) -> Result<Gpu> {
        let info = adapter.get_info();
        let tuning = Tuning::for_adapter(&info)?;
        let features = adapter.features();
        let limits = device_limits(&info, &adapter.limits())?;
        let optional = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_F16;
        let required_features = features & optional;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("diffuse"),
                required_features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;

        let uncaptured = record_uncaptured(&device);
        let lost = record_lost(&device);
        let caps = Capabilities {
            timestamps: required_features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamps_inside_passes: required_features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            subgroups: required_features.contains(wgpu::Features::SUBGROUP),
            f16: required_features.contains(wgpu::Features::SHADER_F16),
        };
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            caps,
            tuning,
            kernels: Mutex::new(HashMap::new()),
            allocated: std::sync::atomic::AtomicU64::new(0),
            submissions: std::sync::atomic::AtomicU64::new(0),
            uncaptured,
            workspaces: Mutex::new(HashMap::new()),
            lost,
        })
    }

    /// This device with `Auto` taking `tuning`'s kernels (before anything is recorded on it: what was recorded
    /// keeps the kernels chosen then).
    pub fn with_tuning(mut self, tuning: Tuning) -> Gpu {
        self.tuning = tuning;
        self
    }

    /// Why the device was lost (a driver reset, a browser reclaiming the GPU, a tab in the background too long),
    /// once it has been: every later use of it fails, and a front end should offer the last checkpoint.
    pub fn lost(&self) -> Option<String> {
        self.lost
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// "name (backend, device type)", for headers and messages.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    /// Bytes of tensors and uniform buffers created on this device so far.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Submits `commands` to the queue as one submission and counts it: every submission diffuse makes goes
    /// through here, so [`Gpu::submissions`] is what the "one submission per training step" test reads.
    pub fn submit(
        &self,
        commands: impl IntoIterator<Item = wgpu::CommandBuffer>,
    ) -> wgpu::SubmissionIndex {
        self.submissions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.queue.submit(commands)
    }

    /// Queue submissions made on this device so far (see [`Gpu::submit`]).
    pub fn submissions(&self) -> u64 {
        self.submissions.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_allocation(&self, bytes: u64) {
        self.allocated
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// An f32 tensor of `shape` in the workspace `slot`: scratch memory shared by every operation that asks for
    /// the same slot, instead of a buffer of its own per recorded operation (the Winograd convolutions' transformed
    /// tiles are several times the size of the activations, once per convolution of a training step). Sound only
    /// for scratch that an operation writes and then reads within its own dispatches, never keeping anything in
    /// it from one recording to the next: dispatches run in the order they are recorded, so another operation's
    /// use can only come before the write or after the last read. The slot's buffer is replaced by a larger one
    /// when an operation needs more (operations recorded earlier keep the old one alive).
    pub(crate) fn workspace(&self, slot: &'static str, shape: &[usize]) -> Result<Tensor> {
        let len: usize = shape.iter().product();
        let mut workspaces = self.workspaces.lock().expect("workspace table poisoned");
        let tensor = match workspaces.get(slot) {
            Some(t) if t.len() >= len => t.clone(),
            _ => {
                let t = Tensor::zeros(self, &[len.max(1)], DType::F32)?;
                workspaces.insert(slot, t.clone());
                t
            }
        };
        let mut view = tensor.view(self, 0, shape)?;
        view.workspace = true;
        Ok(view)
    }

    /// Blocks until all submitted work has finished, then returns any error the GPU reported meanwhile.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        block_on(self.idle())
    }

    /// [`Gpu::wait`], without blocking.
    pub async fn idle(&self) -> Result<()> {
        let done = self.fence();
        self.drive(None)?;
        received(done, "waiting for the GPU").await?;
        self.check_errors()
    }

    /// A future that completes once every submission made so far has finished (a fence: nothing is read back).
    pub fn fence(&self) -> Receiver<()> {
        let (tx, rx) = oneshot();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        rx
    }

    /// Native backends: blocks until `submission` (None: all work) has finished and runs the callbacks it
    /// completes. A browser runs them from its event loop, once the page yields: there this does nothing.
    pub fn drive(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let poll = match submission {
            Some(index) => wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            },
            None => wgpu::PollType::wait_indefinitely(),
        };
        self.device
            .poll(poll)
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))
    }

    /// Native backends: runs the callbacks of the work finished so far, without waiting.
    pub fn poll_now(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Poll)
            .map(|_| ())
            .map_err(|e| Error::Gpu(format!("polling the GPU: {e}")))
    }

    /// The first error wgpu reported outside an error scope since the last check, as an Error (and forgets it).
    pub fn check_errors(&self) -> Result<()> {
        let mut recorded = self
            .uncaptured
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let later = std::mem::take(&mut recorded.later);
        let Some(error) = recorded.first.take() else {
            return match self.lost() {
                Some(why) => Err(Error::Gpu(why)),
                None => Ok(()),
            };
        };
        let also = match later {
            0 => String::new(),
            1 => " (1 later error followed, most likely caused by this one)".to_string(),
            n => format!(" ({n} later errors followed, most likely caused by this one)"),
        };
        Err(match error {
            Reported::OutOfMemory => Error::Gpu(format!(
                "the GPU ran out of memory{also}, with {} of tensors allocated by this process. {}",
                crate::error::human_bytes(&self.allocated_bytes()),
                crate::error::OUT_OF_MEMORY_HINT
            )),
            Reported::Other(message) => Error::Gpu(format!("{message}{also}")),
        })
    }
}
