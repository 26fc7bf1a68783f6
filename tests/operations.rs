//! What an operator relies on: the access log, the admin port (stats,
//! metrics, drain), request ids and the forwarding headers.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use common::*;

/// One request on a connection of its own.
fn request(address: SocketAddr, raw: &str) -> Response {
    let mut client = Client::connect(address);
    client.send(raw.as_bytes());
    client.response(raw.starts_with("HEAD "))
}

fn admin_port() -> (SocketAddr, String) {
    let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    (address, format!("admin = \"{address}\"\n"))
}

fn admin(address: SocketAddr, method: &str, path: &str) -> Response {
    admin_request(address, method, path)
}

fn stats(address: SocketAddr) -> serde_json::Value {
    let response = admin(address, "GET", "/stats.json");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type").as_deref(),
        Some("application/json")
    );
    serde_json::from_slice(&response.body).unwrap()
}

fn log_path(name: &str) -> PathBuf {
    let path = temp_file(name, "");
    std::fs::remove_file(&path).unwrap();
    path
}

/// Waits until the file holds `count` lines and returns them.
fn wait_for_lines(path: &Path, count: usize) -> Vec<String> {
    let read = || std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(10), || read().lines().count() >= count),
        "{count} lines wanted: {}",
        read()
    );
    let text = read();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), count, "{text}");
    lines
}

/// Splits a combined log line into its fields; `[...]` and `"..."` are one
/// field each, without their brackets or quotes.
fn combined_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        let (field, after) = match rest.as_bytes()[0] {
            b'[' => {
                let end = rest.find(']').unwrap();
                (&rest[1..end], &rest[end + 1..])
            }
            b'"' => {
                let end = rest[1..].find('"').unwrap() + 1;
                (&rest[1..end], &rest[end + 1..])
            }
            _ => {
                let end = rest.find(' ').unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        fields.push(field.to_owned());
        rest = after.trim_start_matches(' ');
    }
    fields
}

fn line_for(lines: &[String], request_line: &str) -> Vec<String> {
    let fields = lines
        .iter()
        .map(|line| combined_fields(line))
        .find(|fields| fields[4] == request_line)
        .unwrap_or_else(|| panic!("no {request_line:?} in {lines:#?}"));
    assert_eq!(fields.len(), 13, "{fields:?}");
    fields
}

const ROUTES: &str = r#"
route = function(req)
  if req.path == "/ping" then return { status = 200, body = "pong\n" } end
  if req.path == "/id" then return { status = 200, body = req.request_id } end
  if req.path == "/nowhere" then return nil end
  if req.path == "/dead" then return "127.0.0.1:1" end
  return "default"
end
"#;

#[test]
fn access_log_has_a_line_for_every_request() {
    let backend = Backend::start("a");
    let log = log_path("access.log");
    let proxy = Proxy::in_front_of(&backend, &format!("access_log = {log:?}\n{ROUTES}"));
    let mut client = proxy.connect();
    client.send(
        b"GET /size/10 HTTP/1.1\r\nHost: x\r\nUser-Agent: test-agent/1\r\nReferer: http://ref.example/\r\n\r\n",
    );
    let first = client.response(false);
    client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).text(), "pong\n");
    client.send(b"GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).status, 404);
    client.send(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).status, 503);
    client.send(b"GET /size/5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(client.response(false).body.len(), 5);
    let garbage = request(proxy.address, "NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(garbage.status, 400);
    let old = request(proxy.address, "GET /size/3 HTTP/1.0\r\n\r\n");
    assert_eq!(old.body.len(), 3);
    let dead = request(
        proxy.address,
        "GET /dead HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(dead.status, 502);

    let lines = wait_for_lines(&log, 8);
    let first_line = line_for(&lines, "GET /size/10 HTTP/1.1");
    assert_eq!(first_line[0], "127.0.0.1");
    assert!(first_line[3].ends_with(" +0000"), "{first_line:?}");
    assert_eq!(
        first_line[5..9],
        ["200", "10", "http://ref.example/", "test-agent/1"]
    );
    assert_eq!(first_line[9], backend.address.to_string());
    assert_eq!(first_line[10], "200");
    let micros: u64 = first_line[11].parse().unwrap();
    assert!(micros > 0 && micros < 5_000_000, "{micros}");
    assert_eq!(Some(&first_line[12]), first.header("x-request-id").as_ref());
    // A local Lua answer: no backend.
    let ping = line_for(&lines, "GET /ping HTTP/1.1");
    assert_eq!(ping[5..7], ["200", "5"]);
    assert_eq!(ping[9..11], ["-", "-"]);
    let not_found = line_for(&lines, "GET /status/404 HTTP/1.1");
    assert_eq!(not_found[5], "404");
    assert_eq!(not_found[10], "404");
    let no_route = line_for(&lines, "GET /nowhere HTTP/1.1");
    assert_eq!(no_route[5], "503");
    assert_eq!(no_route[9..11], ["-", "-"]);
    assert_eq!(line_for(&lines, "GET /size/5 HTTP/1.1")[5..7], ["200", "5"]);
    // The unparsable head is logged as "-", with rsp's 400.
    let bad = line_for(&lines, "-");
    assert_eq!(bad[5], "400");
    assert_eq!(bad[12].len(), 32);
    let old_line = line_for(&lines, "GET /size/3 HTTP/1.0");
    assert_eq!(old_line[5..7], ["200", "3"]);
    // The backend that refused: its address, no status from it.
    let dead_line = line_for(&lines, "GET /dead HTTP/1.1");
    assert_eq!(dead_line[5], "502");
    assert_eq!(dead_line[9..11], ["127.0.0.1:1", "-"]);
}

#[test]
fn json_access_log_lines_parse() {
    let backend = Backend::start("a");
    let log = log_path("access.json");
    let proxy = Proxy::in_front_of(
        &backend,
        &format!("access_log = {log:?}\naccess_log_format = \"json\"\n{ROUTES}"),
    );
    let mut client = proxy.connect();
    client.send(b"POST /checksum HTTP/1.1\r\nHost: shop\r\nContent-Length: 4\r\nUser-Agent: \"quoted\"\\agent\r\n\r\nbody");
    let posted = client.response(false);
    client.send(b"GET /ping HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
    client.response(false);
    let lines = wait_for_lines(&log, 2);
    let post: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(post["method"], "POST");
    assert_eq!(post["target"], "/checksum");
    assert_eq!(post["protocol"], "HTTP/1.1");
    assert_eq!(post["host"], "shop");
    assert_eq!(post["user_agent"], "\"quoted\"\\agent");
    assert_eq!(post["status"], 200);
    assert_eq!(post["backend_status"], 200);
    assert_eq!(post["backend"], backend.address.to_string());
    assert_eq!(post["pool"], "default");
    assert_eq!(post["body_bytes_sent"], posted.body.len());
    assert!(post["bytes_received"].as_u64().unwrap() > 4);
    assert!(post["duration_us"].as_u64().unwrap() > 0);
    assert_eq!(post["completed"], true);
    assert_eq!(
        post["request_id"].as_str(),
        posted.header("x-request-id").as_deref()
    );
    assert!(post["time"].as_str().unwrap().ends_with('Z'));
    let ping: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(ping["status"], 200);
    assert_eq!(ping["backend"], serde_json::Value::Null);
    assert_eq!(ping["pool"], serde_json::Value::Null);
}

#[test]
fn sigusr1_reopens_the_access_log_after_logrotate_moved_it() {
    let backend = Backend::start("a");
    let log = log_path("rotated.log");
    let proxy = Proxy::in_front_of(&backend, &format!("access_log = {log:?}"));
    proxy.get("/size/1");
    wait_for_lines(&log, 1);
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    // Until told, rsp keeps writing to the file it has open.
    proxy.get("/size/2");
    wait_for_lines(&rotated, 2);
    proxy.signal(libc::SIGUSR1);
    proxy.wait_for_log("access log reopened", 1);
    proxy.get("/size/3");
    let fresh = wait_for_lines(&log, 1);
    assert!(fresh[0].contains("GET /size/3 "), "{fresh:?}");
    assert_eq!(wait_for_lines(&rotated, 2).len(), 2);
}

#[test]
fn stats_count_the_traffic_sent() {
    let (first, second) = (Backend::start("first"), Backend::start("second"));
    let (admin_address, admin_setting) = admin_port();
    let proxy = Proxy::start(&format!(
        "{admin_setting}pools = {{ web = {{ servers = {{ \"{}\", \"{}\" }} }} }}\n\
         route = function(req) if req.path == \"/ping\" then return {{ status = 200, body = \"pong\" }} end return \"web\" end\n",
        first.address, second.address
    ));
    let mut client = proxy.connect();
    let mut body_bytes = 0;
    for _ in 0..20 {
        client.send(b"GET /size/100 HTTP/1.1\r\nHost: x\r\n\r\n");
        body_bytes += client.response(false).body.len();
    }
    for _ in 0..4 {
        client.send(b"GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(client.response(false).status, 404);
    }
    for _ in 0..3 {
        client.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(client.response(false).status, 200);
    }
    assert_eq!(body_bytes, 2000);
    let stats = stats(admin_address);
    assert_eq!(stats["requests"]["total"], 27);
    assert_eq!(stats["requests"]["local"], 3);
    assert_eq!(stats["requests"]["responses"]["2xx"], 23);
    assert_eq!(stats["requests"]["responses"]["4xx"], 4);
    // This client and the admin request itself.
    assert_eq!(stats["connections"]["open"], 2);
    let pool = &stats["pools"][0];
    assert_eq!(pool["name"], "web");
    assert_eq!(pool["requests"], 24);
    for (server, backend) in pool["servers"]
        .as_array()
        .unwrap()
        .iter()
        .zip([&first, &second])
    {
        assert_eq!(server["address"], backend.address.to_string());
        assert_eq!(server["state"], "up");
        assert_eq!(server["requests"], backend.count());
        assert_eq!(server["requests"], 12);
        assert_eq!(server["total"], 12);
        assert_eq!(server["responses"]["2xx"], 10);
        assert_eq!(server["responses"]["4xx"], 2);
        assert_eq!(server["active"], 0);
        assert_eq!(server["errors"], 0);
        assert!(server["response_time_ms"].as_f64().unwrap() > 0.0);
        assert!(server["bytes_out"].as_u64().unwrap() > 1000);
    }
    let page = admin(admin_address, "GET", "/stats");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text();
    assert!(html.contains("<meta http-equiv=\"refresh\""), "{html}");
    assert!(html.contains("pool web"), "{html}");
    for backend in [&first, &second] {
        assert!(
            html.contains(&format!("<td class=\"name\">{}</td><td class=\"state\">up</td><td>1</td><td>0</td><td>12</td><td>12</td><td>0</td><td>10</td><td>0</td><td>2</td><td>0</td><td>0</td><td>0</td>", backend.address)),
            "{html}"
        );
    }
    let head = admin(admin_address, "HEAD", "/stats");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

/// A sample's labels other than `le`, in order.
type Labels = Vec<(String, String)>;

/// A parsed sample of the Prometheus text format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format strictly enough to catch what a
/// Prometheus server would refuse: names, label syntax and escapes,
/// values, a TYPE before each family's samples, and histogram shape.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    let is_name = |name: &str| {
        !name.is_empty()
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'));
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(is_name(name) && !help.is_empty(), "{line}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(is_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "TYPE twice: {line}"
            );
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "{line:?}");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(is_name(name), "{line}");
        let mut labels = BTreeMap::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            loop {
                let start = chars.peek().unwrap().0;
                let mut end = start;
                while let Some(&(at, c)) = chars.peek() {
                    if c == '=' {
                        end = at;
                        break;
                    }
                    chars.next();
                }
                let label = &inner[start..end];
                assert!(is_name(label), "{line}");
                chars.next();
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                let mut value = String::new();
                loop {
                    match chars.next().unwrap().1 {
                        '\\' => match chars.next().unwrap().1 {
                            'n' => value.push('\n'),
                            c @ ('\\' | '"') => value.push(c),
                            other => panic!("bad escape \\{other} in {line}"),
                        },
                        '"' => break,
                        c => value.push(c),
                    }
                }
                assert!(labels.insert(label.to_owned(), value).is_none(), "{line}");
                match chars.next().unwrap() {
                    (_, ',') => continue,
                    (at, '}') => {
                        rest = &inner[at + 1..];
                        break;
                    }
                    other => panic!("{other:?} in {line}"),
                }
            }
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or_else(|_| panic!("value in {line}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| types.get(*base).is_some_and(|kind| kind == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    // Histograms: buckets rise with `le` and end at +Inf with the count.
    for (family, kind) in &types {
        if kind != "histogram" {
            continue;
        }
        let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
        for sample in samples
            .iter()
            .filter(|s| s.name == format!("{family}_bucket"))
        {
            let le = sample.labels["le"].as_str();
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            let key = sample
                .labels
                .iter()
                .filter(|(k, _)| *k != "le")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            series.entry(key).or_default().push((bound, sample.value));
        }
        assert!(!series.is_empty(), "{family} has no buckets");
        for (key, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1),
                "{family} {key:?}"
            );
            let count = samples
                .iter()
                .find(|s| {
                    s.name == format!("{family}_count")
                        && s.labels
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<Vec<_>>()
                            == key
                })
                .unwrap_or_else(|| panic!("{family}_count {key:?}"));
            assert_eq!(
                buckets.last().unwrap(),
                &(f64::INFINITY, count.value),
                "{family} {key:?}"
            );
        }
    }
    samples
}

fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
        .unwrap_or_else(|| panic!("no {name} {labels:?}"))
        .value
}

#[test]
fn metrics_parse_as_prometheus_text_and_match_the_traffic() {
    let (good, dead_port) = (Backend::start("good"), free_port());
    let (admin_address, admin_setting) = admin_port();
    let pool = format!("\"{}\", \"127.0.0.1:{dead_port}\"", good.address);
    let proxy = Proxy::start(&format!(
        "{admin_setting}pools = {{ [\"we\\\"b\"] = {{ servers = {{ {pool} }} }} }}\n\
         route = function(req) return 'we\"b' end\n"
    ));
    let mut client = proxy.connect();
    for _ in 0..10 {
        client.send(b"GET /size/50 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(client.response(false).status, 200);
    }
    client.send(b"GET /status/500 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).status, 500);
    let response = admin(admin_address, "GET", "/metrics");
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let samples = parse_prometheus(&response.text());
    let good_server = good.address.to_string();
    let dead_server = format!("127.0.0.1:{dead_port}");
    let labels = |server: &str, class: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("pool", "we\"b".to_owned()),
            ("server", server.to_owned()),
            ("class", class.to_owned()),
        ]
    };
    let value = |name: &str, labels: Vec<(&'static str, String)>| {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        metric(&samples, name, &labels)
    };
    assert_eq!(
        value("rsp_server_requests_total", labels(&good_server, "2xx")),
        10.0
    );
    assert_eq!(
        value("rsp_server_requests_total", labels(&good_server, "5xx")),
        1.0
    );
    assert_eq!(
        value("rsp_server_requests_total", labels(&dead_server, "2xx")),
        0.0
    );
    // The dead server refused once, and that request moved to the good one.
    let server = |address: &str| vec![("pool", "we\"b".to_owned()), ("server", address.to_owned())];
    assert_eq!(value("rsp_server_errors_total", server(&dead_server)), 1.0);
    assert_eq!(value("rsp_server_retries_total", server(&dead_server)), 1.0);
    assert_eq!(value("rsp_server_up", server(&dead_server)), 0.0);
    assert_eq!(value("rsp_server_up", server(&good_server)), 1.0);
    assert_eq!(
        value("rsp_server_active_requests", server(&good_server)),
        0.0
    );
    assert!(value("rsp_server_sent_bytes_total", server(&good_server)) > 500.0);
    assert_eq!(
        metric(&samples, "rsp_requests_total", &[("class", "2xx")]),
        10.0
    );
    assert_eq!(
        metric(
            &samples,
            "rsp_pool_request_duration_seconds_count",
            &[("pool", "we\"b")]
        ),
        11.0
    );
    assert_eq!(
        metric(&samples, "rsp_request_duration_seconds_count", &[]),
        11.0
    );
    assert_eq!(metric(&samples, "rsp_connections", &[]), 2.0);
    assert!(metric(&samples, "rsp_received_bytes_total", &[]) > 0.0);
}

#[test]
fn a_drained_server_gets_no_new_requests_and_finishes_its_own() {
    let (first, second) = (Backend::start("first"), Backend::start("second"));
    let (admin_address, admin_setting) = admin_port();
    let proxy = Proxy::start(&format!(
        "{admin_setting}pools = {{ default = {{ servers = {{ \"{}\", \"{}\" }} }} }}\n",
        first.address, second.address
    ));
    // Round robin sends the first request to the first server.
    let address = proxy.address;
    let slow = thread::spawn(move || {
        request(
            address,
            "GET /sleep/1500 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    });
    assert!(wait_until(Duration::from_secs(5), || first.count() > 0));
    let drain_path = format!("/pools/default/servers/{}/drain", first.address);
    let drained = admin(admin_address, "POST", &drain_path);
    assert_eq!(drained.status, 200, "{}", drained.text());
    assert!(
        drained.text().contains("1 requests in flight"),
        "{}",
        drained.text()
    );
    let during = stats(admin_address);
    assert_eq!(during["pools"][0]["servers"][0]["state"], "draining");
    assert_eq!(during["pools"][0]["servers"][0]["active"], 1);
    for _ in 0..20 {
        assert_eq!(proxy.get("/").text(), "hello from second");
    }
    let finished = slow.join().unwrap();
    assert_eq!(finished.status, 200);
    assert_eq!(finished.text(), "hello from first");
    assert_eq!(first.count(), 1);
    let after = stats(admin_address);
    assert_eq!(after["pools"][0]["servers"][0]["active"], 0);
    assert_eq!(after["pools"][0]["servers"][0]["requests"], 1);
    proxy.wait_for_log(&format!("server {} drained", first.address), 1);

    let enable_path = format!("/pools/default/servers/{}/enable", first.address);
    assert_eq!(admin(admin_address, "POST", &enable_path).status, 200);
    let mut from_first = 0;
    for _ in 0..20 {
        if proxy.get("/").text() == "hello from first" {
            from_first += 1;
        }
    }
    assert_eq!(from_first, 10);

    // Mistakes get 404 (naming what is missing) or 405.
    let unknown_pool = admin(
        admin_address,
        "POST",
        "/pools/nope/servers/127.0.0.1:1/drain",
    );
    assert_eq!(unknown_pool.status, 404);
    assert!(unknown_pool.text().contains("no pool named \"nope\""));
    let unknown_server = admin(
        admin_address,
        "POST",
        "/pools/default/servers/127.0.0.1:1/drain",
    );
    assert_eq!(unknown_server.status, 404);
    assert!(
        unknown_server
            .text()
            .contains("has no server \"127.0.0.1:1\"")
    );
    let by_get = admin(admin_address, "GET", &drain_path);
    assert_eq!(by_get.status, 405);
    assert_eq!(by_get.header("allow").as_deref(), Some("POST"));
}

#[test]
fn the_admin_port_answers_only_its_own_paths() {
    let backend = Backend::start("a");
    let (admin_address, admin_setting) = admin_port();
    let _proxy = Proxy::in_front_of(&backend, &admin_setting);
    for path in [
        "/",
        "/size/10",
        "/stats/",
        "/pools/default",
        "/x/../etc/passwd",
    ] {
        let response = admin(admin_address, "GET", path);
        assert_eq!(response.status, 404, "{path}");
    }
    // Above the root: no path at all.
    assert_eq!(admin(admin_address, "GET", "/../etc/passwd").status, 400);
    for (method, path) in [
        ("POST", "/stats"),
        ("DELETE", "/metrics"),
        ("PUT", "/stats.json"),
    ] {
        let response = admin(admin_address, method, path);
        assert_eq!(response.status, 405, "{method} {path}");
    }
    assert_eq!(backend.count(), 0, "the admin port proxied a request");
}

#[test]
fn a_public_admin_address_must_be_asked_for() {
    let port = free_port();
    let config = temp_file(
        "public-admin.lua",
        &format!(
            "listen = \"127.0.0.1:{}\"\nbackends = {{ \"127.0.0.1:1\" }}\nadmin = \"0.0.0.0:{port}\"\n",
            free_port()
        ),
    );
    let (code, stderr) = check_config(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(":3: admin: 0.0.0.0:"), "{stderr}");
    assert!(stderr.contains("public = true"), "{stderr}");
    // Public, it needs a token.
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{}\"\nbackends = {{ \"127.0.0.1:1\" }}\nadmin = {{ addr = \"0.0.0.0:{port}\", public = true }}\n", free_port()),
    )
    .unwrap();
    let (code, stderr) = check_config(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(":3: admin: a public admin port"),
        "{stderr}"
    );
    let token = temp_file("admin.token", "s3cret-token-0123456789\n");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\nbackends = {{ \"127.0.0.1:1\" }}\n\
             admin = {{ addr = \"0.0.0.0:{port}\", public = true, token_file = {:?} }}\n",
            free_port(),
            token.file_name().unwrap()
        ),
    )
    .unwrap();
    let (code, stderr) = check_config(&config);
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{}\"\nbackends = {{ \"127.0.0.1:1\" }}\n\
             admin = {{ addr = \"0.0.0.0:{port}\", public = true, token = \"short\" }}\n",
            free_port()
        ),
    )
    .unwrap();
    let (code, stderr) = check_config(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("at least 16"), "{stderr}");
}

fn backend_head(response: &Response) -> String {
    response.text()
}

#[test]
fn request_ids_are_kept_made_forwarded_returned_and_logged() {
    let backend = Backend::start("a");
    let log = log_path("ids.log");
    let proxy = Proxy::in_front_of(&backend, &format!("access_log = {log:?}\n{ROUTES}"));
    let kept = request(
        proxy.address,
        "GET /head HTTP/1.1\r\nHost: x\r\nX-Request-Id: trace-42.a:b\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(kept.header("x-request-id").as_deref(), Some("trace-42.a:b"));
    assert!(backend_head(&kept).contains("\r\nX-Request-Id: trace-42.a:b\r\n"));
    let replaced = request(
        proxy.address,
        "GET /head HTTP/1.1\r\nHost: x\r\nX-Request-Id: two words\r\nConnection: close\r\n\r\n",
    );
    let id = replaced.header("x-request-id").unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|byte| byte.is_ascii_hexdigit()));
    let seen = backend_head(&replaced);
    assert!(
        seen.contains(&format!("\r\nX-Request-Id: {id}\r\n")),
        "{seen}"
    );
    assert!(!seen.contains("two words"), "{seen}");
    assert_eq!(seen.matches("X-Request-Id").count(), 1);
    // Made afresh for each request, also for rsp's own answers, and seen by Lua.
    let mut ids = std::collections::HashSet::new();
    for path in ["/size/1", "/size/1", "/nowhere", "/ping"] {
        let response = proxy.get(path);
        assert!(ids.insert(response.header("x-request-id").unwrap()));
    }
    let from_lua = proxy.get("/id");
    assert_eq!(Some(from_lua.text()), from_lua.header("x-request-id"));
    let lines = wait_for_lines(&log, 7);
    assert!(lines[0].ends_with(" trace-42.a:b"), "{}", lines[0]);
    assert!(lines[1].ends_with(&format!(" {id}")), "{}", lines[1]);

    let off = Proxy::in_front_of(&backend, "request_id = false");
    let plain = off.get("/head");
    assert_eq!(plain.header("x-request-id"), None);
    assert!(!backend_head(&plain).contains("X-Request-Id"));
}

#[test]
fn forwarded_headers_follow_the_config() {
    let backend = Backend::start("a");
    let send = |proxy: &Proxy| {
        backend_head(&request(
            proxy.address,
            "GET /head HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 198.51.100.7\r\n\
             X-Forwarded-Proto: https\r\nX-Forwarded-Host: cdn.example\r\nForwarded: for=198.51.100.7\r\n\
             Connection: close\r\n\r\n",
        ))
    };
    // By default a client is no proxy: its claims are replaced.
    let default = send(&Proxy::in_front_of(&backend, ""));
    for expected in [
        "\r\nX-Forwarded-For: 127.0.0.1\r\n",
        "\r\nX-Forwarded-Proto: http\r\n",
        "\r\nX-Forwarded-Host: shop.example\r\n",
    ] {
        assert!(default.contains(expected), "{expected:?} in {default}");
    }
    assert!(
        !default.contains("198.51.100.7") && !default.contains("Forwarded: for"),
        "{default}"
    );
    // A trusted proxy's are kept and extended; Forwarded switched on.
    let trusted = send(&Proxy::in_front_of(
        &backend,
        "forwarded_headers = { forwarded = true, trusted_proxies = { \"127.0.0.0/8\", \"::1\" } }",
    ));
    for expected in [
        "\r\nX-Forwarded-For: 198.51.100.7, 127.0.0.1\r\n",
        "\r\nX-Forwarded-Proto: https\r\n",
        "\r\nX-Forwarded-Host: cdn.example\r\n",
        "\r\nForwarded: for=198.51.100.7, for=127.0.0.1;host=\"shop.example\";proto=http\r\n",
    ] {
        assert!(trusted.contains(expected), "{expected:?} in {trusted}");
    }
    assert_eq!(trusted.matches("X-Forwarded-Proto").count(), 1, "{trusted}");
    // All off: rsp adds none, and still drops an untrusted client's.
    let off = send(&Proxy::in_front_of(
        &backend,
        "forwarded_headers = { x_forwarded_for = false, x_forwarded_proto = false, x_forwarded_host = false }",
    ));
    assert!(!off.contains("Forwarded"), "{off}");
}

/// The admin port as a hostile web page in an operator's browser would
/// reach it: form posts, text/plain posts, foreign origins, rebinding.
#[test]
fn the_admin_port_refuses_cross_site_changes_and_foreign_hosts() {
    let (first, second) = (Backend::start("first"), Backend::start("second"));
    let (admin_address, _) = admin_port();
    let proxy = Proxy::start(&format!(
        "admin = {{ addr = \"{admin_address}\", hosts = {{ \"rsp.internal\" }} }}\n\
         pools = {{ default = {{ servers = {{ \"{}\", \"{}\" }} }} }}\n",
        first.address, second.address
    ));
    let drain = format!("/pools/default/servers/{}/drain", first.address);
    let post = |fields: &str| {
        request(
            admin_address,
            &format!(
                "POST {drain} HTTP/1.1\r\nHost: {admin_address}\r\n{fields}Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    // What a cross-site page can send without a preflight: refused.
    for fields in [
        "Content-Type: application/x-www-form-urlencoded\r\nOrigin: http://evil.example\r\n",
        "Content-Type: text/plain\r\n",
        "Content-Type: multipart/form-data; boundary=x\r\n",
        "",
        // The header, but from elsewhere.
        "X-Rsp-Admin: 1\r\nOrigin: http://evil.example\r\n",
        "X-Rsp-Admin: 1\r\nOrigin: null\r\n",
        "X-Rsp-Admin: 1\r\nSec-Fetch-Site: cross-site\r\n",
        "X-Rsp-Admin: 1\r\nSec-Fetch-Site: same-site\r\n",
    ] {
        let response = post(fields);
        assert_eq!(response.status, 403, "{fields:?}: {}", response.text());
    }
    assert_eq!(
        stats(admin_address)["pools"][0]["servers"][0]["state"],
        "up"
    );
    // The page's own button (same origin, the header), and curl.
    let own = post(&format!(
        "X-Rsp-Admin: 1\r\nOrigin: http://{admin_address}\r\nSec-Fetch-Site: same-origin\r\n"
    ));
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(
        stats(admin_address)["pools"][0]["servers"][0]["state"],
        "draining"
    );
    assert_eq!(post("Content-Type: application/json\r\n").status, 200);

    // DNS rebinding: a name that resolves here but is not this port's.
    let by_host = |host: &str| {
        request(
            admin_address,
            &format!("GET /stats.json HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .status
    };
    let port = admin_address.port();
    assert_eq!(by_host(&format!("evil.example:{port}")), 421);
    assert_eq!(by_host("evil.example"), 421);
    assert_eq!(by_host(&format!("127.0.0.1:{}", port + 1)), 421);
    assert_eq!(by_host(&format!("127.0.0.1:{port}")), 200);
    assert_eq!(by_host(&format!("localhost:{port}")), 200);
    assert_eq!(by_host("rsp.internal"), 200);
    assert_eq!(by_host(&format!("RSP.internal:{port}")), 200);
    // Without a Host (HTTP/1.0 may leave it out) the check above could
    // not be made: refused.
    let old = request(admin_address, "GET /stats.json HTTP/1.0\r\n\r\n");
    assert_eq!(old.status, 400);
    let old = request(
        admin_address,
        "POST /pools/default/servers/127.0.0.1:1/drain HTTP/1.0\r\nX-Rsp-Admin: 1\r\n\r\n",
    );
    assert_eq!(old.status, 400);
    proxy.wait_for_log("does not name this admin port", 1);
}

#[test]
fn an_admin_token_is_required_on_every_request() {
    let backend = Backend::start("a");
    let (admin_address, _) = admin_port();
    let token = "a-long-enough-token-1234";
    let _proxy = Proxy::in_front_of(
        &backend,
        &format!("admin = {{ addr = \"{admin_address}\", token = \"{token}\" }}"),
    );
    let with = |authorization: &str, method: &str| {
        request(
            admin_address,
            &format!(
                "{method} /pools/default/servers/{}/drain HTTP/1.1\r\nHost: {admin_address}\r\nX-Rsp-Admin: 1\r\n{authorization}Connection: close\r\n\r\n",
                backend.address
            ),
        )
    };
    let get = |authorization: &str| {
        request(
            admin_address,
            &format!(
                "GET /stats.json HTTP/1.1\r\nHost: {admin_address}\r\n{authorization}Connection: close\r\n\r\n"
            ),
        )
    };
    for wrong in [
        "",
        "Authorization: Bearer nope\r\n",
        "Authorization: Basic YTpi\r\n",
        &format!("Authorization: Bearer {token}x\r\n"),
        &format!("Authorization: bearer{token}\r\n"),
    ] {
        let response = get(wrong);
        assert_eq!(response.status, 401, "{wrong:?}");
        assert_eq!(
            response.header("www-authenticate").as_deref(),
            Some("Bearer realm=\"rsp admin\"")
        );
        assert_eq!(with(wrong, "POST").status, 401, "{wrong:?}");
    }
    let right = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(get(&right).status, 200);
    assert_eq!(with(&right, "POST").status, 200);
}

/// Draining every normal server of a pool: backups take over; without
/// backups the pool answers 503. A drain means "not this server", even
/// when it is the last.
#[test]
fn a_pool_whose_servers_are_all_drained_uses_backups_or_answers_503() {
    let (first, second, spare) = (
        Backend::start("first"),
        Backend::start("second"),
        Backend::start("spare"),
    );
    let (admin_address, admin_setting) = admin_port();
    let proxy = Proxy::start(&format!(
        "{admin_setting}pools = {{\n\
           default = {{ servers = {{ \"{}\", \"{}\", {{ addr = \"{}\", backup = true }} }} }},\n\
           alone = {{ servers = {{ \"{}\" }} }},\n\
         }}\n\
         function route(req) if req.path == \"/alone\" then return \"alone\" end return \"default\" end\n",
        first.address, second.address, spare.address, first.address
    ));
    for server in [first.address, second.address] {
        let path = format!("/pools/default/servers/{server}/drain");
        assert_eq!(admin(admin_address, "POST", &path).status, 200);
    }
    for _ in 0..5 {
        assert_eq!(proxy.get("/").text(), "hello from spare");
    }
    let path = format!("/pools/alone/servers/{}/drain", first.address);
    assert_eq!(admin(admin_address, "POST", &path).status, 200);
    let before = first.count();
    assert_eq!(proxy.get("/alone").status, 503);
    assert_eq!(first.count(), before);
    proxy.wait_for_log("no server of pool alone is up (1 of 1 drained)", 1);
}
