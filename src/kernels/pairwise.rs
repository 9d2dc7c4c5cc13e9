//! Wrapper of shaders/pairwise.wgsl: the farthest pair of 8-bit images over a rectangle of pairs, exact in integers.
//! Driver over a whole dataset: src/data/farthest.rs. Reference: src/reference/pairwise.rs.

use std::ops::Range;

use crate::ensure_shape;
use crate::error::Result;
use crate::gpu::{DType, Dispatch, Gpu, Tensor};
use crate::kernels::batch::PackedImages;

/// Pairs per tile side: a workgroup is TILE × TILE invocations, one pair each.
pub const TILE: usize = 16;
/// The most workgroups one dispatch may have (its grid is 1-D).
pub const MAX_GROUPS: usize = 65_535;
/// Bytes of each image per staged slice.
const SLICE_BYTES: usize = 64;
/// llvmpipe (lavapipe) ends a loop nest after 65,535 iterations per invocation without any error (Mesa's loop
/// limiter), which would cut the sums short; the kernel's nest runs (tiles per workgroup)·(slices + 1), kept to
/// at most this on every adapter.
const MAX_LOOP: usize = 65_000;

/// The most tiles one workgroup may walk for images of `d` bytes; 0 where one tile is already too long (images
/// over 4 MB).
pub fn tiles_per_group(d: usize) -> usize {
    MAX_LOOP / (d.div_ceil(SLICE_BYTES) + 1)
}

/// The farthest pair: ‖b_i − b_j‖² in bytes, and i < j (global indices). Among equal distances, the smallest i,
/// then the smallest j: the order both the kernel and the reference keep, so the pair is exact too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FarthestPair {
    pub distance2: u64,
    pub first: usize,
    pub second: usize,
}

impl FarthestPair {
    /// Whether `self` comes before `other` in the order above.
    pub fn beats(&self, other: &FarthestPair) -> bool {
        (other.distance2, self.first, self.second) < (self.distance2, other.first, other.second)
    }

    /// The better of two candidates.
    pub fn best(a: Option<FarthestPair>, b: Option<FarthestPair>) -> Option<FarthestPair> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y.beats(&x) { y } else { x }),
            (x, y) => x.or(y),
        }
    }

    /// The best of the kernel's output rows (hi, lo, i, j); rows at distance 0 saw no pair.
    pub fn from_rows(rows: &[u32]) -> Option<FarthestPair> {
        rows.chunks_exact(4)
            .filter(|r| r[0] | r[1] != 0)
            .map(|r| FarthestPair {
                distance2: ((r[0] as u64) << 32) | r[1] as u64,
                first: r[2] as usize,
                second: r[3] as usize,
            })
            .fold(None, |acc, p| FarthestPair::best(acc, Some(p)))
    }
}

/// Images `first..first + images.rows` of a dataset, on the GPU.
pub struct Rows<'a> {
    pub images: &'a PackedImages,
    pub first: usize,
}

impl Rows<'_> {
    fn range(&self) -> Range<usize> {
        self.first..self.first + self.images.rows
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    d: u32,
    a_first: u32,
    b_first: u32,
    i0: u32,
    i1: u32,
    j0: u32,
    j1: u32,
    groups: u32,
}

/// Writes each of `groups` workgroups' farthest pair (i, j) with i < j, i ∈ `i` ⊂ a's rows, j ∈ `j` ⊂ b's, as
/// rows (hi, lo, i, j) of `best` ([≥ groups, 4] u32); read them with [`FarthestPair::from_rows`].
pub fn farthest_pair(
    gpu: &Gpu,
    a: &Rows,
    b: &Rows,
    i: Range<usize>,
    j: Range<usize>,
    groups: usize,
    best: &Tensor,
) -> Result<Dispatch> {
    const OP: &str = "farthest_pair";
    let d = a.images.d;
    let within = |r: &Range<usize>, of: Range<usize>| {
        r.start < r.end && of.start <= r.start && r.end <= of.end
    };
    ensure_shape!(
        b.images.d == d,
        OP,
        "images of {d} and {} bytes",
        b.images.d
    );
    ensure_shape!(
        within(&i, a.range()) && within(&j, b.range()),
        OP,
        "the pairs {i:?} × {j:?} must be non-empty and lie within the rows {:?} × {:?}",
        a.range(),
        b.range()
    );
    ensure_shape!(
        j.end <= u32::MAX as usize && (1..=MAX_GROUPS).contains(&groups),
        OP,
        "global indices must fit u32 and 1 ≤ groups ≤ {MAX_GROUPS}, got {j:?} and {groups}"
    );
    ensure_shape!(
        tiles(&i, &j).div_ceil(groups) <= tiles_per_group(d),
        OP,
        "{} tiles of images of {d} bytes over {groups} workgroups: more than {} each, past llvmpipe's loop limit",
        tiles(&i, &j),
        tiles_per_group(d)
    );
    ensure_shape!(
        best.dtype() == DType::U32 && best.len() >= groups * 4,
        OP,
        "best must be u32 with room for {groups} rows of 4, got {:?} {:?}",
        best.dtype(),
        best.shape()
    );
    let params = Params {
        d: d as u32,
        a_first: a.first as u32,
        b_first: b.first as u32,
        i0: i.start as u32,
        i1: i.end as u32,
        j0: j.start as u32,
        j1: j.end as u32,
        groups: groups as u32,
    };
    let kernel = gpu.kernel("pairwise", OP)?;
    Dispatch::new(
        gpu,
        &kernel,
        &params,
        &[
            ("a", &a.images.words),
            ("b", &b.images.words),
            ("best", best),
        ],
        [groups as u32, 1, 1],
    )
}

/// Tiles in the rectangle `i` × `j`: the most workgroups that have work.
pub fn tiles(i: &Range<usize>, j: &Range<usize>) -> usize {
    i.len().div_ceil(TILE) * j.len().div_ceil(TILE)
}
