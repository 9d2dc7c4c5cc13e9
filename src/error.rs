//! Every message a user can see. Each variant carries the values needed to act on it.

use thiserror::Error;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    #[error(
        "no GPU adapter found (backends tried: {backends}).\n\
         On headless Linux install Mesa's software Vulkan driver: `apt-get install -y mesa-vulkan-drivers`.\n\
         To pick a backend set WGPU_BACKEND (vulkan, metal, dx12, gl); `diffuse info` lists the adapters."
    )]
    NoAdapter { backends: String },

    #[error("no GPU adapter matches {wanted:?}; the adapters are:\n{available}\nChoose one by index or by a part of its name (`--adapter` or DIFFUSE_ADAPTER).")]
    AdapterNotFound { wanted: String, available: String },

    #[error("the adapter {adapter:?} refused to open a device: {message}")]
    RequestDevice { adapter: String, message: String },

    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },

    #[error("shader {file}.wgsl, entry point {entry}: {message}")]
    Shader {
        file: String,
        entry: String,
        message: String,
    },

    #[error("{kernel}: {message}")]
    Binding { kernel: String, message: String },

    #[error("GPU error: {0}")]
    Gpu(String),

    #[error(
        "out of GPU memory allocating {what} {shape:?}: {bytes} bytes ({}), with {} already allocated by this \
         process. {hint}",
        human_bytes(.bytes),
        human_bytes(.allocated),
        hint = OUT_OF_MEMORY_HINT
    )]
    OutOfMemory {
        what: String,
        shape: Vec<usize>,
        bytes: u64,
        /// What this process had allocated before (`Gpu::allocated_bytes`).
        allocated: u64,
    },

    #[error("{0}")]
    Usage(String),

    #[error(
        "the ranks' copies of the model differ at step {step} ({checksums}): they no longer train one model, so \
         nothing was saved from this state. Every rank must run the same build with the same arguments, data and \
         checkpoint; resume from the last checkpoint, and if it happens again suspect a faulty GPU or host"
    )]
    ReplicasDiffer { step: u64, checksums: String },

    #[error(
        "training diverged at step {step}: the loss is {loss}. Nothing was saved from this run's last stretch; \
         lower the learning rate (--lr) or keep gradient clipping on, and resume from the last checkpoint"
    )]
    Diverged { step: u64, loss: f64 },

    #[error(
        "{what} at step {step} hold non-finite values (NaN or ±∞, or too large to square in f32): refusing to save \
         or sample them, so the checkpoint on disk is still the last good one. Lower the learning rate (--lr), keep \
         gradient clipping on (--clip), and resume from that checkpoint"
    )]
    NonFiniteWeights { step: u64, what: &'static str },

    #[error(
        "{what}: {count} of {total} sample values are not finite (NaN or ±∞), so nothing was written; the model's \
         weights or the sampler's settings are broken (try another --sampler, fewer --guidance, or --raw-weights)"
    )]
    NonFiniteSamples {
        what: String,
        count: usize,
        total: usize,
    },

    #[error("{path}: {message}")]
    Data { path: String, message: String },

    /// Work given a stop check ([`crate::sample::Batched::stop`]) that ended early because it was asked to.
    #[error("{0} stopped on request")]
    Stopped(&'static str),

    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What to do when the GPU runs out of memory: every allocation's size grows with the batch and the model.
pub const OUT_OF_MEMORY_HINT: &str = "To fit, give --memory-budget (GB) below what the GPU has, so that training \
     splits each batch into micro-batches that fit (or sampling lowers --batch); or lower --batch and keep the \
     effective batch with --grad-accum; or use a smaller --preset (or fewer --base-channels)";

/// `bytes` as "1.50 GiB" (binary units, as GPU memory is quoted); below 1 KiB as "12 bytes".
pub fn human_bytes(bytes: &u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if *bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = *bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

impl Error {
    /// A problem with a dataset file or folder; `message` says what was wrong and what to do.
    pub fn data(path: impl AsRef<std::path::Path>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.as_ref().display().to_string(),
            message: message.into(),
        }
    }

    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }

    /// A shape or argument mistake in a call to the kernel library.
    pub fn shape(op: &'static str, message: impl Into<String>) -> Self {
        Error::Shape {
            op,
            message: message.into(),
        }
    }
}

/// Returns `Err(Error::Shape)` with the formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure_shape {
    ($cond:expr, $op:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::error::Error::shape($op, format!($($fmt)+)));
        }
    };
}
