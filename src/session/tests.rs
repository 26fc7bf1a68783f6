//! The moves of `Session::upgrade`, over real loopback sockets.

use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use super::testing::{services, socket_pair};
use super::*;

fn listener(proxy_header: bool, app: App) -> ListenerSpec {
    ListenerSpec {
        proxy_header,
        tls: None,
        h2c: false,
        app: Rc::new(app),
    }
}

/// Drives until the stage is no longer the PROXY one (the bytes may come
/// in more than one read).
fn drive_past_header(session: &mut Session, services: &mut Services) {
    for _ in 0..100 {
        assert!(session.drive(services), "the session closed");
        if !matches!(session.stage, Stage::ProxyHeader(_)) {
            return;
        }
        session.client.transport.endpoint_mut().readable = true;
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("still reading the PROXY header");
}

#[test]
fn the_proxy_stage_hands_the_bytes_after_its_header_to_http() {
    let (_poll, mut services) = services("backends = { \"127.0.0.1:9\" }");
    let (mut peer, stream, address) = socket_pair();
    peer.write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 80\r\nGET /x HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    let mut session = Session::new(0, stream, address, &listener(true, App::Http), 4096).unwrap();
    drive_past_header(&mut session, &mut services);
    // The header named the client; the head that followed it is HTTP's,
    // waiting for its end within client_header.
    assert_eq!(session.client.address, "203.0.113.9:40000".parse().unwrap());
    assert_eq!(
        session.client.destination,
        Some("127.0.0.1:80".parse().unwrap())
    );
    let Stage::Http1(http1) = &session.stage else {
        panic!("not HTTP after the header");
    };
    assert_eq!(http1.inbound_data(), b"GET /x HTTP/1.1\r\nHost: a\r\n");
    assert_eq!(
        session.deadline(&services).1,
        Timeout::ClientHeader,
        "a head begun waits client_header"
    );
}

#[test]
fn a_tcp_listener_goes_from_the_header_to_dialing_with_the_early_bytes() {
    let (_poll, mut services) = services(
        "pools = { p = { servers = { \"127.0.0.1:9\" } } }\nbackends = { \"127.0.0.1:9\" }",
    );
    let (mut peer, stream, address) = socket_pair();
    peer.write_all(b"PROXY TCP4 198.51.100.1 127.0.0.1 5000 6379\r\nPING\r\n")
        .unwrap();
    let app = App::Tcp {
        pool: Some("p".into()),
        listen: "127.0.0.1:6379".parse().unwrap(),
    };
    let mut session = Session::new(0, stream, address, &listener(true, app), 4096).unwrap();
    drive_past_header(&mut session, &mut services);
    let Stage::TcpConnect(tcp) = &session.stage else {
        panic!("not dialing after the header");
    };
    assert_eq!(tcp.inbound_data(), b"PING\r\n");
    // Dialing holds the lease of the server it connects to.
    let pool = services
        .pools
        .iter()
        .position(|pool| pool.name == "p")
        .unwrap();
    assert_eq!(services.pools[pool].servers()[0].active, 1);
    session.cut(&mut services, "test over");
    assert_eq!(services.pools[pool].servers()[0].active, 0, "released once");
}

/// Runs the session under the real poll until `done` says so.
fn run_until(
    poll: &mut mio::Poll,
    session: &mut Session,
    services: &mut Services,
    done: impl Fn(&Session) -> bool,
) {
    let mut events = mio::Events::with_capacity(64);
    assert!(session.drive(services));
    for _ in 0..200 {
        if done(session) {
            return;
        }
        poll.poll(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        crate::timer::tick();
        for event in events.iter() {
            match TokenKind::of(event.token()) {
                TokenKind::Client(_) => session.mark_client_ready(event),
                TokenKind::Backend(fd) => {
                    let stream = match services.idle.owner(fd) {
                        crate::idle::Owner::Session(waiter) => crate::token::waiter_parts(waiter).1,
                        _ => None,
                    };
                    session.mark_backend_ready(stream, fd, event);
                }
                _ => {}
            }
        }
        assert!(session.drive(services), "the session closed");
    }
    panic!("never got there");
}

#[test]
fn a_switch_moves_the_sockets_buffers_and_lease_into_a_tunnel() {
    use std::io::{BufRead, BufReader, Read};
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_address = backend.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = backend.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let mut writer = stream;
        writer
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nfrom the backend")
            .unwrap();
        let mut echoed = [0u8; 11];
        reader.read_exact(&mut echoed).unwrap();
        echoed
    });
    let (mut poll, mut services) = services(&format!("backends = {{ \"{backend_address}\" }}"));
    let (mut peer, stream, address) = socket_pair();
    peer.write_all(
        b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut session = Session::new(0, stream, address, &listener(false, App::Http), 4096).unwrap();
    run_until(&mut poll, &mut session, &mut services, |session| {
        matches!(session.stage, Stage::Tunnel(_))
    });
    // The lease went along: the server still counts the exchange.
    assert_eq!(services.pools[0].servers()[0].active, 1);
    // The bytes after the 101, and the rest of the 101 itself, reach the client.
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"from the backend") {
        let mut chunk = [0u8; 256];
        let count = peer.read(&mut chunk).unwrap();
        assert!(count > 0, "{}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..count]);
        let _ = session.drive(&mut services);
    }
    assert!(answer.starts_with(b"HTTP/1.1 101 "));
    // And the client's bytes reach the backend through the tunnel.
    peer.write_all(b"from client").unwrap();
    run_until(&mut poll, &mut session, &mut services, |_| {
        server.is_finished()
    });
    assert_eq!(&server.join().unwrap(), b"from client");
    session.cut(&mut services, "test over");
    assert_eq!(services.pools[0].servers()[0].active, 0, "released once");
}

/// What an idle keep-alive connection holds is its slab entry: the README's
/// layout (Performance, Memory per connection) states these sizes, and
/// `scripts/bench.sh memory` measures the whole. A field that makes a
/// session grow must be boxed into the parts only busy connections have.
#[test]
#[cfg(target_pointer_width = "64")]
fn an_idle_session_stays_small() {
    assert!(std::mem::size_of::<Client>() <= 112, "Client grew");
    assert!(std::mem::size_of::<Stage>() <= 72, "Stage grew");
    assert!(std::mem::size_of::<Session>() <= 224, "Session grew");
}

/// An idle HTTP/2 connection's stage, boxed: README (HTTP/2, Memory)
/// states its size.
#[test]
#[cfg(target_pointer_width = "64")]
fn an_idle_http2_stage_stays_small() {
    let size = std::mem::size_of::<super::http2::Http2>();
    assert!(size <= 512, "Http2 grew to {size}");
}
