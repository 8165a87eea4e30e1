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
use wgserve::gguf::metadata::MetaValue;
use wgserve::gguf::writer::GgufWriter;
use wgserve::gguf::{quant, GgmlType};

use common::*;

const D: usize = 128;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const FFN: usize = 256;
const VOCAB: usize = 96;

/// A one-layer llama with random f32 weights and no vocabulary.
fn write_tiny_model(path: &Path) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut w = GgufWriter::new();
    let k = |s: &str| format!("llama.{s}");
    w.meta("general.architecture", MetaValue::from("llama"))
        .meta("general.name", MetaValue::from("tiny-fault"))
        .meta(&k("block_count"), MetaValue::U32(1))
        .meta(&k("embedding_length"), MetaValue::U32(D as u32))
        .meta(&k("attention.head_count"), MetaValue::U32(HEADS as u32))
        .meta(
            &k("attention.head_count_kv"),
            MetaValue::U32(KV_HEADS as u32),
        )
        .meta(&k("feed_forward_length"), MetaValue::U32(FFN as u32))
        .meta(&k("context_length"), MetaValue::U32(256))
        .meta(&k("attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-5))
        .meta(&k("rope.freq_base"), MetaValue::F32(10_000.0));
    let mut tensor = |w: &mut GgufWriter, name: &str, rows: usize, cols: usize| {
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-0.2..0.2))
            .collect();
        let dims: Vec<u64> = if rows == 1 {
            vec![cols as u64]
        } else {
            vec![cols as u64, rows as u64]
        };
        w.tensor(
            name,
            &dims,
            GgmlType::F32,
            quant::quantize(GgmlType::F32, &v),
        );
    };
    let hd = D / HEADS;
    tensor(&mut w, "token_embd.weight", VOCAB, D);
    tensor(&mut w, "blk.0.attn_norm.weight", 1, D);
    tensor(&mut w, "blk.0.attn_q.weight", D, D);
    tensor(&mut w, "blk.0.attn_k.weight", KV_HEADS * hd, D);
    tensor(&mut w, "blk.0.attn_v.weight", KV_HEADS * hd, D);
    tensor(&mut w, "blk.0.attn_output.weight", D, D);
    tensor(&mut w, "blk.0.ffn_norm.weight", 1, D);
    tensor(&mut w, "blk.0.ffn_gate.weight", FFN, D);
    tensor(&mut w, "blk.0.ffn_up.weight", FFN, D);
    tensor(&mut w, "blk.0.ffn_down.weight", D, FFN);
    tensor(&mut w, "output_norm.weight", 1, D);
    w.write(path).unwrap();
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
