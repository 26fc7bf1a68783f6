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

/// A response head, read for HTTP/2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Lower-case names, values as they were, without the dropped fields.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// The body came chunked: its bytes are decoded by a `Dechunk`.
    pub chunked: bool,
    /// The head's length in the bytes it was read from.
    pub length: usize,
}

/// Reads the HTTP/1 response head at the start of `bytes`; `None` while it
/// is not all there, or when it does not parse (rsp wrote it, so that is
/// a bug, answered by resetting the stream).
pub fn read_head(bytes: &[u8]) -> Option<Head> {
    let mut fields = [httparse::EMPTY_HEADER; crate::http::MAX_HEADERS];
    let mut response = httparse::Response::new(&mut fields);
    let length = match response.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        _ => return None,
    };
    let status = response.code?;
    let mut chunked = false;
    // Fields the Connection field names are hop-by-hop too.
    let named: Vec<&str> = response
        .headers
        .iter()
        .filter(|field| field.name.eq_ignore_ascii_case("connection"))
        .flat_map(|field| std::str::from_utf8(field.value).unwrap_or("").split(','))
        .map(str::trim)
        .collect();
    let mut out = Vec::with_capacity(response.headers.len());
    for field in response.headers.iter() {
        if field.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
        let dropped = DROPPED
            .iter()
            .chain(named.iter())
            .any(|dropped| field.name.eq_ignore_ascii_case(dropped));
        if !dropped {
            out.push((
                field.name.to_ascii_lowercase().into_bytes(),
                field.value.to_vec(),
            ));
        }
    }
    Some(Head {
        status,
        fields: out,
        chunked,
        length,
    })
}

/// Reads a trailer section as rsp queues it (fields, then an empty line).
pub fn read_trailers(bytes: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut fields = [httparse::EMPTY_HEADER; crate::http::MAX_HEADERS];
    match httparse::parse_headers(bytes, &mut fields) {
        Ok(httparse::Status::Complete((_, fields))) => fields
            .iter()
            .map(|field| {
                (
                    field.name.to_ascii_lowercase().into_bytes(),
                    field.value.to_vec(),
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Takes the chunk framing off a chunked body whose bytes rsp's framer
/// has already checked (so this reads, and does not judge).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Dechunk {
    /// Reading a chunk size's hex digits.
    #[default]
    Size,
    /// Past the digits: extensions, up to the line's LF.
    Line {
        size: u64,
    },
    Data {
        left: u64,
    },
    /// The CRLF after a chunk's data: how many bytes of it are left.
    DataEnd {
        left: u8,
    },
    /// The last chunk's line was read; the trailer section is not body.
    Last,
}

impl Dechunk {
    /// Walks `bytes`; calls `data` with each run of body data, and stops
    /// early once `budget` bytes of data went. Returns the count of
    /// `bytes` walked (framing included) and of data given.
    pub fn walk(
        &mut self,
        bytes: &[u8],
        budget: usize,
        mut data: impl FnMut(&[u8]),
    ) -> (usize, usize) {
        let (mut at, mut given) = (0, 0);
        let mut size = 0u64;
        while at < bytes.len() {
            match *self {
                Dechunk::Size => match (bytes[at] as char).to_digit(16) {
                    Some(digit) => {
                        size = size.saturating_mul(16).saturating_add(u64::from(digit));
                        at += 1;
                    }
                    None => *self = Dechunk::Line { size },
                },
                Dechunk::Line { size: chunk } => {
                    at += 1;
                    if bytes[at - 1] == b'\n' {
                        *self = if chunk == 0 {
                            Dechunk::Last
                        } else {
                            Dechunk::Data { left: chunk }
                        };
                        size = 0;
                    }
                }
                Dechunk::Data { left } => {
                    if given >= budget {
                        break;
                    }
                    let room = (budget - given) as u64;
                    let count = left.min(room).min((bytes.len() - at) as u64) as usize;
                    data(&bytes[at..at + count]);
                    at += count;
                    given += count;
                    let left = left - count as u64;
                    *self = if left == 0 {
                        Dechunk::DataEnd { left: 2 }
                    } else {
                        Dechunk::Data { left }
                    };
                }
                Dechunk::DataEnd { left } => {
                    at += 1;
                    *self = if left <= 1 {
                        Dechunk::Size
                    } else {
                        Dechunk::DataEnd { left: left - 1 }
                    };
                }
                Dechunk::Last => break,
            }
        }
        // Digits read but the line not reached: they are remembered by
        // walking them again next time, so give them back.
        if matches!(self, Dechunk::Size) && size > 0 {
            let digits = bytes[..at]
                .iter()
                .rev()
                .take_while(|byte| byte.is_ascii_hexdigit())
                .count();
            at -= digits;
        }
        (at, given)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_loses_its_connection_fields() {
        let text: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop\r\n\
              Keep-Alive: timeout=5\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nX-Request-Id: a\r\n\r\nbody";
        let head = read_head(text).unwrap();
        assert_eq!(head.status, 200);
        assert!(head.chunked);
        let names: Vec<&[u8]> = head
            .fields
            .iter()
            .map(|(name, _)| name.as_slice())
            .collect();
        assert_eq!(names, [&b"content-type"[..], b"x-request-id"]);
        assert_eq!(head.length, text.len() - b"body".len());
        assert!(read_head(b"HTTP/1.1 200 OK\r\n").is_none());
    }

    fn dechunk_in_steps(body: &[u8], step: usize, budget: usize) -> Vec<u8> {
        let mut dechunk = Dechunk::default();
        let (mut out, mut at) = (Vec::new(), 0);
        let mut end = 0;
        while dechunk != Dechunk::Last {
            end = (end.max(at) + step).min(body.len());
            let (walked, _) =
                dechunk.walk(&body[at..end], budget, |data| out.extend_from_slice(data));
            at += walked;
            if walked == 0 && end == body.len() {
                break;
            }
        }
        out
    }

    #[test]
    fn chunks_lose_their_framing_however_they_are_split() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n";
        for step in 1..body.len() {
            for budget in [1, 3, 100] {
                assert_eq!(
                    dechunk_in_steps(body, step, budget),
                    b"helloabcdefghijklmnopqrstuvwxyz",
                    "step {step} budget {budget}"
                );
            }
        }
    }
}
