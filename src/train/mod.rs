//! Training on the GPU. One step — draw a batch, timesteps and noise; noise the batch; forward; loss; backward;
//! gradient clipping; Adam; EMA; advance the RNG — is recorded once as a list of dispatches and submitted as one
//! command buffer per step. Nothing is allocated per step but a report's 8-byte staging buffer. The host writes
//! only the step's learning rate and EMA decay (a 4-float tensor) before each submission, and, when the data is
//! streamed, fills an upload slot with the step's images. A batch too large for one pass runs as micro-batches
//! inside the same submission ([`BatchPlan`]), each drawing its images' part of the batch's random numbers, with
//! the gradients summed before the optimizer reads them. The loss is summed on the GPU; a step that reports
//! copies the sum (and the gradient norm) into a staging buffer in its own submission, and the host picks the
//! values up when the GPU gets there ([`Trainer::poll_losses`]), so reporting never drains the queue. At most
//! [`MAX_IN_FLIGHT`] steps are queued at once.
//!
//! - `settings`: what defines a run besides the data, and the table of its settings.
//! - `plan`: the batch and memory plan; `source`: where each step's images come from.
//! - `step`: the recorded step's buffers, passes and update; `trainer`: the state, the step's submission, reports,
//!   the checkpoint; `exchange`: the all-reduce between the replicas of a data-parallel run.
//! - `run`: the run loop (reports, checkpoints, previews, the stop flag, `metrics.csv`, `loss.png`) that every
//!   front end drives.

mod exchange;
mod plan;
pub mod run;
mod settings;
mod source;
mod step;
pub mod table;
mod trainer;

pub use exchange::ExchangeStats;
pub use plan::BatchPlan;
pub use settings::{Placement, TrainSettings};
pub use trainer::{LossReport, Trainer, MAX_IN_FLIGHT};

/// RNG streams of one step (each draw of a step has its own, so they never repeat each other; dropout layers use
/// `dropout::DROPOUT_STREAM` and up).
mod stream {
    pub const INDEX: u32 = 0;
    pub const LABEL_DROP: u32 = 1;
    pub const TIMESTEP: u32 = 2;
    pub const NOISE: u32 = 3;
    pub const FLIP: u32 = 4;
}
