//! Continuous batching: the scheduler's logic ([`core`]), synchronous and
//! GPU-free; the Scheduler actor and `wgserve generate` drive it. It writes
//! each step's work order (`crate::step`), keeps the KV block pool
//! (`crate::kv`) and each sequence's sampler (`crate::sampling`); it never
//! imports the model, the loader or the actors.

pub mod core;
#[cfg(test)]
mod tests;

pub use core::{
    FinishReason, ScheduleError, Scheduler, SchedulerConfig, SchedulerStats, SeqEvent, SeqId,
    SeqRequest, TokenLogprobs, Usage,
};
