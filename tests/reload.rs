//! SIGHUP reloads under load: nothing lost, new servers used, bad configs refused.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use common::*;

/// Keep-alive clients sending requests in a loop until stopped; counts
/// answers that are not 200 and broken connections.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(address: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let threads = (0..clients)
            .map(|_| {
                let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
                thread::spawn(move || {
                    let mut client = Client::connect(address);
                    while !stop.load(Ordering::SeqCst) {
                        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
                        match client.try_response(false) {
                            Some(response) if response.status == 200 => {
                                done.fetch_add(1, Ordering::SeqCst);
                            }
                            _ => {
                                failed.fetch_add(1, Ordering::SeqCst);
                                client = Client::connect(address);
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            done,
            failed,
            threads,
        }
    }

    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads {
            thread.join().unwrap();
        }
        (
            self.done.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
        )
    }
}

fn pool_of(servers: &[&Backend]) -> String {
    let servers: Vec<String> = servers
        .iter()
        .map(|b| format!("\"{}\"", b.address))
        .collect();
    format!(
        "pools = {{ default = {{ servers = {{ {} }} }} }}",
        servers.join(", ")
    )
}

#[test]
fn reloads_add_and_remove_servers_under_load_losing_nothing() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let proxy = Proxy::start(&pool_of(&[&a]));
    let load = Load::start(proxy.address, 16);
    // The load runs a while before the first reload.
    thread::sleep(Duration::from_millis(300));

    proxy.reload(&pool_of(&[&a, &b]));
    proxy.wait_for_log("reload done", 1);
    assert!(
        wait_until(Duration::from_secs(5), || b.count() > 0),
        "the added server got no request"
    );

    proxy.reload(&pool_of(&[&b]));
    proxy.wait_for_log("reload done", 2);
    // Requests already sent to `a` finish; then none may come.
    thread::sleep(Duration::from_millis(100));
    let a_after_removal = a.count();
    thread::sleep(Duration::from_millis(300));
    let (done, failed) = load.finish();
    eprintln!(
        "{done} requests during two reloads, {failed} failed; a got {}, b got {}",
        a.count(),
        b.count()
    );
    assert_eq!(failed, 0);
    assert!(done > 1000, "{done}");
    assert_eq!(
        a.count(),
        a_after_removal,
        "the removed server still got requests"
    );
}

#[test]
fn an_invalid_reload_keeps_the_running_config() {
    let (a, b) = (Backend::start("a"), Backend::start("b"));
    let proxy = Proxy::start(&format!(
        "{}\nfunction route(req) return \"default\" end",
        pool_of(&[&a])
    ));
    proxy.reload("pools = { default = { servers = { \"127.0.0.1:1\" } }\n");
    proxy.wait_for_log("reload failed, the running config stays", 1);
    assert_eq!(proxy.get("/").text(), "hello from a");

    // listen and route change too: a new listener opens, the old one closes.
    let port = free_port();
    proxy.reload(&format!(
        "listen = \"127.0.0.1:{port}\"\n{}\nfunction route(req) return \"default\" end",
        pool_of(&[&b])
    ));
    proxy.wait_for_log("reload done", 1);
    let mut client = Client::connect(format!("127.0.0.1:{port}").parse().unwrap());
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(client.response(false).text(), "hello from b");
    assert!(
        std::net::TcpStream::connect(proxy.address).is_err(),
        "the old listener is still open"
    );
}
