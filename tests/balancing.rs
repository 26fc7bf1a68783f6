//! Pools: balancing algorithms, weights, backups and retries, end to end.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

/// Sends `count` requests (each on its own connection, with `host`) and
/// counts which backend answered.
fn spread(proxy: &Proxy, count: usize, host: impl Fn(usize) -> String) -> HashMap<String, usize> {
    let mut answers = HashMap::new();
    let mut client = proxy.connect();
    for index in 0..count {
        client.send(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", host(index)).as_bytes());
        let response = client.response(false);
        assert_eq!(response.status, 200);
        *answers.entry(response.text()).or_default() += 1;
    }
    answers
}

#[test]
fn round_robin_evenness_and_weights() {
    let (a, b, c) = (
        Backend::start("a"),
        Backend::start("b"),
        Backend::start("c"),
    );
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\", \"{}\", \"{}\" }} }} }}",
        a.address, b.address, c.address
    ));
    let answers = spread(&proxy, 3000, |_| "x".into());
    for name in ["a", "b", "c"] {
        assert_eq!(answers[&format!("hello from {name}")], 1000, "{answers:?}");
    }

    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\", {{ addr = \"{}\", weight = 3 }} }} }} }}",
        a.address, b.address
    ));
    let answers = spread(&proxy, 10_000, |_| "x".into());
    assert_eq!(answers["hello from a"], 2500, "{answers:?}");
    assert_eq!(answers["hello from b"], 7500, "{answers:?}");
}

#[test]
fn dead_server_costs_clients_nothing_and_backups_stand_in() {
    let live = Backend::start("live");
    let backup = Backend::start("backup");
    let dead = free_port();
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"127.0.0.1:{dead}\", \"{}\", {{ addr = \"{}\", backup = true }} }} }} }}",
        live.address, backup.address
    ));
    let answers = spread(&proxy, 200, |_| "x".into());
    assert_eq!(answers.get("hello from live"), Some(&200), "{answers:?}");
    assert!(
        proxy
            .log()
            .contains(&format!("127.0.0.1:{dead} rested for"))
    );

    // Only backups left: they serve.
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"127.0.0.1:{dead}\", {{ addr = \"{}\", backup = true }} }} }} }}",
        backup.address
    ));
    let answers = spread(&proxy, 50, |_| "x".into());
    assert_eq!(answers.get("hello from backup"), Some(&50), "{answers:?}");
}

#[test]
fn hash_keeps_hosts_on_their_server() {
    let backends: Vec<Backend> = (0..4)
        .map(|index| Backend::start(&format!("s{index}")))
        .collect();
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.address))
        .collect();
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ balance = \"hash\", servers = {{ {} }} }} }}",
        servers.join(", ")
    ));
    let mut first = HashMap::new();
    let mut client = proxy.connect();
    for index in 0..200 {
        for host in [
            format!("site{index}.example.com"),
            format!("Site{index}.EXAMPLE.com"),
        ] {
            client.send(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
            let answer = client.response(false).text();
            let expected = first.entry(index).or_insert_with(|| answer.clone());
            assert_eq!(&answer, expected, "host {host}");
        }
    }
    let used: std::collections::HashSet<&String> = first.values().collect();
    assert_eq!(used.len(), 4, "200 hosts should reach all 4 servers");
}

#[test]
fn leastconn_sends_to_the_idle_server_while_another_is_slow() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ balance = \"leastconn\", servers = {{ \"{}\", \"{}\" }} }} }}",
        a.address, b.address
    ));
    let mut slow = proxy.connect();
    slow.send(b"GET /sleep/1500 HTTP/1.1\r\nHost: x\r\n\r\n");
    // Wait until the slow request reached its server.
    assert!(wait_until(Duration::from_secs(5), || a.count() + b.count() > 0));
    let busy = if a.count() == 1 {
        "hello from a"
    } else {
        "hello from b"
    };
    let answers = spread(&proxy, 20, |_| "x".into());
    assert_eq!(answers.get(busy), None, "{answers:?}");
    assert_eq!(answers.values().sum::<usize>(), 20);
    assert_eq!(slow.response(false).text(), busy);
}

#[test]
fn max_conns_queues_requests_and_times_them_out() {
    let backend = Backend::start("only");
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ max_conns = 1, queue_timeout_ms = 3000, servers = {{ \"{}\" }} }} }}",
        backend.address
    ));
    // Three slow requests at once through a pool that serves one at a time:
    // they queue and are served in turn, never two at the backend together.
    let started = std::time::Instant::now();
    let mut clients: Vec<Client> = (0..3).map(|_| proxy.connect()).collect();
    for client in &mut clients {
        client.send(b"GET /sleep/400 HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    for client in &mut clients {
        assert_eq!(client.response(false).text(), "hello from only");
    }
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1150),
        "{:?}",
        started.elapsed()
    );

    // A request that cannot get a slot within queue_timeout_ms gets 503.
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ max_conns = 1, queue_timeout_ms = 300, servers = {{ \"{}\" }} }} }}",
        backend.address
    ));
    let before = backend.count();
    let mut slow = proxy.connect();
    slow.send(b"GET /sleep/1500 HTTP/1.1\r\nHost: x\r\n\r\n");
    // The slow request holds the one connection.
    assert!(wait_until(Duration::from_secs(5), || backend.count() == before + 1));
    let mut waiting = proxy.connect();
    waiting.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = waiting.response(false);
    assert_eq!(response.status, 503);
    assert!(proxy.log().contains("queue timeout"));
    assert_eq!(slow.response(false).status, 200);
    // The queue is empty again: the next request is served.
    waiting.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(waiting.response(false).status, 200);
}

#[test]
fn active_checks_take_a_server_down_and_bring_it_back() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{}\", \"{}\" }}, \
         health = {{ path = \"/healthz\", interval_ms = 50, timeout_ms = 500, rise = 2, fall = 2 }} }} }}",
        a.address, b.address
    ));
    let wait_for_log = |text: &str| {
        assert!(
            wait_until(Duration::from_secs(5), || proxy.log().contains(text)),
            "no {text:?} in {}",
            proxy.log()
        );
    };
    a.health.store(503, std::sync::atomic::Ordering::SeqCst);
    wait_for_log(&format!("server {} marked down by health check", a.address));
    let answers = spread(&proxy, 20, |_| "x".into());
    assert_eq!(answers.get("hello from b"), Some(&20), "{answers:?}");

    a.health.store(200, std::sync::atomic::Ordering::SeqCst);
    wait_for_log(&format!("server {} is up", a.address));
    let answers = spread(&proxy, 20, |_| "x".into());
    assert_eq!(answers.get("hello from a"), Some(&10), "{answers:?}");
    assert!(a.seen.lock().unwrap().health_checks >= 4);
}

#[test]
fn every_server_down_is_503_at_once() {
    let (dead_a, dead_b) = (free_port(), free_port());
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"127.0.0.1:{dead_a}\", \"127.0.0.1:{dead_b}\" }}, \
         health = {{ interval_ms = 50, timeout_ms = 200, fall = 1 }} }} }}"
    ));
    assert!(
        wait_until(Duration::from_secs(5), || proxy
            .log()
            .matches("marked down by health check")
            .count()
            >= 2),
        "{}",
        proxy.log()
    );
    let started = std::time::Instant::now();
    assert_eq!(proxy.get("/").status, 503);
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn idempotent_requests_retry_when_a_backend_closes_without_answering() {
    // A server that accepts, reads the request, and hangs up.
    let closer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closer_address = closer.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in closer.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream);
            let _ = read_head(&mut reader);
        }
    });
    let good = Backend::start("good");
    let proxy = Proxy::start(&format!(
        "pools = {{ default = {{ servers = {{ \"{closer_address}\", \"{}\" }} }} }}",
        good.address
    ));
    let answers = spread(&proxy, 20, |_| "x".into());
    assert_eq!(answers.get("hello from good"), Some(&20), "{answers:?}");
    assert!(proxy.log().contains("retrying on another server"));

    // A POST is not repeated: when it meets the closer it fails.
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let mut client = proxy.connect();
        client.send(b"POST /checksum HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab");
        statuses.push(client.response(false).status);
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 502]);
}

#[test]
fn a_connect_that_hangs_times_out_and_moves_to_another_server() {
    // A listener that never accepts, its backlog filled: further connects hang.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let blackhole_address = blackhole.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..300 {
        match std::net::TcpStream::connect_timeout(
            &blackhole_address,
            std::time::Duration::from_millis(50),
        ) {
            Ok(stream) => fillers.push(stream),
            Err(_) => break,
        }
    }
    let good = Backend::start("good");
    let proxy = Proxy::start(&format!(
        "timeouts = {{ connect = 300 }}\npools = {{ default = {{ servers = {{ \"{blackhole_address}\", \"{}\" }} }} }}",
        good.address
    ));
    let started = std::time::Instant::now();
    let answers = spread(&proxy, 4, |_| "x".into());
    assert_eq!(answers.get("hello from good"), Some(&4), "{answers:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let log = proxy.log();
    assert!(log.contains("connect timed out"), "{log}");
    assert!(
        log.contains(&format!("{blackhole_address} rested for")),
        "{log}"
    );
    drop(blackhole);
}

/// Several instances need no shared state: with the same config, each one
/// (even one started later) sends every hash key to the same server, and
/// spreads plain requests in the same proportions.
#[test]
fn instances_with_one_config_route_alike() {
    let backends: Vec<Backend> = (0..4)
        .map(|index| Backend::start(&format!("b{index}")))
        .collect();
    let servers: Vec<String> = backends
        .iter()
        .map(|backend| format!("\"{}\"", backend.address))
        .collect();
    let settings = format!(
        "pools = {{ default = {{ balance = \"hash\", servers = {{ {} }} }} }}\n\
         route = function(req) return \"default\", req:header(\"X-User\") end\n",
        servers.join(", ")
    );
    let first = Proxy::start(&settings);
    let second = Proxy::start(&settings);
    let answer = |proxy: &Proxy, user: usize| {
        let mut client = proxy.connect();
        client.send(
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-User: user-{user}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        client.response(false).text()
    };
    let mut used = std::collections::HashSet::new();
    for user in 0..200 {
        let served = answer(&first, user);
        assert_eq!(answer(&second, user), served, "user-{user}");
        used.insert(served);
    }
    assert_eq!(used.len(), 4, "{used:?}");
    // A restarted instance agrees too: nothing was learned at run time.
    drop(second);
    let restarted = Proxy::start(&settings);
    for user in 0..50 {
        assert_eq!(
            answer(&restarted, user),
            answer(&first, user),
            "user-{user}"
        );
    }
}
