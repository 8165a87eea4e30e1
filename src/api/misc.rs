//! The small endpoints: `GET /v1/models`, `GET /v1/models/{id}`,
//! `GET /health`, `GET /metrics`
//! (Prometheus text exposition of the runtime's [`MetricsSnapshot`]),
//! `POST /tokenize` and `POST /detokenize`.

use std::fmt::Write as _;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::params::{parse_detokenize_request, parse_object, parse_tokenize_request, read_body};
use super::state::{ensure_ready, ApiState};
use crate::backend::MetricsSnapshot;

/// The served model as OpenAI's model object.
fn model_object(state: &ApiState) -> serde_json::Value {
    let card = state.backend.model();
    json!({
        "id": card.id,
        "object": "model",
        "created": card.created,
        "owned_by": "wgserve",
        "max_model_len": card.max_model_len,
    })
}

pub async fn models(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    // The chat page shows "loading" on 503 and polls again.
    ensure_ready(&state)?;
    Ok(HttpResponse::Ok().json(json!({
        "object": "list",
        "data": [model_object(&state)],
    })))
}

/// `GET /v1/models/{id}` (the SDK's `models.retrieve`): the served model,
/// or OpenAI's 404 `model_not_found` for any other id.
pub async fn model(
    state: web::Data<ApiState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    ensure_ready(&state)?;
    let served = state.backend.model().id;
    if *id != served {
        return Err(ApiError::model_not_found(&id, &served));
    }
    Ok(HttpResponse::Ok().json(model_object(&state)))
}

pub async fn health(state: web::Data<ApiState>) -> HttpResponse {
    // A failed runtime is not coming back in this process (it exits to be
    // restarted): say why, so the orchestrator's log shows it.
    if let Some(reason) = state.backend.failure() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"status": "failed", "reason": reason}));
    }
    if state.backend.ready() {
        HttpResponse::Ok().json(json!({"status": "ok"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "loading"}))
    }
}

pub async fn metrics(state: web::Data<ApiState>) -> HttpResponse {
    let snapshot = state.backend.metrics().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(render_metrics(&snapshot))
}

pub async fn tokenize(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let card = state.backend.model();
    let prompt = parse_tokenize_request(parse_object(&body)?, &card.id)?;
    ensure_ready(&state)?;
    let tokens = state.backend.tokenize(prompt).await?;
    Ok(HttpResponse::Ok().json(json!({
        "count": tokens.len(),
        "max_model_len": card.max_model_len,
        "tokens": tokens,
    })))
}

pub async fn detokenize(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let body = read_body(&req, payload, state.config.max_body_bytes).await?;
    let ids = parse_detokenize_request(parse_object(&body)?, &state.backend.model().id)?;
    ensure_ready(&state)?;
    let text = state.backend.detokenize(ids).await?;
    Ok(HttpResponse::Ok().json(json!({ "prompt": text })))
}

/// Prometheus text format 0.0.4: every name prefixed `wgserve_`, counters
/// ending in `_total`, latencies as summaries of `_sum` and `_count`.
/// The gauges: name, help, value.
fn gauges(m: &MetricsSnapshot) -> [(&'static str, &'static str, usize); 4] {
    [
        (
            "requests_running",
            "Sequences being generated.",
            m.requests_running,
        ),
        (
            "requests_waiting",
            "Requests queued for admission.",
            m.requests_waiting,
        ),
        (
            "kv_blocks_used",
            "KV-cache blocks in use.",
            m.kv_blocks_used,
        ),
        (
            "kv_blocks_total",
            "KV-cache blocks in the pool.",
            m.kv_blocks_total,
        ),
    ]
}

/// The counters: name, help, value.
fn counters(m: &MetricsSnapshot) -> [(&'static str, &'static str, u64); 9] {
    [
        (
            "preemptions_total",
            "Sequences preempted (recomputed later) for lack of KV blocks.",
            m.preemptions_total,
        ),
        (
            "prefix_cache_queries_total",
            "Prompt blocks looked up in the prefix cache.",
            m.prefix_cache_queries_total,
        ),
        (
            "prefix_cache_hits_total",
            "Prompt blocks found in the prefix cache.",
            m.prefix_cache_hits_total,
        ),
        (
            "prompt_tokens_total",
            "Prompt tokens processed.",
            m.prompt_tokens_total,
        ),
        (
            "generation_tokens_total",
            "Tokens generated.",
            m.generation_tokens_total,
        ),
        (
            "requests_finished_total",
            "Requests that finished (stop or length).",
            m.requests_finished_total,
        ),
        (
            "requests_cancelled_total",
            "Requests cancelled by their client.",
            m.requests_cancelled_total,
        ),
        (
            "requests_failed_total",
            "Requests that failed in the engine.",
            m.requests_failed_total,
        ),
        ("steps_total", "Engine steps run.", m.steps_total),
    ]
}

/// The summaries: name, help, sum, count.
fn summaries(m: &MetricsSnapshot) -> [(&'static str, &'static str, f64, u64); 2] {
    [
        (
            "time_to_first_token_seconds",
            "Time from arrival to the first generated token.",
            m.ttft_seconds_sum,
            m.ttft_seconds_count,
        ),
        (
            "time_per_output_token_seconds",
            "Time between generated tokens after the first.",
            m.tpot_seconds_sum,
            m.tpot_seconds_count,
        ),
    ]
}

pub fn render_metrics(m: &MetricsSnapshot) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP wgserve_{name} {help}");
        let _ = writeln!(out, "# TYPE wgserve_{name} {kind}");
        let _ = writeln!(out, "wgserve_{name} {value}");
    };
    for (name, help, value) in gauges(m) {
        metric(name, "gauge", help, value.to_string());
    }
    let usage = if m.kv_blocks_total == 0 {
        0.0
    } else {
        m.kv_blocks_used as f64 / m.kv_blocks_total as f64
    };
    metric(
        "kv_cache_usage_ratio",
        "gauge",
        "Fraction of KV-cache blocks in use.",
        usage.to_string(),
    );
    for (name, help, value) in counters(m) {
        metric(name, "counter", help, value.to_string());
    }
    for (name, help, sum, count) in summaries(m) {
        let _ = writeln!(out, "# HELP wgserve_{name} {help}");
        let _ = writeln!(out, "# TYPE wgserve_{name} summary");
        let _ = writeln!(out, "wgserve_{name}_sum {sum}");
        let _ = writeln!(out, "wgserve_{name}_count {count}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_has_help_and_type_and_parses() {
        let m = MetricsSnapshot {
            requests_running: 2,
            kv_blocks_used: 5,
            kv_blocks_total: 20,
            generation_tokens_total: 42,
            ttft_seconds_sum: 1.5,
            ttft_seconds_count: 3,
            ..MetricsSnapshot::default()
        };
        let text = render_metrics(&m);
        let mut typed = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                typed.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (name, value) = line.split_once(' ').unwrap();
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            assert!(name.starts_with("wgserve_"), "{line}");
            let family = name.trim_end_matches("_sum").trim_end_matches("_count");
            let kind = typed
                .get(name)
                .or_else(|| typed.get(family))
                .unwrap_or_else(|| panic!("no TYPE for {name}"));
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(text.contains("wgserve_requests_running 2\n"));
        assert!(text.contains("wgserve_generation_tokens_total 42\n"));
        assert!(text.contains("wgserve_kv_cache_usage_ratio 0.25\n"));
        assert!(text.contains("wgserve_time_to_first_token_seconds_sum 1.5\n"));
        assert!(text.contains("wgserve_time_to_first_token_seconds_count 3\n"));
    }
}
