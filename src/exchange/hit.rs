//! Answering from the store: a stored response's head as the client
//! gets it (its fields, `Age`, `Cache-Status`), a 304 when the client's
//! validators match, a 206 for a single range, and its body streamed from
//! the store as the `Cache` upstream.

use std::sync::Arc;

use crate::cache::Entry;
use crate::cache::policy;
use crate::http::ClientSide;
use crate::services::Services;

use super::forward::{LocalBody, Queue};
use super::{After, Exchange, Local, State, Upstream};

impl Exchange {
    /// Answers from `entry` (`age` seconds old): its head with `Age` and
    /// `Cache-Status`, its body from the store, or a 304 when the client's
    /// validators match. False if the stored head cannot be written.
    pub(super) fn serve(
        &mut self,
        services: &Services,
        entry: &Arc<Entry>,
        age: u64,
        detail: &str,
        to_client: &mut Queue,
    ) -> bool {
        let request = &self.request.head;
        // The validators rsp added to revalidate are not the client's.
        let revalidating = self
            .lookup
            .as_deref()
            .is_some_and(|lookup| lookup.revalidating);
        let (status, part) = shape(request, entry, revalidating);
        let not_modified = status == 304;
        let whole = 0..entry.body.len();
        let length = part.len().to_string();
        let content_range = match status {
            206 => format!("bytes {}-{}/{}", part.start, part.end - 1, whole.end),
            _ => format!("bytes */{}", whole.end),
        };
        let age_text = age.to_string();
        let status_text = format!("rsp; {detail}");
        let status_header = services
            .cache
            .as_ref()
            .is_some_and(|cache| cache.config.status_header);
        let mut added = vec![(&b"Age"[..], age_text.as_bytes())];
        if !not_modified {
            added.push((b"Content-Length", length.as_bytes()));
        }
        if status == 206 || status == 416 {
            added.push((b"Content-Range", content_range.as_bytes()));
        }
        if status_header {
            added.push((b"Cache-Status", status_text.as_bytes()));
        }
        let stored = entry
            .fields
            .iter()
            .map(|(name, value)| (&**name, &**value))
            .filter(|(name, _)| !not_modified || kept_in_304(name))
            .filter(|(name, _)| status != 416 || !name.eq_ignore_ascii_case(b"content-type"));
        let head = &mut self.response.head;
        head.stored(status, stored.chain(added));
        let client = ClientSide {
            head_request: request.is_head(),
            minor_version: request.minor_version,
            keep_alive: request.keep_alive,
            upgrade: false,
        };
        let request_id = self.request.request_id();
        let Ok(info) = head.write_final(client, request_id, to_client.out()) else {
            to_client.clear();
            return false;
        };
        let body = match info.framing {
            crate::framing::Framing::Length(_) => LocalBody::shared(Arc::clone(&entry.body), part),
            _ => LocalBody::default(),
        };
        if let Some(transaction) = &mut self.transaction {
            transaction.answered_locally(status, body.pending().len());
        }
        self.state = State::Answering(Upstream::Cache(Local {
            body,
            discard: None,
            after: if info.keep_alive {
                After::Next
            } else {
                After::Close
            },
            linger: request.keep_alive,
            waiting: None,
        }));
        true
    }
}

/// The status and the part of the body a stored response answers with:
/// 304 when the client's validators match, 206 for a single range of a
/// stored 200 (416 past its end; several ranges get the whole response,
/// as RFC 9110 §14.2 lets a server ignore Range), else its own.
fn shape(
    request: &crate::http::RequestHead,
    entry: &Entry,
    revalidating: bool,
) -> (u16, std::ops::Range<usize>) {
    let whole = 0..entry.body.len();
    // Validators answer for a stored 2xx only.
    if !revalidating && (200..300).contains(&entry.status) && not_modified(request, entry) {
        return (304, whole);
    }
    let range = match (revalidating, entry.status) {
        (false, 200) => requested_range(request, entry),
        _ => None,
    };
    match range {
        Some(Ok(part)) => (206, part),
        Some(Err(())) => (416, 0..0),
        None => (entry.status, whole),
    }
}

/// The client's validators match the stored response (RFC 9110 §13.1.2,
/// §13.1.3: `If-None-Match` by weak comparison, else
/// `If-Modified-Since` against `Last-Modified`).
fn not_modified(request: &crate::http::RequestHead, entry: &Entry) -> bool {
    if let Some(tags) = request.header("if-none-match") {
        let Some(etag) = entry.field(b"etag") else {
            return false;
        };
        let weak = |tag: &[u8]| {
            tag.trim_ascii()
                .strip_prefix(b"W/")
                .unwrap_or(tag.trim_ascii())
                .to_vec()
        };
        let stored = weak(etag);
        return tags
            .split(|&byte| byte == b',')
            .any(|tag| tag.trim_ascii() == b"*" || weak(tag) == stored);
    }
    let Some(since) = request
        .header("if-modified-since")
        .and_then(policy::http_date)
    else {
        return false;
    };
    entry
        .field(b"last-modified")
        .and_then(policy::http_date)
        .is_some_and(|modified| modified <= since)
}

/// The one range a request asks of `entry` (RFC 9110 §14): `None` for
/// none, several, or a range unit other than bytes, or an `If-Range`
/// that does not match (the whole response then); `Err` for a range
/// past the end (416).
fn requested_range(
    request: &crate::http::RequestHead,
    entry: &Entry,
) -> Option<Result<std::ops::Range<usize>, ()>> {
    let spec = request
        .header("range")?
        .trim_ascii()
        .strip_prefix(b"bytes=")?;
    if spec.contains(&b',') {
        return None;
    }
    if let Some(condition) = request.header("if-range") {
        // Strong comparison with the ETag, or the exact Last-Modified.
        let etag = entry.field(b"etag").filter(|etag| !etag.starts_with(b"W/"));
        let date = entry.field(b"last-modified");
        if Some(condition) != etag && Some(condition) != date {
            return None;
        }
    }
    let length = entry.body.len() as u64;
    let text = std::str::from_utf8(spec).ok()?.trim();
    let (first, last) = text.split_once('-')?;
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    let (start, end) = match (number(first), number(last)) {
        (Some(start), Some(last)) if start <= last => (start, last.saturating_add(1).min(length)),
        (Some(start), None) if last.is_empty() => (start, length),
        (None, Some(suffix)) if first.is_empty() && suffix > 0 => {
            (length.saturating_sub(suffix), length)
        }
        // Not a valid range: ignored, as RFC 9110 §14.2 says.
        _ => return None,
    };
    if start >= length {
        return Some(Err(()));
    }
    Some(Ok(start as usize..end as usize))
}

/// The fields a 304 carries of the stored response (RFC 9110 §15.4.5).
fn kept_in_304(name: &[u8]) -> bool {
    [
        &b"cache-control"[..],
        b"content-location",
        b"date",
        b"etag",
        b"expires",
        b"vary",
        b"last-modified",
    ]
    .iter()
    .any(|kept| kept.eq_ignore_ascii_case(name))
}
