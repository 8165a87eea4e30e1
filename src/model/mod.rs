//! Models: an architecture's description read from GGUF metadata, its weights
//! on the device, the paged KV cache, the forward pass for a batch, built
//! from the kernels in `crate::gpu`, the chaining of a step through the
//! shards (`chain`), and the memory plan. It runs the step types of
//! `crate::step` and never imports the scheduler, the sampler or the loader.

pub mod chain;
mod forward;
pub mod kv_cache;
pub mod plan;
pub mod shard;
pub mod spec;
pub mod weights;
