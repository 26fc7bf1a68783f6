//! rsp's own listeners, as a destination: a backend address that reaches
//! one of them is a forwarding loop, whatever its spelling. rsp would dial
//! itself, each connection a new request that dials again, until
//! `max_connections` is spent and every client waits out its timeout.
//!
//! An address reaches a listener when its port is the listener's and its
//! IP is, once spelled canonically (`::ffff:127.0.0.1` is `127.0.0.1`;
//! `0.0.0.0` and `::` are dialled as the loopback address), the
//! listener's own; or, for a listener on a wildcard address (`0.0.0.0`,
//! `::`), any loopback address (all of `127.0.0.0/8`) or any address of
//! one of the machine's interfaces, read when the config is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone, Default)]
pub struct OwnListeners {
    listeners: Vec<SocketAddr>,
    /// The machine's interface addresses, canonical: what a wildcard
    /// listener is reached at besides loopback.
    interfaces: Vec<IpAddr>,
}

impl OwnListeners {
    pub fn new(listeners: Vec<SocketAddr>) -> OwnListeners {
        let interfaces = if listeners.iter().any(|own| own.ip().is_unspecified()) {
            interface_addresses()
        } else {
            Vec::new()
        };
        OwnListeners::with_interfaces(listeners, interfaces)
    }

    fn with_interfaces(listeners: Vec<SocketAddr>, interfaces: Vec<IpAddr>) -> OwnListeners {
        let listeners = listeners
            .into_iter()
            .map(|own| SocketAddr::new(own.ip().to_canonical(), own.port()))
            .collect();
        let interfaces = interfaces.iter().map(IpAddr::to_canonical).collect();
        OwnListeners {
            listeners,
            interfaces,
        }
    }

    /// Whether a connection to `address` would reach one of rsp's own
    /// listeners.
    pub fn reached_by(&self, address: SocketAddr) -> bool {
        let ip = dialled(address.ip());
        self.listeners.iter().any(|own| {
            own.port() == address.port()
                && if own.ip().is_unspecified() {
                    // A wildcard of either family: a v6 one takes v4 too
                    // (unless v6-only), and refusing one address too many
                    // costs less than a loop.
                    ip.is_loopback() || self.interfaces.contains(&ip)
                } else {
                    own.ip() == ip
                }
        })
    }
}

/// The IP a connection to `ip` reaches: canonical, and the unspecified
/// address as the loopback one (Linux dials `0.0.0.0` as `127.0.0.1`).
fn dialled(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Every address of the machine's interfaces (`getifaddrs`), canonical.
/// Empty if they cannot be read (then loopback is still refused).
fn interface_addresses() -> Vec<IpAddr> {
    let mut addresses = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list it allocated to `list`, freed below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        log::warn!(
            "cannot list the interface addresses (getifaddrs: {}): a backend named by one of them \
             is not recognised as rsp's own listener",
            std::io::Error::last_os_error()
        );
        return addresses;
    }
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getifaddrs made, not yet
        // freed; `ifa_addr` is null or points at a sockaddr of the family
        // it names, sized for it.
        unsafe {
            let address = (*entry).ifa_addr;
            if !address.is_null() {
                match i32::from((*address).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(address as *const libc::sockaddr_in);
                        let ip = Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                        addresses.push(IpAddr::V4(ip));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(address as *const libc::sockaddr_in6);
                        addresses
                            .push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)).to_canonical());
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn every_spelling_of_a_wildcard_listener_is_refused() {
        let own = OwnListeners::with_interfaces(
            vec![at("0.0.0.0:8080"), at("127.0.0.1:9901")],
            vec!["10.1.2.3".parse().unwrap(), "fe80::1".parse().unwrap()],
        );
        for reached in [
            "127.0.0.1:8080",
            "127.9.9.9:8080",
            "0.0.0.0:8080",
            "[::]:8080",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
            "[::ffff:0.0.0.0]:8080",
            "10.1.2.3:8080",
            "[::ffff:10.1.2.3]:8080",
            "[fe80::1]:8080",
            "127.0.0.1:9901",
            "0.0.0.0:9901",
            "[::ffff:127.0.0.1]:9901",
        ] {
            assert!(own.reached_by(at(reached)), "{reached}");
        }
        for elsewhere in [
            "127.0.0.1:8081",
            "10.1.2.4:8080",
            "192.0.2.1:8080",
            "127.0.0.2:9901",
            "10.1.2.3:9901",
        ] {
            assert!(!own.reached_by(at(elsewhere)), "{elsewhere}");
        }
    }

    #[test]
    fn a_v6_wildcard_and_a_v4_mapped_listener() {
        let own =
            OwnListeners::with_interfaces(vec![at("[::]:80"), at("[::ffff:192.0.2.7]:81")], vec![]);
        assert!(own.reached_by(at("127.0.0.1:80")));
        assert!(own.reached_by(at("[::1]:80")));
        assert!(own.reached_by(at("192.0.2.7:81")));
        assert!(!own.reached_by(at("192.0.2.8:81")));
    }

    #[test]
    fn the_machine_has_interfaces() {
        // Loopback at least, wherever the tests run.
        assert!(interface_addresses().iter().any(IpAddr::is_loopback));
    }
}
