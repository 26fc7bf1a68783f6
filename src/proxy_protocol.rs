//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load
//! balancer in front puts at the start of a connection to say who the
//! client really is, and the one rsp sends to backends that want it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2 headers start with these 12 bytes.
const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included.
const MAX_V1: usize = 107;
/// The longest version 2 header rsp accepts (addresses plus TLVs).
const MAX_V2: usize = 16 + 536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// What a header said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes.
    pub length: usize,
    /// The client and the address it connected to; `None` for a health
    /// check or connection of the balancer itself (v1 UNKNOWN, v2 LOCAL).
    pub addresses: Option<(SocketAddr, SocketAddr)>,
}

/// Parses a header at the start of `bytes`. `Ok(None)`: more bytes needed.
pub fn parse(bytes: &[u8]) -> Result<Option<Header>, &'static str> {
    let compared = bytes.len().min(SIGNATURE.len());
    if bytes[..compared] == SIGNATURE[..compared] {
        return if compared < SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(bytes)
        };
    }
    let compared = bytes.len().min(6);
    if bytes[..compared] != b"PROXY "[..compared] {
        return Err("the connection does not start with a PROXY protocol header");
    }
    parse_v1(bytes)
}

fn parse_v1(bytes: &[u8]) -> Result<Option<Header>, &'static str> {
    let Some(end) = bytes
        .windows(2)
        .take(MAX_V1 - 1)
        .position(|pair| pair == b"\r\n")
    else {
        return if bytes.len() >= MAX_V1 {
            Err("PROXY v1 line longer than 107 bytes")
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&bytes[..end]).map_err(|_| "PROXY v1 line is not text")?;
    let fields: Vec<&str> = line.split(' ').collect();
    let length = end + 2;
    match fields[..] {
        ["PROXY", "UNKNOWN", ..] => Ok(Some(Header {
            length,
            addresses: None,
        })),
        [
            "PROXY",
            family @ ("TCP4" | "TCP6"),
            source,
            destination,
            source_port,
            destination_port,
        ] => {
            let address = |ip: &str, port: &str| -> Result<SocketAddr, &'static str> {
                let ip: IpAddr = ip.parse().map_err(|_| "PROXY v1: bad address")?;
                if ip.is_ipv4() != (family == "TCP4") {
                    return Err("PROXY v1: address of the wrong family");
                }
                if port.len() > 1 && port.starts_with('0') {
                    return Err("PROXY v1: bad port");
                }
                let port: u16 = port.parse().map_err(|_| "PROXY v1: bad port")?;
                Ok(SocketAddr::new(ip, port))
            };
            Ok(Some(Header {
                length,
                addresses: Some((
                    address(source, source_port)?,
                    address(destination, destination_port)?,
                )),
            }))
        }
        _ => Err("PROXY v1: malformed line"),
    }
}

fn parse_v2(bytes: &[u8]) -> Result<Option<Header>, &'static str> {
    if bytes.len() < 16 {
        return Ok(None);
    }
    let (version, command, family) = (bytes[12] >> 4, bytes[12] & 0x0f, bytes[13]);
    if version != 2 {
        return Err("PROXY v2: unknown version");
    }
    let body = usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
    let length = 16 + body;
    if length > MAX_V2 {
        return Err("PROXY v2: header too long");
    }
    if bytes.len() < length {
        return Ok(None);
    }
    let data = &bytes[16..length];
    let addresses = match (command, family) {
        // LOCAL: the balancer's own connection (a health check).
        (0, _) => None,
        (1, 0x11) if data.len() >= 12 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    data[at],
                    data[at + 1],
                    data[at + 2],
                    data[at + 3],
                ))
            };
            let port = |at: usize| u16::from_be_bytes([data[at], data[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        (1, 0x21) if data.len() >= 36 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&data[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |at: usize| u16::from_be_bytes([data[at], data[at + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        // UNSPEC or a family rsp does not carry (UDP, unix): keep the peer.
        (1, 0x00 | 0x12 | 0x22 | 0x31 | 0x32) => None,
        (1, _) => return Err("PROXY v2: addresses too short or unknown family"),
        _ => return Err("PROXY v2: unknown command"),
    };
    Ok(Some(Header { length, addresses }))
}

/// Appends the header telling a backend that `client` connected to
/// `destination`.
pub fn write(out: &mut Vec<u8>, version: Version, client: SocketAddr, destination: SocketAddr) {
    let (client, destination) = same_family(client, destination);
    match version {
        Version::V1 => {
            let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
            out.extend_from_slice(
                format!(
                    "PROXY {family} {} {} {} {}\r\n",
                    client.ip(),
                    destination.ip(),
                    client.port(),
                    destination.port()
                )
                .as_bytes(),
            );
        }
        Version::V2 => {
            out.extend_from_slice(&SIGNATURE);
            out.push(0x21);
            match (client.ip(), destination.ip()) {
                (IpAddr::V4(source), IpAddr::V4(target)) => {
                    out.push(0x11);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&source.octets());
                    out.extend_from_slice(&target.octets());
                }
                (source, target) => {
                    let v6 = |ip: IpAddr| match ip {
                        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                        IpAddr::V6(v6) => v6,
                    };
                    out.push(0x21);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(source).octets());
                    out.extend_from_slice(&v6(target).octets());
                }
            }
            out.extend_from_slice(&client.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
        }
    }
}

/// Appends a header for rsp's own connection (a health check): v1
/// `UNKNOWN`, v2 `LOCAL`, so the server keeps the peer address it sees.
pub fn write_local(out: &mut Vec<u8>, version: Version) {
    match version {
        Version::V1 => out.extend_from_slice(b"PROXY UNKNOWN\r\n"),
        Version::V2 => {
            out.extend_from_slice(&SIGNATURE);
            out.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        }
    }
}

/// Both addresses in one family: v4-mapped v6 back to v4, or v4 mapped up.
fn same_family(client: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canonical =
        |address: SocketAddr| SocketAddr::new(address.ip().to_canonical(), address.port());
    let (client, destination) = (canonical(client), canonical(destination));
    if client.is_ipv4() == destination.is_ipv4() {
        return (client, destination);
    }
    let mapped = |address: SocketAddr| match address.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), address.port()),
        IpAddr::V6(_) => address,
    };
    (mapped(client), mapped(destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn version_1() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\nGET /";
        let header = parse(line).unwrap().unwrap();
        assert_eq!(header.length, 45);
        assert_eq!(
            header.addresses,
            Some((address("192.0.2.1:56324"), address("198.51.100.2:443")))
        );
        let v6 = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(v6.addresses.unwrap().0, address("[2001:db8::1]:1"));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().addresses,
            None
        );
        // Partial: wait for more.
        for cut in [1, 5, 20, 44] {
            assert_eq!(parse(&line[..cut]), Ok(None), "{cut}");
        }
        let too_long = [b"PROXY ".as_slice(), &[b'x'; 110]].concat();
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 2\r\n",
            b"PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n",
            &too_long,
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn version_2_round_trips() {
        for (client, destination) in [
            ("192.0.2.1:56324", "198.51.100.2:443"),
            ("[2001:db8::1]:1", "[2001:db8::2]:2"),
        ] {
            let (client, destination) = (address(client), address(destination));
            let mut out = Vec::new();
            write(&mut out, Version::V2, client, destination);
            out.extend_from_slice(b"rest");
            let header = parse(&out).unwrap().unwrap();
            assert_eq!(header.addresses, Some((client, destination)));
            assert_eq!(&out[header.length..], b"rest");
            for cut in [3, 12, 15, header.length - 1] {
                assert_eq!(parse(&out[..cut]), Ok(None), "{cut}");
            }
            let mut v1 = Vec::new();
            write(&mut v1, Version::V1, client, destination);
            assert_eq!(
                parse(&v1).unwrap().unwrap().addresses,
                Some((client, destination))
            );
        }
        // LOCAL, with a TLV: no addresses, the whole header consumed.
        let mut local = SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x03, 0x04, 0x00, 0x00]);
        assert_eq!(
            parse(&local).unwrap(),
            Some(Header {
                length: 19,
                addresses: None
            })
        );
        for version in [Version::V1, Version::V2] {
            let mut out = Vec::new();
            write_local(&mut out, version);
            assert_eq!(
                parse(&out).unwrap(),
                Some(Header {
                    length: out.len(),
                    addresses: None
                })
            );
        }
        let mut bad_version = SIGNATURE.to_vec();
        bad_version.extend_from_slice(&[0x31, 0x11, 0x00, 0x0c]);
        assert!(parse(&bad_version).is_err());
    }

    #[test]
    fn mixed_families_are_sent_as_v6() {
        let mut out = Vec::new();
        write(
            &mut out,
            Version::V1,
            address("192.0.2.1:5"),
            address("[2001:db8::2]:80"),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 5 80\r\n"
        );
    }
}
