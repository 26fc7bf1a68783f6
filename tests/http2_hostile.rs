//! Hostile HTTP/2 clients against the real rsp over loopback: the floods
//! and resets behind the HTTP/2 CVEs (rapid reset, CONTINUATION flood,
//! MadeYouReset), HPACK bombs, stalled flow control, too many streams,
//! malformed frames and requests, random bytes. Each attack gets rsp's
//! answer it must get (GOAWAY or RST_STREAM with the RFC 9113 code, a
//! 431), and rsp goes on serving other clients meanwhile and after.
//!
//! The attackers are `tests/h2/attack.py` (Python's `h2` package makes
//! the frames a real client would, raw frames the rest; installed with
//! pip from tests/requirements.txt when missing), and, for the table of
//! malformed frames and the random bytes, a raw client in this file.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

// --- Python's h2 ----------------------------------------------------------

fn h2_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/h2")
}

/// Runs `tests/h2/attack.py PORT ARGS...` against `port`; what it saw.
fn attack_port(proxy: &Proxy, port: u16, args: &[&str]) -> Value {
    ensure_python_h2();
    // -B: no __pycache__ left in the source tree.
    let output = Command::new("python3")
        .arg("-B")
        .arg(h2_dir().join("attack.py"))
        .arg(port.to_string())
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "attack.py {args:?} failed: {stdout}{}\nrsp log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        proxy.log()
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("attack.py {args:?}: {error}: {stdout}"))
}

fn attack(proxy: &Proxy, args: &[&str]) -> Value {
    attack_port(proxy, proxy.address.port(), args)
}

/// The GOAWAY code the attacker got, if any.
fn goaway_code(seen: &Value) -> Option<u64> {
    seen["goaway"]["code"].as_u64()
}

/// The honest connection the attack script keeps open across the attack
/// got its two answers.
fn assert_bystander_served(seen: &Value) {
    assert_eq!(seen["bystander"], serde_json::json!([200, 200]), "{seen}");
}

// --- rsp and its backends ---------------------------------------------------

/// A backend that reads what it gets and never answers: streams routed to
/// it stay open as long as the client lets them. A connection rsp closes
/// is let go.
fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || std::io::copy(&mut stream, &mut std::io::sink()));
        }
    });
    address
}

/// rsp whose listener takes h2c with prior knowledge (and HTTP/1.1), in
/// front of `backend`; paths starting with `/silent` go to a backend that
/// never answers. `settings` adds to the config.
fn h2_proxy(backend: &Backend, settings: &str) -> Proxy {
    // Attacks open hundreds of streams, each a backend connection.
    raise_open_file_limit();
    Proxy::start_h2c(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\" }} }}, silent = {{ servers = {{ \"{}\" }} }} }}\n\
         function route(req)\n\
           if req.path:sub(1, 7) == \"/silent\" then return \"silent\" end\n\
           return \"default\"\n\
         end\n\
         {settings}",
        backend.address,
        silent_backend()
    ))
}

/// `curl --http2-prior-knowledge` for `path`: (status, HTTP version, body).
fn curl_h2(proxy: &Proxy, path: &str) -> (u16, String, String) {
    ensure_package("curl", "curl");
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--http2-prior-knowledge"])
        .args([
            "--max-time",
            "5",
            "--write-out",
            "\n%{http_code} %{http_version}",
        ])
        .arg(format!("http://{}{path}", proxy.address))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
    let (status, version) = tail.split_once(' ').unwrap_or(("0", "0"));
    (
        status.parse().unwrap_or(0),
        version.to_owned(),
        body.to_owned(),
    )
}

/// rsp is alive and serves `/` to a new HTTP/1.1 client and a new HTTP/2 one.
fn assert_serves(proxy: &mut Proxy) {
    assert!(proxy.is_running(), "rsp died: {}", proxy.log());
    let response = proxy.get("/");
    assert_eq!(response.status, 200, "{}", proxy.log());
    assert_eq!(response.text(), "hello from web");
    let (status, version, body) = curl_h2(proxy, "/");
    assert_eq!(
        (status, version.as_str(), body.as_str()),
        (200, "2", "hello from web"),
        "{}",
        proxy.log()
    );
}

/// Runs `attack` while another client asks for `/` over HTTP/1.1 again
/// and again (from before the attack starts until it ends): each of its
/// requests must get 200.
fn while_serving<T: Send>(proxy: &Proxy, attack: impl FnOnce() -> T + Send) -> T {
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
        while !started.load(Ordering::SeqCst) && !others.is_finished() {
            thread::sleep(Duration::from_millis(1));
        }
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

/// A field of /proc/PID/status, in KiB (VmRSS, VmHWM).
fn memory_kib(proxy: &Proxy, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.child.id())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// Waits (at most 5 s) for `condition`.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "never: {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

// --- a raw HTTP/2 client ----------------------------------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

const PROTOCOL_ERROR: u32 = 0x1;
const FLOW_CONTROL_ERROR: u32 = 0x3;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const COMPRESSION_ERROR: u32 = 0x9;
const ENHANCE_YOUR_CALM: u64 = 0xb;

/// How rsp's log names an error code.
fn code_name(code: u32) -> &'static str {
    match code {
        PROTOCOL_ERROR => "ProtocolError",
        FLOW_CONTROL_ERROR => "FlowControlError",
        FRAME_SIZE_ERROR => "FrameSizeError",
        COMPRESSION_ERROR => "CompressionError",
        _ => "?",
    }
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = pairs
        .iter()
        .flat_map(|(id, value)| [&id.to_be_bytes()[..], &value.to_be_bytes()[..]].concat())
        .collect();
    frame(kind::SETTINGS, 0, 0, &payload)
}

fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// An HPACK literal field without indexing, with a literal name (RFC 7541
/// §6.2.2): changes no table, so raw blocks never put rsp's decoder out
/// of step.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    assert!(name.len() < 127 && value.len() < 127);
    out.push(0);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// The header block of a request for `path`.
fn request_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    literal(&mut block, b":method", method.as_bytes());
    literal(&mut block, b":scheme", b"http");
    literal(&mut block, b":authority", b"test");
    literal(&mut block, b":path", path.as_bytes());
    for (name, value) in extra {
        literal(&mut block, name.as_bytes(), value.as_bytes());
    }
    block
}

/// HEADERS for `GET path` that ends the stream.
fn get(stream: u32, path: &str) -> Vec<u8> {
    frame(
        kind::HEADERS,
        END_HEADERS | END_STREAM,
        stream,
        &request_block("GET", path, &[]),
    )
}

/// What came back on a raw connection.
#[derive(Debug, Default)]
struct Seen {
    /// (last stream id, code, debug text)
    goaway: Option<(u32, u32, String)>,
    resets: Vec<(u32, u32)>,
    statuses: Vec<(u32, u16)>,
    ended: Vec<u32>,
    ping_acks: usize,
    closed: bool,
    /// The connection was answered as HTTP/1: its status line.
    http1: Option<String>,
    /// The codes of every GOAWAY (`goaway` is the first).
    goaway_codes: Vec<u32>,
    /// WINDOW_UPDATE increments on the connection (stream 0), summed.
    connection_window: u64,
    /// (stream, the fields of its header blocks, pseudo-headers included).
    fields: Vec<(u32, Vec<(String, String)>)>,
}

struct Wire {
    stream: TcpStream,
    inbound: Vec<u8>,
    decoder: loona_hpack::Decoder<'static>,
    block: Vec<u8>,
    seen: Seen,
}

impl Wire {
    fn connect(address: SocketAddr) -> Wire {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Wire {
            stream,
            inbound: Vec::new(),
            decoder: loona_hpack::Decoder::new(),
            block: Vec::new(),
            seen: Seen::default(),
        }
    }

    /// A connection past the preface and an empty SETTINGS.
    fn open(address: SocketAddr) -> Wire {
        let mut wire = Wire::connect(address);
        wire.send(&[PREFACE, &settings(&[])].concat());
        wire
    }

    /// Writes `bytes`; rsp may have closed already, which is no error here.
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    fn local(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Reads until `done` holds, the connection closes or `timeout` passes.
    fn read_until(&mut self, timeout: Duration, done: impl Fn(&Seen) -> bool) -> &Seen {
        let deadline = Instant::now() + timeout;
        let mut buffer = [0u8; 65536];
        while !done(&self.seen) && !self.seen.closed && Instant::now() < deadline {
            match self.stream.read(&mut buffer) {
                Ok(0) => self.seen.closed = true,
                Ok(count) => self.feed(&buffer[..count]),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => self.seen.closed = true,
            }
        }
        &self.seen
    }

    fn until_closed(&mut self, timeout: Duration) -> &Seen {
        self.read_until(timeout, |_| false)
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.inbound.extend_from_slice(bytes);
        if self.seen.http1.is_some() || self.inbound.starts_with(b"HTTP/1.") {
            let text = String::from_utf8_lossy(&self.inbound);
            self.seen.http1 = Some(text.lines().next().unwrap_or_default().to_owned());
            return;
        }
        while self.inbound.len() >= 9 {
            let length =
                u32::from_be_bytes([0, self.inbound[0], self.inbound[1], self.inbound[2]]) as usize;
            if self.inbound.len() < 9 + length {
                break;
            }
            let (kind, flags) = (self.inbound[3], self.inbound[4]);
            let stream = u32::from_be_bytes(self.inbound[5..9].try_into().unwrap()) & 0x7fff_ffff;
            let payload: Vec<u8> = self.inbound.drain(..9 + length).skip(9).collect();
            self.frame(kind, flags, stream, &payload);
        }
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let word = |at: usize| u32::from_be_bytes(payload[at..at + 4].try_into().unwrap());
        if kind == kind::GOAWAY {
            self.seen.goaway_codes.push(word(4));
        }
        match kind {
            kind::GOAWAY if self.seen.goaway.is_none() => {
                let debug = String::from_utf8_lossy(&payload[8..]).into_owned();
                self.seen.goaway = Some((word(0) & 0x7fff_ffff, word(4), debug));
            }
            kind::WINDOW_UPDATE if stream == 0 => {
                self.seen.connection_window += u64::from(word(0) & 0x7fff_ffff);
            }
            kind::RST_STREAM => self.seen.resets.push((stream, word(0))),
            kind::PING if flags & ACK != 0 => self.seen.ping_acks += 1,
            kind::HEADERS | kind::CONTINUATION => {
                let mut fragment = payload;
                if kind == kind::HEADERS {
                    self.block.clear();
                    if flags & PADDED != 0 {
                        fragment = &fragment[1..fragment.len() - usize::from(fragment[0])];
                    }
                    if flags & PRIORITY_FLAG != 0 {
                        fragment = &fragment[5..];
                    }
                }
                self.block.extend_from_slice(fragment);
                if flags & END_HEADERS != 0 {
                    let fields = self.decoder.decode(&self.block).expect("rsp's HPACK");
                    if let Some((_, status)) = fields.iter().find(|(name, _)| name == b":status") {
                        let status = String::from_utf8_lossy(status).parse().unwrap();
                        self.seen.statuses.push((stream, status));
                    }
                    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
                    let fields = fields
                        .iter()
                        .map(|(name, value)| (text(name), text(value)))
                        .collect();
                    self.seen.fields.push((stream, fields));
                }
                if flags & END_STREAM != 0 {
                    self.seen.ended.push(stream);
                }
            }
            kind::DATA if flags & END_STREAM != 0 => self.seen.ended.push(stream),
            _ => {}
        }
    }
}

// --- 1. rapid reset ---------------------------------------------------------

#[test]
fn rapid_reset_gets_goaway_enhance_your_calm() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let seen = while_serving(&proxy, || attack(&proxy, &["rapid_reset", "5000"]));
    assert_eq!(goaway_code(&seen), Some(ENHANCE_YOUR_CALM), "{seen}");
    assert_eq!(seen["goaway"]["debug"], "too many streams reset");
    assert_eq!(seen["closed"], true);
    // 200 resets in a second are allowed, the 201st is not: rsp stopped
    // taking streams long before the 5000 the client made.
    let last = seen["goaway"]["last_stream"].as_u64().unwrap();
    assert!((401..2000).contains(&last), "last stream {last}");
    assert_bystander_served(&seen);
    proxy.wait_for_log("HTTP/2 GOAWAY EnhanceYourCalm: too many streams reset", 1);
    assert_serves(&mut proxy);
}

// --- 2. CONTINUATION flood ---------------------------------------------------

#[test]
fn header_blocks_are_bounded_exactly_in_frames_and_bytes() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // 32 CONTINUATIONs are allowed, a 33rd is not; 2 x 32768 bytes of
    // block are allowed, one byte more is not.
    for mode in ["frames", "bytes"] {
        let seen = attack(&proxy, &["continuation_bound", mode]);
        assert_eq!(seen["goaway_before_limit"], false, "{mode}: {seen}");
        assert_eq!(
            goaway_code(&seen),
            Some(ENHANCE_YOUR_CALM),
            "{mode}: {seen}"
        );
        assert_eq!(
            seen["goaway"]["debug"],
            "a header block over its bound (bytes or CONTINUATION frames)"
        );
        assert_eq!(seen["closed"], true);
        assert_bystander_served(&seen);
    }
    proxy.wait_for_log(
        "HTTP/2 GOAWAY EnhanceYourCalm: a header block over its bound",
        2,
    );
    assert_serves(&mut proxy);
}

#[test]
fn continuation_flood_is_cut_with_memory_bounded() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    assert_serves(&mut proxy);
    let before = memory_kib(&proxy, "VmRSS");
    // Four connections at once, each writing CONTINUATIONs (of 16 KB, then
    // of 1 KB) until rsp cuts it, or 16 MiB.
    for size in ["16384", "1024"] {
        let seen = while_serving(&proxy, || {
            attack(&proxy, &["continuation_flood", "16", "4", size])
        });
        assert_eq!(
            seen["goaway_codes"],
            serde_json::json!([11, 11, 11, 11]),
            "{seen}\n{}",
            proxy.log()
        );
        for one in seen["all"].as_array().unwrap() {
            assert_eq!(one["closed"], true, "{one}");
            // Cut long before its 16 MiB (what went out is rsp's 64 KiB
            // bound plus what the kernel buffers).
            assert!(one["sent"].as_u64().unwrap() < 12 << 20, "{one}");
        }
        assert_bystander_served(&seen);
    }
    let peak = memory_kib(&proxy, "VmHWM");
    assert!(
        peak < before + 4 * 1024,
        "rsp grew from {before} KiB to a peak of {peak} KiB"
    );
    proxy.wait_for_log(
        "HTTP/2 GOAWAY EnhanceYourCalm: a header block over its bound",
        8,
    );
    assert_serves(&mut proxy);
}

// --- 3. MadeYouReset ----------------------------------------------------------

#[test]
fn made_you_reset_counts_in_the_reset_budget() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let seen = while_serving(&proxy, || attack(&proxy, &["made_you_reset", "2000"]));
    assert_eq!(goaway_code(&seen), Some(ENHANCE_YOUR_CALM), "{seen}");
    assert_eq!(seen["goaway"]["debug"], "too many streams reset");
    assert_eq!(seen["closed"], true);
    // rsp reset them itself, with the code each deserved: a stream window
    // over 2^31-1 (FLOW_CONTROL_ERROR), DATA past the content-length
    // (PROTOCOL_ERROR), DATA or HEADERS after END_STREAM (STREAM_CLOSED)...
    assert_eq!(seen["codes"], serde_json::json!([1, 3, 5]), "{seen}");
    // ... 200 of them, and then the connection.
    let resets = seen["rst_before_goaway"].as_u64().unwrap();
    assert!(
        (200..400).contains(&resets),
        "{resets} resets before GOAWAY"
    );
    assert_bystander_served(&seen);
    proxy.wait_for_log("HTTP/2 GOAWAY EnhanceYourCalm: too many streams reset", 1);
    proxy.wait_for_log("reset (FlowControlError): a stream window over 2^31 - 1", 1);
    proxy.wait_for_log("reset (ProtocolError): DATA that does not add up", 1);
    proxy.wait_for_log("reset (StreamClosed): DATA after the end of the stream", 1);
    proxy.wait_for_log(
        "reset (StreamClosed): HEADERS after the end of the stream",
        1,
    );
    assert_serves(&mut proxy);
}

#[test]
fn data_rsp_throws_away_comes_back_as_connection_window() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // 80 bodies of 16000 bytes that rsp refuses (past their
    // content-length), sent within the connection window: 1.28 MB in all,
    // more than the ~1 MiB window rsp opens.
    let seen = attack(&proxy, &["window_leak", "80", "16000"]);
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    assert_eq!(seen["rst_count"], 80, "{seen}");
    assert_eq!(seen["stalled_at"], Value::Null, "{seen}");
    assert_serves(&mut proxy);
}

// --- 4. HPACK bomb --------------------------------------------------------------

#[test]
fn hpack_bomb_gets_431_and_the_connection_goes_on() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    assert_serves(&mut proxy);
    let before = memory_kib(&proxy, "VmRSS");
    // 20 streams in turn, each a 4 KB field named 10000 times by index: a
    // header list of 40 MB each from 12 KB of block.
    let seen = while_serving(&proxy, || attack(&proxy, &["hpack_bomb", "10000", "20"]));
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    for stream in (1..=39).step_by(2) {
        assert_eq!(
            seen["status"][stream.to_string()],
            431,
            "stream {stream}: {seen}"
        );
    }
    // The next stream on the same connection is served.
    assert_eq!(seen["honest"], 41);
    assert_eq!(seen["status"]["41"], 200, "{seen}");
    assert_eq!(seen["text"]["41"], "hello from web");
    assert_eq!(seen["closed"], false);
    assert_bystander_served(&seen);
    let peak = memory_kib(&proxy, "VmHWM");
    assert!(
        peak < before + 4 * 1024,
        "rsp grew from {before} KiB to a peak of {peak} KiB"
    );
    proxy.wait_for_log("431, header list over 32768 bytes", 20);
    // None of them reached the backend.
    assert!(backend.heads().iter().all(|head| !head.contains("x-bomb")));
    assert_serves(&mut proxy);
}

// --- 5. control frame floods -------------------------------------------------------

#[test]
fn control_frame_floods_get_goaway_enhance_your_calm() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let floods = [
        ("ping", "PING flood"),
        ("settings", "SETTINGS flood"),
        ("empty_data", "a flood of empty DATA frames"),
        ("window_update", "WINDOW_UPDATE flood"),
        ("priority", "PRIORITY flood"),
        ("unknown", "a flood of unknown frames"),
    ];
    // All six at once, each on its own connection, while another client
    // is served.
    let results = while_serving(&proxy, || {
        thread::scope(|scope| {
            let attacks: Vec<_> = floods
                .iter()
                .map(|(kind, _)| scope.spawn(|| attack(&proxy, &["flood", kind, "25000"])))
                .collect();
            attacks
                .into_iter()
                .map(|attack| attack.join().unwrap())
                .collect::<Vec<_>>()
        })
    });
    for ((kind, why), seen) in floods.iter().zip(results) {
        assert_eq!(
            goaway_code(&seen),
            Some(ENHANCE_YOUR_CALM),
            "{kind}: {seen}"
        );
        assert_eq!(seen["goaway"]["debug"], *why, "{kind}");
        assert_eq!(seen["closed"], true, "{kind}");
        assert_bystander_served(&seen);
        proxy.wait_for_log(&format!("HTTP/2 GOAWAY EnhanceYourCalm: {why}"), 1);
    }
    assert_serves(&mut proxy);
}

#[test]
fn a_busy_honest_client_stays_under_the_budgets() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // 150 cancelled streams and 9000 PINGs, then a request: allowed.
    let seen = attack(&proxy, &["under_budget", "150", "9000"]);
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    assert_eq!(seen["pings"], 9000, "{seen}");
    assert_eq!(seen["status"][seen["last"].to_string()], 200, "{seen}");
    assert_serves(&mut proxy);
}

// --- 6. zero window -------------------------------------------------------------------

#[test]
fn a_zero_window_stall_is_cut_after_the_idle_timeout() {
    let backend = Backend::start("web");
    // One backend connection at a time: the stalled stream holds it, so
    // the other client is served only once rsp lets it go.
    let mut proxy = Proxy::start_h2c(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\" }}, max_conns = 1 }} }}\n\
         timeouts = {{ idle = 1000 }}",
        backend.address
    ));
    let (seen, other, waited) = thread::scope(|scope| {
        let attacker = scope.spawn(|| attack(&proxy, &["zero_window", "/size/8388608", "6"]));
        eventually("the large answer reached the backend", || {
            backend
                .heads()
                .iter()
                .any(|head| head.starts_with("GET /size/"))
        });
        let started = Instant::now();
        let other = proxy.get("/");
        (attacker.join().unwrap(), other, started.elapsed())
    });
    // rsp sent the head, no DATA (the window is 0), and after a second
    // without progress reset the stream.
    assert_eq!(seen["status"]["1"], 200, "{seen}");
    assert!(seen["body"]["1"].as_u64().unwrap_or(0) == 0, "{seen}");
    assert!(seen["rst"]["1"].is_u64(), "no RST_STREAM: {seen}");
    let cut_at = seen["cut_at"].as_f64().unwrap();
    assert!((0.9..4.0).contains(&cut_at), "cut after {cut_at} s: {seen}");
    // The connection goes on: a body-less answer needs no window.
    assert_eq!(seen["status"]["3"], 204, "{seen}");
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    assert_bystander_served(&seen);
    // The backend connection was let go: the other client, queued behind
    // it, got its answer (not a 503 after the 5 s queue timeout), and the
    // backend saw its connection end.
    assert_eq!(other.status, 200, "{}", proxy.log());
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    eventually("the backend connection was closed", || {
        backend.connections().1 >= 1
    });
    assert_serves(&mut proxy);
}

/// CPU time rsp has used so far (user and system), from /proc/PID/stat.
fn cpu_time(proxy: &Proxy) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", proxy.child.id())).unwrap();
    // Fields after the command name in parentheses: utime and stime are
    // the 14th and 15th of the line, in clock ticks.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse().unwrap())
        .collect();
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis((fields[0] + fields[1]) * 1000 / ticks)
}

#[test]
fn a_stream_waiting_for_its_backend_costs_no_cpu() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    assert_serves(&mut proxy);
    // The same wait over HTTP/1.1 first: a request to a backend that never
    // answers, given up after a second.
    let before = cpu_time(&proxy);
    let mut client = proxy.connect();
    client
        .stream()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    client.send(b"GET /silent HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(client.try_response(false).is_none());
    drop(client);
    let http1 = cpu_time(&proxy) - before;
    let before = cpu_time(&proxy);
    let output = Command::new("curl")
        .args(["--silent", "--http2-prior-knowledge", "--max-time", "1"])
        .arg(format!("http://{}/silent", proxy.address))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let http2 = cpu_time(&proxy) - before;
    assert!(http1 < Duration::from_millis(200), "HTTP/1.1: {http1:?}");
    assert!(
        http2 < Duration::from_millis(200),
        "rsp used {http2:?} of CPU while one HTTP/2 stream waited 1 s (HTTP/1.1: {http1:?})"
    );
    assert_serves(&mut proxy);
}

// --- 7. max_concurrent_streams -------------------------------------------------------------

#[test]
fn streams_past_max_concurrent_streams_are_refused() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "http2 = { max_concurrent_streams = 5 }");
    let seen = while_serving(&proxy, || {
        attack(&proxy, &["concurrency", "8", "/sleep/800"])
    });
    for stream in [1, 3, 5, 7, 9] {
        let id = stream.to_string();
        assert_eq!(seen["status"][&id], 200, "stream {stream}: {seen}");
        assert_eq!(seen["text"][&id], "hello from web");
    }
    for stream in [11, 13, 15] {
        assert_eq!(
            seen["rst"][stream.to_string()],
            REFUSED_STREAM,
            "stream {stream}: {seen}"
        );
        assert_eq!(seen["status"][stream.to_string()], Value::Null);
    }
    // The five ran side by side, and a stream after them is served.
    assert!(seen["elapsed"].as_f64().unwrap() < 3.0, "{seen}");
    assert_eq!(seen["status"][seen["after"].to_string()], 200, "{seen}");
    assert_eq!(seen["goaway"], Value::Null);
    assert_bystander_served(&seen);
    let slow = backend
        .heads()
        .iter()
        .filter(|head| head.starts_with("GET /sleep/"))
        .count();
    assert_eq!(slow, 5);
    proxy.wait_for_log("refused: 5 streams open", 3);
    assert_serves(&mut proxy);
}

// --- 8. malformed frames and requests --------------------------------------------------------

/// Connection errors: what is sent on a new connection (after the preface
/// and SETTINGS unless the bytes start with their own), and the GOAWAY
/// code RFC 9113 gives it.
fn connection_errors() -> Vec<(&'static str, Vec<u8>, u32)> {
    let opened =
        |rest: &[Vec<u8>]| [&[PREFACE, &settings(&[])].concat()[..], &rest.concat()].concat();
    let headers_open = frame(kind::HEADERS, 0, 1, &request_block("GET", "/", &[]));
    let post = frame(
        kind::HEADERS,
        END_HEADERS,
        1,
        &request_block("POST", "/silent", &[]),
    );
    let ping = frame(kind::PING, 0, 0, &[0; 8]);
    let block = request_block("GET", "/", &[]);
    vec![
        (
            "the first frame is not SETTINGS",
            [PREFACE, &ping].concat(),
            PROTOCOL_ERROR,
        ),
        (
            "a frame larger than SETTINGS_MAX_FRAME_SIZE",
            opened(&[frame(kind::HEADERS, END_HEADERS, 1, &[0; 16_385])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "DATA on stream 0",
            opened(&[frame(kind::DATA, 0, 0, b"x")]),
            PROTOCOL_ERROR,
        ),
        (
            "HEADERS on stream 0",
            opened(&[frame(kind::HEADERS, END_HEADERS | END_STREAM, 0, &block)]),
            PROTOCOL_ERROR,
        ),
        (
            "HEADERS on an even stream",
            opened(&[get(2, "/")]),
            PROTOCOL_ERROR,
        ),
        (
            "CONTINUATION without HEADERS",
            opened(&[frame(kind::CONTINUATION, END_HEADERS, 1, &block)]),
            PROTOCOL_ERROR,
        ),
        (
            "CONTINUATION of another stream",
            opened(&[
                headers_open.clone(),
                frame(kind::CONTINUATION, END_HEADERS, 3, b""),
            ]),
            PROTOCOL_ERROR,
        ),
        (
            "a header block interrupted by PING",
            opened(&[headers_open.clone(), ping.clone()]),
            PROTOCOL_ERROR,
        ),
        (
            "a header block interrupted by HEADERS",
            opened(&[headers_open.clone(), get(3, "/")]),
            PROTOCOL_ERROR,
        ),
        (
            "PUSH_PROMISE from the client",
            opened(&[
                get(1, "/"),
                frame(
                    kind::PUSH_PROMISE,
                    END_HEADERS,
                    1,
                    &[&2u32.to_be_bytes()[..], &block].concat(),
                ),
            ]),
            PROTOCOL_ERROR,
        ),
        (
            "WINDOW_UPDATE of 0 on the connection",
            opened(&[window_update(0, 0)]),
            PROTOCOL_ERROR,
        ),
        (
            "WINDOW_UPDATE past 2^31-1 on the connection",
            opened(&[window_update(0, 0x7fff_ffff)]),
            FLOW_CONTROL_ERROR,
        ),
        (
            "SETTINGS_INITIAL_WINDOW_SIZE taking an open stream's window past 2^31-1",
            opened(&[
                get(1, "/silent"),
                window_update(1, 0x7fff_ffff - 65_535),
                settings(&[(0x4, 65_536)]),
            ]),
            FLOW_CONTROL_ERROR,
        ),
        (
            "SETTINGS_ENABLE_PUSH 2",
            opened(&[settings(&[(0x2, 2)])]),
            PROTOCOL_ERROR,
        ),
        (
            "SETTINGS_INITIAL_WINDOW_SIZE 2^31",
            opened(&[settings(&[(0x4, 1 << 31)])]),
            FLOW_CONTROL_ERROR,
        ),
        (
            "SETTINGS_MAX_FRAME_SIZE under 16384",
            opened(&[settings(&[(0x5, 16_383)])]),
            PROTOCOL_ERROR,
        ),
        (
            "SETTINGS_MAX_FRAME_SIZE over 2^24-1",
            opened(&[settings(&[(0x5, 1 << 24)])]),
            PROTOCOL_ERROR,
        ),
        (
            "SETTINGS of 5 bytes",
            opened(&[frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 1])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "SETTINGS ACK with a payload",
            opened(&[frame(kind::SETTINGS, ACK, 0, &[0, 3, 0, 0, 0, 1])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "SETTINGS on a stream",
            opened(&[frame(kind::SETTINGS, 0, 1, b"")]),
            PROTOCOL_ERROR,
        ),
        (
            "PING of 7 bytes",
            opened(&[frame(kind::PING, 0, 0, &[0; 7])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "PING on a stream",
            opened(&[frame(kind::PING, 0, 1, &[0; 8])]),
            PROTOCOL_ERROR,
        ),
        (
            "GOAWAY of 7 bytes",
            opened(&[frame(kind::GOAWAY, 0, 0, &[0; 7])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "RST_STREAM on stream 0",
            opened(&[frame(kind::RST_STREAM, 0, 0, &[0, 0, 0, 8])]),
            PROTOCOL_ERROR,
        ),
        (
            "RST_STREAM of 3 bytes",
            opened(&[get(1, "/silent"), frame(kind::RST_STREAM, 0, 1, &[0, 0, 8])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "RST_STREAM on an idle stream",
            opened(&[frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8])]),
            PROTOCOL_ERROR,
        ),
        (
            "DATA on an idle stream",
            opened(&[frame(kind::DATA, 0, 1, b"x")]),
            PROTOCOL_ERROR,
        ),
        (
            "WINDOW_UPDATE on an idle stream",
            opened(&[window_update(1, 100)]),
            PROTOCOL_ERROR,
        ),
        (
            "HEADERS too short for its PRIORITY fields",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | PRIORITY_FLAG,
                1,
                &[0; 4],
            )]),
            FRAME_SIZE_ERROR,
        ),
        (
            "HEADERS padding longer than the frame",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM | PADDED,
                1,
                &[&[200u8][..], &block].concat(),
            )]),
            PROTOCOL_ERROR,
        ),
        (
            "DATA padding longer than the frame",
            opened(&[post.clone(), frame(kind::DATA, PADDED, 1, &[9, b'a', b'b'])]),
            PROTOCOL_ERROR,
        ),
        (
            "HPACK: index 0",
            opened(&[frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &[0x80])]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: an index past both tables",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[0xff, 0x7f],
            )]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: a literal cut short",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[0x00, 0x05, b'a'],
            )]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: Huffman with the EOS symbol",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x01, b'a'],
            )]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: a table size over SETTINGS_HEADER_TABLE_SIZE",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[&[0x3f, 0xe1, 0x3f][..], &block].concat(),
            )]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: a table size update after a field",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[&block[..], &[0x20]].concat(),
            )]),
            COMPRESSION_ERROR,
        ),
    ]
}

#[test]
fn malformed_frames_get_goaway_with_the_rfc_code() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let cases = connection_errors();
    let mut failures = Vec::new();
    let mut clients = Vec::new();
    for (name, bytes, code) in &cases {
        let mut wire = Wire::connect(proxy.address);
        wire.send(bytes);
        let seen = wire.until_closed(Duration::from_secs(3));
        let got = seen.goaway.as_ref().map(|(_, code, _)| *code);
        if got != Some(*code) || !seen.closed {
            failures.push(format!(
                "{name}: expected GOAWAY {} and a close, got {seen:?}",
                code_name(*code)
            ));
        }
        clients.push((wire.local(), *code));
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Each is logged with its client's address and the code.
    for (client, code) in clients {
        proxy.wait_for_log(&format!("{client}: HTTP/2 GOAWAY {}: ", code_name(code)), 1);
    }
    assert_serves(&mut proxy);
}

#[test]
fn a_bad_preface_on_an_h2c_listener_gets_goaway_protocol_error() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // `PRI * HTTP/2.0` is no HTTP/1 request line (its version is 2.0):
    // a connection that begins so speaks HTTP/2, and a preface that goes
    // on otherwise is its protocol error (RFC 9113 §3.4), as over TLS.
    // Whole, or a byte at a time.
    for bad in [
        &b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r",
        b"PRI * HTTP/2.0 GET / HTTP/1.1\r\nHost: test\r\n\r\n",
    ] {
        // A byte at a time up to the first that differs: rsp closes then,
        // and bytes sent after would reset the connection.
        let differs = (0..bad.len()).find(|&at| bad[at] != PREFACE[at]).unwrap();
        for (piece, sent) in [(bad.len(), bad), (1, &bad[..=differs])] {
            let mut wire = Wire::connect(proxy.address);
            for part in sent.chunks(piece) {
                wire.send(part);
                thread::sleep(Duration::from_millis(2));
            }
            let seen = wire.until_closed(Duration::from_secs(3));
            let text = String::from_utf8_lossy(bad);
            assert_eq!(seen.http1, None, "{text:?}: {seen:?}");
            assert_eq!(
                seen.goaway
                    .as_ref()
                    .map(|goaway| (goaway.1, goaway.2.as_str())),
                Some((PROTOCOL_ERROR, "no connection preface")),
                "{text:?} in pieces of {piece}: {seen:?}"
            );
            assert!(seen.closed);
        }
    }
    // The good preface, a byte at a time, then a request.
    let mut wire = Wire::connect(proxy.address);
    for byte in [PREFACE, &settings(&[])].concat() {
        wire.send(&[byte]);
        thread::sleep(Duration::from_millis(2));
    }
    wire.send(&get(1, "/"));
    let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
    assert_eq!(seen.statuses, [(1, 200)], "{seen:?}");
    // A request line that parts from the preface's before its version
    // is HTTP/1: 400 for a method rsp does not know with that target.
    let response = proxy.get_raw("PRI * HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(response.status, 400);
    assert_eq!(backend.count(), 1);
    proxy.wait_for_log("HTTP/2 GOAWAY ProtocolError: no connection preface", 6);
    assert_serves(&mut proxy);
}

#[test]
fn a_bad_preface_over_tls_with_alpn_h2_gets_goaway_protocol_error() {
    let dir = std::env::temp_dir().join(format!("rsp-h2-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert, key_file) = (dir.join("h2.pem"), dir.join("h2.key"));
    std::fs::write(&cert, certificate.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let backend = Backend::start("web");
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut proxy = Proxy::start_listening(
        &format!(
            "{{ addr = \"{tls}\", tls = {{ cert = \"{}\", key = \"{}\" }} }}",
            cert.display(),
            key_file.display()
        ),
        &format!("backends = {{ \"{}\" }}", backend.address),
    );
    wait_for_listener(tls, &proxy.log);
    let seen = attack_port(&proxy, tls.port(), &["tls_bad_preface"]);
    assert_eq!(seen["alpn"], "h2", "{seen}");
    assert_eq!(
        goaway_code(&seen),
        Some(u64::from(PROTOCOL_ERROR)),
        "{seen}"
    );
    assert_eq!(seen["goaway"]["debug"], "no connection preface");
    proxy.wait_for_log("HTTP/2 GOAWAY ProtocolError: no connection preface", 1);
    // h2 over TLS still works, and the plain listener.
    let output = Command::new("curl")
        .args([
            "--silent",
            "--insecure",
            "--http2",
            "--write-out",
            " %{http_version}",
        ])
        .arg(format!("https://localhost:{}/", tls.port()))
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", tls.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "hello from web 2");
    assert!(proxy.is_running());
    assert_eq!(proxy.get("/").status, 200);
}

#[test]
fn malformed_requests_reset_only_their_stream() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let seen = while_serving(&proxy, || attack(&proxy, &["malformed"]));
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    assert_eq!(seen["closed"], false);
    for case in seen["cases"].as_array().unwrap() {
        assert_eq!(case["rst"], u64::from(PROTOCOL_ERROR), "{case}");
        assert_eq!(case["status"], Value::Null, "{case}");
        // The honest stream right after it, on the same connection.
        assert_eq!(case["next_status"], 200, "{case}");
    }
    assert_eq!(seen["cases"].as_array().unwrap().len(), 11);
    assert_bystander_served(&seen);
    proxy.wait_for_log("reset (ProtocolError): malformed request: ", 11);
    // Only the honest ones (and the bystander's, and the other client's)
    // reached the backend.
    let heads = backend.heads();
    assert!(
        heads.iter().all(|head| !head.contains("injected")
            && !head.to_ascii_lowercase().contains("x-upper")
            && !head.contains("elsewhere")),
        "{heads:?}"
    );
    assert_serves(&mut proxy);
}

#[test]
fn a_stream_id_going_backwards_is_a_protocol_error() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // Stream 5 opens (and is answered); then a request on stream 3, never
    // used: RFC 9113 §5.1.1, a connection error of type PROTOCOL_ERROR.
    let mut wire = Wire::open(proxy.address);
    wire.send(&get(5, "/"));
    wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&5));
    wire.send(&get(3, "/"));
    let seen = wire.until_closed(Duration::from_secs(3));
    assert_eq!(seen.statuses, [(5, 200)], "{seen:?}");
    assert_eq!(
        seen.goaway.as_ref().map(|goaway| goaway.1),
        Some(PROTOCOL_ERROR),
        "{seen:?}"
    );
    assert!(seen.closed);
    assert_serves(&mut proxy);
}

#[test]
fn priority_on_an_idle_stream_is_allowed() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let mut wire = Wire::open(proxy.address);
    // Stream 3 is idle (as Firefox's priority placeholders were); then a
    // request on stream 1.
    wire.send(&frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 0, 16]));
    wire.send(&get(1, "/"));
    let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
    assert_eq!(seen.goaway, None, "{seen:?}");
    assert_eq!(seen.statuses, [(1, 200)], "{seen:?}");
    assert_serves(&mut proxy);
}

#[test]
fn legal_frames_at_the_edges_are_not_errors() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let mut wire = Wire::connect(proxy.address);
    wire.send(PREFACE);
    // Unknown settings are ignored; so are frames of unknown types, on
    // the connection or on a stream; an unsolicited PING ACK too.
    wire.send(&settings(&[(0x99, 7), (0x3, 50)]));
    wire.send(&frame(kind::SETTINGS, ACK, 0, b""));
    wire.send(&frame(0xfa, 0xff, 0, b"?"));
    wire.send(&frame(0xfb, 0, 7, b"??"));
    wire.send(&frame(kind::PING, ACK, 0, &[1; 8]));
    // HEADERS with padding and priority fields, DATA with padding.
    let mut padded = vec![4u8, 0, 0, 0, 0, 16];
    padded.extend_from_slice(&request_block("GET", "/", &[]));
    padded.extend_from_slice(&[0; 4]);
    wire.send(&frame(
        kind::HEADERS,
        END_HEADERS | END_STREAM | PADDED | PRIORITY_FLAG,
        1,
        &padded,
    ));
    wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
    wire.send(&frame(
        kind::HEADERS,
        END_HEADERS,
        3,
        &request_block("POST", "/checksum", &[("content-length", "5")]),
    ));
    wire.send(&frame(kind::DATA, PADDED, 3, b"\x03hel\0\0\0"));
    wire.send(&frame(kind::DATA, END_STREAM, 3, b"lo"));
    wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&3));
    // Frames on streams that are closed now: WINDOW_UPDATE, RST_STREAM,
    // PRIORITY.
    wire.send(&window_update(1, 1000));
    wire.send(&frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]));
    wire.send(&frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 1, 16]));
    wire.send(&frame(kind::PING, 0, 0, &[2; 8]));
    let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ping_acks == 1);
    assert_eq!(seen.goaway, None, "{seen:?}");
    assert_eq!(seen.statuses, [(1, 200), (3, 200)], "{seen:?}");
    assert_eq!(seen.ping_acks, 1, "{seen:?}");
    assert!(!seen.closed);
    let checksum = backend
        .heads()
        .iter()
        .any(|head| head.starts_with("POST /checksum "));
    assert!(checksum);
    assert_serves(&mut proxy);
}

// --- 10. closed streams (RFC 9113 §5.1) -------------------------------------------------

const NO_ERROR: u32 = 0x0;
const INTERNAL_ERROR: u32 = 0x2;
const STREAM_CLOSED: u32 = 0x5;
const CANCEL: u32 = 0x8;

impl Wire {
    /// Sends a PING and reads until its ACK (or the close): rsp has
    /// handled every frame sent before it.
    fn sync(&mut self) -> &Seen {
        let acks = self.seen.ping_acks + 1;
        self.send(&frame(kind::PING, 0, 0, &[7; 8]));
        self.read_until(Duration::from_secs(3), |seen| seen.ping_acks >= acks)
    }

    /// The RST_STREAMs rsp sent for `stream`.
    fn resets_of(&self, stream: u32) -> Vec<u32> {
        self.seen
            .resets
            .iter()
            .filter(|(id, _)| *id == stream)
            .map(|(_, code)| *code)
            .collect()
    }
}

/// A trailer section: HEADERS that ends the stream.
fn trailers(stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    literal(&mut block, b"x-trailer", b"1");
    frame(kind::HEADERS, END_HEADERS | END_STREAM, stream, &block)
}

/// HEADERS that opens a request whose body is to come.
fn post(stream: u32, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    frame(
        kind::HEADERS,
        END_HEADERS,
        stream,
        &request_block("POST", path, extra),
    )
}

/// What a frame on a stream got from rsp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Ignored,
    Reset(u32),
    GoAway(u32),
}

#[test]
fn frames_on_closed_streams_follow_rfc_9113_section_5_1() {
    use Got::*;
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    type Late = fn(u32) -> Vec<u8>;
    let frames: [(&str, Late); 5] = [
        ("DATA", |id| frame(kind::DATA, 0, id, b"x")),
        ("HEADERS", trailers),
        ("PRIORITY", |id| {
            frame(kind::PRIORITY, 0, id, &[0, 0, 0, 0, 16])
        }),
        ("RST_STREAM", |id| {
            frame(kind::RST_STREAM, 0, id, &CANCEL.to_be_bytes())
        }),
        ("WINDOW_UPDATE", |id| window_update(id, 100)),
    ];
    // Each state of stream 1, how the connection gets there, and what each
    // frame then gets (in `frames`' order). Idle streams are in
    // `connection_errors`; streams opened after rsp's GOAWAY in
    // `frames_on_streams_opened_after_goaway_are_ignored`.
    type Enter = fn(&mut Wire);
    let states: [(&str, Enter, [Got; 5]); 5] = [
        (
            // §5.1: "half-closed (remote)": all but WINDOW_UPDATE,
            // PRIORITY and RST_STREAM are a stream error, STREAM_CLOSED.
            "half-closed (remote): the client ended it, rsp has not",
            |wire| wire.send(&get(1, "/silent")),
            [
                Reset(STREAM_CLOSED),
                Reset(STREAM_CLOSED),
                Ignored,
                Ignored,
                Ignored,
            ],
        ),
        (
            // §5.1: frames on a stream rsp reset are ignored.
            "reset by rsp: a malformed request, its body to come",
            |wire| {
                wire.send(&post(1, "/", &[("X-Upper", "1")]));
                wire.read_until(Duration::from_secs(3), |seen| {
                    seen.resets.iter().any(|(id, _)| *id == 1)
                });
            },
            [Ignored; 5],
        ),
        (
            // §5.1, closed: "An endpoint that receives any frame other
            // than PRIORITY after receiving a RST_STREAM MUST treat that
            // as a stream error of type STREAM_CLOSED" (but RST_STREAM is
            // never answered with one, §5.4.2, and WINDOW_UPDATE may
            // cross, §6.9).
            "reset by the client",
            |wire| {
                wire.send(&post(1, "/silent", &[]));
                wire.send(&frame(kind::RST_STREAM, 0, 1, &CANCEL.to_be_bytes()));
            },
            [
                Reset(STREAM_CLOSED),
                Reset(STREAM_CLOSED),
                Ignored,
                Ignored,
                Ignored,
            ],
        ),
        (
            // §6.1: DATA on a closed stream, a stream error STREAM_CLOSED;
            // §5.1: a frame after END_STREAM, a connection error
            // STREAM_CLOSED (but WINDOW_UPDATE, PRIORITY, RST_STREAM).
            "closed: END_STREAM both ways",
            |wire| {
                wire.send(&get(1, "/"));
                wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
            },
            [
                Reset(STREAM_CLOSED),
                GoAway(STREAM_CLOSED),
                Ignored,
                Ignored,
                Ignored,
            ],
        ),
        (
            // §5.1.1: opening 3 closed 1, and reusing an id is a
            // connection error PROTOCOL_ERROR.
            "closed: never opened, the client opened 3 first",
            |wire| {
                wire.send(&get(3, "/"));
                wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&3));
            },
            [
                Reset(STREAM_CLOSED),
                GoAway(PROTOCOL_ERROR),
                Ignored,
                Ignored,
                Ignored,
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (state, enter, expected) in &states {
        for ((name, late), expected) in frames.iter().zip(expected) {
            let mut wire = Wire::open(proxy.address);
            enter(&mut wire);
            wire.sync();
            let before = wire.resets_of(1).len();
            // Twice: a reset is sent once per stream.
            wire.send(&late(1));
            wire.send(&late(1));
            wire.sync();
            let resets = wire.resets_of(1).split_off(before);
            let got = match (&wire.seen.goaway, &resets[..]) {
                (Some((_, code, _)), _) => GoAway(*code),
                (None, []) => Ignored,
                (None, [code]) => Reset(*code),
                (None, _) => {
                    failures.push(format!("{name} on {state}: resets {resets:?}"));
                    continue;
                }
            };
            if got != *expected {
                failures.push(format!(
                    "{name} on {state}: expected {expected:?}, got {got:?}"
                ));
            }
            if !matches!(got, GoAway(_)) {
                // The connection goes on: a new stream is served.
                wire.send(&get(5, "/"));
                let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&5));
                if !seen.statuses.contains(&(5, 200)) {
                    failures.push(format!("{name} on {state}: then {seen:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_serves(&mut proxy);
}

#[test]
fn frames_on_streams_opened_after_goaway_are_ignored() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "shutdown_timeout_ms = 10000");
    let mut wire = Wire::open(proxy.address);
    // A stream that keeps the connection open past the GOAWAY.
    wire.send(&get(1, "/silent"));
    wire.sync();
    proxy.signal(libc::SIGTERM);
    let seen = wire.read_until(Duration::from_secs(3), |seen| seen.goaway.is_some());
    assert_eq!(
        seen.goaway.as_ref().map(|goaway| (goaway.0, goaway.1)),
        Some((1, NO_ERROR)),
        "{seen:?}"
    );
    // A request the client sent before it read the GOAWAY, its body and
    // trailers: ignored (§6.8), like its stream.
    wire.send(&post(3, "/", &[]));
    wire.send(&frame(kind::DATA, 0, 3, b"body"));
    wire.send(&window_update(3, 100));
    wire.send(&trailers(3));
    wire.send(&frame(kind::RST_STREAM, 0, 3, &CANCEL.to_be_bytes()));
    let seen = wire.sync();
    assert_eq!(seen.goaway_codes, [NO_ERROR], "{seen:?}");
    assert!(seen.resets.is_empty(), "{seen:?}");
    assert!(!seen.closed, "{seen:?}");
    assert!(proxy.is_running());
    assert!(backend.heads().iter().all(|head| !head.starts_with("POST")));
}

/// A backend that answers every request with a head promising 100 bytes
/// and 10 of them, then closes: an answer cut short.
fn cutting_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).is_ok() {
                    head.push(byte[0]);
                }
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
            });
        }
    });
    address
}

#[test]
fn frames_in_flight_for_streams_rsp_reset_are_ignored() {
    let backend = Backend::start("web");
    let mut proxy = Proxy::start_h2c(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\" }} }}, silent = {{ servers = {{ \"{}\" }} }},\n\
                  cut = {{ servers = {{ \"{}\" }} }} }}\n\
         function route(req)\n\
           if req.path == \"/silent\" then return \"silent\" end\n\
           if req.path == \"/cut\" then return \"cut\" end\n\
           if req.path == \"/reply\" then return {{ status = 200, body = \"at once\" }} end\n\
           return \"default\"\n\
         end\n\
         http2 = {{ max_concurrent_streams = 2 }}",
        backend.address,
        silent_backend(),
        cutting_backend()
    ));
    let mut wire = Wire::open(proxy.address);
    let client = wire.local();
    // Another request on the same connection, its body half sent: it
    // must outlive all that follows.
    wire.send(&post(1, "/checksum", &[("content-length", "10")]));
    wire.send(&frame(kind::DATA, 0, 1, b"01234"));
    wire.send(&post(3, "/silent", &[]));
    wire.sync();
    let reset = |wire: &mut Wire, id: u32| -> u32 {
        let seen = wire.read_until(Duration::from_secs(5), |seen| {
            seen.resets.iter().any(|(stream, _)| *stream == id)
        });
        assert!(seen.goaway.is_none(), "{seen:?}");
        wire.resets_of(id).first().copied().unwrap_or(u32::MAX)
    };
    // Refused: two streams are open.
    wire.send(&post(5, "/", &[]));
    assert_eq!(reset(&mut wire, 5), REFUSED_STREAM);
    // The client gives up stream 3: room for one more.
    wire.send(&frame(kind::RST_STREAM, 0, 3, &CANCEL.to_be_bytes()));
    // Malformed.
    wire.send(&post(7, "/", &[("X-Upper", "1")]));
    assert_eq!(reset(&mut wire, 7), PROTOCOL_ERROR);
    // A stream error: DATA past the content-length.
    wire.send(&post(9, "/silent", &[("content-length", "1")]));
    wire.send(&frame(kind::DATA, 0, 9, b"xy"));
    assert_eq!(reset(&mut wire, 9), PROTOCOL_ERROR);
    // Answered before the end of the request (RFC 9113 §8.1).
    wire.send(&post(11, "/reply", &[]));
    assert_eq!(reset(&mut wire, 11), NO_ERROR);
    // The answer cut short by its backend.
    wire.send(&post(13, "/cut", &[]));
    assert_eq!(reset(&mut wire, 13), INTERNAL_ERROR);
    // More than 64 resets since the first.
    for id in (15..=155).step_by(2) {
        wire.send(&post(id, "/", &[("X-Upper", "1")]));
    }
    assert_eq!(reset(&mut wire, 155), PROTOCOL_ERROR);
    let resets_before = wire.seen.resets.len();
    // What the client had in flight for each: DATA (64,000 bytes each,
    // within the windows the client knows of), trailers, WINDOW_UPDATE,
    // PRIORITY, RST_STREAM.
    let mut late_data = 0;
    for id in [5, 7, 9, 11, 13, 15, 155] {
        for _ in 0..4 {
            wire.send(&frame(kind::DATA, 0, id, &[b'z'; 16_000]));
            late_data += 16_000;
        }
        wire.send(&window_update(id, 100));
        wire.send(&frame(kind::PRIORITY, 0, id, &[0, 0, 0, 0, 16]));
        wire.send(&trailers(id));
        wire.send(&frame(kind::RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let seen = wire.sync();
    assert!(seen.goaway.is_none(), "{seen:?}");
    assert_eq!(seen.resets.len(), resets_before, "{seen:?}");
    // The DATA counted against the connection window came back (§6.9):
    // rsp's first WINDOW_UPDATE opened it to 16 x 65,535, and the next
    // gives back at least a quarter of that.
    let opened = 15 * 65_535;
    assert!(late_data > 65_535 * 4, "{late_data}");
    let seen = wire.read_until(Duration::from_secs(3), |seen| {
        seen.connection_window >= opened + 4 * 65_535
    });
    assert!(
        seen.connection_window >= opened + 4 * 65_535,
        "{} of {late_data} given back",
        seen.connection_window - opened
    );
    // The other request goes on, and so does the connection.
    wire.send(&frame(kind::DATA, END_STREAM, 1, b"56789"));
    wire.send(&get(157, "/"));
    let seen = wire.read_until(Duration::from_secs(5), |seen| {
        seen.ended.contains(&1) && seen.ended.contains(&157)
    });
    assert!(seen.statuses.contains(&(1, 200)), "{seen:?}");
    assert!(seen.statuses.contains(&(157, 200)), "{seen:?}");
    assert!(!seen.closed && seen.goaway.is_none(), "{seen:?}");
    // Every reset rsp sent is logged with why, within the connection's
    // bound of 20 lines: the first ones.
    proxy.wait_for_log(
        &format!("{client}: HTTP/2 stream 5 reset (RefusedStream): refused: 2 streams open"),
        1,
    );
    proxy.wait_for_log(
        &format!("{client}: HTTP/2 stream 7 reset (ProtocolError): malformed request: "),
        1,
    );
    proxy.wait_for_log(
        &format!("{client}: HTTP/2 stream 9 reset (ProtocolError): DATA that does not add up"),
        1,
    );
    proxy.wait_for_log(
        &format!(
            "{client}: HTTP/2 stream 11 reset (NoError): answered before the end of the request"
        ),
        1,
    );
    proxy.wait_for_log(
        &format!("{client}: HTTP/2 stream 13 reset (InternalError): "),
        1,
    );
    let lines = proxy
        .log()
        .lines()
        .filter(|line| {
            line.contains(&format!("{client}: HTTP/2 stream ")) && line.contains(" reset (")
        })
        .count();
    assert_eq!(lines, 20, "{}", proxy.log());
    assert_serves(&mut proxy);
}

// --- 11. translation edges ------------------------------------------------------------------

#[test]
fn an_absolute_path_must_name_the_requests_scheme_and_authority() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let mut wire = Wire::open(proxy.address);
    // The request's scheme is http and its :authority `test`.
    let refused = [
        (1, "http://other.example/x"),
        (3, "https://test/x"),
        (5, "http://test.example/x"),
        (7, "http://test:8080/x"),
    ];
    for (id, path) in refused {
        wire.send(&get(id, path));
    }
    // The same authority, in another case: taken, as origin-form.
    wire.send(&get(9, "http://TEST/abs"));
    let seen = wire.read_until(Duration::from_secs(3), |seen| {
        seen.ended.contains(&9) && seen.resets.len() >= refused.len()
    });
    for (id, path) in refused {
        assert!(
            seen.resets.contains(&(id, PROTOCOL_ERROR)),
            "{path}: {seen:?}"
        );
    }
    assert_eq!(seen.statuses, [(9, 200)], "{seen:?}");
    assert!(seen.goaway.is_none());
    let heads = backend.heads();
    assert!(
        heads
            .iter()
            .any(|head| head.starts_with("GET /abs HTTP/1.1\r\n"))
    );
    assert!(
        heads.iter().all(|head| !head.starts_with("GET /x ")),
        "{heads:?}"
    );
    proxy.wait_for_log(
        "reset (ProtocolError): malformed request: an absolute-form :path whose scheme or authority is not the request's",
        refused.len(),
    );
    assert_serves(&mut proxy);
}

/// A backend answer with `count` fields (`Content-Length` one of them).
fn answer_with_fields(count: usize) -> &'static [u8] {
    let mut answer = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for index in 1..count {
        answer.push_str(&format!("X-Field-{index}: {index}\r\n"));
    }
    answer.push_str("\r\nok");
    Box::leak(answer.into_bytes().into_boxed_slice())
}

#[test]
fn a_response_gets_the_same_answer_over_http1_and_http2_whatever_its_field_count() {
    let most = Recorder::start(answer_with_fields(128));
    let too_many = Recorder::start(answer_with_fields(129));
    // rsp adds X-Request-Id to the backend's 128 (129), and a respond()
    // hook 50 more (179): rsp's own HTTP/1 answer, read again for HTTP/2,
    // may have any number.
    let proxy = Proxy::start_h2c(&format!(
        "pools = {{ most = {{ servers = {{ \"{}\" }} }}, too_many = {{ servers = {{ \"{}\" }} }} }}\n\
         function route(req)\n\
           if req.path == \"/129\" then return \"too_many\" end\n\
           return \"most\"\n\
         end\n\
         function respond(req, res)\n\
           if req.path == \"/more\" then\n\
             for i = 1, 50 do res:add_header(\"X-More-\" .. i, \"m\") end\n\
           end\n\
         end",
        most.address, too_many.address
    ));
    // (path, status, fields the client gets besides :status)
    let cases = [("/128", 200, 129), ("/129", 502, 0), ("/more", 200, 179)];
    for (path, status, fields) in cases {
        let response = proxy.get(path);
        assert_eq!(
            response.status, status,
            "HTTP/1.1 {path}: {}",
            response.head
        );
        if status == 200 {
            // `Connection: close` answers the request's.
            let lines = response
                .head
                .lines()
                .skip(1)
                .filter(|line| !line.is_empty())
                .count();
            assert_eq!(lines, fields + 1, "HTTP/1.1 {path}: {}", response.head);
        }
    }
    let mut wire = Wire::open(proxy.address);
    for (index, (path, ..)) in cases.iter().enumerate() {
        wire.send(&get(1 + 2 * index as u32, path));
    }
    let seen = wire.read_until(Duration::from_secs(5), |seen| {
        [1, 3, 5]
            .iter()
            .all(|id| seen.ended.contains(id) || seen.resets.iter().any(|(stream, _)| stream == id))
    });
    assert!(seen.resets.is_empty(), "{seen:?}");
    for (index, (path, status, fields)) in cases.into_iter().enumerate() {
        let id = 1 + 2 * index as u32;
        assert!(
            seen.statuses.contains(&(id, status)),
            "HTTP/2 {path}: {seen:?}"
        );
        if status == 200 {
            let (_, got) = seen
                .fields
                .iter()
                .find(|(stream, _)| *stream == id)
                .unwrap();
            assert_eq!(got.len(), fields + 1, "HTTP/2 {path}: {got:?}");
            assert!(
                got.iter()
                    .all(|(name, _)| *name == name.to_ascii_lowercase())
            );
        }
    }
}

#[test]
fn a_request_gets_the_same_answer_over_http1_and_http2_whatever_its_field_count() {
    let backend = Backend::start("web");
    let proxy = h2_proxy(&backend, "");
    // An HTTP/1 head of Host and 127 more is the most rsp takes; the same
    // request over HTTP/2 is :authority (which becomes the Host) and 127
    // fields, with the other pseudo-header fields.
    for (count, status) in [(127, 200), (128, 431)] {
        let fields: Vec<(String, String)> = (0..count)
            .map(|index| (format!("x-field-{index}"), index.to_string()))
            .collect();
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: test\r\n");
        for (name, value) in &fields {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(
            proxy.get_raw(&raw).status,
            status,
            "HTTP/1.1, {count} fields"
        );
        let extra: Vec<(&str, &str)> = fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let mut wire = Wire::open(proxy.address);
        wire.send(&frame(
            kind::HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block("GET", "/", &extra),
        ));
        let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
        assert_eq!(
            seen.statuses,
            [(1, status)],
            "HTTP/2, {count} fields: {seen:?}"
        );
    }
}

// --- 9. random bytes ------------------------------------------------------------------------

/// xorshift64*: the same bytes for the same seed, on every machine.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn bytes(&mut self, count: usize) -> Vec<u8> {
        (0..count).map(|_| self.next() as u8).collect()
    }
}

/// What seed `seed` sends after the preface and SETTINGS (and, for one
/// in four, a request and its answer): bytes at random, or frames with
/// plausible headers and random payloads (some after a request whose body
/// is still to come), header blocks among them mutated valid ones.
fn fuzz_input(seed: u64) -> Vec<u8> {
    let mut random = Random::new(seed);
    let mut out = Vec::new();
    match seed % 4 {
        0 => {
            let length = 1 + random.below(2048) as usize;
            return random.bytes(length);
        }
        3 => out.extend(frame(
            kind::HEADERS,
            END_HEADERS,
            1,
            &request_block("POST", "/silent", &[]),
        )),
        _ => {}
    }
    for _ in 0..1 + random.below(40) {
        let kind = random.below(12) as u8;
        let flags = match random.below(3) {
            0 => 0,
            1 => [END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG][random.below(4) as usize],
            _ => random.next() as u8,
        };
        let stream = match random.below(6) {
            0 => 0,
            1 => 1,
            2 => 3,
            3 => 2,
            4 => 1 + 2 * random.below(20) as u32,
            _ => random.next() as u32,
        };
        let payload = match kind {
            kind::HEADERS | kind::CONTINUATION if random.below(2) == 0 => {
                let mut block = request_block("GET", "/", &[("x", "y")]);
                for _ in 0..1 + random.below(4) {
                    let at = random.below(block.len() as u64) as usize;
                    block[at] = random.next() as u8;
                }
                block
            }
            kind::SETTINGS => (0..random.below(4))
                .flat_map(|_| {
                    let id = random.below(9) as u16;
                    let value = match random.below(3) {
                        0 => 0,
                        1 => random.below(1 << 16) as u32,
                        _ => random.next() as u32,
                    };
                    [&id.to_be_bytes()[..], &value.to_be_bytes()[..]].concat()
                })
                .collect(),
            kind::WINDOW_UPDATE | kind::RST_STREAM => random.bytes(4),
            kind::PING => random.bytes(8),
            kind::PRIORITY => random.bytes(5),
            _ => {
                let length = random.below(64) as usize;
                random.bytes(length)
            }
        };
        out.extend(frame(kind, flags, stream, &payload));
    }
    out
}

#[test]
fn random_bytes_after_the_preface_never_bring_rsp_down() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    const SEEDS: u64 = 2000;
    const THREADS: u64 = 4;
    let address = proxy.address;
    // Per worker: seeds whose connection rsp never closed, the GOAWAY codes
    // seen, the streams answered.
    let outcomes: Vec<(Vec<u64>, Vec<u32>, usize)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|worker| {
                scope.spawn(move || {
                    let (mut hung, mut codes, mut answered) = (Vec::new(), Vec::new(), 0);
                    for seed in (worker..SEEDS).step_by(THREADS as usize) {
                        let mut wire = Wire::open(address);
                        if seed % 4 == 2 {
                            // A request answered first, then the noise.
                            wire.send(&get(1, "/"));
                            wire.read_until(Duration::from_secs(5), |seen| seen.ended.contains(&1));
                        }
                        wire.send(&fuzz_input(seed));
                        // The client is done: rsp must end the connection.
                        let _ = wire.stream.shutdown(Shutdown::Write);
                        let seen = wire.until_closed(Duration::from_secs(5));
                        if !seen.closed {
                            hung.push(seed);
                        }
                        codes.extend(seen.goaway.as_ref().map(|goaway| goaway.1));
                        answered += seen.statuses.len();
                    }
                    (hung, codes, answered)
                })
            })
            .collect();
        // Served all along.
        for _ in 0..10 {
            assert_eq!(proxy.get("/").status, 200, "{}", proxy.log());
            thread::sleep(Duration::from_millis(20));
        }
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .collect()
    });
    let hung: Vec<u64> = outcomes
        .iter()
        .flat_map(|(hung, ..)| hung.clone())
        .collect();
    assert!(
        hung.is_empty(),
        "connections rsp never closed: seeds {hung:?}"
    );
    // The inputs went past the frame header checks: rsp answered requests
    // and found errors of several kinds.
    let mut codes: Vec<u32> = outcomes
        .iter()
        .flat_map(|(_, codes, _)| codes.clone())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let answered: usize = outcomes.iter().map(|(.., answered)| answered).sum();
    assert!(
        codes.len() >= 4 && answered > 0,
        "codes {codes:?}, {answered} answered"
    );
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
    assert_serves(&mut proxy);
}
