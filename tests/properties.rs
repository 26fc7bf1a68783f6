//! Property tests: arbitrary and mutated bytes through the parsers and framers.

use proptest::prelude::*;
use rsp::forwarding::Forwarding;
use rsp::framing::{BodyFramer, Framing};
use rsp::http::{ClientSide, RequestHead, forward_response_head};
use rsp::proxy_protocol::{self, Version};

const VALID_REQUEST: &[u8] =
    b"POST /a?b=c HTTP/1.1\r\nHost: Example.com\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n";
const VALID_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
const PROXY_V1: &[u8] = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET / HTTP/1.1\r\n";
const PROXY_V2: &[u8] =
    b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00\x02\x01\xc6\x33\x64\x02\x01\xbb\x00\x50rest";
const CHUNKED_BODY: &[u8] =
    b"4;x=y\r\nwiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n";

/// A valid message with a few bytes replaced, inserted or removed.
fn mutated(base: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0..base.len(), any::<u8>(), 0..3u8), 0..6).prop_map(move |edits| {
        let mut bytes = base.to_vec();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match kind {
                0 if !bytes.is_empty() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {}
            }
        }
        bytes
    })
}

proptest! {
    #[test]
    fn request_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut head = RequestHead::default();
        if let Ok(Some(length)) = head.parse(&bytes) {
            prop_assert!(length <= bytes.len());
            let mut out = Vec::new();
            head.write_forwarded(&mut out, "127.0.0.1".parse().unwrap(), &Forwarding::default(), Some("id"), true, false);
            let _ = (head.path(), head.query(), head.host(), head.header("x"));
        }
    }

    #[test]
    fn mutated_requests_never_panic_and_forward_clean_heads(bytes in mutated(VALID_REQUEST)) {
        let mut head = RequestHead::default();
        if let Ok(Some(_)) = head.parse(&bytes) {
            let mut out = Vec::new();
            head.write_forwarded(&mut out, "127.0.0.1".parse().unwrap(), &Forwarding::default(), Some("id"), true, false);
            // What rsp forwards always parses again, to the same framing.
            let mut again = RequestHead::default();
            prop_assert!(matches!(again.parse(&out), Ok(Some(_))));
            prop_assert_eq!(again.framing, head.framing);
        }
    }

    #[test]
    fn response_parsing_never_panics(bytes in mutated(VALID_RESPONSE), minor in 0..2u8, head_request: bool) {
        let client = ClientSide { head_request, minor_version: minor, keep_alive: true, upgrade: head_request };
        let mut out = Vec::new();
        if let Ok(Some(info)) = forward_response_head(&bytes, client, Some("id"), &mut out) {
            prop_assert!(info.head_length <= bytes.len());
        }
    }

    #[test]
    fn chunked_framing_is_split_independent(bytes in mutated(CHUNKED_BODY), split in 1..40usize) {
        let whole = BodyFramer::new(&Framing::Chunked).unwrap().claim(&bytes);
        let mut framer = BodyFramer::new(&Framing::Chunked).unwrap();
        let mut claimed = 0;
        let mut result = Ok(0);
        while claimed < bytes.len() && !framer.is_complete() {
            let end = (claimed + split).min(bytes.len());
            match framer.claim(&bytes[claimed..end]) {
                Ok(count) => claimed += count,
                Err(error) => {
                    result = Err(error);
                    break;
                }
            }
        }
        match whole {
            Ok(count) => prop_assert_eq!(result.map(|_| claimed), Ok(count)),
            Err(_) => prop_assert!(result.is_err()),
        }
    }

    #[test]
    fn proxy_headers_never_panic_and_never_overrun(
        bytes in prop_oneof![mutated(PROXY_V1), mutated(PROXY_V2), prop::collection::vec(any::<u8>(), 0..300)]
    ) {
        if let Ok(Some(header)) = proxy_protocol::parse(&bytes) {
            prop_assert!(header.length <= bytes.len());
        }
    }

    #[test]
    fn written_proxy_headers_parse_back(
        a in any::<[u8; 4]>(), b in any::<[u8; 16]>(), ports in any::<(u16, u16)>(), v2: bool, six: bool
    ) {
        let client = if six {
            std::net::SocketAddr::from((b, ports.0))
        } else {
            std::net::SocketAddr::from((a, ports.0))
        };
        let destination = std::net::SocketAddr::from((a, ports.1));
        let mut out = Vec::new();
        let version = if v2 { Version::V2 } else { Version::V1 };
        proxy_protocol::write(&mut out, version, client, destination);
        let header = proxy_protocol::parse(&out).unwrap().unwrap();
        prop_assert_eq!(header.length, out.len());
        let (parsed_client, _) = header.addresses.unwrap();
        prop_assert_eq!(parsed_client.port(), client.port());
        prop_assert_eq!(parsed_client.ip().to_canonical(), client.ip().to_canonical());
    }
}
