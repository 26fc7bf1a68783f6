//! An HTTP/2 stream's request is read from its decoded header list
//! (`h2::request::check`, then `RequestHead::read_h2`), not re-parsed as
//! HTTP/1.1 text. These tests send the same request over HTTP/2 (raw
//! frames, any header list) and over HTTP/1.1 (raw bytes) through one rsp
//! and compare, byte for byte, what `route()` saw and what a recording
//! backend received: the security rule is that what `route()` saw is what
//! the backend gets, whichever protocol the client speaks, and that a
//! request one protocol refuses the other does not let through.

mod common;

use std::time::Duration;

use common::h2::*;
use common::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The fields route() reports, by name (any case): their every value.
const NAMES: &[&str] = &[
    "host",
    "cookie",
    "x-a",
    "x-b",
    "x_a",
    "te",
    "transfer-encoding",
    "content-length",
    "expect",
    "via",
    "connection",
    "upgrade",
    "keep-alive",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-long",
    "x-obs",
];

/// rsp (h2c and HTTP/1.1 on one listener) in front of a raw recorder,
/// whose route() writes what it saw (method, target, host, and every
/// value of each of `NAMES`), hex-coded so no byte is lost, into the
/// response's `X-Seen`.
struct Rig {
    recorder: Recorder,
    proxy: Proxy,
}

fn rig(settings: &str) -> Rig {
    let recorder = Recorder::answering_continue(OK);
    let names = NAMES
        .iter()
        .map(|name| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let proxy = Proxy::start_h2c(&format!(
        r#"backends = {{ "{}" }}
request_id = false
{settings}
local function hex(text)
  return (text:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
function route(req)
  local seen = {{ "method=" .. req.method, "target=" .. req.target, "host=" .. req.host }}
  for _, name in ipairs({{ {names} }}) do
    for _, value in ipairs(req:header_values(name)) do
      seen[#seen + 1] = name .. "=" .. value
    end
  end
  req.ctx.seen = hex(table.concat(seen, "\n"))
  return "default"
end
function respond(req, res)
  res:set_header("X-Seen", req.ctx.seen or "")
end"#,
        recorder.address
    ));
    Rig { recorder, proxy }
}

/// What became of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// It reached the backend: what route() saw, and the bytes the
    /// backend got.
    Forwarded {
        route_saw: String,
        backend_got: String,
    },
    /// rsp answered it itself with this status (or, over HTTP/2, reset
    /// the stream: status 0, with the code in `reset`).
    Refused { status: u16, reset: Option<u32> },
}

impl Verdict {
    fn forwarded(&self) -> bool {
        matches!(self, Verdict::Forwarded { .. })
    }
}

fn unhex(text: &str) -> String {
    let bytes: Vec<u8> = (0..text.len() / 2)
        .map(|at| u8::from_str_radix(&text[2 * at..2 * at + 2], 16).unwrap())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A header block of literal fields without indexing (new names), any
/// length.
fn block(fields: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        literal(&mut out, name, value);
    }
    out
}

/// HEADERS (and CONTINUATIONs) for `fields` on stream 1.
fn headers_frames(fields: &[(Vec<u8>, Vec<u8>)], end_stream: bool) -> Vec<u8> {
    let block = block(fields);
    let pieces: Vec<&[u8]> = block.chunks(16_000).collect();
    let pieces = if pieces.is_empty() {
        vec![&[][..]]
    } else {
        pieces
    };
    let mut out = Vec::new();
    for (at, piece) in pieces.iter().enumerate() {
        let last = at + 1 == pieces.len();
        let mut flags = if last { END_HEADERS } else { 0 };
        let kind = if at == 0 {
            if end_stream {
                flags |= END_STREAM;
            }
            kind::HEADERS
        } else {
            kind::CONTINUATION
        };
        out.extend(frame(kind, flags, 1, piece));
    }
    out
}

/// One request: its pseudo-header fields, its regular fields (lower
/// case, as HTTP/2 requires), and a body.
#[derive(Clone, Debug)]
struct Request {
    pseudo: Vec<(Vec<u8>, Vec<u8>)>,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

fn bytes(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

impl Request {
    fn get(path: &str) -> Request {
        Request::with(b"GET", path.as_bytes(), Some(b"shop.example"))
    }

    fn with(method: &[u8], path: &[u8], authority: Option<&[u8]>) -> Request {
        let mut pseudo = vec![
            (bytes(":method"), method.to_vec()),
            (bytes(":scheme"), bytes("http")),
        ];
        if let Some(authority) = authority {
            pseudo.push((bytes(":authority"), authority.to_vec()));
        }
        pseudo.push((bytes(":path"), path.to_vec()));
        Request {
            pseudo,
            fields: Vec::new(),
            body: None,
        }
    }

    fn field(mut self, name: &str, value: &[u8]) -> Request {
        self.fields.push((bytes(name), value.to_vec()));
        self
    }

    fn body(mut self, body: &[u8]) -> Request {
        self.body = Some(body.to_vec());
        self
    }

    fn pseudo(&self, name: &str) -> Option<&[u8]> {
        self.pseudo
            .iter()
            .find(|(field, _)| field == name.as_bytes())
            .map(|(_, value)| &value[..])
    }

    /// The HTTP/1.1 request HTTP/2's rules make of this one (RFC 9113
    /// §8.3.1, §8.2.3): the request line, `:authority` as the Host, the
    /// fields in order but the cookie crumbs, joined on one line, and a
    /// body without a length sent chunked.
    fn http1(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(self.pseudo(":method").unwrap_or_default());
        out.push(b' ');
        out.extend_from_slice(
            self.pseudo(":path")
                .or(self.pseudo(":authority"))
                .unwrap_or_default(),
        );
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(authority) = self.pseudo(":authority") {
            out.extend_from_slice(b"host: ");
            out.extend_from_slice(authority);
            out.extend_from_slice(b"\r\n");
        }
        let mut cookies: Vec<&[u8]> = Vec::new();
        let mut length = false;
        for (name, value) in &self.fields {
            if name == b"cookie" {
                cookies.push(value);
                continue;
            }
            if name == b"host" && self.pseudo(":authority").is_some() {
                continue;
            }
            length |= name == b"content-length";
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !cookies.is_empty() {
            out.extend_from_slice(b"cookie: ");
            out.extend_from_slice(&cookies.join(&b"; "[..]));
            out.extend_from_slice(b"\r\n");
        }
        let chunked = self.body.is_some() && !length;
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = &self.body {
            if chunked {
                if !body.is_empty() {
                    out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
                    out.extend_from_slice(body);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            } else {
                out.extend_from_slice(body);
            }
        }
        out
    }
}

/// What rsp made of the request's HTTP/1.1 spelling.
fn over_http1(rig: &Rig, request: &Request) -> Verdict {
    over_http1_raw(rig, &request.http1())
}

/// What rsp made of these bytes from an HTTP/1.1 client.
fn over_http1_raw(rig: &Rig, raw: &[u8]) -> Verdict {
    let before = rig.recorder.count();
    let mut client = rig.proxy.connect();
    client.send(raw);
    let mut response = client.try_response(raw.starts_with(b"HEAD "));
    // Interim answers (100 Continue) are not the verdict.
    while response
        .as_ref()
        .is_some_and(|response| response.status < 200)
    {
        response = client.try_response(raw.starts_with(b"HEAD "));
    }
    let Some(response) = response else {
        return Verdict::Refused {
            status: 0,
            reset: None,
        };
    };
    verdict(
        rig,
        before,
        response.status,
        response.header("x-seen"),
        None,
    )
}

/// What rsp made of the request over HTTP/2, on a connection of its own.
fn over_http2(rig: &Rig, request: &Request) -> Verdict {
    let before = rig.recorder.count();
    let mut wire = Wire::open(rig.proxy.address);
    let list: Vec<_> = request
        .pseudo
        .iter()
        .chain(&request.fields)
        .cloned()
        .collect();
    wire.send(&headers_frames(&list, request.body.is_none()));
    if let Some(body) = &request.body {
        for piece in body.chunks(16_000) {
            wire.send(&frame(kind::DATA, 0, 1, piece));
        }
        wire.send(&frame(kind::DATA, END_STREAM, 1, b""));
    }
    let final_status = |seen: &Received| {
        seen.statuses
            .iter()
            .any(|&(stream, status)| stream == 1 && status >= 200)
    };
    wire.read_until(Duration::from_secs(5), |seen| {
        final_status(seen) || seen.resets.iter().any(|&(stream, _)| stream == 1)
    });
    let status = wire
        .seen
        .statuses
        .iter()
        .rev()
        .find(|&&(stream, status)| stream == 1 && status >= 200)
        .map(|&(_, status)| status);
    let seen_field = wire
        .seen
        .fields
        .iter()
        .rev()
        .filter(|(stream, _)| *stream == 1)
        .flat_map(|(_, fields)| fields.iter())
        .find(|(name, _)| name == "x-seen")
        .map(|(_, value)| value.clone());
    let reset = wire.resets_of(1).first().copied();
    match status {
        Some(status) => verdict(rig, before, status, seen_field, reset),
        None => Verdict::Refused { status: 0, reset },
    }
}

fn verdict(
    rig: &Rig,
    before: usize,
    status: u16,
    seen: Option<String>,
    reset: Option<u32>,
) -> Verdict {
    match seen {
        Some(seen) if rig.recorder.count() > before => {
            let got = rig.recorder.raw(before);
            // The one line the protocols may differ in: HTTP/1.1 asked to
            // close (the test client's own framing), HTTP/2 did not.
            let got = String::from_utf8_lossy(&got)
                .replace("Connection: close\r\n", "")
                .replace("connection: close\r\n", "");
            Verdict::Forwarded {
                route_saw: unhex(&seen),
                backend_got: got,
            }
        }
        _ => Verdict::Refused { status, reset },
    }
}

/// Both protocols, and the proof of the rule for each: what route() saw
/// of the request line, host and fields is in what the backend got.
fn both(rig: &Rig, request: &Request) -> (Verdict, Verdict) {
    let one = over_http1(rig, request);
    let two = over_http2(rig, request);
    (one, two)
}

fn assert_same(rig: &Rig, request: &Request) -> Verdict {
    let (one, two) = both(rig, request);
    assert_eq!(
        one,
        two,
        "HTTP/1.1 (left) and HTTP/2 (right) differ for {request:?}\nHTTP/1.1 bytes: {:?}\n{}",
        String::from_utf8_lossy(&request.http1()),
        rig.proxy.log()
    );
    two
}

/// The same verdict: forwarded alike, or refused by both (HTTP/2 may
/// reset a stream where HTTP/1.1 answers 400: RFC 9113 calls the request
/// malformed), with the same status when both answered.
fn alike(one: &Verdict, two: &Verdict) -> bool {
    match (one, two) {
        (Verdict::Refused { status: a, .. }, Verdict::Refused { status: b, .. }) => {
            a == b || *a == 0 || *b == 0
        }
        _ => one == two,
    }
}

/// Refused over both, in whatever way each protocol refuses.
fn assert_refused_by_both(rig: &Rig, request: &Request) {
    let (one, two) = both(rig, request);
    assert!(
        !one.forwarded() && !two.forwarded(),
        "{request:?}: HTTP/1.1 {one:?}, HTTP/2 {two:?}\n{}",
        rig.proxy.log()
    );
}

fn line_of<'a>(got: &'a str, name: &str) -> Vec<&'a str> {
    got.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .filter(|(field, _)| field.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
        .collect()
}

// ---------------------------------------------------------------------
// Attacks that held.
// ---------------------------------------------------------------------

/// A table of header lists, each sent over both protocols through one
/// rsp: each gets the same verdict, and when forwarded route() saw the
/// same thing and the backend got the same bytes (the Via line aside,
/// which names the protocol: it is off here).
#[test]
fn the_same_request_gets_the_same_treatment_over_both_protocols() {
    let rig = rig("forwarded_headers = { via = false, forwarded = true }");
    let long = vec![b'v'; 20_000];
    let table: Vec<Request> = vec![
        Request::get("/plain?q=1"),
        Request::get("/a/./b/../c//d?x=%41"),
        Request::get("/%61dmin"),
        Request::get("/admin%2fx"),
        Request::get("/a%00b"),
        Request::get("/a\\b"),
        Request::get("/../etc"),
        Request::get("/a%zz"),
        Request::get("/caf\u{e9}?q=\u{e9}"),
        Request::get("/a\"b<c>{d}|e^f`g"),
        Request::get("/frag#x"),
        Request::get("/x").field("x-a", b"1").field("x-a", b"2"),
        Request::get("/x").field("x-a", b""),
        Request::get("/x").field("x-a", b"in\tside"),
        Request::get("/x").field("x-a", b"a\x01b"),
        Request::get("/x").field("x-a", b"a\x7fb"),
        Request::get("/x").field("x-obs", b"caf\xe9 \xff\x80"),
        Request::get("/x").field("x-long", &long),
        Request::get("/x").field("x_a", b"dropped"),
        Request::get("/x").field("x-forwarded-for", b"10.0.0.1"),
        Request::get("/x").field("x-forwarded-host", b"admin.internal"),
        Request::get("/x").field("x-forwarded-proto", b"https"),
        Request::get("/x").field("forwarded", b"for=10.0.0.1;host=admin"),
        Request::get("/x").field("expect", b"100-continue"),
        Request::get("/x")
            .field("cookie", b"a=1")
            .field("x-a", b"between")
            .field("cookie", b"b=2"),
        Request::get("/x").field("cookie", b"a=\x01"),
        Request::get("/x").field("host", b"Shop.Example.:80"),
        Request::with(b"GET", b"/x", Some(b"Shop.EXAMPLE.:80")),
        Request::with(b"GET", b"/x", Some(b"[0:0::1]:8080")),
        Request::with(b"GET", b"/x", Some(b"127.1")),
        Request::with(b"GET", b"/x", Some(b"user@shop.example")),
        Request::with(b"GET", b"/x", Some(b"internal..corp")),
        Request::with(b"GET", b"/x", Some(b"shop.example:0")),
        Request::with(b"GET", b"/x", Some(b"")),
        Request::with(b"GET", b"/x", None).field("host", b"Shop.Example"),
        Request::with(b"GET", b"/x", None),
        Request::with(b"GET", b"/x", None).field("host", b""),
        Request::with(b"GET", b"http://Shop.Example/x", None).field("host", b"shop.example"),
        Request::with(
            b"GET",
            format!("/{}", "a".repeat(20_000)).as_bytes(),
            Some(b"shop.example"),
        ),
        Request::get("/x").field("content-length", b"0"),
        Request::get("/x").field("content-length", b"1000000000000000000"),
        Request::get("/x").field("http2-settings", b"AAMAAABkAAQAoAAAAAIAAAAA"),
        Request::with(b"connect", b"/x", Some(b"shop.example")),
        Request::with(b"OPTIONS", b"*", Some(b"shop.example")),
        Request::with(b"GET", b"*", Some(b"shop.example")),
        Request::with(b"get", b"/x", Some(b"shop.example")),
        Request::with(b"G(T", b"/x", Some(b"shop.example")),
        Request::with(b"PRI", b"/x", Some(b"shop.example")),
        Request {
            pseudo: vec![
                (bytes(":method"), bytes("CONNECT")),
                (bytes(":authority"), bytes("shop.example:443")),
            ],
            fields: Vec::new(),
            body: None,
        },
        Request::with(b"POST", b"/up", Some(b"shop.example")).body(b"hello"),
        Request::with(b"POST", b"/up", Some(b"shop.example"))
            .field("content-length", b"5")
            .body(b"hello"),
        Request::with(b"POST", b"/up", Some(b"shop.example"))
            .field("content-length", b"5")
            .field("content-length", b"5")
            .body(b"hello"),
        Request::with(b"POST", b"/up", Some(b"shop.example"))
            .field("expect", b"100-continue")
            .field("content-length", b"5")
            .body(b"hello"),
    ];
    let mut forwarded = 0;
    let mut differences = Vec::new();
    for request in &table {
        let (one, two) = both(&rig, request);
        forwarded += usize::from(two.forwarded());
        if !alike(&one, &two) {
            differences.push(format!(
                "{:?}\n  HTTP/1.1: {one:?}\n  HTTP/2:   {two:?}",
                String::from_utf8_lossy(&request.http1())
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} differ:\n{}\n{}",
        differences.len(),
        table.len(),
        differences.join("\n"),
        rig.proxy.log()
    );
    assert!(forwarded > 20, "too few of the table were forwarded");
}

/// The field count bound: `Host` and 127 more is the most either protocol
/// takes; cookie crumbs count as one field (as the joined HTTP/1.1 line
/// does), dropped fields (underscores) count as sent.
#[test]
fn the_field_count_bound_is_the_same_over_both_protocols() {
    let rig = rig("forwarded_headers = { via = false }");
    let with = |count: usize, name: &str| {
        let mut request = Request::get("/x");
        for at in 0..count {
            request = request.field(&format!("{name}{at}"), b"v");
        }
        request
    };
    // Host and 127: taken.
    assert!(assert_same(&rig, &with(127, "x-f")).forwarded());
    // Host and 128: refused, 431 over both.
    let (one, two) = both(&rig, &with(128, "x-f"));
    assert_eq!(one, two);
    assert_eq!(
        two,
        Verdict::Refused {
            status: 431,
            reset: None
        }
    );
    // Dropped fields count.
    let (one, two) = both(&rig, &with(128, "x_f"));
    assert_eq!((one.forwarded(), two.forwarded()), (false, false));
    // A body without a length takes a line (transfer-encoding).
    let body = with(127, "x-f").body(b"x");
    let (one, two) = both(&rig, &body);
    assert_eq!((one.forwarded(), two.forwarded()), (false, false));
    // 300 cookie crumbs are one line.
    let mut cookies = Request::get("/x");
    for at in 0..300 {
        cookies = cookies.field("cookie", format!("c{at}=1").as_bytes());
    }
    let verdict = over_http2(&rig, &cookies);
    let Verdict::Forwarded { backend_got, .. } = verdict else {
        panic!("{verdict:?}");
    };
    assert_eq!(line_of(&backend_got, "cookie").len(), 1);
}

/// The head byte bound, with regular fields only: the same answer over
/// both at the edge of `max_header_bytes`.
#[test]
fn the_head_byte_bound_holds_for_kept_fields() {
    let rig = rig("max_header_bytes = 8192\nforwarded_headers = { via = false }");
    let big = |size: usize| Request::get("/x").field("x-long", &vec![b'v'; size]);
    assert!(assert_same(&rig, &big(7000)).forwarded());
    let (one, two) = both(&rig, &big(9000));
    assert_eq!(one, two);
    assert_eq!(
        two,
        Verdict::Refused {
            status: 431,
            reset: None
        }
    );
}

/// What HTTP/2 calls malformed (RFC 9113 §8.2) is refused (the stream is
/// reset), and nothing of it reaches route() or the backend: connection
/// fields, TE other than trailers, upper-case names, outer whitespace,
/// NUL/CR/LF, pseudo-headers out of place, :protocol, a host other than
/// :authority, an absolute :path naming another authority or scheme.
#[test]
fn malformed_http2_requests_reach_neither_route_nor_the_backend() {
    let rig = rig("");
    let mut cases = vec![
        Request::get("/x").field("connection", b"close"),
        Request::get("/x").field("keep-alive", b"5"),
        Request::get("/x").field("proxy-connection", b"keep-alive"),
        Request::get("/x").field("transfer-encoding", b"chunked"),
        Request::get("/x").field("upgrade", b"h2c"),
        Request::get("/x").field("te", b"gzip"),
        Request::get("/x").field("te", b"trailers, deflate"),
        Request::get("/x").field("X-A", b"upper"),
        Request::get("/x").field("", b"empty name"),
        Request::get("/x").field("x:a", b"colon"),
        Request::get("/x").field(":x", b"pseudo"),
        Request::get("/x").field("x a", b"space"),
        Request::get("/x").field("x-a", b" lead"),
        Request::get("/x").field("x-a", b"trail\t"),
        Request::get("/x").field("x-a", b"a\0b"),
        Request::get("/x").field("x-a", b"a\r\nx-injected: 1"),
        Request::get("/x").field("x-a", b"a\nb"),
        Request::get("/x").field(":path", b"/late"),
        Request::get("/x").field(":protocol", b"websocket"),
        Request::get("/x").field("host", b"admin.internal"),
        Request::with(b"GET", b"/x", Some(b"")).field("host", b"shop.example"),
        Request::get("/x").field("content-length", b"x"),
        Request::get("/x").field("content-length", b"-1"),
        Request::with(b"GET", b"http://admin.internal/x", Some(b"shop.example")),
        Request::with(b"GET", b"https://shop.example/x", Some(b"shop.example")),
        Request::with(b"GET", b"http://admin.internal/x", None),
        Request::with(b"GET", b"/a b", Some(b"shop.example")),
        Request::with(b"GET", b"/a\tb", Some(b"shop.example")),
        Request::with(b"GET", b"", Some(b"shop.example")),
        Request::with(b"G T", b"/x", Some(b"shop.example")),
    ];
    // A body that does not add up to its content-length.
    cases.push(
        Request::with(b"POST", b"/x", Some(b"shop.example"))
            .field("content-length", b"10")
            .body(b"short"),
    );
    cases.push(
        Request::with(b"POST", b"/x", Some(b"shop.example"))
            .field("content-length", b"2")
            .body(b"longer"),
    );
    for request in &cases {
        let verdict = over_http2(&rig, request);
        assert!(!verdict.forwarded(), "{request:?}: {verdict:?}");
    }
    assert_eq!(rig.recorder.count(), 0, "{}", rig.proxy.log());
}

/// An absolute-form :path naming the request's own scheme and authority
/// is taken as origin-form, as HTTP/1 takes an absolute-form target: the
/// same route() view and the same bytes for the backend.
#[test]
fn an_absolute_path_of_the_requests_own_authority_is_read_as_http1_reads_it() {
    let rig = rig("forwarded_headers = { via = false }");
    let two = over_http2(
        &rig,
        &Request::with(
            b"GET",
            b"HTTP://Shop.Example:80/a/../b?q",
            Some(b"shop.example"),
        ),
    );
    let mut one_request = Request::get("/b?q");
    one_request.pseudo[2].1 = bytes("shop.example");
    let one = over_http1(&rig, &one_request);
    assert_eq!(one, two);
    let Verdict::Forwarded { backend_got, .. } = two else {
        panic!()
    };
    assert!(backend_got.starts_with("GET /b?q HTTP/1.1\r\nHost: shop.example\r\n"));
}

/// A client outside `trusted_proxies` never gets its forwarding fields
/// past route() over HTTP/2 either (route() sees none, the backend gets
/// rsp's own), in any crumbling of them; `x_forwarded_for` spelled with
/// underscores is dropped before both.
#[test]
fn forged_forwarding_fields_reach_neither_route_nor_the_backend_over_http2() {
    let rig = rig("forwarded_headers = { via = false, forwarded = true }");
    let request = Request::get("/x")
        .field("x-forwarded-for", b"10.0.0.1")
        .field("x-forwarded-for", b"10.0.0.2")
        .field("x-forwarded-host", b"admin.internal")
        .field("x-forwarded-proto", b"https")
        .field("forwarded", b"for=10.0.0.1;host=admin.internal")
        .field("x_forwarded_for", b"10.0.0.3");
    let Verdict::Forwarded {
        route_saw,
        backend_got,
    } = over_http2(&rig, &request)
    else {
        panic!("{}", rig.proxy.log());
    };
    for forged in ["10.0.0.", "admin.internal", "https"] {
        assert!(!route_saw.contains(forged), "{route_saw}");
        assert!(!backend_got.contains(forged), "{backend_got}");
    }
    assert_eq!(line_of(&backend_got, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(line_of(&backend_got, "x-forwarded-host"), ["shop.example"]);
}

/// `te: trailers` is the one TE HTTP/2 allows; like HTTP/1's TE it is
/// hop-by-hop: neither route() nor the backend sees it. Trailers of a
/// body without a length reach the backend as the chunked body's trailer
/// section, without the fields that could reframe or reroute it.
#[test]
fn te_trailers_and_request_trailers_are_hop_by_hop_as_in_http1() {
    let rig = rig("forwarded_headers = { via = false }");
    let request = Request::with(b"POST", b"/up", Some(b"shop.example"))
        .field("te", b"trailers")
        .field("x-a", b"1");
    let Verdict::Forwarded {
        route_saw,
        backend_got,
    } = over_http2(&rig, &request.clone().body(b""))
    else {
        panic!("{}", rig.proxy.log());
    };
    assert!(!route_saw.contains("te="), "{route_saw}");
    assert!(line_of(&backend_got, "te").is_empty(), "{backend_got}");

    // Trailers after DATA.
    let before = rig.recorder.count();
    let mut wire = Wire::open(rig.proxy.address);
    let list: Vec<_> = request
        .pseudo
        .iter()
        .chain(&request.fields)
        .cloned()
        .collect();
    wire.send(&headers_frames(&list, false));
    wire.send(&frame(kind::DATA, 0, 1, b"hello"));
    let trailers = block(&[
        (bytes("x-checksum"), bytes("abc")),
        (bytes("content-length"), bytes("999")),
        (bytes("host"), bytes("admin.internal")),
        (bytes("x-forwarded-for"), bytes("10.0.0.9")),
        (bytes("x_sneaky"), bytes("1")),
    ]);
    wire.send(&frame(
        kind::HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &trailers,
    ));
    wire.read_until(Duration::from_secs(5), |seen| seen.ended.contains(&1));
    assert!(rig.recorder.count() > before, "{}", rig.proxy.log());
    let got = String::from_utf8_lossy(&rig.recorder.raw(before)).into_owned();
    let body = got.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body, "5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n", "{got}");
}

/// `via` naming rsp is a loop over HTTP/2 as over HTTP/1 (508), and a
/// foreign `via` is shown to route() and forwarded before rsp's own.
#[test]
fn via_is_read_as_http1_reads_it() {
    let rig = rig("forwarded_headers = { via = \"edge-7\" }");
    let looped = Request::get("/x").field("via", b"1.1 other, 2 EDGE-7");
    let (one, two) = both(&rig, &looped);
    assert_eq!(
        (one, two),
        (
            Verdict::Refused {
                status: 508,
                reset: None
            },
            Verdict::Refused {
                status: 508,
                reset: None
            }
        )
    );
    let Verdict::Forwarded {
        route_saw,
        backend_got,
    } = over_http2(&rig, &Request::get("/x").field("via", b"1.1 other"))
    else {
        panic!("{}", rig.proxy.log());
    };
    assert!(route_saw.contains("via=1.1 other"), "{route_saw}");
    assert_eq!(line_of(&backend_got, "via"), ["1.1 other", "2 edge-7"]);
}

/// `expect: 100-continue` over HTTP/2 reaches the backend as over HTTP/1,
/// and the body follows once it asked for it.
#[test]
fn expect_continue_is_forwarded_and_the_body_follows() {
    let rig = rig("forwarded_headers = { via = false }");
    let request = Request::with(b"PUT", b"/up", Some(b"shop.example"))
        .field("expect", b"100-continue")
        .body(b"payload");
    let Verdict::Forwarded {
        route_saw,
        backend_got,
    } = over_http2(&rig, &request)
    else {
        panic!("{}", rig.proxy.log());
    };
    assert!(route_saw.contains("expect=100-continue"), "{route_saw}");
    assert!(
        backend_got.ends_with("7\r\npayload\r\n0\r\n\r\n"),
        "{backend_got}"
    );
}

/// `underscore_headers = "reject"` refuses a field with `_` over both
/// protocols; a cookie is never taken for one.
#[test]
fn underscore_rejection_is_the_same_over_both_protocols() {
    let rig = rig("underscore_headers = \"reject\"\nforwarded_headers = { via = false }");
    assert_refused_by_both(&rig, &Request::get("/x").field("x_a", b"1"));
    assert!(assert_same(&rig, &Request::get("/x").field("cookie", b"a_b=1")).forwarded());
}

/// With `path_normalization = false`, a :path is forwarded as it came, as
/// an HTTP/1 target is, and one that is not UTF-8 is refused by both.
#[test]
fn raw_paths_without_normalization_are_treated_alike() {
    let rig = rig("path_normalization = false\nforwarded_headers = { via = false }");
    for path in [
        &b"//admin/../x?%41"[..],
        b"/caf\xc3\xa9",
        b"/obs\xff",
        b"/a\"b",
    ] {
        assert_same(&rig, &Request::with(b"GET", path, Some(b"shop.example")));
    }
}

// ---------------------------------------------------------------------
// Methods, bounds, hosts and targets held as HTTP/1 holds them.
// ---------------------------------------------------------------------

/// An empty `:method` is no method: like ` /x HTTP/1.1` over HTTP/1.1
/// (httparse wants `1*tchar`), it is answered 400 and reaches neither
/// route() nor the backend (RFC 9113 §8.3.1 wants a valid method).
#[test]
fn an_empty_method_is_refused_over_both_protocols() {
    let rig = rig("forwarded_headers = { via = false }");
    let request = Request::with(b"", b"/x", Some(b"shop.example"));
    let one = over_http1(&rig, &request);
    assert_eq!(
        one,
        Verdict::Refused {
            status: 400,
            reset: None
        }
    );
    let two = over_http2(&rig, &request);
    assert!(
        !two.forwarded(),
        "HTTP/2 forwarded an empty method: {two:?}"
    );
}

/// An HTTP/2 request is held to `max_header_bytes` as the same HTTP/1.1
/// head would be, every field counted as it came, those rsp removes
/// before route() (a name with `_`, `te`) too: with `max_header_bytes =
/// 8192`, 20,000 bytes in `x_pad` get 431 over both protocols.
#[test]
fn dropped_fields_count_against_max_header_bytes_over_both_protocols() {
    let rig = rig("max_header_bytes = 8192\nforwarded_headers = { via = false }");
    let request = Request::get("/x").field("x_pad", &vec![b'v'; 20_000]);
    let (one, two) = both(&rig, &request);
    assert_eq!(
        one,
        Verdict::Refused {
            status: 431,
            reset: None
        }
    );
    assert_eq!(one, two, "{}", rig.proxy.log());
}

/// Two `host` fields are refused over both protocols (400, "more than one
/// Host field"), byte-identical ones too, and so are never a way around
/// the field bound.
#[test]
fn duplicate_host_fields_are_refused_over_both_protocols() {
    let rig = rig("forwarded_headers = { via = false }");
    let request = Request::with(b"GET", b"/x", None)
        .field("host", b"shop.example")
        .field("host", b"shop.example");
    let one = over_http1_raw(
        &rig,
        b"GET /x HTTP/1.1\r\nhost: shop.example\r\nhost: shop.example\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(
        one,
        Verdict::Refused {
            status: 400,
            reset: None
        }
    );
    let two = over_http2(&rig, &request);
    assert!(!two.forwarded(), "HTTP/2 took two host fields: {two:?}");
}

/// A target whose bytes are not UTF-8 is refused over both protocols:
/// httparse reads a request target as UTF-8 (400 over HTTP/1.1), and
/// `RequestHead::read_h2` holds `:path` to the same.
#[test]
fn a_target_that_is_not_utf8_gets_the_same_answer_over_both_protocols() {
    let rig = rig("forwarded_headers = { via = false }");
    let request = Request::with(b"GET", b"/obs\xff\xfe?q=\x80", Some(b"shop.example"));
    let (one, two) = both(&rig, &request);
    assert_eq!(
        one,
        Verdict::Refused {
            status: 400,
            reset: None
        }
    );
    assert_eq!(one, two);
}

/// `max_body_bytes` bounds an HTTP/2 body of no stated length as it does
/// a chunked HTTP/1 one: one within it reaches the backend whole, in
/// chunks; one past it gets 413, and the backend never the end of it.
#[test]
fn bodies_without_a_length_are_bounded_as_chunked_ones_are() {
    let rig = rig("max_body_bytes = 10000");
    let mut wire = Wire::open(rig.proxy.address);
    let before = rig.recorder.count();
    wire.send(&post(1, "/small", &[]));
    wire.send(&frame(kind::DATA, 0, 1, &[b'a'; 6000]));
    wire.send(&frame(kind::DATA, END_STREAM, 1, &[b'b'; 4000]));
    wire.read_until(Duration::from_secs(5), |seen| seen.ended.contains(&1));
    assert!(
        wire.seen.statuses.contains(&(1, 200)),
        "{:?}\n{}",
        wire.seen,
        rig.proxy.log()
    );
    let got = rig.recorder.raw(before);
    let body = &got[got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    let mut decoded = Vec::new();
    let mut rest = body;
    loop {
        let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
        rest = &rest[line + 2..];
        if size == 0 {
            assert_eq!(rest, b"\r\n");
            break;
        }
        decoded.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
    assert_eq!(decoded, [vec![b'a'; 6000], vec![b'b'; 4000]].concat());

    wire.send(&post(3, "/large", &[]));
    for _ in 0..3 {
        wire.send(&frame(kind::DATA, 0, 3, &[b'c'; 6000]));
    }
    wire.read_until(Duration::from_secs(5), |seen| {
        seen.statuses.iter().any(|&(stream, _)| stream == 3)
            || seen.resets.iter().any(|&(stream, _)| stream == 3)
    });
    assert!(
        wire.seen.statuses.contains(&(3, 413)),
        "{:?}\n{}",
        wire.seen,
        rig.proxy.log()
    );
}
