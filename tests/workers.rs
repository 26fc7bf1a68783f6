//! `workers = N`: several event loops behind one listen address.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use common::*;

fn stats(admin: SocketAddr) -> serde_json::Value {
    serde_json::from_slice(&admin_request(admin, "GET", "/stats.json").body).unwrap()
}

#[test]
fn workers_share_the_port_the_stats_reloads_drains_and_shutdown() {
    let (first, second) = (Backend::start("first"), Backend::start("second"));
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let pools = |servers: &str| {
        format!(
            "workers = 2\nadmin = \"{admin}\"\npools = {{ default = {{ servers = {{ {servers} }} }} }}\n"
        )
    };
    let mut proxy = Proxy::start(&pools(&format!("\"{}\"", first.address)));
    proxy.wait_for_log("2 workers running", 1);

    // Many connections: the kernel spreads them over both workers.
    for _ in 0..200 {
        assert_eq!(proxy.get("/").status, 200);
    }
    // Worker 1 publishes its counters once a second.
    let mut merged = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            merged = stats(admin);
            merged["requests"]["total"] == 200
        }),
        "{merged}"
    );
    assert_eq!(merged["workers"], 2);
    let per_worker: Vec<u64> = merged["worker_requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|count| count.as_u64().unwrap())
        .collect();
    assert_eq!(per_worker.iter().sum::<u64>(), 200);
    assert!(per_worker.iter().all(|&count| count > 0), "{per_worker:?}");
    assert_eq!(merged["pools"][0]["servers"][0]["requests"], 200);

    // A reload reaches every worker.
    proxy.reload(&pools(&format!(
        "\"{}\", \"{}\"",
        first.address, second.address
    )));
    proxy.wait_for_log("reload done", 2);
    for _ in 0..40 {
        proxy.get("/");
    }
    assert!(second.count() >= 10, "{}", second.count());

    // A drain on the admin port (worker 0) holds in every worker.
    let path = format!("/pools/default/servers/{}/drain", second.address);
    assert_eq!(admin_request(admin, "POST", &path).status, 200);
    // Worker 1 reads the drain from the shared state at its next turn.
    thread::sleep(Duration::from_millis(100));
    let before = second.count();
    for _ in 0..100 {
        assert_eq!(proxy.get("/").text(), "hello from first");
    }
    assert_eq!(second.count(), before);

    // SIGTERM: every worker drains, the process exits 0.
    proxy.signal(libc::SIGTERM);
    assert!(
        wait_until(Duration::from_secs(5), || !proxy.is_running()),
        "rsp did not exit"
    );
    assert_eq!(proxy.child.wait().unwrap().code(), Some(0));
    assert_eq!(
        proxy
            .log()
            .matches("every request finished, exiting")
            .count(),
        2
    );
}

#[test]
fn worker_counts_are_checked() {
    for (setting, ok) in [
        ("2", true),
        ("\"auto\"", true),
        ("0", false),
        ("\"many\"", false),
        ("1.5", false),
    ] {
        let config = temp_file(
            "workers.lua",
            &format!(
                "listen = \"127.0.0.1:1\"\nbackends = {{ \"127.0.0.1:2\" }}\nworkers = {setting}\n"
            ),
        );
        let (code, stderr) = check_config(&config);
        assert_eq!(code == Some(0), ok, "workers = {setting}: {stderr}");
        if !ok {
            assert!(stderr.contains(":3: workers:"), "{stderr}");
        }
    }
}
