//! The HTTP and WebSocket API through real sockets, against a mock
//! `Backend` that plays scripted events: every endpoint's JSON shape, the
//! SSE order (role first, finish, usage, `[DONE]`), keep-alives, `n`,
//! every error class with its status and OpenAI error JSON, auth, CORS,
//! static files, the WebSocket protocol, and cancellation on disconnect.
//!
//! The client side is `tests/common` on `std::net::TcpStream` (HTTP/1.1
//! with chunked decoding, and a minimal RFC 6455 client), so the tests see
//! the bytes a real client would.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::mpsc;

use wgserve::api::ServerConfig;
use wgserve::backend::{
    Accepted, Backend, BackendError, BoxFuture, Event, FinishReason, GenerateRequest, Logprobs,
    MetricsSnapshot, ModelCard, PromptInput, RequestId, ScoredToken, Usage,
};

use common::*;

// ---------------------------------------------------------------- mock backend

const MODEL: &str = "mock-model";
const WORDS: [&str; 3] = ["Hello", " world", "!"];

/// Plays a script chosen by a keyword in the prompt:
/// `QUEUEFULL`, `INVALID`, `ENGINE` (one delta, then an engine error),
/// `WAIT` (first token after 2.5 s), `SLOW` (a token every 100 ms, 100 of
/// them), `THINK` (reasoning "Let me think." before the answer); anything
/// else gets "Hello world!" (cut by `max_tokens`).
#[derive(Default)]
struct MockState {
    not_ready: AtomicBool,
    /// What `failure()` says (the runtime failed for good).
    failure: Mutex<Option<String>>,
    next_id: AtomicU64,
    submitted: Mutex<Vec<(RequestId, GenerateRequest)>>,
    cancelled: Mutex<Vec<RequestId>>,
    /// Requests whose receiver was dropped before they finished.
    dropped: Mutex<Vec<RequestId>>,
}

fn prompt_text(p: &PromptInput) -> String {
    match p {
        PromptInput::Chat(m) => m
            .iter()
            .map(|m| m.content.clone())
            .collect::<Vec<_>>()
            .join("\n"),
        PromptInput::Text(t) => t.clone(),
        PromptInput::Ids(ids) => format!("{ids:?}"),
    }
}

/// The mock vocabulary: ids 1 to 3 are [`WORDS`], any other id is `<id>`.
fn token_text(id: u32) -> String {
    match id {
        1..=3 => WORDS[id as usize - 1].to_string(),
        _ => format!("<{id}>"),
    }
}

/// Logprobs as the runtime sends them: every token named by its text.
fn logprobs_for(req: &GenerateRequest, id: u32) -> Vec<Logprobs> {
    let scored = |id: u32, logprob: f32| ScoredToken {
        id,
        text: token_text(id),
        logprob,
    };
    match req.logprobs {
        None => Vec::new(),
        Some(k) => vec![Logprobs {
            token: scored(id, -0.25),
            top: (0..k as u32)
                .map(|j| scored(id + j, -0.25 - j as f32))
                .collect(),
        }],
    }
}

/// The backend handle; clones share one [`MockState`].
#[derive(Default, Clone)]
struct Mock(Arc<MockState>);

impl std::ops::Deref for Mock {
    type Target = MockState;
    fn deref(&self) -> &MockState {
        &self.0
    }
}

impl MockState {
    fn submissions(&self) -> Vec<GenerateRequest> {
        self.submitted
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Waits until `id` was cancelled or had its receiver dropped.
    fn wait_cancelled(&self, id: RequestId, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.cancelled.lock().unwrap().contains(&id)
                || self.dropped.lock().unwrap().contains(&id)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn id_of(&self, keyword: &str) -> Option<RequestId> {
        self.submitted
            .lock()
            .unwrap()
            .iter()
            .find(|(_, r)| prompt_text(&r.prompt).contains(keyword))
            .map(|(id, _)| *id)
    }
}

async fn play(
    mock: Arc<MockState>,
    id: RequestId,
    req: GenerateRequest,
    tx: mpsc::UnboundedSender<Event>,
) {
    let text = prompt_text(&req.prompt);
    let usage = |completion_tokens| Usage {
        prompt_tokens: 5,
        completion_tokens,
        cached_tokens: 2,
        reasoning_tokens: 0,
    };
    let send = |ev: Event| tx.send(ev).is_ok();
    let pause = |ms: u64| {
        let tx = tx.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => true,
                _ = tx.closed() => false,
            }
        }
    };
    let delta = |text: &str, tok: u32| Event::Delta {
        text: text.to_string(),
        reasoning: String::new(),
        token_ids: vec![tok],
        logprobs: logprobs_for(&req, tok),
    };
    let finished = if text.contains("ENGINE") {
        send(delta("Hel", 1))
            && send(Event::Error(BackendError::Engine(
                "the GPU went away".into(),
            )))
    } else if text.contains("SLOW") {
        let mut ok = true;
        for i in 0..100 {
            ok = pause(100).await && send(delta("x", 100 + i));
            if !ok {
                break;
            }
        }
        ok && send(Event::Finished {
            reason: FinishReason::Length,
            usage: usage(100),
        })
    } else {
        if text.contains("WAIT") && !pause(2500).await {
            mock.dropped.lock().unwrap().push(id);
            return;
        }
        let max = req.max_tokens.unwrap_or(usize::MAX).min(WORDS.len());
        let mut ok = true;
        if text.contains("THINK") {
            // A reasoning model thinks first (harmony's analysis channel).
            for (i, r) in ["Let me", " think."].iter().enumerate() {
                ok = ok
                    && send(Event::Delta {
                        text: String::new(),
                        reasoning: r.to_string(),
                        token_ids: vec![50 + i as u32],
                        logprobs: logprobs_for(&req, 50 + i as u32),
                    });
            }
        }
        for (i, w) in WORDS.iter().take(max).enumerate() {
            // An empty delta (a token completing no character) must not show.
            ok = ok
                && send(Event::Delta {
                    text: String::new(),
                    reasoning: String::new(),
                    token_ids: vec![],
                    logprobs: vec![],
                });
            ok = ok && send(delta(w, i as u32 + 1));
        }
        let reason = if max < WORDS.len() {
            FinishReason::Length
        } else {
            FinishReason::Stop
        };
        ok && send(Event::Finished {
            reason,
            usage: usage(max),
        })
    };
    if !finished {
        mock.dropped.lock().unwrap().push(id);
    }
}

impl Mock {
    fn submit_one(&self, request: GenerateRequest) -> Result<Accepted, BackendError> {
        let text = prompt_text(&request.prompt);
        if text.contains("QUEUEFULL") {
            return Err(BackendError::QueueFull(64));
        }
        if text.contains("INVALID") {
            return Err(BackendError::InvalidRequest(
                "the prompt has 9000 tokens but the context window is 2048".into(),
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        self.submitted.lock().unwrap().push((id, request.clone()));
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(play(self.0.clone(), id, request, tx));
        Ok((id, rx))
    }
}

/// The mock's admission limit: a group of more choices is refused whole.
const MOCK_MAX_QUEUE: usize = 16;

impl Backend for Mock {
    fn submit_group(
        &self,
        requests: Vec<GenerateRequest>,
    ) -> BoxFuture<'_, Result<Vec<Accepted>, BackendError>> {
        Box::pin(async move {
            if requests.len() > MOCK_MAX_QUEUE {
                return Err(BackendError::TooManyChoices {
                    choices: requests.len(),
                    max_queue: MOCK_MAX_QUEUE,
                });
            }
            // All or none: on a refusal the accepted receivers drop here,
            // which ends their scripts as a real runtime would cancel them.
            requests
                .into_iter()
                .map(|r| self.submit_one(r))
                .collect::<Result<Vec<_>, _>>()
        })
    }

    fn cancel(&self, id: RequestId) -> BoxFuture<'_, ()> {
        self.cancelled.lock().unwrap().push(id);
        Box::pin(async {})
    }

    fn tokenize(&self, prompt: PromptInput) -> BoxFuture<'_, Result<Vec<u32>, BackendError>> {
        Box::pin(async move { Ok(prompt_text(&prompt).bytes().map(u32::from).collect()) })
    }

    fn detokenize(&self, ids: Vec<u32>) -> BoxFuture<'_, Result<String, BackendError>> {
        Box::pin(async move { Ok(ids.iter().map(|&id| token_text(id)).collect()) })
    }

    fn metrics(&self) -> BoxFuture<'_, MetricsSnapshot> {
        Box::pin(async {
            MetricsSnapshot {
                requests_running: 1,
                requests_waiting: 2,
                kv_blocks_used: 3,
                kv_blocks_total: 100,
                generation_tokens_total: 77,
                ttft_seconds_sum: 0.5,
                ttft_seconds_count: 2,
                ..MetricsSnapshot::default()
            }
        })
    }

    fn model(&self) -> ModelCard {
        ModelCard {
            id: MODEL.into(),
            path: "models/mock.gguf".into(),
            max_model_len: 2048,
            adapters: vec!["mock".into()],
            created: 1_700_000_000,
        }
    }

    fn ready(&self) -> bool {
        !self.not_ready.load(Ordering::SeqCst)
    }

    fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------- server

struct Server {
    addr: SocketAddr,
    mock: Mock,
    _web: tempfile::TempDir,
}

fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Server {
    let web = tempfile::tempdir().unwrap();
    std::fs::write(
        web.path().join("index.html"),
        "<!doctype html><title>chat</title>",
    )
    .unwrap();
    std::fs::write(web.path().join("app.js"), "export const x = 1;").unwrap();
    std::fs::write(web.path().join("style.css"), "body{}").unwrap();
    let mut config = ServerConfig {
        port: 0,
        keepalive_secs: 1,
        web_dir: web.path().to_path_buf(),
        ..ServerConfig::default()
    };
    tweak(&mut config);
    let mock = Mock::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let server_mock = mock.clone();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let backend: Arc<dyn Backend> = Arc::new(server_mock);
            let (server, addrs) = wgserve::api::bind(config, backend).unwrap();
            tx.send(addrs[0]).unwrap();
            server.await.unwrap();
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    Server {
        addr,
        mock,
        _web: web,
    }
}

fn chat_body(content: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}]})
}

// ---------------------------------------------------------------- tests

#[test]
fn chat_completion_has_openai_shape() {
    let s = start(|_| {});
    let resp = post(s.addr, "/v1/chat/completions", &chat_body("hi"));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], MODEL);
    let c = &v["choices"][0];
    assert_eq!(c["index"], 0);
    assert_eq!(
        c["message"],
        json!({"role": "assistant", "content": "Hello world!"})
    );
    assert_eq!(c["finish_reason"], "stop");
    assert!(c["logprobs"].is_null());
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
               "prompt_tokens_details": {"cached_tokens": 2},
               "completion_tokens_details": {"reasoning_tokens": 0}})
    );
    // The backend got the chat as messages.
    let sub = s.mock.submissions();
    assert_eq!(sub.len(), 1);
    assert!(
        matches!(&sub[0].prompt, PromptInput::Chat(m) if m[0].content == "hi" && m[0].role == "user")
    );
}

#[test]
fn chat_logprobs_and_max_tokens_length() {
    let s = start(|_| {});
    let mut body = chat_body("hi");
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    body["max_completion_tokens"] = json!(2);
    let v = post(s.addr, "/v1/chat/completions", &body).json();
    let c = &v["choices"][0];
    assert_eq!(c["message"]["content"], "Hello world");
    assert_eq!(c["finish_reason"], "length");
    let content = c["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 2);
    assert_eq!(content[0]["token"], "Hello");
    assert_eq!(content[0]["logprob"], -0.25);
    assert_eq!(content[0]["bytes"], json!(b"Hello".to_vec()));
    assert_eq!(content[1]["top_logprobs"][0]["token"], " world");
    assert_eq!(content[1]["top_logprobs"][1]["token"], "!");
    assert_eq!(content[1]["top_logprobs"][1]["logprob"], -1.25);
    assert_eq!(s.mock.submissions()[0].logprobs, Some(2));
    assert_eq!(s.mock.submissions()[0].max_tokens, Some(2));
}

#[test]
fn text_completion_with_two_prompts_and_logprobs() {
    let s = start(|_| {});
    let v = post(
        s.addr,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": ["a", "b"], "logprobs": 1, "max_tokens": 3, "seed": 7}),
    )
    .json();
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"));
    assert_eq!(v["object"], "text_completion");
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["text"], "Hello world!");
        assert_eq!(c["finish_reason"], "stop");
        let lp = &c["logprobs"];
        assert_eq!(lp["tokens"], json!(["Hello", " world", "!"]));
        assert_eq!(lp["token_logprobs"], json!([-0.25, -0.25, -0.25]));
        assert_eq!(lp["text_offset"], json!([0, 5, 11]));
        assert_eq!(lp["top_logprobs"][0], json!({"Hello": -0.25}));
    }
    // Two prompts: prompt tokens counted for each.
    assert_eq!(v["usage"]["prompt_tokens"], 10);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    let sub = s.mock.submissions();
    let prompts: Vec<_> = sub.iter().map(|r| r.prompt.clone()).collect();
    assert!(
        prompts.contains(&PromptInput::Text("a".into()))
            && prompts.contains(&PromptInput::Text("b".into()))
    );
}

#[test]
fn n_two_gives_two_indexed_choices_with_offset_seeds() {
    let s = start(|_| {});
    let mut body = chat_body("hi");
    body["n"] = json!(2);
    body["seed"] = json!(10);
    let v = post(s.addr, "/v1/chat/completions", &body).json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(
        (choices[0]["index"].as_u64(), choices[1]["index"].as_u64()),
        (Some(0), Some(1))
    );
    // One prompt, counted once; both completions counted.
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 6);
    let mut seeds: Vec<_> = s
        .mock
        .submissions()
        .iter()
        .map(|r| r.sampling.seed)
        .collect();
    seeds.sort();
    assert_eq!(seeds, [Some(10), Some(11)]);

    // Streamed: both choices get their role, content and finish.
    body["stream"] = json!(true);
    let chunks = stream_chunks(&post(s.addr, "/v1/chat/completions", &body));
    for index in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"][0]["index"] == index)
            .collect();
        assert_eq!(mine[0]["choices"][0]["delta"]["role"], "assistant");
        let text: String = mine
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "Hello world!");
        assert_eq!(mine.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }
}

#[test]
fn chat_stream_is_in_openai_order_with_usage_last() {
    let s = start(|_| {});
    let mut body = chat_body("hi");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = stream_chunks(&post(s.addr, "/v1/chat/completions", &body));
    // role, 3 contents, finish, usage.
    assert_eq!(chunks.len(), 6, "{chunks:#?}");
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id, "one id for the whole stream");
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], MODEL);
    }
    assert_eq!(
        chunks[0]["choices"],
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}])
    );
    let contents: Vec<&str> = chunks[1..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, WORDS);
    for c in &chunks[..5] {
        // With include_usage every chunk but the last has `usage: null`.
        assert!(c.get("usage").is_some_and(Value::is_null), "{c}");
    }
    assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[5]["choices"], json!([]));
    assert_eq!(chunks[5]["usage"]["total_tokens"], 8);
    assert_eq!(
        chunks[5]["usage"]["prompt_tokens_details"]["cached_tokens"],
        2
    );

    // Without include_usage: no usage key at all, no usage chunk.
    body.as_object_mut().unwrap().remove("stream_options");
    let chunks = stream_chunks(&post(s.addr, "/v1/chat/completions", &body));
    assert_eq!(chunks.len(), 5);
    assert!(chunks.iter().all(|c| c.get("usage").is_none()));
}

/// Reasoning reaches chat clients as `reasoning_content`, apart from the
/// answer, streamed and whole; `reasoning_effort` is passed on and checked.
#[test]
fn chat_reasoning_is_reasoning_content_and_effort_is_passed_on() {
    let s = start(|_| {});
    let mut body = chat_body("THINK");
    body["reasoning_effort"] = json!("high");
    let v = post(s.addr, "/v1/chat/completions", &body).json();
    assert_eq!(
        v["choices"][0]["message"],
        json!({"role": "assistant", "content": "Hello world!", "reasoning_content": "Let me think."})
    );
    assert_eq!(
        s.mock.submissions()[0].reasoning_effort,
        Some(wgserve::tokenizer::ReasoningEffort::High)
    );

    body["stream"] = json!(true);
    let chunks = stream_chunks(&post(s.addr, "/v1/chat/completions", &body));
    // role, 2 reasoning, 3 contents, finish.
    assert_eq!(chunks.len(), 7, "{chunks:#?}");
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(*deltas[1], json!({"reasoning_content": "Let me"}));
    assert_eq!(*deltas[2], json!({"reasoning_content": " think."}));
    assert_eq!(*deltas[3], json!({"content": "Hello"}));

    body["reasoning_effort"] = json!("extreme");
    let resp = post(s.addr, "/v1/chat/completions", &body);
    assert_eq!(resp.status, 400);
    let e = resp.json();
    assert_eq!(e["error"]["param"], "reasoning_effort");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("low"),
        "{e}"
    );
}

/// `return_token_ids` (vLLM's extension) adds each choice's generated ids,
/// whole and per chunk; without it there is no `token_ids` key.
#[test]
fn return_token_ids_adds_the_generated_ids() {
    let s = start(|_| {});
    let body = json!({"prompt": "x", "return_token_ids": true});
    let v = post(s.addr, "/v1/completions", &body).json();
    assert_eq!(v["choices"][0]["token_ids"], json!([1, 2, 3]));
    let mut chat = chat_body("hi");
    chat["return_token_ids"] = json!(true);
    let v = post(s.addr, "/v1/chat/completions", &chat).json();
    assert_eq!(v["choices"][0]["token_ids"], json!([1, 2, 3]));
    chat["stream"] = json!(true);
    let chunks = stream_chunks(&post(s.addr, "/v1/chat/completions", &chat));
    let ids: Vec<Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0].get("token_ids").cloned())
        .collect();
    assert_eq!(ids, [json!([1]), json!([2]), json!([3])]);
    let v = post(s.addr, "/v1/completions", &json!({"prompt": "x"})).json();
    assert!(v["choices"][0].get("token_ids").is_none(), "{v}");
}

#[test]
fn completion_stream_sends_text_chunks() {
    let s = start(|_| {});
    let chunks = stream_chunks(&post(
        s.addr,
        "/v1/completions",
        &json!({"prompt": "x", "stream": true, "stream_options": {"include_usage": true}}),
    ));
    assert_eq!(chunks.len(), 5, "{chunks:#?}");
    for c in &chunks {
        assert_eq!(c["object"], "text_completion");
        assert!(c["id"].as_str().unwrap().starts_with("cmpl-"));
    }
    let text: String = chunks[..3]
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Hello world!");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 3);
}

#[test]
fn keep_alive_comments_flow_while_the_request_waits() {
    let s = start(|c| c.keepalive_secs = 1);
    let mut body = chat_body("WAIT");
    body["stream"] = json!(true);
    let resp = post(s.addr, "/v1/chat/completions", &body);
    let events = sse_events(&resp.text());
    let first_content = events
        .iter()
        .position(|e| matches!(e, Sse::Data(d) if d.contains("Hello")))
        .unwrap();
    let keepalives = events[..first_content]
        .iter()
        .filter(|e| **e == Sse::Comment("keep-alive".into()))
        .count();
    assert!(
        keepalives >= 2,
        "2.5 s of waiting at 1 s intervals: {events:?}"
    );
    assert!(matches!(&events[0], Sse::Data(d) if d.contains("\"role\":\"assistant\"")));
    assert_eq!(events.last(), Some(&Sse::Data("[DONE]".into())));
}

#[test]
fn a_mid_stream_engine_error_is_an_error_event_then_done() {
    let s = start(|_| {});
    let mut body = chat_body("ENGINE");
    body["stream"] = json!(true);
    let resp = post(s.addr, "/v1/chat/completions", &body);
    let events = sse_events(&resp.text());
    let n = events.len();
    assert_eq!(events[n - 1], Sse::Data("[DONE]".into()));
    let Sse::Data(err) = &events[n - 2] else {
        panic!("{events:?}")
    };
    let err: Value = serde_json::from_str(err).unwrap();
    assert_eq!(err["error"]["type"], "server_error");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .contains("GPU went away"));
    // Not streamed: the same failure is a 500.
    post(s.addr, "/v1/chat/completions", &chat_body("ENGINE")).error(500);
}

#[test]
fn bad_requests_get_400_naming_the_parameter() {
    let s = start(|_| {});
    let bad = http(
        s.addr,
        "POST",
        "/v1/chat/completions",
        &[],
        b"{\"messages\": [",
    );
    let e = bad.error(400);
    assert_eq!(e["type"], "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("JSON"));

    for (field, value) in [
        ("temperature", json!(-1)),
        ("top_p", json!(0)),
        ("max_tokens", json!(0)),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "f"}}]),
        ),
        ("n", json!(9)),
        ("frobnicate", json!(true)),
    ] {
        let mut body = chat_body("hi");
        body[field] = value;
        let e = post(s.addr, "/v1/chat/completions", &body).error(400);
        assert_eq!(e["param"], field, "{e}");
        assert_eq!(e["type"], "invalid_request_error");
    }
    let e = post(
        s.addr,
        "/v1/completions",
        &json!({"prompt": "x", "echo": true}),
    )
    .error(400);
    assert_eq!(e["param"], "echo");
    // The backend's own 400 (a prompt over the context) keeps its numbers.
    let e = post(s.addr, "/v1/chat/completions", &chat_body("INVALID")).error(400);
    assert!(e["message"].as_str().unwrap().contains("2048"));
    assert!(
        s.mock.submissions().is_empty(),
        "nothing invalid reached the backend"
    );
}

#[test]
fn unknown_model_is_404_and_unknown_path_is_json_404() {
    let s = start(|_| {});
    let mut body = chat_body("hi");
    body["model"] = json!("gpt-4o");
    let e = post(s.addr, "/v1/chat/completions", &body).error(404);
    assert_eq!(e["code"], "model_not_found");
    get(s.addr, "/v1/nothing/here").error(404);
    get(s.addr, "/v1/chat/completions").error(405);
}

#[test]
fn an_oversized_body_is_413() {
    let s = start(|c| c.max_body_bytes = 1000);
    let mut body = chat_body(&"x".repeat(2000));
    body["stream"] = json!(true);
    let e = post(s.addr, "/v1/chat/completions", &body).error(413);
    assert!(e["message"].as_str().unwrap().contains("1000"));
    // Without a declared length (chunked upload) the limit still holds.
    let mut stream = connect(s.addr);
    let payload = body.to_string();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
                Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n";
    stream.write_all(head.as_bytes()).unwrap();
    for piece in payload.as_bytes().chunks(500) {
        let _ = stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes());
        let _ = stream.write_all(piece);
        let _ = stream.write_all(b"\r\n");
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut r = BufReader::new(stream);
    assert_eq!(read_head(&mut r).0, 413);
}

#[test]
fn a_full_queue_is_429_with_retry_after() {
    let s = start(|_| {});
    let resp = post(s.addr, "/v1/chat/completions", &chat_body("QUEUEFULL"));
    let e = resp.error(429);
    assert_eq!(e["type"], "rate_limit_error");
    assert_eq!(resp.header("retry-after"), Some("1"));
}

#[test]
fn a_refused_second_choice_refuses_the_first_too() {
    let s = start(|_| {});
    // Two prompts: the first is accepted, the second refused, so the whole
    // request is, and the first does not go on running.
    let e = post(
        s.addr,
        "/v1/completions",
        &json!({"prompt": ["WAIT", "QUEUEFULL"]}),
    )
    .error(429);
    assert_eq!(e["code"], "queue_full");
    let first = s.mock.id_of("WAIT").unwrap();
    assert!(s.mock.wait_cancelled(first, Duration::from_secs(3)));
}

#[test]
fn more_choices_than_the_queue_holds_is_400_naming_the_limit() {
    let s = start(|_| {});
    // Three prompts × n 6 = 18 choices, more than the 16 the backend ever
    // lets wait: a 400 that says what to change, not a 429 to retry forever.
    let body = json!({"model": MODEL, "prompt": ["a", "b", "c"], "n": 6, "max_tokens": 1});
    let resp = post(s.addr, "/v1/completions", &body);
    assert_eq!(resp.header("retry-after"), None);
    let e = resp.error(400);
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "too_many_choices");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("18") && msg.contains("16") && msg.contains("max_queue"),
        "{msg}"
    );
    assert!(s.mock.submissions().is_empty(), "nothing was submitted");

    // Two prompts × n 8 = 16 fit, and are admitted whole.
    let body = json!({"model": MODEL, "prompt": ["a", "b"], "n": 8, "max_tokens": 1});
    let v = post(s.addr, "/v1/completions", &body).json();
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 16);
    assert!(choices.iter().all(|c| c["text"] == "Hello"), "{v}");
    assert_eq!(s.mock.submissions().len(), 16);
}

#[test]
fn not_ready_is_503_and_health_says_so() {
    let s = start(|_| {});
    assert_eq!(get(s.addr, "/health").json(), json!({"status": "ok"}));
    s.mock.not_ready.store(true, Ordering::SeqCst);
    let health = get(s.addr, "/health");
    assert_eq!(health.status, 503);
    post(s.addr, "/v1/chat/completions", &chat_body("hi")).error(503);
    get(s.addr, "/v1/models").error(503);
}

#[test]
fn a_failed_runtime_makes_health_503_with_the_reason() {
    let s = start(|_| {});
    *s.mock.failure.lock().unwrap() = Some("shard 0 panicked".into());
    s.mock.not_ready.store(true, Ordering::SeqCst);
    let health = get(s.addr, "/health");
    assert_eq!(health.status, 503);
    assert_eq!(
        health.json(),
        json!({"status": "failed", "reason": "shard 0 panicked"})
    );
}

#[test]
fn api_keys_guard_the_api_but_not_the_page_or_health() {
    let s = start(|c| c.api_keys = vec!["sekret".into()]);
    let e = post(s.addr, "/v1/chat/completions", &chat_body("hi")).error(401);
    assert_eq!(e["type"], "authentication_error");
    let wrong = http(
        s.addr,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer nope")],
        b"",
    );
    wrong.error(401);
    get(s.addr, "/metrics").error(401);
    let ok = http(
        s.addr,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer sekret")],
        b"",
    );
    assert_eq!(ok.status, 200);
    assert_eq!(get(s.addr, "/health").status, 200);
    assert_eq!(get(s.addr, "/").status, 200);
    assert_eq!(get(s.addr, "/app.js").status, 200);
    // The WebSocket takes the key in the query too (browsers cannot set headers).
    assert_eq!(ws_handshake(s.addr, "/v1/ws").0, 401);
    assert_eq!(ws_handshake(s.addr, "/v1/ws?api_key=sekret").0, 101);
}

#[test]
fn cors_preflight_and_allow_origin() {
    let s = start(|c| {
        c.cors_origins = vec!["http://app.example".into()];
        c.api_keys = vec!["k".into()];
    });
    let pre = http(
        s.addr,
        "OPTIONS",
        "/v1/chat/completions",
        &[
            ("Origin", "http://app.example"),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
        b"",
    );
    assert_eq!(pre.status, 204);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    assert!(pre
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
    assert!(pre
        .header("access-control-allow-headers")
        .unwrap()
        .contains("authorization"));
    let resp = http(
        s.addr,
        "GET",
        "/v1/models",
        &[
            ("Origin", "http://app.example"),
            ("Authorization", "Bearer k"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("http://app.example")
    );
    let other = http(
        s.addr,
        "GET",
        "/health",
        &[("Origin", "http://evil.example")],
        b"",
    );
    assert_eq!(other.header("access-control-allow-origin"), None);
    // Without cors_origins no CORS headers at all.
    let plain = start(|_| {});
    let resp = http(
        plain.addr,
        "GET",
        "/health",
        &[("Origin", "http://app.example")],
        b"",
    );
    assert_eq!(resp.header("access-control-allow-origin"), None);
}

#[test]
fn models_metrics_tokenize_detokenize() {
    let s = start(|_| {});
    let v = get(s.addr, "/v1/models").json();
    assert_eq!(
        v,
        json!({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 1_700_000_000u64,
               "owned_by": "wgserve", "max_model_len": 2048}]})
    );

    let m = get(s.addr, "/metrics");
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.split_once(' ').unwrap();
        samples.insert(name.to_string(), value.parse::<f64>().unwrap());
    }
    assert_eq!(samples["wgserve_requests_waiting"], 2.0);
    assert_eq!(samples["wgserve_generation_tokens_total"], 77.0);
    assert_eq!(samples["wgserve_time_to_first_token_seconds_count"], 2.0);
    assert!(text.contains("# TYPE wgserve_requests_running gauge"));
    assert!(text.contains("# TYPE wgserve_steps_total counter"));

    let v = post(s.addr, "/tokenize", &json!({"prompt": "hi"})).json();
    assert_eq!(
        v,
        json!({"tokens": [104, 105], "count": 2, "max_model_len": 2048})
    );
    let v = post(
        s.addr,
        "/tokenize",
        &json!({"messages": [{"role": "user", "content": "a"}]}),
    )
    .json();
    assert_eq!(v["count"], 1);
    let v = post(s.addr, "/detokenize", &json!({"tokens": [1, 2]})).json();
    assert_eq!(v, json!({"prompt": "Hello world"}));
    post(s.addr, "/detokenize", &json!({"tokens": "x"})).error(400);
}

#[test]
fn the_page_and_its_modules_are_served_and_nothing_else() {
    let s = start(|_| {});
    let index = get(s.addr, "/");
    assert_eq!(index.status, 200);
    assert!(index
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(index.text().contains("<title>chat</title>"));
    let js = get(s.addr, "/app.js");
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert_eq!(js.text(), "export const x = 1;");
    let gz = http(
        s.addr,
        "GET",
        "/app.js",
        &[("Accept-Encoding", "gzip")],
        b"",
    );
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(&gz.body[..2], &[0x1f, 0x8b], "a gzip stream");
    assert!(get(s.addr, "/style.css")
        .header("content-type")
        .unwrap()
        .starts_with("text/css"));
    for bad in [
        "/missing.js",
        "/..%2fCargo.toml",
        "/%2e%2e/Cargo.toml",
        "/../Cargo.toml",
        "/.hidden.js",
    ] {
        assert_eq!(get(s.addr, bad).status, 404, "{bad}");
    }
}

#[test]
fn a_client_disconnect_mid_stream_cancels_the_request() {
    let s = start(|c| c.keepalive_secs = 30);
    let mut body = chat_body("SLOW");
    body["stream"] = json!(true);
    let mut stream = connect(s.addr);
    send_request(
        &mut stream,
        "POST",
        "/v1/chat/completions",
        &[],
        body.to_string().as_bytes(),
    );
    // Read until a content chunk has arrived, then hang up.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"content\":\"x\"") {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    let id = s.mock.id_of("SLOW").unwrap();
    drop(stream);
    // Far sooner than the stream's 10 s and the 30 s keep-alive.
    assert!(
        s.mock.wait_cancelled(id, Duration::from_secs(2)),
        "the backend never heard of the disconnect"
    );
    assert!(
        s.mock.cancelled.lock().unwrap().contains(&id),
        "cancel() was called too"
    );
}

#[test]
fn websocket_runs_requests_at_once_and_reports_errors_per_request() {
    let s = start(|_| {});
    let mut ws = Ws::open(s.addr);
    ws.send(&json!({"type": "chat.completions.create", "id": "slow",
                    "request": {"messages": [{"role": "user", "content": "WAIT"}],
                                "stream_options": {"include_usage": true}}}));
    ws.send(&json!({"type": "completions.create", "id": "fast", "request": {"prompt": "hi"}}));
    ws.send(&json!({"type": "chat.completions.create", "id": "bad",
                    "request": {"messages": [{"role": "user", "content": "hi"}], "temperature": 9}}));
    ws.send(&json!({"type": "bogus", "id": "x"}));

    let mut frames: Vec<Value> = Vec::new();
    let mut finished = std::collections::HashSet::new();
    while finished.len() < 4 {
        let f = ws.recv();
        if f["type"] == "done" || f["type"] == "error" {
            finished.insert(f["id"].as_str().unwrap().to_string());
        }
        frames.push(f);
    }
    let of = |id: &str| -> Vec<&Value> { frames.iter().filter(|f| f["id"] == id).collect() };

    // The bad request and the bogus type fail alone, with OpenAI error objects.
    let bad = of("bad");
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["type"], "error");
    assert_eq!(bad[0]["status"], 400);
    assert_eq!(bad[0]["error"]["param"], "temperature");
    assert_eq!(of("x")[0]["error"]["param"], "type");

    // "fast" finished while "slow" was still waiting: they ran at once.
    let fast_done = frames
        .iter()
        .position(|f| f["id"] == "fast" && f["type"] == "done")
        .unwrap();
    let slow_first_text = frames
        .iter()
        .position(|f| f["id"] == "slow" && f["data"]["choices"][0]["delta"]["content"] == "Hello")
        .unwrap();
    assert!(fast_done < slow_first_text);

    // Chunks are the SSE chunks, wrapped.
    let fast = of("fast");
    let text: String = fast
        .iter()
        .filter_map(|f| f["data"]["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello world!");
    let slow = of("slow");
    assert_eq!(slow[0]["data"]["object"], "chat.completion.chunk");
    assert_eq!(slow[0]["data"]["choices"][0]["delta"]["role"], "assistant");
    let usage = &slow[slow.len() - 2]["data"];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert_eq!(slow.last().unwrap()["type"], "done");

    // Pings are answered; the socket is still usable after all that.
    ws.send_frame(0x9, b"hb");
    let (opcode, payload) = ws.read_frame();
    assert_eq!((opcode, payload.as_slice()), (0xA, &b"hb"[..]));
}

#[test]
fn websocket_cancel_and_close_reach_the_backend() {
    let s = start(|_| {});
    let mut ws = Ws::open(s.addr);
    ws.send(&json!({"type": "chat.completions.create", "id": "a",
                    "request": {"messages": [{"role": "user", "content": "SLOW a"}]}}));
    ws.send(&json!({"type": "chat.completions.create", "id": "b",
                    "request": {"messages": [{"role": "user", "content": "SLOW b"}]}}));
    // Wait until both produce text.
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let f = ws.recv();
        if f["data"]["choices"][0]["delta"]["content"] == "x" {
            seen.insert(f["id"].as_str().unwrap().to_string());
        }
    }
    ws.send(&json!({"type": "cancel", "id": "a"}));
    let a = s.mock.id_of("SLOW a").unwrap();
    let b = s.mock.id_of("SLOW b").unwrap();
    assert!(
        s.mock.wait_cancelled(a, Duration::from_secs(2)),
        "cancel message never reached the backend"
    );
    loop {
        let f = ws.recv();
        if f["id"] == "a" && f["type"] == "done" {
            assert_eq!(f["cancelled"], true);
            break;
        }
    }
    assert!(
        !s.mock.wait_cancelled(b, Duration::from_millis(300)),
        "b must go on"
    );
    // Closing the socket cancels what is left.
    drop(ws);
    assert!(
        s.mock.wait_cancelled(b, Duration::from_secs(2)),
        "closing the socket did not cancel b"
    );
}

/// A client that hangs up while its request still waits (nothing is being
/// written to it) is noticed at once, streamed or not.
#[test]
fn a_client_disconnect_while_waiting_cancels_without_a_write() {
    let s = start(|c| c.keepalive_secs = 30);
    for (i, stream) in [true, false].into_iter().enumerate() {
        let marker = format!("WAIT {i}");
        let mut body = chat_body(&marker);
        body["stream"] = json!(stream);
        let mut conn = connect(s.addr);
        send_request(
            &mut conn,
            "POST",
            "/v1/chat/completions",
            &[],
            body.to_string().as_bytes(),
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        let id = loop {
            if let Some(id) = s.mock.id_of(&marker) {
                break id;
            }
            assert!(Instant::now() < deadline, "never submitted");
            std::thread::sleep(Duration::from_millis(10));
        };
        drop(conn);
        // The first token would come after 2.5 s; the keep-alive after 30 s.
        assert!(
            s.mock.wait_cancelled(id, Duration::from_secs(1)),
            "stream={stream}: disconnect not seen"
        );
    }
}
