//! Server-Sent Events framing of a streamed completion: `data: {chunk}`
//! events in OpenAI's order, `: keep-alive` comments while nothing else is
//! sent, a `data: {"error":...}` event on a mid-stream failure, and
//! `data: [DONE]` last.
//!
//! The body stream owns the request's [`Generation`], so when the client
//! disconnects and actix drops the body, the request is cancelled at once,
//! without waiting for the next event.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures_util::stream;

use super::encode::Encoder;
use super::generation::Generation;

const DONE: &str = "data: [DONE]\n\n";
const KEEP_ALIVE: &str = ": keep-alive\n\n";

fn event(data: &str) -> String {
    format!("data: {data}\n\n")
}

enum Phase {
    Opening,
    Running,
    Done,
}

struct State {
    generation: Generation,
    encoder: Encoder,
    keepalive: Duration,
    phase: Phase,
}

/// The next piece of the body, or `None` at the end.
async fn step(state: &mut State) -> Option<String> {
    match state.phase {
        Phase::Opening => {
            state.phase = Phase::Running;
            let opening = state.encoder.opening();
            if !opening.is_empty() {
                return Some(opening.iter().map(|c| event(c)).collect());
            }
        }
        Phase::Running => {}
        Phase::Done => return None,
    }
    loop {
        let next = tokio::select! {
            biased;
            next = state.generation.next() => next,
            _ = tokio::time::sleep(state.keepalive) => return Some(KEEP_ALIVE.to_string()),
        };
        match next {
            Some((index, ev)) => match state.encoder.chunk(index, ev).await {
                Ok(Some(chunk)) => return Some(event(&chunk)),
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(id = state.encoder.id(), "stream failed: {e}");
                    state.phase = Phase::Done;
                    return Some(event(&e.to_json()) + DONE);
                }
            },
            None => {
                state.phase = Phase::Done;
                let mut tail = state
                    .encoder
                    .closing()
                    .map(|c| event(&c))
                    .unwrap_or_default();
                tail.push_str(DONE);
                return Some(tail);
            }
        }
    }
}

/// A `200 text/event-stream` response streaming `generation`.
pub fn response(generation: Generation, encoder: Encoder, keepalive: Duration) -> HttpResponse {
    let state = State {
        generation,
        encoder,
        keepalive,
        phase: Phase::Opening,
    };
    let body = stream::unfold(state, |mut state| async move {
        let piece = step(&mut state).await?;
        Some((Ok::<_, actix_web::Error>(Bytes::from(piece)), state))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Proxies such as nginx would otherwise buffer the stream.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body)
}
