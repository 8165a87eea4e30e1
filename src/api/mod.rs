//! The HTTP and WebSocket surface, OpenAI-compatible, over the
//! [`Backend`](crate::backend::Backend) trait and its types
//! (`crate::backend`) and nothing else of the runtime (`layering.rs`
//! checks): `POST /v1/chat/completions` and `POST /v1/completions` (whole
//! or as Server-Sent Events), `GET /v1/models`, `GET /v1/models/{id}`,
//! `GET /health`, `GET /metrics`, `POST /tokenize`, `POST /detokenize`,
//! `GET /v1/ws`, and the chat page at `/`. Validation, OpenAI's JSON shapes, streaming, auth and CORS live
//! here; tokenizing, scheduling and generating do not.
//!
//! Entry points: [`run_server`] (bind and serve), [`bind`] (bind, get the
//! address, serve later) and [`app`] (the actix `App`, e.g. for tests;
//! its route tables are [`public`] and [`protected`]).

// The config is the whole server's (the actors read it too), so it lives at
// the crate root; the API's entry points take it, hence the re-export.
pub use crate::config;

// Imports inside `src/api/` go one way: `error`, `types`, `state` and
// `params` at the bottom, then `generation`, `encode`, `job`, the handlers
// (`completions`, `sse`, `ws`, `misc`, `static_files`) and `middleware`,
// and `server` on top, which nothing imports back.
pub mod completions;
pub mod encode;
pub mod error;
pub mod generation;
pub mod job;
pub mod middleware;
pub mod misc;
pub mod params;
pub mod server;
pub mod sse;
pub mod state;
pub mod static_files;
pub mod types;
pub mod ws;

pub use config::{ConfigError, ServeArgs, ServerConfig};
pub use error::ApiError;
pub use server::{app, bind, protected, public, run_server};
pub use state::ApiState;

#[cfg(test)]
mod layering;
