//! API keys over real sockets, against the real `wgserve serve` on the
//! default model: every path that is not the page or `/health` needs the
//! key, however it is spelled. actix routes on the percent-decoded path, so
//! each probe below is sent byte for byte as written (no client
//! normalisation) and must be refused without the key; with the key the
//! same request must work where the route exists (and be a JSON 404 where
//! it does not). A check that looked at the raw path let `/%761/...` through.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const KEY: &str = "sekret";

fn server() -> &'static ServerProcess {
    static SERVER: OnceLock<ServerProcess> = OnceLock::new();
    SERVER.get_or_init(|| {
        let model = default_model();
        assert!(
            model.is_file(),
            "{} is missing: run scripts/setup",
            model.display()
        );
        let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web");
        let args: Vec<String> = [
            "--model",
            model.to_str().unwrap(),
            "--web-dir",
            web.to_str().unwrap(),
            "--api-key",
            KEY,
            "--max-model-len",
            "512",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        serve_ready(&args, "auth-server.log", Duration::from_secs(300))
            .unwrap_or_else(|e| panic!("{e}"))
    })
}

fn chat() -> Vec<u8> {
    json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0})
        .to_string()
        .into_bytes()
}

fn completion() -> Vec<u8> {
    json!({"prompt": "The capital of France is", "max_tokens": 1, "temperature": 0})
        .to_string()
        .into_bytes()
}

fn tokenize() -> Vec<u8> {
    json!({"prompt": "hello"}).to_string().into_bytes()
}

fn detokenize() -> Vec<u8> {
    json!({"tokens": [1, 2]}).to_string().into_bytes()
}

fn send(method: &str, path: &str, key: Option<&str>, body: &[u8]) -> Response {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    http(server().addr, method, path, &headers, body)
}

/// What the request must do once it carries the key.
#[derive(Debug, Clone, Copy)]
enum WithKey {
    /// The route exists: 200, and `check` holds on the body.
    Works(fn(&Response)),
    /// No route has this path: OpenAI's JSON 404.
    NotFound,
}

fn is_chat(r: &Response) {
    let v = r.json();
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert!(v["choices"][0]["message"]["content"].is_string(), "{v}");
}

fn is_completion(r: &Response) {
    let v = r.json();
    assert_eq!(v["object"], "text_completion", "{v}");
    assert!(v["choices"][0]["text"].is_string(), "{v}");
}

fn is_model_list(r: &Response) {
    assert_eq!(r.json()["object"], "list", "{}", r.text());
}

fn is_metrics(r: &Response) {
    assert!(r.text().contains("wgserve_"), "{}", r.text());
}

fn is_tokens(r: &Response) {
    assert!(r.json()["tokens"].is_array(), "{}", r.text());
}

fn is_text(r: &Response) {
    assert!(r.json()["prompt"].is_string(), "{}", r.text());
}

#[test]
fn every_spelling_of_a_protected_path_needs_the_key() {
    use WithKey::*;
    let (chat, completion, tokenize, detokenize) = (chat(), completion(), tokenize(), detokenize());
    let probes: Vec<(&str, &str, &[u8], WithKey)> = vec![
        ("POST", "/v1/chat/completions", &chat, Works(is_chat)),
        // Percent-encoded letters in each segment: actix decodes them.
        ("POST", "/%761/chat/completions", &chat, Works(is_chat)),
        ("POST", "/v1/%63hat/completions", &chat, Works(is_chat)),
        ("POST", "/v1/chat/%63ompletions", &chat, Works(is_chat)),
        (
            "POST",
            "/%76%31/%63%68%61%74/completions",
            &chat,
            Works(is_chat),
        ),
        (
            "POST",
            "/%761/completions",
            &completion,
            Works(is_completion),
        ),
        ("GET", "/v1/models", b"", Works(is_model_list)),
        ("GET", "/%761/models", b"", Works(is_model_list)),
        ("GET", "/v1/%6dodels", b"", Works(is_model_list)),
        ("GET", "/metrics", b"", Works(is_metrics)),
        ("GET", "/%6detrics", b"", Works(is_metrics)),
        ("POST", "/tokeniz%65", &tokenize, Works(is_tokens)),
        ("POST", "/%74okenize", &tokenize, Works(is_tokens)),
        ("POST", "/detokeniz%65", &detokenize, Works(is_text)),
        // Spellings no route has: refused first, a 404 with the key.
        ("GET", "//v1/models", b"", NotFound),
        ("GET", "/v1/./models", b"", NotFound),
        ("GET", "/v1/../v1/models", b"", NotFound),
        ("GET", "/v1/models/", b"", NotFound),
        ("GET", "/v1//models", b"", NotFound),
        ("GET", "/v1%2Fmodels", b"", NotFound),
        ("POST", "/v1/chat/completions/", &chat, NotFound),
        ("GET", "/V1/MODELS", b"", NotFound),
        ("GET", "/METRICS", b"", NotFound),
        ("POST", "/TOKENIZE", &tokenize, NotFound),
        ("GET", "/nothing-here", b"", NotFound),
        ("GET", "/../Cargo.toml", b"", NotFound),
        ("GET", "/.env", b"", NotFound),
    ];
    for (method, path, body, with_key) in probes {
        let refused = send(method, path, None, body);
        let e = refused.error(401);
        assert_eq!(e["type"], "authentication_error", "{method} {path}");
        send(method, path, Some("wrong"), body).error(401);
        let r = send(method, path, Some(KEY), body);
        match with_key {
            Works(check) => {
                assert_eq!(r.status, 200, "{method} {path} with the key: {}", r.text());
                check(&r);
            }
            NotFound => {
                r.error(404);
            }
        }
    }
}

#[test]
fn models_retrieve_needs_the_key_and_names_the_model() {
    let list = send("GET", "/v1/models", Some(KEY), b"").json();
    let id = list["data"][0]["id"].as_str().unwrap().to_string();
    send("GET", &format!("/v1/models/{id}"), None, b"").error(401);
    let one = send("GET", &format!("/%761/models/{id}"), Some(KEY), b"");
    assert_eq!(one.status, 200, "{}", one.text());
    assert_eq!(one.json()["id"], Value::from(id.clone()));
    assert_eq!(one.json()["object"], "model");
    let e = send("GET", "/v1/models/no-such-model", Some(KEY), b"").error(404);
    assert_eq!(e["code"], "model_not_found");
}

#[test]
fn the_page_and_health_are_public_by_exact_route() {
    for path in [
        "/",
        "/index.html",
        "/app.js",
        "/%61pp.js",
        "/style.css",
        "/health",
    ] {
        let r = send("GET", path, None, b"");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    }
    // A public route answers only its own methods; the key is not asked for
    // there, but nothing else is reachable through it.
    assert_eq!(send("POST", "/health", None, b"{}").status, 405);
}

#[test]
fn the_websocket_needs_the_key_at_every_spelling() {
    let addr = server().addr;
    for path in ["/v1/ws", "/%761/ws", "/v1/%77s", "/v1/ws?api_key=wrong"] {
        assert_eq!(ws_handshake(addr, path).0, 401, "{path}");
    }
    for path in ["/v1/ws?api_key=sekret", "/%761/%77s?api_key=sekret"] {
        assert_eq!(ws_handshake(addr, path).0, 101, "{path}");
    }
    // The query key is for WebSocket upgrades only (browsers cannot send
    // headers there); a plain request must use the header.
    send("GET", "/v1/models?api_key=sekret", None, b"").error(401);
}

#[test]
fn a_websocket_opened_with_the_key_generates() {
    let (status, r) = ws_handshake(server().addr, "/v1/%77s?api_key=sekret");
    assert_eq!(status, 101);
    let mut ws = Ws::from_stream(r);
    ws.send(&json!({
        "type": "completions.create", "id": "a",
        "request": {"prompt": "The capital of France is", "max_tokens": 2, "temperature": 0},
    }));
    let mut chunks = 0;
    loop {
        let frame = ws.recv();
        match frame["type"].as_str() {
            Some("chunk") => chunks += 1,
            Some("done") => break,
            _ => panic!("unexpected frame {frame}"),
        }
    }
    assert!(chunks >= 1);
}
