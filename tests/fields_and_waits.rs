//! Found in review of round three: what route() sees of the client's
//! forwarding and connection fields is what the backend gets, and an
//! exchange waiting on its backend's `100 Continue` is not a stalled
//! client.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::Duration;

use common::*;

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// The fields route() saw of `names`, as `name=value` lines, and the head
/// the backend got, for one raw request.
fn seen_and_forwarded(raw: &str, names: &[&str], settings: &str) -> (String, String) {
    let recorder = Recorder::start(OK);
    let list = names
        .iter()
        .map(|name| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
{settings}
function route(req)
  local seen = {{}}
  for _, name in ipairs({{ {list} }}) do
    for _, value in ipairs(req:header_values(name)) do
      seen[#seen + 1] = name .. "=" .. value
    end
  end
  req.ctx.seen = table.concat(seen, "\n")
  return "default"
end
function respond(req, res)
  res:set_header("X-Seen", (req.ctx.seen or ""):gsub("\n", " | "))
end"#,
        recorder.address
    ));
    let response = proxy.get_raw(raw);
    assert_eq!(response.status, 200, "{}", response.head);
    let seen = response.header("x-seen").unwrap_or_default();
    let forwarded = recorder.requests().pop().unwrap_or_default();
    (seen, forwarded)
}

/// The value of `name` in a raw head, every occurrence.
fn values_in(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter_map(|line| {
            let (field, value) = line.split_once(':')?;
            field
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------
// 1. What route() saw is what the backend gets.
// ---------------------------------------------------------------------

/// An untrusted client's own `X-Forwarded-For`,
/// `X-Forwarded-Host`, `X-Forwarded-Proto` and `Forwarded` are shown to
/// route() (`req:header`), but the backend never gets them: rsp writes its
/// own in their place. A rule on `req:header("X-Forwarded-For")` (an
/// allow-list behind rsp, a tenant from `X-Forwarded-Host`) decides on a
/// value the client forged and the backend never sees, against the
/// README's "what route() saw is exactly what the backend gets" and "a
/// rule never sees a field the backend will not get".
#[test]

fn route_never_sees_forwarding_fields_the_backend_will_not_get() {
    let names = [
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "Forwarded",
    ];
    let (seen, forwarded) = seen_and_forwarded(
        "GET / HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 10.0.0.1\r\n\
         X-Forwarded-Host: admin.internal\r\nX-Forwarded-Proto: https\r\n\
         Forwarded: for=10.0.0.1;proto=https\r\nConnection: close\r\n\r\n",
        &names,
        "forwarded_headers = { forwarded = true }",
    );
    for name in names {
        let backend_got: Vec<String> = values_in(&forwarded, name);
        let route_saw: Vec<String> = seen
            .split(" | ")
            .filter_map(|line| line.strip_prefix(&format!("{name}=")))
            .map(str::to_owned)
            .collect();
        // Whatever route() saw of the field, the backend got.
        for value in &route_saw {
            assert!(
                backend_got.contains(value),
                "route() saw {name}: {value}, the backend got {backend_got:?}\n{forwarded}"
            );
        }
    }
}

/// The same invariant for the fields that held: Connection-named fields,
/// hop-by-hop fields in odd spellings (`Connection: , ,X`, names in upper
/// case, `TE` and `Upgrade` on a request that is no upgrade), the Host in
/// every form: what route() saw of them is exactly what the backend got.
#[test]
fn connection_fields_in_odd_spellings_never_reach_route_nor_the_backend() {
    let names = [
        "X-A",
        "X-B",
        "Keep-Alive",
        "TE",
        "Upgrade",
        "Connection",
        "Proxy-Connection",
        "Host",
        "Via",
        "X-Kept",
    ];
    for (raw, gone) in [
        (
            "GET / HTTP/1.1\r\nHost: A.Example.:80\r\nConnection: , ,X-A\r\nConnection: ,x-b ,\r\nX-A: 1\r\n\
             X-B: 2\r\nX-Kept: 3\r\nconnection: close\r\n\r\n",
            &["X-A", "X-B", "Connection"][..],
        ),
        (
            "GET / HTTP/1.0\r\nHost: a.example\r\nConnection: Keep-Alive, X-A\r\nKeep-Alive: timeout=5\r\n\
             X-A: 1\r\nX-Kept: 3\r\nConnection: close\r\n\r\n",
            &["X-A", "Keep-Alive", "Connection"],
        ),
        (
            // An upgrade with a body is no upgrade: Upgrade and its
            // Connection token go, for route() and the backend alike.
            "POST / HTTP/1.1\r\nHost: a.example\r\nConnection: upgrade, close\r\nUpgrade: websocket\r\n\
             Content-Length: 0\r\nTE: trailers\r\nX-Kept: 3\r\n\r\n",
            &["Upgrade", "TE", "Connection"],
        ),
        (
            // Connection naming Host or Content-Length removes neither.
            "GET / HTTP/1.1\r\nHost: a.example\r\nConnection: host, content-length, close\r\n\
             Proxy-Connection: keep-alive\r\nVia: 1.1 other\r\nX-Kept: 3\r\n\r\n",
            &["Proxy-Connection", "Connection"],
        ),
    ] {
        let (seen, forwarded) = seen_and_forwarded(raw, &names, "");
        for name in gone {
            assert!(
                !seen
                    .to_ascii_lowercase()
                    .contains(&format!("{}=", name.to_ascii_lowercase())),
                "route() saw {name}: {seen}"
            );
        }
        assert!(seen.contains("X-Kept=3"), "{seen}");
        let host = values_in(&forwarded, "host");
        assert_eq!(host, ["a.example"], "{forwarded}");
        assert!(seen.contains("Host=a.example"), "{seen}");
        for name in [
            "x-a",
            "x-b",
            "keep-alive",
            "te",
            "upgrade",
            "proxy-connection",
        ] {
            assert!(
                values_in(&forwarded, name).is_empty(),
                "{name} reached: {forwarded}"
            );
        }
    }
}

// ---------------------------------------------------------------------
// 3. Memory: a legit client is never cut for waiting on its backend.
// ---------------------------------------------------------------------

/// A backend that answers `100 Continue` only after `delay` (it decides
/// whether to take the body, as an upload service checking a quota does),
/// then reads the body and answers 200; any other request is answered at
/// once.
fn late_continue_backend(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                while let Some(head) = read_head(&mut reader) {
                    let lower = head.to_ascii_lowercase();
                    let length: usize = lower
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .map_or(0, |value| value.trim().parse().unwrap());
                    if lower.contains("expect: 100-continue") {
                        thread::sleep(delay);
                        if writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                            return;
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if writer.write_all(OK).is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// A client that sent `Expect: 100-continue` waits for the
/// backend's `100 Continue` before it sends its body (RFC 9110 §10.1.1);
/// rsp counts that wait as the client stalling (`waits_on_client`: a
/// request body to come and nothing in the inbound buffer), and when the
/// pool has requests queued (or memory is near its bound) cuts the
/// connection after 2 s, although the exchange waits on its backend, which
/// the README promises is never cut for this.
#[test]

fn a_client_waiting_for_its_backends_100_continue_is_not_cut() {
    let backend = late_continue_backend(Duration::from_secs(4));
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{backend}\" }}, max_conns = 1, queue_timeout_ms = 15000 }} }}"
    ));
    let mut uploader = proxy.connect();
    uploader.send(
        b"PUT /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    thread::sleep(Duration::from_millis(300));
    // A second request waits in the pool's queue meanwhile.
    let waiter = {
        let address = proxy.address;
        thread::spawn(move || {
            let mut client = Client::connect(address);
            client.send(b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            client.try_response(false).map(|response| response.status)
        })
    };
    let interim = uploader.try_response(false);
    assert_eq!(
        interim.as_ref().map(|response| response.status),
        Some(100),
        "the upload was cut while its backend decided: {}",
        proxy.log()
    );
    uploader.send(b"hello");
    let last = uploader.try_response(false);
    assert_eq!(last.map(|response| response.status), Some(200));
    assert_eq!(waiter.join().unwrap(), Some(200));
    assert!(!proxy.log().contains("connection cut"), "{}", proxy.log());
}
