//! Cross-cutting request handling, as `from_fn` middleware: bearer-key
//! authentication, CORS (preflight answers and `Access-Control-Allow-Origin`
//! on responses) and one log line per request. Settings come from the
//! [`ApiState`] in the app data.
//!
//! [`auth`] does not look at the path: `server.rs` wraps it around every
//! route but the public ones, so which requests need a key is decided by the
//! router on the path it actually matched.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse, ResponseError};

use super::error::ApiError;
use super::state::ApiState;

/// Compares without an early exit, so timing does not reveal a key prefix.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request asks for a WebSocket (`Upgrade: websocket`).
fn is_websocket_upgrade(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// The key a request presents: `Authorization: Bearer <key>`, or for a
/// WebSocket upgrade (browsers cannot give those headers) `?api_key=<key>`.
/// Other requests never take the key from the query, where it would end up
/// in access logs and browser history.
fn presented_key(req: &ServiceRequest) -> Option<String> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim().to_string());
    }
    if is_websocket_upgrade(req) {
        let query =
            web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                .ok()?;
        return query.get("api_key").cloned();
    }
    None
}

pub async fn auth(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let keys = match req.app_data::<web::Data<ApiState>>() {
        Some(state) if !state.config.api_keys.is_empty() => state.config.api_keys.clone(),
        _ => return Ok(next.call(req).await?.map_into_left_body()),
    };
    let error = match presented_key(&req) {
        None => ApiError::unauthorized(
            "You did not provide an API key. Send it as `Authorization: Bearer <key>`.",
        ),
        Some(key) if keys.iter().any(|k| same_key(k.as_bytes(), key.as_bytes())) => {
            return Ok(next.call(req).await?.map_into_left_body());
        }
        Some(_) => ApiError::unauthorized("The API key you provided is not valid."),
    };
    Ok(req
        .into_response(error.error_response())
        .map_into_right_body())
}

/// Whether `origin` may call us, and the `Access-Control-Allow-Origin`
/// value to send back.
fn allowed_origin(origins: &[String], origin: &HeaderValue) -> Option<HeaderValue> {
    if origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let origin_str = origin.to_str().ok()?;
    origins
        .iter()
        .any(|o| o.trim_end_matches('/') == origin_str)
        .then(|| origin.clone())
}

pub async fn cors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let origins = match req.app_data::<web::Data<ApiState>>() {
        Some(state) if !state.config.cors_origins.is_empty() => state.config.cors_origins.clone(),
        _ => return Ok(next.call(req).await?.map_into_left_body()),
    };
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let allow = allowed_origin(&origins, &origin);
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        // Answered here, before auth: browsers send no credentials on a preflight.
        let mut resp = HttpResponse::NoContent();
        resp.insert_header((header::VARY, "Origin"));
        if let Some(allow) = allow {
            let headers = req
                .headers()
                .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("authorization, content-type"));
            resp.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, allow))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, headers))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"));
        }
        return Ok(req.into_response(resp.finish()).map_into_right_body());
    }
    let mut res = next.call(req).await?;
    if let Some(allow) = allow {
        let headers = res.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after"),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    Ok(res.map_into_left_body())
}

/// One line per request: method, path, status, time to the response head
/// (a stream's body goes on after it).
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_string();
    let res = next.call(req).await?;
    tracing::info!(
        target: "wgserve::http",
        "{method} {path} {} {:.1}ms",
        res.status().as_u16(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        assert!(same_key(b"abc", b"abc"));
        assert!(!same_key(b"abc", b"abd"));
        assert!(!same_key(b"abc", b"abcd"));
    }

    #[test]
    fn origins_match_exactly_or_by_star() {
        let o = HeaderValue::from_static("http://a.example");
        assert_eq!(allowed_origin(&["*".into()], &o).unwrap(), "*");
        assert_eq!(
            allowed_origin(&["http://a.example/".into()], &o).unwrap(),
            "http://a.example"
        );
        assert!(allowed_origin(&["http://b.example".into()], &o).is_none());
    }
}
