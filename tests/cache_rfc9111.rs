//! RFC 9111 (and RFC 9213, RFC 5861) a requirement a row, through the
//! binary: each row scripts the origin's answer, sends its requests
//! (waiting where freshness must run out), and says how many of them the
//! origin must have seen. rsp is a shared cache.

mod common;

use std::time::Duration;

use common::origin::Origin;
use common::*;

struct Row {
    /// Where the requirement is.
    section: &'static str,
    what: &'static str,
    /// The origin's fields (200, a short body).
    answer: &'static [(&'static str, &'static str)],
    /// Each request's fields, and the milliseconds waited before it.
    requests: &'static [(&'static str, u64)],
    /// Requests the origin must have seen.
    origin: usize,
}

const ROWS: &[Row] = &[
    Row {
        section: "3",
        what: "a fresh response is stored and reused",
        answer: &[("Cache-Control", "max-age=60")],
        requests: &[("", 0), ("", 0)],
        origin: 1,
    },
    Row {
        section: "3 (no-store)",
        what: "MUST NOT store a response with no-store",
        answer: &[("Cache-Control", "no-store, max-age=60")],
        requests: &[("", 0), ("", 0)],
        origin: 2,
    },
    Row {
        section: "3 (private)",
        what: "a shared cache MUST NOT store private",
        answer: &[("Cache-Control", "private, max-age=60")],
        requests: &[("", 0), ("", 0)],
        origin: 2,
    },
    Row {
        section: "3.5",
        what: "MUST NOT reuse an answer to Authorization",
        answer: &[("Cache-Control", "max-age=60")],
        requests: &[
            ("Authorization: Basic eDp5\r\n", 0),
            ("Authorization: Basic eDp5\r\n", 0),
        ],
        origin: 2,
    },
    Row {
        section: "3.5",
        what: "unless public",
        answer: &[("Cache-Control", "public, max-age=60")],
        requests: &[
            ("Authorization: Basic eDp5\r\n", 0),
            ("Authorization: Basic eDp5\r\n", 0),
        ],
        origin: 1,
    },
    Row {
        section: "3.5",
        what: "unless s-maxage",
        answer: &[("Cache-Control", "s-maxage=60")],
        requests: &[
            ("Authorization: Basic eDp5\r\n", 0),
            ("Authorization: Basic eDp5\r\n", 0),
        ],
        origin: 1,
    },
    Row {
        section: "3.5",
        what: "unless must-revalidate",
        answer: &[("Cache-Control", "max-age=60, must-revalidate")],
        requests: &[
            ("Authorization: Basic eDp5\r\n", 0),
            ("Authorization: Basic eDp5\r\n", 0),
        ],
        origin: 1,
    },
    Row {
        section: "4.1",
        what: "Vary: a stored response answers only the same selected fields",
        answer: &[("Cache-Control", "max-age=60"), ("Vary", "X-Lang")],
        requests: &[
            ("X-Lang: en\r\n", 0),
            ("X-Lang: fr\r\n", 0),
            ("X-Lang: en\r\n", 0),
        ],
        origin: 2,
    },
    Row {
        section: "4.1",
        what: "Vary: * never matches",
        answer: &[("Cache-Control", "max-age=60"), ("Vary", "*")],
        requests: &[("", 0), ("", 0)],
        origin: 2,
    },
    Row {
        section: "4.2.1",
        what: "s-maxage over max-age for a shared cache",
        answer: &[("Cache-Control", "max-age=0, s-maxage=60")],
        requests: &[("", 0), ("", 0)],
        origin: 1,
    },
    Row {
        section: "4.2.1",
        what: "max-age over Expires",
        answer: &[
            ("Cache-Control", "max-age=60"),
            ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
        ],
        requests: &[("", 0), ("", 0)],
        origin: 1,
    },
    Row {
        section: "4.2.1",
        what: "an invalid max-age is stale",
        answer: &[("Cache-Control", "max-age=sixty")],
        requests: &[("", 0), ("", 0)],
        origin: 2,
    },
    Row {
        section: "5.3",
        what: "an invalid Expires (\"0\") is in the past",
        answer: &[("Expires", "0")],
        requests: &[("", 0), ("", 0)],
        origin: 2,
    },
    Row {
        section: "4.2.3",
        what: "Age counts: max-age=60 with Age: 100 is stale",
        answer: &[("Cache-Control", "max-age=60"), ("Age", "100")],
        requests: &[("", 0), ("", 0)],
        origin: 2,
    },
    Row {
        section: "4.2.3",
        what: "an invalid Age is ignored",
        answer: &[("Cache-Control", "max-age=60"), ("Age", "ten")],
        requests: &[("", 0), ("", 0)],
        origin: 1,
    },
    Row {
        section: "4.2",
        what: "a response is stale once its lifetime passed",
        answer: &[("Cache-Control", "max-age=1")],
        requests: &[("", 0), ("", 2100)],
        origin: 2,
    },
    Row {
        section: "4.2.4",
        what: "MUST NOT serve stale without permission",
        answer: &[("Cache-Control", "max-age=1")],
        requests: &[("", 0), ("", 2100), ("", 0)],
        origin: 2,
    },
    Row {
        section: "4.2.4 / 5.2.1.2",
        what: "max-stale permits a stale answer",
        answer: &[("Cache-Control", "max-age=1")],
        requests: &[("", 0), ("Cache-Control: max-stale=60\r\n", 2100)],
        origin: 1,
    },
    Row {
        section: "5.2.2.2",
        what: "must-revalidate forbids it even so",
        answer: &[("Cache-Control", "max-age=1, must-revalidate")],
        requests: &[("", 0), ("Cache-Control: max-stale=60\r\n", 2100)],
        origin: 2,
    },
    Row {
        section: "5.2.1.1",
        what: "a request's max-age",
        answer: &[("Cache-Control", "max-age=60")],
        requests: &[("", 0), ("Cache-Control: max-age=0\r\n", 0)],
        origin: 2,
    },
    Row {
        section: "5.2.1.3",
        what: "a request's min-fresh",
        answer: &[("Cache-Control", "max-age=60")],
        requests: &[("", 0), ("Cache-Control: min-fresh=120\r\n", 0)],
        origin: 2,
    },
    Row {
        section: "5.2.1.4",
        what: "a request's no-cache goes to the origin",
        answer: &[("Cache-Control", "max-age=60")],
        requests: &[("", 0), ("Cache-Control: no-cache\r\n", 0)],
        origin: 2,
    },
    Row {
        section: "5.4",
        what: "Pragma: no-cache without Cache-Control likewise",
        answer: &[("Cache-Control", "max-age=60")],
        requests: &[("", 0), ("Pragma: no-cache\r\n", 0)],
        origin: 2,
    },
    Row {
        section: "5.2.1.5",
        what: "a request's no-store: its answer is not stored",
        answer: &[("Cache-Control", "max-age=60")],
        requests: &[("Cache-Control: no-store\r\n", 0), ("", 0)],
        origin: 2,
    },
    Row {
        section: "5.2.2.4",
        what: "no-cache: every use revalidated",
        answer: &[("Cache-Control", "no-cache")],
        requests: &[("", 0), ("", 0)],
        origin: 2,
    },
    Row {
        section: "4.2.2",
        what: "no heuristic freshness with default_ttl = 0",
        answer: &[("Last-Modified", "Thu, 01 Jan 1970 00:00:00 GMT")],
        requests: &[("", 0), ("", 0)],
        origin: 2,
    },
    Row {
        section: "RFC 9213",
        what: "CDN-Cache-Control over Cache-Control",
        answer: &[
            ("Cache-Control", "no-store"),
            ("CDN-Cache-Control", "max-age=60"),
        ],
        requests: &[("", 0), ("", 0)],
        origin: 1,
    },
    Row {
        section: "RFC 9213",
        what: "and its own no-store wins over Cache-Control",
        answer: &[
            ("Cache-Control", "max-age=60"),
            ("CDN-Cache-Control", "no-store"),
        ],
        requests: &[("", 0), ("", 0)],
        origin: 2,
    },
];

#[test]
fn rfc_9111_row_by_row() {
    let origin = Origin::start();
    let proxy = Proxy::start(&format!(
        r#"workers = 1
cache = {{ }}
pools = {{ web = {{ servers = {{ "{}" }}, cache = true }} }}
function route(req) return "web" end"#,
        origin.address
    ));
    // The rows run side by side, each on its own path.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let runs: Vec<_> = ROWS
            .iter()
            .enumerate()
            .map(|(index, row)| {
                let (origin, proxy) = (&origin, &proxy);
                scope.spawn(move || {
                    let path = format!("/row/{index}");
                    origin.set(&path, 200, row.answer, "body");
                    for (fields, wait) in row.requests {
                        std::thread::sleep(Duration::from_millis(*wait));
                        let response = proxy.get_raw(&format!(
                            "GET {path} HTTP/1.1\r\nHost: rfc.example\r\n{fields}Connection: close\r\n\r\n"
                        ));
                        assert_eq!(response.status, 200);
                    }
                    let seen = origin.hits(&path);
                    (seen != row.origin).then(|| {
                        format!(
                            "RFC 9111 {}: {}: the origin saw {seen} requests, not {}",
                            row.section, row.what, row.origin
                        )
                    })
                })
            })
            .collect();
        runs.into_iter()
            .filter_map(|run| run.join().unwrap())
            .collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
