//! A tensor is a GPU buffer range with a shape and an element type. Storage is row-major (the last dimension is
//! contiguous); image tensors are NCHW. Elements are 4 bytes (f32 or u32).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::context::Gpu;
use crate::gpu::future;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    U32,
}

#[derive(Clone, Debug)]
pub struct Tensor {
    buffer: Arc<wgpu::Buffer>,
    /// Byte offset of element 0 in `buffer`.
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
    /// A view of a shared workspace (`Gpu::workspace`), whose users pick their variant so that it fits one
    /// binding: memory estimates cap it there rather than let it grow with the batch.
    pub(crate) workspace: bool,
}

const ELEMENT_BYTES: u64 = 4;
const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

fn element_count(op: &'static str, shape: &[usize]) -> Result<usize> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(Error::shape(
            op,
            format!("shape {shape:?} has no elements; every dimension must be ≥ 1"),
        ));
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= u32::MAX as usize)
        .ok_or_else(|| Error::shape(op, format!("shape {shape:?} has more than 2^32 elements")))
}

/// The most bytes one tensor may hold on `gpu`: every tensor is bound whole as a storage buffer.
pub(crate) fn max_tensor_bytes(gpu: &Gpu) -> u64 {
    gpu.limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size)
}

fn check_size(gpu: &Gpu, op: &'static str, shape: &[usize], bytes: u64) -> Result<()> {
    let limit = max_tensor_bytes(gpu);
    if bytes > limit {
        return Err(Error::shape(
            op,
            format!("shape {shape:?} needs {bytes} bytes; the adapter binds at most {limit} bytes per buffer"),
        ));
    }
    Ok(())
}

/// A buffer shared by the tensors that view it. wgpu's buffers are `Send + Sync` on native targets, where tensors
/// cross threads (the decode threads never hold one, but the types allow it); on wasm32 they are neither, and there
/// is one thread, so the `Arc` costs an atomic count and nothing else.
#[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
fn shared(buffer: wgpu::Buffer) -> Arc<wgpu::Buffer> {
    Arc::new(buffer)
}

impl Tensor {
    /// A new tensor filled with zeros.
    pub fn zeros(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n = element_count("Tensor::zeros", shape)?;
        let bytes = n as u64 * ELEMENT_BYTES;
        check_size(gpu, "Tensor::zeros", shape, bytes)?;
        // wgpu zero-initialises new buffers.
        let buffer = gpu.create_buffer("tensor", shape, bytes, USAGE)?;
        gpu.count_allocation(bytes);
        Ok(Tensor {
            buffer: shared(buffer),
            offset: 0,
            shape: shape.to_vec(),
            dtype,
            workspace: false,
        })
    }

    fn from_bytes(
        gpu: &Gpu,
        shape: &[usize],
        dtype: DType,
        len: usize,
        bytes: &[u8],
    ) -> Result<Tensor> {
        let n = element_count("Tensor::from_data", shape)?;
        if n != len {
            return Err(Error::shape(
                "Tensor::from_data",
                format!("shape {shape:?} holds {n} elements but {len} were given"),
            ));
        }
        check_size(gpu, "Tensor::from_data", shape, bytes.len() as u64)?;
        let buffer = gpu.create_buffer_init("tensor", shape, bytes, USAGE)?;
        gpu.count_allocation(bytes.len() as u64);
        Ok(Tensor {
            buffer: shared(buffer),
            offset: 0,
            shape: shape.to_vec(),
            dtype,
            workspace: false,
        })
    }

    pub fn from_f32(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        Self::from_bytes(
            gpu,
            shape,
            DType::F32,
            data.len(),
            bytemuck::cast_slice(data),
        )
    }

    pub fn from_u32(gpu: &Gpu, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        Self::from_bytes(
            gpu,
            shape,
            DType::U32,
            data.len(),
            bytemuck::cast_slice(data),
        )
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Never true: tensors with no elements are refused at creation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub fn byte_offset(&self) -> u64 {
        self.offset
    }

    pub fn byte_size(&self) -> u64 {
        self.len() as u64 * ELEMENT_BYTES
    }

    pub(crate) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.byte_size()),
        })
    }

    /// The same storage seen with another shape of the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n = element_count("Tensor::reshape", shape)?;
        if n != self.len() {
            return Err(Error::shape(
                "Tensor::reshape",
                format!(
                    "cannot view {:?} ({} elements) as {shape:?} ({n} elements)",
                    self.shape,
                    self.len()
                ),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// A sub-range of this tensor's storage, starting `start` elements in, seen with `shape`. Binding offsets must
    /// be multiples of the adapter's storage alignment (256 bytes by default), so `start` must be a multiple of 64.
    pub fn view(&self, gpu: &Gpu, start: usize, shape: &[usize]) -> Result<Tensor> {
        let n = element_count("Tensor::view", shape)?;
        if start + n > self.len() {
            return Err(Error::shape(
                "Tensor::view",
                format!(
                    "elements {start}..{} lie outside a tensor of {} elements",
                    start + n,
                    self.len()
                ),
            ));
        }
        let offset = self.offset + start as u64 * ELEMENT_BYTES;
        let align = gpu.limits.min_storage_buffer_offset_alignment as u64;
        if !offset.is_multiple_of(align) {
            return Err(Error::shape(
                "Tensor::view",
                format!("byte offset {offset} is not a multiple of the adapter's storage alignment {align}"),
            ));
        }
        Ok(Tensor {
            buffer: self.buffer.clone(),
            offset,
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Overwrites the contents from the host.
    pub fn write_f32(&self, gpu: &Gpu, data: &[f32]) -> Result<()> {
        if data.len() != self.len() {
            return Err(Error::shape(
                "Tensor::write_f32",
                format!(
                    "tensor {:?} holds {} elements but {} were given",
                    self.shape,
                    self.len(),
                    data.len()
                ),
            ));
        }
        gpu.queue
            .write_buffer(&self.buffer, self.offset, bytemuck::cast_slice(data));
        Ok(())
    }

    /// Overwrites the contents of a u32 tensor from the host.
    pub fn write_u32(&self, gpu: &Gpu, data: &[u32]) -> Result<()> {
        if data.len() != self.len() || self.dtype != DType::U32 {
            return Err(Error::shape(
                "Tensor::write_u32",
                format!(
                    "tensor {:?} ({:?}) cannot take {} u32 values",
                    self.shape,
                    self.dtype,
                    data.len()
                ),
            ));
        }
        gpu.queue
            .write_buffer(&self.buffer, self.offset, bytemuck::cast_slice(data));
        Ok(())
    }

    async fn read_bytes(&self, gpu: &Gpu) -> Result<Vec<u8>> {
        let size = self.byte_size();
        // As large as the tensor (all the parameters, at a checkpoint): it can run out of memory too.
        let staging = gpu.create_buffer(
            "readback staging for tensor",
            &self.shape,
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(&self.buffer, self.offset, &staging, 0, size);
        gpu.submit([encoder.finish()]);
        let mapped = future::map(&staging, wgpu::MapMode::Read);
        gpu.drive(None)?;
        gpu.check_errors()?;
        future::received(mapped, "reading a tensor back")
            .await?
            .map_err(|e| Error::Gpu(format!("mapping a readback buffer: {e}")))?;
        let bytes = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading a mapped buffer: {e:?}")))?
            .to_vec();
        staging.unmap();
        Ok(bytes)
    }

    /// Copies the contents back to the host (waits for all submitted work).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_f32(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        future::block_on(self.read_f32_async(gpu))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_u32(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        future::block_on(self.read_u32_async(gpu))
    }

    /// [`Tensor::read_f32`], without blocking.
    pub async fn read_f32_async(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        Ok(bytemuck::cast_slice(&self.read_bytes(gpu).await?).to_vec())
    }

    /// [`Tensor::read_u32`], without blocking.
    pub async fn read_u32_async(&self, gpu: &Gpu) -> Result<Vec<u32>> {
        Ok(bytemuck::cast_slice(&self.read_bytes(gpu).await?).to_vec())
    }
}
