//! The exchange and compression (`compress.rs`): after `respond()`, a
//! final head the client may get encoded is rewritten for it, and its
//! encoder readied; the body then goes through it (`Passage::Encode`).

use crate::cache::policy::Directives;
use crate::compress::{self, Encoder};
use crate::framing::Framing;
use crate::services::Services;

use super::Exchange;

impl Exchange {
    /// Whether the final head (after `respond()`) is encoded for the
    /// client: never for HEAD (its answer says it varies, as the GET's
    /// does), a status other than 2xx (or 204, 206), a
    /// request with `Range`, an HTTP/1.0 client, a response already
    /// encoded, marked `no-transform`, of a type not listed, or announcing
    /// fewer than `min_bytes`. One that could be but that the client does
    /// not accept still says it varies by `Accept-Encoding`.
    pub(super) fn compress_response(&mut self, services: &Services) {
        self.encoder = None;
        let Some(config) = &services.settings.compress else {
            return;
        };
        let request = &self.request.head;
        let head = &mut self.response.head;
        let status = head.status();
        let http10 = !request.http2 && request.minor_version == 0;
        if !(200..300).contains(&status)
            || status == 204
            || status == 206
            || http10
            || request.header("range").is_some()
        {
            return;
        }
        let encoded = head
            .header(b"content-encoding")
            .is_some_and(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"identity"));
        let cache_control = head
            .fields()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"cache-control"))
            .map(|(_, value)| value);
        let listed = head
            .header(b"content-type")
            .is_some_and(|kind| compress::listed(&config.types, kind));
        if encoded || !listed || Directives::parse(cache_control).no_transform {
            return;
        }
        let framing = backend_framing(head);
        if let Framing::Length(length) = framing
            && length < config.min_bytes
        {
            return;
        }
        // A HEAD's answer is not encoded, but says it varies as the GET's.
        if request.is_head() {
            head.vary_by_encoding();
            return;
        }
        let Some(coding) = compress::choose(request.header("accept-encoding")) else {
            head.vary_by_encoding();
            return;
        };
        head.encode_as(coding.token());
        self.encoder = Some(Box::new(Encoder::new(coding, config, &framing)));
    }
}

/// How the backend frames a response's body, by its head (RFC 9112 §6.3;
/// a head that is no valid response fails when it is written anyway).
fn backend_framing(head: &crate::http::ResponseHead) -> Framing {
    let coding = head
        .fields()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"transfer-encoding"))
        .flat_map(|(_, value)| value.split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .last();
    match coding {
        Some(coding) if coding.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
        Some(_) => Framing::UntilClose,
        None => head
            .header(b"content-length")
            .and_then(|length| std::str::from_utf8(length).ok()?.trim().parse().ok())
            .map_or(Framing::UntilClose, Framing::Length),
    }
}
