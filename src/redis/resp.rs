//! RESP2, the Redis protocol: commands written as arrays of bulk strings,
//! replies decoded by `redis-protocol` (a sans-IO decoder of byte slices:
//! no runtime, no socket, so it fits the event loop). Before a reply is
//! decoded, `extent` walks it without recursion, so a hostile server's
//! reply nested a million deep is refused, not a stack overflow, and an
//! incomplete one costs a scan, not a decode.

pub use redis_protocol::resp2::types::OwnedFrame as Reply;

use crate::message::decimal;

/// The deepest reply rsp takes: what it asks for is at most an array of
/// arrays (a pub/sub message, a script's result).
pub const MAX_DEPTH: usize = 4;
/// The most elements an array in a reply may announce.
const MAX_ELEMENTS: i64 = 1 << 20;

/// Appends `args` as one command.
pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut digits = [0; 20];
    out.push(b'*');
    out.extend_from_slice(decimal(args.len() as u64, &mut digits));
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(decimal(arg.len() as u64, &mut digits));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Why a reply is refused: the connection cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError(pub String);

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a scan of an incomplete reply stopped: the next element's
/// offset and the arrays still open, so more bytes resume it instead of
/// reading the reply again from its start.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    at: usize,
    /// Elements still to read at each open array.
    open: Vec<i64>,
}

/// The length of the whole reply at the start of `bytes`; `None` while
/// it is not all there.
pub fn extent(bytes: &[u8]) -> Result<Option<usize>, ReplyError> {
    extent_from(bytes, &mut Scan::default())
}

/// `extent`, resumed from `scan` (of a prefix of `bytes`); the scan is
/// left where it stopped, and starts over once a reply is complete.
pub fn extent_from(bytes: &[u8], scan: &mut Scan) -> Result<Option<usize>, ReplyError> {
    loop {
        let at = scan.at;
        let Some(line_end) = find_crlf(&bytes[at..]) else {
            return Ok(None);
        };
        if bytes[at + line_end] != b'\r' {
            return Err(ReplyError("a line ended by a bare LF".into()));
        }
        let line = &bytes[at..at + line_end];
        let mut next = at + line_end + 2;
        let (&kind, rest) = line
            .split_first()
            .ok_or_else(|| ReplyError("an empty line".into()))?;
        match kind {
            b'+' | b'-' | b':' => {}
            b'$' => {
                let length = number(rest)?;
                if length >= 0 {
                    let end = next + length as usize + 2;
                    if bytes.len() < end {
                        return Ok(None);
                    }
                    if &bytes[end - 2..end] != b"\r\n" {
                        return Err(ReplyError("a bulk string without its CRLF".into()));
                    }
                    next = end;
                }
            }
            b'*' => {
                let count = number(rest)?;
                if count > MAX_ELEMENTS {
                    return Err(ReplyError(format!("an array of {count} elements")));
                }
                if count > 0 {
                    if scan.open.len() == MAX_DEPTH {
                        return Err(ReplyError(format!("arrays nested over {MAX_DEPTH} deep")));
                    }
                    scan.open.push(count);
                    scan.at = next;
                    continue;
                }
            }
            other => {
                return Err(ReplyError(format!("a reply of type {:?}", other as char)));
            }
        }
        scan.at = next;
        // One element is complete: close the arrays it completes.
        loop {
            match scan.open.last_mut() {
                None => {
                    *scan = Scan::default();
                    return Ok(Some(next));
                }
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    scan.open.pop();
                }
            }
        }
    }
}

/// Decodes the whole reply at the start of `bytes` (its length known from
/// `extent`).
pub fn decode(bytes: &[u8]) -> Result<Reply, ReplyError> {
    match redis_protocol::resp2::decode::decode(bytes) {
        Ok(Some((reply, _))) => Ok(reply),
        Ok(None) => Err(ReplyError("a reply cut short".into())),
        Err(error) => Err(ReplyError(format!("{error:?}"))),
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    let newline = bytes.iter().position(|&byte| byte == b'\n')?;
    match newline.checked_sub(1) {
        Some(cr) if bytes[cr] == b'\r' => Some(cr),
        // A bare LF: the line is malformed; `number` or the kind says so.
        _ => Some(newline),
    }
}

fn number(digits: &[u8]) -> Result<i64, ReplyError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .filter(|&value| value >= -1)
        .ok_or_else(|| ReplyError("a length that is not a number".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"SELECT", b"2"]);
        assert_eq!(out, b"*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n");
    }

    #[test]
    fn replies_are_measured_before_they_are_decoded() {
        let replies: [&[u8]; 7] = [
            b"+OK\r\n",
            b"-ERR wrong\r\n",
            b":42\r\n",
            b"$5\r\nhello\r\n",
            b"$-1\r\n",
            b"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
            b"*0\r\n",
        ];
        for reply in replies {
            let mut bytes = reply.to_vec();
            bytes.extend_from_slice(b"+NEXT\r\n");
            assert_eq!(extent(&bytes), Ok(Some(reply.len())), "{reply:?}");
            for cut in 0..reply.len() {
                assert_eq!(extent(&reply[..cut]), Ok(None), "{reply:?} cut at {cut}");
            }
            decode(&bytes[..reply.len()]).unwrap();
        }
        assert_eq!(
            decode(b"*2\r\n$1\r\na\r\n:7\r\n"),
            Ok(Reply::Array(vec![
                Reply::BulkString(b"a".to_vec()),
                Reply::Integer(7)
            ]))
        );
    }

    #[test]
    fn a_scan_resumes_where_it_stopped() {
        let reply = b"*3\r\n$3\r\nabc\r\n*2\r\n:1\r\n:2\r\n+OK\r\n";
        let mut scan = Scan::default();
        for cut in 1..reply.len() {
            assert_eq!(
                extent_from(&reply[..cut], &mut scan),
                Ok(None),
                "cut at {cut}"
            );
        }
        assert_eq!(extent_from(reply, &mut scan), Ok(Some(reply.len())));
        assert_eq!(scan.at, 0, "the scan starts over after a reply");
    }

    #[test]
    fn hostile_replies_are_refused() {
        let deep = b"*1\r\n".repeat(100_000);
        assert!(extent(&deep).is_err());
        assert!(extent(b"*99999999999\r\n").is_err());
        assert!(extent(b"$x\r\n").is_err());
        assert!(extent(b"$3\r\nabcXY").is_err());
        assert!(extent(b"?what\r\n").is_err());
        assert!(extent(b"$-7\r\n").is_err());
        assert!(extent(b"+OK\n").is_err());
    }
}
