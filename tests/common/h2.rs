//! A frame-level HTTP/2 client, and what the HTTP/2 tests share: rsp
//! taking h2c in front of a backend, the Python `h2` scripts of tests/h2/
//! (`attack.py`, `edges.py`), and the check that rsp still serves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub mod kind {
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

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u64 = 0xb;

pub const NO_ERROR: u32 = 0x0;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const STREAM_CLOSED: u32 = 0x5;
pub const CANCEL: u32 = 0x8;

/// How rsp's log names an error code.
pub fn code_name(code: u32) -> &'static str {
    match code {
        PROTOCOL_ERROR => "ProtocolError",
        FLOW_CONTROL_ERROR => "FlowControlError",
        FRAME_SIZE_ERROR => "FrameSizeError",
        COMPRESSION_ERROR => "CompressionError",
        _ => "?",
    }
}

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> = pairs
        .iter()
        .flat_map(|(id, value)| [&id.to_be_bytes()[..], &value.to_be_bytes()[..]].concat())
        .collect();
    frame(kind::SETTINGS, 0, 0, &payload)
}

pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(kind::WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// An HPACK literal field without indexing, with a literal name (RFC 7541
/// §6.2.2), of any length: changes no table, so raw blocks never put
/// rsp's decoder out of step.
pub fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    use rsp::hpack::encode_integer;
    out.push(0);
    encode_integer(out, name.len(), 7, 0);
    out.extend_from_slice(name);
    encode_integer(out, value.len(), 7, 0);
    out.extend_from_slice(value);
}

/// The header block of a request for `path`.
pub fn request_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
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
pub fn get(stream: u32, path: &str) -> Vec<u8> {
    frame(
        kind::HEADERS,
        END_HEADERS | END_STREAM,
        stream,
        &request_block("GET", path, &[]),
    )
}

/// A trailer section: HEADERS that ends the stream.
pub fn trailers(stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    literal(&mut block, b"x-trailer", b"1");
    frame(kind::HEADERS, END_HEADERS | END_STREAM, stream, &block)
}

/// HEADERS that opens a request whose body is to come.
pub fn post(stream: u32, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    frame(
        kind::HEADERS,
        END_HEADERS,
        stream,
        &request_block("POST", path, extra),
    )
}

/// What came back on a raw connection.
#[derive(Debug, Default)]
pub struct Received {
    /// (last stream id, code, debug text)
    pub goaway: Option<(u32, u32, String)>,
    pub resets: Vec<(u32, u32)>,
    pub statuses: Vec<(u32, u16)>,
    pub ended: Vec<u32>,
    pub ping_acks: usize,
    pub closed: bool,
    /// The connection was answered as HTTP/1: its status line.
    pub http1: Option<String>,
    /// The codes of every GOAWAY (`goaway` is the first).
    pub goaway_codes: Vec<u32>,
    /// WINDOW_UPDATE increments on the connection (stream 0), summed.
    pub connection_window: u64,
    /// (stream, the fields of its header blocks, pseudo-headers included).
    pub fields: Vec<(u32, Vec<(String, String)>)>,
    /// The type of the last frame read.
    pub last_kind: Option<u8>,
}

/// A raw HTTP/2 client over one connection: writes any bytes, reads
/// frames into `seen`.
pub struct Wire {
    pub stream: TcpStream,
    pub inbound: Vec<u8>,
    pub decoder: loona_hpack::Decoder<'static>,
    pub block: Vec<u8>,
    pub seen: Received,
}

impl Wire {
    pub fn connect(address: SocketAddr) -> Wire {
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
            seen: Received::default(),
        }
    }

    /// A connection past the preface and an empty SETTINGS.
    pub fn open(address: SocketAddr) -> Wire {
        let mut wire = Wire::connect(address);
        wire.send(&[PREFACE, &settings(&[])].concat());
        wire
    }

    /// Writes `bytes`; rsp may have closed already, which is no error here.
    pub fn send(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    pub fn local(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Reads until `done` holds, the connection closes or `timeout` passes.
    pub fn read_until(&mut self, timeout: Duration, done: impl Fn(&Received) -> bool) -> &Received {
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

    pub fn until_closed(&mut self, timeout: Duration) -> &Received {
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
        self.seen.last_kind = Some(kind);
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

    /// Sends a PING and reads until its ACK (or the close): rsp has
    /// handled every frame sent before it.
    pub fn sync(&mut self) -> &Received {
        let acks = self.seen.ping_acks + 1;
        self.send(&frame(kind::PING, 0, 0, &[7; 8]));
        self.read_until(Duration::from_secs(3), |seen| seen.ping_acks >= acks)
    }

    /// The RST_STREAMs rsp sent for `stream`.
    pub fn resets_of(&self, stream: u32) -> Vec<u32> {
        self.seen
            .resets
            .iter()
            .filter(|(id, _)| *id == stream)
            .map(|(_, code)| *code)
            .collect()
    }
}

/// Runs `tests/h2/SCRIPT ARGS...` (Python's `h2`, installed when
/// missing); the JSON of the last line it printed. rsp's log is shown
/// when the script fails.
pub fn run_script(proxy: &Proxy, script: &str, args: &[&str]) -> Value {
    ensure_python_h2();
    // -B: no __pycache__ left in the source tree.
    let output = Command::new("python3")
        .arg("-B")
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/h2")
                .join(script),
        )
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} {args:?} failed: {stdout}{}\nrsp log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        proxy.log()
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("{script} {args:?}: {error}: {stdout}"))
}

/// Runs `tests/h2/attack.py PORT ARGS...` against `port`; what it saw.
pub fn attack_port(proxy: &Proxy, port: u16, args: &[&str]) -> Value {
    let port = port.to_string();
    run_script(proxy, "attack.py", &[&[port.as_str()], args].concat())
}

pub fn attack(proxy: &Proxy, args: &[&str]) -> Value {
    attack_port(proxy, proxy.address.port(), args)
}

/// Runs `tests/h2/edges.py SCENARIO PORT ARGS...` against `proxy`.
pub fn edges(proxy: &Proxy, scenario: &str, args: &[&str]) -> Value {
    let port = proxy.address.port().to_string();
    run_script(
        proxy,
        "edges.py",
        &[&[scenario, port.as_str()], args].concat(),
    )
}

/// The GOAWAY code the attacker got, if any.
pub fn goaway_code(seen: &Value) -> Option<u64> {
    seen["goaway"]["code"].as_u64()
}

/// The honest connection the attack script keeps open across the attack
/// got its two answers.
pub fn assert_bystander_served(seen: &Value) {
    assert_eq!(seen["bystander"], serde_json::json!([200, 200]), "{seen}");
}

/// A backend that reads what it gets and never answers: streams routed to
/// it stay open as long as the client lets them. A connection rsp closes
/// is let go.
pub fn silent_backend() -> SocketAddr {
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
pub fn h2_proxy(backend: &Backend, settings: &str) -> Proxy {
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
pub fn curl_h2(proxy: &Proxy, path: &str) -> (u16, String, String) {
    let url = format!("http://{}{path}", proxy.address);
    let text = curl(&[
        "--http2-prior-knowledge",
        "--max-time",
        "5",
        "--write-out",
        "\n%{http_code} %{http_version}",
        &url,
    ])
    .text();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
    let (status, version) = tail.split_once(' ').unwrap_or(("0", "0"));
    (
        status.parse().unwrap_or(0),
        version.to_owned(),
        body.to_owned(),
    )
}

/// rsp is alive and serves `/` to a new HTTP/1.1 client and a new HTTP/2 one.
pub fn assert_serves(proxy: &mut Proxy) {
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
