//! `make bench`: prefill and decode throughput of a model on whatever adapter
//! is present, through the real scheduler and kernels.
//!
//! Reports, side by side in one run:
//! - the engine alone (scheduler and shards driven from one thread): prefill
//!   tokens/s for a 128-token prompt, decode tokens/s for 64 tokens at batch
//!   1, aggregate decode tokens/s at batch 8 and 16 (each the median of
//!   `WGSERVE_BENCH_REPEATS` runs, default 3);
//! - an in-process load through the actor runtime: N concurrent requests
//!   (N = 1, 4, 16), 64 generated tokens each, with aggregate tokens/s,
//!   median time to first token and median inter-token latency;
//! - the process's peak host memory.
//!
//! Environment: `WGSERVE_BENCH_MODEL` (default: the default model),
//! `WGSERVE_BENCH_REPEATS`, `WGSERVE_ADAPTER`, `WGSERVE_BENCH_SUMMARY` (a
//! file to write the same figures to as JSON, for `compare.rs`, which puts
//! them beside llama.cpp's).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use wgserve::engine::Engine;
use wgserve::loader::{EngineConfig, DEFAULT_MODEL};
use wgserve::sampling::SamplingParams;
use wgserve::scheduler::{SeqEvent, SeqRequest};

fn prompt(seed: u32, len: usize, vocab: u32) -> Vec<u32> {
    // Ordinary-text ids avoid special tokens at the low end of the vocabulary.
    (0..len as u32)
        .map(|i| 1000 + (i * 7919 + seed * 104_729) % (vocab - 2000))
        .collect()
}

fn request(prompt: Vec<u32>, max_tokens: usize) -> SeqRequest {
    SeqRequest {
        prompt,
        sampling: SamplingParams::greedy(),
        max_tokens,
        stop_ids: vec![],
        ignore_eos: true,
        logprobs: None,
    }
}

/// Runs until idle; returns (time to the first token of every sequence, time
/// from then to the end, tokens generated after each sequence's first).
fn run(engine: &mut Engine) -> (f64, f64, usize) {
    let t0 = Instant::now();
    let mut first_done: Option<f64> = None;
    let mut seen = std::collections::HashSet::new();
    let n_seqs = engine.scheduler.num_waiting() + engine.scheduler.num_running();
    let mut after_first = 0usize;
    while engine.scheduler.has_work() {
        for ev in engine.step().expect("step") {
            if let SeqEvent::Token { id, .. } = ev {
                if first_done.is_some() {
                    after_first += 1;
                }
                if seen.insert(id) && seen.len() == n_seqs {
                    first_done = Some(t0.elapsed().as_secs_f64());
                }
            }
        }
    }
    let total = t0.elapsed().as_secs_f64();
    let first = first_done.unwrap_or(total);
    (first, total - first, after_first)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    // `cargo bench` passes harness flags such as `--bench`; ignore them.
    let model = std::env::var("WGSERVE_BENCH_MODEL").unwrap_or_else(|_| DEFAULT_MODEL.into());
    let repeats: usize = std::env::var("WGSERVE_BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let device = std::env::var("WGSERVE_ADAPTER")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    let mut engine = Engine::new(&EngineConfig {
        model: model.clone().into(),
        devices: vec![device],
        max_num_seqs: 16,
        max_num_batched_tokens: 256,
        // Fresh prompts every run: measure compute, not the prefix cache.
        enable_prefix_caching: false,
        ..Default::default()
    })
    .expect("load the model");
    let vocab = engine.spec.vocab_size as u32;
    println!("model: {model}");
    println!("adapter: {}", engine.adapter());

    // Warm-up: pipelines and driver caches.
    engine
        .scheduler
        .add(0, request(prompt(0, 16, vocab), 4))
        .unwrap();
    run(&mut engine);

    let mut id = 1u64;
    let mut prefill = Vec::new();
    for _ in 0..repeats {
        engine
            .scheduler
            .add(id, request(prompt(id as u32, 128, vocab), 1))
            .unwrap();
        id += 1;
        let (first, _, _) = run(&mut engine);
        prefill.push(128.0 / first);
    }
    let prefill = median(prefill);
    let mut rows = vec![("prefill, 128-token prompt".to_string(), prefill)];
    let mut decode = serde_json::Map::new();
    for batch in [1usize, 8, 16] {
        let mut tps = Vec::new();
        for _ in 0..repeats {
            for _ in 0..batch {
                engine
                    .scheduler
                    .add(id, request(prompt(id as u32, 16, vocab), 64))
                    .unwrap();
                id += 1;
            }
            let (_, decode_s, tokens) = run(&mut engine);
            tps.push(tokens as f64 / decode_s);
        }
        let tps = median(tps);
        decode.insert(batch.to_string(), json!(tps));
        rows.push((format!("decode, batch {batch:>2} (aggregate)"), tps));
    }
    println!("{:<34} {:>12}", "measure", "tokens/s");
    for (name, v) in rows {
        println!("{name:<34} {v:>12.2}");
    }
    let adapter = engine.adapter().to_string();
    drop(engine);
    let runtime = runtime_load(&model);
    let peak = peak_rss_mib();
    println!("peak host memory: {peak:.0} MiB");
    if let Ok(path) = std::env::var("WGSERVE_BENCH_SUMMARY") {
        let summary = json!({
            "model": model,
            "adapter": adapter,
            "repeats": repeats,
            "prefill_128_tps": prefill,
            "decode_64_tps": decode,
            "runtime": runtime,
            "peak_host_mib": peak,
        });
        let text = serde_json::to_string_pretty(&summary).expect("plain JSON");
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("cannot write WGSERVE_BENCH_SUMMARY={path}: {e}");
            std::process::exit(1);
        }
    }
}

/// N concurrent requests through the actors, as a server would run them;
/// each level's figures, as printed.
fn runtime_load(model: &str) -> Vec<Value> {
    use wgserve::actors::runtime::{Runtime, RuntimeOptions};
    use wgserve::backend::{Backend, Event, GenerateRequest, PromptInput};

    let cfg = EngineConfig {
        model: model.into(),
        max_num_seqs: 16,
        max_num_batched_tokens: 256,
        enable_prefix_caching: false,
        ..Default::default()
    };
    let loaded = wgserve::loader::load(&cfg).expect("load the model");
    let vocab = loaded.spec.vocab_size as u32;
    actix_rt::System::new().block_on(async move {
        let mut levels = Vec::new();
        let rt = Runtime::start(loaded, RuntimeOptions::default());
        println!();
        println!(
            "{:<28} {:>10} {:>14} {:>14}",
            "concurrent requests (64 tok)", "tokens/s", "median TTFT s", "median ITL ms"
        );
        let mut seed = 10_000u32;
        for n in [1usize, 4, 16] {
            let t0 = Instant::now();
            let mut streams = Vec::new();
            for _ in 0..n {
                seed += 1;
                let req = GenerateRequest {
                    prompt: PromptInput::Ids(prompt(seed, 16, vocab)),
                    sampling: SamplingParams::greedy(),
                    max_tokens: Some(64),
                    stop: vec![],
                    ignore_eos: true,
                    logprobs: None,
                    keep_special: false,
                    reasoning_effort: None,
                };
                let (_, rx) = rt.submit(req).await.expect("submit");
                streams.push(rx);
            }
            let mut tasks = Vec::new();
            for mut rx in streams {
                tasks.push(actix_rt::spawn(async move {
                    let mut stamps = Vec::new();
                    while let Some(ev) = rx.recv().await {
                        match ev {
                            Event::Delta { token_ids, .. } => {
                                for _ in token_ids {
                                    stamps.push(Instant::now());
                                }
                            }
                            Event::Finished { .. } | Event::Error(_) => break,
                        }
                    }
                    stamps
                }));
            }
            let mut ttft = Vec::new();
            let mut itl = Vec::new();
            let mut tokens = 0usize;
            for t in tasks {
                let stamps = t.await.expect("stream task");
                tokens += stamps.len();
                if let Some(first) = stamps.first() {
                    ttft.push((*first - t0).as_secs_f64());
                }
                itl.extend(stamps.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()));
            }
            let elapsed = t0.elapsed().max(Duration::from_millis(1)).as_secs_f64();
            let (tps, ttft_s, itl_ms) =
                (tokens as f64 / elapsed, median(ttft), median(itl) * 1000.0);
            println!(
                "{:<28} {tps:>10.2} {ttft_s:>14.2} {itl_ms:>14.1}",
                format!("N = {n}")
            );
            levels.push(json!({"n": n, "tps": tps, "ttft_s": ttft_s, "itl_ms": itl_ms}));
        }
        levels
    })
}
