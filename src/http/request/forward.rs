//! The head written for a backend: the request as `route()` left it,
//! with the forwarding fields rsp writes (a trusted peer's kept and
//! extended, anyone else's replaced), `Via` and the request id.

use std::io::Write;
use std::net::IpAddr;

use crate::forwarding::Forwarding;

use super::super::{is_hop_by_hop, write_field};
use super::RequestHead;

/// The forwarding fields rsp writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OwnField {
    For,
    Proto,
    Host,
    Rfc7239,
}

pub(super) fn forwarding_field(name: &[u8]) -> Option<OwnField> {
    if name.eq_ignore_ascii_case(b"x-forwarded-for") {
        Some(OwnField::For)
    } else if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
        Some(OwnField::Proto)
    } else if name.eq_ignore_ascii_case(b"x-forwarded-host") {
        Some(OwnField::Host)
    } else if name.eq_ignore_ascii_case(b"forwarded") {
        Some(OwnField::Rfc7239)
    } else {
        None
    }
}

impl RequestHead {
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
        if let Some(host) = self.host_value() {
            // The canonical host `route()` saw, first.
            write_field(out, b"Host", host);
        }
        let trusted = forwarding.trusts(client);
        let kept = self.write_end_to_end(out, forwarding, trusted);
        let proto = if https { "https" } else { "http" };
        self.write_forwarding(out, forwarding, trusted, kept, client.to_canonical(), proto);
        if let Some(name) = &forwarding.via {
            // RFC 9110 §7.6.3: the protocol received and who received it.
            out.extend_from_slice(match (self.http2, self.minor_version) {
                (true, _) => b"Via: 2 ",
                (false, 0) => b"Via: 1.0 ",
                (false, _) => b"Via: 1.1 ",
            });
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\r\n");
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

    /// The client's fields that go on: not hop-by-hop, not the request id,
    /// and forwarding fields only from a trusted peer (the list fields
    /// are extended later instead). Returns which of a trusted peer's
    /// single-valued forwarding fields were kept.
    fn write_end_to_end(&self, out: &mut Vec<u8>, forwarding: &Forwarding, trusted: bool) -> Kept {
        let mut kept = Kept::default();
        let mut skip = |name: &[u8]| {
            if name.eq_ignore_ascii_case(b"x-request-id") {
                return true;
            }
            match forwarding_field(name) {
                None => false,
                Some(_) if !trusted => true,
                Some(OwnField::For) => forwarding.x_forwarded_for,
                Some(OwnField::Rfc7239) => forwarding.forwarded,
                Some(OwnField::Proto) => {
                    kept.proto = true;
                    false
                }
                Some(OwnField::Host) => {
                    kept.host = true;
                    false
                }
            }
        };
        // The client's connection fields went before `route()` ran; an
        // upgrade's, which `route()` saw, are written after these.
        for (name, value) in self.fields() {
            let upgrade_field = self.upgrade && is_hop_by_hop(name, None::<std::iter::Empty<_>>);
            if !upgrade_field && !skip(name) {
                write_field(out, name, value);
            }
        }
        kept
    }

    /// The forwarding fields rsp writes: the client's address, scheme and
    /// host, after a trusted peer's values of the list fields.
    fn write_forwarding(
        &self,
        out: &mut Vec<u8>,
        forwarding: &Forwarding,
        trusted: bool,
        kept: Kept,
        client: IpAddr,
        proto: &str,
    ) {
        let host = self.client_has_host.then_some(&self.client_host[..]);
        if forwarding.x_forwarded_for {
            out.extend_from_slice(b"X-Forwarded-For: ");
            self.write_earlier(out, trusted, OwnField::For);
            let _ = write!(out, "{client}\r\n");
        }
        if forwarding.x_forwarded_proto && !kept.proto {
            let _ = write!(out, "X-Forwarded-Proto: {proto}\r\n");
        }
        if forwarding.x_forwarded_host
            && !kept.host
            && let Some(host) = host
        {
            write_field(out, b"X-Forwarded-Host", host);
        }
        if forwarding.forwarded {
            out.extend_from_slice(b"Forwarded: ");
            self.write_earlier(out, trusted, OwnField::Rfc7239);
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
    }

    /// A trusted peer's values of a list field, each followed by ", ".
    fn write_earlier(&self, out: &mut Vec<u8>, trusted: bool, wanted: OwnField) {
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
}

/// A trusted peer's single-valued forwarding fields that were kept (so
/// rsp does not write its own).
#[derive(Default, Clone, Copy)]
struct Kept {
    proto: bool,
    host: bool,
}
