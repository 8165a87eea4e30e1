//! What the whole-server tests (and the load benchmark) share: an HTTP/1.1
//! client on `std::net::TcpStream` (chunked decoding, SSE parsing, OpenAI
//! error checks), an incremental SSE reader that timestamps each event as
//! it arrives, a minimal RFC 6455 WebSocket client, and a launcher that runs
//! the `wgserve` binary on a free port and never outlives its parent.
//!
//! Written by hand on purpose: the tests see the bytes a real client would,
//! with no HTTP library in between.

// Each test crate uses a different part of this module.
#![allow(dead_code)]

pub mod tiny;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Socket read timeout in seconds: short against the mock, long enough for
/// a real model on a software GPU.
static READ_TIMEOUT_SECS: AtomicU64 = AtomicU64::new(20);

pub fn set_read_timeout(t: Duration) {
    READ_TIMEOUT_SECS.store(t.as_secs().max(1), Ordering::Relaxed);
}

fn read_timeout() -> Duration {
    Duration::from_secs(READ_TIMEOUT_SECS.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------- HTTP client

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }

    /// Checks OpenAI's error shape and returns the error object.
    pub fn error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text());
        assert!(self
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        let v = self.json();
        let e = v["error"].clone();
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert!(e["type"].is_string(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        e
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(read_timeout())).unwrap();
    s
}

pub fn send_request(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) and close before reading a large body.
    let _ = s.write_all(body);
}

pub fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .unwrap_or_else(|| panic!("bad status line {line:?}"))
        .parse()
        .unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    (status, headers)
}

pub fn decode_chunked(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
    out
}

pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = connect(addr);
    send_request(&mut s, method, path, headers, body);
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let mut raw = Vec::new();
    let _ = r.read_to_end(&mut raw);
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { decode_chunked(&raw) } else { raw };
    Response {
        status,
        headers,
        body,
    }
}

pub fn post(addr: SocketAddr, path: &str, body: &Value) -> Response {
    http(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    http(addr, "GET", path, &[], b"")
}

/// An SSE body as its events: `Data(json or "[DONE]")` or `Comment`.
#[derive(Debug, PartialEq)]
pub enum Sse {
    Data(String),
    Comment(String),
}

pub fn sse_events(body: &str) -> Vec<Sse> {
    assert!(
        body.ends_with("\n\n"),
        "events end with a blank line: {body:?}"
    );
    body.trim_end()
        .split("\n\n")
        .map(|ev| {
            if let Some(c) = ev.strip_prefix(':') {
                Sse::Comment(c.trim().to_string())
            } else {
                Sse::Data(
                    ev.strip_prefix("data: ")
                        .unwrap_or_else(|| panic!("not a data event: {ev:?}"))
                        .to_string(),
                )
            }
        })
        .collect()
}

/// The data events of a stream: JSON chunks, with `[DONE]` checked last.
pub fn stream_chunks(resp: &Response) -> Vec<Value> {
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(resp.header("cache-control"), Some("no-cache"));
    let events = sse_events(&resp.text());
    let data: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Sse::Data(d) => Some(d),
            Sse::Comment(_) => None,
        })
        .collect();
    assert_eq!(data.last().map(|s| s.as_str()), Some("[DONE]"));
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

// ---------------------------------------------------------------- WebSocket client

/// Sends the upgrade request; returns the status and the open stream.
pub fn ws_handshake(addr: SocketAddr, path: &str) -> (u16, BufReader<TcpStream>) {
    let mut s = connect(addr);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    if status != 101 {
        // Drain the error body so the next handshake starts clean.
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
    }
    (status, r)
}

pub struct Ws {
    r: BufReader<TcpStream>,
}

impl Ws {
    pub fn open(addr: SocketAddr) -> Ws {
        let (status, r) = ws_handshake(addr, "/v1/ws");
        assert_eq!(status, 101);
        Ws { r }
    }

    /// A socket already upgraded by [`ws_handshake`] (on another path or
    /// with a key in the query).
    pub fn from_stream(r: BufReader<TcpStream>) -> Ws {
        Ws { r }
    }

    /// One masked client frame.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = vec![0x80 | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len < 65536 {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask: [u8; 4] = rand::random();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.r.get_mut().write_all(&frame).unwrap();
    }

    pub fn send(&mut self, v: &Value) {
        self.send_frame(0x1, v.to_string().as_bytes());
    }

    /// The next frame: (opcode, payload).
    pub fn read_frame(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        self.r.read_exact(&mut head).unwrap();
        let opcode = head[0] & 0x0f;
        let mut len = (head[1] & 0x7f) as u64;
        if len == 126 {
            let mut b = [0u8; 2];
            self.r.read_exact(&mut b).unwrap();
            len = u16::from_be_bytes(b) as u64;
        } else if len == 127 {
            let mut b = [0u8; 8];
            self.r.read_exact(&mut b).unwrap();
            len = u64::from_be_bytes(b);
        }
        let mut payload = vec![0u8; len as usize];
        self.r.read_exact(&mut payload).unwrap();
        (opcode, payload)
    }

    /// The next text message, as JSON.
    pub fn recv(&mut self) -> Value {
        loop {
            let (opcode, payload) = self.read_frame();
            match opcode {
                0x1 => return serde_json::from_slice(&payload).unwrap(),
                0x9 | 0xA => continue,
                other => panic!("unexpected frame opcode {other}"),
            }
        }
    }
}

// ---------------------------------------------------------------- streaming reader

/// One SSE event as it arrived: its text without the trailing blank line
/// (`data: {...}`, `data: [DONE]` or `: keep-alive`) and when.
#[derive(Debug, Clone)]
pub struct TimedEvent {
    pub text: String,
    pub at: Instant,
}

impl TimedEvent {
    /// The JSON of a `data:` event that is not `[DONE]`.
    pub fn json(&self) -> Option<Value> {
        let data = self.text.strip_prefix("data: ")?;
        serde_json::from_str(data).ok()
    }

    pub fn is_done(&self) -> bool {
        self.text == "data: [DONE]"
    }
}

/// An open streamed response read event by event, decoding the chunked
/// transfer encoding as bytes arrive (an event may span chunks, and a
/// chunk may hold several events).
pub struct EventStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Decoded body bytes not yet returned as an event.
    pending: Vec<u8>,
    /// The raw body bytes, decoded, as received: for exact framing checks.
    pub raw: Vec<u8>,
    ended: bool,
}

impl EventStream {
    /// Sends `POST path` with a JSON body and reads the response head.
    pub fn post(addr: SocketAddr, path: &str, body: &Value) -> std::io::Result<EventStream> {
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(read_timeout()))?;
        let body = body.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes())?;
        s.write_all(body.as_bytes())?;
        let mut reader = BufReader::new(s);
        let (status, headers) = try_read_head(&mut reader)?;
        Ok(EventStream {
            reader,
            status,
            headers,
            pending: Vec::new(),
            raw: Vec::new(),
            ended: false,
        })
    }

    fn chunked(&self) -> bool {
        self.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    }

    /// Reads the next piece of the body into `pending`; false at its end.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.ended {
            return Ok(false);
        }
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        if !self.chunked() {
            let mut buf = [0u8; 4096];
            let n = self.reader.read(&mut buf)?;
            self.ended = n == 0;
            self.pending.extend_from_slice(&buf[..n]);
            self.raw.extend_from_slice(&buf[..n]);
            return Ok(n > 0);
        }
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            self.ended = true;
            return Ok(false);
        }
        let size = usize::from_str_radix(line.trim(), 16)
            .map_err(|_| bad(&format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            self.ended = true;
            return Ok(false);
        }
        let mut chunk = vec![0u8; size + 2];
        self.reader.read_exact(&mut chunk)?;
        if &chunk[size..] != b"\r\n" {
            return Err(bad("a chunk does not end with CRLF"));
        }
        chunk.truncate(size);
        self.pending.extend_from_slice(&chunk);
        self.raw.extend_from_slice(&chunk);
        Ok(true)
    }

    /// The next event, timestamped when its last byte arrived; `None` when
    /// the body ends (leftover bytes without a blank line are an error).
    pub fn next_event(&mut self) -> std::io::Result<Option<TimedEvent>> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8(self.pending[..end].to_vec()).map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })?;
                self.pending.drain(..end + 2);
                return Ok(Some(TimedEvent {
                    text,
                    at: Instant::now(),
                }));
            }
            if !self.fill()? {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "the body ended inside an event: {:?}",
                        String::from_utf8_lossy(&self.pending)
                    ),
                ));
            }
        }
    }

    /// Every remaining event, to the end of the body.
    pub fn collect(&mut self) -> std::io::Result<Vec<TimedEvent>> {
        let mut out = Vec::new();
        while let Some(e) = self.next_event()? {
            out.push(e);
        }
        Ok(out)
    }
}

fn try_read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("the head ended early".into()));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| bad(format!("bad header line {l:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok((status, headers))
}

// ---------------------------------------------------------------- metrics

/// `/metrics` as name -> value (comments skipped).
pub fn metrics(addr: SocketAddr) -> std::collections::HashMap<String, f64> {
    let resp = get(addr, "/metrics");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once(' ').unwrap();
            (name.to_string(), value.parse::<f64>().unwrap())
        })
        .collect()
}

// ---------------------------------------------------------------- the real server

/// The default model's file, as `scripts/setup` fetches it.
pub fn default_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(wgserve::loader::DEFAULT_MODEL)
}

/// This build's `wgserve serve <args>`, logging to `log_name` in the test
/// temp folder, once `/health` says 200 (or the reason it never did).
pub fn serve_ready(
    args: &[String],
    log_name: &str,
    within: Duration,
) -> Result<ServerProcess, String> {
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(log_name);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_wgserve"));
    let mut server = ServerProcess::start(&bin, args, &log)
        .map_err(|e| format!("cannot start the server: {e}"))?;
    server.wait_ready(within)?;
    Ok(server)
}

/// A port nobody listens on right now (the OS's pick, released at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("the OS picks a free port")
}

/// `wgserve serve` as a child process. It runs under a small shell that
/// stops it when our end of its stdin closes, which happens however this
/// process ends (a static never dropped, a panic, a kill), so no server is
/// ever left behind.
pub struct ServerProcess {
    pub addr: SocketAddr,
    pub log: PathBuf,
    shell: Child,
    stdin: Option<ChildStdin>,
}

/// Runs "$@" in the background; a watcher kills it when fd 3 (our stdin
/// pipe) reaches EOF; the shell exits with the server's status.
const GUARD: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
pid=$!
{ read -r _ <&3; kill "$pid" 2>/dev/null; } &
wait "$pid""#;

impl ServerProcess {
    /// Starts `binary serve --port <free> <args>` with no `WGSERVE_*`
    /// variables from our environment, logging to `log`.
    pub fn start(binary: &Path, args: &[String], log: &Path) -> std::io::Result<ServerProcess> {
        Self::start_with_env(binary, args, &[], log)
    }

    /// [`ServerProcess::start`] with these environment variables set (after
    /// ours are cleared), e.g. a test hook.
    pub fn start_with_env(
        binary: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> std::io::Result<ServerProcess> {
        let port = free_port();
        let out = std::fs::File::create(log)?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(GUARD)
            .arg("wgserve-guard")
            .arg(binary)
            .arg("serve")
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("WGSERVE_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied());
        let mut shell = cmd.spawn()?;
        let stdin = shell.stdin.take();
        Ok(ServerProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log: log.to_path_buf(),
            shell,
            stdin,
        })
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Polls `/health` until it says 200; fails if the server exits or
    /// `within` passes first.
    pub fn wait_ready(&mut self, within: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = self.shell.try_wait() {
                return Err(format!(
                    "the server exited ({status}) before it was ready:\n{}",
                    self.log_tail(30)
                ));
            }
            if let Ok(mut s) = TcpStream::connect(self.addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let req = "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
                let mut head = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && BufReader::new(s).read_line(&mut head).is_ok()
                    && head.split(' ').nth(1) == Some("200")
                {
                    return Ok(t0.elapsed());
                }
            }
            if t0.elapsed() > within {
                return Err(format!(
                    "the server was not ready after {within:?}:\n{}",
                    self.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the server to exit on its own; its exit status, or `None`
    /// if it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Ok(Some(status)) = self.shell.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Stops the server (SIGTERM through the guard) and waits for it.
    pub fn stop(&mut self) {
        self.stdin.take();
        let _ = self.shell.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
