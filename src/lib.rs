//! wgserve: a self-hosted LLM server. Requests flow through actix actors
//! (`actors`), the model runs as WGSL compute shaders through wgpu on Vulkan
//! (`gpu`, `model`), weights come from GGUF files (`gguf`), text is encoded by
//! `tokenizer`, and `api` speaks OpenAI-style HTTP and WebSocket.
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
pub mod model;
pub mod scheduler;
pub mod serve;
pub mod tokenizer;
