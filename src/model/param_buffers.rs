//! A flat parameter vector on the GPU (weights, gradients, Adam's moments, the EMA), held as one or more buffers
//! ("shards"). Every tensor is bound whole, and adapters bind at most 128 MiB per buffer (lavapipe, many real ones
//! by default), less than the 143 MB of `rgb64`'s weights: so the layout is cut, between parameters only, into
//! shards that each fit one binding. Each parameter is a view of exactly one shard; the optimizer runs shard by
//! shard. Most models are one shard.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::gpu::tensor::max_tensor_bytes;
use crate::gpu::{DType, Gpu, Tensor};
use crate::model::params::{ParamLayout, ParamSpec, ALIGN};

#[derive(Clone, Debug)]
pub struct ParamBuffers {
    shards: Vec<Tensor>,
    /// The flat range each shard holds.
    ranges: Vec<Range<usize>>,
}

impl ParamLayout {
    /// The flat ranges of shards of at most `max_elements` each, cut between parameters (each range starts where a
    /// parameter starts, so every view is aligned). A parameter larger than a shard is an error that names it.
    pub fn shard_ranges(&self, max_elements: usize) -> Result<Vec<Range<usize>>> {
        let mut ranges: Vec<Range<usize>> = Vec::new();
        let mut start = 0;
        for (i, p) in self.params.iter().enumerate() {
            let end = self
                .params
                .get(i + 1)
                .map_or(self.padded_len, |next| next.offset);
            if end - p.offset > max_elements {
                return Err(Error::Usage(format!(
                    "parameter {} {:?} has {} elements, more than one buffer binding of this adapter holds \
                     ({max_elements} f32); choose fewer channels (--base-channels, --channel-mults)",
                    p.name,
                    p.shape,
                    p.len()
                )));
            }
            if end - start > max_elements {
                ranges.push(start..p.offset);
                start = p.offset;
            }
        }
        ranges.push(start..self.padded_len);
        Ok(ranges)
    }
}

/// The most f32 elements one shard may hold on `gpu` (a multiple of the layout's alignment).
pub fn max_shard_elements(gpu: &Gpu) -> usize {
    (max_tensor_bytes(gpu) / 4) as usize / ALIGN * ALIGN
}

impl ParamBuffers {
    /// Zeros in `layout`, cut into shards of at most `max_elements` (normally [`max_shard_elements`]).
    pub fn zeros(gpu: &Gpu, layout: &ParamLayout, max_elements: usize) -> Result<ParamBuffers> {
        let ranges = layout.shard_ranges(max_elements)?;
        let shards = ranges
            .iter()
            .map(|r| Tensor::zeros(gpu, &[r.len()], DType::F32))
            .collect::<Result<_>>()?;
        Ok(ParamBuffers { shards, ranges })
    }

    /// `flat` (the layout's padded vector) uploaded in shards of at most `max_elements`.
    pub fn from_flat(
        gpu: &Gpu,
        layout: &ParamLayout,
        flat: &[f32],
        max_elements: usize,
    ) -> Result<ParamBuffers> {
        if flat.len() != layout.padded_len {
            return Err(Error::shape(
                "ParamBuffers::from_flat",
                format!(
                    "{} values for a layout of {}",
                    flat.len(),
                    layout.padded_len
                ),
            ));
        }
        let ranges = layout.shard_ranges(max_elements)?;
        let shards = ranges
            .iter()
            .map(|r| Tensor::from_f32(gpu, &[r.len()], &flat[r.clone()]))
            .collect::<Result<_>>()?;
        Ok(ParamBuffers { shards, ranges })
    }

    /// [`ParamBuffers::from_flat`] in shards as large as the adapter binds.
    pub fn upload(gpu: &Gpu, layout: &ParamLayout, flat: &[f32]) -> Result<ParamBuffers> {
        Self::from_flat(gpu, layout, flat, max_shard_elements(gpu))
    }

    /// Zeros cut as `self` is.
    pub fn zeros_like(&self, gpu: &Gpu) -> Result<ParamBuffers> {
        Ok(ParamBuffers {
            shards: self
                .shards
                .iter()
                .map(|s| Tensor::zeros(gpu, s.shape(), DType::F32))
                .collect::<Result<_>>()?,
            ranges: self.ranges.clone(),
        })
    }

    pub fn shards(&self) -> &[Tensor] {
        &self.shards
    }

    /// The flat length, padding included.
    pub fn len(&self) -> usize {
        self.ranges.last().map_or(0, |r| r.end)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The view of one parameter.
    pub fn view(&self, gpu: &Gpu, spec: &ParamSpec) -> Result<Tensor> {
        let i = self
            .ranges
            .iter()
            .position(|r| r.contains(&spec.offset))
            .ok_or_else(|| {
                Error::shape(
                    "ParamBuffers::view",
                    format!("{} lies outside the buffers", spec.name),
                )
            })?;
        self.shards[i].view(gpu, spec.offset - self.ranges[i].start, &spec.shape)
    }

    /// The whole flat vector, read back.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read_flat(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        crate::gpu::future::block_on(self.read_flat_async(gpu))
    }

    /// [`ParamBuffers::read_flat`], without blocking.
    pub async fn read_flat_async(&self, gpu: &Gpu) -> Result<Vec<f32>> {
        let mut flat = Vec::with_capacity(self.len());
        for s in &self.shards {
            flat.extend(s.read_f32_async(gpu).await?);
        }
        Ok(flat)
    }

    /// Overwrites the whole flat vector.
    pub fn write_flat(&self, gpu: &Gpu, flat: &[f32]) -> Result<()> {
        if flat.len() != self.len() {
            return Err(Error::shape(
                "ParamBuffers::write_flat",
                format!("{} values for buffers of {}", flat.len(), self.len()),
            ));
        }
        for (s, r) in self.shards.iter().zip(&self.ranges) {
            s.write_f32(gpu, &flat[r.clone()])?;
        }
        Ok(())
    }
}
