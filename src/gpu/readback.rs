//! Reads that do not stall the GPU. A [`PendingRead`] is a copy into a mappable staging buffer, recorded into a
//! submission the host makes anyway (a training step); the buffer is mapped once that submission has finished, and
//! the host picks the values up whenever it next looks, while the GPU keeps running the steps queued after it.
//! `Tensor::read_f32`, by contrast, submits its own copy and waits for the queue to drain.

use std::sync::mpsc::{channel, Receiver, TryRecvError};

use crate::error::{Error, Result};
use crate::gpu::pipeline::Recorder;
use crate::gpu::{Gpu, Tensor};

type MapResult = std::result::Result<(), wgpu::BufferAsyncError>;

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
        let staging = self.gpu().device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("pending read"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
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
            let (tx, rx) = channel();
            self.staging
                .slice(..)
                .map_async(wgpu::MapMode::Read, move |r| {
                    let _ = tx.send(r);
                });
            self.state = MapState::Requested(rx);
        }
    }

    /// The values if the GPU has got there, without waiting; `None` if not yet.
    pub fn try_f32(&mut self, gpu: &Gpu) -> Result<Option<Vec<f32>>> {
        self.request();
        gpu.device
            .poll(wgpu::PollType::Poll)
            .map_err(|e| Error::Gpu(format!("polling the GPU: {e}")))?;
        // The training loop polls here every step: the place an error from its last submissions shows up.
        gpu.check_errors()?;
        let MapState::Requested(rx) = &self.state else {
            return Ok(None);
        };
        match rx.try_recv() {
            Ok(mapped) => self.take(mapped).map(Some),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(Error::Gpu("readback callback lost".into())),
        }
    }

    /// The values, waiting for the GPU to get there.
    pub fn wait_f32(mut self, gpu: &Gpu) -> Result<Vec<f32>> {
        self.request();
        gpu.wait()?;
        let MapState::Requested(rx) = &self.state else {
            unreachable!("requested above");
        };
        // Blocking: with several threads polling one device, the callback may run on another thread's poll a
        // moment after ours returned.
        let mapped = rx
            .recv()
            .map_err(|e| Error::Gpu(format!("readback callback lost: {e}")))?;
        self.take(mapped)
    }

    fn take(&mut self, mapped: MapResult) -> Result<Vec<f32>> {
        mapped.map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        let values = bytemuck::cast_slice(
            &self
                .staging
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e:?}")))?,
        )
        .to_vec();
        self.staging.unmap();
        Ok(values)
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
            .map(|&t| {
                let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("staged read"),
                    size: t.byte_size(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                (t.clone(), staging)
            })
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
    pub fn wait_into(&self, gpu: &Gpu, out: &mut [f32]) -> Result<()> {
        let receivers: Vec<_> = self
            .parts
            .iter()
            .map(|(_, staging)| {
                let (tx, rx) = channel();
                staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                    let _ = tx.send(r);
                });
                rx
            })
            .collect();
        gpu.wait()?;
        let mut at = 0;
        for ((src, staging), rx) in self.parts.iter().zip(receivers) {
            rx.recv()
                .map_err(|e| Error::Gpu(format!("readback callback lost: {e}")))?
                .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
            {
                let mapped = staging
                    .get_mapped_range(..)
                    .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e:?}")))?;
                out[at..at + src.len()].copy_from_slice(bytemuck::cast_slice(&mapped));
            }
            staging.unmap();
            at += src.len();
        }
        Ok(())
    }
}
