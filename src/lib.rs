//! wgserve: a self-hosted LLM server. Requests flow through actix actors
//! (`actors`), the model runs as WGSL compute shaders through wgpu on Vulkan
//! (`gpu`, `model`), weights come from GGUF files (`gguf`), text is encoded by
//! `tokenizer`, and `api` speaks OpenAI-style HTTP and WebSocket. `loader`
//! loads a model; `scheduler` (with `kv` and `sampling`) plans each step's
//! work order (`step`), which the model runs.
//!
//! See ARCHITECTURE.md for where each kind of change belongs.

pub mod actors;
pub mod api;
pub mod backend;
pub mod config;
pub mod engine;
pub mod gguf;
pub mod gpu;
pub mod hf;
pub mod kv;
pub mod loader;
pub mod model;
pub mod sampling;
pub mod scheduler;
pub mod serve;
pub mod step;
pub mod tokenizer;
