//! Where each step's images come from: the whole dataset resident on the GPU (each pass gathers the GPU-drawn
//! indices), or streamed from host memory through a ring of upload buffers. Both give the same batches, bit for bit.

use std::sync::Arc;

use crate::data::Dataset;
use crate::distributed::Slice;
use crate::error::{Error, Result};
use crate::gpu::upload::{Filled, UploadRing};
use crate::gpu::{Gpu, Recorder, Tensor};
use crate::kernels::batch::PackedImages;

use super::{stream, BatchPlan, Placement, TrainSettings};

/// Where the step's images come from.
pub(super) enum Source {
    /// The whole dataset on the GPU; the step's gather reads the GPU-drawn indices.
    Resident,
    /// The dataset in host memory: before each step the host draws the same indices as the GPU (the draw is a
    /// pure function of seed, stream and offset) and uploads those rows, which the gather reads in order.
    Streamed {
        pixels: Arc<[u8]>,
        d: usize,
        len: usize,
        ring: UploadRing,
        rows: PackedImages,
    },
}

/// The placed dataset: the packed rows the passes gather from, each pass's row indices into them, and why.
pub(super) struct Placed {
    pub data: PackedImages,
    /// Pass j's rows of `data`: the GPU-drawn `index` (resident), or its slice of the uploaded rows, in order.
    pub gather_index: Vec<Tensor>,
    pub source: Source,
    /// "data: … resident on the GPU" or "… streamed from host memory (why)".
    pub note: String,
}

/// Whether the dataset stays on the GPU: where asked, or (`auto`) where it fits one binding and the budget.
fn resident(
    settings: &TrainSettings,
    plan: &BatchPlan,
    bytes: u64,
    limit: u64,
) -> Result<(bool, bool)> {
    let fits = bytes.div_ceil(4) * 4 <= limit && bytes <= u32::MAX as u64;
    let resident = match settings.placement {
        Placement::Gpu if !fits => {
            return Err(Error::Usage(format!(
                "--data-on gpu: the dataset's {bytes} bytes do not fit one buffer binding of this adapter ({limit} \
                 bytes); use --data-on auto or host to stream it from host memory"
            )))
        }
        Placement::Gpu => true,
        Placement::Host => false,
        Placement::Auto => {
            fits && settings
                .memory_budget
                .is_none_or(|budget| plan.bytes + bytes <= budget)
        }
    };
    Ok((resident, fits))
}

fn note(
    dataset: &Dataset,
    settings: &TrainSettings,
    resident: bool,
    fits: bool,
    limit: u64,
) -> String {
    let d = dataset.image_len();
    let bytes = dataset.len as u64 * d as u64;
    let size = |b: u64| format!("{:.1} MB", b as f64 / 1e6);
    let head = format!("data: {} images × {d} bytes = {}", dataset.len, size(bytes));
    if resident {
        return format!("{head} resident on the GPU");
    }
    let why = if settings.placement == Placement::Host {
        "as asked".to_string()
    } else if fits {
        "the GPU memory left in --memory-budget is smaller".to_string()
    } else {
        format!(
            "more than one buffer binding of this adapter holds: {}",
            size(limit)
        )
    };
    format!("{head} streamed from host memory ({why})")
}

impl Placed {
    /// Places `dataset` as `settings.placement` says; `index` is the tensor the passes draw their indices into.
    pub fn new(
        gpu: &Gpu,
        settings: &TrainSettings,
        dataset: &Dataset,
        plan: &BatchPlan,
        slice: Slice,
        index: &Tensor,
    ) -> Result<Placed> {
        let d = dataset.image_len();
        let limit = crate::gpu::tensor::max_tensor_bytes(gpu);
        let (resident, fits) = resident(settings, plan, dataset.len as u64 * d as u64, limit)?;
        let note = note(dataset, settings, resident, fits, limit);
        let (m, passes) = (plan.micro_batch, plan.passes);
        if resident {
            return Ok(Placed {
                data: PackedImages::upload(gpu, &dataset.pixels, d)?,
                gather_index: vec![index.clone(); passes],
                source: Source::Resident,
                note,
            });
        }
        let upload = slice.len as u64 * d as u64;
        if upload.div_ceil(4) * 4 > limit {
            return Err(Error::Usage(format!(
                "streaming: one step's {} images are {upload} bytes, more than one buffer binding of this \
                 adapter holds ({limit}); lower --batch or --grad-accum",
                slice.len
            )));
        }
        let rows = PackedImages::zeros(gpu, slice.len, d)?;
        let in_order = (0..passes)
            .map(|j| {
                let part: Vec<u32> = (j * m..(j + 1) * m).map(|i| i as u32).collect();
                Tensor::from_u32(gpu, &[m], &part)
            })
            .collect::<Result<Vec<_>>>()?;
        let source = Source::Streamed {
            pixels: dataset.pixels.clone(),
            d,
            len: dataset.len,
            ring: UploadRing::new(gpu, rows.words.byte_size())?,
            rows: rows.clone(),
        };
        Ok(Placed {
            data: rows,
            gather_index: in_order,
            source,
            note,
        })
    }
}

impl Source {
    /// Streaming: draws this step's indices as the GPU will (at RNG offset `rng_offset`), fills a ring slot with
    /// this rank's rows and records its copy at the head of the step.
    pub async fn upload_rows_async(
        &mut self,
        gpu: &Gpu,
        rec: &mut Recorder<'_>,
        settings: &TrainSettings,
        rng_offset: u64,
        slice: Slice,
    ) -> Result<Option<Filled>> {
        let Source::Streamed {
            pixels,
            d,
            len,
            ring,
            rows,
        } = self
        else {
            return Ok(None);
        };
        let d = *d;
        let index = crate::reference::random::uniform_int(
            settings.seed,
            stream::INDEX,
            rng_offset,
            settings.batch * settings.grad_accum,
            *len as u32,
        );
        let mine = &index[slice.first..slice.first + slice.len];
        let filled = ring
            .fill_async(gpu, |view| {
                for (j, &i) in mine.iter().enumerate() {
                    let i = i as usize;
                    view.slice(j * d..(j + 1) * d)
                        .copy_from_slice(&pixels[i * d..(i + 1) * d]);
                }
            })
            .await?;
        ring.record_copy(rec, &filled, &rows.words)?;
        Ok(Some(filled))
    }

    /// Hands an upload slot back once `submission` (the one that copies it) is done.
    pub fn release(&mut self, filled: Option<Filled>, submission: wgpu::SubmissionIndex) {
        if let (Some(filled), Source::Streamed { ring, .. }) = (filled, self) {
            ring.release(filled, submission);
        }
    }
}
