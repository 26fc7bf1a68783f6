//! State shared by several rsp instances through a real Redis: the
//! connection itself (handshake, health, failure and recovery).

mod common;

use std::time::Duration;

use common::redis::Redis;
use common::*;

/// The value of a metric on the admin port's `/metrics`.
fn metric(admin_port: u16, name: &str) -> Option<f64> {
    let text = admin(admin_port, "GET", "/metrics", "").text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn proxy_with_redis(redis_port: u16, admin_port: u16, password_file: &str) -> Proxy {
    let backend = Backend::start("b");
    Proxy::start(&format!(
        r#"backends = {{ "{}" }}
admin = "127.0.0.1:{admin_port}"
redis = {{ servers = {{ "127.0.0.1:{redis_port}" }}, password_file = "{password_file}", db = 3, timeout_ms = 300 }}
"#,
        backend.address
    ))
}

/// rsp connects with `AUTH` and `SELECT`, says so in the log and
/// `/metrics`, measures round trips; when Redis dies it keeps serving,
/// counts the failure and tries again with back-off, and when Redis
/// comes back on the same port it reconnects without a restart.
#[test]
fn the_connection_authenticates_survives_redis_and_comes_back() {
    let redis_port = free_port();
    let password = temp_file("redis.pass", "s3cret\n");
    let redis = Redis::start_with(redis_port, &["--requirepass", "s3cret"]);
    let admin_port = free_port();
    let proxy = proxy_with_redis(redis_port, admin_port, password.to_str().unwrap());
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            admin_port,
            "rsp_redis_up"
        ) == Some(1.0)),
        "{}",
        proxy.log()
    );
    assert!(proxy.log().contains(&format!(
        "redis: connected to 127.0.0.1:{redis_port} (db 3)"
    )));
    // PINGs go on once a second: their replies are counted.
    let before = metric(admin_port, "rsp_redis_commands_total").unwrap();
    assert!(wait_until(Duration::from_secs(3), || {
        metric(admin_port, "rsp_redis_commands_total").unwrap() > before
    }));
    assert!(metric(admin_port, "rsp_redis_round_trip_seconds").unwrap() < 0.1);
    // rsp's own connection is in Redis's client list, on db 3.
    let clients = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis_port.to_string(),
            "-a",
            "s3cret",
            "--no-auth-warning",
            "CLIENT",
            "LIST",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&clients.stdout).contains("db=3"));

    drop(redis);
    assert!(wait_until(Duration::from_secs(5), || metric(
        admin_port,
        "rsp_redis_up"
    ) == Some(0.0)));
    assert_eq!(proxy.get("/").status, 200, "requests go on without Redis");
    assert!(metric(admin_port, "rsp_redis_failures_total").unwrap() >= 1.0);
    let warned = proxy.log().matches("trying again in").count();
    let failures = metric(admin_port, "rsp_redis_failures_total").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || {
            metric(admin_port, "rsp_redis_failures_total").unwrap() > failures
        }),
        "it keeps trying"
    );
    assert_eq!(
        proxy.log().matches("trying again in").count(),
        warned,
        "one warning per outage: {}",
        proxy.log()
    );

    let _redis = Redis::start_with(redis_port, &["--requirepass", "s3cret"]);
    assert!(
        wait_until(Duration::from_secs(8), || metric(
            admin_port,
            "rsp_redis_up"
        ) == Some(1.0)),
        "{}",
        proxy.log()
    );
    assert_eq!(metric(admin_port, "rsp_redis_connects_total"), Some(2.0));
}

/// A wrong password is Redis's refusal, logged with its reason; rsp keeps
/// serving and keeps trying (an operator may fix Redis's side).
#[test]
fn a_refused_password_is_logged_and_retried() {
    let redis_port = free_port();
    let password = temp_file("redis.pass", "wrong\n");
    let _redis = Redis::start_with(redis_port, &["--requirepass", "s3cret"]);
    let admin_port = free_port();
    let proxy = proxy_with_redis(redis_port, admin_port, password.to_str().unwrap());
    assert!(
        wait_until(Duration::from_secs(5), || proxy
            .log()
            .contains("AUTH refused")),
        "{}",
        proxy.log()
    );
    assert_eq!(metric(admin_port, "rsp_redis_up"), Some(0.0));
    assert!(metric(admin_port, "rsp_redis_errors_total").unwrap() >= 1.0);
    assert_eq!(proxy.get("/").status, 200);
}

/// What the config may say of Redis is checked with its file and line.
#[test]
fn redis_settings_are_checked() {
    let cases = [
        (
            "redis = { servers = { \"127.0.0.1:6379\" }, tls = true }",
            "not supported",
        ),
        (
            "redis = { servers = { \"127.0.0.1:6379\" }, sentinel = {} }",
            "not supported",
        ),
        ("redis = { db = 1 }", "missing servers"),
        (
            "redis = { servers = { \"127.0.0.1:6379\" }, password_file = \"/nonexistent/pass\" }",
            "/nonexistent/pass",
        ),
        (
            "redis = { servers = { \"127.0.0.1:6379\" }, timeout_ms = 0 }",
            "timeout_ms",
        ),
        (
            "redis = { servers = { \"127.0.0.1:6379\" }, colour = 1 }",
            "colour",
        ),
    ];
    for (setting, expected) in cases {
        let config = temp_file(
            "config.lua",
            &format!("listen = \"127.0.0.1:1\"\nbackends = {{ \"127.0.0.1:2\" }}\n{setting}\n"),
        );
        let (status, output) = check_config(&config);
        assert_ne!(status, Some(0), "{setting}");
        assert!(
            output.contains(expected) && output.contains(":3"),
            "{setting}: {output}"
        );
    }
}

/// A "Redis" that answers every connection with `reply` (after the
/// client's first bytes), then closes it (`close`) or keeps it open.
fn hostile_redis(reply: &'static [u8], close: bool) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut first = [0u8; 256];
                let _ = stream.read(&mut first);
                for piece in reply.chunks(64 * 1024) {
                    if stream.write_all(piece).is_err() {
                        return;
                    }
                }
                if close {
                    return;
                }
                let _ = stream.read(&mut first);
                std::thread::sleep(Duration::from_secs(30));
            });
        }
    });
    address
}

/// A Redis that answers garbage, nests a reply a million deep, sends a
/// reply larger than rsp reads, closes mid-reply, or never answers: each
/// fails the connection with a clear log line, rsp's memory stays within
/// bounds, and requests go on.
#[test]
fn a_hostile_redis_fails_the_connection_not_rsp() {
    let huge: &'static [u8] = Box::leak(
        [b"$100000000\r\n".to_vec(), vec![b'x'; 20 * 1024 * 1024]]
            .concat()
            .into_boxed_slice(),
    );
    let deep: &'static [u8] = Box::leak(b"*1\r\n".repeat(1_000_000).into_boxed_slice());
    let cases: [(&'static [u8], bool, &str); 5] = [
        (b"HTTP/1.1 200 OK\r\n\r\n", false, "cannot read"),
        (deep, false, "nested over"),
        (huge, false, "over 8388608 bytes"),
        (b"$10\r\nabc", true, "Redis closed the connection"),
        (b"", false, "no reply within"),
    ];
    for (reply, close, expected) in cases {
        let address = hostile_redis(reply, close);
        let admin_port = free_port();
        let backend = Backend::start("b");
        let proxy = Proxy::start(&format!(
            r#"backends = {{ "{}" }}
admin = "127.0.0.1:{admin_port}"
redis = {{ servers = {{ "{address}" }}, timeout_ms = 300 }}
"#,
            backend.address
        ));
        assert!(
            wait_until(Duration::from_secs(5), || proxy.log().contains(expected)),
            "{expected}: {}",
            proxy.log()
        );
        assert_eq!(proxy.get("/").status, 200);
        assert_eq!(metric(admin_port, "rsp_redis_up"), Some(0.0));
        assert!(
            proxy.rss_kib() < 64 * 1024,
            "{expected}: {} KiB",
            proxy.rss_kib()
        );
    }
}

/// rsp with a limit of 50/s, burst 10 on one key, shared through `redis`
/// when `shared`; `on_error` as given.
fn limited_proxy(
    redis_port: u16,
    admin_port: u16,
    shared: bool,
    on_error: &str,
) -> (Proxy, Backend) {
    let backend = Backend::start("b");
    let sharing = if shared {
        format!(", shared = true, sync_ms = 50, on_error = \"{on_error}\"")
    } else {
        String::new()
    };
    let proxy = Proxy::start(&format!(
        r#"backends = {{ "{}" }}
admin = "127.0.0.1:{admin_port}"
redis = {{ servers = {{ "127.0.0.1:{redis_port}" }}, timeout_ms = 500 }}
limits = {{ api = {{ rate = 50, per = "second", burst = 10{sharing} }} }}
function route(req)
  if not rsp.limit("api", "everyone") then return {{ status = 429 }} end
  return "default"
end
"#,
        backend.address
    ));
    (proxy, backend)
}

/// Requests sent to each proxy as fast as it answers, for `seconds`:
/// how many got 200 and how many 429, in all.
fn hammer(proxies: &[&Proxy], seconds: f64) -> (usize, usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs_f64(seconds);
    let addresses: Vec<_> = proxies.iter().map(|proxy| proxy.address).collect();
    let threads: Vec<_> = addresses
        .into_iter()
        .map(|address| {
            std::thread::spawn(move || {
                let (mut ok, mut limited) = (0, 0);
                let mut client = Client::connect(address);
                while std::time::Instant::now() < deadline {
                    client.send(b"GET / HTTP/1.1\r\nHost: shared\r\n\r\n");
                    match client.try_response(false).map(|response| response.status) {
                        Some(200) => ok += 1,
                        Some(429) => limited += 1,
                        _ => client = Client::connect(address),
                    }
                }
                (ok, limited)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
}

/// A limit of 50/s, burst 10, shared by three instances and hit on all
/// three for 5 s lets about 50 × 5 + 10 through in all (the stated excess:
/// at most one sync interval's worth per other instance, burst included),
/// where three unshared instances let three times that through.
#[test]
fn a_shared_limit_holds_across_three_instances() {
    let redis = Redis::start();
    let port = redis.address.port();
    let admin_port = free_port();
    let instances: Vec<_> = (0..3)
        .map(|index| {
            let admin = if index == 0 { admin_port } else { free_port() };
            limited_proxy(port, admin, true, "local")
        })
        .collect();
    for (proxy, _) in &instances {
        assert!(
            wait_until(Duration::from_secs(5), || proxy
                .log()
                .contains("redis: connected")),
            "{}",
            proxy.log()
        );
    }
    let proxies: Vec<&Proxy> = instances.iter().map(|(proxy, _)| proxy).collect();
    let (ok, limited) = hammer(&proxies, 5.0);
    eprintln!("shared: {ok} let through, {limited} refused");
    assert!(limited > 1000, "the limit was reached: {limited}");
    assert!(
        (150..=300).contains(&ok),
        "shared by three: {ok} let through"
    );

    let alone: Vec<_> = (0..3)
        .map(|_| limited_proxy(port, free_port(), false, "local"))
        .collect();
    let proxies: Vec<&Proxy> = alone.iter().map(|(proxy, _)| proxy).collect();
    let (ok, _) = hammer(&proxies, 5.0);
    eprintln!("unshared: {ok} let through");
    assert!((700..=800).contains(&ok), "three alone: {ok} let through");
}

/// Redis killed mid-run: each shared limit acts by its `on_error` (fail
/// open, fail closed, or alone), says so once in the log, and requests
/// keep flowing; Redis back on its port: syncing resumes, no restart.
#[test]
fn a_shared_limit_follows_on_error_while_redis_is_down() {
    let port = free_port();
    let redis = Redis::start_with(port, &[]);
    let proxies: Vec<_> = ["allow", "deny", "local"]
        .iter()
        .map(|on_error| (*on_error, limited_proxy(port, free_port(), true, on_error)))
        .collect();
    for (_, (proxy, _)) in &proxies {
        assert!(wait_until(Duration::from_secs(5), || proxy
            .log()
            .contains("redis: connected")));
    }
    let said_before: Vec<usize> = proxies
        .iter()
        .map(|(on_error, (proxy, _))| proxy.log().matches(&said(on_error)).count())
        .collect();
    drop(redis);
    for ((on_error, (proxy, _)), before) in proxies.iter().zip(said_before) {
        let said = said(on_error);
        assert!(
            wait_until(Duration::from_secs(5), || proxy
                .log()
                .matches(&said)
                .count()
                > before),
            "{}",
            proxy.log()
        );
        let (ok, limited) = hammer(&[proxy], 1.0);
        match *on_error {
            "allow" => assert_eq!(limited, 0, "fail open: {ok} let through"),
            "deny" => assert_eq!(ok, 0, "fail closed: {limited} refused"),
            _ => assert!(
                (10..=80).contains(&ok) && limited > 0,
                "alone: {ok} let through"
            ),
        }
        assert_eq!(proxy.log().matches(&said).count(), before + 1, "said once");
    }
    let shared = "limit api: shared through Redis";
    let before: Vec<usize> = proxies
        .iter()
        .map(|(_, (proxy, _))| proxy.log().matches(shared).count())
        .collect();
    let _redis = Redis::start_with(port, &[]);
    for ((_, (proxy, _)), before) in proxies.iter().zip(before) {
        assert!(
            wait_until(Duration::from_secs(10), || proxy
                .log()
                .matches(shared)
                .count()
                > before),
            "{}",
            proxy.log()
        );
    }
}

/// What rsp logs when a limit falls back to `on_error`.
fn said(on_error: &str) -> String {
    format!("acting by on_error = {}", capitalized(on_error))
}

fn capitalized(word: &str) -> String {
    let mut letters = word.chars();
    letters
        .next()
        .map(|first| first.to_uppercase().chain(letters).collect())
        .unwrap_or_default()
}

/// A reload adds Redis to a running rsp (it connects) and takes it away
/// again (the connection goes, and `/metrics` no longer shows it).
#[test]
fn a_reload_adds_and_removes_redis() {
    let redis = Redis::start();
    let backend = Backend::start("b");
    let admin_port = free_port();
    let base = format!(
        "backends = {{ \"{}\" }}\nadmin = \"127.0.0.1:{admin_port}\"\n",
        backend.address
    );
    let proxy = Proxy::start(&base);
    assert_eq!(metric(admin_port, "rsp_redis_up"), None);
    proxy.reload(&format!(
        "{base}redis = {{ servers = {{ \"{}\" }} }}",
        redis.address
    ));
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            admin_port,
            "rsp_redis_up"
        ) == Some(1.0)),
        "{}",
        proxy.log()
    );
    proxy.reload(&base);
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            admin_port,
            "rsp_redis_up"
        )
        .is_none()),
        "{}",
        proxy.log()
    );
    assert_eq!(proxy.get("/").status, 200);
}
