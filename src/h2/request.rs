//! An HTTP/2 request's header list (RFC 9113 §8.2, §8.3): what makes a
//! request malformed in HTTP/2 is refused here; everything HTTP/1 checks
//! (the target, the Host, field syntax, the framing) is then checked by
//! the same code that checks an HTTP/1 request (`RequestHead::read_h2`),
//! so `route()` sees exactly what the backend gets.

use std::fmt;

/// Why a request is malformed (a stream error, PROTOCOL_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// Fields that describe one connection, not the message (§8.2.2).
const CONNECTION_SPECIFIC: &[&[u8]] = &[
    b"connection",
    b"proxy-connection",
    b"keep-alive",
    b"transfer-encoding",
    b"upgrade",
];

/// How the request's body is framed on the way to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: the HEADERS frame ended the stream.
    None,
    /// The client said how long: its DATA is passed as it is, and must
    /// add up to this.
    Length(u64),
    /// No length: DATA goes as chunks (`Transfer-Encoding: chunked`).
    Chunked,
}

/// The pseudo-header fields of a request.
#[derive(Default)]
struct Pseudo<'a> {
    method: Option<&'a [u8]>,
    scheme: Option<&'a [u8]>,
    path: Option<&'a [u8]>,
    authority: Option<&'a [u8]>,
}

/// A field's name is lower case token characters (§8.2.1: upper case is
/// malformed in HTTP/2).
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&byte)
        })
}

/// A value holds no NUL, CR or LF, and neither starts nor ends with
/// whitespace (§8.2.1).
fn valid_value(value: &[u8]) -> bool {
    !value.iter().any(|&byte| matches!(byte, 0 | b'\r' | b'\n'))
        && !value
            .first()
            .is_some_and(|&byte| byte == b' ' || byte == b'\t')
        && !value
            .last()
            .is_some_and(|&byte| byte == b' ' || byte == b'\t')
}

/// What an HTTP/2 request's header list says, once it is known not to be
/// malformed: the parts an HTTP/1 request line and Host carry, and how
/// its body is framed. Its regular fields are read from the same list by
/// `RequestHead::read_h2`, which checks what HTTP/1 checks (the target,
/// the host, field syntax), so `route()` sees exactly what the backend
/// gets, with no HTTP/1.1 text in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    pub parts: crate::http::RequestParts<'a>,
    pub framing: BodyFraming,
}

/// Checks the request whose decoded header list is `fields` (§8.2, §8.3).
/// `end_stream`: the HEADERS frame ended the stream, so there is no body.
pub fn check<'a>(
    fields: impl Iterator<Item = super::Field<'a>>,
    end_stream: bool,
) -> Result<Request<'a>, Malformed> {
    let (pseudo, length, host) = read_list(fields)?;
    let method = pseudo.method.ok_or(Malformed("no :method"))?;
    let connect = method == b"CONNECT";
    let target = if connect {
        // rsp's HTTP/1 parser answers CONNECT with 501, as it does there.
        if pseudo.scheme.is_some() || pseudo.path.is_some() {
            return Err(Malformed("CONNECT with :scheme or :path"));
        }
        pseudo
            .authority
            .ok_or(Malformed("CONNECT without :authority"))?
    } else {
        if pseudo.scheme.is_none_or(<[u8]>::is_empty) {
            return Err(Malformed("no :scheme"));
        }
        pseudo
            .path
            .filter(|path| !path.is_empty())
            .ok_or(Malformed("no :path"))?
    };
    let port = crate::host::default_port(pseudo.scheme == Some(b"https"));
    // §8.3.1: the Host a client sends must name what :authority does
    // (spelled as it may be: `a.example.` names `A.example:443`).
    let authority = match (pseudo.authority, host) {
        (Some(authority), Some(host)) if !same_host(authority, host, port) => {
            return Err(Malformed("a host field other than :authority"));
        }
        (authority, host) => authority.or(host),
    };
    // An absolute-form :path (RFC 9113 §8.3.1 asks for origin-form) is
    // taken only when it names the request's own scheme and authority:
    // rsp's request reading makes its authority the host, which would
    // otherwise override :authority, what the client said it asks.
    if !connect && let Some((scheme, path_authority)) = absolute_form(target) {
        let same_scheme = pseudo
            .scheme
            .is_some_and(|own| own.eq_ignore_ascii_case(scheme));
        let same_authority = authority.is_some_and(|own| same_host(own, path_authority, port));
        if !same_scheme || !same_authority {
            return Err(Malformed(
                "an absolute-form :path whose scheme or authority is not the request's",
            ));
        }
    }
    for part in [method, target] {
        if !valid_value(part) || part.contains(&b' ') {
            return Err(Malformed(
                "a :method or :path with a space or a control byte",
            ));
        }
    }
    let framing = body_framing(length, end_stream)?;
    Ok(Request {
        parts: crate::http::RequestParts {
            method,
            target,
            authority,
            unsized_body: framing == BodyFraming::Chunked,
        },
        framing,
    })
}

/// The pseudo-header fields of a list, its content-length and Host,
/// each field checked (§8.2): lower-case token names, no NUL, CR, LF or
/// outer whitespace in values, no connection-specific field, TE only
/// "trailers", one content-length and one host value.
type Listed<'a> = (Pseudo<'a>, Option<&'a [u8]>, Option<&'a [u8]>);

fn read_list<'a>(fields: impl Iterator<Item = super::Field<'a>>) -> Result<Listed<'a>, Malformed> {
    let mut pseudo = Pseudo::default();
    let mut regular = false;
    let mut length: Option<&[u8]> = None;
    let mut host: Option<&[u8]> = None;
    for (name, value) in fields {
        if let Some(pseudo_name) = name.strip_prefix(b":") {
            if regular {
                return Err(Malformed("a pseudo-header after a regular field"));
            }
            let slot = match pseudo_name {
                b"method" => &mut pseudo.method,
                b"scheme" => &mut pseudo.scheme,
                b"path" => &mut pseudo.path,
                b"authority" => &mut pseudo.authority,
                _ => return Err(Malformed("an unknown or response pseudo-header")),
            };
            if slot.replace(value).is_some() {
                return Err(Malformed("a pseudo-header twice"));
            }
            continue;
        }
        regular = true;
        if !valid_name(name) {
            return Err(Malformed(
                "a field name that is not lower case token characters",
            ));
        }
        if !valid_value(value) {
            return Err(Malformed(
                "a field value with NUL, CR, LF or outer whitespace",
            ));
        }
        if CONNECTION_SPECIFIC.contains(&name) {
            return Err(Malformed("a connection-specific field"));
        }
        match name {
            b"te" if value != b"trailers" => {
                return Err(Malformed("TE other than \"trailers\""));
            }
            b"content-length" if length.is_some_and(|seen| seen != value) => {
                return Err(Malformed("two different content-lengths"));
            }
            b"content-length" => length = Some(value),
            b"host" if host.is_some_and(|seen| seen != value) => {
                return Err(Malformed("two different hosts"));
            }
            b"host" => host = Some(value),
            _ => {}
        }
    }
    Ok((pseudo, length, host))
}

/// How the body is framed: by its content-length (which a stream the
/// HEADERS ended must not promise bytes in), else none or to the end of
/// the stream.
fn body_framing(length: Option<&[u8]>, end_stream: bool) -> Result<BodyFraming, Malformed> {
    Ok(match length {
        Some(length) => {
            let length = std::str::from_utf8(length)
                .ok()
                .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_digit()))
                .and_then(|digits| digits.parse::<u64>().ok())
                .ok_or(Malformed("a content-length that is not a number"))?;
            if end_stream && length > 0 {
                return Err(Malformed("a content-length with no DATA to follow"));
            }
            BodyFraming::Length(length)
        }
        None if end_stream => BodyFraming::None,
        None => BodyFraming::Chunked,
    })
}

/// Two authorities name the same host: the same bytes but for case, or
/// the same canonical spelling (`host.rs`) with the scheme's `port`.
fn same_host(one: &[u8], other: &[u8], port: u16) -> bool {
    one.eq_ignore_ascii_case(other)
        || matches!(
            (crate::host::canonical_owned(one, port), crate::host::canonical_owned(other, port)),
            (Ok(one), Ok(other)) if one == other
        )
}

/// The scheme and authority of an absolute-form target
/// (`scheme://authority/path?query`); `None` for any other form.
fn absolute_form(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let separator = target.windows(3).position(|window| window == b"://")?;
    let scheme = &target[..separator];
    let valid_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || b"+-.".contains(&byte));
    if !valid_scheme {
        return None;
    }
    let rest = &target[separator + 3..];
    let end = rest
        .iter()
        .position(|byte| b"/?#".contains(byte))
        .unwrap_or(rest.len());
    Some((scheme, &rest[..end]))
}

/// A trailer section (HEADERS after DATA), checked: pseudo-headers are
/// malformed in trailers (§8.1), and so are invalid fields. Returns its
/// fields, for the body's end.
pub fn trailers<'a>(
    fields: impl Iterator<Item = super::Field<'a>>,
) -> Result<Vec<crate::message::Field>, Malformed> {
    let mut kept = Vec::new();
    for (name, value) in fields {
        if name.starts_with(b":") {
            return Err(Malformed("a pseudo-header in trailers"));
        }
        if !valid_name(name) || !valid_value(value) {
            return Err(Malformed("an invalid trailer field"));
        }
        kept.push((name.to_vec(), value.to_vec()));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(list: &[(&'a str, &'a str)]) -> Vec<(&'a [u8], &'a [u8])> {
        list.iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
            .collect()
    }

    /// The head an HTTP/1.1 backend gets for the request `list`, as rsp
    /// reads it (no forwarding fields), and how its body is framed.
    fn translate(list: &[(&str, &str)], end_stream: bool) -> Result<(String, BodyFraming), String> {
        let fields = fields(list);
        let request = check(fields.iter().copied(), end_stream)
            .map_err(|malformed| malformed.0.to_owned())?;
        let mut head = crate::http::RequestHead::default();
        let policy = crate::http::RequestPolicy::default();
        head.read_h2(&request.parts, fields.iter().copied(), &policy, true)
            .map_err(|error| error.to_string())?;
        let none = crate::forwarding::Forwarding::none();
        let mut out = Vec::new();
        let client = std::net::Ipv4Addr::LOCALHOST.into();
        head.write_forwarded(&mut out, client, &none, None, true, true);
        Ok((String::from_utf8(out).unwrap(), request.framing))
    }

    const GET: &[(&str, &str)] = &[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/a?b=c"),
    ];

    #[test]
    fn a_get_becomes_a_request_line_and_host() {
        let mut list = GET.to_vec();
        list.push(("accept", "*/*"));
        let (head, framing) = translate(&list, true).unwrap();
        assert_eq!(
            head,
            "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\naccept: */*\r\n\r\n"
        );
        assert_eq!(framing, BodyFraming::None);
    }

    #[test]
    fn cookies_are_joined_and_bodies_framed() {
        let mut list = GET.to_vec();
        list[0] = (":method", "POST");
        list.extend([("cookie", "a=1"), ("x", "y"), ("cookie", "b=2")]);
        let (head, framing) = translate(&list, false).unwrap();
        assert!(
            head.ends_with("x: y\r\ncookie: a=1; b=2\r\ntransfer-encoding: chunked\r\n\r\n"),
            "{head}"
        );
        assert_eq!(framing, BodyFraming::Chunked);
        list.push(("content-length", "5"));
        let (head, framing) = translate(&list, false).unwrap();
        assert!(!head.contains("transfer-encoding"), "{head}");
        // Empty crumbs add nothing: no "; " left at either end.
        let mut crumbs = GET.to_vec();
        crumbs.extend([("cookie", ""), ("cookie", ":"), ("cookie", "")]);
        let (head, _) = translate(&crumbs, true).unwrap();
        assert!(head.contains("\r\ncookie: :\r\n"), "{head}");
        assert_eq!(framing, BodyFraming::Length(5));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut list = GET.to_vec();
            list.extend_from_slice(extra);
            translate(&list, true)
        };
        for bad in [
            &[("connection", "close")][..],
            &[("transfer-encoding", "chunked")],
            &[("upgrade", "websocket")],
            &[("keep-alive", "5")],
            &[("proxy-connection", "x")],
            &[("te", "gzip")],
            &[("Accept", "x")],
            &[("x", "a\r\nInjected: 1")],
            &[("x", "a\0")],
            &[("x", " padded")],
            &[("", "empty name")],
            &[("host", "other.example")],
            &[(":path", "/twice")],
            &[(":status", "200")],
            &[(":protocol", "websocket")],
            &[("content-length", "5")],
            &[("content-length", "1"), ("content-length", "2")],
        ] {
            assert!(with(bad).is_err(), "{bad:?}");
        }
        assert!(with(&[("te", "trailers"), ("host", "EXAMPLE.com")]).is_ok());
        assert!(with(&[("host", "example.com.:443")]).is_ok());
        assert!(with(&[("host", "example.com:80")]).is_err());
        let mut late = GET.to_vec();
        late.insert(1, ("accept", "x"));
        assert!(translate(&late, true).is_err(), "pseudo after regular");
        for missing in [":method", ":scheme", ":path"] {
            let list: Vec<_> = GET.iter().copied().filter(|(n, _)| *n != missing).collect();
            assert!(translate(&list, true).is_err(), "{missing}");
        }
        let spaced = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/a b HTTP/1.1\r\n"),
        ];
        assert!(translate(&spaced, true).is_err());
    }

    #[test]
    fn an_absolute_path_must_name_the_requests_scheme_and_authority() {
        let with_path = |scheme: &'static str, path: &'static str| {
            let list = [
                (":method", "GET"),
                (":scheme", scheme),
                (":authority", "Example.com:8080"),
                (":path", path),
            ];
            translate(&list, true)
        };
        for (scheme, path) in [
            ("http", "http://other.example/x"),
            ("http", "http://example.com/x"),
            ("http", "http://example.com:8081/x"),
            ("http", "http://user@example.com:8080/x"),
            ("http", "https://example.com:8080/x"),
            ("https", "http://example.com:8080/x"),
            ("http", "http://example.com:8080.evil/x"),
        ] {
            assert_eq!(
                with_path(scheme, path),
                Err(
                    "an absolute-form :path whose scheme or authority is not the request's"
                        .to_owned()
                ),
                "{scheme} {path}"
            );
        }
        // The same, in any case: read as an HTTP/1 absolute-form target
        // is, into origin-form.
        for (scheme, path, origin) in [
            ("http", "http://example.com:8080/x", "/x"),
            ("https", "HTTPS://EXAMPLE.COM:8080?q", "/?q"),
            ("http", "http://example.com:8080", "/"),
        ] {
            let (head, _) = with_path(scheme, path).unwrap();
            assert!(
                head.starts_with(&format!(
                    "GET {origin} HTTP/1.1\r\nHost: example.com:8080\r\n"
                )),
                "{head}"
            );
        }
        // Without :authority, the host field is the request's authority.
        let list = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "http://elsewhere/x"),
            ("host", "example.com"),
        ];
        assert!(translate(&list, true).is_err());
        let list = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "http://elsewhere/x"),
        ];
        assert!(translate(&list, true).is_err());
        assert_eq!(absolute_form(b"/a://b"), None);
        assert_eq!(absolute_form(b"*"), None);
    }

    #[test]
    fn connect_goes_on_to_be_refused_as_in_http1() {
        let list = fields(&[(":method", "CONNECT"), (":authority", "h:443")]);
        let request = check(list.iter().copied(), true).unwrap();
        let mut head = crate::http::RequestHead::default();
        let policy = crate::http::RequestPolicy::default();
        // The HTTP/1 stage answers this error 501.
        assert!(matches!(
            head.read_h2(&request.parts, list.iter().copied(), &policy, true),
            Err(crate::http::HeadError::Target(
                crate::target::TargetError::Connect
            ))
        ));
    }

    #[test]
    fn values_are_held_to_what_an_http1_head_may_carry() {
        let mut list = GET.to_vec();
        list.push(("x", "a\u{1}b"));
        assert!(translate(&list, true).unwrap_err().contains("control"));
        let mut list = GET.to_vec();
        list[0] = (":method", "G(T");
        assert!(translate(&list, true).is_err());
        let mut list = GET.to_vec();
        list.push(("x_y", "dropped"));
        assert!(!translate(&list, true).unwrap().0.contains("x_y"));
        let mut list = GET.to_vec();
        list[2] = (":authority", "Example.COM.:443");
        assert!(
            translate(&list, true)
                .unwrap()
                .0
                .contains("Host: example.com\r\n")
        );
    }

    #[test]
    fn trailers_are_checked_fields() {
        let kept = trailers(fields(&[("grpc-status", "0")]).into_iter()).unwrap();
        assert_eq!(kept, [(b"grpc-status".to_vec(), b"0".to_vec())]);
        assert!(trailers(fields(&[(":path", "/")]).into_iter()).is_err());
        assert!(trailers(fields(&[("a b", "1")]).into_iter()).is_err());
    }
}
