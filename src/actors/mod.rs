//! The actix actors of the serving runtime, one stage each, talking only by
//! messages (`messages`): Intake (admission, ids), the Tokenizer pool, the
//! Scheduler (every sequence, the KV block pool, the step loop), one Shard
//! per device, and the Detokenizer (text deltas, stop strings). `Runtime`
//! starts and wires them and implements `crate::backend::Backend`.

pub mod detokenizer;
pub mod intake;
pub mod messages;
pub mod runtime;
pub mod scheduler;
pub mod shard;
pub mod tokenizer;

pub use runtime::{Runtime, RuntimeOptions, RuntimeParts};

#[cfg(test)]
mod tests;
