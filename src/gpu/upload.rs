//! Uploads that do not stall the GPU: a small ring of mappable staging buffers. The host fills a free slot while the
//! GPU works on earlier submissions, a copy from the slot into a tensor is recorded at the head of the next
//! submission, and the slot is mapped again once that submission is done. With [`SLOTS`] slots the host can run
//! that many steps ahead before it waits. Nothing is allocated per upload.

use crate::error::{Error, Result};
use crate::gpu::future::{self, Receiver};
use crate::gpu::pipeline::Recorder;
use crate::gpu::{Gpu, Tensor};

type MapResult = std::result::Result<(), wgpu::BufferAsyncError>;

/// Slots in the ring: one being filled, one being copied by the GPU, one spare, so the host never waits for a
/// step it has not already queued two of after.
pub const SLOTS: usize = 3;

struct Slot {
    buffer: wgpu::Buffer,
    /// While a mapping requested after the last use is pending: its callback's channel, and the submission that
    /// copies from the slot (the mapping completes once that submission has).
    mapping: Option<(Receiver<MapResult>, wgpu::SubmissionIndex)>,
}

pub struct UploadRing {
    slots: Vec<Slot>,
    next: usize,
    bytes: u64,
}

/// A slot filled and unmapped, waiting to be copied by the next submission.
pub struct Filled {
    slot: usize,
}

impl UploadRing {
    /// A ring of [`SLOTS`] staging buffers of `bytes` each (a multiple of 4), mapped and ready to fill.
    pub fn new(gpu: &Gpu, bytes: u64) -> Result<UploadRing> {
        if bytes == 0 || !bytes.is_multiple_of(4) {
            return Err(Error::shape(
                "UploadRing::new",
                format!("{bytes} bytes: uploads must be a positive multiple of 4 bytes"),
            ));
        }
        let slots = (0..SLOTS)
            .map(|_| {
                let buffer =
                    gpu.scoped("upload ring slot", &[bytes as usize], bytes, |device| {
                        device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some("upload ring"),
                            size: bytes,
                            usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                            mapped_at_creation: true,
                        })
                    })?;
                gpu.count_allocation(bytes);
                Ok(Slot {
                    buffer,
                    mapping: None,
                })
            })
            .collect::<Result<_>>()?;
        Ok(UploadRing {
            slots,
            next: 0,
            bytes,
        })
    }

    /// Bytes per slot.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Fills the next slot through `write` (given the mapped bytes; it must write all it means to send), waiting
    /// only if the GPU still holds that slot from [`SLOTS`] submissions ago.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn fill(
        &mut self,
        gpu: &Gpu,
        write: impl FnOnce(&mut wgpu::BufferViewMut),
    ) -> Result<Filled> {
        future::block_on(self.fill_async(gpu, write))
    }

    /// [`UploadRing::fill`], without blocking.
    pub async fn fill_async(
        &mut self,
        gpu: &Gpu,
        write: impl FnOnce(&mut wgpu::BufferViewMut),
    ) -> Result<Filled> {
        let index = self.next;
        self.next = (self.next + 1) % SLOTS;
        let slot = &mut self.slots[index];
        if let Some((mut rx, submission)) = slot.mapping.take() {
            // Usually done: the copy it waits for was submitted SLOTS − 1 steps ago, and a poll runs its callback.
            // Otherwise wait for that submission only, not for the steps queued after it.
            gpu.poll_now()?;
            let mapped = match rx.try_recv() {
                Ok(Some(mapped)) => mapped,
                _ => {
                    gpu.drive(Some(submission))?;
                    future::received(rx, "waiting for an upload slot").await?
                }
            };
            mapped.map_err(|e| Error::Gpu(format!("mapping an upload buffer: {e}")))?;
        }
        {
            let mut view = slot
                .buffer
                .get_mapped_range_mut(..)
                .map_err(|e| Error::Gpu(format!("writing a mapped upload buffer: {e:?}")))?;
            write(&mut view);
        }
        slot.buffer.unmap();
        Ok(Filled { slot: index })
    }

    /// Records the copy of a filled slot into `dst` (the first `dst.byte_size()` bytes of the slot).
    pub fn record_copy(&self, rec: &mut Recorder, filled: &Filled, dst: &Tensor) -> Result<()> {
        if dst.byte_size() > self.bytes {
            return Err(Error::shape(
                "UploadRing::record_copy",
                format!(
                    "the destination {:?} holds {} bytes, more than a slot's {}",
                    dst.shape(),
                    dst.byte_size(),
                    self.bytes
                ),
            ));
        }
        rec.encoder().copy_buffer_to_buffer(
            &self.slots[filled.slot].buffer,
            0,
            dst.buffer(),
            dst.byte_offset(),
            dst.byte_size(),
        );
        Ok(())
    }

    /// Hands a slot back after `submission`, the one that copies it (wgpu maps it once the GPU has finished).
    pub fn release(&mut self, filled: Filled, submission: wgpu::SubmissionIndex) {
        let rx = future::map(&self.slots[filled.slot].buffer, wgpu::MapMode::Write);
        self.slots[filled.slot].mapping = Some((rx, submission));
    }
}
