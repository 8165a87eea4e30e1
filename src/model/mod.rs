//! Models: an architecture's description read from GGUF metadata, its weights
//! on the device, the paged KV cache, and the forward pass for a batch, built
//! from the kernels in `crate::gpu`; and token sampling from logits.

mod forward;
pub mod kv_cache;
pub mod plan;
pub mod sampling;
pub mod shard;
pub mod spec;
pub mod weights;
