//! Hosts in their one canonical spelling: what `route()` matches on and
//! what the backend's virtual hosts match on must be the same text, the
//! twin of path normalization (`target.rs`) for the authority.
//!
//! `Host: Internal.CORP.:80` and `http://internal.corp/` name one host to
//! nginx (it lower-cases, drops the trailing dot and the default port); a
//! rule on `req.host == "internal.corp"` must see them as that host too.
//! So every spelling a server could read as another host is either
//! brought to the canonical one (and forwarded so) or refused:
//!
//! - a DNS name: letters, digits, `-` and `_` in labels of 1 to 63 bytes
//!   joined by single dots, 253 bytes at most, lower case, one trailing
//!   dot removed. Other reg-name characters RFC 3986 allows (`%`, `!`,
//!   `$`, ...) name no host a resolver would give and are refused;
//! - an IPv4 address, as four decimal numbers without leading zeros: a
//!   name whose last label is numeric (`127.1`, `0x7f.1`, `2130706433`,
//!   `010.0.0.1`) is what browsers and `inet_aton` read as an address in
//!   another spelling, so it must be the dotted-quad one;
//! - an IPv6 literal in brackets, in RFC 5952's form (`[::1]`), no zone;
//! - a port from 1 to 65535 without leading zeros, removed when it is the
//!   scheme's default (80 for http, 443 for https), and an empty port
//!   (`host:`) removed.

use std::fmt;
use std::io::Write;
use std::net::Ipv6Addr;

/// Why a host is refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidHost(pub &'static str);

impl fmt::Display for InvalidHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid host: {}", self.0)
    }
}

/// The longest DNS name, without its trailing dot (RFC 1035 §2.3.4).
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// The default port of a scheme: 443 for https, 80 for anything else.
pub fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

/// Writes the canonical form of `authority` (`host[:port]`, as a Host
/// field or a URI's authority holds it) to `out`, which is cleared first;
/// `default_port` is the scheme's. An empty authority stays empty (an
/// HTTP/1.1 Host may be, RFC 9112 §3.2). Returns where the host ends in
/// `out` (its port, if any, follows).
pub fn canonical(
    authority: &[u8],
    default_port: u16,
    out: &mut Vec<u8>,
) -> Result<usize, InvalidHost> {
    out.clear();
    if authority.is_empty() {
        return Ok(0);
    }
    // A connection's requests, and most of a worker's, name one host:
    // the last one's canonical form is kept.
    let cached = LAST.with_borrow(|last| {
        (last.port == default_port && last.authority == authority).then(|| {
            out.extend_from_slice(&last.canonical);
            last.host_end
        })
    });
    if let Some(host_end) = cached {
        return Ok(host_end);
    }
    let host_end = spell(authority, default_port, out)?;
    if authority.len() <= MAX_CACHED {
        LAST.with_borrow_mut(|last| {
            last.authority.clear();
            last.authority.extend_from_slice(authority);
            last.port = default_port;
            last.canonical.clear();
            last.canonical.extend_from_slice(out);
            last.host_end = host_end;
        });
    }
    Ok(host_end)
}

/// The last authority this thread made canonical, with its scheme's port.
struct Last {
    authority: Vec<u8>,
    port: u16,
    canonical: Vec<u8>,
    host_end: usize,
}

/// Authorities longer than this are not kept (the cache holds one).
const MAX_CACHED: usize = 256;

thread_local! {
    static LAST: std::cell::RefCell<Last> = const {
        std::cell::RefCell::new(Last {
            authority: Vec::new(),
            port: 0,
            canonical: Vec::new(),
            host_end: 0,
        })
    };
}

/// `canonical`, worked out.
fn spell(authority: &[u8], default_port: u16, out: &mut Vec<u8>) -> Result<usize, InvalidHost> {
    let port = if authority[0] == b'[' {
        let close = authority
            .iter()
            .position(|&byte| byte == b']')
            .ok_or(InvalidHost("an IPv6 literal without its ]"))?;
        let literal = std::str::from_utf8(&authority[1..close])
            .ok()
            .and_then(|text| text.parse::<Ipv6Addr>().ok())
            .ok_or(InvalidHost("not an IPv6 address in brackets"))?;
        let _ = write!(out, "[{literal}]");
        match &authority[close + 1..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return Err(InvalidHost("bytes after an IPv6 literal")),
        }
    } else {
        let (name, port) = match authority.iter().position(|&byte| byte == b':') {
            Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
            None => (authority, None),
        };
        name_or_ipv4(name, out)?;
        port
    };
    let host_end = out.len();
    if let Some(port) = port.filter(|port| !port.is_empty())
        && parse_port(port)? != default_port
    {
        // Without leading zeros (refused), the text is the number's.
        out.push(b':');
        out.extend_from_slice(port);
    }
    Ok(host_end)
}

/// The canonical form of `authority` as a new vector (for code off the
/// request path: config, tests).
pub fn canonical_owned(authority: &[u8], default_port: u16) -> Result<Vec<u8>, InvalidHost> {
    let mut out = Vec::with_capacity(authority.len());
    canonical(authority, default_port, &mut out)?;
    Ok(out)
}

/// The host part of a canonical authority: without its port.
pub fn without_port(canonical: &[u8]) -> &[u8] {
    let end = match canonical.last() {
        // A bracketed literal without port ends in `]`; with one, the port
        // follows the last colon after it.
        Some(b']') => canonical.len(),
        _ => canonical
            .iter()
            .rposition(|&byte| byte == b':')
            .filter(|&colon| !canonical[colon..].contains(&b']'))
            .unwrap_or(canonical.len()),
    };
    &canonical[..end]
}

fn parse_port(port: &[u8]) -> Result<u16, InvalidHost> {
    if port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return Err(InvalidHost("a port that is not a number"));
    }
    if port.len() > 1 && port[0] == b'0' {
        return Err(InvalidHost("a port with leading zeros"));
    }
    let value = port
        .iter()
        .fold(0u32, |sum, digit| sum * 10 + u32::from(digit - b'0'));
    match u16::try_from(value) {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(InvalidHost("a port outside 1 to 65535")),
    }
}

/// A DNS name or an IPv4 address, lower-cased, without a trailing dot.
fn name_or_ipv4(name: &[u8], out: &mut Vec<u8>) -> Result<(), InvalidHost> {
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() {
        return Err(InvalidHost("an empty name with a port or a dot"));
    }
    if name.len() > MAX_NAME {
        return Err(InvalidHost("a name longer than 253 bytes"));
    }
    // One pass checks the bytes and the labels' lengths; the name is
    // then copied whole and lower-cased in place.
    let (mut label, mut last_label) = (0, 0);
    for (at, &byte) in name.iter().enumerate() {
        if byte == b'.' {
            if label == 0 {
                return Err(InvalidHost("an empty label (a leading dot, or two dots)"));
            }
            label = 0;
            last_label = at + 1;
            continue;
        }
        if !(byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_') {
            return Err(InvalidHost(
                "a byte a host name may not hold (letters, digits, - and _ only)",
            ));
        }
        label += 1;
        if label > MAX_LABEL {
            return Err(InvalidHost("a label longer than 63 bytes"));
        }
    }
    let start = out.len();
    out.extend_from_slice(name);
    out[start..].make_ascii_lowercase();
    if looks_numeric(&out[start + last_label..]) && !is_dotted_quad(&out[start..]) {
        // An address: only in the spelling no reader can take otherwise.
        return Err(InvalidHost(
            "a numeric host that is not a dotted-quad IPv4 address",
        ));
    }
    Ok(())
}

/// Four decimal numbers from 0 to 255, without leading zeros, joined by
/// dots: the one spelling of an IPv4 address every reader agrees on.
fn is_dotted_quad(text: &[u8]) -> bool {
    let mut parts = 0;
    for part in text.split(|&byte| byte == b'.') {
        parts += 1;
        let number = part.iter().try_fold(0u32, |value, &byte| {
            byte.is_ascii_digit()
                .then(|| value * 10 + u32::from(byte - b'0'))
                .filter(|&value| value <= 255)
        });
        let leading_zero = part.len() > 1 && part[0] == b'0';
        if part.is_empty() || part.len() > 3 || number.is_none() || leading_zero {
            return false;
        }
    }
    parts == 4
}

/// A label browsers' URL parsers (and `inet_aton`) take for a number:
/// decimal digits, or `0x` and hex digits.
fn looks_numeric(label: &[u8]) -> bool {
    let hex = label
        .strip_prefix(b"0x")
        .is_some_and(|rest| rest.iter().all(u8::is_ascii_hexdigit));
    hex || label.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(authority: &str, https: bool) -> Result<String, InvalidHost> {
        canonical_owned(authority.as_bytes(), default_port(https))
            .map(|bytes| String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn spellings_of_one_host_become_one() {
        for (spelling, https, canonical) in [
            ("internal.corp", false, "internal.corp"),
            ("internal.corp.", false, "internal.corp"),
            ("INTERNAL.corp.:80", false, "internal.corp"),
            ("Internal.Corp:443", true, "internal.corp"),
            ("internal.corp:443", false, "internal.corp:443"),
            ("internal.corp:80", true, "internal.corp:80"),
            ("internal.corp:", false, "internal.corp"),
            ("internal.corp.:8080", false, "internal.corp:8080"),
            ("a_b-c.d", false, "a_b-c.d"),
            ("127.0.0.1", false, "127.0.0.1"),
            ("127.0.0.1:80", false, "127.0.0.1"),
            ("127.0.0.1.", false, "127.0.0.1"),
            ("[::1]", false, "[::1]"),
            ("[0:0:0:0:0:0:0:1]:80", false, "[::1]"),
            ("[::FFFF:127.0.0.1]:8080", false, "[::ffff:127.0.0.1]:8080"),
            ("[2001:DB8::1]:443", true, "[2001:db8::1]"),
            ("localhost", false, "localhost"),
            ("1x.example", false, "1x.example"),
            ("", false, ""),
        ] {
            assert_eq!(
                canon(spelling, https).as_deref(),
                Ok(canonical),
                "{spelling}"
            );
        }
    }

    #[test]
    fn hosts_a_server_could_read_otherwise_are_refused() {
        for bad in [
            "internal.corp..",
            ".internal.corp",
            "internal..corp",
            ".",
            ":80",
            "a%2eb",
            "a!b",
            "a b",
            "a/b",
            "a@b",
            "a\\b",
            "a:0",
            "a:65536",
            "a:080",
            "a:8x",
            "a:1:2",
            "127.1",
            "0x7f.0.0.1",
            "0x7f000001",
            "2130706433",
            "010.0.0.1",
            "127.0.0.256",
            "1.2.3.4.5",
            "example.123",
            "[::1",
            "[::1]x",
            "[fe80::1%25eth0]",
            "[v1.x]",
            "[127.0.0.1]",
            "é.example",
        ] {
            assert!(canon(bad, false).is_err(), "{bad:?}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(canon(&long_label, false).is_err());
        let long_name = ["abcdefghi"; 26].join(".");
        assert!(long_name.len() > MAX_NAME);
        assert!(canon(&long_name, false).is_err());
        assert!(canon(&long_name[..MAX_NAME], false).is_ok());
    }

    #[test]
    fn the_kept_spelling_is_the_scheme_s() {
        // The same authority, another scheme: another canonical form.
        assert_eq!(canon("a.example:443", false).unwrap(), "a.example:443");
        assert_eq!(canon("a.example:443", true).unwrap(), "a.example");
        assert_eq!(canon("a.example:443", false).unwrap(), "a.example:443");
        assert!(canon("a..b", false).is_err());
        assert!(canon("a..b", false).is_err());
    }

    #[test]
    fn canonical_is_a_fixed_point() {
        for spelling in ["A.b.:80", "[::FFFF:1.2.3.4]:9", "x:8080", "1.2.3.4:443"] {
            let once = canon(spelling, true).unwrap();
            assert_eq!(canon(&once, true).unwrap(), once);
        }
    }

    #[test]
    fn dotted_quads_are_the_addresses_std_writes() {
        for text in ["0.0.0.0", "127.0.0.1", "255.255.255.255", "10.1.20.255"] {
            assert!(is_dotted_quad(text.as_bytes()), "{text}");
            let address: std::net::Ipv4Addr = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
        }
        for text in [
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1..3.4",
            "1.2.3.",
            "a.2.3.4",
            "1.2.3.1000",
        ] {
            assert!(!is_dotted_quad(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn the_port_comes_off() {
        assert_eq!(without_port(b"a.b:8080"), b"a.b");
        assert_eq!(without_port(b"a.b"), b"a.b");
        assert_eq!(without_port(b"[::1]:8080"), b"[::1]");
        assert_eq!(without_port(b"[::1]"), b"[::1]");
        assert_eq!(without_port(b""), b"");
    }
}
