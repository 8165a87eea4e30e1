//! `cargo bench --bench serve_load`: the whole server under load, over HTTP.
//!
//! Starts the binary `cargo bench` builds with it (`target/release/wgserve`)
//! on a free port with its default settings and model, or uses a running
//! server, and for each concurrency level N (1, 4, 16) sends N streaming
//! chat requests at once: different prompts, temperature 0, `ignore_eos`,
//! 32 generated tokens each. Every SSE event is timestamped as it arrives. Reports, per
//! level and with the adapter's name: aggregate generated tokens/s (all
//! tokens over the wall time from the first request sent to the last
//! `[DONE]`), median and p95 time to first token, median inter-token latency
//! (gaps between successive content events, pooled over all requests) and
//! the number of failed requests.
//!
//! Environment: `WGSERVE_LOAD_URL` (use a running server, e.g.
//! `http://127.0.0.1:8080`, instead of starting one), `WGSERVE_SERVE_BIN`
//! (the binary to start), `WGSERVE_LOAD_CONCURRENCY` (default `1,4,16`),
//! `WGSERVE_LOAD_TOKENS` (default 32).
//!
//! Client side: std threads and the hand-written HTTP client of
//! `tests/common`, no HTTP library.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::json;

use common::{set_read_timeout, EventStream, ServerProcess};

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

struct Row {
    concurrency: usize,
    tokens: usize,
    wall: Duration,
    ttft_p50: f64,
    ttft_p95: f64,
    itl_p50: f64,
    errors: usize,
}

fn run_level(addr: SocketAddr, n: usize, max_tokens: usize) -> (Row, Vec<String>) {
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
    let errors: Vec<String> = results
        .iter()
        .filter_map(|(_, s)| s.error.clone())
        .collect();
    let row = Row {
        concurrency: n,
        tokens: results.iter().map(|(_, s)| s.tokens).sum(),
        wall: last - first,
        ttft_p50: percentile_ms(&ttfts, 50.0),
        ttft_p95: percentile_ms(&ttfts, 95.0),
        itl_p50: percentile_ms(&gaps, 50.0),
        errors: errors.len(),
    };
    (row, errors)
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The adapter the server runs on, from its "ready on ..." log line.
fn adapter_from_log(server: &ServerProcess) -> String {
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    log.lines()
        .find_map(|l| {
            let rest = l.split_once(" ready on ")?.1;
            Some(
                rest.split_once(": weights")
                    .map_or(rest, |(a, _)| a)
                    .to_string(),
            )
        })
        .unwrap_or_else(|| "unknown adapter".into())
}

fn main() {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let levels: Vec<usize> = std::env::var("WGSERVE_LOAD_CONCURRENCY")
        .unwrap_or_else(|_| "1,4,16".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&n| n > 0)
        .collect();
    let max_tokens: usize = env_or("WGSERVE_LOAD_TOKENS", 32);
    set_read_timeout(Duration::from_secs(600));

    let _server; // Stops the server when main returns or panics.
    let (addr, adapter) = match std::env::var("WGSERVE_LOAD_URL") {
        Ok(url) => {
            let hostport = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let addr = hostport
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .unwrap_or_else(|| panic!("WGSERVE_LOAD_URL={url} is not host:port"));
            (addr, format!("server at {url}"))
        }
        Err(_) => {
            let bin = std::env::var("WGSERVE_SERVE_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|_| match option_env!("CARGO_BIN_EXE_wgserve") {
                    // `cargo bench` builds the binary in its own profile.
                    Some(built) => PathBuf::from(built),
                    None => manifest.join("target/release/wgserve"),
                });
            if !bin.exists() {
                eprintln!(
                    "{} is missing: build it with `cargo build --release` (or set WGSERVE_SERVE_BIN)",
                    bin.display()
                );
                std::process::exit(1);
            }
            let max_seqs = levels.iter().copied().max().unwrap_or(1).max(16);
            // The server's own defaults otherwise: the default model and
            // the page, relative to the working directory (cargo runs
            // benches in the package root).
            let args = ["--max-num-seqs".to_string(), max_seqs.to_string()];
            let log = std::env::temp_dir().join(format!("wgserve-load-{}.log", std::process::id()));
            let mut server = ServerProcess::start(&bin, &args, &log).expect("the server starts");
            match server.wait_ready(Duration::from_secs(300)) {
                Ok(took) => eprintln!(
                    "{} ready in {took:.1?} (log {})",
                    bin.display(),
                    log.display()
                ),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
            let adapter = adapter_from_log(&server);
            let addr = server.addr;
            _server = server;
            (addr, adapter)
        }
    };

    // The first request pays for pipeline and allocator warm-up.
    let warm = measure(addr, 0, 4, Instant::now());
    if let Some(e) = warm.error {
        eprintln!("warm-up request failed: {e}");
        std::process::exit(1);
    }

    println!(
        "serve_load: {max_tokens} tokens per request, streamed chat, temperature 0, ignore_eos"
    );
    println!(
        "| adapter | concurrent | tokens | wall s | tokens/s | TTFT p50 ms | TTFT p95 ms | ITL p50 ms | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut failed = false;
    for &n in &levels {
        let (row, errors) = run_level(addr, n, max_tokens);
        let wall = row.wall.as_secs_f64();
        println!(
            "| {adapter} | {} | {} | {wall:.1} | {:.2} | {:.0} | {:.0} | {:.0} | {} |",
            row.concurrency,
            row.tokens,
            row.tokens as f64 / wall.max(1e-9),
            row.ttft_p50,
            row.ttft_p95,
            row.itl_p50,
            row.errors
        );
        for e in errors {
            eprintln!("  N={n}: {e}");
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
