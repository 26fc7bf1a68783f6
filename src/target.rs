//! The request target (RFC 9112 §3.2): which of the four forms it has, and
//! the normalized origin-form rsp routes on and forwards.
//!
//! `route()` rules match on the path, so the path a backend receives must
//! be the one `route()` saw: rsp normalizes it first (RFC 3986 §2.3, §6.2.2,
//! §5.2.4, as HAProxy's `normalize-uri` and Envoy's `normalize_path` do)
//! and forwards exactly the normalized form.

use std::fmt;

/// What to do with `%2F` and `%5C` in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscapedSlash {
    /// Forward them encoded (`%2F`): the path keeps one more segment than
    /// a decoding backend sees.
    Keep,
    /// 400: an encoded separator has no meaning a rule could rely on.
    Reject,
    /// Decode them to `/` and `\` before dot-segments and slashes are dealt with.
    Decode,
}

/// What to do with a raw `\` in a path (some servers take it for `/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backslash {
    Keep,
    Reject,
    /// Treat it as `/`, as Windows servers do.
    Slash,
}

/// `path_normalization = { ... }`, or `false` (`enabled: false`): forward
/// targets untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathNormalization {
    pub enabled: bool,
    /// `//` becomes `/`.
    pub merge_slashes: bool,
    pub escaped_slash: EscapedSlash,
    pub backslash: Backslash,
    /// `%00` passed on (`true`) or refused with 400 (`false`).
    pub allow_escaped_nul: bool,
}

impl Default for PathNormalization {
    fn default() -> PathNormalization {
        PathNormalization {
            enabled: true,
            merge_slashes: true,
            escaped_slash: EscapedSlash::Reject,
            backslash: Backslash::Reject,
            allow_escaped_nul: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// A target of no valid form, or one that cannot be normalized: 400.
    Invalid(&'static str),
    /// CONNECT: rsp does not open tunnels to arbitrary hosts: 501.
    Connect,
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Invalid(why) => f.write_str(why),
            TargetError::Connect => f.write_str("CONNECT is not supported"),
        }
    }
}

/// The form of a request target, borrowed from the request line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form<'a> {
    /// `/path?query`
    Origin(&'a [u8]),
    /// `http://authority/path?query`: forwarded as origin-form, with the
    /// authority as the Host.
    Absolute {
        authority: &'a [u8],
        origin: &'a [u8],
        /// The scheme is https (its default port is 443).
        https: bool,
    },
    /// `*`, for OPTIONS only.
    Asterisk,
}

/// Tells the form of `target` (RFC 9112 §3.2): origin-form starts with
/// `/`, absolute-form with `scheme://`, asterisk-form is `*` for OPTIONS
/// only, and authority-form is for CONNECT, which rsp answers with 501.
pub fn form<'a>(method: &[u8], target: &'a [u8]) -> Result<Form<'a>, TargetError> {
    if method == b"CONNECT" {
        return Err(TargetError::Connect);
    }
    match target.first() {
        Some(b'/') => Ok(Form::Origin(target)),
        Some(b'*') if target.len() == 1 => {
            if method == b"OPTIONS" {
                Ok(Form::Asterisk)
            } else {
                Err(TargetError::Invalid("'*' is a target for OPTIONS only"))
            }
        }
        Some(first) if first.is_ascii_alphabetic() => absolute(target),
        _ => Err(TargetError::Invalid("the request target has no valid form")),
    }
}

/// `scheme://authority[/path][?query]`, scheme `http` or `https`.
fn absolute(target: &[u8]) -> Result<Form<'_>, TargetError> {
    let scheme_end = target
        .iter()
        .position(|&byte| !(byte.is_ascii_alphanumeric() || b"+-.".contains(&byte)))
        .ok_or(TargetError::Invalid("the request target has no valid form"))?;
    let rest = target[scheme_end..]
        .strip_prefix(b"://")
        .ok_or(TargetError::Invalid("the request target has no valid form"))?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(TargetError::Invalid(
            "absolute-form target of another scheme than http(s)",
        ));
    }
    let authority_end = rest
        .iter()
        .position(|&byte| matches!(byte, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, origin) = rest.split_at(authority_end);
    if authority.is_empty() {
        return Err(TargetError::Invalid("absolute-form target without a host"));
    }
    if !is_valid_authority(authority) {
        return Err(TargetError::Invalid(
            "invalid authority in the request target",
        ));
    }
    Ok(Form::Absolute {
        authority,
        origin,
        https: scheme.eq_ignore_ascii_case(b"https"),
    })
}

/// `host [":" port]` as a Host field or a URL's authority may hold it: a
/// reg-name, IPv4 or bracketed IP literal, and digits after a colon. No
/// userinfo, no path, no spaces: anything a server could read as a
/// different host than rsp did is refused.
pub fn is_valid_authority(authority: &[u8]) -> bool {
    let (host, port) = if authority.first() == Some(&b'[') {
        let Some(close) = authority.iter().position(|&byte| byte == b']') else {
            return false;
        };
        let literal = &authority[1..close];
        let valid_literal = !literal.is_empty()
            && literal
                .iter()
                .all(|&byte| byte.is_ascii_hexdigit() || matches!(byte, b':' | b'.'));
        if !valid_literal {
            return false;
        }
        match &authority[close + 1..] {
            [] => return true,
            [b':', port @ ..] => (&authority[..0], Some(port)),
            _ => return false,
        }
    } else {
        match authority.iter().position(|&byte| byte == b':') {
            Some(colon) => (&authority[..colon], Some(&authority[colon + 1..])),
            None => (authority, None),
        }
    };
    let valid_host = host
        .iter()
        .all(|&byte| byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&byte));
    let valid_port = port.is_none_or(|port| {
        !port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
    });
    valid_host && valid_port
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path may hold as they are (RFC 3986 `pchar` and `/`);
/// others are percent-encoded.
fn is_path_char(byte: u8) -> bool {
    is_unreserved(byte) || b"!$&'()*+,;=:@/".contains(&byte)
}

fn hex_value(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|digit| digit as u8)
}

fn push_encoded(out: &mut Vec<u8>, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[
        b'%',
        HEX[usize::from(byte >> 4)],
        HEX[usize::from(byte & 15)],
    ]);
}

/// Reusable storage for normalizing: a request head keeps one, so that
/// steady-state requests allocate nothing.
#[derive(Debug, Default)]
pub struct Scratch {
    decoded: Vec<u8>,
}

/// Writes the normalized form of an origin-form `origin` (`/path?query`)
/// to `out`: unreserved characters percent-decoded, other encodings in
/// upper case, characters a URI may not hold encoded, dot-segments removed,
/// repeated slashes merged, `%2F`, `%5C`, `%00` and `\` as `settings` say.
/// The query is kept, but for bytes a URI may not hold, which are encoded.
pub fn normalize(
    origin: &[u8],
    settings: &PathNormalization,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Result<(), TargetError> {
    let (path, query) = match origin.iter().position(|&byte| byte == b'?') {
        Some(mark) => (&origin[..mark], Some(&origin[mark + 1..])),
        None => (origin, None),
    };
    out.clear();
    if !settings.enabled {
        out.extend_from_slice(origin);
        return Ok(());
    }
    let decoded = &mut scratch.decoded;
    decoded.clear();
    decode_path(path, settings, decoded)?;
    remove_dot_segments(decoded, settings.merge_slashes, out)?;
    if let Some(query) = query {
        out.push(b'?');
        for &byte in query {
            match byte {
                b'#' => return Err(TargetError::Invalid("a fragment in the request target")),
                b'!'..=b'~' => out.push(byte),
                _ => push_encoded(out, byte),
            }
        }
    }
    Ok(())
}

/// Percent-decoding of unreserved characters and the settings' choices for
/// separators, NUL and backslashes.
fn decode_path(
    path: &[u8],
    settings: &PathNormalization,
    out: &mut Vec<u8>,
) -> Result<(), TargetError> {
    let mut at = 0;
    while at < path.len() {
        let byte = path[at];
        at += 1;
        let literal = match byte {
            b'%' => {
                let (Some(high), Some(low)) = (
                    path.get(at).copied().and_then(hex_value),
                    path.get(at + 1).copied().and_then(hex_value),
                ) else {
                    return Err(TargetError::Invalid("invalid percent-encoding in the path"));
                };
                at += 2;
                let value = high << 4 | low;
                match value {
                    _ if is_unreserved(value) => out.push(value),
                    b'/' | b'\\' => match settings.escaped_slash {
                        EscapedSlash::Keep => push_encoded(out, value),
                        EscapedSlash::Reject => {
                            return Err(TargetError::Invalid("an encoded slash in the path"));
                        }
                        EscapedSlash::Decode if value == b'/' => out.push(b'/'),
                        EscapedSlash::Decode => backslash(settings, out)?,
                    },
                    0 if !settings.allow_escaped_nul => {
                        return Err(TargetError::Invalid("an encoded NUL in the path"));
                    }
                    _ => push_encoded(out, value),
                }
                continue;
            }
            literal => literal,
        };
        match literal {
            b'\\' => backslash(settings, out)?,
            b'#' => return Err(TargetError::Invalid("a fragment in the request target")),
            _ if is_path_char(literal) => out.push(literal),
            _ => push_encoded(out, literal),
        }
    }
    Ok(())
}

fn backslash(settings: &PathNormalization, out: &mut Vec<u8>) -> Result<(), TargetError> {
    match settings.backslash {
        Backslash::Keep => out.push(b'\\'),
        Backslash::Reject => return Err(TargetError::Invalid("a backslash in the path")),
        Backslash::Slash => out.push(b'/'),
    }
    Ok(())
}

/// RFC 3986 §5.2.4 over the segments of `path` (which starts with `/`),
/// except that `..` above the root is an error, not clamped: a client that
/// sends it is probing.
fn remove_dot_segments(
    path: &[u8],
    merge_slashes: bool,
    out: &mut Vec<u8>,
) -> Result<(), TargetError> {
    // `out` holds "/seg/seg/" while segments are added; a trailing slash
    // is taken off at the end unless the last segment asks for one.
    out.push(b'/');
    let mut segments = path[1..].split(|&byte| byte == b'/').peekable();
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            b"." => trailing_slash = last,
            b".." => {
                if out.len() == 1 {
                    return Err(TargetError::Invalid("a dot-segment above the root"));
                }
                out.pop();
                let parent = out.iter().rposition(|&byte| byte == b'/').unwrap_or(0);
                out.truncate(parent + 1);
                trailing_slash = last;
            }
            b"" if last => trailing_slash = true,
            b"" if merge_slashes => {}
            _ => {
                out.extend_from_slice(segment);
                out.push(b'/');
                trailing_slash = false;
            }
        }
    }
    if !trailing_slash && out.len() > 1 {
        out.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized_with(origin: &str, settings: &PathNormalization) -> Result<String, TargetError> {
        let mut out = Vec::new();
        normalize(
            origin.as_bytes(),
            settings,
            &mut Scratch::default(),
            &mut out,
        )?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn normalized(origin: &str) -> Result<String, TargetError> {
        normalized_with(origin, &PathNormalization::default())
    }

    #[test]
    fn forms() {
        assert_eq!(form(b"GET", b"/a?b"), Ok(Form::Origin(b"/a?b")));
        assert_eq!(
            form(b"GET", b"http://Example.com:81/p?q"),
            Ok(Form::Absolute {
                authority: b"Example.com:81",
                origin: b"/p?q",
                https: false,
            })
        );
        assert_eq!(
            form(b"GET", b"HTTPS://h?q"),
            Ok(Form::Absolute {
                authority: b"h",
                origin: b"?q",
                https: true,
            })
        );
        assert_eq!(form(b"OPTIONS", b"*"), Ok(Form::Asterisk));
        assert_eq!(
            form(b"CONNECT", b"example.com:443"),
            Err(TargetError::Connect)
        );
        for (method, target) in [
            ("GET", "*"),
            ("GET", "example.com:443"),
            ("GET", "ftp://example.com/"),
            ("GET", "http:/example.com/"),
            ("GET", "http://"),
            ("GET", "http:///admin"),
            ("GET", "http://user@example.com/"),
            ("GET", "http://exa mple/"),
            ("GET", "http://example.com:80x/"),
            ("GET", "?x"),
            ("GET", "a/b"),
            ("OPTIONS", "**"),
        ] {
            assert!(
                matches!(
                    form(method.as_bytes(), target.as_bytes()),
                    Err(TargetError::Invalid(_))
                ),
                "{method} {target}"
            );
        }
    }

    #[test]
    fn authorities() {
        for valid in [
            "a",
            "a.b-c_d~",
            "a:80",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:80",
            "",
            "x:1",
        ] {
            assert!(is_valid_authority(valid.as_bytes()), "{valid}");
        }
        for invalid in [
            "a b", "a/b", "a@b", "a:", "a:b", "[::1", "[]", "[::1]x", "a:123456", "a\\b", "a?b",
            "a#b", "a:80:81", "[::1]:",
        ] {
            assert!(!is_valid_authority(invalid.as_bytes()), "{invalid}");
        }
    }

    #[test]
    fn the_issue_bypasses_all_become_admin() {
        for bypass in [
            "//admin",
            "/x/../admin",
            "/./admin",
            "/%61dmin",
            "/%2e/admin",
            "/%2E%2E/x/../admin/../admin",
        ] {
            let result = normalized(bypass);
            assert!(
                result.as_deref() == Ok("/admin") || result.is_err(),
                "{bypass}: {result:?}"
            );
        }
        assert_eq!(normalized("/%2e/admin").unwrap(), "/admin");
        assert_eq!(normalized("/x/%2e%2e/admin").unwrap(), "/admin");
    }

    #[test]
    fn normalization_table() {
        let cases = [
            ("/", "/"),
            ("/a", "/a"),
            ("/a/", "/a/"),
            ("/a//b", "/a/b"),
            ("///a", "/a"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("/%7euser", "/~user"),
            ("/%41%42c", "/ABc"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%3fb", "/a%3Fb"),
            ("/a%c3%a9", "/a%C3%A9"),
            ("/a\u{e9}", "/a%C3%A9"),
            ("/a\"b<c>", "/a%22b%3Cc%3E"),
            ("/a?x=%2f&y=..//", "/a?x=%2f&y=..//"),
            ("/a?\u{e9}", "/a?%C3%A9"),
            ("/a?", "/a?"),
            ("/..a/.b/...", "/..a/.b/..."),
            ("/:@!$&'()*+,;=", "/:@!$&'()*+,;="),
        ];
        let keep = PathNormalization {
            escaped_slash: EscapedSlash::Keep,
            ..PathNormalization::default()
        };
        for (input, expected) in cases {
            assert_eq!(
                normalized_with(input, &keep).as_deref(),
                Ok(expected),
                "{input}"
            );
        }
    }

    #[test]
    fn refused_paths() {
        for input in [
            "/..",
            "/a/../..",
            "/%2e%2e",
            "/a/%2E%2E/../x",
            "/%",
            "/%4",
            "/%zz",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/a%00",
            "/a#frag",
            "/a?b#c",
        ] {
            assert!(
                matches!(normalized(input), Err(TargetError::Invalid(_))),
                "{input}: {:?}",
                normalized(input)
            );
        }
    }

    #[test]
    fn settings_change_the_outcome() {
        let decode = PathNormalization {
            escaped_slash: EscapedSlash::Decode,
            backslash: Backslash::Slash,
            allow_escaped_nul: true,
            merge_slashes: false,
            ..PathNormalization::default()
        };
        assert_eq!(normalized_with("/a%2F..%2Fb", &decode).unwrap(), "/b");
        assert_eq!(normalized_with("/a%5Cb\\c", &decode).unwrap(), "/a/b/c");
        assert_eq!(normalized_with("/a//b", &decode).unwrap(), "/a//b");
        assert_eq!(normalized_with("/a//..", &decode).unwrap(), "/a/");
        assert_eq!(normalized_with("/a%00", &decode).unwrap(), "/a%00");
        let keep_backslash = PathNormalization {
            backslash: Backslash::Keep,
            ..PathNormalization::default()
        };
        assert_eq!(
            normalized_with("/a\\..\\b", &keep_backslash).unwrap(),
            "/a\\..\\b"
        );
        let off = PathNormalization {
            enabled: false,
            ..PathNormalization::default()
        };
        assert_eq!(
            normalized_with("//x/../%61?q", &off).unwrap(),
            "//x/../%61?q"
        );
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        let keep = PathNormalization {
            escaped_slash: EscapedSlash::Keep,
            backslash: Backslash::Keep,
            allow_escaped_nul: true,
            ..PathNormalization::default()
        };
        for input in [
            "/a/b/../c//d/./",
            "/%2e%2E/",
            "/a%2f%2F/b",
            "/x\\y",
            "/%7E%7e",
        ] {
            if let Ok(once) = normalized_with(input, &keep) {
                assert_eq!(normalized_with(&once, &keep).unwrap(), once, "{input}");
            }
        }
    }
}
