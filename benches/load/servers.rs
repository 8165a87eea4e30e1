//! The servers a load bench starts and stops: this build's `wgserve serve`
//! with its default settings and model, and llama.cpp's `llama-server`
//! (CPU) on a given model, each on a free loopback port and logging to a
//! file in the temp folder. Both are stopped when their handle drops.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, ServerProcess};

/// How long a server may take to load before the bench gives up.
const READY_WITHIN: Duration = Duration::from_secs(300);

fn log_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{name}-{}.log", std::process::id()))
}

/// The `wgserve` binary: `WGSERVE_SERVE_BIN`, else the one `cargo bench`
/// builds with the bench, else `target/release/wgserve`.
fn wgserve_bin() -> PathBuf {
    std::env::var("WGSERVE_SERVE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| match option_env!("CARGO_BIN_EXE_wgserve") {
            Some(built) => PathBuf::from(built),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/wgserve"),
        })
}

/// Starts `wgserve serve --max-num-seqs <max_seqs>` and waits until it is
/// ready; the server and the adapter it runs on.
pub fn start_wgserve(max_seqs: usize) -> Result<(ServerProcess, String), String> {
    let bin = wgserve_bin();
    if !bin.exists() {
        return Err(format!(
            "{} is missing: build it with `cargo build --release` (or set WGSERVE_SERVE_BIN)",
            bin.display()
        ));
    }
    // The server's own defaults otherwise: the default model and the page,
    // relative to the working directory (cargo runs benches in the package
    // root).
    let args = ["--max-num-seqs".to_string(), max_seqs.to_string()];
    let log = log_path("wgserve-load");
    let mut server = ServerProcess::start(&bin, &args, &log)
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let took = server.wait_ready(READY_WITHIN)?;
    eprintln!(
        "{} ready in {took:.1?} (log {})",
        bin.display(),
        log.display()
    );
    let adapter = adapter_from_log(&server);
    Ok((server, adapter))
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

/// A running `llama-server`; killed and reaped on drop.
pub struct LlamaServer {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl LlamaServer {
    /// `llama-server -m <model> -np <slots> -c <slots * 512> -t <threads>`
    /// on a free port, once its `/health` says 200.
    pub fn start(
        bin: &Path,
        model: &Path,
        slots: usize,
        threads: usize,
    ) -> Result<LlamaServer, String> {
        let port = free_port();
        let log = log_path("llama-server");
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        // 512 tokens of context per slot: a chat prompt of the load plus its
        // generated tokens fit many times over.
        let child = Command::new(bin)
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-np", &slots.to_string(), "-c", &(slots * 512).to_string()])
            .args(["-t", &threads.to_string()])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = LlamaServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            child,
        };
        let took = server.wait_ready()?;
        eprintln!(
            "{} ready in {took:.1?} (log {})",
            bin.display(),
            server.log.display()
        );
        Ok(server)
    }

    /// Polls `/health` until it says 200 (it says 503 while loading).
    fn wait_ready(&mut self) -> Result<Duration, String> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "llama-server exited ({status}) before it was ready; see {}",
                    self.log.display()
                ));
            }
            if health_ok(self.addr) {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > READY_WITHIN {
                return Err(format!(
                    "llama-server was not ready after {READY_WITHIN:?}; see {}",
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn health_ok(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let mut head = String::new();
    s.write_all(req.as_bytes()).is_ok()
        && BufReader::new(s).read_line(&mut head).is_ok()
        && head.split(' ').nth(1) == Some("200")
}
