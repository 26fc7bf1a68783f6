//! An HTTP/1.1 response, as rsp writes it for its client, turned into
//! what HTTP/2 carries: the head's fields for HPACK (connection-specific
//! ones dropped, §8.2.2), and a chunked body's data without its chunk
//! framing.

/// Fields that describe one HTTP/1.1 connection, never sent in HTTP/2.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Fields a head may have before reading it takes the heap: the most a
/// backend may send (`MAX_HEADERS`) and room for what rsp adds to them
/// (`X-Request-Id`, a `respond()` hook's). The bound on fields is the
/// one on what backends send, where they are parsed first; rsp's own
/// HTTP/1 answer, read again here, may have any number.
const STACK_FIELDS: usize = crate::http::MAX_HEADERS + 16;

/// A response head's status line and framing, read for HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// The body came chunked: its bytes are decoded (`framing::Chunked`).
    pub chunked: bool,
    /// The head's length in the bytes it was read from.
    pub length: usize,
}

/// The fields of a head or trailer section that HTTP/2 carries: all but
/// the connection-specific ones (§8.2.2) and those `Connection` names.
/// Names as they came: the encoder writes them lower case.
#[derive(Clone)]
pub struct Fields<'h, 'b> {
    all: &'h [httparse::Header<'b>],
    at: usize,
    /// The values of the first `Connection` fields (rsp writes one at most);
    /// `None` past them: then each field looks at all.
    connection: Option<[&'b [u8]; CONNECTION_FIELDS]>,
}

/// `Connection` fields whose values `Fields` keeps at hand.
const CONNECTION_FIELDS: usize = 2;

impl<'h, 'b> Fields<'h, 'b> {
    fn new(all: &'h [httparse::Header<'b>]) -> Fields<'h, 'b> {
        let mut values = [&b""[..]; CONNECTION_FIELDS];
        let mut count = 0;
        for field in all
            .iter()
            .filter(|field| field.name.eq_ignore_ascii_case("connection"))
        {
            // A value naming only what is dropped anyway (rsp's own
            // `keep-alive` or `close`) names nothing more.
            let names_more = crate::http::tokens(field.value).any(|named| {
                !named.eq_ignore_ascii_case(b"close")
                    && !DROPPED
                        .iter()
                        .any(|dropped| named.eq_ignore_ascii_case(dropped.as_bytes()))
            });
            if !names_more {
                continue;
            }
            if let Some(value) = values.get_mut(count) {
                *value = field.value;
            }
            count += 1;
        }
        Fields {
            all,
            at: 0,
            connection: (count <= CONNECTION_FIELDS).then_some(values),
        }
    }

    fn dropped(&self, name: &str) -> bool {
        let named = |value: &[u8]| {
            crate::http::tokens(value).any(|named| named.eq_ignore_ascii_case(name.as_bytes()))
        };
        DROPPED
            .iter()
            .any(|dropped| name.eq_ignore_ascii_case(dropped))
            || match &self.connection {
                Some(values) => values.iter().any(|value| named(value)),
                None => self
                    .all
                    .iter()
                    .filter(|field| field.name.eq_ignore_ascii_case("connection"))
                    .any(|field| named(field.value)),
            }
    }
}

impl<'b> Iterator for Fields<'_, 'b> {
    type Item = (&'b [u8], &'b [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while let Some(field) = self.all.get(self.at) {
            self.at += 1;
            if !self.dropped(field.name) {
                return Some((field.name.as_bytes(), field.value));
            }
        }
        None
    }
}

/// Lines of the head at the start of `bytes`: room for all its fields.
fn lines(bytes: &[u8]) -> usize {
    let end = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map_or(bytes.len(), |at| at + 4);
    bytes[..end].iter().filter(|&&byte| byte == b'\n').count()
}

fn parse_head<'b>(
    bytes: &'b [u8],
    fields: &mut [httparse::Header<'b>],
) -> Result<Option<(Head, usize)>, httparse::Error> {
    let mut response = httparse::Response::new(fields);
    let httparse::Status::Complete(length) = response.parse(bytes)? else {
        return Ok(None);
    };
    let Some(status) = response.code else {
        return Ok(None);
    };
    let chunked = response
        .headers
        .iter()
        .any(|field| field.name.eq_ignore_ascii_case("transfer-encoding"));
    let head = Head {
        status,
        chunked,
        length,
    };
    Ok(Some((head, response.headers.len())))
}

/// Reads the HTTP/1 response head at the start of `bytes` and gives it,
/// with the fields HTTP/2 carries, to `then`. `None` while it is not all
/// there, or when it does not parse (rsp wrote it, so that is a bug,
/// answered by resetting the stream). Allocates nothing unless the head
/// has more than `STACK_FIELDS` fields.
pub fn read_head<T>(bytes: &[u8], then: impl FnOnce(Head, Fields<'_, '_>) -> T) -> Option<T> {
    let mut fields = [httparse::EMPTY_HEADER; STACK_FIELDS];
    match parse_head(bytes, &mut fields) {
        Ok(parsed) => {
            let (head, count) = parsed?;
            Some(then(head, Fields::new(&fields[..count])))
        }
        Err(httparse::Error::TooManyHeaders) => {
            let mut fields = vec![httparse::EMPTY_HEADER; lines(bytes)];
            let (head, count) = parse_head(bytes, &mut fields).ok()??;
            Some(then(head, Fields::new(&fields[..count])))
        }
        Err(_) => None,
    }
}

/// Reads a trailer section as rsp queues it (fields, then an empty line)
/// and gives its fields to `then`; `None` if it does not parse.
pub fn read_trailers<T>(bytes: &[u8], then: impl FnOnce(Fields<'_, '_>) -> T) -> Option<T> {
    let mut fields = [httparse::EMPTY_HEADER; STACK_FIELDS];
    match httparse::parse_headers(bytes, &mut fields) {
        Ok(httparse::Status::Complete((_, parsed))) => Some(then(Fields::new(parsed))),
        Err(httparse::Error::TooManyHeaders) => {
            let mut fields = vec![httparse::EMPTY_HEADER; lines(bytes)];
            match httparse::parse_headers(bytes, &mut fields) {
                Ok(httparse::Status::Complete((_, parsed))) => Some(then(Fields::new(parsed))),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8]) -> Option<(Head, Vec<(String, String)>)> {
        read_head(text, |head, fields| {
            let fields = fields
                .map(|(name, value)| {
                    (
                        String::from_utf8_lossy(name).into_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    )
                })
                .collect();
            (head, fields)
        })
    }

    #[test]
    fn a_head_loses_its_connection_fields() {
        let text: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\n\
              Keep-Alive: timeout=5\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nX-Request-Id: a\r\n\r\nbody";
        let (head, fields) = read(text).unwrap();
        assert_eq!(head.status, 200);
        assert!(head.chunked);
        let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["Content-Type", "X-Request-Id"]);
        assert_eq!(head.length, text.len() - b"body".len());
        assert!(read(b"HTTP/1.1 200 OK\r\n").is_none());
        // Past the Connection fields kept at hand, all are looked at.
        let text: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: a\r\nConnection: b\r\nConnection: c\r\n\
              A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        let (_, fields) = read(text).unwrap();
        assert_eq!(fields, [("D".to_owned(), "4".to_owned())]);
    }

    #[test]
    fn a_head_may_have_any_number_of_fields() {
        for count in [
            0,
            1,
            crate::http::MAX_HEADERS,
            STACK_FIELDS,
            STACK_FIELDS + 1,
            1000,
        ] {
            let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
            for index in 0..count {
                text.extend_from_slice(format!("X-Field-{index}: {index}\r\n").as_bytes());
            }
            text.extend_from_slice(b"\r\nbody\r\n\r\n\n\n");
            let (head, fields) = read(&text).unwrap_or_else(|| panic!("{count} fields"));
            assert_eq!(fields.len(), count);
            assert_eq!(head.length, text.len() - b"body\r\n\r\n\n\n".len());
            if count > 0 {
                assert_eq!(fields[count - 1].1, (count - 1).to_string());
            }
            let trailers = &text[b"HTTP/1.1 200 OK\r\n".len()..];
            let read = read_trailers(trailers, |fields| fields.count());
            assert_eq!(read, Some(count), "{count} trailer fields");
        }
    }
}
