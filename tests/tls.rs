//! TLS termination, checked with curl against certificates made at test
//! time by a throwaway CA (rcgen).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use common::*;

/// A CA that signs certificates for names, written as PEM files in `dir`.
struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: PathBuf,
}

impl Authority {
    fn new(dir: &Path, name: &str) -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let certificate = params.self_signed(&key).unwrap();
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, certificate.pem()).unwrap();
        Authority {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// Writes `FILE.pem` and `FILE.key` for `host`.
    fn issue(&self, dir: &Path, file: &str, host: &str) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec![host.to_owned()]).unwrap();
        let certificate = params.signed_by(&key, &self.issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), certificate.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).unwrap();
    }
}

/// `curl` through the TLS listener for `host`; (exit code, body, stderr).
fn curl_tls(
    authority: &Path,
    tls: SocketAddr,
    host: &str,
    paths: &[&str],
) -> (i32, String, String) {
    let (code, body, stderr) = curl_tls_bytes(authority, tls, host, paths);
    (code, String::from_utf8_lossy(&body).into_owned(), stderr)
}

fn curl_tls_bytes(
    authority: &Path,
    tls: SocketAddr,
    host: &str,
    paths: &[&str],
) -> (i32, Vec<u8>, String) {
    let resolve = format!("{host}:{}:127.0.0.1", tls.port());
    let urls: Vec<String> = paths
        .iter()
        .map(|path| format!("https://{host}:{}{path}", tls.port()))
        .collect();
    let mut args = vec![
        "--verbose",
        "--cacert",
        authority.to_str().unwrap(),
        "--resolve",
        &resolve,
    ];
    args.extend(urls.iter().map(String::as_str));
    let output = curl(&args);
    (
        output.status.code().unwrap_or(-1),
        output.stdout,
        output.stderr,
    )
}

fn tls_proxy(dir: &Path, backend: &Backend) -> (Proxy, SocketAddr) {
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let certs = format!(
        "{{ cert = \"{d}/a.pem\", key = \"{d}/a.key\" }}, {{ cert = \"{d}/b.pem\", key = \"{d}/b.key\" }}",
        d = dir.display()
    );
    let proxy = Proxy::start_listening(
        &format!("{{ addr = \"{tls}\", tls = {{ certs = {{ {certs} }} }} }}"),
        &format!(
            "backends = {{ \"{}\" }}\n\
             route = function(req)\n\
               if req.path == \"/who\" then return {{ status = 200, body = tostring(req.sni) .. \" \" .. tostring(req.tls) }} end\n\
               return \"default\"\n\
             end\n",
            backend.address
        ),
    );
    wait_for_listener(tls, &proxy.log);
    (proxy, tls)
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rsp-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn tls_terminates_with_the_certificate_the_client_names() {
    let dir = scratch_dir("sni");
    let authority = Authority::new(&dir, "ca");
    authority.issue(&dir, "a", "a.example.com");
    authority.issue(&dir, "b", "b.example.com");
    let backend = Backend::start("web");
    let (proxy, tls) = tls_proxy(&dir, &backend);

    // curl checks the certificate against the name: each name gets its own.
    for host in ["a.example.com", "b.example.com"] {
        let (code, body, stderr) = curl_tls(&authority.pem, tls, host, &["/who"]);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(body, format!("{host} true"));
        // TLS listeners offer h2 first (curl takes it; the HTTP/1.1 side
        // is the rest of this file's).
        assert!(stderr.contains("ALPN: server accepted h2"), "{stderr}");
    }
    // Proxied over TLS: the backend hears https; two requests, one connection.
    let (code, body, stderr) = curl_tls_bytes(
        &authority.pem,
        tls,
        "a.example.com",
        &["/head", "/size/3000000"],
    );
    assert_eq!(code, 0, "{stderr}");
    let large = pattern(3_000_000);
    assert!(
        body.len() > large.len() && body.ends_with(&large),
        "{} bytes",
        body.len()
    );
    let head = String::from_utf8_lossy(&body[..body.len() - large.len()]);
    assert!(head.contains("\r\nX-Forwarded-Proto: https\r\n"), "{head}");
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");

    // Plain HTTP to the TLS port is logged and closed; TLS goes on working.
    let mut plain = Client::connect(tls);
    plain.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(plain.try_response(false).is_none());
    proxy.wait_for_log("TLS: ", 1);
    let (code, _, stderr) = curl_tls(&authority.pem, tls, "b.example.com", &["/who"]);
    assert_eq!(code, 0, "{stderr}");
    // The plain listener is unaffected.
    assert_eq!(proxy.get("/").text(), "hello from web");
}

#[test]
fn certificates_are_read_again_on_sighup() {
    let dir = scratch_dir("reload");
    let first = Authority::new(&dir, "first");
    first.issue(&dir, "a", "a.example.com");
    first.issue(&dir, "b", "b.example.com");
    let backend = Backend::start("web");
    let (proxy, tls) = tls_proxy(&dir, &backend);
    assert_eq!(curl_tls(&first.pem, tls, "a.example.com", &["/who"]).0, 0);

    // Renewed by another CA: after SIGHUP only the new one verifies.
    let second = Authority::new(&dir, "second");
    second.issue(&dir, "a", "a.example.com");
    second.issue(&dir, "b", "b.example.com");
    proxy.signal(libc::SIGHUP);
    proxy.wait_for_log("reload done", 1);
    let (code, body, stderr) = curl_tls(&second.pem, tls, "a.example.com", &["/who"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(body, "a.example.com true");
    assert_ne!(curl_tls(&first.pem, tls, "a.example.com", &["/who"]).0, 0);
}

#[test]
fn bad_certificate_files_are_config_errors() {
    let dir = scratch_dir("bad");
    std::fs::write(dir.join("empty.pem"), "").unwrap();
    std::fs::write(dir.join("junk.key"), "not a key").unwrap();
    let config = dir.join("bad.lua");
    std::fs::write(
        &config,
        "backends = { \"127.0.0.1:2\" }\nlisten = { { addr = \"127.0.0.1:1\", tls = { cert = \"empty.pem\", key = \"junk.key\" } } }\n",
    )
    .unwrap();
    let (code, stderr) = check_config(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(":2: listen: tls: ") && stderr.contains("empty.pem"),
        "{stderr}"
    );
}

#[test]
fn a_handshake_that_never_finishes_is_cut_at_client_header() {
    let dir = scratch_dir("slow");
    let authority = Authority::new(&dir, "ca");
    authority.issue(&dir, "a", "a.example.com");
    authority.issue(&dir, "b", "b.example.com");
    let backend = Backend::start("web");
    let (_proxy, tls) = tls_listener(
        &dir,
        "",
        &format!(
            "backends = {{ \"{}\" }}\ntimeouts = {{ client_header = 300 }}",
            backend.address
        ),
    );
    // The first bytes of a ClientHello record, and then nothing.
    let mut client = Client::connect(tls);
    client.send(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]);
    let started = std::time::Instant::now();
    // Closed (after at most an alert), not left hanging.
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut client.reader, &mut rest).unwrap();
    assert!(rest.len() < 100, "{} bytes", rest.len());
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(250)
            && waited < std::time::Duration::from_secs(5),
        "{waited:?}"
    );
    // A real client is served meanwhile and after.
    let (code, body, stderr) = curl_tls(&authority.pem, tls, "a.example.com", &["/"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(body, "hello from web");
}

/// A TLS client behind a load balancer that speaks PROXY: the header comes
/// first on the raw connection, TLS starts on the bytes after it. Version 1
/// from curl's own `--haproxy-protocol`; version 2 from Python's ssl module
/// behind a hand-written header.
#[test]
fn a_listener_with_accept_proxy_and_tls_reads_the_header_then_the_handshake() {
    let dir = scratch_dir("proxy-tls");
    let authority = Authority::new(&dir, "ca");
    authority.issue(&dir, "a", "a.example.com");
    let backend = Backend::start("web");
    let (proxy, tls) = tls_listener(
        &dir,
        "accept_proxy = true, ",
        &format!(
            "backends = {{ \"{}\" }}\n\
             route = function(req)\n\
               if req.path == \"/who\" then return {{ status = 200, body = req.client_ip .. \" \" .. tostring(req.tls) .. \" \" .. tostring(req.sni) }} end\n\
               return \"default\"\n\
             end\n",
            backend.address
        ),
    );

    // v1: curl writes "PROXY TCP4 127.0.0.1 127.0.0.1 ..." before its ClientHello.
    let output = curl(&[
        "--haproxy-protocol",
        "--cacert",
        authority.pem.to_str().unwrap(),
        "--resolve",
        &format!("a.example.com:{}:127.0.0.1", tls.port()),
        &format!("https://a.example.com:{}/who", tls.port()),
        &format!("https://a.example.com:{}/head", tls.port()),
    ]);
    let body = output.text();
    assert!(output.status.success(), "{}", output.stderr);
    assert!(body.starts_with("127.0.0.1 true a.example.com"), "{body}");
    assert!(body.contains("\r\nX-Forwarded-Proto: https\r\n"), "{body}");

    // v2, naming another client: rsp must use that address.
    let script = format!(
        r#"
import socket, ssl, struct
header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12)
header += socket.inet_aton("203.0.113.9") + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, {port})
context = ssl.create_default_context(cafile={ca:?})
raw = socket.create_connection(("127.0.0.1", {port}))
raw.sendall(header)
with context.wrap_socket(raw, server_hostname="a.example.com") as tls:
    tls.sendall(b"GET /head HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := tls.recv(65536):
        answer += chunk
print(answer.decode())
"#,
        port = tls.port(),
        ca = authority.pem.display().to_string()
    );
    let answer = python(&script);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(
        answer.contains("\r\nX-Forwarded-For: 203.0.113.9\r\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\r\nX-Forwarded-Proto: https\r\n"),
        "{answer}"
    );

    // Without a header, the connection is refused unanswered, as before.
    let (code, _, _) = curl_tls(&authority.pem, tls, "a.example.com", &["/who"]);
    assert_ne!(code, 0);
    proxy.wait_for_log("refused: ", 1);
}

/// A proxy with one TLS listener serving `dir`'s certificate "a" (with
/// `options`, such as `accept_proxy = true, `), started with `settings`.
fn tls_listener(dir: &Path, options: &str, settings: &str) -> (Proxy, SocketAddr) {
    let tls: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let proxy = Proxy::start_listening(
        &format!(
            "{{ addr = \"{tls}\", {options}tls = {{ cert = \"{d}/a.pem\", key = \"{d}/a.key\" }} }}",
            d = dir.display()
        ),
        settings,
    );
    wait_for_listener(tls, &proxy.log);
    (proxy, tls)
}

/// Runs a Python script (the ssl module as the client) and gives its
/// output; the script failing fails the test.
fn python(script: &str) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A TLS listener with an admin port, for the tests below.
fn tls_with_admin(dir: &Path, backend: &Backend) -> (Proxy, SocketAddr, SocketAddr) {
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let settings = format!(
        "backends = {{ \"{}\" }}\nadmin = \"{admin}\"\n",
        backend.address
    );
    let (proxy, tls) = tls_listener(dir, "", &settings);
    (proxy, tls, admin)
}

/// A client that asked to close hears close_notify before the close: an
/// OpenSSL 3 client (Python's ssl, which reports a close without it as a
/// violation; `ab`, which counts such answers as failed) reads every answer.
#[test]
fn tls_connections_end_with_close_notify() {
    let dir = scratch_dir("close-notify");
    let authority = Authority::new(&dir, "ca");
    authority.issue(&dir, "a", "a.example.com");
    let backend = Backend::start("web");
    let (_proxy, tls, _) = tls_with_admin(&dir, &backend);
    let script = format!(
        r#"
import socket, ssl
context = ssl.create_default_context(cafile={ca:?})
for request in (b"GET / HTTP/1.0\r\nHost: a.example.com\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n"):
    raw = socket.create_connection(("127.0.0.1", {port}))
    with context.wrap_socket(raw, server_hostname="a.example.com", suppress_ragged_eofs=False) as tls:
        tls.sendall(request)
        answer = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        assert answer.endswith(b"hello from web"), answer
print("clean")
"#,
        port = tls.port(),
        ca = authority.pem.display().to_string()
    );
    assert_eq!(python(&script).trim(), "clean");
    // ab over https, without keep-alive: every answer ends in close_notify.
    ensure_package("ab", "apache2-utils");
    let output = Command::new("ab")
        .args(["-q", "-n", "200", "-c", "4"])
        .arg(format!("https://127.0.0.1:{}/", tls.port()))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("Complete requests:      200"), "{report}");
    assert!(report.contains("Failed requests:        0"), "{report}");
}

/// wrk and many scripts send an IP address as SNI; rustls ignores it.
/// That is counted in /metrics, not logged as a warning per connection.
#[test]
fn an_ip_address_as_sni_is_counted_not_logged() {
    let dir = scratch_dir("ip-sni");
    let authority = Authority::new(&dir, "ca");
    authority.issue(&dir, "a", "a.example.com");
    let backend = Backend::start("web");
    let (proxy, tls, admin) = tls_with_admin(&dir, &backend);
    for _ in 0..3 {
        let output = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(tls.to_string())
            .args(["-servername", "127.0.0.1"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("hello from web"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metrics = admin_request(admin, "GET", "/metrics").text();
    assert!(
        metrics.contains("\nrsp_tls_ignored_sni_total 3\n"),
        "{metrics}"
    );
    assert!(!proxy.log().contains("Illegal SNI"), "{}", proxy.log());
}

/// A TLS listener in tcp mode passes the decrypted bytes to its pool's
/// servers unparsed, so whatever ALPN agreed on is what the server gets:
/// it offers http/1.1 only (HTTP listeners offer h2 first), and a client
/// that speaks h2 (curl, any browser) talks HTTP/1.1 to the server behind.
#[test]
fn a_tcp_mode_tls_listener_does_not_offer_h2() {
    let backend = Backend::start("web");
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert = temp_file("tcp-tls.pem", &certified.cert.pem());
    let key = temp_file("tcp-tls.key", &certified.signing_key.serialize_pem());
    let port = free_port();
    let proxy = Proxy::start_listening(
        &format!(
            "{{ addr = \"127.0.0.1:{port}\", mode = \"tcp\", pool = \"web\", \
             tls = {{ cert = {cert:?}, key = {key:?} }} }}"
        ),
        &format!(
            "pools = {{ web = {{ servers = {{ \"{}\" }} }} }}\nbackends = {{ \"{}\" }}\nfunction route(req) return \"default\" end",
            backend.address, backend.address
        ),
    );
    proxy.wait_for_log(&format!("listening on 127.0.0.1:{port}"), 1);
    let output = curl(&[
        "-k",
        "--max-time",
        "10",
        "--http2",
        "-w",
        " %{http_version}",
        &format!("https://localhost:{port}/"),
    ]);
    assert_eq!(output.text(), "hello from web 1.1", "{}", output.stderr);
}
