//! A runtime that fails for good is no zombie: the real `wgserve serve`
//! binary, on a tiny generated model (no tokenizer: token-id prompts), with
//! the test hook `WGSERVE_TEST_FAULT` making its shard panic mid-generation.
//! The streamed request in flight gets an SSE error chunk then `[DONE]`, the
//! plain one a 500 with OpenAI's error JSON, `/health` says 503 with the
//! reason, and the process exits non-zero on its own so a supervisor
//! restarts it.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::json;
use wgserve::actors::Fault;

use common::*;

/// A one-layer llama with random f32 weights and no vocabulary.
fn write_tiny_model(path: &Path) {
    let shape = tiny::TinyLlama {
        name: "tiny-fault",
        d: 128,
        heads: 2,
        kv_heads: 1,
        ffn: 256,
        vocab: 96,
        context: 256,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    shape.write(shape.writer(), path, |_| rng.random_range(-0.2..0.2));
}

#[test]
fn a_shard_panic_errors_the_requests_fails_health_and_exits_non_zero() {
    // Late enough that both requests are running when it fires.
    fail_a_server(Fault::ShardPanic { at_step: 15 }, "shard");
}

#[test]
fn a_scheduler_panic_errors_the_requests_fails_health_and_exits_non_zero() {
    fail_a_server(Fault::SchedulerPanic { at_step: 15 }, "scheduler");
}

/// Serves the tiny model with `fault` injected, runs a streamed and a plain
/// request into it, and checks what each client, `/health` and the process
/// do. Every message must say a panic happened.
fn fail_a_server(fault: Fault, name: &str) {
    set_read_timeout(Duration::from_secs(60));
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny.gguf");
    write_tiny_model(&model);
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fault-exit-{name}.log"));
    let args = ["--model".to_string(), model.display().to_string()];
    let fault = fault.to_string();
    let mut server = ServerProcess::start_with_env(
        Path::new(env!("CARGO_BIN_EXE_wgserve")),
        &args,
        &[(Fault::ENV, &fault)],
        &log,
    )
    .expect("start the server");
    server
        .wait_ready(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = server.addr;
    // No tokenizer, so no text: the ids make each token show as a chunk.
    let body = json!({"prompt": [1, 2, 3], "max_tokens": 200, "temperature": 0,
                      "return_token_ids": true});

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let mut stream = EventStream::post(addr, "/v1/completions", &streamed).unwrap();
    assert_eq!(stream.status, 200);
    // Past keep-alive comments to the first chunk: it is generating.
    loop {
        let event = stream.next_event().unwrap().expect("a first chunk");
        if event.json().is_some() {
            break;
        }
        assert!(event.text.starts_with(':'), "{event:?}");
    }
    // A plain request joins it.
    let plain = std::thread::spawn(move || post(addr, "/v1/completions", &body));

    let events = stream.collect().unwrap();
    let n = events.len();
    assert!(n >= 2, "{events:?}");
    assert!(events[n - 1].is_done(), "{events:?}");
    let err = events[n - 2].json().expect("an error chunk");
    assert_eq!(err["error"]["type"], "server_error", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("panic"), "{message}");

    let plain = plain.join().unwrap();
    let e = plain.error(500);
    assert!(
        e["message"].as_str().unwrap().contains("panic"),
        "{e}\n{}",
        server.log_tail(20)
    );

    let health = get(addr, "/health");
    assert_eq!(health.status, 503, "{}", health.text());
    let h = health.json();
    assert_eq!(h["status"], "failed");
    assert!(h["reason"].as_str().unwrap().contains("panic"), "{h}");

    let status = server
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running:\n{}", server.log_tail(20)));
    assert!(!status.success(), "{status}");
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("the runtime failed"), "{log_text}");
}
