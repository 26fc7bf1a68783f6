//! Hosts spelled another way than a rule expects, forwarding loops, and
//! the admin port reached through the proxy. Against the real binary, with a real nginx behind it where its
//! reading of a host is the point.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

/// nginx with a default server and an internal virtual host on the same
/// port: which one served a request is in the body.
fn nginx_with_internal_vhost() -> Nginx {
    Nginx::start(
        "    location / { return 200 \"public\\n\"; }\n\
         }\n\
         server {\n\
         listen 127.0.0.1:{PORT};\n\
         server_name internal.corp;\n\
         location / { return 200 \"internal\\n\"; }\n",
    )
}

/// The rule the attack got past: no one outside reaches internal.corp.
const GUARD: &str = r#"
function route(req)
  if req.host == "internal.corp" then
    return { status = 403, body = "denied " .. req:header("Host") .. "\n" }
  end
  local app = rsp.map("apps"):get(req.host)
  if app == "blocked" then return { status = 451, body = "blocked\n" } end
  return "default"
end"#;

fn guarded(nginx: &Nginx, extra: &str) -> Proxy {
    let map = temp_file("apps.map", "Blocked.Example blocked\n");
    Proxy::start_h2c(&format!(
        "backends = {{ \"{}\" }}\nmaps = {{ apps = {{ file = \"{}\" }} }}\n{extra}\n{GUARD}",
        nginx.address,
        map.display()
    ))
}

/// curl with `args` (given 10 s): the body and status it printed, and
/// what it said on stderr.
fn curl_status(args: &[&str]) -> (String, String) {
    let output = curl(
        &[
            &["--max-time", "10", "-o", "-", "-w", " %{http_code}"],
            args,
        ]
        .concat(),
    );
    (output.text(), output.stderr)
}

#[test]
fn every_spelling_of_a_guarded_host_meets_the_rule_over_http1_and_http2() {
    let nginx = nginx_with_internal_vhost();
    // The control: nginx alone serves the internal host to every spelling.
    for host in ["internal.corp.", "INTERNAL.corp.:80", "Internal.Corp"] {
        let mut client = Client::connect(nginx.address);
        client.send(
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(client.response(false).text(), "internal\n", "{host}");
    }
    let proxy = guarded(&nginx, "");
    let http1: &[&str] = &[
        "GET / HTTP/1.1\r\nHost: internal.corp.\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: INTERNAL.corp.:80\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: Internal.Corp\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: internal.corp:\r\n\r\n",
        "GET http://internal.corp./ HTTP/1.1\r\nHost: public.example\r\n\r\n",
        "GET http://INTERNAL.CORP.:80/x HTTP/1.1\r\nHost: public.example\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: INTERNAL.corp.:80\r\n\r\n",
        "GET http://internal.corp./ HTTP/1.0\r\n\r\n",
    ];
    for raw in http1 {
        let response = proxy.get_raw(raw);
        assert_eq!(response.status, 403, "{raw:?}: {}", response.text());
        assert_eq!(response.text(), "denied internal.corp\n", "{raw:?}");
    }
    // Spellings with no canonical form are refused before route().
    for host in [
        "internal..corp",
        ".internal.corp",
        "internal.corp..",
        "internal%2ecorp",
        "internal.corp:0",
        "internal.corp:080",
        "127.1",
        "0x7f.0.0.1",
        "[::1%25lo]",
    ] {
        let response = proxy.get_raw(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert_eq!(response.status, 400, "{host}: {}", response.text());
    }
    // HTTP/2 (curl, prior knowledge): :authority in its spellings.
    let port = proxy.address.port();
    let url = format!("http://127.0.0.1:{port}/");
    for host in ["internal.corp.", "INTERNAL.corp.:80", "Internal.CORP"] {
        let header = format!("Host: {host}");
        let (out, error) = curl_status(&["--http2-prior-knowledge", "-H", &header, &url]);
        assert_eq!(out, "denied internal.corp\n 403", "{host}: {error}");
    }
    let resolve = format!("internal.corp.:{port}:127.0.0.1");
    let dotted = format!("http://internal.corp.:{port}/");
    let (out, error) = curl_status(&["--http2-prior-knowledge", "--resolve", &resolve, &dotted]);
    assert_eq!(out, format!("denied internal.corp:{port}\n 403"), "{error}");
    let (out, _) = curl_status(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: internal..corp",
        &url,
    ]);
    assert!(out.ends_with(" 400") || out.trim().is_empty(), "{out}");
    // Map lookups on req.host hit whatever the spelling.
    for host in ["blocked.example", "BLOCKED.example.", "blocked.example:80"] {
        let response = proxy.get_raw(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        assert_eq!(response.status, 451, "{host}");
    }
    // Other hosts reach nginx's default server, and none reached the
    // internal one.
    let response = proxy.get_raw("GET / HTTP/1.1\r\nHost: Public.Example.\r\n\r\n");
    assert_eq!(response.text(), "public\n");
    assert!(
        !nginx.access_log().contains("internal"),
        "{}",
        nginx.access_log()
    );
}

/// An address that reaches this machine other than through loopback:
/// the interface a route out would use (no packet is sent).
fn interface_address() -> Option<std::net::IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn rsp_never_dials_its_own_listeners_whatever_the_spelling() {
    let backend = Backend::start("backend");
    let wildcard = free_port();
    let (admin, _) = admin_port();
    let proxy = Proxy::start_listening(
        &format!("\"0.0.0.0:{wildcard}\""),
        &format!(
            "backends = {{ \"{}\" }}\nadmin = \"{admin}\"\ntimeouts = {{ connect = 3000, backend_response = 3000 }}\n\
             function route(req)\n  local to = req:header(\"X-To\")\n  if to then return to end\n  return \"default\"\nend",
            backend.address
        ),
    );
    let own = proxy.address.port();
    let mut targets = vec![
        format!("0.0.0.0:{own}"),
        format!("[::ffff:127.0.0.1]:{own}"),
        format!("[::ffff:0.0.0.0]:{own}"),
        format!("127.0.0.1:{own}"),
        format!("127.0.0.1:{wildcard}"),
        format!("127.5.6.7:{wildcard}"),
        format!("0.0.0.0:{wildcard}"),
        format!("[::1]:{wildcard}"),
        format!("0.0.0.0:{}", admin.port()),
        format!("[::ffff:127.0.0.1]:{}", admin.port()),
    ];
    if let Some(ip) = interface_address() {
        targets.push(SocketAddr::new(ip, wildcard).to_string());
    }
    for target in &targets {
        let started = Instant::now();
        let response = proxy.get_raw(&format!(
            "GET /stats.json HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Rsp-Admin: 1\r\nX-To: {target}\r\n\r\n",
            admin.port()
        ));
        assert_eq!(response.status, 508, "{target}: {}", response.text());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{target}: {:?}",
            started.elapsed()
        );
    }
    // Nothing rsp answered came from the admin port.
    assert!(proxy.log().matches("rsp's own listener").count() >= targets.len());
    // A server that is not rsp's is dialled as usual.
    let response = proxy.get_raw(&format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-To: {}\r\n\r\n",
        backend.address
    ));
    assert_eq!(response.status, 200);
    // The admin port itself, reached directly, refuses a request without
    // Host: the rebinding check cannot be skipped by leaving it out.
    let response = admin_request(admin, "GET", "/stats.json");
    assert_eq!(response.status, 200);
    let mut client = Client::connect(admin);
    client.send(b"GET /stats.json HTTP/1.0\r\n\r\n");
    assert_eq!(client.response(false).status, 400);
}

#[test]
fn a_pool_server_that_is_rsps_own_listener_is_a_config_error() {
    let port = free_port();
    for server in [
        format!("127.0.0.1:{port}"),
        format!("0.0.0.0:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let config = temp_file(
            "loop.lua",
            &format!(
                "listen = \"0.0.0.0:{port}\"\npools = {{ web = {{ servers = {{ \"{server}\" }} }} }}\nfunction route() return \"web\" end\n"
            ),
        );
        let (code, stderr) = check_config(&config);
        assert_eq!(code, Some(1), "{server}: {stderr}");
        assert!(
            stderr.contains("loop.lua:2: pool web: server")
                && stderr.contains("rsp's own listener"),
            "{stderr}"
        );
    }
}

/// Two rsp in a chain that loops back (A -> B -> A): A knows its own
/// name in B's Via and answers 508 at once, instead of the two dialling
/// each other until their connections run out.
#[test]
fn a_loop_through_another_proxy_ends_in_508() {
    let first = Proxy::start("backends = { \"127.0.0.1:2\" }");
    let second = Proxy::start(&format!("backends = {{ \"{}\" }}", first.address));
    first.reload(&format!("backends = {{ \"{}\" }}", second.address));
    first.wait_for_log("reload done", 1);
    let started = Instant::now();
    let response = first.get("/");
    assert_eq!(response.status, 508, "{}", response.text());
    assert!(started.elapsed() < Duration::from_secs(2));
    first.wait_for_log("a loop", 1);
    // The same through a real nginx, which passes Via on.
    let proxy =
        Proxy::start("backends = { \"127.0.0.1:2\" }\nforwarded_headers = { via = \"edge-7\" }");
    let nginx = Nginx::start(&format!(
        "    location / {{ proxy_pass http://{}; }}\n",
        proxy.address
    ));
    proxy.reload(&format!(
        "backends = {{ \"{}\" }}\nforwarded_headers = {{ via = \"edge-7\" }}",
        nginx.address
    ));
    proxy.wait_for_log("reload done", 1);
    let response = proxy.get("/");
    assert_eq!(response.status, 508, "{}", response.text());
    proxy.wait_for_log("Via names rsp (edge-7)", 1);
    // Without the loop, the backend sees rsp's Via after the client's.
    let recorder = Recorder::start(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\nforwarded_headers = {{ via = \"edge-7\" }}",
        recorder.address
    ));
    let response = proxy.get_raw("GET / HTTP/1.0\r\nHost: a\r\nVia: 1.1 cdn\r\n\r\n");
    assert_eq!(response.status, 200);
    let request = recorder.requests().pop().unwrap();
    let vias: Vec<&str> = request
        .lines()
        .filter_map(|line| line.strip_prefix("Via: "))
        .collect();
    assert_eq!(vias, ["1.1 cdn", "1.0 edge-7"], "{request}");
    // Switched off, no Via is written and none is looked for.
    let proxy = Proxy::start(&format!(
        "backends = {{ \"{}\" }}\nforwarded_headers = {{ via = false }}",
        recorder.address
    ));
    let response = proxy.get_raw("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(response.status, 200);
    assert!(!recorder.requests().pop().unwrap().contains("Via"));
}

/// A free loopback address for an admin port, and its port.
fn admin_port() -> (SocketAddr, u16) {
    let port = free_port();
    (format!("127.0.0.1:{port}").parse().unwrap(), port)
}
