//! Property tests: arbitrary and mutated bytes through the parsers and framers.

mod common;

use common::{host_strategy, target_strategy};
use proptest::prelude::*;
use rsp::forwarding::Forwarding;
use rsp::framing::{BodyFramer, Framing};
use rsp::http::{ClientSide, RequestHead, RequestPolicy, forward_response_head};
use rsp::message::{Out, Record, Wire};
use rsp::proxy_protocol::{self, Version};
use rsp::target::{self, Backslash, EscapedSlash, PathNormalization, Scratch};

const VALID_REQUEST: &[u8] =
    b"POST /a?b=c HTTP/1.1\r\nHost: Example.com\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n";
const VALID_RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
const RICH_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\
Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nX-Request-Id: backend\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
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

/// Claims a chunked body `split` bytes at a time, its trailer section
/// whole: the bytes it took and the trailers it forwards.
fn claim_body(bytes: &[u8], split: usize) -> Result<(usize, Vec<u8>), rsp::framing::FramingError> {
    let mut framer = BodyFramer::new(&Framing::Chunked).unwrap();
    let (mut claimed, mut window_end, mut trailers) = (0, 0, Vec::new());
    while !framer.is_complete() {
        window_end = (window_end.max(claimed) + split).min(bytes.len());
        let taken = if framer.awaits_trailers() {
            framer.take_trailers(
                &bytes[claimed..window_end],
                rsp::message::Out::http1(&mut trailers),
            )?
        } else {
            Some(framer.claim(&bytes[claimed..window_end])?)
        };
        claimed += taken.unwrap_or(0);
        if taken.unwrap_or(0) == 0 && window_end == bytes.len() {
            break;
        }
    }
    Ok((claimed, trailers))
}

proptest! {
    #[test]
    fn request_parsing_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut head = RequestHead::default();
        if let Ok(Some(length)) = head.parse(&bytes, &RequestPolicy::default(), false) {
            prop_assert!(length <= bytes.len());
            let mut out = Vec::new();
            head.write_forwarded(&mut out, "127.0.0.1".parse().unwrap(), &Forwarding::default(), Some("id"), true, false);
            let _ = (head.path(), head.query(), head.host(), head.header("x"));
        }
    }

    #[test]
    fn mutated_requests_never_panic_and_forward_clean_heads(bytes in mutated(VALID_REQUEST)) {
        let mut head = RequestHead::default();
        if let Ok(Some(_)) = head.parse(&bytes, &RequestPolicy::default(), false) {
            let mut out = Vec::new();
            head.write_forwarded(&mut out, "127.0.0.1".parse().unwrap(), &Forwarding::default(), Some("id"), true, false);
            // What rsp forwards always parses again, to the same framing.
            let mut again = RequestHead::default();
            prop_assert!(matches!(again.parse(&out, &RequestPolicy::default(), false), Ok(Some(_))));
            prop_assert_eq!(again.framing, head.framing);
        }
    }

    #[test]
    fn response_parsing_never_panics(bytes in mutated(VALID_RESPONSE), minor in 0..2u8, head_request: bool) {
        let client = ClientSide { head_request, minor_version: minor, keep_alive: true, upgrade: head_request };
        let mut out = Vec::new();
        if let Ok(Some(info)) = forward_response_head(&bytes, client, b"websocket", Some("id"), rsp::message::Out::http1(&mut out)) {
            prop_assert!(info.head_length <= bytes.len());
        }
    }

    /// A backend's head reaches an HTTP/2 client with what an HTTP/1.1
    /// client gets of it: the same status and fields, in order, but for
    /// the connection-specific ones; framing told, not written.
    #[test]
    fn response_heads_say_the_same_to_both_protocols(
        bytes in prop_oneof![mutated(VALID_RESPONSE), mutated(RICH_RESPONSE)],
        head_request: bool,
    ) {
        let client = ClientSide { head_request, minor_version: 1, keep_alive: true, upgrade: false };
        let (mut text, mut record) = (Vec::new(), Vec::new());
        let http1 = forward_response_head(&bytes, client, b"", Some("id"), Out::http1(&mut text));
        let http2 = forward_response_head(&bytes, client, b"", Some("id"), Out { wire: Wire::Http2, bytes: &mut record });
        prop_assert_eq!(&http1, &http2);
        let Ok(Some(info)) = http1 else {
            return Ok(());
        };
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Response::new(&mut fields);
        prop_assert!(matches!(parsed.parse(&text), Ok(httparse::Status::Complete(_))));
        let mut expected = vec![(b":status".to_vec(), info.status.to_string().into_bytes())];
        const CONNECTION: [&str; 5] = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];
        expected.extend(
            parsed.headers.iter()
                .filter(|field| !CONNECTION.iter().any(|name| field.name.eq_ignore_ascii_case(name)))
                .map(|field| (field.name.to_ascii_lowercase().into_bytes(), field.value.to_vec())),
        );
        let (head, block) = Record::read(&record).expect("a whole record");
        prop_assert_eq!(head.length, record.len());
        prop_assert_eq!(head.status, info.status);
        prop_assert_eq!(head.chunked, info.framing == Framing::Chunked);
        let decoded = loona_hpack::Decoder::new().decode(block).expect("a valid block");
        prop_assert_eq!(decoded, expected);
    }

    /// A Redis reply is measured the same whatever pieces it arrives in,
    /// and nothing a server sends panics the scanner or the decoder.
    #[test]
    fn redis_replies_scan_the_same_in_any_pieces(
        bytes in prop_oneof![
            mutated(b"*3\r\n$3\r\nabc\r\n*2\r\n:1\r\n-ERR x\r\n+OK\r\n"),
            prop::collection::vec(any::<u8>(), 0..200),
        ],
        split in 1..20usize,
    ) {
        use rsp::redis::resp;
        let whole = resp::extent(&bytes);
        let mut scan = resp::Scan::default();
        let mut pieces = Ok(None);
        for end in (split..bytes.len()).step_by(split).chain([bytes.len()]) {
            pieces = resp::extent_from(&bytes[..end], &mut scan);
            if !matches!(pieces, Ok(None)) {
                break;
            }
        }
        match &whole {
            Ok(Some(length)) => {
                prop_assert_eq!(&pieces, &Ok(Some(*length)));
                let _ = resp::decode(&bytes[..*length]);
            }
            Ok(None) => prop_assert_eq!(&pieces, &Ok(None)),
            Err(_) => prop_assert!(pieces.is_err() || pieces == Ok(None)),
        }
    }

    #[test]
    fn chunked_framing_is_split_independent(bytes in mutated(CHUNKED_BODY), split in 1..40usize) {
        let whole = claim_body(&bytes, bytes.len());
        let pieces = claim_body(&bytes, split);
        match whole {
            Ok(whole) => prop_assert_eq!(pieces, Ok(whole)),
            Err(_) => prop_assert!(pieces.is_err()),
        }
    }

    #[test]
    fn normalized_paths_stay_normalized(origin in target_strategy(), keep: bool) {
        let settings = if keep {
            PathNormalization {
                escaped_slash: EscapedSlash::Keep,
                backslash: Backslash::Keep,
                allow_escaped_nul: true,
                ..PathNormalization::default()
            }
        } else {
            PathNormalization::default()
        };
        let mut once = Vec::new();
        if target::normalize(origin.as_bytes(), &settings, &mut Scratch::default(), &mut once).is_ok() {
            let mut twice = Vec::new();
            prop_assert!(target::normalize(&once, &settings, &mut Scratch::default(), &mut twice).is_ok());
            prop_assert_eq!(&twice, &once);
            prop_assert!(once.starts_with(b"/"));
            let path_end = once.iter().position(|&byte| byte == b'?').unwrap_or(once.len());
            let path = &once[..path_end];
            // No segment a server could resolve differently.
            for segment in path.split(|&byte| byte == b'/').skip(1) {
                prop_assert!(segment != b"." && segment != b"..", "{:?}", String::from_utf8_lossy(&once));
            }
            prop_assert!(!path.windows(2).any(|pair| pair == b"//"));
            prop_assert!(once.iter().all(|byte| byte.is_ascii_graphic()));
        }
    }

    /// What route() sees of a request is what a server reading the
    /// forwarded head sees: the same path, query and host.
    #[test]
    fn the_forwarded_head_says_what_route_saw(origin in target_strategy(), absolute: bool, host in host_strategy()) {
        let target = if absolute { format!("http://{host}{origin}") } else { origin.clone() };
        let raw = format!("GET {target} HTTP/1.1\r\nHost: {}\r\nX: y\r\n\r\n", if absolute { "ignored.example" } else { &host });
        let mut head = RequestHead::default();
        if let Ok(Some(_)) = head.parse(raw.as_bytes(), &RequestPolicy::default(), false) {
            let mut out = Vec::new();
            head.write_forwarded(&mut out, "127.0.0.1".parse().unwrap(), &Forwarding::default(), None, true, false);
            let mut fields = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut fields);
            prop_assert!(request.parse(&out).unwrap().is_complete());
            let sent = request.path.unwrap();
            let (path, query) = match sent.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (sent, None),
            };
            prop_assert_eq!(path, head.path());
            prop_assert_eq!(query, head.query());
            let hosts: Vec<&[u8]> = request.headers.iter().filter(|field| field.name.eq_ignore_ascii_case("host")).map(|field| field.value).collect();
            prop_assert_eq!(hosts.len(), 1);
            let sent_host = String::from_utf8_lossy(hosts[0]).to_ascii_lowercase();
            let sent_host = sent_host.rsplit_once(':').filter(|(_, port)| !port.contains(']')).map_or(sent_host.as_str(), |(name, _)| name);
            prop_assert_eq!(sent_host, head.host());
            // And a backend that is itself rsp would route it the same way.
            let mut again = RequestHead::default();
            prop_assert!(matches!(again.parse(&out, &RequestPolicy::default(), false), Ok(Some(_))));
            prop_assert_eq!(again.path(), head.path());
            prop_assert_eq!(again.query(), head.query());
            prop_assert_eq!(again.host(), head.host());
        }
    }

    /// A host as `route()` sees it (`req.host`, and `req:header("Host")`)
    /// is the Host the backend gets, in the one spelling a server reads
    /// as that host: nginx lower-cases a Host, drops one trailing dot and
    /// the port before it matches `server_name`, and what it is left with
    /// must be `req.host`. Over HTTP/1.0, 1.1 and TLS, in the Host field
    /// and in an absolute-form target.
    #[test]
    fn route_sees_the_host_the_backend_gets(host in host_strategy(), minor in 0u8..2, https: bool, absolute: bool) {
        let raw = if absolute {
            let scheme = if https { "https" } else { "http" };
            format!("GET {scheme}://{host}/ HTTP/1.{minor}\r\nHost: ignored.example\r\n\r\n")
        } else {
            format!("GET / HTTP/1.{minor}\r\nHost: {host}\r\n\r\n")
        };
        let mut head = RequestHead::default();
        let Ok(Some(_)) = head.parse(raw.as_bytes(), &RequestPolicy::default(), https) else {
            return Ok(());
        };
        let mut out = Vec::new();
        head.write_forwarded(&mut out, "127.0.0.1".parse().unwrap(), &Forwarding::default(), None, true, https);
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut fields);
        prop_assert!(request.parse(&out).unwrap().is_complete());
        let hosts: Vec<&[u8]> = request.headers.iter().filter(|field| field.name.eq_ignore_ascii_case("host")).map(|field| field.value).collect();
        prop_assert_eq!(hosts.len(), 1);
        let sent = std::str::from_utf8(hosts[0]).unwrap();
        prop_assert_eq!(Some(sent.as_bytes()), head.header("Host"));
        // nginx's reading (ngx_http_validate_host): lower case, no
        // trailing dot, no port.
        let nginx = sent.to_ascii_lowercase();
        let nginx = match nginx.rsplit_once(':') {
            Some((name, port)) if !port.contains(']') => name.to_owned(),
            _ => nginx,
        };
        let nginx = nginx.strip_suffix('.').unwrap_or(&nginx);
        prop_assert_eq!(nginx, head.host());
        prop_assert_eq!(sent.to_ascii_lowercase(), sent);
        prop_assert!(!head.host().ends_with('.'), "{}", head.host());
        let default = if https && !absolute || absolute && raw.starts_with("GET https") { ":443" } else { ":80" };
        prop_assert!(!sent.ends_with(default), "{} keeps its default port", sent);
        // Canonical is a fixed point: rsp behind rsp routes it the same.
        let mut again = RequestHead::default();
        prop_assert!(matches!(again.parse(&out, &RequestPolicy::default(), https), Ok(Some(_))));
        prop_assert_eq!(again.host(), head.host());
        prop_assert_eq!(again.header("Host"), head.header("Host"));
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

proptest! {
    /// Any bytes through the HTTP/2 frame parser: a frame, a wait, or a
    /// protocol error, never a panic; a frame never claims more bytes than
    /// it was given, and a whole frame is consumed exactly.
    #[test]
    fn h2_frames_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        use rsp::h2::frame::{self, DEFAULT_MAX_FRAME_SIZE, HEADER_LENGTH};
        if let Ok(Some((_, used))) = frame::parse(&bytes, DEFAULT_MAX_FRAME_SIZE) {
            prop_assert!(used <= bytes.len());
            let header = frame::Header::read(&bytes).unwrap();
            prop_assert_eq!(used, HEADER_LENGTH + header.length as usize);
        }
    }

    /// Well-formed frames of every type with arbitrary flags, stream ids
    /// and payloads: parsed without panic, and never past their length.
    #[test]
    fn h2_headers_with_any_payload_are_bounded(
        kind in 0u8..12,
        flags in any::<u8>(),
        stream in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        use rsp::h2::frame::{self, DEFAULT_MAX_FRAME_SIZE};
        let mut bytes = Vec::new();
        frame::write_header(&mut bytes, payload.len(), kind, flags, stream);
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(b"next frame");
        match frame::parse(&bytes, DEFAULT_MAX_FRAME_SIZE) {
            Ok(Some((_, used))) => prop_assert_eq!(used, 9 + payload.len()),
            Ok(None) => prop_assert!(false, "a whole frame was waited for"),
            Err(_) => {}
        }
    }
}

/// A header list as HTTP/2 clients send them: the pseudo-headers, some
/// regular fields, and now and then something malformed.
fn h2_fields() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let name = prop::sample::select(vec![
        ":method",
        ":path",
        ":scheme",
        ":authority",
        ":status",
        "cookie",
        "host",
        "te",
        "content-length",
        "connection",
        "accept",
        "x-a",
        "X-Upper",
        "user-agent",
    ]);
    let value = prop::collection::vec(
        prop::sample::select(b"abc/?=; :.0123456789%\t\r\n\x00\x7f\xff".to_vec()),
        0..12,
    );
    let field = (name, value).prop_map(|(name, value)| (name.as_bytes().to_vec(), value));
    (
        target_strategy(),
        host_strategy(),
        prop::collection::vec(field, 0..6),
    )
        .prop_map(|(path, host, extra)| {
            let mut fields = vec![
                (b":method".to_vec(), b"GET".to_vec()),
                (b":scheme".to_vec(), b"https".to_vec()),
                (b":authority".to_vec(), host.into_bytes()),
                (b":path".to_vec(), path.into_bytes()),
            ];
            fields.extend(extra);
            fields
        })
}

proptest! {
    /// Any bytes through the HPACK decoder, with the list bound: a list
    /// (within the bound) or an error, never a panic.
    #[test]
    fn hpack_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut decoder = rsp::h2::decoder();
        let mut list = rsp::hpack::HeaderList::default();
        if decoder.decode(&bytes, 1024, 128, &mut list).is_ok() {
            let size: usize = list.iter().map(|(n, v)| n.len() + v.len() + 32).sum();
            prop_assert!(size <= 1024);
        }
    }

    /// rsp's decoder against loona-hpack's on blocks of Huffman-coded and
    /// plain literals, indexed or not, and references to both tables:
    /// the same fields, block after block.
    #[test]
    fn hpack_decoding_agrees_with_loona(
        blocks in prop::collection::vec(
            prop::collection::vec((0u8..4, any::<bool>(), "[ -~]{0,20}", "[ -~]{0,40}", 1usize..70), 1..8),
            1..4,
        ),
    ) {
        let mut ours = rsp::h2::decoder();
        let mut theirs = loona_hpack::Decoder::new();
        let mut list = rsp::hpack::HeaderList::default();
        for fields in blocks {
            let mut block = Vec::new();
            for (kind, huffman, name, value, index) in fields {
                match kind {
                    0 => rsp::hpack::encode_integer(&mut block, index, 7, 0x80),
                    _ => {
                        let (prefix, flags) = [(6, 0x40), (4, 0x00), (4, 0x10)][kind as usize - 1];
                        rsp::hpack::encode_integer(&mut block, 0, prefix, flags);
                        huffman_literal(&mut block, name.as_bytes(), huffman);
                        huffman_literal(&mut block, value.as_bytes(), huffman);
                    }
                }
            }
            let expected = theirs.decode(&block);
            let got = ours.decode(&block, 1 << 20, 1000, &mut list);
            prop_assert_eq!(expected.is_ok(), got.is_ok(), "{:?}", block);
            // After an error a connection ends: its table is no more.
            let Ok(expected) = expected else { break };
            let got: Vec<(Vec<u8>, Vec<u8>)> =
                list.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            prop_assert_eq!(expected, got);
        }
    }

    /// What rsp's encoder writes, a decoder reads back as it was.
    #[test]
    fn hpack_encoding_round_trips(
        status in 100u16..600,
        fields in prop::collection::vec(("[a-z-]{1,12}", prop::collection::vec(any::<u8>(), 0..200)), 0..10),
    ) {
        use rsp::hpack;
        let mut block = vec![0x20];
        hpack::encode_status(&mut block, status);
        for (name, value) in &fields {
            hpack::encode_field(&mut block, name.as_bytes(), value);
        }
        let mut decoder = rsp::h2::decoder();
        let mut list = rsp::hpack::HeaderList::default();
        decoder.decode(&block, 1 << 20, 1000, &mut list).unwrap();
        let decoded: Vec<(&[u8], &[u8])> = list.iter().collect();
        let expected = status.to_string();
        prop_assert_eq!(decoded[0].1, expected.as_bytes());
        for ((name, value), (got_name, got_value)) in fields.iter().zip(&decoded[1..]) {
            prop_assert_eq!(name.as_bytes(), *got_name);
            prop_assert_eq!(value.as_slice(), *got_value);
        }
    }

    /// The invariant across the codec pair HTTP/2 → HTTP/1.1: an HTTP/2
    /// request is refused as malformed, or read as an HTTP/1 head is; when
    /// rsp takes it, what `route()` sees (method, target, host, every
    /// field) is what the head written for the backend says, read back by
    /// rsp's own HTTP/1 parser, and the host is what the client's
    /// pseudo-headers said.
    #[test]
    fn h2_requests_reach_http1_backends_as_route_saw_them(fields in h2_fields(), end_stream: bool) {
        let fields: Vec<(&[u8], &[u8])> =
            fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())).collect();
        let Ok(request) = rsp::h2::request::check(fields.iter().copied(), end_stream) else {
            return Ok(());
        };
        let policy = RequestPolicy::default();
        let mut head = RequestHead::default();
        if head.read_h2(&request.parts, fields.iter().copied(), &policy, true).is_err() {
            return Ok(());
        }
        let authority = fields.iter().find(|(name, _)| *name == b":authority").unwrap();
        let canonical = rsp::host::canonical_owned(authority.1, 443).unwrap();
        let host = String::from_utf8_lossy(rsp::host::without_port(&canonical));
        prop_assert_eq!(host, head.host());
        prop_assert_eq!(head.method(), "GET");
        let none = Forwarding::none();
        let mut out = Vec::new();
        head.write_forwarded(&mut out, std::net::Ipv4Addr::LOCALHOST.into(), &none, None, true, true);
        let text = String::from_utf8_lossy(&out).into_owned();
        let mut sent = RequestHead::default();
        let parsed = sent.parse(&out, &policy, true);
        prop_assert!(matches!(parsed, Ok(Some(length)) if length == out.len()), "{:?} {}", parsed, text);
        prop_assert_eq!(sent.method(), head.method());
        prop_assert_eq!(sent.target(), head.target());
        prop_assert_eq!(sent.host(), head.host());
        for name in ["cookie", "host", "te", "content-length", "accept", "x-a", "x-upper", "user-agent", "transfer-encoding"] {
            let seen: Vec<&[u8]> = head.header_values(name).collect();
            let got: Vec<&[u8]> = sent.header_values(name).collect();
            prop_assert_eq!(seen, got, "{}: {}", name, text);
        }
        prop_assert!(!text.contains("connection:"), "{}", text);
        prop_assert!(!text.to_ascii_lowercase().contains("\r\nx-upper"), "{}", text);
    }
}

/// A string literal, Huffman-coded with the code built from RFC 7541's
/// code lengths (canonical), or plain: what a client's encoder writes.
fn huffman_literal(out: &mut Vec<u8>, bytes: &[u8], huffman: bool) {
    use rsp::hpack::{HUFFMAN_LENGTHS, encode_integer};
    if !huffman {
        encode_integer(out, bytes.len(), 7, 0);
        out.extend_from_slice(bytes);
        return;
    }
    // The canonical code: by length, then symbol.
    let mut order: Vec<usize> = (0..257).collect();
    order.sort_by_key(|&symbol| (HUFFMAN_LENGTHS[symbol], symbol));
    let mut codes = [(0u32, 0u8); 257];
    let (mut code, mut length) = (0u32, HUFFMAN_LENGTHS[order[0]]);
    for (at, &symbol) in order.iter().enumerate() {
        if at > 0 {
            code = (code + 1) << (HUFFMAN_LENGTHS[symbol] - length);
        }
        length = HUFFMAN_LENGTHS[symbol];
        codes[symbol] = (code, length);
    }
    let (mut bits, mut held, mut coded) = (0u64, 0u32, Vec::new());
    for &byte in bytes {
        let (code, length) = codes[byte as usize];
        bits = (bits << length) | u64::from(code);
        held += u32::from(length);
        while held >= 8 {
            coded.push((bits >> (held - 8)) as u8);
            held -= 8;
        }
    }
    if held > 0 {
        coded.push(((bits << (8 - held)) as u8) | ((1u8 << (8 - held)) - 1));
    }
    encode_integer(out, coded.len(), 7, 0x80);
    out.extend_from_slice(&coded);
}
