//! Request heads: parsing (target forms, normalization, framing, the
//! upgrade offer) and the head rsp forwards to a backend.

use std::ops::Range;

mod forward;
mod h2;

use forward::forwarding_field;
pub use h2::RequestParts;

use crate::framing::Framing;
use crate::host;
use crate::memory::Tracked;
use crate::request_id;
use crate::target::{self, Form, PathNormalization, Scratch};

use super::{
    HOP_BY_HOP, HeadError, MAX_HEADERS, NEVER_DROPPED, is_token_char, merge_content_length, str_of,
    tokens,
};

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

/// One field of a head: ranges of `RequestHead::raw`.
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) name: Range<usize>,
    pub(super) value: Range<usize>,
    /// Written by `route()`: forwarded even when the client's `Connection`
    /// names it.
    pub(super) added: bool,
}

/// A parsed request head, owning a copy of its bytes so the client buffer
/// can move on (to the body, or the next pipelined request).
#[derive(Default)]
pub struct RequestHead {
    pub(super) raw: Vec<u8>,
    method: Range<usize>,
    /// The target as the client sent it.
    raw_target: Range<usize>,
    /// The target rsp routes on and forwards: origin-form, normalized (or
    /// `*`). Always ASCII.
    pub(super) target: Vec<u8>,
    /// Where the path ends in `target` (at the `?`, or its end).
    pub(super) path_end: usize,
    /// The Host forwarded, in its canonical spelling (`host.rs`): an
    /// absolute-form target's authority, else the client's Host field,
    /// or what `route()` set. rsp always writes it itself, first; the
    /// client's Host field is not among `headers`.
    pub(super) host_field: Vec<u8>,
    /// The request has a host (only an HTTP/1.0 one may have none).
    pub(super) has_host: bool,
    /// The host the client asked for (canonical), for `X-Forwarded-Host`
    /// and `Forwarded` whatever `route()` did.
    client_host: Vec<u8>,
    client_has_host: bool,
    /// The connection came over TLS: the default port is 443, not 80.
    pub(super) https: bool,
    /// The end-to-end fields, as the client sent them but for the Host
    /// and the fields that describe only the client's connection (RFC
    /// 9110 §7.6.1), which are gone before `route()` sees the request.
    pub(super) headers: Vec<Field>,
    /// Where the host ends in `host_field` (its port follows).
    pub(super) host_end: usize,
    /// The client sent a `Via` field (looked at for loops only then).
    has_via: bool,
    /// The protocols of the client's `Upgrade` that may be switched to.
    upgrade_offer: Vec<u8>,
    scratch: Scratch,
    pub minor_version: u8,
    /// The request came over HTTP/2 (as one stream, translated to the
    /// HTTP/1.1 head this is); set by the connection, not by `parse`.
    pub http2: bool,
    pub framing: Framing,
    /// The client wants the connection kept open after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// A bodiless HTTP/1.1 request asking to switch to a protocol the
    /// policy allows (`Upgrade`, named in `Connection`), such as a
    /// WebSocket handshake.
    pub upgrade: bool,
    /// The head's storage, counted in what the worker holds.
    tracked: Tracked,
}

/// Storage a head keeps between requests: a larger one (a big head once)
/// is given back rather than held by an idle connection.
const KEPT_BETWEEN_REQUESTS: usize = 16 * 1024;

impl RequestHead {
    /// Parses a request head at the start of `buffer`, which came over
    /// TLS if `https`. `Ok(None)` means more bytes are needed;
    /// `Ok(Some(n))` means the head is the first `n`.
    pub fn parse(
        &mut self,
        buffer: &[u8],
        policy: &RequestPolicy,
        https: bool,
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
        self.start(https);
        let mut facts = FieldFacts::default();
        for field in request.headers.iter() {
            let (name, value) = (field.name.as_bytes(), field.value);
            if !admits_name(name, policy)? {
                continue;
            }
            if self.read_field(name, value, policy, &mut facts)? {
                self.headers.push(Field {
                    name: span(name),
                    value: span(value),
                    added: false,
                });
            } else if name.eq_ignore_ascii_case(b"host") {
                if facts.host.is_some() {
                    return Err(HeadError::Framing("more than one Host field"));
                }
                facts.host = Some(span(value));
            }
        }
        if facts.names_others {
            // Rare: a `Connection` naming fields beyond the standard ones.
            self.drop_named(request.headers);
        }
        self.complete(facts, policy)?;
        Ok(Some(length))
    }

    /// What a head read from any codec goes through last, once its fields
    /// are read: framing, persistence, the upgrade and the host from what
    /// they said, the target normalized, the host the client asked for
    /// kept, the storage counted.
    fn complete(&mut self, facts: FieldFacts, policy: &RequestPolicy) -> Result<(), HeadError> {
        self.examine(facts)?;
        self.read_target(&policy.path)?;
        self.client_host.clear();
        self.client_host.extend_from_slice(&self.host_field);
        self.client_has_host = self.has_host;
        if self.upgrade {
            self.show_upgrade();
        }
        self.account();
        Ok(())
    }

    /// What a head read from any codec starts from: no fields, nothing
    /// learnt of them yet.
    fn start(&mut self, https: bool) {
        self.headers.clear();
        self.https = https;
        self.expect_continue = false;
        self.upgrade_offer.clear();
        self.has_via = false;
    }

    /// Counts the head's storage in what the worker holds (after parsing,
    /// and after `route()` changed it).
    pub fn account(&mut self) {
        let bytes = self.raw.capacity()
            + self.target.capacity()
            + self.host_field.capacity()
            + self.client_host.capacity()
            + self.headers.capacity() * std::mem::size_of::<Field>();
        self.tracked.set(bytes);
    }

    /// The head's storage, in bytes.
    pub fn held(&self) -> usize {
        self.tracked.bytes()
    }

    /// The storage a large head took goes back (the connection is idle,
    /// or the head has gone on and only its parts `route()` reads are
    /// needed: never while the exchange still reads the head).
    pub fn shed(&mut self) {
        if self.raw.capacity() > KEPT_BETWEEN_REQUESTS {
            self.raw = Vec::new();
            self.headers = Vec::new();
        }
        if self.target.capacity() > KEPT_BETWEEN_REQUESTS {
            self.target = Vec::new();
        }
        self.account();
    }

    /// What one field of the head says of the host, framing, persistence,
    /// upgrade and `Expect`; whether it stays among the fields `route()`
    /// sees and the backend gets. The Host (held canonical in
    /// `host_field`) and the fields that describe only the client's
    /// connection (RFC 9110 §7.6.1: the hop-by-hop ones, and those its
    /// `Connection` names, `drop_named`) do not: the backend never gets
    /// them, so `route()` must not see them either.
    fn read_field(
        &mut self,
        name: &[u8],
        value: &[u8],
        policy: &RequestPolicy,
        facts: &mut FieldFacts,
    ) -> Result<bool, HeadError> {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        // By length first: most names are of none of these.
        let keep = match name.len() {
            2 => !is(b"te"),
            3 => {
                self.has_via |= is(b"via");
                true
            }
            4 => !is(b"host"),
            6 => {
                if is(b"expect") {
                    self.expect_continue = value.eq_ignore_ascii_case(b"100-continue");
                }
                true
            }
            7 if is(b"upgrade") => {
                for protocol in
                    tokens(value).filter(|protocol| upgrade_allowed(protocol, &policy.upgrades))
                {
                    if !self.upgrade_offer.is_empty() {
                        self.upgrade_offer.extend_from_slice(b", ");
                    }
                    self.upgrade_offer.extend_from_slice(protocol);
                }
                false
            }
            10 if is(b"connection") => {
                for option in tokens(value) {
                    let close = option.eq_ignore_ascii_case(b"close");
                    let keep_alive = option.eq_ignore_ascii_case(b"keep-alive");
                    let upgrade = option.eq_ignore_ascii_case(b"upgrade");
                    facts.close |= close;
                    facts.keep_alive |= keep_alive;
                    facts.upgrade_named |= upgrade;
                    let standard = close
                        || keep_alive
                        || upgrade
                        || HOP_BY_HOP
                            .iter()
                            .any(|hop| option.eq_ignore_ascii_case(hop.as_bytes()));
                    facts.names_others |= !standard;
                }
                false
            }
            10 => !is(b"keep-alive"),
            14 if is(b"content-length") => {
                facts.content_length = Some(merge_content_length(facts.content_length, value)?);
                true
            }
            16 => !is(b"proxy-connection"),
            17 if is(b"transfer-encoding") => {
                // One line only: `identity` on one and `chunked` on the
                // next is read differently by different servers.
                if facts.transfer_encoding.is_some() {
                    return Err(HeadError::Framing(
                        "Transfer-Encoding on more than one line",
                    ));
                }
                facts.transfer_encoding = Some(transfer_codings(value)?);
                true
            }
            _ => true,
        };
        Ok(keep)
    }

    /// Removes the fields a `Connection` field names (but those that
    /// frame or address the message: `NEVER_DROPPED`).
    fn drop_named(&mut self, fields: &[httparse::Header]) {
        let named: Vec<&[u8]> = fields
            .iter()
            .filter(|field| field.name.eq_ignore_ascii_case("connection"))
            .flat_map(|field| tokens(field.value))
            .filter(|option| {
                !NEVER_DROPPED
                    .iter()
                    .any(|kept| option.eq_ignore_ascii_case(kept.as_bytes()))
            })
            .collect();
        let raw = &self.raw;
        self.headers.retain(|field| {
            let name = &raw[field.name.clone()];
            !named.iter().any(|option| option.eq_ignore_ascii_case(name))
        });
    }

    /// Removes the forwarding fields of a client rsp does not trust
    /// (`forwarded_headers.trusted`): rsp writes its own in their place,
    /// so a rule must not decide on a value the backend never gets.
    pub fn drop_untrusted(&mut self) {
        let raw = &self.raw;
        self.headers
            .retain(|field| forwarding_field(&raw[field.name.clone()]).is_none());
    }

    /// An upgrade the policy allows is what rsp forwards of the client's
    /// connection fields, and so what `route()` sees: `Upgrade` with the
    /// allowed protocols, and `Connection: upgrade`.
    fn show_upgrade(&mut self) {
        let offer = std::mem::take(&mut self.upgrade_offer);
        for (name, value) in [(&b"Upgrade"[..], &offer[..]), (b"Connection", b"upgrade")] {
            self.push_field(name, value);
        }
        self.upgrade_offer = offer;
    }

    /// A field the client sent, kept at the end of the head's bytes.
    fn push_field(&mut self, name: &[u8], value: &[u8]) {
        let name = self.keep(name);
        let value = self.keep(value);
        self.headers.push(Field {
            name,
            value,
            added: false,
        });
    }

    /// Keeps `bytes` after the head in `raw`, where fields' ranges point.
    fn keep(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.raw.len();
        self.raw.extend_from_slice(bytes);
        start..self.raw.len()
    }

    /// Framing, persistence, the upgrade and the host, from what the
    /// fields said.
    fn examine(&mut self, facts: FieldFacts) -> Result<(), HeadError> {
        self.framing = request_framing(
            facts.transfer_encoding,
            facts.content_length,
            self.minor_version,
        )?;
        self.keep_alive = if self.minor_version == 0 {
            facts.keep_alive && !facts.close
        } else {
            !facts.close
        };
        // RFC 9110 §7.8: Upgrade is HTTP/1.1 only; a body would have to
        // reach the backend before the switch, so those stay plain HTTP.
        self.upgrade = facts.upgrade_named
            && !self.upgrade_offer.is_empty()
            && self.minor_version == 1
            && self.framing == Framing::Empty;
        if facts.host.is_none() && self.minor_version == 1 {
            return Err(HeadError::Framing("HTTP/1.1 request without Host"));
        }
        self.has_host = facts.host.is_some();
        let authority = facts.host.map_or(&[][..], |range| &self.raw[range]);
        self.host_end = host::canonical(
            authority,
            host::default_port(self.https),
            &mut self.host_field,
        )
        .map_err(HeadError::Host)?;
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
                return Ok(());
            }
            Form::Origin(origin) => origin,
            Form::Absolute {
                authority,
                origin,
                https,
            } => {
                // RFC 9112 §3.2.2: the target's authority is the host,
                // with the default port of the target's own scheme.
                let port = host::default_port(https);
                self.host_end = host::canonical(authority, port, &mut self.host_field)
                    .map_err(HeadError::Host)?;
                self.has_host = true;
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
        Ok(())
    }

    /// Where the forwarded host's port begins, for `host()`.
    pub(super) fn refresh_host(&mut self) {
        self.host_end = host::without_port(&self.host_field).len();
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

    /// The host, canonical and without its port; "" when there is none.
    pub fn host(&self) -> &str {
        // Canonical: ASCII.
        str_of(&self.host_field[..self.host_end])
    }

    /// The Host field rsp forwards: canonical `host[:port]`, from the
    /// client's Host field, its absolute-form target's authority, or
    /// what `route()` set.
    pub fn host_value(&self) -> Option<&[u8]> {
        self.has_host.then_some(&self.host_field[..])
    }

    /// The protocols an upgrade request may switch to, comma-separated.
    pub fn upgrade_offer(&self) -> &[u8] {
        &self.upgrade_offer
    }

    /// The HTTP version the client spoke, as `req.version` shows it.
    pub fn version(&self) -> &'static str {
        match (self.http2, self.minor_version) {
            (true, _) => "2",
            (false, 0) => "1.0",
            (false, _) => "1.1",
        }
    }

    /// The protocol as access logs write it: `HTTP/1.1`, `HTTP/2.0`.
    pub fn protocol(&self) -> &'static str {
        match (self.http2, self.minor_version) {
            (true, _) => "HTTP/2.0",
            (false, 0) => "HTTP/1.0",
            (false, _) => "HTTP/1.1",
        }
    }

    /// The first field called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_values(name).next()
    }

    /// Every value of the fields called `name` (any case), in the order
    /// they came. The Host is the one rsp forwards.
    pub fn header_values<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        let host = name
            .eq_ignore_ascii_case("host")
            .then(|| self.host_value())
            .flatten();
        host.into_iter().chain(
            self.fields()
                .filter(move |(field, _)| field.eq_ignore_ascii_case(name.as_bytes()))
                .map(|(_, value)| value),
        )
    }

    /// The request has passed through the proxy called `name` already: a
    /// `Via` element names it as the recipient (RFC 9110 §7.6.3). A loop.
    pub fn came_through(&self, name: &str) -> bool {
        if !self.has_via {
            return false;
        }
        self.header_values("via").flat_map(tokens).any(|element| {
            let mut words = element.split(|&byte| byte == b' ' || byte == b'\t');
            let _protocol = words.next();
            words
                .find(|word| !word.is_empty())
                .is_some_and(|received_by| received_by.eq_ignore_ascii_case(name.as_bytes()))
        })
    }

    /// The client's `X-Request-Id`, when it is one rsp may keep.
    pub fn request_id(&self) -> Option<&str> {
        self.fields()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"x-request-id"))
            .map(|(_, value)| value)
            .find(|value| request_id::is_valid(value))
            .map(str_of)
    }

    pub(super) fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        self.headers.iter().map(|field| {
            (
                &self.raw[field.name.clone()],
                &self.raw[field.value.clone()],
            )
        })
    }
}

/// Whether a field of this name is read (`policy.underscores`: a name
/// with `_` is dropped, refused, or read like any other).
fn admits_name(name: &[u8], policy: &RequestPolicy) -> Result<bool, HeadError> {
    if !name.contains(&b'_') {
        return Ok(true);
    }
    match policy.underscores {
        Underscores::Allow => Ok(true),
        Underscores::Drop => {
            log::debug!("dropped the request field {:?}", str_of(name));
            Ok(false)
        }
        Underscores::Reject => Err(HeadError::Framing("a field name with an underscore")),
    }
}

/// What the fields of a request head say, before they are weighed.
#[derive(Default)]
struct FieldFacts {
    host: Option<Range<usize>>,
    content_length: Option<u64>,
    /// Present, and whether its last coding is chunked.
    transfer_encoding: Option<bool>,
    close: bool,
    keep_alive: bool,
    upgrade_named: bool,
    /// A `Connection` field names fields beyond the standard hop-by-hop
    /// ones (which are then removed too).
    names_others: bool,
}

/// A request's framing from its `Transfer-Encoding` (whether it ends in
/// chunked) and `Content-Length`: anything ambiguous is refused.
fn request_framing(
    transfer_encoding: Option<bool>,
    content_length: Option<u64>,
    minor_version: u8,
) -> Result<Framing, HeadError> {
    match (transfer_encoding, content_length) {
        (Some(_), Some(_)) => Err(HeadError::Framing(
            "both Content-Length and Transfer-Encoding",
        )),
        (Some(_), None) if minor_version == 0 => Err(HeadError::Framing(
            "Transfer-Encoding in an HTTP/1.0 request",
        )),
        (Some(false), None) => Err(HeadError::Framing(
            "the last transfer coding is not chunked",
        )),
        (Some(true), None) => Ok(Framing::Chunked),
        (None, Some(length)) => Ok(Framing::Length(length)),
        (None, None) => Ok(Framing::Empty),
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
