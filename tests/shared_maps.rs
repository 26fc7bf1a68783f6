//! Live maps shared by several rsp instances through a real Redis: a
//! change made on one instance's admin port, or with redis-cli, is routed
//! by all; a late instance reads the map from Redis; Redis down or
//! restarted empty costs no entry.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::redis::Redis;
use common::*;

fn metric(admin_port: u16, name: &str) -> Option<f64> {
    let text = admin(admin_port, "GET", "/metrics", "").text();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// An instance whose route follows the shared map `apps` (in `map`).
struct Instance {
    proxy: Proxy,
    admin: u16,
}

fn instance(redis_port: u16, map: &Path, default: &Backend) -> Instance {
    let admin = free_port();
    let proxy = Proxy::start(&format!(
        r#"admin = "127.0.0.1:{admin}"
backends = {{ "{}" }}
redis = {{ servers = {{ "127.0.0.1:{redis_port}" }}, timeout_ms = 300 }}
maps = {{ apps = {{ file = {map:?}, shared = true, max_keys = 4 }} }}
function route(req)
  local server = rsp.map("apps"):get(req.host)
  if server then return server end
  return "default"
end"#,
        default.address
    ));
    let instance = Instance { proxy, admin };
    assert!(
        wait_until(Duration::from_secs(5), || metric(
            admin,
            "rsp_redis_maps_subscribed"
        ) == Some(1.0)),
        "{}",
        instance.proxy.log()
    );
    instance
}

impl Instance {
    fn routes(&self, host: &str) -> String {
        self.proxy
            .get_raw(&format!(
                "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            ))
            .text()
    }
}

fn redis_cli(port: u16, arguments: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(arguments)
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// How long until every one of `instances` routes `host` with `answer`;
/// `None` past `limit`.
fn seen_within(
    instances: &[&Instance],
    host: &str,
    answer: &str,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if instances
            .iter()
            .all(|instance| instance.routes(host) == answer)
        {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

/// The stated delay (README): 100 ms on loopback. The test allows more
/// on a loaded machine, and prints what it measured.
const DELAY: Duration = Duration::from_millis(500);

#[test]
fn a_change_on_one_instance_or_in_redis_is_routed_by_all() {
    let redis = Redis::start();
    let port = redis.address.port();
    let default = Backend::start("default");
    let app = Backend::start("app");
    let other = Backend::start("other");
    let a = instance(port, &temp_file("a.map", ""), &default);
    let b_map = temp_file("b.map", "");
    let b = instance(port, &b_map, &default);
    let c = instance(port, &temp_file("c.map", ""), &default);

    // PUT on A: B and C route by it.
    let put = admin(
        a.admin,
        "PUT",
        "/maps/apps/User.Example",
        &app.address.to_string(),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(
        a.routes("user.example"),
        "hello from app",
        "A answered after its own change"
    );
    let delay = seen_within(&[&b, &c], "user.example", "hello from app", DELAY);
    println!("PUT on A routed by B and C after {delay:?}");
    assert!(delay.is_some(), "{}", b.proxy.log());
    // B's file is its copy.
    assert!(
        std::fs::read_to_string(&b_map)
            .unwrap()
            .contains(&format!("user.example {}", app.address))
    );
    assert_eq!(
        redis_cli(port, &["HGET", "rsp:map:apps", "user.example"]).trim(),
        app.address.to_string()
    );

    // DELETE on B: gone everywhere.
    assert_eq!(
        admin(b.admin, "DELETE", "/maps/apps/user.example", "").status,
        200
    );
    assert!(seen_within(&[&a, &b, &c], "user.example", "hello from default", DELAY).is_some());
    assert_eq!(
        admin(b.admin, "DELETE", "/maps/apps/user.example", "").status,
        404
    );

    // Another tool: HSET + PUBLISH "NAME KEY", and "NAME" for the whole map.
    redis_cli(
        port,
        &[
            "HSET",
            "rsp:map:apps",
            "cli.example",
            &other.address.to_string(),
        ],
    );
    redis_cli(port, &["PUBLISH", "rsp:maps", "apps cli.example"]);
    let delay = seen_within(&[&a, &b, &c], "cli.example", "hello from other", DELAY);
    println!("HSET + PUBLISH from redis-cli routed by all after {delay:?}");
    assert!(delay.is_some());
    redis_cli(
        port,
        &[
            "HSET",
            "rsp:map:apps",
            "Whole.Example",
            &app.address.to_string(),
        ],
    );
    redis_cli(port, &["PUBLISH", "rsp:maps", "apps"]);
    assert!(seen_within(&[&a, &b, &c], "whole.example", "hello from app", DELAY).is_some());
    // A bad entry from another tool is skipped and said, not served.
    redis_cli(port, &["HSET", "rsp:map:apps", "bad.example", " spaced "]);
    redis_cli(port, &["PUBLISH", "rsp:maps", "apps bad.example"]);
    assert!(wait_until(Duration::from_secs(2), || a
        .proxy
        .log()
        .contains("bad entry at \"bad.example\"")));
    assert_eq!(a.routes("bad.example"), "hello from default");
    redis_cli(port, &["HDEL", "rsp:map:apps", "bad.example"]);

    // max_keys holds for the cluster: Redis counts, not one instance.
    for key in ["k3.example", "k4.example"] {
        assert_eq!(
            admin(c.admin, "PUT", &format!("/maps/apps/{key}"), "127.0.0.1:9").status,
            200
        );
    }
    let full = admin(a.admin, "PUT", "/maps/apps/k5.example", "127.0.0.1:9");
    assert_eq!(full.status, 507, "{}", full.text());

    // POST on C replaces the map everywhere.
    let body = format!("{{\"post.example\": \"{}\"}}", app.address);
    let post = admin(c.admin, "POST", "/maps/apps", &body);
    assert_eq!(post.status, 200, "{}", post.text());
    assert!(seen_within(&[&a, &b, &c], "post.example", "hello from app", DELAY).is_some());
    assert!(seen_within(&[&a, &b, &c], "cli.example", "hello from default", DELAY).is_some());

    // An instance started now, with an empty file, reads the map from Redis.
    let late_map = temp_file("late.map", "");
    let late = instance(port, &late_map, &default);
    assert!(seen_within(&[&late], "post.example", "hello from app", DELAY).is_some());
    assert!(
        std::fs::read_to_string(&late_map)
            .unwrap()
            .contains("post.example")
    );

    // Redis down: the maps serve what they hold; changes answer 503.
    drop(redis);
    assert!(wait_until(Duration::from_secs(5), || metric(
        a.admin,
        "rsp_redis_up"
    ) == Some(0.0)));
    let refused = admin(a.admin, "PUT", "/maps/apps/new.example", "127.0.0.1:9");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(a.routes("new.example"), "hello from default");
    assert_eq!(a.routes("post.example"), "hello from app");
    assert!(
        a.proxy.log().contains("map apps unchanged")
            || a.proxy.log().contains("the map is unchanged")
    );
}

/// Redis restarted with nothing in it: every instance keeps its map,
/// says so in the log and `/metrics`, and one stores it back.
#[test]
fn redis_restarted_empty_costs_no_entry() {
    let port = free_port();
    let redis = Redis::start_with(port, &[]);
    let default = Backend::start("default");
    let app = Backend::start("app");
    let a = instance(port, &temp_file("a.map", ""), &default);
    let b = instance(port, &temp_file("b.map", ""), &default);
    assert_eq!(
        admin(
            a.admin,
            "PUT",
            "/maps/apps/kept.example",
            &app.address.to_string()
        )
        .status,
        200
    );
    assert!(seen_within(&[&a, &b], "kept.example", "hello from app", DELAY).is_some());

    drop(redis);
    let redis = Redis::start_with(port, &[]);
    // Each says Redis is not the one it knew; the first to read the map
    // whole finds it empty, says so, and stores it back.
    for instance in [&a, &b] {
        assert!(
            wait_until(Duration::from_secs(10), || metric(
                instance.admin,
                "rsp_redis_restarts_total"
            ) == Some(1.0)),
            "{}",
            instance.proxy.log()
        );
        assert!(
            instance
                .proxy
                .log()
                .contains("not the Redis of the last connection")
        );
        assert_eq!(instance.routes("kept.example"), "hello from app");
    }
    let missing = || -> f64 {
        [&a, &b]
            .iter()
            .map(|instance| metric(instance.admin, "rsp_redis_map_missing_total").unwrap())
            .sum()
    };
    assert!(wait_until(Duration::from_secs(5), || missing() >= 1.0));
    assert!([&a, &b].iter().any(|instance| {
        instance
            .proxy
            .log()
            .contains("Redis holds none of its keys (restarted empty?)")
    }));
    // One of them stored the map back; both go on from it.
    assert!(wait_until(Duration::from_secs(5), || {
        redis_cli(port, &["HGET", "rsp:map:apps", "kept.example"]).trim() == app.address.to_string()
    }));
    let restores = || -> f64 {
        [&a, &b]
            .iter()
            .map(|instance| metric(instance.admin, "rsp_redis_map_restores_total").unwrap())
            .sum()
    };
    assert!(wait_until(Duration::from_secs(2), || restores() == 1.0));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        restores(),
        1.0,
        "one instance stores the map back, not each"
    );
    assert_eq!(
        admin(
            b.admin,
            "PUT",
            "/maps/apps/after.example",
            &app.address.to_string()
        )
        .status,
        200
    );
    assert!(seen_within(&[&a, &b], "after.example", "hello from app", DELAY).is_some());
    drop(redis);
}

#[test]
fn shared_maps_are_checked() {
    let map = temp_file("checked.map", "");
    for (settings, expected) in [
        (
            format!("maps = {{ apps = {{ file = {map:?}, shared = true }} }}"),
            "a shared map needs redis",
        ),
        (
            format!(
                "redis = {{ servers = {{ \"127.0.0.1:6379\" }} }}\nmaps = {{ [\"my apps\"] = {{ file = {map:?}, shared = true }} }}"
            ),
            "a shared map's name holds no spaces",
        ),
    ] {
        let config = temp_file(
            "config.lua",
            &format!("listen = \"127.0.0.1:1\"\n{settings}\nbackends = {{ \"127.0.0.1:1\" }}\n"),
        );
        let (code, message) = check_config(&config);
        assert_eq!(code, Some(1), "{message}");
        assert!(message.contains(expected), "{message}");
        assert!(message.contains("config.lua:"), "{message}");
    }
}

/// A flood of messages, some of them nonsense (unknown maps, keys no map
/// may hold, a key of 100 KB, bytes that are not UTF-8): rsp reads what
/// it can, falls back to reading the map whole when too much is in
/// flight, and goes on routing and taking changes.
#[test]
fn a_flood_of_messages_is_absorbed() {
    let redis = Redis::start();
    let port = redis.address.port();
    let default = Backend::start("default");
    let app = Backend::start("app");
    let a = instance(port, &temp_file("a.map", ""), &default);
    let mut commands = String::new();
    for n in 0..5000 {
        commands.push_str(&format!("PUBLISH rsp:maps \"apps k{n}.example\"\n"));
        if n % 500 == 0 {
            commands.push_str("PUBLISH rsp:maps \"nomap key\"\n");
            commands.push_str("PUBLISH rsp:maps \"apps bad key with spaces\"\n");
            commands.push_str(&format!(
                "PUBLISH rsp:maps \"apps {}\"\n",
                "x".repeat(100_000)
            ));
            commands.push_str("PUBLISH rsp:maps \"apps\"\n");
        }
    }
    commands.push_str(&format!("HSET rsp:map:apps last.example {}\n", app.address));
    commands.push_str("PUBLISH rsp:maps \"apps last.example\"\n");
    let input = temp_file("flood.txt", &commands);
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "redis-cli -p {port} < {} > /dev/null",
            input.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        seen_within(
            &[&a],
            "last.example",
            "hello from app",
            Duration::from_secs(5)
        )
        .is_some(),
        "{}",
        a.proxy.log()
    );
    assert!(metric(a.admin, "rsp_redis_map_messages_total").unwrap() >= 5000.0);
    assert_eq!(metric(a.admin, "rsp_redis_maps_subscribed"), Some(1.0));
    let put = admin(
        a.admin,
        "PUT",
        "/maps/apps/after.example",
        &app.address.to_string(),
    );
    assert_eq!(put.status, 200, "{}", put.text());
    assert_eq!(a.routes("after.example"), "hello from app");
}

/// An instance that starts while Redis is down serves its file, its last
/// copy, and reads Redis's once it is up.
#[test]
fn an_instance_started_without_redis_serves_its_file() {
    let port = free_port();
    let default = Backend::start("default");
    let app = Backend::start("app");
    let other = Backend::start("other");
    let map = temp_file("copy.map", &format!("copy.example {}\n", app.address));
    let admin_port = free_port();
    let proxy = Proxy::start(&format!(
        r#"admin = "127.0.0.1:{admin_port}"
backends = {{ "{}" }}
redis = {{ servers = {{ "127.0.0.1:{port}" }}, timeout_ms = 300 }}
maps = {{ apps = {{ file = {map:?}, shared = true }} }}
function route(req)
  return rsp.map("apps"):get(req.host) or "default"
end"#,
        default.address
    ));
    let late = Instance {
        proxy,
        admin: admin_port,
    };
    assert_eq!(late.routes("copy.example"), "hello from app");
    // Redis comes up and is given another content: it is the map's.
    let redis = Redis::start_with(port, &[]);
    redis_cli(
        port,
        &[
            "HSET",
            "rsp:map:apps",
            "copy.example",
            &other.address.to_string(),
        ],
    );
    // (Announced too, in case rsp connected first and stored its copy.)
    redis_cli(port, &["PUBLISH", "rsp:maps", "apps copy.example"]);
    assert!(
        seen_within(
            &[&late],
            "copy.example",
            "hello from other",
            Duration::from_secs(10)
        )
        .is_some(),
        "{}",
        late.proxy.log()
    );
    drop(redis);
}

/// A Redis whose ACL refuses the subscription (Redis 7's `resetchannels`):
/// said at warn, retried with back-off, and followed once allowed.
#[test]
fn a_refused_subscription_is_said_and_retried() {
    let redis = Redis::start();
    let port = redis.address.port();
    redis_cli(port, &["ACL", "SETUSER", "default", "resetchannels"]);
    let default = Backend::start("default");
    let admin_port = free_port();
    let proxy = Proxy::start(&format!(
        r#"admin = "127.0.0.1:{admin_port}"
backends = {{ "{}" }}
redis = {{ servers = {{ "127.0.0.1:{port}" }}, timeout_ms = 300 }}
maps = {{ apps = {{ file = {:?}, shared = true }} }}
function route(req)
  return rsp.map("apps"):get(req.host) or "default"
end"#,
        default.address,
        temp_file("refused.map", "")
    ));
    assert!(
        wait_until(Duration::from_secs(5), || proxy
            .log()
            .contains("SUBSCRIBE refused: NOPERM")),
        "{}",
        proxy.log()
    );
    assert_eq!(metric(admin_port, "rsp_redis_maps_subscribed"), Some(0.0));
    redis_cli(port, &["ACL", "SETUSER", "default", "allchannels"]);
    assert!(
        wait_until(Duration::from_secs(10), || metric(
            admin_port,
            "rsp_redis_maps_subscribed"
        ) == Some(1.0)),
        "{}",
        proxy.log()
    );
}
