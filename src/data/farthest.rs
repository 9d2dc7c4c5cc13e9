//! The largest distance between two training images, for NCSNv2's rule σ_max = that distance (Song & Ermon 2020,
//! technique 1): every pair, on the GPU, exact in integers (shaders/pairwise.wgsl). A dataset larger than one
//! buffer binding goes up in blocks, each pair of blocks in turn; a large block pair in several dispatches, so
//! that no one dispatch runs long enough for a display driver to reset the GPU.

use std::ops::Range;

use super::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use crate::kernels::batch::PackedImages;
use crate::kernels::pairwise::{self, FarthestPair, Rows};

/// How the pairs are cut up: what the tests shrink to reach every path on a small dataset.
#[derive(Clone, Copy, Debug)]
pub struct Split {
    /// Images per uploaded block.
    pub block_rows: usize,
    /// The most byte pairs (pairs × bytes per image) per dispatch.
    pub work: u64,
    /// The most workgroups per dispatch.
    pub groups: usize,
}

impl Split {
    /// Blocks of up to 128 MiB (or one binding, if smaller); 2³² byte pairs a dispatch (milliseconds on a GPU,
    /// about a second on a CPU adapter); 1,024 workgroups.
    pub fn for_gpu(gpu: &Gpu, d: usize) -> Split {
        let block = crate::gpu::tensor::max_tensor_bytes(gpu).min(128 << 20) as usize;
        Split {
            block_rows: (block / d.max(1)).max(1),
            work: 1 << 32,
            groups: 1024,
        }
    }
}

/// The farthest pair of `dataset`'s images (None: fewer than two, or all equal).
pub async fn farthest_pair(
    gpu: &Gpu,
    dataset: &Dataset,
    split: Split,
) -> Result<Option<FarthestPair>> {
    let d = dataset.image_len();
    let bytes = |r: &Range<usize>| &dataset.pixels[r.start * d..r.end * d];
    let blocks: Vec<Range<usize>> = (0..dataset.len)
        .step_by(split.block_rows.max(1))
        .map(|s| s..(s + split.block_rows).min(dataset.len))
        .collect();
    let per_group = pairwise::tiles_per_group(d);
    if per_group == 0 {
        return Err(Error::Usage(format!(
            "--sigma-max data: images of {d} bytes are larger than the pairwise kernel reads in one pass (4 MB); \
             give --sigma-max a number"
        )));
    }
    let mut best = None;
    for (n, ra) in blocks.iter().enumerate() {
        let a = PackedImages::upload(gpu, bytes(ra), d)?;
        for rb in &blocks[n..] {
            let own;
            let b = match rb == ra {
                true => &a,
                false => {
                    own = PackedImages::upload(gpu, bytes(rb), d)?;
                    &own
                }
            };
            let (a, b) = (
                Rows {
                    images: &a,
                    first: ra.start,
                },
                Rows {
                    images: b,
                    first: rb.start,
                },
            );
            for i in chunks(ra, rb, d, split.work, per_group) {
                let tiles = pairwise::tiles(&i, rb);
                let g = (split.groups.min(pairwise::MAX_GROUPS))
                    .clamp(tiles.div_ceil(per_group), tiles);
                // One row per workgroup of this dispatch: what is read back is what was written.
                let table = Tensor::zeros(gpu, &[g, 4], DType::U32)?;
                let dispatch = pairwise::farthest_pair(gpu, &a, &b, i, rb.clone(), g, &table)?;
                gpu.run_async([&dispatch]).await?;
                let rows = table.read_u32_async(gpu).await?;
                best = FarthestPair::best(best, FarthestPair::from_rows(&rows));
            }
        }
    }
    Ok(best)
}

/// `rows` cut into runs of whole tiles, each run against `cols` at most `work` byte pairs (one tile of rows at
/// least) and at most [`pairwise::MAX_GROUPS`] workgroups of `per_group` tiles.
fn chunks(
    rows: &Range<usize>,
    cols: &Range<usize>,
    d: usize,
    work: u64,
    per_group: usize,
) -> impl Iterator<Item = Range<usize>> {
    let tile = pairwise::TILE;
    let by_work = (work / (cols.len() as u64 * d as u64).max(1)) as usize;
    let by_groups = per_group * pairwise::MAX_GROUPS / cols.len().div_ceil(tile) * tile;
    let step = (by_work.min(by_groups) / tile * tile).max(tile);
    let end = rows.end;
    (rows.start..end)
        .step_by(step)
        .map(move |s| s..(s + step).min(end))
}

/// σ_max by NCSNv2's rule for `dataset`: the largest distance between two of its images in training units
/// (b/127.5 − 1, so a byte distance over 127.5), with the pair, for the message.
pub async fn sigma_max_from_data(gpu: &Gpu, dataset: &Dataset) -> Result<(f64, FarthestPair)> {
    let split = Split::for_gpu(gpu, dataset.image_len());
    match farthest_pair(gpu, dataset, split).await? {
        Some(pair) => Ok(((pair.distance2 as f64).sqrt() / 127.5, pair)),
        None => Err(Error::Usage(format!(
            "--sigma-max data: {} has no two different images, so it gives no largest distance; give \
             --sigma-max a number",
            dataset.description
        ))),
    }
}
