//! The actix actors of the serving runtime, one stage each, talking only by
//! messages (`messages`): Intake (admission, ids), the Tokenizer pool, the
//! Scheduler (every sequence, the KV block pool, the step loop), one Shard
//! per device, and the Detokenizer (text deltas, stop strings). `Runtime`
//! starts and wires them and implements `crate::backend::Backend`; `error`
//! holds the typed errors of their messages and their one mapping to
//! `BackendError`; `health` is the latch that says the runtime failed for
//! good, `fault` the test hook that makes it fail on purpose.

pub mod detokenizer;
pub mod error;
pub mod fault;
pub mod health;
pub mod intake;
pub mod messages;
pub mod runtime;
pub mod scheduler;
pub mod shard;
pub mod tokenizer;

pub use fault::Fault;
pub use health::Health;
pub use runtime::{Runtime, RuntimeOptions, RuntimeParts};

#[cfg(test)]
mod tests;
