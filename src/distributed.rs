//! Data-parallel training across processes (ranks): what the trainer needs from the other ranks of a run —
//! summing the gradient, comparing checksums, ending the job — as the trait [`Replicas`], and (with the `mpi`
//! cargo feature) its implementation on the system's MPI. No transport of our own: MPI is the engine clusters
//! already launch and schedule (`mpirun`, `srun`).
//!
//! Every rank holds the whole model and takes a contiguous slice of each step's images; see
//! [`crate::train::Trainer::with_replicas`] for how the slices line up with a one-process run.

#[cfg(feature = "mpi")]
pub mod mpi;

use crate::fnv::Fnv;

/// The ranks of a data-parallel run, seen from one of them. Every rank must call the collective methods
/// (`all_reduce_sum`, `all_gather_u64`) in the same order; a failed collective ends the whole job (MPI's default
/// error handler), so they return no error.
pub trait Replicas {
    /// This process's rank, 0-based; rank 0 alone prints and writes files.
    fn rank(&self) -> usize;
    /// Ranks in the run.
    fn ranks(&self) -> usize;
    /// This rank's index among the ranks on its machine (which adapter it takes by default).
    fn local_rank(&self) -> usize;
    /// Returns once every rank has called it (so that what follows is timed without the wait for the slowest).
    fn barrier(&self);
    /// `recv[i]` = Σ over ranks of their `send[i]`, the same bits on every rank.
    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]);
    /// Every rank's `value`, in rank order.
    fn all_gather_u64(&self, value: u64) -> Vec<u64>;
    /// Every rank's `values` (of any length, under 2³¹ each), concatenated in rank order, on rank 0; None on the
    /// others.
    fn gather_f32(&self, values: &[f32]) -> Option<Vec<f32>>;
    /// Ends every rank of the job with `code` (after a rank's error, so the others do not wait for it forever).
    fn abort(&self, code: i32) -> !;
}

/// Where one rank's images lie in a step of `total` images split over `ranks`: images
/// `first..first + len` of the step's draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub rank: usize,
    pub ranks: usize,
    pub first: usize,
    pub len: usize,
}

impl Slice {
    /// The whole step, in one process.
    pub fn whole(total: usize) -> Slice {
        Slice {
            rank: 0,
            ranks: 1,
            first: 0,
            len: total,
        }
    }

    /// Rank `rank`'s equal share of `total` images; `total` must be a multiple of `ranks`.
    pub fn of(total: usize, rank: usize, ranks: usize) -> Result<Slice, String> {
        if ranks == 0 || rank >= ranks {
            return Err(format!("rank {rank} of {ranks} ranks"));
        }
        if !total.is_multiple_of(ranks) {
            return Err(format!(
                "the {total} images of a step (--batch × --grad-accum) do not split evenly over {ranks} ranks: \
                 choose a --batch whose product with --grad-accum is a multiple of {ranks}, or run on a number \
                 of ranks that divides {total}"
            ));
        }
        let len = total / ranks;
        Ok(Slice {
            rank,
            ranks,
            first: rank * len,
            len,
        })
    }
}

/// An order-dependent 64-bit checksum ([`Fnv`] over the bits) of a replica's state, compared across ranks: equal
/// replicas give equal sums, and any differing bit almost surely changes it.
pub fn checksum<'a>(parts: impl IntoIterator<Item = &'a [f32]>, counters: &[u64]) -> u64 {
    let mut hash = Fnv::new();
    for part in parts {
        hash.bytes(bytemuck::cast_slice(part));
    }
    for c in counters {
        hash.bytes(&c.to_le_bytes());
    }
    hash.finish()
}
