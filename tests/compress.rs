//! Response compression against the real binary: what the origin sends,
//! decoded from gzip and br, is the same bytes; what must not be encoded
//! is not; HTTP/2 clients and the cache get encoded bodies too.

mod common;

use std::io::Read;
use std::time::Duration;

use common::origin::{Answer, Origin};
use common::*;

fn text_body() -> Vec<u8> {
    (0..20_000u32)
        .flat_map(|n| format!("line {n} of a page\n").into_bytes())
        .collect()
}

fn answer(body: &[u8], chunked: bool, fields: &[(&str, &str)]) -> Answer {
    Answer {
        status: 200,
        fields: fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        body: body.to_vec(),
        chunked,
        ..Answer::default()
    }
}

fn compressing_proxy(origin: &Origin, extra: &str) -> Proxy {
    Proxy::start_h2c(&format!(
        r#"workers = 1
compress = {{ }}
{extra}
pools = {{ web = {{ servers = {{ "{}" }}{} }} }}
function route(req) return "web" end"#,
        origin.address,
        if extra.contains("cache") {
            ", cache = true"
        } else {
            ""
        }
    ))
}

fn get(proxy: &Proxy, path: &str, fields: &str) -> Response {
    proxy.get_raw(&format!(
        "GET {path} HTTP/1.1\r\nHost: z.example\r\n{fields}Connection: close\r\n\r\n"
    ))
}

fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut decoded)
            .unwrap(),
        "br" => brotli::Decompressor::new(bytes, 4096)
            .read_to_end(&mut decoded)
            .unwrap(),
        other => panic!("coding {other}"),
    };
    decoded
}

/// gzip and br, of a body the origin sends with a length or chunked:
/// decoded, the same bytes; the head says how, varies, and its ETag is
/// weak.
#[test]
fn bodies_decode_to_the_origins_bytes() {
    let origin = Origin::start();
    let body = text_body();
    let fields = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("ETag", "\"page1\""),
    ];
    origin.set_answer("/length", answer(&body, false, &fields));
    origin.set_answer("/chunked", answer(&body, true, &fields));
    let proxy = compressing_proxy(&origin, "");
    for path in ["/length", "/chunked"] {
        for (accept, coding) in [
            ("gzip", "gzip"),
            ("gzip, deflate, br", "br"),
            ("br;q=0.5, gzip", "gzip"),
        ] {
            let response = get(&proxy, path, &format!("Accept-Encoding: {accept}\r\n"));
            assert_eq!(response.status, 200);
            assert_eq!(
                response.header("content-encoding").as_deref(),
                Some(coding),
                "{path} {accept}"
            );
            assert_eq!(
                response.header("transfer-encoding").as_deref(),
                Some("chunked")
            );
            assert_eq!(response.header("content-length"), None);
            assert_eq!(response.header("vary").as_deref(), Some("Accept-Encoding"));
            assert_eq!(response.header("etag").as_deref(), Some("W/\"page1\""));
            assert!(
                response.body.len() < body.len() / 4,
                "{}",
                response.body.len()
            );
            assert_eq!(decode(coding, &response.body), body, "{path} {accept}");
        }
        // No Accept-Encoding: the bytes as they were, saying they vary.
        let plain = get(&proxy, path, "");
        assert_eq!(plain.body, body);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.header("vary").as_deref(), Some("Accept-Encoding"));
    }
}

/// What is never encoded: HEAD, 204 and 304, no-transform, a body
/// already encoded, a type not listed, fewer than min_bytes, a range
/// request, an HTTP/1.0 client.
#[test]
fn what_is_sent_as_it_is() {
    let origin = Origin::start();
    let body = text_body();
    let html = ("Content-Type", "text/html");
    origin.set_answer("/page", answer(&body, false, &[html]));
    origin.set_answer(
        "/no-transform",
        answer(&body, false, &[html, ("Cache-Control", "no-transform")]),
    );
    origin.set_answer(
        "/encoded",
        answer(&body, false, &[html, ("Content-Encoding", "deflate")]),
    );
    origin.set_answer(
        "/image",
        answer(&body, false, &[("Content-Type", "image/png")]),
    );
    origin.set_answer("/small", answer(b"tiny page", false, &[html]));
    origin.set("/empty", 204, &[html], "");
    let proxy = compressing_proxy(&origin, "");
    let gzip = "Accept-Encoding: gzip\r\n";
    for path in ["/no-transform", "/encoded", "/image", "/small"] {
        let response = get(&proxy, path, gzip);
        assert_eq!(
            response
                .header("content-encoding")
                .as_deref()
                .filter(|c| *c == "gzip"),
            None,
            "{path}"
        );
        assert!(response.header("content-length").is_some(), "{path}");
    }
    assert_eq!(get(&proxy, "/empty", gzip).status, 204);
    let ranged = get(&proxy, "/page", &format!("{gzip}Range: bytes=0-9\r\n"));
    assert_eq!(ranged.header("content-encoding"), None);
    let old = proxy.get_raw(&format!(
        "GET /page HTTP/1.0\r\nHost: z.example\r\n{gzip}\r\n"
    ));
    assert_eq!(old.header("content-encoding"), None);
    assert_eq!(old.body, body);
    let mut client = proxy.connect();
    client.send(
        format!("HEAD /page HTTP/1.1\r\nHost: z.example\r\n{gzip}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    let head = client.response(true);
    assert_eq!(head.header("content-encoding"), None);
    assert_eq!(
        head.header("vary").as_deref(),
        Some("Accept-Encoding"),
        "as the GET's"
    );
}

/// A client that reads slowly: the encoder holds one run at a time, and
/// the whole body still arrives intact.
#[test]
fn a_slow_client_gets_the_whole_body() {
    let origin = Origin::start();
    let body: Vec<u8> = (0..400_000u32)
        .flat_map(|n| format!("{n:08}\n").into_bytes())
        .collect();
    origin.set_answer(
        "/big",
        answer(&body, true, &[("Content-Type", "application/json")]),
    );
    let proxy = compressing_proxy(&origin, "");
    let mut client = proxy.connect();
    client.send(b"GET /big HTTP/1.1\r\nHost: z.example\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
    std::thread::sleep(Duration::from_millis(500));
    let response = client.response(false);
    assert_eq!(decode("gzip", &response.body), body);
}

/// HTTP/2 clients get encoded bodies (END_STREAM ends them); the cache
/// stores the encoded variant apart from the plain one.
#[test]
fn http2_clients_and_the_cache() {
    let origin = Origin::start();
    let body = text_body();
    origin.set_answer(
        "/cached",
        answer(
            &body,
            false,
            &[
                ("Content-Type", "text/css"),
                ("Cache-Control", "max-age=60"),
            ],
        ),
    );
    let proxy = compressing_proxy(&origin, "cache = { }");
    let url = format!("http://{}/cached", proxy.address);
    for _ in 0..2 {
        let output = std::process::Command::new("curl")
            .args([
                "-s",
                "--http2-prior-knowledge",
                "--compressed",
                "-o",
                "-",
                "-w",
                "\n%{http_version}",
                &url,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let (got, version) = text.rsplit_once('\n').unwrap();
        assert_eq!(version, "2");
        assert_eq!(got.as_bytes(), body.as_slice());
    }
    for _ in 0..2 {
        assert_eq!(get(&proxy, "/cached", "").body, body);
        let encoded = get(&proxy, "/cached", "Accept-Encoding: gzip\r\n");
        assert_eq!(decode("gzip", &encoded.body), body);
    }
    // curl's br variant, the gzip one and the plain one: three fetches.
    assert_eq!(origin.hits("/cached"), 3);
}
