//! Test harness: the real rsp binary, small real backends, raw clients.
#![allow(dead_code)]

pub mod h2;
pub mod origin;
pub mod redis;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// FNV-1a: the same checksum at both ends proves the bytes arrived intact.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
    })
}

/// The deterministic body of `n` bytes the backend serves for `/size/n`.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Tests that open a thousand sockets need more than the common soft limit
/// of 1024 descriptors.
pub fn raise_open_file_limit() {
    rsp::limits::raise_open_file_limit().expect("raise the open file limit");
}

/// Polls `condition` every 10 ms until it holds (true) or `timeout`
/// passes (false): every wait of the tests for something to happen (a log
/// line, a listener, a counter) is this, asserted with what it waited for.
#[must_use]
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// What a run of curl printed, and how it ended.
pub struct Curl {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Curl {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// `curl --silent --show-error ARGS` (Debian's curl, installed when
/// missing): the one way the tests run curl.
pub fn curl(args: &[&str]) -> Curl {
    ensure_package("curl", "curl");
    let output = Command::new("curl")
        .args(["--silent", "--show-error"])
        .args(args)
        .output()
        .unwrap();
    Curl {
        status: output.status,
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// CPU time (user and system) process `pid` has used so far, in clock
/// ticks, from /proc/PID/stat.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name in parentheses: utime and stime are
    // the 14th and 15th of the line.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Waits until rsp accepts connections on `address`; `log` is shown if it never does.
pub fn wait_for_listener(address: SocketAddr, log: &std::path::Path) {
    assert!(
        wait_until(Duration::from_secs(10), || TcpStream::connect(address)
            .is_ok()),
        "rsp did not start: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A port nothing listens on, and one this test process has not handed out
/// before: the kernel may give a port back as soon as the probe socket
/// closes, and two proxies of tests running side by side on one port would
/// answer each other's clients.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

static NEXT_FILE: AtomicUsize = AtomicUsize::new(0);

pub fn temp_file(name: &str, contents: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "rsp-test-{}-{}-{name}",
        std::process::id(),
        NEXT_FILE.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, contents).unwrap();
    path
}

/// `rsp --check FILE`: the exit code and what it printed on stderr.
pub fn check_config(path: &std::path::Path) -> (Option<i32>, String) {
    let output = Command::new(rsp_binary())
        .arg("--check")
        .arg(path)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stdout));
    (output.status.code(), text)
}

/// The rsp under test: this build's, or `RSP_TEST_BINARY` (to show that a
/// test fails on an older build).
pub fn rsp_binary() -> String {
    std::env::var("RSP_TEST_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_rsp").to_owned())
}

/// An admin request as the stats page's buttons or `curl` make it: the
/// admin address as Host, and the header a change needs.
pub fn admin_request(address: SocketAddr, method: &str, path: &str) -> Response {
    let mut client = Client::connect(address);
    client.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nX-Rsp-Admin: 1\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    client.response(method == "HEAD")
}

/// One request to the admin port on `port` with a body, as a deliberate
/// change (`X-Rsp-Admin: 1`).
pub fn admin(port: u16, method: &str, path: &str, body: &str) -> Response {
    let mut client = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    client.send(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Rsp-Admin: 1\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    client.response(method == "HEAD")
}

/// A running rsp, killed when dropped.
pub struct Proxy {
    pub child: Child,
    pub address: SocketAddr,
    pub log: PathBuf,
    pub config: PathBuf,
}

impl Proxy {
    /// Starts rsp with `settings` plus a `listen` line on a free port.
    pub fn start(settings: &str) -> Proxy {
        let port = free_port();
        let config = temp_file(
            "config.lua",
            &format!("listen = \"127.0.0.1:{port}\"\n{settings}\n"),
        );
        Proxy::run(config, port)
    }

    fn run(config: PathBuf, port: u16) -> Proxy {
        let log = config.with_extension("log");
        let child = Command::new(rsp_binary())
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Its own log line, logged once the socket listens: a connection
        // alone could reach another rsp that holds the port.
        let listening = format!("listening on {address}");
        // Worker 0 alone holds the admin port, and another worker may log
        // its listener first: wait for the admin line too when there is one.
        let has_admin = std::fs::read_to_string(&config)
            .unwrap_or_default()
            .lines()
            .any(|line| line.trim_start().starts_with("admin ="));
        let ready =
            |text: &str| text.contains(&listening) && (!has_admin || text.contains("admin API on"));
        assert!(
            wait_until(Duration::from_secs(10), || ready(
                &std::fs::read_to_string(&log).unwrap_or_default()
            )),
            "rsp did not listen on {address}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Proxy {
            child,
            address,
            log,
            config,
        }
    }

    /// Starts rsp with a listener on a free port that takes HTTP/2 with
    /// prior knowledge (h2c) besides HTTP/1.1.
    pub fn start_h2c(settings: &str) -> Proxy {
        let port = free_port();
        let config = temp_file(
            "config.lua",
            &format!(
                "listen = {{ {{ addr = \"127.0.0.1:{port}\", http2 = true }} }}\n{settings}\n"
            ),
        );
        Proxy::run(config, port)
    }

    /// Starts rsp with an HTTP listener on a free port (the proxy's
    /// `address`) and the further `listen` entries `more_listeners`.
    pub fn start_listening(more_listeners: &str, settings: &str) -> Proxy {
        let port = free_port();
        let config = temp_file(
            "config.lua",
            &format!("listen = {{ \"127.0.0.1:{port}\", {more_listeners} }}\n{settings}\n"),
        );
        Proxy::run(config, port)
    }

    /// Starts rsp in front of `backend`, with any further `settings`.
    pub fn in_front_of(backend: &Backend, settings: &str) -> Proxy {
        Proxy::start(&format!(
            "backends = {{ \"{}\" }}\n{settings}",
            backend.address
        ))
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill only sends a signal to the child we started.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, signal);
        }
    }

    /// Rewrites the config file (the `listen` line stays unless `settings`
    /// sets its own) and sends SIGHUP.
    pub fn reload(&self, settings: &str) {
        let listen = if settings.contains("listen") {
            String::new()
        } else {
            format!("listen = \"{}\"\n", self.address)
        };
        std::fs::write(&self.config, format!("{listen}{settings}\n")).unwrap();
        self.signal(libc::SIGHUP);
    }

    /// Waits until the log holds `text` `count` times.
    pub fn wait_for_log(&self, text: &str, count: usize) {
        assert!(
            wait_until(Duration::from_secs(10), || self.log().matches(text).count()
                >= count),
            "no {text:?} x{count} in {}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn rss_kib(&self) -> u64 {
        self.memory_kib("VmRSS")
    }

    /// A field of /proc/PID/status, in KiB (VmRSS, VmHWM).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// CPU time rsp has used so far (user and system).
    pub fn cpu_time(&self) -> Duration {
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(cpu_ticks(self.child.id()) * 1000 / ticks)
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn connect(&self) -> Client {
        Client::connect(self.address)
    }

    /// One raw request on a connection of its own.
    pub fn get_raw(&self, raw: &str) -> Response {
        let mut client = self.connect();
        client.send(raw.as_bytes());
        client.response(false)
    }

    pub fn get(&self, path: &str) -> Response {
        let mut client = self.connect();
        client.send(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        client.response(false)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.x client over one connection.
pub struct Client {
    pub reader: BufReader<TcpStream>,
}

impl Client {
    pub fn connect(address: SocketAddr) -> Client {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            reader: BufReader::new(stream),
        }
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).unwrap();
    }

    pub fn shutdown_write(&self) {
        self.stream().shutdown(Shutdown::Write).unwrap();
    }

    /// Reads one response; `head_request` means it has no body.
    pub fn response(&mut self, head_request: bool) -> Response {
        self.try_response(head_request).expect("a response")
    }

    pub fn try_response(&mut self, head_request: bool) -> Option<Response> {
        let head = read_head(&mut self.reader)?;
        let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        let mut response = Response {
            status,
            head,
            body: Vec::new(),
        };
        if head_request || status < 200 || status == 204 || status == 304 {
            return Some(response);
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|coding| coding.eq_ignore_ascii_case("chunked"))
        {
            response.body = read_chunked(&mut self.reader);
        } else if let Some(length) = response.header("content-length") {
            let mut body = vec![0; length.parse().unwrap()];
            self.reader.read_exact(&mut body).unwrap();
            response.body = body;
        } else {
            self.reader.read_to_end(&mut response.body).unwrap();
        }
        Some(response)
    }

    /// True when the server closed the connection (EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        !matches!(self.reader.read(&mut byte), Ok(1))
    }
}

pub fn read_head<R: BufRead>(reader: &mut R) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Some(head);
        }
    }
}

pub fn read_chunked<R: BufRead>(reader: &mut R) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let mut trailer = String::new();
                reader.read_line(&mut trailer).unwrap();
                if trailer == "\r\n" {
                    return body;
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).unwrap();
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).unwrap();
        assert_eq!(&crlf, b"\r\n");
    }
}

/// What a backend saw.
#[derive(Default)]
pub struct Seen {
    pub heads: Vec<String>,
    /// Health checks (`/healthz`) answered.
    pub health_checks: usize,
    /// Responses the backend could not finish writing.
    pub aborted_writes: usize,
    /// Connections accepted, and those that have ended since.
    pub connections: usize,
    pub connections_ended: usize,
}

/// A small threaded HTTP/1.1 backend. Paths:
/// `/size/N` N pattern bytes; `/chunked/N` the same, chunked; `/close/N`
/// close-delimited; `/checksum` answers `length checksum` of the request
/// body; `/head` echoes the request head; `/sleep/MS` answers late; `/status/N` an empty N answer;
/// anything else: `hello from NAME`.
pub struct Backend {
    pub address: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    /// The status `/healthz` answers with (200 unless a test changes it).
    pub health: Arc<AtomicU16>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let health = Arc::new(AtomicU16::new(200));
        let (shared, shared_health) = (seen.clone(), health.clone());
        let name = name.to_owned();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = shared.clone();
                let health = shared_health.clone();
                let name = name.clone();
                seen.lock().unwrap().connections += 1;
                thread::spawn(move || {
                    serve(stream, &name, &seen, &health);
                    seen.lock().unwrap().connections_ended += 1;
                });
            }
        });
        Backend {
            address,
            seen,
            health,
        }
    }

    pub fn heads(&self) -> Vec<String> {
        self.seen.lock().unwrap().heads.clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().heads.len()
    }

    /// (connections accepted, connections ended).
    pub fn connections(&self) -> (usize, usize) {
        let seen = self.seen.lock().unwrap();
        (seen.connections, seen.connections_ended)
    }
}

fn serve(stream: TcpStream, name: &str, seen: &Mutex<Seen>, health: &AtomicU16) {
    // As nginx does on keep-alive connections: a head and body written
    // apart must not wait for the peer's delayed ACK.
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    while let Some(head) = read_head(&mut reader) {
        if head.starts_with("GET /healthz ") {
            seen.lock().unwrap().health_checks += 1;
            let status = health.load(Ordering::SeqCst);
            let _ = writer
                .write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").as_bytes());
            return;
        }
        seen.lock().unwrap().heads.push(head.clone());
        let mut lines = head.lines();
        let request_line = lines.next().unwrap_or_default().to_owned();
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let header = |wanted: &str| {
            head.lines().skip(1).find_map(|line| {
                let (field, value) = line.split_once(':')?;
                field
                    .eq_ignore_ascii_case(wanted)
                    .then(|| value.trim().to_owned())
            })
        };
        if header("expect").is_some_and(|expect| expect.eq_ignore_ascii_case("100-continue")) {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        }
        let body = if header("transfer-encoding").is_some() {
            read_chunked(&mut reader)
        } else if let Some(length) = header("content-length") {
            let mut body = vec![0; length.parse().unwrap()];
            reader.read_exact(&mut body).unwrap();
            body
        } else {
            Vec::new()
        };
        let number = |prefix: &str| {
            path.strip_prefix(prefix)
                .and_then(|n| n.parse::<usize>().ok())
        };
        let (head_out, body_out, close): (String, Vec<u8>, bool) = if let Some(n) = number("/size/")
        {
            (
                format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n"),
                pattern(n),
                false,
            )
        } else if let Some(n) = number("/chunked/") {
            let mut body = Vec::new();
            for piece in pattern(n).chunks(7000) {
                body.extend_from_slice(format!("{:x};ext=1\r\n", piece.len()).as_bytes());
                body.extend_from_slice(piece);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(b"0\r\nX-Trailer: done\r\n\r\n");
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
                body,
                false,
            )
        } else if let Some(n) = number("/close/") {
            (
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".into(),
                pattern(n),
                true,
            )
        } else if let Some(status) = number("/status/") {
            (
                format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 0\r\n\r\n"),
                Vec::new(),
                false,
            )
        } else if let Some(milliseconds) = number("/sleep/") {
            thread::sleep(Duration::from_millis(milliseconds as u64));
            let text = format!("hello from {name}");
            (
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", text.len()),
                text.into_bytes(),
                false,
            )
        } else if path == "/checksum" {
            let text = format!("{} {}", body.len(), checksum(&body));
            (
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", text.len()),
                text.into_bytes(),
                false,
            )
        } else if path == "/head" {
            (
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", head.len()),
                head.clone().into_bytes(),
                false,
            )
        } else {
            let text = format!("hello from {name}");
            (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: {name}\r\n\r\n",
                    text.len()
                ),
                text.into_bytes(),
                false,
            )
        };
        let body_out = if method == "HEAD" {
            Vec::new()
        } else {
            body_out
        };
        if writer
            .write_all(head_out.as_bytes())
            .and_then(|()| writer.write_all(&body_out))
            .is_err()
        {
            seen.lock().unwrap().aborted_writes += 1;
            return;
        }
        if close || header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
            return;
        }
    }
}

/// A backend that records the exact bytes of every request it receives
/// (head, body and trailers) and answers each with `answer`.
pub struct Recorder {
    pub address: SocketAddr,
    requests: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    pub fn start(answer: &'static [u8]) -> Recorder {
        Recorder::listen(answer, false)
    }

    /// One that answers `100 Continue` first to a request that asks, as
    /// an upload service does.
    pub fn answering_continue(answer: &'static [u8]) -> Recorder {
        Recorder::listen(answer, true)
    }

    fn listen(answer: &'static [u8], continues: bool) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let requests = shared.clone();
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    while let Some(request) = read_raw_request(&mut reader, &mut writer, continues)
                    {
                        requests.lock().unwrap().push(request);
                        if writer.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Recorder { address, requests }
    }

    /// The bytes of request `index`, exactly as they came.
    pub fn raw(&self, index: usize) -> Vec<u8> {
        self.requests.lock().unwrap()[index].clone()
    }

    /// Every request so far, as text.
    pub fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|request| String::from_utf8_lossy(request).into_owned())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// The head a recorder backend received for a request sent through `proxy`
/// (`None` when the proxy answered itself), and the proxy's answer.
pub fn through(proxy: &Proxy, recorder: &Recorder, raw: &[u8]) -> (Response, Option<String>) {
    let before = recorder.count();
    let mut client = proxy.connect();
    client.send(raw);
    let response = client.response(raw.starts_with(b"HEAD "));
    let received = (recorder.count() > before).then(|| recorder.requests()[before].clone());
    (response, received)
}

/// The request line of a request as a backend received it.
pub fn request_line(received: &str) -> &str {
    received.lines().next().unwrap_or_default()
}

/// The values of field `name` in the head of a request as a backend
/// received it.
pub fn field<'a>(received: &'a str, name: &str) -> Vec<&'a str> {
    received
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .filter(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .collect()
}

/// One request's bytes exactly as they came (any bytes, not only text):
/// head, then a body framed by Content-Length or chunked coding (chunk
/// lines and trailers included). With `continues`, a `100 Continue` goes
/// first when the request asks.
fn read_raw_request<R: BufRead>(
    reader: &mut R,
    writer: &mut impl Write,
    continues: bool,
) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        raw.extend_from_slice(&line);
        if line == b"\r\n" {
            break;
        }
    }
    if continues
        && head_field(&raw, b"expect")
            .is_some_and(|expect| expect.eq_ignore_ascii_case(b"100-continue"))
    {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
    }
    if head_field(&raw, b"transfer-encoding").is_some() {
        loop {
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line).ok()?;
            raw.extend_from_slice(&line);
            let size_text = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(size_text.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                loop {
                    let mut trailer = Vec::new();
                    if reader.read_until(b'\n', &mut trailer).ok()? == 0 {
                        return None;
                    }
                    raw.extend_from_slice(&trailer);
                    if trailer == b"\r\n" {
                        return Some(raw);
                    }
                }
            }
            let mut data = vec![0; size + 2];
            reader.read_exact(&mut data).ok()?;
            raw.extend_from_slice(&data);
        }
    }
    if let Some(length) = head_field(&raw, b"content-length")
        .and_then(|length| String::from_utf8(length).ok()?.parse().ok())
    {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        raw.extend_from_slice(&body);
    }
    Some(raw)
}

/// The first value of `name` in a raw head (any case), trimmed.
fn head_field(raw: &[u8], name: &[u8]) -> Option<Vec<u8>> {
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or(raw.len());
    raw[..end]
        .split(|&byte| byte == b'\n')
        .skip(1)
        .find_map(|line| {
            let colon = line.iter().position(|&byte| byte == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name)
                .then(|| line[colon + 1..].trim_ascii().to_vec())
        })
}

/// A real nginx (Debian's package, installed when missing) serving
/// `config` (the inside of a `server` block; `{PORT}` in it is nginx's
/// port, so it may close the block and open other servers on the same
/// port) on a free port, stopped when dropped. Its access log is
/// `access_log()`.
pub struct Nginx {
    child: Child,
    pub address: SocketAddr,
    pub dir: PathBuf,
}

impl Nginx {
    pub fn start(config: &str) -> Nginx {
        ensure_package("nginx", "nginx");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "rsp-nginx-{}-{}",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(dir.join("www")).unwrap();
        let conf = dir.join("nginx.conf");
        let config = config.replace("{PORT}", &port.to_string());
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d};\n  proxy_temp_path {d};\n\
                 fastcgi_temp_path {d};\n  uwsgi_temp_path {d};\n  scgi_temp_path {d};\n\
                 server {{\n    listen 127.0.0.1:{port};\n    root {d}/www;\n{config}\n  }}\n}}\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_listener(address, &dir.join("error.log"));
        Nginx {
            child,
            address,
            dir,
        }
    }

    /// Writes a file under nginx's root.
    pub fn file(&self, path: &str, contents: &str) {
        let file = self.dir.join("www").join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs Debian's `package` when `command` is missing (once per test
/// process), as CI's `.ci/run` does up front.
pub fn ensure_package(command: &str, package: &str) {
    static INSTALLED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut installed = INSTALLED.lock().unwrap();
    if installed.iter().any(|done| done == package) {
        return;
    }
    let present = || {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {command}"))
            .output()
            .is_ok_and(|output| output.status.success())
    };
    if !present() {
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}) >/dev/null 2>&1"
            ))
            .status();
        assert!(
            status.is_ok_and(|status| status.success()) && present(),
            "this test needs {command}: apt-get install {package}"
        );
    }
    installed.push(package.to_owned());
}

/// Request targets built from the pieces that make servers disagree about
/// a path: dots, slashes, encodings, backslashes, queries, non-ASCII.
pub fn target_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let piece = prop_oneof![
        Just("/"),
        Just("//"),
        Just("."),
        Just(".."),
        Just("/./"),
        Just("/../"),
        Just("a"),
        Just("admin"),
        Just("%2e"),
        Just("%2E%2e"),
        Just("%2f"),
        Just("%5C"),
        Just("%61"),
        Just("%7E"),
        Just("%00"),
        Just("%zz"),
        Just("%"),
        Just("\\"),
        Just("?"),
        Just("&"),
        Just("="),
        Just(";"),
        Just("é"),
        Just("\""),
        Just("~"),
        Just("#"),
        Just(":"),
        Just("@"),
        Just("*"),
        Just("://"),
        Just("http://www.example/"),
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|pieces| format!("/{}", pieces.concat()))
}

/// Host values, valid and not: the spellings that make servers disagree
/// about a host (case, trailing dots, default and odd ports, numeric and
/// IPv6 addresses in their many forms, bytes a name may not hold).
pub fn host_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let label = prop_oneof![
        "[a-zA-Z0-9]{1,8}",
        "[a-z][a-z0-9_-]{0,6}[a-z]",
        Just("internal".to_owned()),
        Just("CORP".to_owned()),
        Just("0x7f".to_owned()),
        Just("127".to_owned()),
        Just("010".to_owned()),
        Just("".to_owned()),
        Just("a%2eb".to_owned()),
        Just("é".to_owned()),
        Just("a!b".to_owned()),
    ];
    let name = (proptest::collection::vec(label, 1..5), 0..3usize)
        .prop_map(|(labels, dots)| format!("{}{}", labels.join("."), ".".repeat(dots)));
    let ipv6 = prop_oneof![
        Just("[::1]"),
        Just("[0:0:0:0:0:0:0:1]"),
        Just("[::FFFF:127.0.0.1]"),
        Just("[2001:DB8::1]"),
        Just("[fe80::1%25eth0]"),
        Just("[::1"),
        Just("[127.0.0.1]"),
    ]
    .prop_map(str::to_owned);
    let host = prop_oneof![
        4 => name,
        1 => ipv6,
        1 => Just("127.0.0.1".to_owned()),
        1 => Just("127.1".to_owned()),
        1 => Just("2130706433".to_owned()),
    ];
    let port = prop_oneof![
        3 => Just(String::new()),
        1 => Just(":80".to_owned()),
        1 => Just(":443".to_owned()),
        1 => Just(":".to_owned()),
        1 => Just(":080".to_owned()),
        1 => Just(":0".to_owned()),
        1 => Just(":65536".to_owned()),
        1 => (1u16..).prop_map(|port| format!(":{port}")),
    ];
    prop_oneof![
        1 => Just("evil.example/admin".to_owned()),
        1 => Just("user@host".to_owned()),
        1 => Just("a b".to_owned()),
        12 => (host, port).prop_map(|(host, port)| format!("{host}{port}")),
    ]
}

/// Makes sure Python can import `websockets` (the WebSocket tests' peers,
/// and the browser tests' DevTools client), installing it if needed.
pub fn ensure_python_websockets() {
    ensure_python(
        "import websockets.asyncio.server, websockets.sync.client",
        "websockets",
    );
}

/// Makes sure Python can import `h2` 4.x (and its `hpack`), for the
/// HTTP/2 tests.
pub fn ensure_python_h2() {
    ensure_python(
        "import h2, hpack, sys; sys.exit(0 if h2.__version__.startswith('4.') else 1)",
        "h2 4.x",
    );
}

/// Makes sure `check` runs in Python, installing tests/requirements.txt
/// once if it does not.
fn ensure_python(check: &str, what: &str) {
    static INSTALLED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut installed = INSTALLED.lock().unwrap();
    if installed.iter().any(|done| done == check) {
        return;
    }
    let importable = || {
        Command::new("python3")
            .args(["-c", check])
            .status()
            .is_ok_and(|status| status.success())
    };
    if !importable() {
        let requirements = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/requirements.txt");
        let _ = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&requirements)
            .status();
        assert!(
            importable(),
            "these tests need Python's {what}: python3 -m pip install -r tests/requirements.txt"
        );
    }
    installed.push(check.to_owned());
}

/// Runs `attack` while another client asks for `/` over HTTP/1.1 again
/// and again (from before the attack starts until it ends): each of its
/// requests must get 200.
pub fn while_serving<T: Send>(proxy: &Proxy, attack: impl FnOnce() -> T + Send) -> T {
    /// Ends the other client's loop however the attack ends (a panic
    /// too: the scope waits for that thread).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let stop = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    thread::scope(|scope| {
        let others = scope.spawn(|| {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::SeqCst) || statuses.len() < 2 {
                statuses.push(proxy.get("/").status);
                started.store(true, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(5));
            }
            statuses
        });
        assert!(
            wait_until(Duration::from_secs(20), || started.load(Ordering::SeqCst)
                || others.is_finished()),
            "the other client got no answer before the attack"
        );
        let result = {
            let _stop = Stop(&stop);
            attack()
        };
        let statuses = others.join().expect("another client was not served");
        assert!(
            statuses.iter().all(|&status| status == 200),
            "another client was not served meanwhile: {statuses:?}"
        );
        result
    })
}
