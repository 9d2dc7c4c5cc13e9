//! The diffusion math, apart from the GPU plumbing: schedules and their coefficient tables in f64, the timestep
//! convention, the samplers as lists of per-step scalars, and the exact (analytic) model of Gaussian-mixture data.
//! No wgpu here.

pub mod analytic;
pub mod likelihood;
pub mod process;
pub mod samplers;
pub mod schedule;
pub mod timestep;
pub mod vlb;

pub use samplers::{NoiseLevel, Plan, Prediction, Spacing, Step};
pub use schedule::{BetaSchedule, NamedSchedule, Schedule, VeSchedule};
