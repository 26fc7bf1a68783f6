//! Response heads and trailer sections as the exchange gives them to its
//! client's codec: a status and fields, written once, in the client's
//! wire form. For HTTP/1.1 that is the text itself; for HTTP/2 it is a
//! record of the status, the body's framing and the HPACK block, which
//! the stream frames as it sends it. Nothing rsp writes is read back as
//! HTTP/1.1 text to learn what it said.

use crate::hpack;

/// A header field held by value (a trailer a codec read): name, value.
pub type Field = (Vec<u8>, Vec<u8>);

/// The codec a message is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wire {
    #[default]
    Http1,
    Http2,
}

/// Fields that describe one HTTP/1.1 connection, never sent in HTTP/2
/// (RFC 9113 §8.2.2). rsp writes no others: backends' hop-by-hop fields,
/// and those their `Connection` names, are dropped before a writer sees
/// them, and scripts may not set any.
const NOT_IN_HTTP2: &[&[u8]] = &[
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"upgrade",
];

/// An HTTP/2 record: kind, status (2 bytes), chunked, block length (4).
pub const RECORD_HEADER: usize = 8;

const KIND_HEAD: u8 = 1;
const KIND_TRAILERS: u8 = 2;

/// Where a head goes: bytes for a client of `wire`.
pub struct Out<'a> {
    pub wire: Wire,
    pub bytes: &'a mut Vec<u8>,
}

impl<'a> Out<'a> {
    pub fn http1(bytes: &'a mut Vec<u8>) -> Out<'a> {
        Out {
            wire: Wire::Http1,
            bytes,
        }
    }

    pub fn response(self, status: u16, reason: &str) -> HeadWriter<'a> {
        HeadWriter::response(self.wire, self.bytes, status, reason)
    }

    pub fn trailers(self) -> HeadWriter<'a> {
        HeadWriter::trailers(self.wire, self.bytes)
    }
}

/// One response head or trailer section being written into `out`.
pub struct HeadWriter<'a> {
    wire: Wire,
    out: &'a mut Vec<u8>,
    /// HTTP/2: where the record begins.
    at: usize,
}

impl<'a> HeadWriter<'a> {
    /// A response head of `status` (`reason` is HTTP/1.1's only).
    pub fn response(wire: Wire, out: &'a mut Vec<u8>, status: u16, reason: &str) -> Self {
        let at = out.len();
        match wire {
            Wire::Http1 => write_status_line(out, status, reason),
            Wire::Http2 => {
                out.extend_from_slice(&[KIND_HEAD, 0, 0, 0, 0, 0, 0, 0]);
                out[at + 1..at + 3].copy_from_slice(&status.to_be_bytes());
                hpack::encode_status(out, status);
            }
        }
        HeadWriter { wire, out, at }
    }

    /// A chunked body's trailer section.
    pub fn trailers(wire: Wire, out: &'a mut Vec<u8>) -> Self {
        let at = out.len();
        if wire == Wire::Http2 {
            out.extend_from_slice(&[KIND_TRAILERS, 0, 0, 0, 0, 0, 0, 0]);
        }
        HeadWriter { wire, out, at }
    }

    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        match self.wire {
            Wire::Http1 => {
                self.out.extend_from_slice(name);
                self.out.extend_from_slice(b": ");
                self.out.extend_from_slice(value);
                self.out.extend_from_slice(b"\r\n");
            }
            Wire::Http2 => {
                if !NOT_IN_HTTP2
                    .iter()
                    .any(|dropped| name.eq_ignore_ascii_case(dropped))
                {
                    hpack::encode_field(self.out, name, value);
                }
            }
        }
    }

    /// HTTP/1.1's word on the client connection's persistence
    /// (`Connection: close`, or `keep-alive` to an HTTP/1.0 client);
    /// HTTP/2 has none.
    pub fn connection(&mut self, value: &[u8]) {
        if self.wire == Wire::Http1 {
            self.field(b"Connection", value);
        }
    }

    /// The head is complete; `chunked`: the body that follows it comes in
    /// HTTP/1.1's chunked coding (which HTTP/2 takes off).
    pub fn end(self, chunked: bool) {
        match self.wire {
            Wire::Http1 => self.out.extend_from_slice(b"\r\n"),
            Wire::Http2 => {
                let length = self.out.len() - self.at - RECORD_HEADER;
                let header = &mut self.out[self.at..self.at + RECORD_HEADER];
                header[3] = u8::from(chunked);
                // A head is bounded far below 4 GiB (`max_response_header_bytes`,
                // the reply's fields).
                header[4..].copy_from_slice(&(length as u32).to_be_bytes());
            }
        }
    }
}

/// An HTTP/2 record, read back by the stream that sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// A trailer section (`status` is 0), not a head.
    pub trailers: bool,
    pub status: u16,
    pub chunked: bool,
    /// The record's length: its header and block.
    pub length: usize,
}

impl Record {
    /// The record at the start of `bytes`, and its HPACK block; `None`
    /// when `bytes` do not start with a whole one (a bug in rsp).
    pub fn read(bytes: &[u8]) -> Option<(Record, &[u8])> {
        let header = bytes.get(..RECORD_HEADER)?;
        let block = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let trailers = match header[0] {
            KIND_HEAD => false,
            KIND_TRAILERS => true,
            _ => return None,
        };
        let record = Record {
            trailers,
            status: u16::from_be_bytes([header[1], header[2]]),
            chunked: header[3] == 1,
            length: RECORD_HEADER + block,
        };
        Some((record, bytes.get(RECORD_HEADER..record.length)?))
    }
}

/// `value` in decimal digits, written into `out`.
pub fn decimal(mut value: u64, out: &mut [u8; 20]) -> &[u8] {
    let mut at = out.len();
    loop {
        at -= 1;
        out[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return &out[at..];
        }
    }
}

/// `HTTP/1.1 200 OK`, without the formatting machinery: this runs for
/// every response.
fn write_status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    if (100..1000).contains(&status) {
        let digits = [status / 100, status / 10 % 10, status % 10];
        out.extend(digits.iter().map(|&digit| b'0' + digit as u8));
    } else {
        out.extend_from_slice(status.to_string().as_bytes());
    }
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for value in [0, 7, 10, 65_535, u64::MAX] {
            assert_eq!(decimal(value, &mut [0; 20]), value.to_string().as_bytes());
        }
    }

    #[test]
    fn http1_heads_are_text() {
        let mut out = Vec::new();
        let mut head = HeadWriter::response(Wire::Http1, &mut out, 200, "OK");
        head.field(b"Content-Length", b"5");
        head.connection(b"close");
        head.end(false);
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        );
        let mut out = Vec::new();
        let mut trailers = HeadWriter::trailers(Wire::Http1, &mut out);
        trailers.field(b"X-Sum", b"1");
        trailers.end(false);
        assert_eq!(out, b"X-Sum: 1\r\n\r\n");
    }

    #[test]
    fn http2_heads_are_records_of_hpack_blocks() {
        let mut out = b"before".to_vec();
        let mut head = HeadWriter::response(Wire::Http2, &mut out, 404, "Not Found");
        head.field(b"Content-Type", b"text/plain");
        head.field(b"Transfer-Encoding", b"chunked");
        head.connection(b"close");
        head.end(true);
        let mut trailers = HeadWriter::trailers(Wire::Http2, &mut out);
        trailers.field(b"X-Sum", b"1");
        trailers.end(false);
        let (record, block) = Record::read(&out[6..]).unwrap();
        assert_eq!(
            (record.trailers, record.status, record.chunked),
            (false, 404, true)
        );
        let fields = loona_hpack::Decoder::new().decode(block).unwrap();
        assert_eq!(
            fields,
            [
                (b":status".to_vec(), b"404".to_vec()),
                (b"content-type".to_vec(), b"text/plain".to_vec())
            ]
        );
        let (record, block) = Record::read(&out[6 + record.length..]).unwrap();
        assert!(record.trailers);
        let fields = loona_hpack::Decoder::new().decode(block).unwrap();
        assert_eq!(fields, [(b"x-sum".to_vec(), b"1".to_vec())]);
        assert_eq!(Record::read(&out[..6]), None);
        assert_eq!(Record::read(&out[6..10]), None);
    }
}
