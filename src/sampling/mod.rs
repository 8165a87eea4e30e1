//! Sampling: turning one row of logits into the next token, on the CPU, and
//! the log-probabilities a request may ask for. Fed by the scheduler (each
//! sequence owns a [`Sampler`]); it knows nothing of batches, blocks, the
//! GPU or the actors, and nothing here imports another module of the crate.
//!
//! Greedy requests never come here: their argmax runs on the device and only
//! the id is read back. Everything else (temperature, top-k, top-p, min-p,
//! repetition/presence/frequency penalties) needs the full row and runs
//! here, in the order llama.cpp and vLLM use: penalties on the raw logits
//! (`penalties`), then top-k, temperature, top-p and min-p, then one draw
//! from a per-request RNG (`sampler`). The settings are `params`; logprobs
//! (`logprobs`) are read from the row before any penalty.

pub mod logprobs;
pub mod params;
pub mod penalties;
pub mod sampler;

pub use logprobs::{log_softmax, top_logprobs};
pub use params::SamplingParams;
pub use penalties::apply_penalties;
pub use sampler::{argmax, Sampler};
