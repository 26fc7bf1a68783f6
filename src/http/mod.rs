//! HTTP/1.x heads: parsing with httparse, deciding framing and persistence,
//! and writing the head rsp forwards to the other side (RFC 9110, 9112).
//! `request` reads and rewrites request heads, `response` response heads;
//! what both need of fields is here.

mod edit;
mod request;
mod response;
mod response_head;
#[cfg(test)]
mod tests;

use std::fmt;

pub use edit::{EditError, check_response_field};
pub use request::{NEVER_UPGRADED, RequestHead, RequestParts, RequestPolicy, Underscores};
pub use response::{ClientSide, MAX_INTERIM_RESPONSES, ResponseInfo, forward_response_head};
pub use response_head::ResponseHead;

use crate::message::HeadWriter;
use crate::target::TargetError;

/// More header fields than this in one head is answered with 431.
pub const MAX_HEADERS: usize = 128;

/// Fields that describe one connection, never forwarded (RFC 9110 §7.6.1).
/// `Transfer-Encoding` is hop-by-hop too, but rsp forwards bodies with the
/// coding they arrived in, so it keeps that field with them.
pub(crate) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
];

/// Fields that frame or address the message: a `Connection` header that
/// names them must not make them vanish (request smuggling).
pub(crate) const NEVER_DROPPED: &[&str] = &["content-length", "transfer-encoding", "host"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    Malformed(httparse::Error),
    TooManyHeaders,
    Framing(&'static str),
    Target(TargetError),
    /// A Host (or target authority) with no canonical spelling.
    Host(crate::host::InvalidHost),
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
            HeadError::Host(error) => error.fmt(f),
            HeadError::Switch(why) => f.write_str(why),
        }
    }
}

/// Fields that frame a body, which a bodiless message must not carry on.
pub(crate) fn is_framing(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding")
}

pub(crate) fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Copies a head's fields to `out` that `keep` keeps, told for each
/// whether it describes only this connection (see `is_hop_by_hop`): the
/// one copy loop of requests and responses alike.
pub(crate) fn copy_fields<'a>(
    out: &mut HeadWriter,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    mut keep: impl FnMut(&[u8], bool) -> bool,
) {
    let options = connection_options(fields.clone());
    for (name, value) in fields {
        if keep(name, is_hop_by_hop(name, options.clone())) {
            out.field(name, value);
        }
    }
}

/// `copy_fields` of the end-to-end fields only, but those `skip` names.
pub(crate) fn copy_end_to_end<'a>(
    out: &mut HeadWriter,
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    mut skip: impl FnMut(&[u8]) -> bool,
) {
    copy_fields(out, fields, |name, hop_by_hop| !hop_by_hop && !skip(name));
}

/// The fields of a head, kept for `is_hop_by_hop` only when one of its
/// `Connection` fields names a field beyond the standard hop-by-hop ones,
/// so that the usual head costs one scan, not one per field.
pub(crate) fn connection_options<'a, I>(fields: I) -> Option<I>
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
pub(crate) fn is_hop_by_hop<'a>(
    name: &[u8],
    options: Option<impl Iterator<Item = (&'a [u8], &'a [u8])>>,
) -> bool {
    // By length first: most names are of none of these lengths.
    let standard = match name.len() {
        2 | 7 | 10 | 16 => HOP_BY_HOP
            .iter()
            .any(|hop| name.eq_ignore_ascii_case(hop.as_bytes())),
        _ => false,
    };
    if standard {
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
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&byte| byte == b',')
        .map(|token| token.trim_ascii())
        .filter(|token| !token.is_empty())
}

/// Content-Length must be plain decimal digits, and every occurrence the
/// same (RFC 9112 §6.3).
pub(crate) fn merge_content_length(earlier: Option<u64>, value: &[u8]) -> Result<u64, HeadError> {
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

/// httparse has already checked that methods and targets are visible ASCII.
pub(crate) fn str_of(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or("")
}

pub fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}
