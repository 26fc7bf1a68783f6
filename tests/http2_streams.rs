//! The life of an HTTP/2 stream (RFC 9113 §5.1): frames on closed and
//! reset streams, streams after GOAWAY, a queued stream the client resets,
//! trailers after rsp's answer, and a request's head the same answer over
//! HTTP/1.1 and HTTP/2 whatever its size.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use common::h2::*;
use common::*;

const ROUTE: &str = r#"function route(req) return "default" end"#;

/// What a frame on a stream got from rsp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Got {
    Ignored,
    Reset(u32),
    GoAway(u32),
}

#[test]
fn frames_on_closed_streams_follow_rfc_9113_section_5_1() {
    use Got::*;
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    type Late = fn(u32) -> Vec<u8>;
    let frames: [(&str, Late); 5] = [
        ("DATA", |id| frame(kind::DATA, 0, id, b"x")),
        ("HEADERS", trailers),
        ("PRIORITY", |id| {
            frame(kind::PRIORITY, 0, id, &[0, 0, 0, 0, 16])
        }),
        ("RST_STREAM", |id| {
            frame(kind::RST_STREAM, 0, id, &CANCEL.to_be_bytes())
        }),
        ("WINDOW_UPDATE", |id| window_update(id, 100)),
    ];
    // Each state of stream 1, how the connection gets there, and what each
    // frame then gets (in `frames`' order). Idle streams are in
    // `connection_errors`; streams opened after rsp's GOAWAY in
    // `frames_on_streams_opened_after_goaway_are_ignored`.
    type Enter = fn(&mut Wire);
    let states: [(&str, Enter, [Got; 5]); 5] = [
        (
            // §5.1: "half-closed (remote)": all but WINDOW_UPDATE,
            // PRIORITY and RST_STREAM are a stream error, STREAM_CLOSED.
            "half-closed (remote): the client ended it, rsp has not",
            |wire| wire.send(&get(1, "/silent")),
            [
                Reset(STREAM_CLOSED),
                Reset(STREAM_CLOSED),
                Ignored,
                Ignored,
                Ignored,
            ],
        ),
        (
            // §5.1: frames on a stream rsp reset are ignored.
            "reset by rsp: a malformed request, its body to come",
            |wire| {
                wire.send(&post(1, "/", &[("X-Upper", "1")]));
                wire.read_until(Duration::from_secs(3), |seen| {
                    seen.resets.iter().any(|(id, _)| *id == 1)
                });
            },
            [Ignored; 5],
        ),
        (
            // §5.1, closed: "An endpoint that receives any frame other
            // than PRIORITY after receiving a RST_STREAM MUST treat that
            // as a stream error of type STREAM_CLOSED" (but RST_STREAM is
            // never answered with one, §5.4.2, and WINDOW_UPDATE may
            // cross, §6.9).
            "reset by the client",
            |wire| {
                wire.send(&post(1, "/silent", &[]));
                wire.send(&frame(kind::RST_STREAM, 0, 1, &CANCEL.to_be_bytes()));
            },
            [
                Reset(STREAM_CLOSED),
                Reset(STREAM_CLOSED),
                Ignored,
                Ignored,
                Ignored,
            ],
        ),
        (
            // §6.1: DATA on a closed stream, a stream error STREAM_CLOSED;
            // §5.1: a frame after END_STREAM, a connection error
            // STREAM_CLOSED (but WINDOW_UPDATE, PRIORITY, RST_STREAM).
            "closed: END_STREAM both ways",
            |wire| {
                wire.send(&get(1, "/"));
                wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
            },
            [
                Reset(STREAM_CLOSED),
                GoAway(STREAM_CLOSED),
                Ignored,
                Ignored,
                Ignored,
            ],
        ),
        (
            // §5.1.1: opening 3 closed 1, and reusing an id is a
            // connection error PROTOCOL_ERROR.
            "closed: never opened, the client opened 3 first",
            |wire| {
                wire.send(&get(3, "/"));
                wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&3));
            },
            [
                Reset(STREAM_CLOSED),
                GoAway(PROTOCOL_ERROR),
                Ignored,
                Ignored,
                Ignored,
            ],
        ),
    ];
    let mut failures = Vec::new();
    for (state, enter, expected) in &states {
        for ((name, late), expected) in frames.iter().zip(expected) {
            let mut wire = Wire::open(proxy.address);
            enter(&mut wire);
            wire.sync();
            let before = wire.resets_of(1).len();
            // Twice: a reset is sent once per stream.
            wire.send(&late(1));
            wire.send(&late(1));
            wire.sync();
            let resets = wire.resets_of(1).split_off(before);
            let got = match (&wire.seen.goaway, &resets[..]) {
                (Some((_, code, _)), _) => GoAway(*code),
                (None, []) => Ignored,
                (None, [code]) => Reset(*code),
                (None, _) => {
                    failures.push(format!("{name} on {state}: resets {resets:?}"));
                    continue;
                }
            };
            if got != *expected {
                failures.push(format!(
                    "{name} on {state}: expected {expected:?}, got {got:?}"
                ));
            }
            if !matches!(got, GoAway(_)) {
                // The connection goes on: a new stream is served.
                wire.send(&get(5, "/"));
                let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&5));
                if !seen.statuses.contains(&(5, 200)) {
                    failures.push(format!("{name} on {state}: then {seen:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_serves(&mut proxy);
}

#[test]
fn frames_on_streams_opened_after_goaway_are_ignored() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "shutdown_timeout_ms = 10000");
    let mut wire = Wire::open(proxy.address);
    // A stream that keeps the connection open past the GOAWAY.
    wire.send(&get(1, "/silent"));
    wire.sync();
    proxy.signal(libc::SIGTERM);
    let seen = wire.read_until(Duration::from_secs(3), |seen| seen.goaway.is_some());
    assert_eq!(
        seen.goaway.as_ref().map(|goaway| (goaway.0, goaway.1)),
        Some((1, NO_ERROR)),
        "{seen:?}"
    );
    // A request the client sent before it read the GOAWAY, its body and
    // trailers: ignored (§6.8), like its stream.
    wire.send(&post(3, "/", &[]));
    wire.send(&frame(kind::DATA, 0, 3, b"body"));
    wire.send(&window_update(3, 100));
    wire.send(&trailers(3));
    wire.send(&frame(kind::RST_STREAM, 0, 3, &CANCEL.to_be_bytes()));
    let seen = wire.sync();
    assert_eq!(seen.goaway_codes, [NO_ERROR], "{seen:?}");
    assert!(seen.resets.is_empty(), "{seen:?}");
    assert!(!seen.closed, "{seen:?}");
    assert!(proxy.is_running());
    assert!(backend.heads().iter().all(|head| !head.starts_with("POST")));
}

/// A backend that answers every request with a head promising 100 bytes
/// and 10 of them, then closes: an answer cut short.
fn cutting_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read_exact(&mut byte).is_ok() {
                    head.push(byte[0]);
                }
                let _ =
                    stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
            });
        }
    });
    address
}

#[test]
fn frames_in_flight_for_streams_rsp_reset_are_ignored() {
    let backend = Backend::start("web");
    let mut proxy = Proxy::start_h2c(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\" }} }}, silent = {{ servers = {{ \"{}\" }} }},\n\
                  cut = {{ servers = {{ \"{}\" }} }} }}\n\
         function route(req)\n\
           if req.path == \"/silent\" then return \"silent\" end\n\
           if req.path == \"/cut\" then return \"cut\" end\n\
           if req.path == \"/reply\" then return {{ status = 200, body = \"at once\" }} end\n\
           return \"default\"\n\
         end\n\
         http2 = {{ max_concurrent_streams = 2 }}",
        backend.address,
        silent_backend(),
        cutting_backend()
    ));
    let mut wire = Wire::open(proxy.address);
    let client = wire.local();
    // Another request on the same connection, its body half sent: it
    // must outlive all that follows.
    wire.send(&post(1, "/checksum", &[("content-length", "10")]));
    wire.send(&frame(kind::DATA, 0, 1, b"01234"));
    wire.send(&post(3, "/silent", &[]));
    wire.sync();
    let reset = |wire: &mut Wire, id: u32| -> u32 {
        let seen = wire.read_until(Duration::from_secs(5), |seen| {
            seen.resets.iter().any(|(stream, _)| *stream == id)
        });
        assert!(seen.goaway.is_none(), "{seen:?}");
        wire.resets_of(id).first().copied().unwrap_or(u32::MAX)
    };
    // Refused: two streams are open.
    wire.send(&post(5, "/", &[]));
    assert_eq!(reset(&mut wire, 5), REFUSED_STREAM);
    // The client gives up stream 3: room for one more.
    wire.send(&frame(kind::RST_STREAM, 0, 3, &CANCEL.to_be_bytes()));
    // Malformed.
    wire.send(&post(7, "/", &[("X-Upper", "1")]));
    assert_eq!(reset(&mut wire, 7), PROTOCOL_ERROR);
    // A stream error: DATA past the content-length.
    wire.send(&post(9, "/silent", &[("content-length", "1")]));
    wire.send(&frame(kind::DATA, 0, 9, b"xy"));
    assert_eq!(reset(&mut wire, 9), PROTOCOL_ERROR);
    // Answered before the end of the request (RFC 9113 §8.1).
    wire.send(&post(11, "/reply", &[]));
    assert_eq!(reset(&mut wire, 11), NO_ERROR);
    // The answer cut short by its backend.
    wire.send(&post(13, "/cut", &[]));
    assert_eq!(reset(&mut wire, 13), INTERNAL_ERROR);
    // More than 64 resets since the first.
    for id in (15..=155).step_by(2) {
        wire.send(&post(id, "/", &[("X-Upper", "1")]));
    }
    assert_eq!(reset(&mut wire, 155), PROTOCOL_ERROR);
    let resets_before = wire.seen.resets.len();
    // What the client had in flight for each: DATA (64,000 bytes each,
    // within the windows the client knows of), trailers, WINDOW_UPDATE,
    // PRIORITY, RST_STREAM.
    let mut late_data = 0;
    for id in [5, 7, 9, 11, 13, 15, 155] {
        for _ in 0..4 {
            wire.send(&frame(kind::DATA, 0, id, &[b'z'; 16_000]));
            late_data += 16_000;
        }
        wire.send(&window_update(id, 100));
        wire.send(&frame(kind::PRIORITY, 0, id, &[0, 0, 0, 0, 16]));
        wire.send(&trailers(id));
        wire.send(&frame(kind::RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let seen = wire.sync();
    assert!(seen.goaway.is_none(), "{seen:?}");
    assert_eq!(seen.resets.len(), resets_before, "{seen:?}");
    // The DATA counted against the connection window came back (§6.9):
    // rsp's first WINDOW_UPDATE opened it to 16 x 65,535, and the next
    // gives back at least a quarter of that.
    let opened = 15 * 65_535;
    assert!(late_data > 65_535 * 4, "{late_data}");
    let seen = wire.read_until(Duration::from_secs(3), |seen| {
        seen.connection_window >= opened + 4 * 65_535
    });
    assert!(
        seen.connection_window >= opened + 4 * 65_535,
        "{} of {late_data} given back",
        seen.connection_window - opened
    );
    // The other request goes on, and so does the connection.
    wire.send(&frame(kind::DATA, END_STREAM, 1, b"56789"));
    wire.send(&get(157, "/"));
    let seen = wire.read_until(Duration::from_secs(5), |seen| {
        seen.ended.contains(&1) && seen.ended.contains(&157)
    });
    assert!(seen.statuses.contains(&(1, 200)), "{seen:?}");
    assert!(seen.statuses.contains(&(157, 200)), "{seen:?}");
    assert!(!seen.closed && seen.goaway.is_none(), "{seen:?}");
    // Every reset rsp sent is logged with why, within the connection's
    // bound of 20 lines: the first ones.
    proxy.wait_for_log(
        &format!("{client}: HTTP/2 stream 5 reset (RefusedStream): refused: 2 streams open"),
        1,
    );
    proxy.wait_for_log(
        &format!("{client}: HTTP/2 stream 7 reset (ProtocolError): malformed request: "),
        1,
    );
    proxy.wait_for_log(
        &format!("{client}: HTTP/2 stream 9 reset (ProtocolError): DATA that does not add up"),
        1,
    );
    proxy.wait_for_log(
        &format!(
            "{client}: HTTP/2 stream 11 reset (NoError): answered before the end of the request"
        ),
        1,
    );
    proxy.wait_for_log(
        &format!("{client}: HTTP/2 stream 13 reset (InternalError): "),
        1,
    );
    let lines = proxy
        .log()
        .lines()
        .filter(|line| {
            line.contains(&format!("{client}: HTTP/2 stream ")) && line.contains(" reset (")
        })
        .count();
    assert_eq!(lines, 20, "{}", proxy.log());
    assert_serves(&mut proxy);
}

#[test]
fn an_absolute_path_must_name_the_requests_scheme_and_authority() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let mut wire = Wire::open(proxy.address);
    // The request's scheme is http and its :authority `test`.
    let refused = [
        (1, "http://other.example/x"),
        (3, "https://test/x"),
        (5, "http://test.example/x"),
        (7, "http://test:8080/x"),
    ];
    for (id, path) in refused {
        wire.send(&get(id, path));
    }
    // The same authority, in another case: taken, as origin-form.
    wire.send(&get(9, "http://TEST/abs"));
    let seen = wire.read_until(Duration::from_secs(3), |seen| {
        seen.ended.contains(&9) && seen.resets.len() >= refused.len()
    });
    for (id, path) in refused {
        assert!(
            seen.resets.contains(&(id, PROTOCOL_ERROR)),
            "{path}: {seen:?}"
        );
    }
    assert_eq!(seen.statuses, [(9, 200)], "{seen:?}");
    assert!(seen.goaway.is_none());
    let heads = backend.heads();
    assert!(
        heads
            .iter()
            .any(|head| head.starts_with("GET /abs HTTP/1.1\r\n"))
    );
    assert!(
        heads.iter().all(|head| !head.starts_with("GET /x ")),
        "{heads:?}"
    );
    proxy.wait_for_log(
        "reset (ProtocolError): malformed request: an absolute-form :path whose scheme or authority is not the request's",
        refused.len(),
    );
    assert_serves(&mut proxy);
}

/// A backend answer with `count` fields (`Content-Length` one of them).
fn answer_with_fields(count: usize) -> &'static [u8] {
    let mut answer = String::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n");
    for index in 1..count {
        answer.push_str(&format!("X-Field-{index}: {index}\r\n"));
    }
    answer.push_str("\r\nok");
    Box::leak(answer.into_bytes().into_boxed_slice())
}

#[test]
fn a_response_gets_the_same_answer_over_http1_and_http2_whatever_its_field_count() {
    let most = Recorder::start(answer_with_fields(128));
    let too_many = Recorder::start(answer_with_fields(129));
    // rsp adds X-Request-Id to the backend's 128 (129), and a respond()
    // hook 50 more (179): rsp's own HTTP/1 answer, read again for HTTP/2,
    // may have any number.
    let proxy = Proxy::start_h2c(&format!(
        "pools = {{ most = {{ servers = {{ \"{}\" }} }}, too_many = {{ servers = {{ \"{}\" }} }} }}\n\
         function route(req)\n\
           if req.path == \"/129\" then return \"too_many\" end\n\
           return \"most\"\n\
         end\n\
         function respond(req, res)\n\
           if req.path == \"/more\" then\n\
             for i = 1, 50 do res:add_header(\"X-More-\" .. i, \"m\") end\n\
           end\n\
         end",
        most.address, too_many.address
    ));
    // (path, status, fields the client gets besides :status)
    let cases = [("/128", 200, 129), ("/129", 502, 0), ("/more", 200, 179)];
    for (path, status, fields) in cases {
        let response = proxy.get(path);
        assert_eq!(
            response.status, status,
            "HTTP/1.1 {path}: {}",
            response.head
        );
        if status == 200 {
            // `Connection: close` answers the request's.
            let lines = response
                .head
                .lines()
                .skip(1)
                .filter(|line| !line.is_empty())
                .count();
            assert_eq!(lines, fields + 1, "HTTP/1.1 {path}: {}", response.head);
        }
    }
    let mut wire = Wire::open(proxy.address);
    for (index, (path, ..)) in cases.iter().enumerate() {
        wire.send(&get(1 + 2 * index as u32, path));
    }
    let seen = wire.read_until(Duration::from_secs(5), |seen| {
        [1, 3, 5]
            .iter()
            .all(|id| seen.ended.contains(id) || seen.resets.iter().any(|(stream, _)| stream == id))
    });
    assert!(seen.resets.is_empty(), "{seen:?}");
    for (index, (path, status, fields)) in cases.into_iter().enumerate() {
        let id = 1 + 2 * index as u32;
        assert!(
            seen.statuses.contains(&(id, status)),
            "HTTP/2 {path}: {seen:?}"
        );
        if status == 200 {
            let (_, got) = seen
                .fields
                .iter()
                .find(|(stream, _)| *stream == id)
                .unwrap();
            assert_eq!(got.len(), fields + 1, "HTTP/2 {path}: {got:?}");
            assert!(
                got.iter()
                    .all(|(name, _)| *name == name.to_ascii_lowercase())
            );
        }
    }
}

#[test]
fn a_request_gets_the_same_answer_over_http1_and_http2_whatever_its_field_count() {
    let backend = Backend::start("web");
    let proxy = h2_proxy(&backend, "");
    // An HTTP/1 head of Host and 127 more is the most rsp takes; the same
    // request over HTTP/2 is :authority (which becomes the Host) and 127
    // fields, with the other pseudo-header fields.
    for (count, status) in [(127, 200), (128, 431)] {
        let fields: Vec<(String, String)> = (0..count)
            .map(|index| (format!("x-field-{index}"), index.to_string()))
            .collect();
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: test\r\n");
        for (name, value) in &fields {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(
            proxy.get_raw(&raw).status,
            status,
            "HTTP/1.1, {count} fields"
        );
        let extra: Vec<(&str, &str)> = fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let mut wire = Wire::open(proxy.address);
        wire.send(&frame(
            kind::HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block("GET", "/", &extra),
        ));
        let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
        assert_eq!(
            seen.statuses,
            [(1, status)],
            "HTTP/2, {count} fields: {seen:?}"
        );
    }
}

/// A stream queued for a `max_conns = 1` pool that the client resets
/// leaves the queue: the one queued after it is served once the first
/// is done, and the connection goes on.
#[test]
fn a_queued_stream_the_client_resets_leaves_the_pool_queue() {
    let backend = Backend::start("web");
    let proxy = Proxy::start_h2c(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\" }}, max_conns = 1 }} }}\n{ROUTE}",
        backend.address
    ));
    let seen = edges(&proxy, "queued", &[]);
    assert_eq!(seen["first"]["status"], "200", "{seen}");
    assert_eq!(seen["third"]["status"], "200", "{seen}");
    assert_eq!(seen["fourth"]["status"], "200", "{seen}");
    assert!(seen["seconds"].as_f64().unwrap() < 5.0, "{seen}");
    let heads = backend.heads();
    assert!(
        !heads.iter().any(|head| head.starts_with("GET /second")),
        "{heads:?}"
    );
}

/// A request whose header list is over the bound gets 431 at once; its
/// HEADERS did not end the stream, so the client may still end its side
/// after rsp's END_STREAM, with trailers (RFC 9113 §5.1). rsp tells it
/// with RST_STREAM(NO_ERROR) that it need not, and trailers that were
/// already on their way are ignored: no GOAWAY, and the connection serves
/// its next request.
#[test]
fn trailers_after_a_431_do_not_cut_the_connection() {
    let backend = Backend::start("web");
    let proxy = Proxy::start_h2c(&format!(
        "backends = {{ \"{}\" }}\n{ROUTE}\n",
        backend.address
    ));
    let seen = edges(&proxy, "refused", &[]);
    assert_eq!(seen["first"]["status"], "431", "{seen}");
    // The client had not ended its request: it is told it need not.
    assert_eq!(seen["reset"], serde_json::json!([0]), "{seen}");
    assert_eq!(seen["goaway"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["again"]["status"], "200", "{seen}");
}
