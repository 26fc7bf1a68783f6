//! What the stages' unit tests need: a worker's services for a config, and
//! connected sockets (real ones, over loopback).

use std::net::{SocketAddr, TcpListener, TcpStream};

use mio::Poll;

use crate::config;
use crate::services::Services;
use crate::workers::Worker;

/// Services for the config `settings` (a listen line is added); the poll
/// they register with comes along, to be kept alive.
pub fn services(settings: &str) -> (Poll, Services) {
    let path = std::env::temp_dir().join(format!(
        "rsp-unit-{}-{:p}.lua",
        std::process::id(),
        &settings
    ));
    std::fs::write(&path, format!("listen = \"127.0.0.1:1\"\n{settings}\n")).unwrap();
    let loaded = config::load(&path).unwrap();
    let poll = Poll::new().unwrap();
    let registry = poll.registry().try_clone().unwrap();
    let mut services = Services::new(registry, &loaded, Worker::single()).unwrap();
    // The stages' tests look at what they read, not at request ids.
    services.request_ids = None;
    (poll, services)
}

/// A connected pair: the peer's end (blocking), rsp's end (non-blocking,
/// for mio), and the peer's address.
pub fn socket_pair() -> (TcpStream, mio::net::TcpStream, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (accepted, address) = listener.accept().unwrap();
    accepted.set_nonblocking(true).unwrap();
    (peer, mio::net::TcpStream::from_std(accepted), address)
}
