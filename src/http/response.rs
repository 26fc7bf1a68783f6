//! Response heads: parsing a backend's, deciding framing and persistence,
//! and writing the head the client gets.

use crate::framing::Framing;
use crate::message::Out;

use super::{HeadError, copy_end_to_end, copy_fields, is_framing, merge_content_length, tokens};

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

/// Parses a response head at the start of `buffer` and writes the head to
/// send to the client to `out` (`ResponseHead::forward`). `upgrade_offer`
/// is what the request offered to switch to. `Ok(None)` means more bytes
/// are needed.
pub fn forward_response_head(
    buffer: &[u8],
    client: ClientSide,
    upgrade_offer: &[u8],
    request_id: Option<&str>,
    out: Out,
) -> Result<Option<ResponseInfo>, HeadError> {
    let mut head = super::ResponseHead::default();
    if head.read(buffer)?.is_none() {
        return Ok(None);
    }
    head.forward(client, upgrade_offer, request_id, out)
        .map(Some)
}

/// Parses a response head at the start of `buffer` into `response`: its
/// length and status, `None` while more bytes are needed.
pub(super) fn parse<'b>(
    response: &mut httparse::Response<'_, 'b>,
    buffer: &'b [u8],
) -> Result<Option<(usize, u16)>, HeadError> {
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
    Ok(Some((head_length, status)))
}

/// A parsed response head: httparse's, or one `respond()` edited.
pub(super) struct Head<'a, F> {
    pub(super) status: u16,
    pub(super) reason: &'a str,
    pub(super) version: Option<u8>,
    pub(super) fields: F,
}

impl<'a, F: Fields<'a>> Head<'a, F> {
    fn fields(&self) -> F {
        self.fields.clone()
    }
}

/// A head's fields, as (name, value) pairs.
pub(super) trait Fields<'a>: Iterator<Item = (&'a [u8], &'a [u8])> + Clone {}

impl<'a, I: Iterator<Item = (&'a [u8], &'a [u8])> + Clone> Fields<'a> for I {}

/// A 101: the `Upgrade` field goes on with the switch.
pub(super) fn write_switch<'a>(
    head: &Head<'a, impl Fields<'a>>,
    request_id: Option<&str>,
    out: Out,
) {
    let mut out = out.response(head.status, head.reason);
    copy_fields(&mut out, head.fields(), |name, hop_by_hop| {
        let replaced_id = request_id.is_some() && name.eq_ignore_ascii_case(b"x-request-id");
        name.eq_ignore_ascii_case(b"upgrade") || (!hop_by_hop && !replaced_id && !is_framing(name))
    });
    if let Some(id) = request_id {
        out.field(b"X-Request-Id", id.as_bytes());
    }
    out.connection(b"upgrade");
    out.end(false);
}

/// Interim responses (100 Continue, 103 Early Hints) mean nothing to an
/// HTTP/1.0 client, and never have a body to frame.
pub(super) fn write_interim<'a>(head: &Head<'a, impl Fields<'a>>, client: ClientSide, out: Out) {
    if client.minor_version != 1 {
        return;
    }
    let mut out = out.response(head.status, head.reason);
    copy_end_to_end(&mut out, head.fields(), is_framing);
    out.end(false);
}

/// What a final response's fields say of its framing and persistence.
#[derive(Default)]
struct Facts {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked_last: bool,
    close: bool,
    keep_alive: bool,
}

fn read_fields<'a>(head: &Head<'a, impl Fields<'a>>) -> Result<Facts, HeadError> {
    let mut facts = Facts::default();
    for (name, value) in head.fields() {
        if name.eq_ignore_ascii_case(b"connection") {
            for option in tokens(value) {
                facts.close |= option.eq_ignore_ascii_case(b"close");
                facts.keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            facts.content_length = Some(merge_content_length(facts.content_length, value)?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if tokens(value).next().is_none() {
                return Err(HeadError::Framing("an empty Transfer-Encoding"));
            }
            for coding in tokens(value) {
                facts.chunked_last = coding.eq_ignore_ascii_case(b"chunked");
                facts.transfer_encoding = true;
            }
        }
    }
    Ok(facts)
}

/// A final response: its framing, and whether the client's and the
/// backend's connections go on after it.
pub(super) fn write_final<'a>(
    head: &Head<'a, impl Fields<'a>>,
    client: ClientSide,
    request_id: Option<&str>,
    out: Out,
) -> Result<(Framing, bool, bool), HeadError> {
    let facts = read_fields(head)?;
    let bodiless_status = head.status == 204 || head.status == 304;
    let framing = if client.head_request || bodiless_status {
        Framing::Empty
    } else if facts.transfer_encoding && facts.chunked_last {
        if client.minor_version == 0 {
            return Err(HeadError::Framing(
                "chunked response to an HTTP/1.0 request",
            ));
        }
        Framing::Chunked
    } else if facts.transfer_encoding {
        Framing::UntilClose
    } else if let Some(length) = facts.content_length {
        Framing::Length(length)
    } else {
        Framing::UntilClose
    };
    let keep_alive = client.keep_alive && framing != Framing::UntilClose;
    let persistent = head.version == Some(1) || facts.keep_alive;
    // Both Content-Length and Transfer-Encoding: RFC 9112 §6.3 has
    // Transfer-Encoding win, but such a backend's connection is not trusted
    // to frame a later response.
    let ambiguous = facts.transfer_encoding && facts.content_length.is_some();
    let backend_keep_alive =
        persistent && !facts.close && !ambiguous && framing != Framing::UntilClose;

    let mut out = out.response(head.status, head.reason);
    copy_end_to_end(&mut out, head.fields(), |name| {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3): never
        // pass on both; 204 and 304 answers pass on neither.
        let dropped_length = (facts.transfer_encoding || bodiless_status)
            && name.eq_ignore_ascii_case(b"content-length");
        let dropped_coding = bodiless_status && name.eq_ignore_ascii_case(b"transfer-encoding");
        // The client hears the id rsp logged, not one the backend made up.
        let replaced_id = request_id.is_some() && name.eq_ignore_ascii_case(b"x-request-id");
        dropped_length || dropped_coding || replaced_id
    });
    if let Some(id) = request_id {
        out.field(b"X-Request-Id", id.as_bytes());
    }
    if !keep_alive {
        out.connection(b"close");
    } else if client.minor_version == 0 {
        out.connection(b"keep-alive");
    }
    out.end(framing == Framing::Chunked);
    Ok((framing, keep_alive, backend_keep_alive))
}

/// A 101 is taken only as the answer to an upgrade request, switching to
/// protocols the request offered (RFC 9110 §7.8, §15.2.2): otherwise a
/// backend could turn the connection into a tunnel no later request of
/// which meets `route()`.
pub(super) fn check_switch<'a>(
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
