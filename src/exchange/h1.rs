//! The `H1` upstream's side of reading: what the bytes a backend's
//! HTTP/1.1 connection sent say, as events the exchange acts on. The
//! head is read into the exchange's `ResponseHead` (a message, whatever
//! the protocol); the body passes through `outbound` as it came (its
//! framing is HTTP/1.1's, read off by the body's framer).

use crate::buffer::Buffer;
use crate::http::ResponseHead;
use crate::reply::ErrorReply;

use super::ResponseSide;
use super::attempt::ReadEnd;
use super::upstream::{Event, H1};

impl H1 {
    /// Reads the next response head at the start of `outbound` into
    /// `head` (at most `limit` bytes).
    pub fn read_head(&self, outbound: &Buffer, head: &mut ResponseHead, limit: usize) -> Event {
        let open = self.backend.read == ReadEnd::Open;
        if outbound.is_empty() {
            return match open {
                true => Event::Nothing,
                false => failed("closed the connection without a response"),
            };
        }
        match head.read(outbound.data()) {
            Ok(Some(length)) if length > limit => failed("response head too large"),
            Ok(Some(length)) => Event::Head { length },
            Ok(None) if outbound.len() >= limit || outbound.is_full() => {
                failed("response head too large")
            }
            Ok(None) if !open => failed("closed the connection in the response head"),
            Ok(None) => Event::Nothing,
            Err(error) => Event::Failed {
                why: format!("invalid response: {error}"),
                reply: ErrorReply::BadGateway,
            },
        }
    }

    /// Whether the response body is complete (`drained`: every byte the
    /// backend sent has gone on; `answered`: and all rsp queued for the
    /// client): `End`, with whether the connection may serve another
    /// request as far as the backend is concerned; `Failed` when the
    /// connection ended inside it.
    pub fn poll_end(&mut self, drained: bool, answered: bool) -> Event {
        let H1 {
            backend,
            request,
            response:
                ResponseSide::Body {
                    body,
                    until_close,
                    backend_keeps,
                    encoder,
                    ..
                },
            ..
        } = self
        else {
            return Event::Nothing;
        };
        let ended_by_close = *until_close && backend.read != ReadEnd::Open && drained;
        if ended_by_close && backend.read == ReadEnd::Reset {
            return failed("reset the connection mid-response");
        }
        if body
            .as_ref()
            .is_some_and(|body| body.is_complete() || (ended_by_close && body.is_flushed()))
        {
            *body = None;
        }
        if body.is_some() && backend.read != ReadEnd::Open && drained {
            return failed("closed the connection mid-response");
        }
        let encoding = encoder.as_ref().is_some_and(|encoder| !encoder.is_done());
        if body.is_some() || encoding || !answered {
            return Event::Nothing;
        }
        let reusable = *backend_keeps && backend.is_reusable() && request.body.is_none() && drained;
        Event::End { reusable }
    }
}

fn failed(why: &str) -> Event {
    Event::Failed {
        why: why.to_owned(),
        reply: ErrorReply::BadGateway,
    }
}
