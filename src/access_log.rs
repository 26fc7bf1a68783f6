//! One line per request, in the combined log format or as JSON.
//!
//! Lines collect in memory and are written once per loop turn (or when
//! 64 KiB are waiting), so logging costs one `write` per turn, not one per
//! request. Standard output is made non-blocking when it is a pipe or a
//! socket: a stalled log reader holds at most `MAX_PENDING` bytes, then
//! lines are dropped and counted rather than stalling the proxy.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{AccessLogConfig, LogFormat, LogTarget};
use crate::http::RequestHead;
use crate::timer::Throttle;

const FLUSH_AT: usize = 64 * 1024;
const MAX_PENDING: usize = 4 * 1024 * 1024;

/// What one request leaves in the log.
pub struct Entry<'a> {
    pub client: SocketAddr,
    /// `None` when the head could not be parsed (400, 408, 431).
    pub request: Option<&'a RequestHead>,
    /// The status the client got; 0 when it got none.
    pub status: u16,
    pub body_bytes_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub pool: Option<&'a str>,
    pub backend: Option<SocketAddr>,
    pub backend_status: Option<u16>,
    pub duration: Duration,
    pub request_id: Option<&'a str>,
    /// The whole answer went out.
    pub completed: bool,
}

pub struct AccessLog {
    config: AccessLogConfig,
    /// `None` writes to standard output.
    file: Option<File>,
    pending: Vec<u8>,
    dropped: u64,
    drop_warnings: Throttle,
    clock: Clock,
}

impl AccessLog {
    pub fn open(config: &AccessLogConfig) -> io::Result<AccessLog> {
        let file = match &config.target {
            LogTarget::Stdout => {
                stdout_nonblocking();
                None
            }
            LogTarget::File(path) => Some(open_file(path)?),
        };
        Ok(AccessLog {
            config: config.clone(),
            file,
            pending: Vec::with_capacity(FLUSH_AT),
            dropped: 0,
            drop_warnings: Throttle::default(),
            clock: Clock::default(),
        })
    }

    pub fn config(&self) -> &AccessLogConfig {
        &self.config
    }

    /// SIGUSR1: write what is waiting, then open the path again, so a file
    /// moved away by logrotate is replaced by a fresh one.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.flush();
        if let LogTarget::File(path) = &self.config.target {
            self.file = Some(open_file(path)?);
        }
        Ok(())
    }

    pub fn write(&mut self, entry: &Entry) {
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        match self.config.format {
            LogFormat::Combined => {
                let time = self.clock.combined(now.as_secs());
                write_combined(&mut self.pending, entry, time);
            }
            LogFormat::Json => {
                let time = self.clock.iso(now.as_secs());
                write_json(&mut self.pending, entry, time, now.subsec_millis());
            }
        }
        if self.pending.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Writes what it can without blocking; the rest waits for the next turn.
    pub fn flush(&mut self) {
        let mut written = 0;
        while written < self.pending.len() {
            let result = match &mut self.file {
                Some(file) => file.write(&self.pending[written..]),
                None => write_stdout(&self.pending[written..]),
            };
            match result {
                Ok(0) => break,
                Ok(count) => written += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    log::error!("access log: {error}; {} bytes lost", self.pending.len());
                    written = self.pending.len();
                }
            }
        }
        self.pending.drain(..written);
        if self.dropped > 0 && self.drop_warnings.ready(Instant::now()) {
            log::warn!(
                "access log: the reader is not keeping up, {} lines dropped",
                self.dropped
            );
            self.dropped = 0;
        }
    }
}

fn open_file(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("cannot open access log {}: {error}", path.display()),
            )
        })
}

fn stdout_nonblocking() {
    // SAFETY: fstat and fcntl on descriptor 1 with a valid stat buffer;
    // they change nothing but that descriptor's status flags.
    unsafe {
        let mut status: libc::stat = std::mem::zeroed();
        if libc::fstat(1, &mut status) != 0 {
            return;
        }
        let kind = status.st_mode & libc::S_IFMT;
        // A terminal or a file never pushes back for long; a pipe can.
        if kind == libc::S_IFIFO || kind == libc::S_IFSOCK {
            let flags = libc::fcntl(1, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(1, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
    }
}

fn write_stdout(bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: writes from a valid slice to descriptor 1.
    let written = unsafe { libc::write(1, bytes.as_ptr().cast(), bytes.len()) };
    if written < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(written as usize)
    }
}

/// The formatted time, redone once per second (by the `time` crate: once
/// a second, its cost is nothing on the request path).
#[derive(Default)]
struct Clock {
    second: u64,
    combined: String,
    iso: String,
}

const COMBINED_TIME: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
);
const ISO_TIME: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

impl Clock {
    fn refresh(&mut self, second: u64) {
        if second == self.second && !self.combined.is_empty() {
            return;
        }
        self.second = second;
        let at = i64::try_from(second)
            .ok()
            .and_then(|second| time::OffsetDateTime::from_unix_timestamp(second).ok())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        self.combined = at.format(COMBINED_TIME).unwrap_or_default();
        self.iso = at.format(ISO_TIME).unwrap_or_default();
    }

    fn combined(&mut self, second: u64) -> &str {
        self.refresh(second);
        &self.combined
    }

    fn iso(&mut self, second: u64) -> &str {
        self.refresh(second);
        &self.iso
    }
}

/// `IP - - [time] "request" status bytes "referer" "agent" backend backend_status micros request_id`
fn write_combined(out: &mut Vec<u8>, entry: &Entry, time: &str) {
    let _ = write!(out, "{} - - [{time}] \"", entry.client.ip().to_canonical());
    match entry.request {
        Some(head) => {
            escape_quoted(out, head.method().as_bytes());
            out.push(b' ');
            escape_quoted(out, head.target().as_bytes());
            out.push(b' ');
            out.extend_from_slice(head.protocol().as_bytes());
        }
        None => out.push(b'-'),
    }
    out.extend_from_slice(b"\" ");
    number_or_dash(out, Some(entry.status).filter(|&status| status != 0));
    let _ = write!(out, " {} \"", entry.body_bytes_sent);
    let header = |name| entry.request.and_then(|head| head.header(name));
    escape_quoted(out, header("referer").unwrap_or(b"-"));
    out.extend_from_slice(b"\" \"");
    escape_quoted(out, header("user-agent").unwrap_or(b"-"));
    out.extend_from_slice(b"\" ");
    match entry.backend {
        Some(backend) => {
            let _ = write!(out, "{backend}");
        }
        None => out.push(b'-'),
    }
    out.push(b' ');
    number_or_dash(out, entry.backend_status);
    let _ = write!(out, " {} ", entry.duration.as_micros());
    out.extend_from_slice(entry.request_id.unwrap_or("-").as_bytes());
    out.push(b'\n');
}

fn number_or_dash(out: &mut Vec<u8>, number: Option<u16>) {
    match number {
        Some(number) => {
            let _ = write!(out, "{number}");
        }
        None => out.push(b'-'),
    }
}

/// nginx's escaping for log fields: quotes, backslashes and anything not
/// printable ASCII become `\xHH`.
fn escape_quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    for &byte in bytes {
        if byte == b'"' || byte == b'\\' || !(0x20..0x7f).contains(&byte) {
            let _ = write!(out, "\\x{byte:02X}");
        } else {
            out.push(byte);
        }
    }
}

fn write_json(out: &mut Vec<u8>, entry: &Entry, time: &str, millis: u32) {
    let _ = write!(out, "{{\"time\":\"{time}.{millis:03}Z\",\"client\":");
    json_string(out, &entry.client.ip().to_canonical().to_string());
    let _ = write!(out, ",\"client_port\":{}", entry.client.port());
    let head = entry.request;
    for (name, value) in [
        ("method", head.map(|head| head.method().into())),
        ("target", head.map(|head| head.target().into())),
        ("protocol", head.map(|head| head.protocol().into())),
        ("host", text(head.and_then(|head| head.header("host")))),
        (
            "referer",
            text(head.and_then(|head| head.header("referer"))),
        ),
        (
            "user_agent",
            text(head.and_then(|head| head.header("user-agent"))),
        ),
    ] {
        let _ = write!(out, ",\"{name}\":");
        match value {
            Some(value) => json_string(out, &value),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b",\"status\":");
    json_number(out, Some(entry.status).filter(|&status| status != 0));
    let _ = write!(
        out,
        ",\"body_bytes_sent\":{},\"bytes_received\":{},\"bytes_sent\":{},\"pool\":",
        entry.body_bytes_sent, entry.bytes_received, entry.bytes_sent
    );
    match entry.pool {
        Some(pool) => json_string(out, pool),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"backend\":");
    match entry.backend {
        Some(backend) => json_string(out, &backend.to_string()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"backend_status\":");
    json_number(out, entry.backend_status);
    let _ = write!(
        out,
        ",\"duration_us\":{},\"request_id\":",
        entry.duration.as_micros()
    );
    match entry.request_id {
        Some(id) => json_string(out, id),
        None => out.extend_from_slice(b"null"),
    }
    let _ = writeln!(out, ",\"completed\":{}}}", entry.completed);
}

fn text(value: Option<&[u8]>) -> Option<std::borrow::Cow<'_, str>> {
    value.map(String::from_utf8_lossy)
}

fn json_number(out: &mut Vec<u8>, number: Option<u16>) {
    match number {
        Some(number) => {
            let _ = write!(out, "{number}");
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// Writes `text` as a JSON string (serde_json's escaping).
pub fn json_string(out: &mut Vec<u8>, text: &str) {
    let _ = serde_json::to_writer(out, text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::RequestPolicy;

    #[test]
    fn dates() {
        let mut clock = Clock::default();
        assert_eq!(clock.combined(1_795_388_645), "22/Nov/2026:23:04:05 +0000");
        assert_eq!(clock.iso(1_795_388_645), "2026-11-22T23:04:05");
    }

    fn head(raw: &str) -> RequestHead {
        let mut head = RequestHead::default();
        head.parse(raw.as_bytes(), &RequestPolicy::default(), false)
            .unwrap()
            .unwrap();
        head
    }

    fn entry<'a>(request: Option<&'a RequestHead>) -> Entry<'a> {
        Entry {
            client: "192.0.2.1:5000".parse().unwrap(),
            request,
            status: 200,
            body_bytes_sent: 612,
            bytes_received: 80,
            bytes_sent: 700,
            pool: Some("web"),
            backend: Some("127.0.0.1:8080".parse().unwrap()),
            backend_status: Some(200),
            duration: Duration::from_micros(1234),
            request_id: Some("abc"),
            completed: true,
        }
    }

    #[test]
    fn combined_lines() {
        let head = head(
            "GET /a?b=\"c\" HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8\r\nReferer: http://r/\r\n\r\n",
        );
        let mut out = Vec::new();
        write_combined(&mut out, &entry(Some(&head)), "T");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.1 - - [T] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 612 \"http://r/\" \"curl/8\" \
             127.0.0.1:8080 200 1234 abc\n"
        );
        let mut out = Vec::new();
        let unparsed = Entry {
            status: 400,
            backend: None,
            backend_status: None,
            ..entry(None)
        };
        write_combined(&mut out, &unparsed, "T");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "192.0.2.1 - - [T] \"-\" 400 612 \"-\" \"-\" - - 1234 abc\n"
        );
    }

    #[test]
    fn json_lines_escape_what_they_must() {
        let head = head("GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: a\"b\\c\r\n\r\n");
        let mut out = Vec::new();
        write_json(&mut out, &entry(Some(&head)), "2026-11-22T00:00:00", 7);
        let line = String::from_utf8(out).unwrap();
        assert!(line.starts_with("{\"time\":\"2026-11-22T00:00:00.007Z\",\"client\":\"192.0.2.1\",\"client_port\":5000,\"method\":\"GET\""), "{line}");
        assert!(line.contains("\"user_agent\":\"a\\\"b\\\\c\""), "{line}");
        assert!(line.contains("\"referer\":null"), "{line}");
        assert!(
            line.ends_with("\"request_id\":\"abc\",\"completed\":true}\n"),
            "{line}"
        );
        let mut out = Vec::new();
        json_string(&mut out, "\u{1}\n");
        assert_eq!(out, b"\"\\u0001\\n\"");
    }
}
