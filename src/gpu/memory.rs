//! How a workload's GPU memory grows with its batch, from two builds of it, at batch 1 and 2: every buffer is a
//! fixed size (weights, gradients) or grows by a fixed amount per image (activations, scratch), so each buffer's
//! size, and the total, is affine in the batch. Shared workspaces are the exception: the operations that use them
//! choose a variant whose scratch fits one binding (src/kernels/select.rs), so they stop growing there.

use crate::gpu::pipeline::{buffer_growth, footprint, BufferGrowth, Dispatch, Footprint};

pub struct Growth {
    one: Footprint,
    two: Footprint,
    /// Each buffer at batch 1 and 2, where the builds pair up.
    buffers: Option<Vec<BufferGrowth>>,
    /// The adapter's per-binding limit, where workspaces stop growing.
    limit: u64,
}

impl Growth {
    /// From the dispatches of the workload built at batch 1 and at batch 2, on an adapter that binds at most
    /// `limit` bytes per buffer.
    pub fn measure(one: &[Dispatch], two: &[Dispatch], limit: u64) -> Growth {
        Growth {
            one: footprint(one),
            two: footprint(two),
            buffers: buffer_growth(one, two),
            limit,
        }
    }

    /// One buffer's bytes at batch `m`.
    fn at(&self, b: &BufferGrowth, m: usize) -> u64 {
        let grow = b.at_two.saturating_sub(b.at_one);
        let bytes = b.at_one.saturating_sub(grow) + grow * m as u64;
        if b.workspace {
            bytes.min(self.limit.max(b.at_two))
        } else {
            bytes
        }
    }

    /// Bytes that do not depend on the batch.
    pub fn fixed(&self) -> u64 {
        self.one.bytes.saturating_sub(self.per_image())
    }

    /// Bytes per image of the batch (workspaces counted as growing: an overestimate past their cap).
    pub fn per_image(&self) -> u64 {
        self.two.bytes.saturating_sub(self.one.bytes)
    }

    /// All the buffers at batch `m`.
    pub fn bytes(&self, m: usize) -> u64 {
        match &self.buffers {
            Some(buffers) => buffers.iter().map(|b| self.at(b, m)).sum(),
            None => self.fixed() + self.per_image() * m as u64,
        }
    }

    /// The largest buffer at batch `m` (what the per-binding limit applies to), workspaces aside: they fit by
    /// construction. Where the builds did not pair up, every buffer is taken to grow with the batch: an
    /// overestimate.
    pub fn largest(&self, m: usize) -> u64 {
        match &self.buffers {
            Some(buffers) => buffers
                .iter()
                .filter(|b| !b.workspace)
                .map(|b| self.at(b, m))
                .max()
                .unwrap_or(0),
            None => self.two.largest * (m as u64).max(2) / 2,
        }
    }
}
