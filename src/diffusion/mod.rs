//! The diffusion math, apart from the GPU plumbing: schedules and their coefficient tables in f64, the timestep
//! convention. No wgpu here.

pub mod schedule;
pub mod timestep;

pub use schedule::{BetaSchedule, Schedule};
