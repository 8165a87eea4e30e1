//! `GET /v1/ws`: the completion API over one WebSocket. The client sends
//! `{"type":"chat.completions.create"|"completions.create","id":..,"request":{..}}`
//! (the HTTP body, always streamed) and `{"type":"cancel","id":..}`; the
//! server answers each request with `{"type":"chunk","id","data":{chunk}}`
//! frames (the SSE chunks), then `{"type":"done","id"}`, or with
//! `{"type":"error","id","status","error":{..}}`. Errors never close the
//! socket; any number of requests run at once; closing the socket cancels
//! them all.
//!
//! Each request runs as its own task holding its `job::Job` (started by the
//! same runner as HTTP's); aborting the task (cancel message, socket gone)
//! drops it, which cancels it.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws::{AggregatedMessage, AggregatedMessageStream, Session};
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

use super::error::ApiError;
use super::job;
use super::params::Endpoint;
use super::state::ApiState;

pub async fn websocket(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::bad_request(format!("This endpoint needs a WebSocket upgrade: {e}"))
    })?;
    let limit = state.config.max_body_bytes;
    let stream = stream
        .max_frame_size(limit)
        .aggregate_continuations()
        .max_continuation_size(limit);
    actix_web::rt::spawn(run_socket(state.into_inner(), session, stream));
    Ok(response)
}

fn error_frame(id: &Value, e: &ApiError) -> String {
    json!({"type": "error", "id": id, "status": e.status.as_u16(), "error": e.object()}).to_string()
}

fn chunk_frame(id: &str, chunk: &str) -> String {
    // The chunk is already JSON; splice it in rather than parse it again.
    format!(
        r#"{{"type":"chunk","id":{},"data":{chunk}}}"#,
        Value::from(id)
    )
}

fn done_frame(id: &str, cancelled: bool) -> String {
    if cancelled {
        json!({"type": "done", "id": id, "cancelled": true}).to_string()
    } else {
        json!({"type": "done", "id": id}).to_string()
    }
}

/// Reads client frames until the socket closes, then cancels what is left.
async fn run_socket(
    state: Arc<ApiState>,
    mut session: Session,
    mut stream: AggregatedMessageStream,
) {
    let mut tasks: HashMap<String, JoinHandle<()>> = HashMap::new();
    while let Some(message) = stream.recv().await {
        let reply = match message {
            Ok(AggregatedMessage::Text(text)) => {
                tasks.retain(|_, task| !task.is_finished());
                handle_text(&state, &session, &mut tasks, &text)
            }
            Ok(AggregatedMessage::Binary(_)) => Some(error_frame(
                &Value::Null,
                &ApiError::bad_request("Send requests as JSON text frames."),
            )),
            Ok(AggregatedMessage::Ping(bytes)) => {
                if session.pong(&bytes).await.is_err() {
                    break;
                }
                None
            }
            Ok(AggregatedMessage::Pong(_)) => None,
            Ok(AggregatedMessage::Close(_)) => break,
            Err(e) => {
                tracing::debug!("websocket protocol error: {e}");
                break;
            }
        };
        if let Some(reply) = reply {
            if session.text(reply).await.is_err() {
                break;
            }
        }
    }
    for (_, task) in tasks.drain() {
        task.abort();
    }
    let _ = session.close(None).await;
}

/// Acts on one client message; returns the frame to answer with, if any
/// (a started request answers from its own task).
fn handle_text(
    state: &Arc<ApiState>,
    session: &Session,
    tasks: &mut HashMap<String, JoinHandle<()>>,
    text: &str,
) -> Option<String> {
    let mut message = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => map,
        Ok(_) => {
            return Some(error_frame(
                &Value::Null,
                &ApiError::bad_request("A message must be a JSON object."),
            ))
        }
        Err(e) => {
            return Some(error_frame(
                &Value::Null,
                &ApiError::bad_request(format!("We could not parse your message as JSON: {e}.")),
            ))
        }
    };
    let raw_id = message.remove("id").unwrap_or(Value::Null);
    let kind = message.remove("type").unwrap_or(Value::Null);
    let Some(id) = raw_id
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
    else {
        return Some(error_frame(
            &raw_id,
            &ApiError::invalid(
                "id",
                "Every message needs an `id`: a non-empty string of your choice.",
            ),
        ));
    };
    let endpoint =
        match kind.as_str() {
            Some("chat.completions.create") => Endpoint::Chat,
            Some("completions.create") => Endpoint::Completion,
            Some("cancel") => {
                // A cancel racing the request's end finds nothing: not an error.
                let task = tasks.remove(&id)?;
                let was_running = !task.is_finished();
                task.abort();
                return was_running.then(|| done_frame(&id, true));
            }
            _ => return Some(error_frame(
                &raw_id,
                &ApiError::invalid(
                    "type",
                    "`type` must be `chat.completions.create`, `completions.create` or `cancel`.",
                ),
            )),
        };
    if tasks.contains_key(&id) {
        return Some(error_frame(
            &raw_id,
            &ApiError::invalid(
                "id",
                format!("A request with id `{id}` is still running; use another id."),
            ),
        ));
    }
    let request = match message.remove("request") {
        Some(Value::Object(map)) => map,
        _ => {
            return Some(error_frame(
                &raw_id,
                &ApiError::invalid(
                    "request",
                    "`request` must be the request body, a JSON object.",
                ),
            ))
        }
    };
    if let Some(extra) = message.keys().next() {
        return Some(error_frame(
            &raw_id,
            &ApiError::unsupported(extra.clone(), format!("Unknown message field `{extra}`.")),
        ));
    }
    let task = actix_web::rt::spawn(run_request(
        state.clone(),
        session.clone(),
        id.clone(),
        endpoint,
        request,
    ));
    tasks.insert(id, task);
    None
}

/// One request's life on the socket: validate, submit, stream, finish.
async fn run_request(
    state: Arc<ApiState>,
    mut session: Session,
    id: String,
    endpoint: Endpoint,
    request: Map<String, Value>,
) {
    let mut job = match job::start(&state, endpoint, request, true).await {
        Ok(job) => job,
        Err(e) => {
            let _ = session.text(error_frame(&Value::from(id), &e)).await;
            return;
        }
    };
    for chunk in job.opening() {
        if session.text(chunk_frame(&id, &chunk)).await.is_err() {
            return;
        }
    }
    loop {
        let frame = match job.next_chunk().await {
            Ok(Some(chunk)) => chunk_frame(&id, &chunk),
            Ok(None) => break,
            Err(e) => {
                let _ = session
                    .text(error_frame(&Value::from(id.as_str()), &e))
                    .await;
                return;
            }
        };
        if session.text(frame).await.is_err() {
            return;
        }
    }
    if let Some(chunk) = job.closing() {
        if session.text(chunk_frame(&id, &chunk)).await.is_err() {
            return;
        }
    }
    let _ = session.text(done_frame(&id, false)).await;
}
