//! Continuous batching: the scheduler's logic ([`core`]) and the step's work
//! order ([`batch`]). Synchronous and GPU-free; the Scheduler actor and
//! `wgserve generate` drive it.

pub mod batch;
pub mod core;
#[cfg(test)]
mod tests;

pub use batch::{BatchInput, SampleOutput, SampleRow};
pub use core::{
    FinishReason, ScheduleError, Scheduler, SchedulerConfig, SchedulerStats, SeqEvent, SeqId,
    SeqRequest, TokenLogprobs, Usage,
};
