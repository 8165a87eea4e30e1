//! The whole server through real HTTP: the built `wgserve` binary serving the
//! real default model (SmolLM2-135M-Instruct) on the Vulkan device, one
//! server for the whole file, driven by the hand-written client in
//! `tests/common`. Checks every endpoint streamed and not, the exact SSE
//! framing, a greedy answer ("Paris"), each class of bad input (and that the
//! server goes on serving), that a client hanging up mid-stream frees its
//! sequence and KV blocks, the WebSocket protocol with two interleaved
//! requests and a cancel, and the official OpenAI Python client
//! (`scripts/test-openai`).
//!
//! lavapipe is slow (about half a second per decode step in a debug build):
//! outputs are a few tokens, and the tests run one at a time.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::*;

/// The server's body limit, small so that the 413 check sends little.
const MAX_BODY_BYTES: usize = 200_000;
const PARIS_PROMPT: &str = "The capital of France is";

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The running server and what it says about its model.
struct Shared {
    addr: SocketAddr,
    model: String,
    max_model_len: u64,
    _server: ServerProcess,
}

/// Starts the server once for the file. It is never dropped (a static), so
/// it stops when this test process ends: see [`ServerProcess`].
fn server() -> &'static Shared {
    static SERVER: OnceLock<Result<Shared, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            set_read_timeout(Duration::from_secs(120));
            let dir = manifest_dir();
            let args = [
                "--model".to_string(),
                default_model().display().to_string(),
                "--web-dir".into(),
                dir.join("web").display().to_string(),
                "--max-body-bytes".into(),
                MAX_BODY_BYTES.to_string(),
            ];
            let server = serve_ready(&args, "server-test.log", Duration::from_secs(180))?;
            eprintln!(
                "server ready on {} (log: {})",
                server.addr,
                server.log.display()
            );
            let models = get(server.addr, "/v1/models").json();
            Ok(Shared {
                addr: server.addr,
                model: models["data"][0]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                max_model_len: models["data"][0]["max_model_len"].as_u64().unwrap_or(0),
                _server: server,
            })
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One test at a time: each keeps the CPU busy, and the metrics checks need
/// the server to themselves.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn chat(content: &str, max_tokens: usize) -> Value {
    json!({"messages": [{"role": "user", "content": content}],
           "max_tokens": max_tokens, "temperature": 0})
}

fn completion(prompt: &str, max_tokens: usize) -> Value {
    json!({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
}

fn streamed(mut body: Value, include_usage: bool) -> Value {
    body["stream"] = json!(true);
    if include_usage {
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

/// Reads a whole stream and checks its framing byte for byte: only
/// `data: <one line>` events and `: keep-alive` comments, each ended by one
/// blank line, `data: [DONE]\n\n` last and nothing after. Returns the JSON
/// chunks in order.
fn sse_chunks(addr: SocketAddr, path: &str, body: &Value) -> Vec<Value> {
    let mut stream = EventStream::post(addr, path, body).unwrap();
    let events = stream.collect().unwrap();
    let raw = String::from_utf8(stream.raw.clone()).unwrap();
    assert_eq!(stream.status, 200, "{raw}");
    let header = |name: &str| {
        stream
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert!(header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
    assert_eq!(
        header("content-encoding"),
        None,
        "an SSE body is never compressed"
    );
    assert!(raw.ends_with("\n\ndata: [DONE]\n\n"), "{raw:?}");
    let rebuilt: String = events.iter().map(|e| format!("{}\n\n", e.text)).collect();
    assert_eq!(rebuilt, raw, "every byte belongs to an event");
    let (last, rest) = events.split_last().unwrap();
    assert!(last.is_done());
    let mut chunks = Vec::new();
    for e in rest {
        if e.text == ": keep-alive" {
            continue;
        }
        assert!(
            !e.text.contains('\n') && !e.text.contains('\r'),
            "{:?}",
            e.text
        );
        let chunk = e
            .json()
            .unwrap_or_else(|| panic!("not a `data: {{json}}` event: {:?}", e.text));
        assert!(chunk.get("error").is_none(), "{chunk}");
        chunks.push(chunk);
    }
    chunks
}

/// A short greedy completion succeeds: the server is still serving.
fn assert_still_serves(addr: SocketAddr, after: &str) {
    let resp = post(addr, "/v1/completions", &completion(PARIS_PROMPT, 1));
    assert_eq!(resp.status, 200, "after {after}: {}", resp.text());
    assert_eq!(
        resp.json()["usage"]["completion_tokens"],
        1,
        "after {after}"
    );
}

/// Polls `/metrics` until `done` holds; returns the last sample.
fn wait_metrics(
    addr: SocketAddr,
    within: Duration,
    what: &str,
    done: impl Fn(&std::collections::HashMap<String, f64>) -> bool,
) -> std::collections::HashMap<String, f64> {
    let deadline = Instant::now() + within;
    loop {
        let m = metrics(addr);
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn idle(m: &std::collections::HashMap<String, f64>) -> bool {
    m["wgserve_requests_running"] == 0.0 && m["wgserve_kv_blocks_used"] == 0.0
}

// ---------------------------------------------------------------- tests

#[test]
fn health_models_metrics_page_tokenize_and_detokenize() {
    let _serial = serial();
    let s = server();
    assert!(!s.model.is_empty());
    let health = get(s.addr, "/health");
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );

    let models = get(s.addr, "/v1/models").json();
    assert_eq!(models["object"], "list");
    let card = &models["data"][0];
    assert_eq!(card["object"], "model");
    assert_eq!(card["owned_by"], "wgserve");
    // The context is SmolLM2's own 8192 tokens, or less where the KV pool
    // cannot hold that much.
    assert_eq!(card["max_model_len"], s.max_model_len);
    assert!((1..=8192).contains(&s.max_model_len), "{card}");

    let m = get(s.addr, "/metrics");
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    assert!(m.text().contains("# TYPE wgserve_kv_blocks_used gauge"));
    let m = metrics(s.addr);
    assert!(m["wgserve_kv_blocks_total"] > 0.0, "{m:?}");
    for name in [
        "wgserve_requests_running",
        "wgserve_requests_waiting",
        "wgserve_generation_tokens_total",
        "wgserve_time_to_first_token_seconds_count",
        "wgserve_steps_total",
    ] {
        assert!(m.contains_key(name), "{name} missing: {m:?}");
    }

    // The chat page is the file on disk, as is.
    let page = get(s.addr, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(
        page.body,
        std::fs::read(manifest_dir().join("web/index.html")).unwrap()
    );

    let tok = post(s.addr, "/tokenize", &json!({"prompt": PARIS_PROMPT})).json();
    let ids = tok["tokens"].as_array().unwrap().clone();
    assert!(!ids.is_empty());
    assert_eq!(tok["count"], ids.len());
    assert_eq!(tok["max_model_len"], s.max_model_len);
    let back = post(
        s.addr,
        "/detokenize",
        &json!({"tokens": ids, "model": s.model}),
    )
    .json();
    assert_eq!(back, json!({"prompt": PARIS_PROMPT}));
    // The chat template wraps a message in more tokens than its text.
    let templated = post(
        s.addr,
        "/tokenize",
        &json!({"messages": [{"role": "user", "content": PARIS_PROMPT}]}),
    )
    .json();
    assert!(
        templated["count"].as_u64().unwrap() > ids.len() as u64 + 2,
        "{templated}"
    );
}

#[test]
fn greedy_completion_says_paris_streamed_or_not() {
    let _serial = serial();
    let s = server();
    let prompt_tokens =
        post(s.addr, "/tokenize", &json!({"prompt": PARIS_PROMPT})).json()["count"].clone();

    let mut body = completion(PARIS_PROMPT, 4);
    body["model"] = json!(s.model);
    let resp = post(s.addr, "/v1/completions", &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], s.model);
    let choice = &v["choices"][0];
    let text = choice["text"].as_str().unwrap().to_string();
    assert!(text.starts_with(" Paris"), "{text:?}");
    assert_eq!(choice["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens);

    // Streamed, the same greedy text arrives in pieces (the prompt now hits
    // the prefix cache: the kernels are batch-invariant, so nothing changes).
    let chunks = sse_chunks(s.addr, "/v1/completions", &streamed(body, true));
    let (usage, chunks) = chunks.split_last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    assert_eq!(usage["usage"]["prompt_tokens"], prompt_tokens);
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("cmpl-"));
    for c in chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "text_completion");
        assert!(c["usage"].is_null(), "{c}");
    }
    let streamed_text: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(streamed_text, text);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
}

#[test]
fn chat_streams_in_openai_order_and_matches_the_whole_answer() {
    let _serial = serial();
    let s = server();
    let question = "Describe the city of Paris in detail.";
    let whole = post(s.addr, "/v1/chat/completions", &chat(question, 8));
    assert_eq!(whole.status, 200, "{}", whole.text());
    let v = whole.json();
    assert_eq!(v["object"], "chat.completion");
    let message = &v["choices"][0]["message"];
    assert_eq!(message["role"], "assistant");
    let answer = message["content"].as_str().unwrap().to_string();
    assert!(!answer.is_empty());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let u = &v["usage"];
    assert_eq!(u["completion_tokens"], 8);
    assert_eq!(
        u["total_tokens"].as_u64(),
        Some(u["prompt_tokens"].as_u64().unwrap() + 8)
    );

    let chunks = sse_chunks(
        s.addr,
        "/v1/chat/completions",
        &streamed(chat(question, 8), true),
    );
    let n = chunks.len();
    assert!(n >= 4, "role, content, finish, usage: {chunks:#?}");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id, "one id for the whole stream");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], s.model);
    }
    // Role first, alone.
    assert_eq!(
        chunks[0]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""},
                "logprobs": null, "finish_reason": null}])
    );
    // Then content only, then the finish, then usage with no choices.
    let content = &chunks[1..n - 2];
    assert!(!content.is_empty() && content.len() <= 8, "{chunks:#?}");
    for c in content {
        let delta = c["choices"][0]["delta"].as_object().unwrap();
        assert_eq!(delta.keys().collect::<Vec<_>>(), ["content"], "{c}");
        assert!(!delta["content"].as_str().unwrap().is_empty(), "{c}");
        assert!(c["choices"][0]["finish_reason"].is_null());
    }
    let text: String = content
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, answer, "greedy: streamed and whole agree");
    assert_eq!(chunks[n - 2]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[n - 2]["choices"][0]["finish_reason"], "length");
    for c in &chunks[..n - 1] {
        assert!(c.get("usage").is_some_and(Value::is_null), "{c}");
    }
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    // The same counts as the whole answer (the cached part may differ: the
    // second run of a prompt finds more of it in the prefix cache).
    let su = &chunks[n - 1]["usage"];
    for key in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(su[key], u[key], "{key}: {su} vs {u}");
    }
    assert!(
        su["prompt_tokens_details"]["cached_tokens"].is_u64(),
        "{su}"
    );

    // Without include_usage there is no usage key and no usage chunk.
    let plain = sse_chunks(
        s.addr,
        "/v1/chat/completions",
        &streamed(chat(question, 2), false),
    );
    assert!(plain.iter().all(|c| c.get("usage").is_none()), "{plain:#?}");
    assert_eq!(
        plain.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
}

#[test]
fn bad_inputs_get_their_status_and_the_server_goes_on() {
    let _serial = serial();
    let s = server();

    let bad = http(
        s.addr,
        "POST",
        "/v1/chat/completions",
        &[("Content-Type", "application/json")],
        b"{\"messages\": [",
    );
    let e = bad.error(400);
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("JSON"), "{e}");
    assert_still_serves(s.addr, "malformed JSON");

    let mut body = chat("hi", 4);
    body["temperature"] = json!(-1);
    let e = post(s.addr, "/v1/chat/completions", &body).error(400);
    assert_eq!(e["param"], "temperature");
    assert_still_serves(s.addr, "temperature -1");

    let mut body = chat("hi", 4);
    body["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    let e = post(s.addr, "/v1/chat/completions", &body).error(400);
    assert_eq!(e["param"], "tools");
    assert_still_serves(s.addr, "tools");

    let mut body = chat("hi", 4);
    body["model"] = json!("gpt-4o");
    let e = post(s.addr, "/v1/chat/completions", &body).error(404);
    assert_eq!(e["code"], "model_not_found");
    assert!(
        e["message"].as_str().unwrap().contains(&s.model),
        "names the served model: {e}"
    );
    assert_still_serves(s.addr, "an unknown model");

    // 9000 ordinary-text token ids (more than the context): refused whole,
    // never cut, with both numbers.
    let len = 9000.max(s.max_model_len as usize + 1);
    let ids: Vec<usize> = (0..len).map(|i| 1000 + (i * 7919) % 40_000).collect();
    let e = post(
        s.addr,
        "/v1/completions",
        &json!({"prompt": ids, "max_tokens": 4}),
    )
    .error(400);
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{len} tokens"))
            && message.contains(&format!("{} tokens", s.max_model_len)),
        "{e}"
    );
    assert_still_serves(s.addr, "a prompt over the context");

    let mut body = chat(&"x".repeat(MAX_BODY_BYTES), 4);
    body["stream"] = json!(true);
    let e = post(s.addr, "/v1/chat/completions", &body).error(413);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains(&MAX_BODY_BYTES.to_string()),
        "{e}"
    );
    assert_still_serves(s.addr, "a body over the limit");

    // Nothing refused took a sequence or a block.
    wait_metrics(s.addr, Duration::from_secs(5), "idle", idle);
}

#[test]
fn a_client_disconnect_mid_stream_frees_its_sequence_and_blocks() {
    let _serial = serial();
    let s = server();
    wait_metrics(s.addr, Duration::from_secs(10), "idle before", idle);
    let before = metrics(s.addr);
    let mut body = streamed(
        chat("Tell me a very long story about a dragon.", 200),
        false,
    );
    body["ignore_eos"] = json!(true);
    let mut stream = EventStream::post(s.addr, "/v1/chat/completions", &body).unwrap();
    assert_eq!(stream.status, 200);
    // Read up to the first generated text, then hang up.
    loop {
        let e = stream
            .next_event()
            .unwrap()
            .expect("the stream ended early");
        let chunk = e.json();
        if chunk.is_some_and(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        }) {
            break;
        }
    }
    let running = metrics(s.addr);
    assert_eq!(running["wgserve_requests_running"], 1.0, "{running:?}");
    assert!(running["wgserve_kv_blocks_used"] >= 1.0, "{running:?}");
    drop(stream);

    let t = Instant::now();
    let after = wait_metrics(
        s.addr,
        Duration::from_secs(5),
        "freed after the disconnect",
        idle,
    );
    eprintln!("freed {:.2?} after the disconnect", t.elapsed());
    assert_eq!(
        after["wgserve_requests_cancelled_total"],
        before["wgserve_requests_cancelled_total"] + 1.0
    );
    // It stopped: far fewer than 200 tokens, and no more come.
    let generated =
        after["wgserve_generation_tokens_total"] - before["wgserve_generation_tokens_total"];
    assert!(generated < 50.0, "{generated} tokens generated");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        metrics(s.addr)["wgserve_generation_tokens_total"],
        after["wgserve_generation_tokens_total"]
    );
    assert_still_serves(s.addr, "a disconnect");
}

#[test]
fn websocket_interleaves_two_requests_and_cancels_one() {
    let _serial = serial();
    let s = server();
    let mut ws = Ws::open(s.addr);
    let mut long = chat("Tell me a very long story about a dragon.", 200);
    long["ignore_eos"] = json!(true);
    ws.send(&json!({"type": "chat.completions.create", "id": "long", "request": long}));
    ws.send(&json!({"type": "completions.create", "id": "short",
                    "request": completion(PARIS_PROMPT, 12)}));

    let text_of = |f: &Value| -> Option<String> {
        let c = &f["data"]["choices"][0];
        c["delta"]["content"]
            .as_str()
            .or_else(|| c["text"].as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let mut frames: Vec<Value> = Vec::new();
    let mut started = std::collections::HashSet::new();
    // Both generate at once: each has text before either is done.
    while started.len() < 2 {
        let f = ws.recv();
        assert_eq!(f["type"], "chunk", "{f}");
        if text_of(&f).is_some() {
            started.insert(f["id"].as_str().unwrap().to_string());
        }
        frames.push(f);
    }
    ws.send(&json!({"type": "cancel", "id": "long"}));
    let mut done = std::collections::HashMap::new();
    while done.len() < 2 {
        let f = ws.recv();
        let id = f["id"].as_str().unwrap().to_string();
        assert!(!done.contains_key(&id), "a frame after `done`: {f}");
        assert_ne!(f["type"], "error", "{f}");
        if f["type"] == "done" {
            done.insert(id, f.clone());
        }
        frames.push(f);
    }
    assert_eq!(done["long"]["cancelled"], true, "{:?}", done["long"]);
    assert!(
        done["short"].get("cancelled").is_none(),
        "{:?}",
        done["short"]
    );

    let short: Vec<&Value> = frames.iter().filter(|f| f["id"] == "short").collect();
    let text: String = short.iter().filter_map(|f| text_of(f)).collect();
    assert!(text.starts_with(" Paris"), "{text:?}");
    let finish = short
        .iter()
        .find_map(|f| f["data"]["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "length", "the short one ran to its 12 tokens");
    let long: Vec<&Value> = frames.iter().filter(|f| f["id"] == "long").collect();
    assert_eq!(long[0]["data"]["choices"][0]["delta"]["role"], "assistant");
    assert!(long
        .iter()
        .all(|f| f["data"]["choices"][0]["finish_reason"].is_null()));

    // The cancelled sequence is gone from the engine; the socket still works.
    wait_metrics(
        s.addr,
        Duration::from_secs(5),
        "idle after the cancel",
        idle,
    );
    ws.send(&json!({"type": "completions.create", "id": "again",
                    "request": completion(PARIS_PROMPT, 2)}));
    loop {
        let f = ws.recv();
        assert_eq!(f["id"], "again", "{f}");
        if f["type"] == "done" {
            break;
        }
    }
}

/// `scripts/test-openai`: the official OpenAI Python client and `curl -N`
/// against the binary on a port of its own.
#[test]
fn official_openai_client() {
    let _serial = serial();
    let dir = manifest_dir();
    let t = Instant::now();
    let out = std::process::Command::new("bash")
        .arg(dir.join("scripts/test-openai"))
        .arg(env!("CARGO_BIN_EXE_wgserve"))
        .current_dir(&dir)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "scripts/test-openai took {:.1?}\n{stdout}\n{stderr}",
        t.elapsed()
    );
    assert!(
        out.status.success(),
        "scripts/test-openai failed ({})",
        out.status
    );
    assert!(
        stdout.contains("test-openai: all checks passed"),
        "{stdout}"
    );
}
