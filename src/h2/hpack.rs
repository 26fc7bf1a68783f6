//! rsp's HPACK encoder (RFC 7541), for the response heads it sends: every
//! field a literal that is never added to a table (rsp announces a table
//! size of 0 at a connection's first block, so a client holds nothing for
//! it and no table state can drift), names from the static table where
//! it has them. Decoding, the hard half, is `loona-hpack`'s.

/// The static table's names (RFC 7541 Appendix A), index 1 first.
const STATIC_NAMES: [&[u8]; 61] = [
    b":authority",
    b":method",
    b":method",
    b":path",
    b":path",
    b":scheme",
    b":scheme",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b":status",
    b"accept-charset",
    b"accept-encoding",
    b"accept-language",
    b"accept-ranges",
    b"accept",
    b"access-control-allow-origin",
    b"age",
    b"allow",
    b"authorization",
    b"cache-control",
    b"content-disposition",
    b"content-encoding",
    b"content-language",
    b"content-length",
    b"content-location",
    b"content-range",
    b"content-type",
    b"cookie",
    b"date",
    b"etag",
    b"expect",
    b"expires",
    b"from",
    b"host",
    b"if-match",
    b"if-modified-since",
    b"if-none-match",
    b"if-range",
    b"if-unmodified-since",
    b"last-modified",
    b"link",
    b"location",
    b"max-forwards",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"range",
    b"referer",
    b"refresh",
    b"retry-after",
    b"server",
    b"set-cookie",
    b"strict-transport-security",
    b"transfer-encoding",
    b"user-agent",
    b"vary",
    b"via",
    b"www-authenticate",
];

/// The statuses the static table holds whole, with their index.
const STATIC_STATUSES: [(u16, u8); 7] = [
    (200, 8),
    (204, 9),
    (206, 10),
    (304, 11),
    (400, 12),
    (404, 13),
    (500, 14),
];

/// An integer with an `prefix`-bit prefix, the first byte's high bits
/// being `flags` (RFC 7541 §5.1).
pub fn encode_integer(out: &mut Vec<u8>, value: usize, prefix: u8, flags: u8) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    let mut rest = value - max;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A string literal, not Huffman-coded.
fn encode_string(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_integer(out, bytes.len(), 7, 0);
    out.extend_from_slice(bytes);
}

pub fn encode_status(out: &mut Vec<u8>, status: u16) {
    if let Some((_, index)) = STATIC_STATUSES.iter().find(|(known, _)| *known == status) {
        out.push(0x80 | index);
        return;
    }
    // Literal without indexing, name :status (index 8).
    encode_integer(out, 8, 4, 0);
    encode_string(out, status.to_string().as_bytes());
}

/// A field as a literal without indexing (§6.2.2).
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match STATIC_NAMES.iter().position(|known| *known == name) {
        Some(index) => encode_integer(out, index + 1, 4, 0),
        None => {
            out.push(0);
            encode_string(out, name);
        }
    }
    encode_string(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_rsp_encodes_a_decoder_reads_back() {
        let fields: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"content-type".to_vec(), b"text/html".to_vec()),
            (b"x-long".to_vec(), vec![b'a'; 300]),
            (b"x-request-id".to_vec(), b"abc".to_vec()),
        ];
        for status in [200, 204, 418, 503] {
            let mut block = vec![0x20];
            encode_status(&mut block, status);
            for (name, value) in &fields {
                encode_field(&mut block, name, value);
            }
            let decoded = loona_hpack::Decoder::new().decode(&block).unwrap();
            assert_eq!(
                decoded[0],
                (b":status".to_vec(), status.to_string().into_bytes())
            );
            assert_eq!(&decoded[1..], &fields[..]);
        }
    }

    #[test]
    fn integers_follow_the_rfc_examples() {
        let mut out = Vec::new();
        encode_integer(&mut out, 10, 5, 0);
        encode_integer(&mut out, 1337, 5, 0);
        encode_integer(&mut out, 42, 8, 0);
        assert_eq!(out, [10, 31, 154, 10, 42]);
    }
}
