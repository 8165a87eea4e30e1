//! Server-Sent Events framing of a streamed completion: `data: {chunk}`
//! events in OpenAI's order, `: keep-alive` comments while nothing else is
//! sent, a `data: {"error":...}` event on a mid-stream failure, and
//! `data: [DONE]` last.
//!
//! The body stream owns the request's [`Job`] (and so its generation), so
//! when the client disconnects and actix drops the body, the request is
//! cancelled at once, without waiting for the next event.

use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::HttpResponse;
use futures_util::stream;

use super::job::Job;

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
    job: Job,
    keepalive: Duration,
    phase: Phase,
}

/// The next piece of the body, or `None` at the end.
async fn step(state: &mut State) -> Option<String> {
    match state.phase {
        Phase::Opening => {
            state.phase = Phase::Running;
            let opening = state.job.opening();
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
            next = state.job.next_event() => next,
            _ = tokio::time::sleep(state.keepalive) => return Some(KEEP_ALIVE.to_string()),
        };
        match next {
            Some((index, ev)) => match state.job.encode(index, ev) {
                Ok(Some(chunk)) => return Some(event(&chunk)),
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(id = state.job.id(), "stream failed: {e}");
                    state.phase = Phase::Done;
                    return Some(event(&e.to_json()) + DONE);
                }
            },
            None => {
                state.phase = Phase::Done;
                let mut tail = state.job.closing().map(|c| event(&c)).unwrap_or_default();
                tail.push_str(DONE);
                return Some(tail);
            }
        }
    }
}

/// A `200 text/event-stream` response streaming `job`.
pub fn response(job: Job, keepalive: Duration) -> HttpResponse {
    let state = State {
        job,
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
