//! What `route()` may change in a request head before it is forwarded:
//! fields, path, query and host. Every change keeps the head one that
//! frames and forwards as rsp parsed it: fields that frame the message,
//! describe the connection or that rsp writes itself are refused, and so
//! are bytes a head may not hold (RFC 9110 §5.5).

use std::fmt;
use std::ops::Range;

use crate::host;

use super::request::{Field, RequestHead};
use super::{HOP_BY_HOP, MAX_HEADERS, is_token_char};

/// How large a head may grow through edits: a script in a loop must not
/// grow a message without bound.
pub(super) const MAX_EDITED_HEAD: usize = 128 * 1024;

/// Request fields a script may not write, and why.
const REFUSED: &[(&str, &str)] = &[
    ("content-length", "rsp frames the request as it arrived"),
    ("transfer-encoding", "rsp frames the request as it arrived"),
    ("host", "use req:set_host"),
    ("expect", "rsp answers 100-continue as the request asked"),
    ("trailer", "rsp frames the request as it arrived"),
    ("x-forwarded-for", "rsp writes it (see forwarded_headers)"),
    ("x-forwarded-proto", "rsp writes it (see forwarded_headers)"),
    ("x-forwarded-host", "rsp writes it (see forwarded_headers)"),
    ("forwarded", "rsp writes it (see forwarded_headers)"),
    ("x-request-id", "rsp writes it (see request_id)"),
];

/// A change `route()` asked for that rsp refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditError {
    /// Not a field name (RFC 9110 §5.1: a token).
    Name,
    /// A byte a field value may not hold: CR, LF, NUL or another control.
    Value,
    /// A field rsp does not let a script write, and why.
    Refused(&'static str),
    Path(&'static str),
    Query(&'static str),
    Host,
    Status(&'static str),
    /// The head would grow past what rsp holds for one request.
    TooLarge,
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Name => f.write_str("not a valid field name"),
            EditError::Value => {
                f.write_str("the value holds CR, LF, NUL or another control character")
            }
            EditError::Refused(why) => write!(f, "not a field a script may write: {why}"),
            EditError::Path(why) => write!(f, "not a valid path: {why}"),
            EditError::Query(why) => write!(f, "not a valid query: {why}"),
            EditError::Host => f.write_str("not a valid host[:port]"),
            EditError::Status(why) => write!(f, "not a status this response may take: {why}"),
            EditError::TooLarge => write!(
                f,
                "the request head would grow past {MAX_EDITED_HEAD} bytes or {} fields",
                MAX_HEADERS * 2
            ),
        }
    }
}

/// Response fields a script may not write, and why.
pub(super) const REFUSED_IN_RESPONSES: &[(&str, &str)] = &[
    ("content-length", "rsp frames the response as it arrived"),
    ("transfer-encoding", "rsp frames the response as it arrived"),
    ("trailer", "rsp frames the response as it arrived"),
    ("x-request-id", "rsp writes it (see request_id)"),
];

/// Checks a field a script wants in a response (a reply table's).
pub fn check_response_field(name: &[u8], value: &[u8]) -> Result<(), EditError> {
    check_field_name(name, REFUSED_IN_RESPONSES)?;
    check_value(value)
}

/// Checks a name a script wants to write or remove in a request.
pub fn check_name(name: &[u8]) -> Result<(), EditError> {
    check_field_name(name, REFUSED)
}

/// Checks a field name against RFC 9110's token rule, the hop-by-hop
/// fields and `refused`.
pub(super) fn check_field_name(
    name: &[u8],
    refused: &[(&str, &'static str)],
) -> Result<(), EditError> {
    if name.is_empty() || !name.iter().copied().all(is_token_char) {
        return Err(EditError::Name);
    }
    if HOP_BY_HOP
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop.as_bytes()))
    {
        return Err(EditError::Refused(
            "it describes the connection, not the request",
        ));
    }
    match refused
        .iter()
        .find(|(refused, _)| name.eq_ignore_ascii_case(refused.as_bytes()))
    {
        Some((_, why)) => Err(EditError::Refused(why)),
        None => Ok(()),
    }
}

/// Checks a value: visible characters, spaces and tabs, and bytes past
/// ASCII (obs-text); leading and trailing whitespace is not part of a
/// field value, and is trimmed by `trimmed_value`.
pub fn check_value(value: &[u8]) -> Result<(), EditError> {
    let valid = value
        .iter()
        .all(|&byte| byte == b'\t' || (byte >= b' ' && byte != 0x7f));
    if valid { Ok(()) } else { Err(EditError::Value) }
}

pub(super) fn trimmed_value(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// A path a script sets: origin-form, characters a URI path may hold
/// (RFC 3986 §3.3), escapes complete.
fn check_path(path: &[u8]) -> Result<(), EditError> {
    if path.first() != Some(&b'/') {
        return Err(EditError::Path("it must start with /"));
    }
    check_uri_part(path, b"/:@").map_err(EditError::Path)
}

fn check_query(query: &[u8]) -> Result<(), EditError> {
    check_uri_part(query, b"/:@?").map_err(EditError::Query)
}

/// Unreserved, sub-delims, `extra`, and complete percent escapes.
fn check_uri_part(part: &[u8], extra: &[u8]) -> Result<(), &'static str> {
    let mut bytes = part.iter();
    while let Some(&byte) = bytes.next() {
        if byte == b'%' {
            let escape = (bytes.next(), bytes.next());
            let (Some(high), Some(low)) = escape else {
                return Err("an incomplete %-escape");
            };
            if !high.is_ascii_hexdigit() || !low.is_ascii_hexdigit() {
                return Err("an invalid %-escape");
            }
            continue;
        }
        let allowed = byte.is_ascii_alphanumeric()
            || b"-._~!$&'()*+,;=".contains(&byte)
            || extra.contains(&byte);
        if !allowed {
            return Err(
                "a character that must be %-escaped (space, #, ?, a control, or past ASCII)",
            );
        }
    }
    Ok(())
}

impl RequestHead {
    /// Replaces every field called `name` with one of `value` (where the
    /// first one was, else at the end).
    pub fn set_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), EditError> {
        check_name(name)?;
        let reserved = self.target.len();
        set_field(&mut self.raw, &mut self.headers, reserved, name, value)
    }

    /// Adds one field `name: value` after the others.
    pub fn add_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), EditError> {
        check_name(name)?;
        let reserved = self.target.len();
        add_field(&mut self.raw, &mut self.headers, reserved, name, value)
    }

    /// Removes every field called `name`.
    pub fn del_header(&mut self, name: &[u8]) -> Result<(), EditError> {
        check_name(name)?;
        del_field(&self.raw, &mut self.headers, name);
        Ok(())
    }

    /// The path the backend gets; the query stays.
    pub fn set_path(&mut self, path: &[u8]) -> Result<(), EditError> {
        check_path(path)?;
        self.check_growth(path.len())?;
        let query = self.target.split_off(self.path_end);
        self.target.clear();
        self.target.extend_from_slice(path);
        self.path_end = self.target.len();
        self.target.extend_from_slice(&query);
        Ok(())
    }

    /// The query the backend gets (without its `?`); `None` removes it.
    pub fn set_query(&mut self, query: Option<&[u8]>) -> Result<(), EditError> {
        if let Some(query) = query {
            check_query(query)?;
            self.check_growth(query.len())?;
        }
        self.target.truncate(self.path_end);
        if let Some(query) = query {
            self.target.push(b'?');
            self.target.extend_from_slice(query);
        }
        Ok(())
    }

    /// The Host the backend gets, and `route()` sees from now on.
    pub fn set_host(&mut self, host: &[u8]) -> Result<(), EditError> {
        let canonical = host::canonical_owned(host, host::default_port(self.https))
            .map_err(|_| EditError::Host)?;
        if host.is_empty() {
            return Err(EditError::Host);
        }
        check_growth(&self.raw, self.target.len() + canonical.len())?;
        self.host_field = canonical;
        self.has_host = true;
        self.refresh_host();
        Ok(())
    }

    fn check_growth(&self, more: usize) -> Result<(), EditError> {
        check_growth(&self.raw, self.target.len() + more)
    }
}

/// The edits of one head's fields, which live as ranges of `raw`; the head
/// holds `reserved` bytes elsewhere (a request its target).
pub(super) fn set_field(
    raw: &mut Vec<u8>,
    fields: &mut Vec<Field>,
    reserved: usize,
    name: &[u8],
    value: &[u8],
) -> Result<(), EditError> {
    check_value(value)?;
    let value = append(raw, reserved, trimmed_value(value))?;
    match fields
        .iter()
        .position(|field| raw[field.name.clone()].eq_ignore_ascii_case(name))
    {
        Some(index) => {
            fields[index].value = value;
            fields[index].added = true;
            let mut seen = 0;
            fields.retain(|field| {
                let same = raw[field.name.clone()].eq_ignore_ascii_case(name);
                seen += usize::from(same);
                !same || seen == 1
            });
            Ok(())
        }
        None => {
            let name = append(raw, reserved, name)?;
            push(fields, name, value)
        }
    }
}

pub(super) fn add_field(
    raw: &mut Vec<u8>,
    fields: &mut Vec<Field>,
    reserved: usize,
    name: &[u8],
    value: &[u8],
) -> Result<(), EditError> {
    check_value(value)?;
    let value = append(raw, reserved, trimmed_value(value))?;
    let name = append(raw, reserved, name)?;
    push(fields, name, value)
}

pub(super) fn del_field(raw: &[u8], fields: &mut Vec<Field>, name: &[u8]) {
    fields.retain(|field| !raw[field.name.clone()].eq_ignore_ascii_case(name));
}

fn check_growth(raw: &[u8], more: usize) -> Result<(), EditError> {
    if raw.len() + more > MAX_EDITED_HEAD {
        return Err(EditError::TooLarge);
    }
    Ok(())
}

/// Keeps `bytes` at the end of the head's own storage, where the ranges of
/// its fields point.
fn append(raw: &mut Vec<u8>, reserved: usize, bytes: &[u8]) -> Result<Range<usize>, EditError> {
    check_growth(raw, reserved + bytes.len())?;
    let start = raw.len();
    raw.extend_from_slice(bytes);
    Ok(start..raw.len())
}

fn push(fields: &mut Vec<Field>, name: Range<usize>, value: Range<usize>) -> Result<(), EditError> {
    if fields.len() >= MAX_HEADERS * 2 {
        return Err(EditError::TooLarge);
    }
    fields.push(Field {
        name,
        value,
        added: true,
    });
    Ok(())
}
