//! Reads that do not stall the GPU. A [`PendingRead`] is a copy into a mappable staging buffer, recorded into a
//! submission the host makes anyway (a training step); the buffer is mapped once that submission has finished, and
//! the host picks the values up whenever it next looks, while the GPU keeps running the steps queued after it.
//! `Tensor::read_f32`, by contrast, submits its own copy and waits for the queue to drain.

use crate::error::{Error, Result};
use crate::gpu::future::{self, Receiver};
use crate::gpu::pipeline::Recorder;
use crate::gpu::{Gpu, Tensor};

type MapResult = std::result::Result<(), wgpu::BufferAsyncError>;

/// A buffer the GPU copies into and the host maps to read.
fn staging_buffer(gpu: &Gpu, label: &str, size: u64) -> wgpu::Buffer {
    gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Asks for `staging` to be mapped once the GPU is done with the submissions that write it; the answer arrives
/// on the receiver when the device is polled.
fn request_map(staging: &wgpu::Buffer) -> Receiver<MapResult> {
    future::map(staging, wgpu::MapMode::Read)
}

/// Once mapping reported `mapped`: hands the staging buffer's values to `read`, then unmaps it.
fn read_mapped<T>(
    staging: &wgpu::Buffer,
    mapped: MapResult,
    read: impl FnOnce(&[f32]) -> T,
) -> Result<T> {
    mapped.map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
    let value = read(bytemuck::cast_slice(
        &staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e:?}")))?,
    ));
    staging.unmap();
    Ok(value)
}

/// A read recorded into a submission; its values arrive once the GPU has reached it.
pub struct PendingRead {
    staging: wgpu::Buffer,
    state: MapState,
}

enum MapState {
    /// Recorded, but the submission holding the copy has not been made yet (mapping must follow it).
    Recorded,
    Requested(Receiver<MapResult>),
}

impl Recorder<'_> {
    /// Records a copy of `sources`, one after another, into a new staging buffer, to be read without waiting:
    /// call [`PendingRead::request`] after this recorder's `submit`. The values come back concatenated.
    pub fn read_later(&mut self, sources: &[&Tensor]) -> PendingRead {
        let size = sources.iter().map(|t| t.byte_size()).sum();
        // A few values (the loss, a norm), so no error scope: a failure here reaches `Gpu::check_errors`, which
        // the next poll or wait calls.
        let staging = staging_buffer(self.gpu(), "pending read", size);
        let mut at = 0;
        for src in sources {
            self.encoder().copy_buffer_to_buffer(
                src.buffer(),
                src.byte_offset(),
                &staging,
                at,
                src.byte_size(),
            );
            at += src.byte_size();
        }
        PendingRead {
            staging,
            state: MapState::Recorded,
        }
    }
}

impl PendingRead {
    /// Asks for the staging buffer to be mapped once the GPU is done with the submission that holds the copy.
    /// Must be called after that submission (wgpu refuses to submit work that uses a buffer being mapped).
    pub fn request(&mut self) {
        if let MapState::Recorded = self.state {
            self.state = MapState::Requested(request_map(&self.staging));
        }
    }

    /// The values if the GPU has got there, without waiting; `None` if not yet.
    pub fn try_f32(&mut self, gpu: &Gpu) -> Result<Option<Vec<f32>>> {
        self.request();
        gpu.poll_now()?;
        // The training loop polls here every step: the place an error from its last submissions shows up.
        gpu.check_errors()?;
        let MapState::Requested(rx) = &mut self.state else {
            return Ok(None);
        };
        match rx.try_recv() {
            Ok(Some(mapped)) => self.take(mapped).map(Some),
            Ok(None) => Ok(None),
            Err(_) => Err(Error::Gpu("readback callback lost".into())),
        }
    }

    /// The values, waiting for the GPU to get there.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_f32(self, gpu: &Gpu) -> Result<Vec<f32>> {
        future::block_on(self.wait_f32_async(gpu))
    }

    /// [`PendingRead::wait_f32`], without blocking.
    pub async fn wait_f32_async(mut self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.request();
        gpu.drive(None)?;
        gpu.check_errors()?;
        let MapState::Requested(rx) = std::mem::replace(&mut self.state, MapState::Recorded) else {
            unreachable!("requested above");
        };
        let mapped = future::received(rx, "reading a report back").await?;
        self.take(mapped)
    }

    fn take(&mut self, mapped: MapResult) -> Result<Vec<f32>> {
        read_mapped(&self.staging, mapped, <[f32]>::to_vec)
    }
}

/// A read of the same tensors every step (a data-parallel step's gradient), through staging buffers made once:
/// one per tensor, so no staging buffer is larger than a tensor the adapter already holds.
pub struct StagedRead {
    parts: Vec<(Tensor, wgpu::Buffer)>,
    len: usize,
}

impl StagedRead {
    pub fn new(gpu: &Gpu, sources: &[&Tensor]) -> StagedRead {
        let parts = sources
            .iter()
            .map(|&t| (t.clone(), staging_buffer(gpu, "staged read", t.byte_size())))
            .collect();
        StagedRead {
            parts,
            len: sources.iter().map(|t| t.len()).sum(),
        }
    }

    /// Values read: the sources' lengths summed.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Records the copies into the staging buffers; submit, then [`StagedRead::wait_into`].
    pub fn record(&self, rec: &mut Recorder) {
        for (src, staging) in &self.parts {
            rec.encoder().copy_buffer_to_buffer(
                src.buffer(),
                src.byte_offset(),
                staging,
                0,
                src.byte_size(),
            );
        }
    }

    /// Waits for the submission holding the copies and writes the values, concatenated, to `out[..self.len()]`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait_into(&self, gpu: &Gpu, out: &mut [f32]) -> Result<()> {
        future::block_on(self.wait_into_async(gpu, out))
    }

    /// [`StagedRead::wait_into`], without blocking.
    pub async fn wait_into_async(&self, gpu: &Gpu, out: &mut [f32]) -> Result<()> {
        let receivers: Vec<_> = self
            .parts
            .iter()
            .map(|(_, staging)| request_map(staging))
            .collect();
        gpu.drive(None)?;
        gpu.check_errors()?;
        let mut at = 0;
        for ((src, staging), rx) in self.parts.iter().zip(receivers) {
            let mapped = future::received(rx, "reading the gradient back").await?;
            read_mapped(staging, mapped, |values| {
                out[at..at + src.len()].copy_from_slice(values)
            })?;
            at += src.len();
        }
        Ok(())
    }
}
