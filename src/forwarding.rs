//! Which forwarding headers rsp writes for a backend, and whose incoming
//! ones it believes.
//!
//! A client can put anything in `X-Forwarded-For`; only a proxy the operator
//! trusts may speak for an earlier hop. From anyone else the forwarding
//! headers are dropped and rsp writes its own.

use std::net::IpAddr;

/// The `forwarded_headers` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    /// The standard `Forwarded` field (RFC 7239).
    pub forwarded: bool,
    /// Peers whose forwarding headers are kept and extended.
    pub trusted: Vec<Network>,
    /// The name rsp gives itself in the `Via` it adds to requests (RFC
    /// 9110 §7.6.3), and answers 508 to a request that already carries;
    /// `None`: no `Via` is written, and loops are caught only where a
    /// backend is one of rsp's own listeners.
    pub via: Option<String>,
}

impl Default for Forwarding {
    fn default() -> Forwarding {
        Forwarding {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            forwarded: false,
            trusted: Vec::new(),
            via: Some(default_via_name().to_owned()),
        }
    }
}

impl Forwarding {
    /// Every field switched off: nothing added, an untrusted client's
    /// dropped.
    pub fn none() -> Forwarding {
        Forwarding {
            x_forwarded_for: false,
            x_forwarded_proto: false,
            x_forwarded_host: false,
            forwarded: false,
            trusted: Vec::new(),
            via: None,
        }
    }
}

/// The name rsp calls itself in `Via` when the config names none: one per
/// process (all its workers, across reloads), random, so that two rsp in a
/// chain, on one machine or not, never share it.
pub fn default_via_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let mut id = String::new();
        crate::request_id::RequestIds::new().generate(&mut id);
        format!("rsp-{}", &id[..8])
    })
}

impl Forwarding {
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted.iter().any(|network| network.contains(peer))
    }
}

/// An address block: `10.0.0.0/8`, `::1`, `192.0.2.7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Result<Network, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("\"{text}\" is not an IP address or address/prefix"))?;
        let address = address.to_canonical();
        let bits = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => match prefix.trim().parse::<u8>() {
                Ok(prefix) if prefix <= bits => prefix,
                _ => return Err(format!("\"{text}\": the prefix must be 0 to {bits}")),
            },
        };
        Ok(Network { address, prefix })
    }

    pub fn contains(&self, peer: IpAddr) -> bool {
        match (self.address, peer) {
            (IpAddr::V4(network), IpAddr::V4(peer)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(peer) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(peer)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(peer) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_match_their_prefix() {
        let private = Network::parse("10.0.0.0/8").unwrap();
        assert!(private.contains(ip("10.200.3.4")));
        assert!(!private.contains(ip("11.0.0.1")));
        assert!(!private.contains(ip("::1")));
        let host = Network::parse("192.0.2.7").unwrap();
        assert!(host.contains(ip("192.0.2.7")));
        assert!(!host.contains(ip("192.0.2.8")));
        let everyone = Network::parse("0.0.0.0/0").unwrap();
        assert!(everyone.contains(ip("203.0.113.1")));
        let v6 = Network::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::5")));
        for bad in ["10.0.0.0/33", "example.com", "::/129", "1.2.3.4/x", ""] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mapped_v4_peers_count_as_v4() {
        let forwarding = Forwarding {
            trusted: vec![Network::parse("127.0.0.1").unwrap()],
            ..Forwarding::default()
        };
        assert!(forwarding.trusts(ip("::ffff:127.0.0.1")));
        assert!(forwarding.trusts(ip("127.0.0.1")));
        assert!(!forwarding.trusts(ip("127.0.0.2")));
    }
}
