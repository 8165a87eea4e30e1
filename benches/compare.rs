//! `make bench`'s last step: wgserve beside llama.cpp on the CPU, measured
//! in the same run, one after the other, and printed as one table with
//! ratios (wgserve / llama.cpp).
//!
//! - prefill 128 and decode 64 (batch 1) tokens/s: wgserve's from the engine
//!   bench's summary (`engine.rs`, run first with `WGSERVE_BENCH_SUMMARY`),
//!   llama.cpp's from `llama-bench -p 128 -n 64 -o json`;
//! - the HTTP load at N = 1/4/16: the same client (`load/`) with the same
//!   requests against `wgserve serve`, then against `llama-server -np 16`,
//!   never both at once; aggregate tokens/s and median time to first token.
//!
//! llama.cpp's binaries come from `scripts/llamacpp` (built once into a cache
//! folder outside the repository). If that fails (no network, no compiler),
//! the llama.cpp column says why it is empty and wgserve's figures still
//! print. After the table: wgserve's own figures (decode batch 8/16, the
//! in-process runtime load).
//!
//! Environment: `WGSERVE_BENCH_SUMMARY` (default `target/bench-engine.json`),
//! `WGSERVE_BENCH_MODEL`, `WGSERVE_BENCH_REPEATS` (llama-bench's
//! repetitions, default 3), `WGSERVE_LLAMACPP_THREADS` (default: the CPU
//! count), `WGSERVE_LOAD_CONCURRENCY`, `WGSERVE_LOAD_TOKENS`.

#[path = "../tests/common/mod.rs"]
mod common;
mod load;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use load::servers::{start_wgserve, LlamaServer};

/// One figure of one side, or why it is missing.
type Figure = Result<f64, String>;

/// The two llama.cpp binaries `scripts/llamacpp` prints.
struct LlamaCpp {
    bench: PathBuf,
    server: PathBuf,
}

/// Builds (or finds) llama.cpp; the reason, from the script's last line,
/// when it cannot.
fn llamacpp() -> Result<LlamaCpp, String> {
    eprintln!("compare: scripts/llamacpp (a first build takes about ten minutes)");
    let out = Command::new("scripts/llamacpp")
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run scripts/llamacpp: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprint!("{stderr}");
        let why = stderr.lines().rev().find(|l| !l.trim().is_empty());
        let why = why.map(|l| l.trim().trim_start_matches("llamacpp: error: "));
        return Err(why.unwrap_or("scripts/llamacpp failed").to_string());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut paths = stdout.lines().map(PathBuf::from);
    match (paths.next(), paths.next()) {
        (Some(bench), Some(server)) => Ok(LlamaCpp { bench, server }),
        _ => Err(format!("scripts/llamacpp printed no two paths: {stdout}")),
    }
}

/// `llama-bench -p 128 -n 64`: (prefill, decode) tokens/s, each the mean of
/// its repetitions.
fn llama_bench(bin: &Path, model: &Path, threads: usize, repeats: usize) -> (Figure, Figure) {
    eprintln!("compare: llama-bench -p 128 -n 64 -t {threads} -r {repeats}");
    let out = Command::new(bin)
        .arg("-m")
        .arg(model)
        .args(["-p", "128", "-n", "64", "-o", "json"])
        .args(["-t", &threads.to_string(), "-r", &repeats.to_string()])
        .output();
    let runs: Result<Vec<Value>, String> = match out {
        Err(e) => Err(format!("cannot run llama-bench: {e}")),
        Ok(o) if !o.status.success() => Err(format!(
            "llama-bench failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(o) => serde_json::from_slice(&o.stdout)
            .map_err(|e| format!("llama-bench printed no JSON array: {e}")),
    };
    let pick = |prompt: u64, gen: u64| -> Figure {
        let runs = runs.as_ref().map_err(Clone::clone)?;
        runs.iter()
            .find(|r| r["n_prompt"] == prompt && r["n_gen"] == gen)
            .and_then(|r| r["avg_ts"].as_f64())
            .ok_or_else(|| format!("llama-bench gave no pp{prompt}/tg{gen} result"))
    };
    (pick(128, 0), pick(0, 64))
}

/// One server's HTTP figures per level: (tokens/s, median TTFT ms).
type LoadFigures = Result<Vec<(usize, Figure, Figure)>, String>;

fn load_figures(rows: Result<Vec<load::Level>, String>) -> LoadFigures {
    Ok(rows?
        .into_iter()
        .map(|r| {
            if r.errors.is_empty() {
                (r.concurrency, Ok(r.tokens_per_s()), Ok(r.ttft_p50_ms))
            } else {
                let failed = format!(
                    "{} of {} requests failed at N={}",
                    r.errors.len(),
                    r.concurrency,
                    r.concurrency
                );
                (r.concurrency, Err(failed.clone()), Err(failed))
            }
        })
        .collect())
}

fn wgserve_load(levels: &[usize], max_tokens: usize) -> LoadFigures {
    let (server, adapter) = start_wgserve(levels.iter().copied().max().unwrap_or(1).max(16))?;
    let rows = load::run_all(
        server.addr,
        &format!("wgserve ({adapter})"),
        levels,
        max_tokens,
    );
    drop(server);
    load_figures(rows)
}

fn llama_load(bin: &Path, model: &Path, threads: usize, levels: &[usize], n: usize) -> LoadFigures {
    let slots = levels.iter().copied().max().unwrap_or(1).max(16);
    let server = LlamaServer::start(bin, model, slots, threads)?;
    let rows = load::run_all(server.addr, "llama.cpp CPU", levels, n);
    drop(server);
    load_figures(rows)
}

/// The figure at level `n` of a load's results (`tps` picks which one).
fn at_level(load: &LoadFigures, n: usize, tps: bool) -> Figure {
    let rows = load.as_ref().map_err(Clone::clone)?;
    let (_, t, ttft) = rows
        .iter()
        .find(|(c, _, _)| *c == n)
        .ok_or_else(|| format!("no N={n} level was run"))?;
    if tps { t } else { ttft }.clone()
}

fn cell(f: &Figure, decimals: usize) -> String {
    match f {
        Ok(v) => format!("{v:.decimals$}"),
        Err(_) => "—".into(),
    }
}

fn ratio(a: &Figure, b: &Figure) -> String {
    match (a, b) {
        (Ok(a), Ok(b)) if *b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

/// A figure out of the engine bench's summary.
fn from_summary(summary: &Result<Value, String>, pointer: &str) -> Figure {
    let s = summary.as_ref().map_err(Clone::clone)?;
    s.pointer(pointer)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("the engine summary has no {pointer}"))
}

fn main() {
    let model = PathBuf::from(
        std::env::var("WGSERVE_BENCH_MODEL")
            .unwrap_or_else(|_| wgserve::loader::DEFAULT_MODEL.into()),
    );
    let repeats: usize = std::env::var("WGSERVE_BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let threads: usize = std::env::var("WGSERVE_LLAMACPP_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let levels = load::levels_from_env();
    let max_tokens = load::tokens_from_env();
    common::set_read_timeout(Duration::from_secs(600));

    let summary_path = std::env::var("WGSERVE_BENCH_SUMMARY")
        .unwrap_or_else(|_| "target/bench-engine.json".into());
    let summary: Result<Value, String> = std::fs::read_to_string(&summary_path)
        .map_err(|e| format!("no engine summary at {summary_path} ({e}): run `make bench`"))
        .and_then(|t| serde_json::from_str(&t).map_err(|e| format!("{summary_path}: {e}")));

    // One after the other: the build, llama-bench, then each server's load.
    let llama = llamacpp();
    let (ll_prefill, ll_decode) = match &llama {
        Ok(l) => llama_bench(&l.bench, &model, threads, repeats),
        Err(e) => (Err(e.clone()), Err(e.clone())),
    };
    let wg_load = wgserve_load(&levels, max_tokens);
    let ll_load = match &llama {
        Ok(l) => llama_load(&l.server, &model, threads, &levels, max_tokens),
        Err(e) => Err(e.clone()),
    };

    let mut rows: Vec<(String, Figure, Figure, usize)> = vec![
        (
            "prefill 128, tok/s".into(),
            from_summary(&summary, "/prefill_128_tps"),
            ll_prefill,
            1,
        ),
        (
            "decode 64 (batch 1), tok/s".into(),
            from_summary(&summary, "/decode_64_tps/1"),
            ll_decode,
            1,
        ),
    ];
    for &n in &levels {
        rows.push((
            format!("HTTP N={n}, aggregate tok/s"),
            at_level(&wg_load, n, true),
            at_level(&ll_load, n, true),
            1,
        ));
        rows.push((
            format!("HTTP N={n}, median TTFT ms"),
            at_level(&wg_load, n, false),
            at_level(&ll_load, n, false),
            0,
        ));
    }
    print_table(&summary, &model, threads, max_tokens, &rows);
    print_wgserve_only(&summary);
}

fn print_table(
    summary: &Result<Value, String>,
    model: &Path,
    threads: usize,
    max_tokens: usize,
    rows: &[(String, Figure, Figure, usize)],
) {
    let adapter = summary
        .as_ref()
        .ok()
        .and_then(|s| s["adapter"].as_str())
        .unwrap_or("unknown adapter");
    println!();
    println!(
        "## wgserve ({adapter}) beside llama.cpp (CPU, {threads} threads) on {}",
        model.display()
    );
    println!(
        "HTTP: streamed chat, {max_tokens} tokens per request, temperature 0, ignore_eos. \
         Ratio above 1: wgserve faster for tok/s, slower for TTFT."
    );
    println!();
    println!("| measure | wgserve | llama.cpp CPU | ratio (wgserve/llama.cpp) |");
    println!("|---|---:|---:|---:|");
    for (name, wg, ll, decimals) in rows {
        println!(
            "| {name} | {} | {} | {} |",
            cell(wg, *decimals),
            cell(ll, *decimals),
            ratio(wg, ll)
        );
    }
    // Each distinct reason once, so a missing build is said once, not per row.
    let mut reasons: Vec<String> = Vec::new();
    for (_, wg, ll, _) in rows {
        for (side, f) in [("wgserve", wg), ("llama.cpp", ll)] {
            if let Err(e) = f {
                let line = format!("{side}: {e}");
                if !reasons.contains(&line) {
                    reasons.push(line);
                }
            }
        }
    }
    if !reasons.is_empty() {
        println!();
        println!("Why cells are empty (—):");
        for r in reasons {
            println!("- {r}");
        }
    }
}

/// wgserve's figures llama.cpp has no counterpart for here.
fn print_wgserve_only(summary: &Result<Value, String>) {
    let Ok(s) = summary else { return };
    println!();
    println!(
        "wgserve only (engine bench, median of {} runs):",
        s["repeats"]
    );
    for batch in ["8", "16"] {
        if let Some(v) = s["decode_64_tps"][batch].as_f64() {
            println!("  decode 64, batch {batch:>2} (aggregate): {v:.2} tok/s");
        }
    }
    if let Some(levels) = s["runtime"].as_array() {
        println!("  in-process runtime load, 64 tokens per request:");
        for l in levels {
            println!(
                "    N = {:>2}: {:.2} tok/s, median TTFT {:.2} s, median ITL {:.1} ms",
                l["n"],
                l["tps"].as_f64().unwrap_or(f64::NAN),
                l["ttft_s"].as_f64().unwrap_or(f64::NAN),
                l["itl_ms"].as_f64().unwrap_or(f64::NAN)
            );
        }
    }
    if let Some(mib) = s["peak_host_mib"].as_f64() {
        println!("  peak host memory (engine bench): {mib:.0} MiB");
    }
}
