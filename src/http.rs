//! HTTP/1.x heads: parsing with httparse, deciding framing and persistence,
//! and writing the head rsp forwards to the other side (RFC 9110, 9112).

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::ops::Range;

use crate::forwarding::Forwarding;
use crate::framing::Framing;
use crate::request_id;
use crate::target::{self, Form, PathNormalization, Scratch, TargetError};

/// More header fields than this in one head is answered with 431.
pub const MAX_HEADERS: usize = 128;

/// Fields that describe one connection, never forwarded (RFC 9110 §7.6.1).
/// `Transfer-Encoding` is hop-by-hop too, but rsp forwards bodies with the
/// coding they arrived in, so it keeps that field with them.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
];

/// Fields that frame or address the message: a `Connection` header that
/// names them must not make them vanish (request smuggling).
const NEVER_DROPPED: &[&str] = &["content-length", "transfer-encoding", "host"];

/// The forwarding fields rsp writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    For,
    Proto,
    Host,
    Forwarded,
}

fn forwarding_field(name: &[u8]) -> Option<Field> {
    if name.eq_ignore_ascii_case(b"x-forwarded-for") {
        Some(Field::For)
    } else if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
        Some(Field::Proto)
    } else if name.eq_ignore_ascii_case(b"x-forwarded-host") {
        Some(Field::Host)
    } else if name.eq_ignore_ascii_case(b"forwarded") {
        Some(Field::Forwarded)
    } else {
        None
    }
}

/// What to do with a request field whose name holds an underscore: CGI
/// and WSGI servers read `X_Forwarded_For` as `X-Forwarded-For`
/// (`HTTP_X_FORWARDED_FOR`), past rsp's forwarded-header guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Underscores {
    /// Removed before `route()` and the backend see the request (nginx's
    /// `underscores_in_headers off`).
    Drop,
    /// 400.
    Reject,
    Allow,
}

/// How requests are read: the security settings of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPolicy {
    pub path: PathNormalization,
    pub underscores: Underscores,
    /// Protocols a client may switch to (`Upgrade`), lower case; never `h2c`.
    pub upgrades: Vec<String>,
}

impl Default for RequestPolicy {
    fn default() -> RequestPolicy {
        RequestPolicy {
            path: PathNormalization::default(),
            underscores: Underscores::Drop,
            upgrades: vec!["websocket".to_owned()],
        }
    }
}

/// The one protocol never switched to through rsp: a backend that accepts
/// `h2c` would take every later request on the connection past `route()`.
pub const NEVER_UPGRADED: &str = "h2c";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    Malformed(httparse::Error),
    TooManyHeaders,
    Framing(&'static str),
    Target(TargetError),
    /// A 101 that switches to nothing the request offered.
    Switch(&'static str),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Malformed(error) => write!(f, "malformed head: {error}"),
            HeadError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header fields"),
            HeadError::Framing(why) => f.write_str(why),
            HeadError::Target(error) => write!(f, "request target: {error}"),
            HeadError::Switch(why) => f.write_str(why),
        }
    }
}

/// A parsed request head, owning a copy of its bytes so the client buffer
/// can move on (to the body, or the next pipelined request).
#[derive(Default)]
pub struct RequestHead {
    raw: Vec<u8>,
    method: Range<usize>,
    /// The target as the client sent it.
    raw_target: Range<usize>,
    /// The target rsp routes on and forwards: origin-form, normalized (or
    /// `*`). Always ASCII.
    target: Vec<u8>,
    /// Where the path ends in `target` (at the `?`, or its end).
    path_end: usize,
    /// The Host value forwarded: an absolute-form target's authority,
    /// else the client's Host field (a range of `raw`).
    host_value: Option<Range<usize>>,
    /// The target was absolute-form: its authority replaces the Host field.
    absolute: bool,
    headers: Vec<(Range<usize>, Range<usize>)>,
    host: String,
    /// The protocols of the client's `Upgrade` that may be switched to.
    upgrade_offer: Vec<u8>,
    scratch: Scratch,
    pub minor_version: u8,
    pub framing: Framing,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// A bodiless HTTP/1.1 request asking to switch to a protocol the
    /// policy allows (`Upgrade`, named in `Connection`), such as a
    /// WebSocket handshake.
    pub upgrade: bool,
}

impl RequestHead {
    /// Parses a request head at the start of `buffer`. `Ok(None)` means
    /// more bytes are needed; `Ok(Some(n))` means the head is the first `n`.
    pub fn parse(
        &mut self,
        buffer: &[u8],
        policy: &RequestPolicy,
    ) -> Result<Option<usize>, HeadError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut fields);
        let length = match request.parse(buffer) {
            Ok(httparse::Status::Complete(length)) => length,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
            Err(error) => return Err(HeadError::Malformed(error)),
        };
        let base = buffer.as_ptr() as usize;
        let span = |part: &[u8]| {
            let start = part.as_ptr() as usize - base;
            start..start + part.len()
        };
        self.raw.clear();
        self.raw.extend_from_slice(&buffer[..length]);
        self.method = span(request.method.unwrap_or_default().as_bytes());
        self.raw_target = span(request.path.unwrap_or_default().as_bytes());
        self.minor_version = request.version.unwrap_or(1);
        self.headers.clear();
        for field in request.headers.iter() {
            if field.name.contains('_') {
                match policy.underscores {
                    Underscores::Allow => {}
                    Underscores::Drop => {
                        log::debug!("dropped the request field {:?}", field.name);
                        continue;
                    }
                    Underscores::Reject => {
                        return Err(HeadError::Framing("a field name with an underscore"));
                    }
                }
            }
            self.headers
                .push((span(field.name.as_bytes()), span(field.value)));
        }
        self.examine(policy)?;
        self.read_target(&policy.path)?;
        Ok(Some(length))
    }

    /// Derives framing, persistence and the upgrade offer from the fields.
    fn examine(&mut self, policy: &RequestPolicy) -> Result<(), HeadError> {
        let mut host = None;
        let mut content_length = None;
        let mut transfer_encoding = None;
        let mut close = false;
        let mut keep_alive = false;
        let mut upgrade_named = false;
        self.expect_continue = false;
        self.upgrade_offer.clear();
        for (name, value) in &self.headers {
            let name = &self.raw[name.clone()];
            let value_range = value.clone();
            let value = &self.raw[value.clone()];
            if name.eq_ignore_ascii_case(b"host") {
                if host.is_some() {
                    return Err(HeadError::Framing("more than one Host field"));
                }
                host = Some(value_range);
            } else if name.eq_ignore_ascii_case(b"content-length") {
                content_length = Some(merge_content_length(content_length, value)?);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // One line only: `identity` on one and `chunked` on the
                // next is read differently by different servers.
                if transfer_encoding.is_some() {
                    return Err(HeadError::Framing(
                        "Transfer-Encoding on more than one line",
                    ));
                }
                transfer_encoding = Some(transfer_codings(value)?);
            } else if name.eq_ignore_ascii_case(b"connection") {
                for option in tokens(value) {
                    close |= option.eq_ignore_ascii_case(b"close");
                    keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
                    upgrade_named |= option.eq_ignore_ascii_case(b"upgrade");
                }
            } else if name.eq_ignore_ascii_case(b"upgrade") {
                for protocol in tokens(value) {
                    if upgrade_allowed(protocol, &policy.upgrades) {
                        if !self.upgrade_offer.is_empty() {
                            self.upgrade_offer.extend_from_slice(b", ");
                        }
                        self.upgrade_offer.extend_from_slice(protocol);
                    }
                }
            } else if name.eq_ignore_ascii_case(b"expect") {
                self.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
            }
        }
        self.framing = match (transfer_encoding, content_length) {
            (Some(_), Some(_)) => {
                return Err(HeadError::Framing(
                    "both Content-Length and Transfer-Encoding",
                ));
            }
            (Some(_), None) if self.minor_version == 0 => {
                return Err(HeadError::Framing(
                    "Transfer-Encoding in an HTTP/1.0 request",
                ));
            }
            (Some(false), None) => {
                return Err(HeadError::Framing(
                    "the last transfer coding is not chunked",
                ));
            }
            (Some(true), None) => Framing::Chunked,
            (None, Some(length)) => Framing::Length(length),
            (None, None) => Framing::Empty,
        };
        self.keep_alive = if self.minor_version == 0 {
            keep_alive && !close
        } else {
            !close
        };
        // RFC 9110 §7.8: Upgrade is HTTP/1.1 only; a body would have to
        // reach the backend before the switch, so those stay plain HTTP.
        self.upgrade = upgrade_named
            && !self.upgrade_offer.is_empty()
            && self.minor_version == 1
            && self.framing == Framing::Empty;
        if host.is_none() && self.minor_version == 1 {
            return Err(HeadError::Framing("HTTP/1.1 request without Host"));
        }
        if let Some(host) = &host
            && !target::is_valid_authority(&self.raw[host.clone()])
        {
            return Err(HeadError::Framing("invalid Host"));
        }
        self.host_value = host;
        Ok(())
    }

    /// Tells the target's form and normalizes it into `target`; an
    /// absolute-form target's authority becomes the host.
    fn read_target(&mut self, normalization: &PathNormalization) -> Result<(), HeadError> {
        let raw_target = &self.raw[self.raw_target.clone()];
        let method = &self.raw[self.method.clone()];
        let origin = match target::form(method, raw_target).map_err(HeadError::Target)? {
            Form::Asterisk => {
                self.target.clear();
                self.target.push(b'*');
                self.path_end = 1;
                self.absolute = false;
                self.set_host();
                return Ok(());
            }
            Form::Origin(origin) => {
                self.absolute = false;
                origin
            }
            Form::Absolute { authority, origin } => {
                let base = self.raw.as_ptr() as usize;
                let start = authority.as_ptr() as usize - base;
                self.host_value = Some(start..start + authority.len());
                self.absolute = true;
                origin
            }
        };
        let mut target = std::mem::take(&mut self.target);
        let normalized = if origin.is_empty() || origin.first() == Some(&b'?') {
            // `http://host` and `http://host?q` have the path "/".
            let mut rooted = Vec::with_capacity(origin.len() + 1);
            rooted.push(b'/');
            rooted.extend_from_slice(origin);
            target::normalize(&rooted, normalization, &mut self.scratch, &mut target)
        } else {
            target::normalize(origin, normalization, &mut self.scratch, &mut target)
        };
        self.target = target;
        normalized.map_err(HeadError::Target)?;
        if std::str::from_utf8(&self.target).is_err() {
            // Only when normalization is off: Lua must see the bytes the
            // backend gets, and Lua's view is text.
            return Err(HeadError::Framing("a request target that is not UTF-8"));
        }
        self.path_end = self
            .target
            .iter()
            .position(|&byte| byte == b'?')
            .unwrap_or(self.target.len());
        self.set_host();
        Ok(())
    }

    /// `host`: the forwarded host, lower-cased and without its port.
    fn set_host(&mut self) {
        let authority = match &self.host_value {
            Some(range) => &self.raw[range.clone()],
            None => b"",
        };
        self.host.clear();
        // Checked by `is_valid_authority`: ASCII.
        self.host.push_str(str_of(strip_port(authority)));
        self.host.make_ascii_lowercase();
    }

    pub fn method(&self) -> &str {
        str_of(&self.raw[self.method.clone()])
    }

    pub fn is_head(&self) -> bool {
        self.method() == "HEAD"
    }

    /// The target rsp routes on and forwards: normalized origin-form (or `*`).
    pub fn target(&self) -> &str {
        str_of(&self.target)
    }

    /// The request target exactly as the client sent it (for logs only:
    /// rules on it can be bypassed).
    pub fn raw_target(&self) -> &[u8] {
        &self.raw[self.raw_target.clone()]
    }

    /// The path of the target, without the query.
    pub fn path(&self) -> &str {
        str_of(&self.target[..self.path_end])
    }

    pub fn query(&self) -> Option<&str> {
        self.target
            .get(self.path_end + 1..)
            .filter(|_| self.path_end < self.target.len())
            .map(str_of)
    }

    /// The Host, lower-cased and without its port; "" when there is none.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The Host field rsp forwards, as the client wrote it (or the
    /// authority of its absolute-form target).
    pub fn host_value(&self) -> Option<&[u8]> {
        self.host_value.clone().map(|range| &self.raw[range])
    }

    /// The protocols an upgrade request may switch to, comma-separated.
    pub fn upgrade_offer(&self) -> &[u8] {
        &self.upgrade_offer
    }

    pub fn version(&self) -> &'static str {
        if self.minor_version == 0 {
            "1.0"
        } else {
            "1.1"
        }
    }

    /// The first field called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(field, _)| self.raw[field.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| &self.raw[value.clone()])
    }

    /// Writes the head to send to a backend: the normalized target, the
    /// host `route()` saw, hop-by-hop fields dropped, forwarding fields
    /// written as `forwarding` says (a trusted peer's are kept and
    /// extended, anyone else's replaced), and the request id.
    pub fn write_forwarded(
        &self,
        out: &mut Vec<u8>,
        client: IpAddr,
        forwarding: &Forwarding,
        request_id: Option<&str>,
        keep_backend: bool,
        https: bool,
    ) {
        out.extend_from_slice(&self.raw[self.method.clone()]);
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.extend_from_slice(if self.minor_version == 0 {
            b" HTTP/1.0\r\n"
        } else {
            b" HTTP/1.1\r\n"
        });
        let host = self.host_value();
        if self.absolute
            && let Some(host) = host
        {
            // RFC 9112 §3.2.2: the target's authority is the host.
            write_field(out, b"Host", host);
        }
        let trusted = forwarding.trusts(client);
        let fields = self.fields();
        let options = connection_options(fields.clone());
        let mut kept_proto = false;
        let mut kept_host = false;
        for (name, value) in fields.clone() {
            if name.eq_ignore_ascii_case(b"x-request-id")
                || (self.absolute && name.eq_ignore_ascii_case(b"host"))
                || is_hop_by_hop(name, options.clone())
            {
                continue;
            }
            let merged = match forwarding_field(name) {
                None => false,
                Some(_) if !trusted => continue,
                Some(Field::For) => forwarding.x_forwarded_for,
                Some(Field::Forwarded) => forwarding.forwarded,
                Some(Field::Proto) => {
                    kept_proto = true;
                    false
                }
                Some(Field::Host) => {
                    kept_host = true;
                    false
                }
            };
            if !merged {
                write_field(out, name, value);
            }
        }
        let client = client.to_canonical();
        if forwarding.x_forwarded_for {
            out.extend_from_slice(b"X-Forwarded-For: ");
            self.write_earlier(out, trusted, Field::For);
            let _ = write!(out, "{client}\r\n");
        }
        let proto = if https { "https" } else { "http" };
        if forwarding.x_forwarded_proto && !kept_proto {
            let _ = write!(out, "X-Forwarded-Proto: {proto}\r\n");
        }
        if forwarding.x_forwarded_host
            && !kept_host
            && let Some(host) = host
        {
            write_field(out, b"X-Forwarded-Host", host);
        }
        if forwarding.forwarded {
            out.extend_from_slice(b"Forwarded: ");
            self.write_earlier(out, trusted, Field::Forwarded);
            match client {
                IpAddr::V4(v4) => {
                    let _ = write!(out, "for={v4}");
                }
                IpAddr::V6(v6) => {
                    let _ = write!(out, "for=\"[{v6}]\"");
                }
            }
            if let Some(host) = host {
                // A valid authority holds no quote or backslash.
                out.extend_from_slice(b";host=\"");
                out.extend_from_slice(host);
                out.push(b'"');
            }
            let _ = write!(out, ";proto={proto}\r\n");
        }
        if let Some(id) = request_id {
            let _ = write!(out, "X-Request-Id: {id}\r\n");
        }
        if self.upgrade {
            // The one hop-by-hop field that must reach the backend, with
            // only the protocols the policy allows.
            write_field(out, b"Upgrade", &self.upgrade_offer);
            out.extend_from_slice(b"Connection: upgrade\r\n\r\n");
            return;
        }
        // HTTP/1.1 persists by default; 1.0 must ask.
        out.extend_from_slice(match (keep_backend, self.minor_version) {
            (false, _) => b"Connection: close\r\n\r\n".as_slice(),
            (true, 0) => b"Connection: keep-alive\r\n\r\n",
            (true, _) => b"\r\n",
        });
    }

    /// A trusted peer's values of a list field, each followed by ", ".
    fn write_earlier(&self, out: &mut Vec<u8>, trusted: bool, wanted: Field) {
        if !trusted {
            return;
        }
        for (name, value) in self.fields() {
            if forwarding_field(name) == Some(wanted) {
                out.extend_from_slice(value);
                out.extend_from_slice(b", ");
            }
        }
    }

    /// The client's `X-Request-Id`, when it is one rsp may keep.
    pub fn request_id(&self) -> Option<&str> {
        self.fields()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"x-request-id"))
            .map(|(_, value)| value)
            .find(|value| request_id::is_valid(value))
            .map(str_of)
    }

    fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.headers
            .iter()
            .map(|(name, value)| (&self.raw[name.clone()], &self.raw[value.clone()]))
    }
}

/// A protocol of a client's `Upgrade` that `allowed` lists (by its name,
/// with or without a version), and never `h2c`.
fn upgrade_allowed(protocol: &[u8], allowed: &[String]) -> bool {
    let name = protocol
        .split(|&byte| byte == b'/')
        .next()
        .unwrap_or(protocol);
    !name.eq_ignore_ascii_case(NEVER_UPGRADED.as_bytes())
        && allowed.iter().any(|allowed| {
            protocol.eq_ignore_ascii_case(allowed.as_bytes())
                || name.eq_ignore_ascii_case(allowed.as_bytes())
        })
}

/// A request's `Transfer-Encoding` value: true when its last coding is
/// chunked. Chunked anywhere else, an empty value, or a coding that is no
/// token is refused.
fn transfer_codings(value: &[u8]) -> Result<bool, HeadError> {
    let mut chunked_last = None;
    for coding in value.split(|&byte| byte == b',').map(<[u8]>::trim_ascii) {
        if chunked_last == Some(true) {
            return Err(HeadError::Framing(
                "chunked is not the last transfer coding",
            ));
        }
        if coding.is_empty() || !coding.iter().all(|&byte| is_token_char(byte)) {
            return Err(HeadError::Framing("an empty or invalid transfer coding"));
        }
        chunked_last = Some(coding.eq_ignore_ascii_case(b"chunked"));
    }
    chunked_last.ok_or(HeadError::Framing("an empty Transfer-Encoding"))
}

fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// What the client side of an exchange needs in order to shape a response.
#[derive(Debug, Clone, Copy)]
pub struct ClientSide {
    pub head_request: bool,
    pub minor_version: u8,
    pub keep_alive: bool,
    /// The request asked to switch protocols: a 101 may answer it.
    pub upgrade: bool,
}

/// A response head that was parsed and written for the client.
#[derive(Debug, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Bytes of the backend's head, to be consumed.
    pub head_length: usize,
    pub status: u16,
    pub framing: Framing,
    /// The client connection stays open after this response.
    pub keep_alive: bool,
    /// The backend keeps its connection open after this response.
    pub backend_keep_alive: bool,
}

impl ResponseInfo {
    /// 1xx heads other than 101: another head follows.
    pub fn is_interim(&self) -> bool {
        self.status < 200 && !self.is_switch()
    }

    /// The backend switched protocols: the connection becomes a tunnel.
    pub fn is_switch(&self) -> bool {
        self.status == 101
    }
}

/// Interim (1xx) responses passed on for one request; a backend sending
/// more is broken or hostile (nginx forwards only 103s and bounds their
/// size; HAProxy forwards every 1xx, bounded by its buffer).
pub const MAX_INTERIM_RESPONSES: u8 = 10;

/// Parses a response head at the start of `buffer` and appends the head to
/// send to the client to `out` (nothing for an interim response the client
/// cannot take). `upgrade_offer` is what the request offered to switch to.
/// `Ok(None)` means more bytes are needed.
pub fn forward_response_head(
    buffer: &[u8],
    client: ClientSide,
    upgrade_offer: &[u8],
    request_id: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseInfo>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let head_length = match response.parse(buffer) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(error) => return Err(HeadError::Malformed(error)),
    };
    let status = response.code.unwrap_or(0);
    if !(100..=599).contains(&status) {
        return Err(HeadError::Framing("a status outside 100-599"));
    }
    let reason = response.reason.unwrap_or("");
    let fields = response
        .headers
        .iter()
        .map(|field| (field.name.as_bytes(), field.value));
    let options = connection_options(fields.clone());
    let info = |framing, keep_alive, backend_keep_alive| {
        Ok(Some(ResponseInfo {
            head_length,
            status,
            framing,
            keep_alive,
            backend_keep_alive,
        }))
    };

    if status == 101 {
        check_switch(client, upgrade_offer, fields.clone())?;
        write_status_line(out, status, reason);
        for (name, value) in fields.clone() {
            let replaced_id = request_id.is_some() && name.eq_ignore_ascii_case(b"x-request-id");
            let kept = name.eq_ignore_ascii_case(b"upgrade")
                || (!replaced_id && !is_framing(name) && !is_hop_by_hop(name, options.clone()));
            if kept {
                write_field(out, name, value);
            }
        }
        if let Some(id) = request_id {
            write_field(out, b"X-Request-Id", id.as_bytes());
        }
        out.extend_from_slice(b"Connection: upgrade\r\n\r\n");
        return info(Framing::Empty, false, false);
    }
    if status < 200 {
        // Interim responses (100 Continue, 103 Early Hints) mean nothing to
        // an HTTP/1.0 client, and never have a body to frame.
        if client.minor_version == 1 {
            write_status_line(out, status, reason);
            for (name, value) in fields.clone() {
                if !is_framing(name) && !is_hop_by_hop(name, options.clone()) {
                    write_field(out, name, value);
                }
            }
            out.extend_from_slice(b"\r\n");
        }
        return info(Framing::Empty, client.keep_alive, false);
    }

    let mut content_length = None;
    let mut transfer_encoding = false;
    let mut chunked_last = false;
    let mut backend_close = false;
    let mut backend_keep = false;
    for (name, value) in fields.clone() {
        if name.eq_ignore_ascii_case(b"connection") {
            for option in tokens(value) {
                backend_close |= option.eq_ignore_ascii_case(b"close");
                backend_keep |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = Some(merge_content_length(content_length, value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if tokens(value).next().is_none() {
                return Err(HeadError::Framing("an empty Transfer-Encoding"));
            }
            for coding in tokens(value) {
                chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                transfer_encoding = true;
            }
        }
    }
    let bodiless_status = status == 204 || status == 304;
    let framing = if client.head_request || bodiless_status {
        Framing::Empty
    } else if transfer_encoding && chunked_last {
        if client.minor_version == 0 {
            return Err(HeadError::Framing(
                "chunked response to an HTTP/1.0 request",
            ));
        }
        Framing::Chunked
    } else if transfer_encoding {
        Framing::UntilClose
    } else if let Some(length) = content_length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    let keep_alive = client.keep_alive && framing != Framing::UntilClose;
    let persistent = response.version == Some(1) || backend_keep;
    // Both Content-Length and Transfer-Encoding: RFC 9112 §6.3 has
    // Transfer-Encoding win, but such a backend's connection is not trusted
    // to frame a later response.
    let ambiguous = transfer_encoding && content_length.is_some();
    let backend_keep_alive =
        persistent && !backend_close && !ambiguous && framing != Framing::UntilClose;

    write_status_line(out, status, reason);
    for (name, value) in fields.clone() {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3): never
        // pass on both; 204 and 304 answers pass on neither.
        let dropped_length =
            (transfer_encoding || bodiless_status) && name.eq_ignore_ascii_case(b"content-length");
        let dropped_coding = bodiless_status && name.eq_ignore_ascii_case(b"transfer-encoding");
        // The client hears the id rsp logged, not one the backend made up.
        let replaced_id = request_id.is_some() && name.eq_ignore_ascii_case(b"x-request-id");
        if !dropped_length
            && !dropped_coding
            && !replaced_id
            && !is_hop_by_hop(name, options.clone())
        {
            write_field(out, name, value);
        }
    }
    if let Some(id) = request_id {
        write_field(out, b"X-Request-Id", id.as_bytes());
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if client.minor_version == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    info(framing, keep_alive, backend_keep_alive)
}

/// A 101 is taken only as the answer to an upgrade request, switching to
/// protocols the request offered (RFC 9110 §7.8, §15.2.2): otherwise a
/// backend could turn the connection into a tunnel no later request of
/// which meets `route()`.
fn check_switch<'a>(
    client: ClientSide,
    upgrade_offer: &[u8],
    mut fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), HeadError> {
    if !client.upgrade {
        return Err(HeadError::Switch(
            "101 Switching Protocols to a request that asked for no upgrade",
        ));
    }
    let chosen = fields.find(|(name, _)| name.eq_ignore_ascii_case(b"upgrade"));
    let offered =
        |protocol: &[u8]| tokens(upgrade_offer).any(|offer| offer.eq_ignore_ascii_case(protocol));
    match chosen {
        Some((_, protocols)) if tokens(protocols).next().is_some() => {
            if tokens(protocols).all(offered) {
                Ok(())
            } else {
                Err(HeadError::Switch(
                    "101 Switching Protocols to a protocol the request did not offer",
                ))
            }
        }
        _ => Err(HeadError::Switch(
            "101 Switching Protocols without an Upgrade field",
        )),
    }
}

/// Fields that frame a body, which a bodiless message must not carry on.
fn is_framing(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding")
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `HTTP/1.1 200 OK`, without the formatting machinery: this runs for
/// every response.
fn write_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    if (100..1000).contains(&status) {
        let digits = [status / 100, status / 10 % 10, status % 10];
        out.extend(digits.iter().map(|&digit| b'0' + digit as u8));
    } else {
        let _ = write!(out, "{status}");
    }
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The fields of a head, kept for `is_hop_by_hop` only when one of its
/// `Connection` fields names a field beyond the standard hop-by-hop ones,
/// so that the usual head costs one scan, not one per field.
fn connection_options<'a, I>(fields: I) -> Option<I>
where
    I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
{
    let names_fields = fields.clone().any(|(field, value)| {
        field.eq_ignore_ascii_case(b"connection")
            && tokens(value).any(|option| {
                !HOP_BY_HOP
                    .iter()
                    .any(|hop| option.eq_ignore_ascii_case(hop.as_bytes()))
            })
    });
    names_fields.then_some(fields)
}

/// True when `name` describes only this connection: a standard hop-by-hop
/// field or one that a `Connection` field of the same head names
/// (`options`, from `connection_options`).
fn is_hop_by_hop<'a>(
    name: &[u8],
    options: Option<impl Iterator<Item = (&'a [u8], &'a [u8])>>,
) -> bool {
    if HOP_BY_HOP
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop.as_bytes()))
    {
        return true;
    }
    let Some(mut fields) = options else {
        return false;
    };
    if NEVER_DROPPED
        .iter()
        .any(|kept| name.eq_ignore_ascii_case(kept.as_bytes()))
    {
        return false;
    }
    fields.any(|(field, value)| {
        field.eq_ignore_ascii_case(b"connection")
            && tokens(value).any(|option| option.eq_ignore_ascii_case(name))
    })
}

/// The comma-separated, trimmed, non-empty elements of a field value.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&byte| byte == b',')
        .map(|token| token.trim_ascii())
        .filter(|token| !token.is_empty())
}

/// Content-Length must be plain decimal digits, and every occurrence the
/// same (RFC 9112 §6.3).
fn merge_content_length(earlier: Option<u64>, value: &[u8]) -> Result<u64, HeadError> {
    let mut length = earlier;
    for element in value.split(|&byte| byte == b',') {
        let element = element.trim_ascii();
        let valid =
            !element.is_empty() && element.len() <= 18 && element.iter().all(u8::is_ascii_digit);
        if !valid {
            return Err(HeadError::Framing("invalid Content-Length"));
        }
        let parsed = element
            .iter()
            .fold(0u64, |sum, digit| sum * 10 + u64::from(digit - b'0'));
        if length.is_some_and(|length| length != parsed) {
            return Err(HeadError::Framing("conflicting Content-Length values"));
        }
        length = Some(parsed);
    }
    length.ok_or(HeadError::Framing("invalid Content-Length"))
}

fn strip_port(authority: &[u8]) -> &[u8] {
    if authority.starts_with(b"[") {
        let end = authority
            .iter()
            .position(|&byte| byte == b']')
            .map_or(authority.len(), |at| at + 1);
        return &authority[..end];
    }
    match authority.iter().position(|&byte| byte == b':') {
        Some(colon) => &authority[..colon],
        None => authority,
    }
}

/// httparse has already checked that methods and targets are visible ASCII.
fn str_of(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<RequestHead, HeadError> {
        let mut head = RequestHead::default();
        let length = head
            .parse(raw.as_bytes(), &RequestPolicy::default())?
            .expect("complete head");
        assert_eq!(length, raw.find("\r\n\r\n").unwrap() + 4);
        Ok(head)
    }

    fn forwarded_by(raw: &str, forwarding: &Forwarding, request_id: Option<&str>) -> String {
        let head = parse(raw).unwrap();
        let mut out = Vec::new();
        head.write_forwarded(
            &mut out,
            "10.1.2.3".parse().unwrap(),
            forwarding,
            request_id,
            false,
            false,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn backend_connections_are_asked_to_persist() {
        let keep = |raw: &str| {
            let mut out = Vec::new();
            let client = "10.1.2.3".parse().unwrap();
            parse(raw).unwrap().write_forwarded(
                &mut out,
                client,
                &Forwarding::default(),
                None,
                true,
                true,
            );
            String::from_utf8(out).unwrap()
        };
        let out = keep("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert!(!out.contains("Connection"), "{out}");
        assert!(out.contains("\r\nX-Forwarded-Proto: https\r\n"), "{out}");
        let out = keep("GET / HTTP/1.0\r\nHost: a\r\n\r\n");
        assert!(out.ends_with("\r\nConnection: keep-alive\r\n\r\n"), "{out}");
    }

    fn trusting(forwarding: Forwarding) -> Forwarding {
        Forwarding {
            trusted: vec![crate::forwarding::Network::parse("10.0.0.0/8").unwrap()],
            ..forwarding
        }
    }

    fn forwarded(raw: &str) -> String {
        forwarded_by(raw, &trusting(Forwarding::default()), None)
    }

    #[test]
    fn request_fields_for_routing() {
        let head = parse(
            "GET /a/b?x=1&y HTTP/1.1\r\nHost: IronHand.Example.com:8080\r\nX-Thing: v\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.method(), "GET");
        assert_eq!(head.target(), "/a/b?x=1&y");
        assert_eq!(head.path(), "/a/b");
        assert_eq!(head.query(), Some("x=1&y"));
        assert_eq!(head.host(), "ironhand.example.com");
        assert_eq!(head.version(), "1.1");
        assert_eq!(head.header("x-THING"), Some(&b"v"[..]));
        assert_eq!(head.header("missing"), None);
        assert!(head.keep_alive);
        assert_eq!(head.framing, Framing::Empty);
    }

    #[test]
    fn absolute_form_and_ipv6_hosts() {
        let head = parse("GET http://Example.ORG:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
        assert_eq!(head.host(), "example.org");
        assert_eq!(head.path(), "/p");
        let head = parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").unwrap();
        assert_eq!(head.host(), "[::1]");
        let head = parse("GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(head.host(), "");
    }

    #[test]
    fn persistence_by_version_and_connection() {
        assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn request_framing() {
        let head = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(head.framing, Framing::Length(12));
        let head = parse(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12, 12\r\nContent-Length: 12\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.framing, Framing::Length(12));
        let head = parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n")
            .unwrap();
        assert_eq!(head.framing, Framing::Chunked);
    }

    #[test]
    fn ambiguous_requests_are_refused() {
        let refused = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
        ];
        for raw in refused {
            assert!(
                matches!(parse(raw), Err(HeadError::Framing(_))),
                "accepted {raw:?}"
            );
        }
        let malformed = [
            "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nFolded: x\r\n y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nBad\0Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nName: x\0y\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nName: x\ry\r\n\r\n",
        ];
        for raw in malformed {
            let mut head = RequestHead::default();
            assert!(
                head.parse(raw.as_bytes(), &RequestPolicy::default())
                    .is_err(),
                "accepted {raw:?}"
            );
        }
    }

    #[test]
    fn too_many_fields() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for index in 0..MAX_HEADERS {
            raw.push_str(&format!("X-{index}: v\r\n"));
        }
        raw.push_str("\r\n");
        let mut head = RequestHead::default();
        assert_eq!(
            head.parse(raw.as_bytes(), &RequestPolicy::default()),
            Err(HeadError::TooManyHeaders)
        );
    }

    #[test]
    fn partial_head_needs_more() {
        let mut head = RequestHead::default();
        assert_eq!(
            head.parse(b"GET / HTTP/1.1\r\nHost: a\r\n", &RequestPolicy::default()),
            Ok(None)
        );
    }

    #[test]
    fn forwarded_head_drops_hop_by_hop_and_adds_forwarding_fields() {
        let out = forwarded(
            "GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, Content-Length\r\nKeep-Alive: 5\r\n\
             X-Secret: s\r\nTE: trailers\r\nUpgrade: foo\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\
             X-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
        );
        assert_eq!(
            out,
            "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\
             X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.1.2.3\r\nX-Forwarded-Host: a\r\nConnection: close\r\n\r\n"
        );
        let out = forwarded(
            "POST /y HTTP/1.0\r\nContent-Length: 3\r\nConnection: content-length\r\n\r\n",
        );
        assert!(
            out.starts_with(
                "POST /y HTTP/1.0\r\nContent-Length: 3\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn untrusted_forwarding_fields_are_replaced() {
        let raw = "GET / HTTP/1.1\r\nHost: shop.example:8080\r\nX-Forwarded-For: 6.6.6.6\r\n\
                   X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\n\
                   X-Request-Id: mine\r\n\r\n";
        let everything = Forwarding {
            forwarded: true,
            ..Forwarding::default()
        };
        assert_eq!(
            forwarded_by(raw, &everything, Some("abc")),
            "GET / HTTP/1.1\r\nHost: shop.example:8080\r\nX-Forwarded-For: 10.1.2.3\r\n\
             X-Forwarded-Proto: http\r\nX-Forwarded-Host: shop.example:8080\r\n\
             Forwarded: for=10.1.2.3;host=\"shop.example:8080\";proto=http\r\nX-Request-Id: abc\r\n\
             Connection: close\r\n\r\n"
        );
        // Trusted: kept, and the list fields extended.
        let out = forwarded_by(raw, &trusting(everything.clone()), Some("abc"));
        assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
        assert!(out.contains("X-Forwarded-Host: evil\r\n"), "{out}");
        assert!(
            out.contains("X-Forwarded-For: 6.6.6.6, 10.1.2.3\r\n"),
            "{out}"
        );
        assert!(
            out.contains("Forwarded: for=6.6.6.6, for=10.1.2.3;host="),
            "{out}"
        );
        assert_eq!(out.matches("X-Request-Id").count(), 1, "{out}");
        // Every field switched off: nothing added, an untrusted client's dropped.
        let none = Forwarding {
            x_forwarded_for: false,
            x_forwarded_proto: false,
            x_forwarded_host: false,
            forwarded: false,
            trusted: Vec::new(),
        };
        assert_eq!(
            forwarded_by(raw, &none, None),
            "GET / HTTP/1.1\r\nHost: shop.example:8080\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn client_request_ids_are_kept_only_when_valid() {
        let head = parse(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: bad id\r\nX-Request-Id: good-1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.request_id(), Some("good-1"));
        let head = parse("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: \r\n\r\n").unwrap();
        assert_eq!(head.request_id(), None);
    }

    const KEEP_11: ClientSide = ClientSide {
        head_request: false,
        minor_version: 1,
        keep_alive: true,
        upgrade: false,
    };

    fn response(
        raw: &str,
        client: ClientSide,
    ) -> (Result<Option<ResponseInfo>, HeadError>, String) {
        let mut out = Vec::new();
        let info = forward_response_head(raw.as_bytes(), client, b"websocket", None, &mut out);
        (info, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_fields_named_by_connection_are_dropped() {
        let (info, out) = response(
            "HTTP/1.1 404 Not Found\r\nConnection: X-Internal, keep-alive\r\nX-Internal: 1\r\n\
             Keep-Alive: timeout=5\r\nContent-Length: 0\r\nX-Public: 2\r\n\r\n",
            KEEP_11,
        );
        assert!(info.unwrap().unwrap().backend_keep_alive);
        assert_eq!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-Public: 2\r\n\r\n"
        );
        // Without a Connection field naming one, every end-to-end field stays.
        let (_, out) = response(
            "HTTP/1.1 599 Odd\r\nX-Internal: 1\r\nContent-Length: 0\r\n\r\n",
            KEEP_11,
        );
        assert_eq!(
            out,
            "HTTP/1.1 599 Odd\r\nX-Internal: 1\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn response_framing_and_persistence() {
        let (info, out) = response(
            "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            KEEP_11,
        );
        let info = info.unwrap().unwrap();
        assert_eq!(info.framing, Framing::Length(5));
        assert!(info.keep_alive);
        assert!(!info.backend_keep_alive);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        let persists = |raw: &str| {
            response(raw, KEEP_11)
                .0
                .unwrap()
                .unwrap()
                .backend_keep_alive
        };
        assert!(persists("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(persists(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(persists(
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n"
        ));
        assert!(!persists("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!persists(
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ));
        assert!(!persists("HTTP/1.1 200 OK\r\n\r\n"));

        let (info, out) = response("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", KEEP_11);
        let info = info.unwrap().unwrap();
        assert_eq!(info.framing, Framing::UntilClose);
        assert!(!info.keep_alive);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: x\r\nConnection: close\r\n\r\n"
        );

        let (info, out) = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
            KEEP_11,
        );
        assert_eq!(info.unwrap().unwrap().framing, Framing::Chunked);
        assert_eq!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");

        let client_10 = ClientSide {
            minor_version: 0,
            ..KEEP_11
        };
        let (_, out) = response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", client_10);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        );
        let (info, _) = response(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            client_10,
        );
        assert!(info.is_err());
    }

    #[test]
    fn responses_without_bodies() {
        for raw in [
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
        ] {
            let info = response(raw, KEEP_11).0.unwrap().unwrap();
            assert_eq!(info.framing, Framing::Empty, "{raw}");
            assert!(info.keep_alive);
        }
        let head = ClientSide {
            head_request: true,
            ..KEEP_11
        };
        let info = response("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", head)
            .0
            .unwrap()
            .unwrap();
        assert_eq!(info.framing, Framing::Empty);
    }

    #[test]
    fn interim_responses() {
        let (info, out) = response("HTTP/1.1 100 Continue\r\n\r\n", KEEP_11);
        assert!(info.unwrap().unwrap().is_interim());
        assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
        let client_10 = ClientSide {
            minor_version: 0,
            ..KEEP_11
        };
        let (info, out) = response("HTTP/1.1 100 Continue\r\n\r\n", client_10);
        assert!(info.unwrap().unwrap().is_interim());
        assert_eq!(out, "");
    }

    #[test]
    fn upgrade_requests_and_switches() {
        let raw = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\
                   Upgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let head = parse(raw).unwrap();
        assert!(head.upgrade);
        let mut out = Vec::new();
        let client = "10.1.2.3".parse().unwrap();
        head.write_forwarded(&mut out, client, &Forwarding::default(), None, true, false);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("\r\nSec-WebSocket-Key: k\r\n"), "{out}");
        assert!(
            out.ends_with("\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
            "{out}"
        );
        // Not an upgrade: no Connection token, HTTP/1.0, or a body.
        for raw in [
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
            "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 1\r\n\r\n",
        ] {
            assert!(!parse(raw).unwrap().upgrade, "{raw}");
        }
        let upgrading = ClientSide {
            upgrade: true,
            ..KEEP_11
        };
        let (info, out) = response(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: a\r\n\r\n",
            upgrading,
        );
        let info = info.unwrap().unwrap();
        assert!(info.is_switch() && !info.is_interim());
        assert_eq!(
            out,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\n\
             Connection: upgrade\r\n\r\n"
        );
        // A plain answer to an upgrade request stays HTTP.
        let (info, _) = response(
            "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n",
            upgrading,
        );
        assert!(!info.unwrap().unwrap().is_switch());
    }

    #[test]
    fn bad_responses() {
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
            // A switch nobody asked for.
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(response(raw, KEEP_11).0.is_err(), "{raw}");
        }
        assert_eq!(response("HTTP/1.1 200 OK\r\nA: b\r\n", KEEP_11).0, Ok(None));
    }
}
