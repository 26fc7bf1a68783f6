//! Unit tests of request and response heads.

use super::*;
use crate::forwarding::Forwarding;
use crate::framing::Framing;

fn parse(raw: &str) -> Result<RequestHead, HeadError> {
    let mut head = RequestHead::default();
    let length = head
        .parse(raw.as_bytes(), &RequestPolicy::default(), false)?
        .expect("complete head");
    assert_eq!(length, raw.find("\r\n\r\n").unwrap() + 4);
    Ok(head)
}

fn forwarded_by(raw: &str, forwarding: &Forwarding, request_id: Option<&str>) -> String {
    let head = parse(raw).unwrap();
    let mut out = Vec::new();
    head.write_forwarded(
        &mut out,
        "10.1.2.3".parse().unwrap(),
        forwarding,
        request_id,
        false,
        false,
    );
    String::from_utf8(out).unwrap()
}

#[test]
fn backend_connections_are_asked_to_persist() {
    let keep = |raw: &str| {
        let mut out = Vec::new();
        let client = "10.1.2.3".parse().unwrap();
        parse(raw).unwrap().write_forwarded(
            &mut out,
            client,
            &Forwarding::default(),
            None,
            true,
            true,
        );
        String::from_utf8(out).unwrap()
    };
    let out = keep("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(!out.contains("Connection"), "{out}");
    assert!(out.contains("\r\nX-Forwarded-Proto: https\r\n"), "{out}");
    let out = keep("GET / HTTP/1.0\r\nHost: a\r\n\r\n");
    assert!(out.ends_with("\r\nConnection: keep-alive\r\n\r\n"), "{out}");
}

fn trusting(forwarding: Forwarding) -> Forwarding {
    Forwarding {
        trusted: vec![crate::forwarding::Network::parse("10.0.0.0/8").unwrap()],
        via: Some("edge-1".into()),
        ..forwarding
    }
}

fn forwarded(raw: &str) -> String {
    forwarded_by(raw, &trusting(Forwarding::default()), None)
}

#[test]
fn request_fields_for_routing() {
    let head =
        parse("GET /a/b?x=1&y HTTP/1.1\r\nHost: IronHand.Example.com:8080\r\nX-Thing: v\r\n\r\n")
            .unwrap();
    assert_eq!(head.method(), "GET");
    assert_eq!(head.target(), "/a/b?x=1&y");
    assert_eq!(head.path(), "/a/b");
    assert_eq!(head.query(), Some("x=1&y"));
    assert_eq!(head.host(), "ironhand.example.com");
    assert_eq!(head.version(), "1.1");
    assert_eq!(head.header("x-THING"), Some(&b"v"[..]));
    assert_eq!(head.header("missing"), None);
    assert!(head.keep_alive);
    assert_eq!(head.framing, Framing::Empty);
}

#[test]
fn absolute_form_and_ipv6_hosts() {
    let head = parse("GET http://Example.ORG:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n").unwrap();
    assert_eq!(head.host(), "example.org");
    assert_eq!(head.path(), "/p");
    let head = parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n").unwrap();
    assert_eq!(head.host(), "[::1]");
    let head = parse("GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(head.host(), "");
}

#[test]
fn every_spelling_of_a_host_is_routed_and_forwarded_as_one() {
    for (raw, host, forwarded_host) in [
        (
            "GET / HTTP/1.1\r\nHost: internal.corp.\r\n\r\n",
            "internal.corp",
            "internal.corp",
        ),
        (
            "GET / HTTP/1.0\r\nHost: INTERNAL.corp.:80\r\n\r\n",
            "internal.corp",
            "internal.corp",
        ),
        (
            "GET http://internal.corp./ HTTP/1.1\r\nHost: x\r\n\r\n",
            "internal.corp",
            "internal.corp",
        ),
        (
            "GET https://Internal.Corp:443/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "internal.corp",
            "internal.corp",
        ),
        (
            "GET http://internal.corp:443/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "internal.corp",
            "internal.corp:443",
        ),
        (
            "GET / HTTP/1.1\r\nHost: [0::1]:8080\r\n\r\n",
            "[::1]",
            "[::1]:8080",
        ),
    ] {
        let out = forwarded(raw);
        let head = parse(raw).unwrap();
        assert_eq!(head.host(), host, "{raw}");
        assert_eq!(
            head.header("Host"),
            Some(forwarded_host.as_bytes()),
            "{raw}"
        );
        assert_eq!(
            out.matches("Host: ").count(),
            2,
            "one Host and one X-Forwarded-Host: {out}"
        );
        assert!(
            out.contains(&format!("\r\nHost: {forwarded_host}\r\n")),
            "{out}"
        );
        assert!(
            out.contains(&format!("\r\nX-Forwarded-Host: {forwarded_host}\r\n")),
            "{out}"
        );
    }
    for bad in [
        "GET / HTTP/1.1\r\nHost: internal..corp\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 127.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a%2eb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a:0\r\n\r\n",
        "GET http://a..b/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ] {
        assert!(matches!(parse(bad), Err(HeadError::Host(_))), "{bad}");
    }
    // Over TLS the default port is 443's.
    let mut head = RequestHead::default();
    let raw = b"GET / HTTP/1.1\r\nHost: a.example:443\r\n\r\n";
    head.parse(raw, &RequestPolicy::default(), true).unwrap();
    assert_eq!(head.host_value(), Some(&b"a.example"[..]));
    head.parse(
        b"GET / HTTP/1.1\r\nHost: a.example:80\r\n\r\n",
        &RequestPolicy::default(),
        true,
    )
    .unwrap();
    assert_eq!(head.host_value(), Some(&b"a.example:80"[..]));
}

#[test]
fn route_sees_no_field_of_the_client_connection() {
    let head = parse(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Role, keep-alive\r\nX-Role: admin\r\n\
         Keep-Alive: 5\r\nTE: trailers\r\nUpgrade: websocket\r\nX-Other: 1\r\n\r\n",
    )
    .unwrap();
    for gone in ["X-Role", "Connection", "Keep-Alive", "TE", "Upgrade"] {
        assert_eq!(head.header(gone), None, "{gone}");
    }
    assert_eq!(head.header("X-Other"), Some(&b"1"[..]));
    let names: Vec<_> = head.fields().map(|(name, _)| name.to_vec()).collect();
    assert_eq!(names, vec![b"X-Other".to_vec()]);
    // A WebSocket handshake: route() sees what the backend gets.
    let head = parse(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: h2c, websocket\r\n\r\n",
    )
    .unwrap();
    assert!(head.upgrade);
    assert_eq!(head.header("Upgrade"), Some(&b"websocket"[..]));
    assert_eq!(head.header("Connection"), Some(&b"upgrade"[..]));
    let out = forwarded(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(out.matches("Upgrade: websocket").count(), 1, "{out}");
    assert!(
        out.ends_with("Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
        "{out}"
    );
}

#[test]
fn every_value_of_a_field_in_order() {
    let head =
        parse("GET / HTTP/1.1\r\nX-Role: user\r\nHost: a\r\nx-role: admin\r\nX-ROLE: x\r\n\r\n")
            .unwrap();
    assert_eq!(head.header("x-role"), Some(&b"user"[..]));
    let values: Vec<_> = head.header_values("X-Role").collect();
    assert_eq!(values, vec![&b"user"[..], b"admin", b"x"]);
    let hosts: Vec<_> = head.header_values("HOST").collect();
    assert_eq!(hosts, vec![&b"a"[..]]);
}

#[test]
fn a_request_that_came_through_rsp_is_known() {
    for (via, looped) in [
        ("1.1 edge-1", true),
        ("1.0 other, 1.1 EDGE-1 (rsp)", true),
        ("HTTP/2 edge-1", true),
        ("2 proxy.example:8080, 1.1 edge-1", true),
        ("1.1 edge-10", false),
        ("1.1 other (edge-1)", false),
        ("edge-1", false),
    ] {
        let head = parse(&format!("GET / HTTP/1.1\r\nHost: a\r\nVia: {via}\r\n\r\n")).unwrap();
        assert_eq!(head.came_through("edge-1"), looped, "{via}");
    }
    let head = parse("GET / HTTP/1.1\r\nHost: a\r\nVia: 1.1 a\r\nVia: 1.1 edge-1\r\n\r\n").unwrap();
    assert!(head.came_through("edge-1"));
    let out = forwarded("GET / HTTP/1.0\r\nHost: a\r\nVia: 1.1 b\r\n\r\n");
    assert!(out.contains("\r\nVia: 1.1 b\r\n"), "{out}");
    assert!(out.contains("\r\nVia: 1.0 edge-1\r\n"), "{out}");
}

#[test]
fn persistence_by_version_and_connection() {
    assert!(!parse("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
    assert!(
        parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .keep_alive
    );
    assert!(
        !parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .keep_alive
    );
    assert!(
        parse("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .keep_alive
    );
}

#[test]
fn request_framing() {
    let head = parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n").unwrap();
    assert_eq!(head.framing, Framing::Length(12));
    let head =
        parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12, 12\r\nContent-Length: 12\r\n\r\n")
            .unwrap();
    assert_eq!(head.framing, Framing::Length(12));
    let head =
        parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n").unwrap();
    assert_eq!(head.framing, Framing::Chunked);
}

#[test]
fn ambiguous_requests_are_refused() {
    let refused = [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
    ];
    for raw in refused {
        assert!(
            matches!(parse(raw), Err(HeadError::Framing(_))),
            "accepted {raw:?}"
        );
    }
    let malformed = [
        "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nFolded: x\r\n y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nBad\0Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nName: x\0y\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nName: x\ry\r\n\r\n",
    ];
    for raw in malformed {
        let mut head = RequestHead::default();
        assert!(
            head.parse(raw.as_bytes(), &RequestPolicy::default(), false)
                .is_err(),
            "accepted {raw:?}"
        );
    }
}

#[test]
fn too_many_fields() {
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for index in 0..MAX_HEADERS {
        raw.push_str(&format!("X-{index}: v\r\n"));
    }
    raw.push_str("\r\n");
    let mut head = RequestHead::default();
    assert_eq!(
        head.parse(raw.as_bytes(), &RequestPolicy::default(), false),
        Err(HeadError::TooManyHeaders)
    );
}

#[test]
fn partial_head_needs_more() {
    let mut head = RequestHead::default();
    assert_eq!(
        head.parse(
            b"GET / HTTP/1.1\r\nHost: a\r\n",
            &RequestPolicy::default(),
            false
        ),
        Ok(None)
    );
}

#[test]
fn forwarded_head_drops_hop_by_hop_and_adds_forwarding_fields() {
    let out = forwarded(
        "GET /x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, Content-Length\r\nKeep-Alive: 5\r\n\
         X-Secret: s\r\nTE: trailers\r\nUpgrade: foo\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\n\
         X-Forwarded-Proto: https\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(
        out,
        "GET /x HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\nAccept: */*\r\n\
         X-Forwarded-For: 1.1.1.1, 2.2.2.2, 10.1.2.3\r\nX-Forwarded-Host: a\r\nVia: 1.1 edge-1\r\n\
         Connection: close\r\n\r\n"
    );
    let out =
        forwarded("POST /y HTTP/1.0\r\nContent-Length: 3\r\nConnection: content-length\r\n\r\n");
    assert!(
        out.starts_with(
            "POST /y HTTP/1.0\r\nContent-Length: 3\r\nX-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n"
        ),
        "{out}"
    );
}

#[test]
fn untrusted_forwarding_fields_are_replaced() {
    let raw = "GET / HTTP/1.1\r\nHost: shop.example:8080\r\nX-Forwarded-For: 6.6.6.6\r\n\
               X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nForwarded: for=6.6.6.6\r\n\
               X-Request-Id: mine\r\n\r\n";
    let everything = Forwarding {
        forwarded: true,
        via: Some("edge-1".into()),
        ..Forwarding::default()
    };
    assert_eq!(
        forwarded_by(raw, &everything, Some("abc")),
        "GET / HTTP/1.1\r\nHost: shop.example:8080\r\nX-Forwarded-For: 10.1.2.3\r\n\
         X-Forwarded-Proto: http\r\nX-Forwarded-Host: shop.example:8080\r\n\
         Forwarded: for=10.1.2.3;host=\"shop.example:8080\";proto=http\r\nVia: 1.1 edge-1\r\n\
         X-Request-Id: abc\r\nConnection: close\r\n\r\n"
    );
    // Trusted: kept, and the list fields extended.
    let out = forwarded_by(raw, &trusting(everything.clone()), Some("abc"));
    assert!(out.contains("X-Forwarded-Proto: https\r\n"), "{out}");
    assert!(out.contains("X-Forwarded-Host: evil\r\n"), "{out}");
    assert!(
        out.contains("X-Forwarded-For: 6.6.6.6, 10.1.2.3\r\n"),
        "{out}"
    );
    assert!(
        out.contains("Forwarded: for=6.6.6.6, for=10.1.2.3;host="),
        "{out}"
    );
    assert_eq!(out.matches("X-Request-Id").count(), 1, "{out}");
    // Every field switched off: nothing added, an untrusted client's dropped.
    let none = Forwarding::none();
    assert_eq!(
        forwarded_by(raw, &none, None),
        "GET / HTTP/1.1\r\nHost: shop.example:8080\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn client_request_ids_are_kept_only_when_valid() {
    let head =
        parse("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: bad id\r\nX-Request-Id: good-1\r\n\r\n")
            .unwrap();
    assert_eq!(head.request_id(), Some("good-1"));
    let head = parse("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: \r\n\r\n").unwrap();
    assert_eq!(head.request_id(), None);
}

const KEEP_11: ClientSide = ClientSide {
    head_request: false,
    minor_version: 1,
    keep_alive: true,
    upgrade: false,
};

fn response(raw: &str, client: ClientSide) -> (Result<Option<ResponseInfo>, HeadError>, String) {
    let mut out = Vec::new();
    let info = forward_response_head(
        raw.as_bytes(),
        client,
        b"websocket",
        None,
        crate::message::Out::http1(&mut out),
    );
    (info, String::from_utf8(out).unwrap())
}

#[test]
fn response_fields_named_by_connection_are_dropped() {
    let (info, out) = response(
        "HTTP/1.1 404 Not Found\r\nConnection: X-Internal, keep-alive\r\nX-Internal: 1\r\n\
         Keep-Alive: timeout=5\r\nContent-Length: 0\r\nX-Public: 2\r\n\r\n",
        KEEP_11,
    );
    assert!(info.unwrap().unwrap().backend_keep_alive);
    assert_eq!(
        out,
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nX-Public: 2\r\n\r\n"
    );
    // Without a Connection field naming one, every end-to-end field stays.
    let (_, out) = response(
        "HTTP/1.1 599 Odd\r\nX-Internal: 1\r\nContent-Length: 0\r\n\r\n",
        KEEP_11,
    );
    assert_eq!(
        out,
        "HTTP/1.1 599 Odd\r\nX-Internal: 1\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn response_framing_and_persistence() {
    let (info, out) = response(
        "HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        KEEP_11,
    );
    let info = info.unwrap().unwrap();
    assert_eq!(info.framing, Framing::Length(5));
    assert!(info.keep_alive);
    assert!(!info.backend_keep_alive);
    assert_eq!(out, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
    let persists = |raw: &str| {
        response(raw, KEEP_11)
            .0
            .unwrap()
            .unwrap()
            .backend_keep_alive
    };
    assert!(persists("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(persists(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    ));
    assert!(persists(
        "HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: Keep-Alive\r\n\r\n"
    ));
    assert!(!persists("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
    assert!(!persists(
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    assert!(!persists("HTTP/1.1 200 OK\r\n\r\n"));

    let (info, out) = response("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", KEEP_11);
    let info = info.unwrap().unwrap();
    assert_eq!(info.framing, Framing::UntilClose);
    assert!(!info.keep_alive);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nServer: x\r\nConnection: close\r\n\r\n"
    );

    let (info, out) = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n",
        KEEP_11,
    );
    assert_eq!(info.unwrap().unwrap().framing, Framing::Chunked);
    assert_eq!(out, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");

    let client_10 = ClientSide {
        minor_version: 0,
        ..KEEP_11
    };
    let (_, out) = response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", client_10);
    assert_eq!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
    );
    let (info, _) = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        client_10,
    );
    assert!(info.is_err());
}

#[test]
fn responses_without_bodies() {
    for raw in [
        "HTTP/1.1 204 No Content\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
    ] {
        let info = response(raw, KEEP_11).0.unwrap().unwrap();
        assert_eq!(info.framing, Framing::Empty, "{raw}");
        assert!(info.keep_alive);
    }
    let head = ClientSide {
        head_request: true,
        ..KEEP_11
    };
    let info = response("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", head)
        .0
        .unwrap()
        .unwrap();
    assert_eq!(info.framing, Framing::Empty);
}

#[test]
fn interim_responses() {
    let (info, out) = response("HTTP/1.1 100 Continue\r\n\r\n", KEEP_11);
    assert!(info.unwrap().unwrap().is_interim());
    assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
    let client_10 = ClientSide {
        minor_version: 0,
        ..KEEP_11
    };
    let (info, out) = response("HTTP/1.1 100 Continue\r\n\r\n", client_10);
    assert!(info.unwrap().unwrap().is_interim());
    assert_eq!(out, "");
}

#[test]
fn upgrade_requests_and_switches() {
    let raw = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\n\
               Upgrade: websocket\r\nSec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let head = parse(raw).unwrap();
    assert!(head.upgrade);
    let mut out = Vec::new();
    let client = "10.1.2.3".parse().unwrap();
    head.write_forwarded(&mut out, client, &Forwarding::default(), None, true, false);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("\r\nSec-WebSocket-Key: k\r\n"), "{out}");
    assert!(
        out.ends_with("\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
        "{out}"
    );
    // Not an upgrade: no Connection token, HTTP/1.0, or a body.
    for raw in [
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\nContent-Length: 1\r\n\r\n",
    ] {
        assert!(!parse(raw).unwrap().upgrade, "{raw}");
    }
    let upgrading = ClientSide {
        upgrade: true,
        ..KEEP_11
    };
    let (info, out) = response(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: a\r\n\r\n",
        upgrading,
    );
    let info = info.unwrap().unwrap();
    assert!(info.is_switch() && !info.is_interim());
    assert_eq!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: a\r\n\
         Connection: upgrade\r\n\r\n"
    );
    // A plain answer to an upgrade request stays HTTP.
    let (info, _) = response(
        "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n",
        upgrading,
    );
    assert!(!info.unwrap().unwrap().is_switch());
}

#[test]
fn bad_responses() {
    for raw in [
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        // A switch nobody asked for.
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "garbage\r\n\r\n",
    ] {
        assert!(response(raw, KEEP_11).0.is_err(), "{raw}");
    }
    assert_eq!(response("HTTP/1.1 200 OK\r\nA: b\r\n", KEEP_11).0, Ok(None));
}
