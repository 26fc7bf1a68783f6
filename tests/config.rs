//! Config files that must stop rsp at start with one clear line.

mod common;

use std::process::Command;

use common::*;

/// Runs `rsp ARGS` and returns (exit code, stdout, stderr).
fn rsp(arguments: &[&str]) -> (i32, String, String) {
    let output = Command::new(rsp_binary()).args(arguments).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn check(config: &str) -> (i32, String) {
    let path = temp_file("check.lua", config);
    let (code, _, stderr) = rsp(&["--check", path.to_str().unwrap()]);
    (code, stderr.replace(path.to_str().unwrap(), "FILE"))
}

#[test]
fn bad_configs_name_file_line_and_problem() {
    let cases = [
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" \n",
            "FILE:3:",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = {\"127.0.0.1:1\"}\nlisten = 1 + nil\n",
            "FILE:3: attempt to perform arithmetic",
        ),
        (
            "backends = { \"127.0.0.1:1\" }\n",
            "FILE: missing required setting 'listen'",
        ),
        (
            "listen = \"127.0.0.1\"\nbackends = { \"127.0.0.1:1\" }\n",
            "FILE:1: listen: expected \"host:port\"",
        ),
        (
            "listen = 8080\nbackends = { \"127.0.0.1:1\" }\n",
            "FILE:1: listen: expected \"host:port\" or a table, got integer",
        ),
        (
            "listen = \"127.0.0.1:8080\"\n\nbackend = { \"127.0.0.1:1\" }\n",
            "FILE:3: unknown setting 'backend'",
        ),
        ("listen = \"127.0.0.1:8080\"\n", "FILE: no backends"),
        (
            "listen = \"127.0.0.1:8080\"\npools = { web = { servers = {} } }\nroute = function() return 'web' end\n",
            "FILE:2: pools.web: servers is empty",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { web = { server = { \"127.0.0.1:1\" } } }\n",
            "FILE:2: pools.web: unknown pool setting \"server\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nroute = 5\n",
            "FILE:3: route: expected a function",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nbuffer_bytes = 10\n",
            "FILE:3: buffer_bytes: expected a whole number",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nbuffer_bytes = 4096\nmax_header_bytes = 8192\n",
            "FILE:4: max_header_bytes (8192) must not exceed buffer_bytes (4096)",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { servers = { \"127.0.0.1:1\" }, retry_on = { 503, \"rest\" } } }\n",
            "FILE:2: pools.default: retry_on: expected a status from 400 to 599, \"reset\" or \"timeout\", got \"rest\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { servers = { \"127.0.0.1:1\" }, retries = 11 } }\n",
            "FILE:2: pools.default: retries: expected a whole number from 0 to 10, got 11",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { servers = { \"127.0.0.1:1\" },\n  eject = { consecutive_5xx = 5, base = 1000 } } }\n",
            "FILE:3: pools.default: eject: unknown eject setting \"base\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { servers = { \"127.0.0.1:1\" }, eject = { max_percent = 150 } } }\n",
            "FILE:2: pools.default: eject: max_percent: expected a whole number from 0 to 100, got 150",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { servers = { \"127.0.0.1:1\" }, eject = { base_ms = 5000, max_ms = 1000 } } }\n",
            "FILE:2: pools.default: eject: max_ms: must be at least base_ms (5000), got 1000",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { servers = { \"127.0.0.1:1\" }, eject = \"yes\" } }\n",
            "FILE:2: pools.default: eject: expected true, false or",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nbuffer_bytes = 16384\nmax_response_header_bytes = 32768\n",
            "FILE:4: max_response_header_bytes (32768) must not exceed buffer_bytes (16384)",
        ),
        (
            "listenPort = \"http\"\nbackendAddress = \"127.0.0.1\"\n",
            "FILE:1: listenPort: expected a port number",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { balance = \"fastest\", servers = { \"127.0.0.1:1\" } } }\n",
            "FILE:2: pools.default: balance: unknown algorithm \"fastest\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { servers = { { addr = \"127.0.0.1:1\", weight = 0 } } } }\n",
            "FILE:2: pools.default: servers: weight: expected a whole number from 1 to 1000, got 0",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { servers = { { addr = \"127.0.0.1:1\", backup = true } } } }\n",
            "FILE:2: pools.default: every server is a backup",
        ),
        (
            "listen = \"127.0.0.1:8080\"\npools = { default = { servers = { { adr = \"127.0.0.1:1\" } } } }\n",
            "FILE:2: pools.default: servers: unknown server setting \"adr\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\ntimeouts = { conect = 100 }\n",
            "FILE:3: timeouts: unknown timeout \"conect\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\npath_normalization = { escaped_slash = \"allow\" }\n",
            "FILE:3: path_normalization.escaped_slash: expected one of \"keep\", \"reject\", \"decode\", got \"allow\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\npath_normalization = { merge = true }\n",
            "FILE:3: path_normalization: unknown setting \"merge\" (expected merge_slashes, escaped_slash, backslash, escaped_nul)",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\npath_normalization = true\nunderscore_headers = \"keep\"\n",
            "FILE:4: underscore_headers: expected one of \"drop\", \"reject\", \"allow\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nupgrades = \"websocket\"\n",
            "FILE:3: upgrades: expected a list of protocol names",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nadmin = { addr = \"127.0.0.1:9\", tokenfile = \"x\" }\n",
            "FILE:3: admin: unknown setting \"tokenfile\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nadmin = { addr = \"127.0.0.1:9\", token_file = \"missing.token\" }\n",
            "FILE:3: admin.token_file: ",
        ),
        (
            "listen = { { addr = \"127.0.0.1:8080\", http2 = \"yes\" } }\nbackends = { \"127.0.0.1:1\" }\n",
            "FILE:1: listen: http2: expected true or false",
        ),
        (
            "listen = { { addr = \"127.0.0.1:8080\", alpn = { \"h2\" } } }\nbackends = { \"127.0.0.1:1\" }\n",
            "alpn: only a TLS listener negotiates protocols",
        ),
        (
            "listen = { { addr = \"127.0.0.1:8443\", tls = { cert = \"a.pem\", key = \"a.key\" }, http2 = true } }\nbackends = { \"127.0.0.1:1\" }\n",
            "http2: a TLS listener offers HTTP/2 over ALPN",
        ),
        (
            "listen = { { addr = \"127.0.0.1:8443\", tls = { cert = \"a.pem\", key = \"a.key\" }, alpn = { \"h3\" } } }\nbackends = { \"127.0.0.1:1\" }\n",
            "alpn: expected a list of \"h2\" and \"http/1.1\"",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nhttp2 = { max_concurrent_streams = 0 }\n",
            "FILE:3: http2.max_concurrent_streams",
        ),
        (
            "listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nhttp2 = { streams = 5 }\n",
            "FILE:3: http2: unknown http2 setting \"streams\"",
        ),
    ];
    for (config, expected) in cases {
        let (code, stderr) = check(config);
        assert_eq!(code, 1, "{config:?} gave {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "one line expected for {config:?}: {stderr}"
        );
        assert!(stderr.starts_with("rsp: config error: "), "{stderr}");
        assert!(
            stderr.contains(expected),
            "{config:?}: expected {expected:?} in {stderr}"
        );
    }
}

#[test]
fn small_buffers_bring_the_head_bounds_down_with_them() {
    // Only the buffer is set: the head bounds left at their defaults
    // (32 and 64 KiB) follow it down instead of failing the check.
    let (code, stderr) =
        check("listen = \"127.0.0.1:8080\"\nbackends = { \"127.0.0.1:1\" }\nbuffer_bytes = 4096\n");
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn missing_file_and_running_with_a_bad_config() {
    let (code, _, stderr) = rsp(&["/nonexistent/rsp.lua"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("/nonexistent/rsp.lua: cannot read"),
        "{stderr}"
    );
    let path = temp_file("bad.lua", "listen = \n");
    let (code, _, stderr) = rsp(&[path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("{}:2:", path.display())),
        "{stderr}"
    );
}

#[test]
fn shipped_examples_are_valid() {
    for example in [
        "basic",
        "demo",
        "vhosts",
        "rsp-compat",
        "production",
        "cluster/rsp",
        "cache",
    ] {
        let path = format!("{}/examples/{example}.lua", env!("CARGO_MANIFEST_DIR"));
        let (code, stdout, stderr) = rsp(&["--check", &path]);
        assert_eq!(code, 0, "{example}: {stderr}");
        assert!(stdout.contains("config is valid"));
    }
}

#[test]
fn command_line() {
    let (code, stdout, _) = rsp(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("rsp "));
    let (code, stdout, _) = rsp(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("--check"));
    let (code, _, stderr) = rsp(&[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("Usage"));
    let (code, _, _) = rsp(&["--bogus", "x.lua"]);
    assert_eq!(code, 2);
}

#[test]
fn compat_config_serves() {
    let backend = Backend::start("compat");
    let port = free_port();
    let path = temp_file(
        "compat.lua",
        &format!(
            "listenPort = \"{port}\"\nbackendAddress = \"127.0.0.1\"\nbackendPort = \"{}\"\n",
            backend.address.port()
        ),
    );
    let log = path.with_extension("log");
    let mut child = Command::new(rsp_binary())
        .arg(&path)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let address = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for_listener(address, &log);
    let mut client = Client::connect(address);
    client.send(b"GET / HTTP/1.0\r\n\r\n");
    let response = client.try_response(false);
    let _ = child.kill();
    let _ = child.wait();
    let response = response.unwrap_or_else(|| {
        panic!(
            "no response; rsp's log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(response.text(), "hello from compat");
}
