//! The two OpenAI generation endpoints, `POST /v1/chat/completions` and
//! `POST /v1/completions`: read the body, start the job (`job.rs`), then
//! answer with one JSON object or an SSE stream.

use actix_web::{web, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::job;
use super::params::{parse_object, read_body, Endpoint};
use super::sse;
use super::state::ApiState;

pub async fn chat_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    complete(Endpoint::Chat, req, payload, state).await
}

pub async fn completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    complete(Endpoint::Completion, req, payload, state).await
}

async fn complete(
    endpoint: Endpoint,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let map = parse_object(&body)?;
    let job = job::start(&state, endpoint, map, false).await?;
    if job.streams() {
        Ok(sse::response(job, state.keepalive()))
    } else {
        let json = job.whole().await?;
        Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(json))
    }
}
