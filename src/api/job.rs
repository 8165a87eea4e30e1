//! The one runner of a completion job, for HTTP (`completions.rs`) and the
//! WebSocket (`ws.rs`) alike: validate the body, check the model is ready,
//! submit every choice, and pair the running [`Generation`] with its
//! [`Encoder`]. A [`Job`] then gives its chunks in OpenAI's order (opening,
//! one per event that shows something, the usage chunk) or the whole
//! response; how they reach the client (SSE events, WebSocket frames, one
//! JSON body) is the caller's.

use serde_json::{Map, Value};

use super::encode::Encoder;
use super::error::ApiError;
use super::generation::Generation;
use super::params::{parse_completion_request, Endpoint};
use super::state::{ensure_ready, ApiState};
use crate::backend::Event;

/// A submitted request: its choices running, its encoder ready.
pub struct Job {
    generation: Generation,
    encoder: Encoder,
    stream: bool,
}

/// Validates `body` for `endpoint` (400/404 before anything else, even
/// while the model loads), then checks readiness (503) and submits every
/// choice as one group (429, 400 or 503 when refused).
///
/// `force_stream` is for the WebSocket, where every answer streams.
pub async fn start(
    state: &ApiState,
    endpoint: Endpoint,
    body: Map<String, Value>,
    force_stream: bool,
) -> Result<Job, ApiError> {
    let card = state.backend.model();
    let job = parse_completion_request(endpoint, body, &card.id, force_stream)?;
    ensure_ready(state)?;
    let generation = Generation::start(state.backend.clone(), &job).await?;
    let encoder = Encoder::new(&job, &card);
    tracing::debug!(
        id = encoder.id(),
        choices = job.num_choices(),
        stream = job.stream,
        "request accepted"
    );
    Ok(Job {
        generation,
        encoder,
        stream: job.stream,
    })
}

impl Job {
    /// The response id (for logs).
    pub fn id(&self) -> &str {
        self.encoder.id()
    }

    /// Whether the client asked for a stream.
    pub fn streams(&self) -> bool {
        self.stream
    }

    /// The chunks sent before any event.
    pub fn opening(&self) -> Vec<String> {
        self.encoder.opening()
    }

    /// The next event of any choice, or `None` once every choice is done.
    /// Cancel-safe (usable in `select!`).
    pub async fn next_event(&mut self) -> Option<(usize, Event)> {
        self.generation.next().await
    }

    /// The chunk an event shows, if any; an engine error comes back as `Err`
    /// (send it; nothing follows it).
    pub fn encode(&mut self, index: usize, event: Event) -> Result<Option<String>, ApiError> {
        self.encoder.chunk(index, event)
    }

    /// The next chunk, skipping events that show nothing; `Ok(None)` once
    /// every choice finished.
    pub async fn next_chunk(&mut self) -> Result<Option<String>, ApiError> {
        while let Some((index, event)) = self.next_event().await {
            if let Some(chunk) = self.encode(index, event)? {
                return Ok(Some(chunk));
            }
        }
        Ok(None)
    }

    /// The usage chunk after the last event, when the client asked for it.
    pub fn closing(&self) -> Option<String> {
        self.encoder.closing()
    }

    /// Runs the request to its end: the whole response's JSON.
    pub async fn whole(self) -> Result<String, ApiError> {
        self.encoder.collect(self.generation).await
    }
}
