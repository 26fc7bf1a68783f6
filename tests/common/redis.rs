//! A real redis-server for the tests (Debian's package, installed when
//! missing).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Once;

use super::{free_port, temp_file, wait_for_listener};

pub fn ensure_redis() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let present = || {
            Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok_and(|output| output.status.success())
        };
        if present() {
            return;
        }
        let installed = Command::new("sh")
            .args([
                "-c",
                "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >/dev/null 2>&1",
            ])
            .status();
        assert!(
            installed.is_ok_and(|status| status.success()) && present(),
            "this test needs redis-server: apt-get install redis-server"
        );
    });
}

pub struct Redis {
    pub child: Child,
    pub address: SocketAddr,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(free_port(), &[])
    }

    /// A redis-server on `port`, with more `arguments` (`--requirepass`).
    pub fn start_with(port: u16, arguments: &[&str]) -> Redis {
        ensure_redis();
        let log = temp_file("redis.log", "");
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(arguments)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for_listener(address, &log);
        Redis { child, address }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
