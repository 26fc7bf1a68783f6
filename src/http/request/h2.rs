//! An HTTP/2 request's header list read into the request head, as an
//! HTTP/1 head is read: the same fields kept or removed, the same checks
//! and bounds, so `route()` sees exactly what an HTTP/1.1 backend gets.

use super::super::{HeadError, MAX_HEADERS};
use super::{Field, FieldFacts, RequestHead, RequestPolicy, admits_name};

/// What a request line and its Host say, as another codec (HTTP/2's
/// pseudo-header fields) gives them, checked by its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestParts<'a> {
    pub method: &'a [u8],
    /// `:path`, or a CONNECT's `:authority`.
    pub target: &'a [u8],
    /// `:authority`, else the Host field.
    pub authority: Option<&'a [u8]>,
    /// The body comes without a length (to the end of the stream): an
    /// HTTP/1.1 backend gets it chunked.
    pub unsized_body: bool,
}

impl RequestHead {
    /// Reads an HTTP/2 request: `request`, what the HTTP/2 codec checked
    /// of its pseudo-header fields and framing, and `fields`, its decoded
    /// list, as they came (pseudo-header fields and the Host, which
    /// `request` carries, are skipped; cookie crumbs are joined, as one
    /// HTTP/1.1 field must carry them). From there, everything is checked
    /// as an HTTP/1 head is: the same fields kept or removed, the same
    /// target normalization, the same canonical host, the same bounds.
    /// Returns the bytes the head takes in HTTP/1.1, for its size bound.
    pub fn read_h2<'a>(
        &mut self,
        request: &RequestParts<'_>,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
        policy: &RequestPolicy,
        https: bool,
    ) -> Result<usize, HeadError> {
        self.raw.clear();
        self.start(https);
        self.minor_version = 1;
        // As httparse takes a request line: a method of token characters,
        // a target of visible bytes that is UTF-8.
        let token = |byte: &u8| super::is_token_char(*byte);
        if request.method.is_empty() || !request.method.iter().all(token) {
            return Err(HeadError::Framing("a method that is not a token"));
        }
        if request
            .target
            .iter()
            .any(|&byte| byte < 0x21 || byte == 0x7f)
        {
            return Err(HeadError::Framing("a request target with a control byte"));
        }
        if std::str::from_utf8(request.target).is_err() {
            return Err(HeadError::Framing("a request target that is not UTF-8"));
        }
        self.method = self.keep(request.method);
        self.raw_target = self.keep(request.target);
        let mut facts = FieldFacts {
            host: request.authority.map(|authority| self.keep(authority)),
            ..FieldFacts::default()
        };
        let (bytes, cookies) = self.read_h2_fields(request, fields.clone(), policy, &mut facts)?;
        if cookies {
            self.join_cookies(fields);
        }
        if request.unsized_body {
            // DATA without a length reaches an HTTP/1.1 backend chunked.
            self.read_h2_field(b"transfer-encoding", b"chunked", policy, &mut facts)?;
        }
        // Never an upgrade: Connection and Upgrade are malformed in HTTP/2.
        self.complete(facts, policy)?;
        Ok(bytes)
    }

    /// The regular fields of an HTTP/2 request, each read as an HTTP/1
    /// one is (but the Host, which `request` carries, and cookies, joined
    /// after); returns the bytes the head takes in HTTP/1.1 and whether it
    /// had cookies.
    fn read_h2_fields<'a>(
        &mut self,
        request: &RequestParts<'_>,
        fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        policy: &RequestPolicy,
        facts: &mut FieldFacts,
    ) -> Result<(usize, bool), HeadError> {
        let mut cookies = false;
        // The lines the same request takes in HTTP/1.1, held to the same
        // bound: the Host, one line of cookies, a chunked framing; and its
        // bytes, every field counted as it came (those dropped too).
        let mut lines =
            usize::from(request.authority.is_some()) + usize::from(request.unsized_body);
        let mut bytes = request.method.len() + request.target.len() + 12 + 2;
        bytes += request.authority.map_or(0, |authority| authority.len() + 8);
        bytes += if request.unsized_body { 28 } else { 0 };
        let mut hosts = 0;
        for (name, value) in fields {
            if name.starts_with(b":") {
                continue;
            }
            if name == b"host" {
                hosts += 1;
                if hosts > 1 {
                    return Err(HeadError::Framing("more than one Host field"));
                }
                continue;
            }
            if name == b"cookie" {
                check_h2_value(value)?;
                // "cookie: " and CRLF once, "; " between crumbs.
                bytes += value.len() + if cookies { 2 } else { 10 };
                lines += usize::from(!cookies);
                cookies = true;
                continue;
            }
            bytes += name.len() + value.len() + 4;
            lines += 1;
            if lines > MAX_HEADERS {
                return Err(HeadError::TooManyHeaders);
            }
            self.read_h2_field(name, value, policy, facts)?;
        }
        if lines > MAX_HEADERS {
            return Err(HeadError::TooManyHeaders);
        }
        Ok((bytes, cookies))
    }

    /// The list's cookie crumbs as one field (§8.2.3), as an HTTP/1.1
    /// backend must get them; nothing in HTTP/1 reading looks at a cookie,
    /// so it is kept as it is.
    fn join_cookies<'a>(&mut self, fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) {
        let name = self.keep(b"cookie");
        let start = self.raw.len();
        // An empty crumb adds nothing (and would leave "; " at the end,
        // which an HTTP/1 reader trims: not what route() saw).
        let crumbs = fields.filter(|(name, value)| *name == b"cookie" && !value.is_empty());
        for (_, value) in crumbs {
            if self.raw.len() > start {
                self.raw.extend_from_slice(b"; ");
            }
            self.raw.extend_from_slice(value);
        }
        self.headers.push(Field {
            name,
            value: start..self.raw.len(),
            added: false,
        });
    }

    /// One regular field of an HTTP/2 request, read as an HTTP/1 one is.
    fn read_h2_field(
        &mut self,
        name: &[u8],
        value: &[u8],
        policy: &RequestPolicy,
        facts: &mut FieldFacts,
    ) -> Result<(), HeadError> {
        check_h2_value(value)?;
        if admits_name(name, policy)? && self.read_field(name, value, policy, facts)? {
            self.push_field(name, value);
        }
        Ok(())
    }
}

/// A value is what httparse takes in an HTTP/1 head: visible bytes,
/// spaces and tabs (the HTTP/2 codec refused NUL, CR and LF already).
fn check_h2_value(value: &[u8]) -> Result<(), HeadError> {
    if value
        .iter()
        .any(|&byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f)
    {
        return Err(HeadError::Framing("a field value with a control byte"));
    }
    Ok(())
}
