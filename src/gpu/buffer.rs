//! Buffer creation that fails with an [`Error`] instead of a panic. wgpu reports a failed allocation
//! asynchronously, to the device's error handler; an error scope around the call catches it here, where the shape
//! and size are known. Allocations happen when a workload is built, never per step, so a scope each costs nothing
//! that matters.

use crate::error::{Error, Result};
use crate::gpu::context::Gpu;
#[cfg(not(target_arch = "wasm32"))]
use crate::gpu::future::block_on;

impl Gpu {
    /// A new zero-filled buffer of `size` bytes. `what` and `shape` name it in the error if the device refuses it
    /// (out of memory, or over a limit).
    pub fn create_buffer(
        &self,
        what: &str,
        shape: &[usize],
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        self.scoped(what, shape, size, |device| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage,
                mapped_at_creation: false,
            })
        })
    }

    /// A new buffer holding `contents`.
    pub fn create_buffer_init(
        &self,
        what: &str,
        shape: &[usize],
        contents: &[u8],
        usage: wgpu::BufferUsages,
    ) -> Result<wgpu::Buffer> {
        // Mapped-at-creation sizes must be a non-zero multiple of 4 (wgpu::util pads the same way).
        let padded;
        let contents = if contents.is_empty() || !contents.len().is_multiple_of(4) {
            padded = [contents, &[0; 4][..4 - contents.len() % 4]].concat();
            &padded[..]
        } else {
            contents
        };
        let size = contents.len() as u64;
        // Not wgpu::util's create_buffer_init: it panics when the buffer it creates is invalid (out of memory).
        let buffer = self.scoped(what, shape, size, |device| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size,
                usage,
                mapped_at_creation: true,
            })
        })?;
        buffer
            .get_mapped_range_mut(..)
            .map_err(|e| Error::Gpu(format!("filling {what} {shape:?}: {e:?}")))?
            .copy_from_slice(contents);
        buffer.unmap();
        Ok(buffer)
    }

    /// Runs `create` inside out-of-memory and validation error scopes (the pattern of `Gpu::kernel`). In a
    /// browser a scope's answer needs the event loop, so there `create` runs bare: [`Gpu::build_async`] wraps a
    /// whole build in one scope instead.
    pub(crate) fn scoped(
        &self,
        what: &str,
        shape: &[usize],
        bytes: u64,
        create: impl FnOnce(&wgpu::Device) -> wgpu::Buffer,
    ) -> Result<wgpu::Buffer> {
        #[cfg(target_arch = "wasm32")]
        {
            let _ = (what, shape, bytes);
            Ok(create(&self.device))
        }
        #[cfg(not(target_arch = "wasm32"))]
        self.scoped_native(what, shape, bytes, create)
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn scoped_native(
        &self,
        what: &str,
        shape: &[usize],
        bytes: u64,
        create: impl FnOnce(&wgpu::Device) -> wgpu::Buffer,
    ) -> Result<wgpu::Buffer> {
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let buffer = create(&self.device);
        // Scopes pop innermost first.
        let invalid = block_on(validation.pop());
        let oom = block_on(out_of_memory.pop());
        if oom.is_some() {
            return Err(Error::OutOfMemory {
                what: what.to_string(),
                shape: shape.to_vec(),
                bytes,
                allocated: self.allocated_bytes(),
            });
        }
        if let Some(e) = invalid {
            return Err(Error::Gpu(format!(
                "creating {what} {shape:?} ({bytes} bytes): {}",
                e.to_string().trim_end()
            )));
        }
        Ok(buffer)
    }

    /// Runs `build` (the making of a trainer, a sampler: buffers and pipelines) inside one out-of-memory and one
    /// validation scope, popped without blocking: how a browser, where a scope per allocation would need the event
    /// loop each time, learns that a build failed. Native builds are checked per allocation as well.
    pub async fn build_async<T>(&self, build: impl FnOnce() -> Result<T>) -> Result<T> {
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let built = build();
        // Both scopes are popped before the first await: another task of the page (a slider's build while a run
        // trains) may push scopes of its own once this one yields.
        let (invalid, oom) = (validation.pop(), out_of_memory.pop());
        let (invalid, oom) = (invalid.await, oom.await);
        let built = built?;
        if oom.is_some() {
            return Err(Error::Gpu(format!(
                "the GPU ran out of memory while building, with {} of tensors allocated. {}",
                crate::error::human_bytes(&self.allocated_bytes()),
                crate::error::OUT_OF_MEMORY_HINT
            )));
        }
        match invalid {
            Some(e) => Err(Error::Gpu(e.to_string().trim_end().to_string())),
            None => Ok(built),
        }
    }
}
