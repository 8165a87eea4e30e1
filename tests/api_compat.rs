//! OpenAI compatibility details through the real server (the `wgserve`
//! binary on the real SmolLM2 model, real sockets): `system_fingerprint` on
//! every response and chunk (chat and completions, SSE and WebSocket),
//! `name` on messages and an assistant turn with `content: null` accepted, a
//! user message with `content: null` a 400, and
//! `usage.completion_tokens_details.reasoning_tokens`: 0 for the plain
//! model, and for a thinking chat (the same weights with a chat template that
//! opens `<think>`, as DeepSeek-R1's does) the tokens that went to reasoning.
//!
//! Outputs are a few tokens: lavapipe is slow. The two servers run one at a
//! time.

mod common;

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use common::*;
use wgserve::gguf::metadata::MetaValue;
use wgserve::gguf::reader::GgufFile;
use wgserve::gguf::writer::GgufWriter;

/// Two models on lavapipe at once would only slow both down.
static SERIAL: Mutex<()> = Mutex::new(());

fn start(model: &Path, log_name: &str) -> ServerProcess {
    set_read_timeout(Duration::from_secs(120));
    let args = ["--model".to_string(), model.display().to_string()];
    serve_ready(&args, log_name, Duration::from_secs(180)).unwrap_or_else(|e| panic!("{e}"))
}

fn fingerprint(v: &Value) -> &str {
    v["system_fingerprint"]
        .as_str()
        .unwrap_or_else(|| panic!("no system_fingerprint string: {v}"))
}

fn reasoning_tokens(usage: &Value) -> u64 {
    usage["completion_tokens_details"]["reasoning_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no completion_tokens_details.reasoning_tokens: {usage}"))
}

#[test]
fn fingerprint_names_and_null_content_on_the_default_model() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = start(&default_model(), "api-compat-default.log");
    let addr = server.addr;

    // A conversation as OpenAI's clients send it: names on any role, an
    // assistant turn that only called a tool (content null, no tool calls
    // left to send here).
    let messages = json!([
        {"role": "system", "content": "You are brief.", "name": "rules"},
        {"role": "user", "content": "Say hi to Ann.", "name": "bob"},
        {"role": "assistant", "content": null, "name": "helper"},
        {"role": "user", "content": "Now say hi.", "name": "bob"},
    ]);
    let body = json!({"messages": messages, "max_tokens": 2, "temperature": 0});
    let resp = post(addr, "/v1/chat/completions", &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    let fp = fingerprint(&v).to_string();
    assert!(
        fp.starts_with(concat!("wgserve-", env!("CARGO_PKG_VERSION"), "-")),
        "{fp}"
    );
    assert_eq!(v["usage"]["completion_tokens"], 2);
    // SmolLM2 does not reason: 0, present, as OpenAI reports it.
    assert_eq!(reasoning_tokens(&v["usage"]), 0, "{v}");

    // The same fingerprint on every chunk, the usage chunk included.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let chunks = stream_chunks(&post(addr, "/v1/chat/completions", &streamed));
    assert!(chunks.len() >= 3, "{chunks:#?}");
    for c in &chunks {
        assert_eq!(fingerprint(c), fp, "{c}");
    }
    assert_eq!(reasoning_tokens(&chunks.last().unwrap()["usage"]), 0);

    // Text completions, whole and streamed.
    let completion = json!({"prompt": "The capital of France is", "max_tokens": 2});
    let v = post(addr, "/v1/completions", &completion).json();
    assert_eq!(fingerprint(&v), fp, "{v}");
    let mut streamed = completion.clone();
    streamed["stream"] = json!(true);
    for c in stream_chunks(&post(addr, "/v1/completions", &streamed)) {
        assert_eq!(fingerprint(&c), fp, "{c}");
    }

    // The WebSocket's chunks are the SSE chunks.
    let mut ws = Ws::open(addr);
    ws.send(&json!({"type": "chat.completions.create", "id": "a", "request": body}));
    let mut chunks = 0;
    loop {
        let f = ws.recv();
        match f["type"].as_str() {
            Some("chunk") => {
                assert_eq!(fingerprint(&f["data"]), fp, "{f}");
                chunks += 1;
            }
            Some("done") => break,
            _ => panic!("unexpected frame {f}"),
        }
    }
    assert!(chunks >= 2);

    // A user (or system) message must have content, as at OpenAI.
    for role in ["user", "system"] {
        let bad = json!({"messages": [{"role": role, "content": null}], "max_tokens": 1});
        let e = post(addr, "/v1/chat/completions", &bad).error(400);
        assert_eq!(e["param"], "messages[0].content", "{e}");
    }
    assert_eq!(get(addr, "/health").status, 200, "still up");
}

/// A chat template like SmolLM2's ChatML that, as DeepSeek-R1's, opens the
/// assistant's turn with `<think>`: the output starts inside the reasoning.
const THINKING_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}\
{% endfor %}\
{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}{% endif %}";

/// The default model's file with [`THINKING_TEMPLATE`] as its template.
fn write_thinking_model(path: &Path) {
    let src = GgufFile::open(default_model()).expect("the default model (scripts/setup)");
    let mut w = GgufWriter::new();
    w.version(src.version);
    for (key, value) in src.metadata.iter() {
        if key != "tokenizer.chat_template" {
            w.meta(key, value.clone());
        }
    }
    w.meta(
        "tokenizer.chat_template",
        MetaValue::from(THINKING_TEMPLATE),
    );
    for t in &src.tensors {
        w.tensor(
            &t.name,
            &t.dims,
            t.ggml_type,
            src.tensor_bytes(t).into_owned(),
        );
    }
    w.write(path).expect("write the thinking model");
}

#[test]
fn reasoning_tokens_count_a_thinking_chat() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("smollm2-thinking.gguf");
    write_thinking_model(&model);
    let server = start(&model, "api-compat-thinking.log");
    let addr = server.addr;

    let body = json!({"messages": [{"role": "user", "content": "What is 2+2?"}],
                      "max_tokens": 6, "temperature": 0});
    let v = post(addr, "/v1/chat/completions", &body).json();
    let message = &v["choices"][0]["message"];
    let reasoning = message["reasoning_content"].as_str().unwrap_or_default();
    let content = message["content"].as_str().unwrap();
    assert!(!reasoning.is_empty(), "the output starts in reasoning: {v}");
    let usage = &v["usage"];
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert_eq!(completion, 6, "{v}");
    let count = reasoning_tokens(usage);
    eprintln!("thinking chat: {message}, usage {usage}");
    if content.is_empty() {
        // Still thinking when max_tokens ran out: every token is reasoning.
        assert_eq!(count, completion, "{v}");
    } else {
        // `</think>` came: the answer's tokens are not reasoning.
        assert!(count > 0 && count < completion, "{v}");
    }

    // Streamed, the usage chunk says the same (greedy: the same tokens).
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let chunks = stream_chunks(&post(addr, "/v1/chat/completions", &streamed));
    let last = chunks.last().unwrap();
    assert_eq!(reasoning_tokens(&last["usage"]), count, "{last}");
    let streamed_reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert_eq!(streamed_reasoning, reasoning);

    // Text completions never parse reasoning.
    let v = post(
        addr,
        "/v1/completions",
        &json!({"prompt": "<think>\nHmm", "max_tokens": 2}),
    )
    .json();
    assert_eq!(reasoning_tokens(&v["usage"]), 0, "{v}");
}
