//! The HTTP load client the benches share: N streaming chat requests at
//! once against any OpenAI-compatible server (wgserve, or llama.cpp's
//! `llama-server` in `compare.rs`), so every server is measured by the same
//! client with the same requests.
//!
//! Each request: a different prompt, temperature 0, `ignore_eos`, a fixed
//! number of generated tokens, usage in the last chunk. Every SSE event is
//! timestamped as it arrives. A level reports aggregate generated tokens/s
//! (all tokens over the wall time from the first request sent to the last
//! `[DONE]`), median and p95 time to first token, median inter-token latency
//! (gaps between successive content events, pooled over all requests) and
//! the failed requests. `servers.rs` starts and stops the servers.
//!
//! Client side: std threads and the hand-written HTTP client of
//! `tests/common`, no HTTP library.

use std::net::SocketAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::EventStream;

pub mod servers;

const TOPICS: [&str; 16] = [
    "a lighthouse keeper",
    "the history of bread",
    "how rainbows form",
    "a robot learning to paint",
    "the life of a honeybee",
    "volcanoes",
    "a journey across the desert",
    "the first airplane flight",
    "why the sky is blue",
    "a cat who became mayor",
    "the water cycle",
    "ancient Rome",
    "a day on the Moon",
    "how bridges stay up",
    "the ocean's deepest trench",
    "a forgotten library",
];

fn prompt(i: usize) -> String {
    let topic = TOPICS[i % TOPICS.len()];
    if i < TOPICS.len() {
        format!("Write a short story about {topic}.")
    } else {
        format!(
            "Write a short story about {topic}, part {}.",
            i / TOPICS.len() + 1
        )
    }
}

/// The concurrency levels to run: `WGSERVE_LOAD_CONCURRENCY` (default
/// `1,4,16`).
pub fn levels_from_env() -> Vec<usize> {
    std::env::var("WGSERVE_LOAD_CONCURRENCY")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .collect()
}

/// Generated tokens per request: `WGSERVE_LOAD_TOKENS` (default 32).
pub fn tokens_from_env() -> usize {
    std::env::var("WGSERVE_LOAD_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}

/// What one request saw.
#[derive(Debug, Default)]
struct Sample {
    /// Time to the first content event.
    ttft: Option<Duration>,
    /// Gaps between successive content events.
    gaps: Vec<Duration>,
    /// Completion tokens from the usage chunk.
    tokens: usize,
    end: Option<Instant>,
    error: Option<String>,
}

/// Sends one streamed chat request and reads it to `[DONE]`.
fn measure(addr: SocketAddr, i: usize, max_tokens: usize, start: Instant) -> Sample {
    let mut sample = Sample::default();
    if let Err(e) = read_stream(addr, i, max_tokens, start, &mut sample) {
        sample.error = Some(e);
    }
    sample
}

fn read_stream(
    addr: SocketAddr,
    i: usize,
    max_tokens: usize,
    start: Instant,
    sample: &mut Sample,
) -> Result<(), String> {
    let body = json!({
        "messages": [{"role": "user", "content": prompt(i)}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let mut stream =
        EventStream::post(addr, "/v1/chat/completions", &body).map_err(|e| e.to_string())?;
    if stream.status != 200 {
        let rest = stream.collect().map_err(|e| e.to_string())?;
        let text: Vec<String> = rest.into_iter().map(|e| e.text).collect();
        return Err(format!("status {}: {}", stream.status, text.join(" ")));
    }
    let mut last: Option<Instant> = None;
    let mut finish = None;
    while let Some(event) = stream.next_event().map_err(|e| e.to_string())? {
        if event.is_done() {
            sample.end = Some(event.at);
            break;
        }
        let Some(chunk) = event.json() else {
            continue; // keep-alive
        };
        if let Some(err) = chunk.get("error") {
            return Err(format!("error event: {err}"));
        }
        if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
            sample.tokens = n as usize;
        }
        let choice = &chunk["choices"][0];
        if let Some(reason) = choice["finish_reason"].as_str() {
            finish = Some(reason.to_string());
        }
        if choice["delta"]["content"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
        {
            match last {
                None => sample.ttft = Some(event.at - start),
                Some(prev) => sample.gaps.push(event.at - prev),
            }
            last = Some(event.at);
        }
    }
    if sample.end.is_none() {
        return Err("the stream ended without [DONE]".into());
    }
    if finish.as_deref() != Some("length") || sample.tokens != max_tokens {
        return Err(format!(
            "expected {max_tokens} tokens and finish `length`, got {} and {finish:?}",
            sample.tokens
        ));
    }
    Ok(())
}

/// Nearest-rank percentile (`p` in 0..=100) of durations, in milliseconds.
fn percentile_ms(values: &[Duration], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v: Vec<f64> = values.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// One concurrency level's figures.
pub struct Level {
    pub concurrency: usize,
    pub tokens: usize,
    pub wall: Duration,
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub itl_p50_ms: f64,
    /// One line per failed request.
    pub errors: Vec<String>,
}

impl Level {
    /// Aggregate generated tokens/s over the level's wall time.
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens as f64 / self.wall.as_secs_f64().max(1e-9)
    }
}

/// `n` requests at once, released together by a barrier.
pub fn run_level(addr: SocketAddr, n: usize, max_tokens: usize) -> Level {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                (start, measure(addr, i, max_tokens, start))
            })
        })
        .collect();
    let results: Vec<(Instant, Sample)> = threads
        .into_iter()
        .map(|t| t.join().expect("a client thread panicked"))
        .collect();
    let first = results.iter().map(|(s, _)| *s).min().unwrap();
    let last = results
        .iter()
        .filter_map(|(_, s)| s.end)
        .max()
        .unwrap_or(first);
    let ttfts: Vec<Duration> = results.iter().filter_map(|(_, s)| s.ttft).collect();
    let gaps: Vec<Duration> = results
        .iter()
        .flat_map(|(_, s)| s.gaps.iter().copied())
        .collect();
    Level {
        concurrency: n,
        tokens: results.iter().map(|(_, s)| s.tokens).sum(),
        wall: last - first,
        ttft_p50_ms: percentile_ms(&ttfts, 50.0),
        ttft_p95_ms: percentile_ms(&ttfts, 95.0),
        itl_p50_ms: percentile_ms(&gaps, 50.0),
        errors: results.into_iter().filter_map(|(_, s)| s.error).collect(),
    }
}

/// Runs every level against the server at `addr` after one warm-up request
/// (the first request pays for pipeline and allocator warm-up), printing a
/// row per level under `name`; failed requests go to stderr. Fails only if
/// the warm-up does.
pub fn run_all(
    addr: SocketAddr,
    name: &str,
    levels: &[usize],
    max_tokens: usize,
) -> Result<Vec<Level>, String> {
    let warm = measure(addr, 0, 4, Instant::now());
    if let Some(e) = warm.error {
        return Err(format!("{name}: the warm-up request failed: {e}"));
    }
    println!(
        "serve_load: {max_tokens} tokens per request, streamed chat, temperature 0, ignore_eos"
    );
    println!(
        "| server | concurrent | tokens | wall s | tokens/s | TTFT p50 ms | TTFT p95 ms | ITL p50 ms | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for &n in levels {
        let row = run_level(addr, n, max_tokens);
        println!(
            "| {name} | {} | {} | {:.1} | {:.2} | {:.0} | {:.0} | {:.0} | {} |",
            row.concurrency,
            row.tokens,
            row.wall.as_secs_f64(),
            row.tokens_per_s(),
            row.ttft_p50_ms,
            row.ttft_p95_ms,
            row.itl_p50_ms,
            row.errors.len()
        );
        for e in &row.errors {
            eprintln!("  {name} N={n}: {e}");
        }
        rows.push(row);
    }
    Ok(rows)
}
