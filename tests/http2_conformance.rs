//! RFC 9113's connection and stream errors: malformed frames and
//! prefaces get GOAWAY with the RFC's code, malformed requests reset only
//! their stream, legal frames at the edges are no errors, and random bytes
//! after the preface never bring rsp down. The frame-level client is
//! common::h2's `Wire`.

mod common;

use std::net::{Shutdown, SocketAddr};
use std::thread;
use std::time::Duration;

use common::h2::*;
use common::*;
use serde_json::Value;

/// Connection errors: what is sent on a new connection (after the preface
/// and SETTINGS unless the bytes start with their own), and the GOAWAY
/// code RFC 9113 gives it.
fn connection_errors() -> Vec<(&'static str, Vec<u8>, u32)> {
    let opened =
        |rest: &[Vec<u8>]| [&[PREFACE, &settings(&[])].concat()[..], &rest.concat()].concat();
    let headers_open = frame(kind::HEADERS, 0, 1, &request_block("GET", "/", &[]));
    let post = frame(
        kind::HEADERS,
        END_HEADERS,
        1,
        &request_block("POST", "/silent", &[]),
    );
    let ping = frame(kind::PING, 0, 0, &[0; 8]);
    let block = request_block("GET", "/", &[]);
    vec![
        (
            "the first frame is not SETTINGS",
            [PREFACE, &ping].concat(),
            PROTOCOL_ERROR,
        ),
        (
            "a frame larger than SETTINGS_MAX_FRAME_SIZE",
            opened(&[frame(kind::HEADERS, END_HEADERS, 1, &[0; 16_385])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "DATA on stream 0",
            opened(&[frame(kind::DATA, 0, 0, b"x")]),
            PROTOCOL_ERROR,
        ),
        (
            "HEADERS on stream 0",
            opened(&[frame(kind::HEADERS, END_HEADERS | END_STREAM, 0, &block)]),
            PROTOCOL_ERROR,
        ),
        (
            "HEADERS on an even stream",
            opened(&[get(2, "/")]),
            PROTOCOL_ERROR,
        ),
        (
            "CONTINUATION without HEADERS",
            opened(&[frame(kind::CONTINUATION, END_HEADERS, 1, &block)]),
            PROTOCOL_ERROR,
        ),
        (
            "CONTINUATION of another stream",
            opened(&[
                headers_open.clone(),
                frame(kind::CONTINUATION, END_HEADERS, 3, b""),
            ]),
            PROTOCOL_ERROR,
        ),
        (
            "a header block interrupted by PING",
            opened(&[headers_open.clone(), ping.clone()]),
            PROTOCOL_ERROR,
        ),
        (
            "a header block interrupted by HEADERS",
            opened(&[headers_open.clone(), get(3, "/")]),
            PROTOCOL_ERROR,
        ),
        (
            "PUSH_PROMISE from the client",
            opened(&[
                get(1, "/"),
                frame(
                    kind::PUSH_PROMISE,
                    END_HEADERS,
                    1,
                    &[&2u32.to_be_bytes()[..], &block].concat(),
                ),
            ]),
            PROTOCOL_ERROR,
        ),
        (
            "WINDOW_UPDATE of 0 on the connection",
            opened(&[window_update(0, 0)]),
            PROTOCOL_ERROR,
        ),
        (
            "WINDOW_UPDATE past 2^31-1 on the connection",
            opened(&[window_update(0, 0x7fff_ffff)]),
            FLOW_CONTROL_ERROR,
        ),
        (
            "SETTINGS_INITIAL_WINDOW_SIZE taking an open stream's window past 2^31-1",
            opened(&[
                get(1, "/silent"),
                window_update(1, 0x7fff_ffff - 65_535),
                settings(&[(0x4, 65_536)]),
            ]),
            FLOW_CONTROL_ERROR,
        ),
        (
            "SETTINGS_ENABLE_PUSH 2",
            opened(&[settings(&[(0x2, 2)])]),
            PROTOCOL_ERROR,
        ),
        (
            "SETTINGS_INITIAL_WINDOW_SIZE 2^31",
            opened(&[settings(&[(0x4, 1 << 31)])]),
            FLOW_CONTROL_ERROR,
        ),
        (
            "SETTINGS_MAX_FRAME_SIZE under 16384",
            opened(&[settings(&[(0x5, 16_383)])]),
            PROTOCOL_ERROR,
        ),
        (
            "SETTINGS_MAX_FRAME_SIZE over 2^24-1",
            opened(&[settings(&[(0x5, 1 << 24)])]),
            PROTOCOL_ERROR,
        ),
        (
            "SETTINGS of 5 bytes",
            opened(&[frame(kind::SETTINGS, 0, 0, &[0, 3, 0, 0, 1])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "SETTINGS ACK with a payload",
            opened(&[frame(kind::SETTINGS, ACK, 0, &[0, 3, 0, 0, 0, 1])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "SETTINGS on a stream",
            opened(&[frame(kind::SETTINGS, 0, 1, b"")]),
            PROTOCOL_ERROR,
        ),
        (
            "PING of 7 bytes",
            opened(&[frame(kind::PING, 0, 0, &[0; 7])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "PING on a stream",
            opened(&[frame(kind::PING, 0, 1, &[0; 8])]),
            PROTOCOL_ERROR,
        ),
        (
            "GOAWAY of 7 bytes",
            opened(&[frame(kind::GOAWAY, 0, 0, &[0; 7])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "RST_STREAM on stream 0",
            opened(&[frame(kind::RST_STREAM, 0, 0, &[0, 0, 0, 8])]),
            PROTOCOL_ERROR,
        ),
        (
            "RST_STREAM of 3 bytes",
            opened(&[get(1, "/silent"), frame(kind::RST_STREAM, 0, 1, &[0, 0, 8])]),
            FRAME_SIZE_ERROR,
        ),
        (
            "RST_STREAM on an idle stream",
            opened(&[frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8])]),
            PROTOCOL_ERROR,
        ),
        (
            "DATA on an idle stream",
            opened(&[frame(kind::DATA, 0, 1, b"x")]),
            PROTOCOL_ERROR,
        ),
        (
            "WINDOW_UPDATE on an idle stream",
            opened(&[window_update(1, 100)]),
            PROTOCOL_ERROR,
        ),
        (
            "HEADERS too short for its PRIORITY fields",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | PRIORITY_FLAG,
                1,
                &[0; 4],
            )]),
            FRAME_SIZE_ERROR,
        ),
        (
            "HEADERS padding longer than the frame",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM | PADDED,
                1,
                &[&[200u8][..], &block].concat(),
            )]),
            PROTOCOL_ERROR,
        ),
        (
            "DATA padding longer than the frame",
            opened(&[post.clone(), frame(kind::DATA, PADDED, 1, &[9, b'a', b'b'])]),
            PROTOCOL_ERROR,
        ),
        (
            "HPACK: index 0",
            opened(&[frame(kind::HEADERS, END_HEADERS | END_STREAM, 1, &[0x80])]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: an index past both tables",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[0xff, 0x7f],
            )]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: a literal cut short",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[0x00, 0x05, b'a'],
            )]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: Huffman with the EOS symbol",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[0x00, 0x84, 0xff, 0xff, 0xff, 0xff, 0x01, b'a'],
            )]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: a table size over SETTINGS_HEADER_TABLE_SIZE",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[&[0x3f, 0xe1, 0x3f][..], &block].concat(),
            )]),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK: a table size update after a field",
            opened(&[frame(
                kind::HEADERS,
                END_HEADERS | END_STREAM,
                1,
                &[&block[..], &[0x20]].concat(),
            )]),
            COMPRESSION_ERROR,
        ),
    ]
}

#[test]
fn malformed_frames_get_goaway_with_the_rfc_code() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let cases = connection_errors();
    let mut failures = Vec::new();
    let mut clients = Vec::new();
    for (name, bytes, code) in &cases {
        let mut wire = Wire::connect(proxy.address);
        wire.send(bytes);
        let seen = wire.until_closed(Duration::from_secs(3));
        let got = seen.goaway.as_ref().map(|(_, code, _)| *code);
        if got != Some(*code) || !seen.closed {
            failures.push(format!(
                "{name}: expected GOAWAY {} and a close, got {seen:?}",
                code_name(*code)
            ));
        }
        clients.push((wire.local(), *code));
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Each is logged with its client's address and the code.
    for (client, code) in clients {
        proxy.wait_for_log(&format!("{client}: HTTP/2 GOAWAY {}: ", code_name(code)), 1);
    }
    assert_serves(&mut proxy);
}

#[test]
fn a_bad_preface_on_an_h2c_listener_gets_goaway_protocol_error() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // `PRI * HTTP/2.0` is no HTTP/1 request line (its version is 2.0):
    // a connection that begins so speaks HTTP/2, and a preface that goes
    // on otherwise is its protocol error (RFC 9113 §3.4), as over TLS.
    // Whole, or a byte at a time.
    for bad in [
        &b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r",
        b"PRI * HTTP/2.0 GET / HTTP/1.1\r\nHost: test\r\n\r\n",
    ] {
        // A byte at a time up to the first that differs: rsp closes then,
        // and bytes sent after would reset the connection.
        let differs = (0..bad.len()).find(|&at| bad[at] != PREFACE[at]).unwrap();
        for (piece, sent) in [(bad.len(), bad), (1, &bad[..=differs])] {
            let mut wire = Wire::connect(proxy.address);
            for part in sent.chunks(piece) {
                wire.send(part);
                thread::sleep(Duration::from_millis(2));
            }
            let seen = wire.until_closed(Duration::from_secs(3));
            let text = String::from_utf8_lossy(bad);
            assert_eq!(seen.http1, None, "{text:?}: {seen:?}");
            assert_eq!(
                seen.goaway
                    .as_ref()
                    .map(|goaway| (goaway.1, goaway.2.as_str())),
                Some((PROTOCOL_ERROR, "no connection preface")),
                "{text:?} in pieces of {piece}: {seen:?}"
            );
            assert!(seen.closed);
        }
    }
    // The good preface, a byte at a time, then a request.
    let mut wire = Wire::connect(proxy.address);
    for byte in [PREFACE, &settings(&[])].concat() {
        wire.send(&[byte]);
        thread::sleep(Duration::from_millis(2));
    }
    wire.send(&get(1, "/"));
    let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
    assert_eq!(seen.statuses, [(1, 200)], "{seen:?}");
    // A request line that parts from the preface's before its version
    // is HTTP/1: 400 for a method rsp does not know with that target.
    let response = proxy.get_raw("PRI * HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(response.status, 400);
    assert_eq!(backend.count(), 1);
    proxy.wait_for_log("HTTP/2 GOAWAY ProtocolError: no connection preface", 6);
    assert_serves(&mut proxy);
}

#[test]
fn a_bad_preface_over_tls_with_alpn_h2_gets_goaway_protocol_error() {
    let dir = std::env::temp_dir().join(format!("rsp-h2-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert, key_file) = (dir.join("h2.pem"), dir.join("h2.key"));
    std::fs::write(&cert, certificate.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let backend = Backend::start("web");
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut proxy = Proxy::start_listening(
        &format!(
            "{{ addr = \"{tls}\", tls = {{ cert = \"{}\", key = \"{}\" }} }}",
            cert.display(),
            key_file.display()
        ),
        &format!("backends = {{ \"{}\" }}", backend.address),
    );
    wait_for_listener(tls, &proxy.log);
    let seen = attack_port(&proxy, tls.port(), &["tls_bad_preface"]);
    assert_eq!(seen["alpn"], "h2", "{seen}");
    assert_eq!(
        goaway_code(&seen),
        Some(u64::from(PROTOCOL_ERROR)),
        "{seen}"
    );
    assert_eq!(seen["goaway"]["debug"], "no connection preface");
    proxy.wait_for_log("HTTP/2 GOAWAY ProtocolError: no connection preface", 1);
    // h2 over TLS still works, and the plain listener.
    let url = format!("https://localhost:{}/", tls.port());
    let resolve = format!("localhost:{}:127.0.0.1", tls.port());
    let output = curl(&[
        "--insecure",
        "--http2",
        "--write-out",
        " %{http_version}",
        &url,
        "--resolve",
        &resolve,
    ]);
    assert_eq!(output.text(), "hello from web 2");
    assert!(proxy.is_running());
    assert_eq!(proxy.get("/").status, 200);
}

#[test]
fn malformed_requests_reset_only_their_stream() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let seen = while_serving(&proxy, || attack(&proxy, &["malformed"]));
    assert_eq!(seen["goaway"], Value::Null, "{seen}");
    assert_eq!(seen["closed"], false);
    for case in seen["cases"].as_array().unwrap() {
        assert_eq!(case["rst"], u64::from(PROTOCOL_ERROR), "{case}");
        assert_eq!(case["status"], Value::Null, "{case}");
        // The honest stream right after it, on the same connection.
        assert_eq!(case["next_status"], 200, "{case}");
    }
    assert_eq!(seen["cases"].as_array().unwrap().len(), 11);
    assert_bystander_served(&seen);
    proxy.wait_for_log("reset (ProtocolError): malformed request: ", 11);
    // Only the honest ones (and the bystander's, and the other client's)
    // reached the backend.
    let heads = backend.heads();
    assert!(
        heads.iter().all(|head| !head.contains("injected")
            && !head.to_ascii_lowercase().contains("x-upper")
            && !head.contains("elsewhere")),
        "{heads:?}"
    );
    assert_serves(&mut proxy);
}

#[test]
fn a_stream_id_going_backwards_is_a_protocol_error() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    // Stream 5 opens (and is answered); then a request on stream 3, never
    // used: RFC 9113 §5.1.1, a connection error of type PROTOCOL_ERROR.
    let mut wire = Wire::open(proxy.address);
    wire.send(&get(5, "/"));
    wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&5));
    wire.send(&get(3, "/"));
    let seen = wire.until_closed(Duration::from_secs(3));
    assert_eq!(seen.statuses, [(5, 200)], "{seen:?}");
    assert_eq!(
        seen.goaway.as_ref().map(|goaway| goaway.1),
        Some(PROTOCOL_ERROR),
        "{seen:?}"
    );
    assert!(seen.closed);
    assert_serves(&mut proxy);
}

#[test]
fn priority_on_an_idle_stream_is_allowed() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let mut wire = Wire::open(proxy.address);
    // Stream 3 is idle (as Firefox's priority placeholders were); then a
    // request on stream 1.
    wire.send(&frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 0, 16]));
    wire.send(&get(1, "/"));
    let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
    assert_eq!(seen.goaway, None, "{seen:?}");
    assert_eq!(seen.statuses, [(1, 200)], "{seen:?}");
    assert_serves(&mut proxy);
}

#[test]
fn legal_frames_at_the_edges_are_not_errors() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    let mut wire = Wire::connect(proxy.address);
    wire.send(PREFACE);
    // Unknown settings are ignored; so are frames of unknown types, on
    // the connection or on a stream; an unsolicited PING ACK too.
    wire.send(&settings(&[(0x99, 7), (0x3, 50)]));
    wire.send(&frame(kind::SETTINGS, ACK, 0, b""));
    wire.send(&frame(0xfa, 0xff, 0, b"?"));
    wire.send(&frame(0xfb, 0, 7, b"??"));
    wire.send(&frame(kind::PING, ACK, 0, &[1; 8]));
    // HEADERS with padding and priority fields, DATA with padding.
    let mut padded = vec![4u8, 0, 0, 0, 0, 16];
    padded.extend_from_slice(&request_block("GET", "/", &[]));
    padded.extend_from_slice(&[0; 4]);
    wire.send(&frame(
        kind::HEADERS,
        END_HEADERS | END_STREAM | PADDED | PRIORITY_FLAG,
        1,
        &padded,
    ));
    wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&1));
    wire.send(&frame(
        kind::HEADERS,
        END_HEADERS,
        3,
        &request_block("POST", "/checksum", &[("content-length", "5")]),
    ));
    wire.send(&frame(kind::DATA, PADDED, 3, b"\x03hel\0\0\0"));
    wire.send(&frame(kind::DATA, END_STREAM, 3, b"lo"));
    wire.read_until(Duration::from_secs(3), |seen| seen.ended.contains(&3));
    // Frames on streams that are closed now: WINDOW_UPDATE, RST_STREAM,
    // PRIORITY.
    wire.send(&window_update(1, 1000));
    wire.send(&frame(kind::RST_STREAM, 0, 1, &[0, 0, 0, 8]));
    wire.send(&frame(kind::PRIORITY, 0, 3, &[0, 0, 0, 1, 16]));
    wire.send(&frame(kind::PING, 0, 0, &[2; 8]));
    let seen = wire.read_until(Duration::from_secs(3), |seen| seen.ping_acks == 1);
    assert_eq!(seen.goaway, None, "{seen:?}");
    assert_eq!(seen.statuses, [(1, 200), (3, 200)], "{seen:?}");
    assert_eq!(seen.ping_acks, 1, "{seen:?}");
    assert!(!seen.closed);
    let checksum = backend
        .heads()
        .iter()
        .any(|head| head.starts_with("POST /checksum "));
    assert!(checksum);
    assert_serves(&mut proxy);
}

/// xorshift64*: the same bytes for the same seed, on every machine.
struct Random(u64);

impl Random {
    fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn bytes(&mut self, count: usize) -> Vec<u8> {
        (0..count).map(|_| self.next() as u8).collect()
    }
}

/// What seed `seed` sends after the preface and SETTINGS (and, for one
/// in four, a request and its answer): bytes at random, or frames with
/// plausible headers and random payloads (some after a request whose body
/// is still to come), header blocks among them mutated valid ones.
fn fuzz_input(seed: u64) -> Vec<u8> {
    let mut random = Random::new(seed);
    let mut out = Vec::new();
    match seed % 4 {
        0 => {
            let length = 1 + random.below(2048) as usize;
            return random.bytes(length);
        }
        3 => out.extend(frame(
            kind::HEADERS,
            END_HEADERS,
            1,
            &request_block("POST", "/silent", &[]),
        )),
        _ => {}
    }
    for _ in 0..1 + random.below(40) {
        let kind = random.below(12) as u8;
        let flags = match random.below(3) {
            0 => 0,
            1 => [END_STREAM, END_HEADERS, PADDED, PRIORITY_FLAG][random.below(4) as usize],
            _ => random.next() as u8,
        };
        let stream = match random.below(6) {
            0 => 0,
            1 => 1,
            2 => 3,
            3 => 2,
            4 => 1 + 2 * random.below(20) as u32,
            _ => random.next() as u32,
        };
        let payload = match kind {
            kind::HEADERS | kind::CONTINUATION if random.below(2) == 0 => {
                let mut block = request_block("GET", "/", &[("x", "y")]);
                for _ in 0..1 + random.below(4) {
                    let at = random.below(block.len() as u64) as usize;
                    block[at] = random.next() as u8;
                }
                block
            }
            kind::SETTINGS => (0..random.below(4))
                .flat_map(|_| {
                    let id = random.below(9) as u16;
                    let value = match random.below(3) {
                        0 => 0,
                        1 => random.below(1 << 16) as u32,
                        _ => random.next() as u32,
                    };
                    [&id.to_be_bytes()[..], &value.to_be_bytes()[..]].concat()
                })
                .collect(),
            kind::WINDOW_UPDATE | kind::RST_STREAM => random.bytes(4),
            kind::PING => random.bytes(8),
            kind::PRIORITY => random.bytes(5),
            _ => {
                let length = random.below(64) as usize;
                random.bytes(length)
            }
        };
        out.extend(frame(kind, flags, stream, &payload));
    }
    out
}

#[test]
fn random_bytes_after_the_preface_never_bring_rsp_down() {
    let backend = Backend::start("web");
    let mut proxy = h2_proxy(&backend, "");
    const SEEDS: u64 = 2000;
    const THREADS: u64 = 4;
    let address = proxy.address;
    // Per worker: seeds whose connection rsp never closed, the GOAWAY codes
    // seen, the streams answered.
    let outcomes: Vec<(Vec<u64>, Vec<u32>, usize)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|worker| {
                scope.spawn(move || {
                    let (mut hung, mut codes, mut answered) = (Vec::new(), Vec::new(), 0);
                    for seed in (worker..SEEDS).step_by(THREADS as usize) {
                        let mut wire = Wire::open(address);
                        if seed % 4 == 2 {
                            // A request answered first, then the noise.
                            wire.send(&get(1, "/"));
                            wire.read_until(Duration::from_secs(5), |seen| seen.ended.contains(&1));
                        }
                        wire.send(&fuzz_input(seed));
                        // The client is done: rsp must end the connection.
                        let _ = wire.stream.shutdown(Shutdown::Write);
                        let seen = wire.until_closed(Duration::from_secs(5));
                        if !seen.closed {
                            hung.push(seed);
                        }
                        codes.extend(seen.goaway.as_ref().map(|goaway| goaway.1));
                        answered += seen.statuses.len();
                    }
                    (hung, codes, answered)
                })
            })
            .collect();
        // Served all along.
        for _ in 0..10 {
            assert_eq!(proxy.get("/").status, 200, "{}", proxy.log());
            thread::sleep(Duration::from_millis(20));
        }
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .collect()
    });
    let hung: Vec<u64> = outcomes
        .iter()
        .flat_map(|(hung, ..)| hung.clone())
        .collect();
    assert!(
        hung.is_empty(),
        "connections rsp never closed: seeds {hung:?}"
    );
    // The inputs went past the frame header checks: rsp answered requests
    // and found errors of several kinds.
    let mut codes: Vec<u32> = outcomes
        .iter()
        .flat_map(|(_, codes, _)| codes.clone())
        .collect();
    codes.sort_unstable();
    codes.dedup();
    let answered: usize = outcomes.iter().map(|(.., answered)| answered).sum();
    assert!(
        codes.len() >= 4 && answered > 0,
        "codes {codes:?}, {answered} answered"
    );
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
    assert_serves(&mut proxy);
}
