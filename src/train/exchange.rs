//! The exchange between the replicas of a data-parallel run: each step's gradient and loss sum are read back,
//! summed over the ranks with one all-reduce, and the sum uploaded in place of the gradient before the update.

use std::rc::Rc;

use crate::distributed::Replicas;
use crate::error::Result;
use crate::gpu::{Gpu, StagedRead, Tensor};
use crate::model::ParamBuffers;
use crate::time::Instant;

/// A data-parallel step's all-reduce: this rank's gradient and loss sum are read back, summed over the ranks with
/// one all-reduce, and the sum uploaded in place of the gradient before the update runs.
pub(super) struct Exchange {
    replicas: Rc<dyn Replicas>,
    /// The gradient's shards, then the loss sum.
    read: StagedRead,
    /// [gradient…, loss sum, stop] as sent and as summed (the stop slot: 1 from a rank that was asked to stop).
    send: Vec<f32>,
    sum: Vec<f32>,
    stats: ExchangeStats,
}

/// What the all-reduces of a data-parallel run have cost so far (`diffuse bench`, `docs/distributed.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ExchangeStats {
    pub steps: u64,
    /// Bytes each rank sends into one step's all-reduce.
    pub bytes_per_step: u64,
    /// Host seconds waiting for this rank's passes and reading the gradient back.
    pub readback_s: f64,
    /// Seconds waiting for the slowest rank to finish its passes (a barrier before the all-reduce).
    pub wait_s: f64,
    /// Seconds inside MPI_Allreduce, every rank having arrived: the cost of the exchange itself.
    pub allreduce_s: f64,
    /// Host seconds handing the sum to the GPU.
    pub upload_s: f64,
}

impl Exchange {
    /// The exchange of `grads`' shards and the `loss_sum` with the other `replicas`, its staging buffers made once.
    pub(super) fn new(
        gpu: &Gpu,
        replicas: Rc<dyn Replicas>,
        grads: &ParamBuffers,
        loss_sum: &Tensor,
    ) -> Exchange {
        let mut sources: Vec<&Tensor> = grads.shards().iter().collect();
        sources.push(loss_sum);
        let read = StagedRead::new(gpu, &sources);
        let n = read.len() + 1;
        Exchange {
            replicas,
            read,
            send: vec![0.0; n],
            sum: vec![0.0; n],
            stats: ExchangeStats {
                bytes_per_step: 4 * n as u64,
                ..Default::default()
            },
        }
    }

    pub(super) fn replicas(&self) -> &dyn Replicas {
        &*self.replicas
    }

    pub(super) fn stats(&self) -> ExchangeStats {
        self.stats
    }

    /// Records the copy of the passes' gradient and loss sum into the staging buffers (before the submission).
    pub(super) fn record(&self, rec: &mut crate::gpu::Recorder) {
        self.read.record(rec);
    }

    /// Reads the finished passes' gradient and loss sum, sums them and this rank's `stop` over the ranks, and
    /// writes the summed gradient over `grads`; returns (some rank asked to stop, the loss sum of all ranks).
    pub(super) async fn all_reduce_async(
        &mut self,
        gpu: &Gpu,
        grads: &ParamBuffers,
        stop: bool,
    ) -> Result<(bool, f32)> {
        let started = Instant::now();
        let n = self.read.len();
        self.read.wait_into_async(gpu, &mut self.send[..n]).await?;
        self.send[n] = if stop { 1.0 } else { 0.0 };
        let read = Instant::now();
        // A barrier first (a few microseconds), so that the all-reduce's time is the exchange alone and the wait
        // for a slower rank is counted apart.
        self.replicas.barrier();
        let arrived = Instant::now();
        self.replicas.all_reduce_sum(&self.send, &mut self.sum);
        let reduced = Instant::now();
        grads.write_flat(gpu, &self.sum[..grads.len()])?;
        let stats = &mut self.stats;
        stats.steps += 1;
        stats.readback_s += (read - started).as_secs_f64();
        stats.wait_s += (arrived - read).as_secs_f64();
        stats.allreduce_s += (reduced - arrived).as_secs_f64();
        stats.upload_s += reduced.elapsed().as_secs_f64();
        Ok((self.sum[n] > 0.0, self.sum[n - 1]))
    }
}
