//! The actor runtime with two shards, over real HTTP: `wgserve serve --config
//! configs/two-shards.toml` (two devices opened on the one adapter, the
//! default model's 30 layers split 0..15 and 15..30, one Shard actor each,
//! hidden states handed from the first to the second) gives greedy token ids
//! bitwise equal to a one-shard server's, for requests alone and for a
//! concurrent batch. The servers run one after the other: lavapipe shares
//! the machine's few cores.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use common::*;

const MAX_TOKENS: usize = 8;
const PROMPTS: [&str; 3] = [
    "The capital of France is",
    "def fibonacci(n):",
    "Water boils at a temperature of",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What one greedy completion returned: its ids and text.
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    ids: Vec<u64>,
    text: String,
}

fn complete(addr: std::net::SocketAddr, prompt: &str) -> Answer {
    let body = json!({"prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0,
                      "return_token_ids": true});
    let resp = post(addr, "/v1/completions", &body);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let v = resp.json();
    let choice = &v["choices"][0];
    let ids: Vec<u64> = choice["token_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("token_ids asked for: {v}"))
        .iter()
        .map(|i| i.as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), MAX_TOKENS, "{v}");
    Answer {
        ids,
        text: choice["text"].as_str().unwrap().to_string(),
    }
}

/// Serves with `args`, then asks every prompt alone and then all at once.
/// Returns (alone, concurrent) answers and the server's log.
fn answers(name: &str, args: &[String]) -> (Vec<Answer>, Vec<Answer>, String) {
    set_read_timeout(Duration::from_secs(180));
    let mut server = serve_ready(
        args,
        &format!("shards-{name}.log"),
        Duration::from_secs(240),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let addr = server.addr;
    let alone: Vec<Answer> = PROMPTS.iter().map(|p| complete(addr, p)).collect();
    let concurrent: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = PROMPTS
            .iter()
            .map(|p| s.spawn(move || complete(addr, p)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let m = metrics(addr);
    assert_eq!(m["wgserve_requests_finished_total"], 6.0, "{name}: {m:?}");
    // Alone, each token took a step (3 x 8); the concurrent three shared
    // steps, so the total is below one step per token (48).
    let tokens = (2 * PROMPTS.len() * MAX_TOKENS) as f64;
    assert_eq!(
        m["wgserve_generation_tokens_total"], tokens,
        "{name}: {m:?}"
    );
    assert!(m["wgserve_steps_total"] < tokens, "{name}: {m:?}");
    server.stop();
    let text = std::fs::read_to_string(&server.log).unwrap();
    (alone, concurrent, text)
}

/// The layer ranges of the `shard actor for layers A..B` lines of a server
/// log, sorted: each actor logs from its own thread, in no fixed order.
fn shard_actor_ranges(log: &str) -> Vec<String> {
    let mut ranges: Vec<String> = log
        .lines()
        .filter_map(|l| l.split("shard actor for layers ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .collect();
    ranges.sort_by_key(|r| r.split("..").next().unwrap().parse::<usize>().unwrap());
    ranges
}

#[test]
fn two_shard_server_answers_bitwise_as_one_shard() {
    let dir = manifest_dir();
    let model = dir
        .join(wgserve::loader::DEFAULT_MODEL)
        .display()
        .to_string();
    let one = [
        "--model".to_string(),
        model,
        "--web-dir".into(),
        dir.join("web").display().to_string(),
        "--kv-memory-mib".into(),
        "64".into(),
    ];
    // The config as it is (its model and web paths are relative to the
    // working directory, which cargo sets to the package root); only the
    // port is ours.
    let two = [
        "--config".to_string(),
        dir.join("configs/two-shards.toml").display().to_string(),
    ];
    let (one_alone, one_batch, one_log) = answers("one", &one);
    let (two_alone, two_batch, two_log) = answers("two", &two);

    assert_eq!(shard_actor_ranges(&one_log), ["0..30"], "{one_log}");
    assert_eq!(
        shard_actor_ranges(&two_log),
        ["0..15", "15..30"],
        "the config's two devices give two Shard actors with half the layers each:\n{two_log}"
    );

    for (i, p) in PROMPTS.iter().enumerate() {
        eprintln!("{p:?} -> {:?} {:?}", one_alone[i].text, one_alone[i].ids);
        assert_eq!(two_alone[i], one_alone[i], "{p:?} alone: two shards vs one");
        assert_eq!(
            one_batch[i], one_alone[i],
            "{p:?} batched vs alone, one shard"
        );
        assert_eq!(
            two_batch[i], one_alone[i],
            "{p:?} batched, two shards vs one"
        );
    }
    // Sanity: the prompts did not all collapse to one answer.
    assert_ne!(one_alone[0].ids, one_alone[1].ids);
    assert!(one_alone[0].text.contains("Paris"), "{:?}", one_alone[0]);
}
