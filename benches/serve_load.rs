//! `cargo bench --bench serve_load`: the whole server under load, over HTTP.
//!
//! Starts the binary `cargo bench` builds with it (`target/release/wgserve`)
//! on a free port with its default settings and model, or uses a running
//! OpenAI-compatible server (wgserve, llama.cpp's `llama-server`, ...), and
//! for each concurrency level N (1, 4, 16) sends N streaming chat requests
//! at once: different prompts, temperature 0, `ignore_eos`, 32 generated
//! tokens each (the client and its figures: `load/mod.rs`). Reports, per
//! level and with the adapter's name: aggregate generated tokens/s, median
//! and p95 time to first token, median inter-token latency and the number
//! of failed requests. `compare.rs` runs the same client against wgserve and
//! llama.cpp side by side.
//!
//! Environment: `WGSERVE_LOAD_URL` (use a running server, e.g.
//! `http://127.0.0.1:8080`, instead of starting one), `WGSERVE_SERVE_BIN`
//! (the binary to start), `WGSERVE_LOAD_LLAMACPP` (a `llama-server` binary to
//! start on the default model instead, e.g. `$(scripts/llamacpp | tail -1)`),
//! `WGSERVE_LOAD_CONCURRENCY` (default `1,4,16`), `WGSERVE_LOAD_TOKENS`
//! (default 32).

#[path = "../tests/common/mod.rs"]
mod common;
mod load;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use common::set_read_timeout;

fn main() {
    let levels = load::levels_from_env();
    let max_tokens = load::tokens_from_env();
    set_read_timeout(Duration::from_secs(600));

    // Held to stop the server when main returns or panics.
    let (_server, addr, name) = match start(&levels) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };

    let failed = match load::run_all(addr, &name, &levels, max_tokens) {
        Ok(rows) => rows.iter().any(|r| !r.errors.is_empty()),
        Err(e) => {
            eprintln!("{e}");
            true
        }
    };
    if failed {
        std::process::exit(1);
    }
}

/// A server the bench started, held only so that dropping it stops it.
type Started = Option<Box<dyn std::any::Any>>;

/// The server to load: a running one, llama.cpp's, or this build's wgserve.
fn start(levels: &[usize]) -> Result<(Started, SocketAddr, String), String> {
    let slots = levels.iter().copied().max().unwrap_or(1).max(16);
    if let Ok(bin) = std::env::var("WGSERVE_LOAD_LLAMACPP") {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let model = Path::new(wgserve::loader::DEFAULT_MODEL);
        let server = load::servers::LlamaServer::start(Path::new(&bin), model, slots, threads)?;
        let addr = server.addr;
        return Ok((Some(Box::new(server)), addr, "llama.cpp CPU".into()));
    }
    match std::env::var("WGSERVE_LOAD_URL") {
        Ok(url) => {
            let hostport = url
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string();
            let addr = hostport
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("WGSERVE_LOAD_URL={url} is not host:port"))?;
            Ok((None, addr, format!("server at {url}")))
        }
        Err(_) => {
            let (server, adapter) = load::servers::start_wgserve(slots)?;
            let addr = server.addr;
            Ok((Some(Box::new(server)), addr, adapter))
        }
    }
}
