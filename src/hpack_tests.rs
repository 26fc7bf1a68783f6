//! The tests of `hpack.rs`.

use super::*;

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn decoded(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
    let mut list = HeaderList::default();
    decoder.decode(block, 1 << 20, 1000, &mut list)?;
    Ok(list
        .iter()
        .map(|(name, value)| {
            (
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            )
        })
        .collect())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// RFC 7541 Appendix C.3 and C.4: the same three requests without and
/// with Huffman coding, each block through the table the last left.
#[test]
fn the_rfc_examples_decode_through_the_table() {
    for blocks in [
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
    ] {
        let mut decoder = Decoder::new(4096);
        let first = decoded(&mut decoder, &hex(blocks[0])).unwrap();
        assert_eq!(
            first,
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        let second = decoded(&mut decoder, &hex(blocks[1])).unwrap();
        assert_eq!(second[3], pairs(&[(":authority", "www.example.com")])[0]);
        assert_eq!(second[4], pairs(&[("cache-control", "no-cache")])[0]);
        let third = decoded(&mut decoder, &hex(blocks[2])).unwrap();
        assert_eq!(
            third,
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value")
            ])
        );
        assert_eq!(decoder.size, 164);
        assert_eq!(decoder.table.len(), 3);
    }
}

#[test]
fn malformed_blocks_are_errors() {
    let mut decoder = Decoder::new(4096);
    for bad in [
        "80",             // index 0
        "ff00",           // an index past the tables
        "41",             // a literal with no value
        "4185f1e3",       // a string longer than the block
        "0f",             // a truncated integer
        "ffffffffffff7f", // an integer too large
        "3fe21f",         // a size update over 4096
        "82 20",          // a size update after a field
        "4181ff",         // Huffman padding longer than 7 bits
        "418180",         // Huffman padding that is not EOS's
        "4184ffffffff",   // EOS in a Huffman string
    ] {
        assert!(decoded(&mut decoder, &hex(bad)).is_err(), "{bad}");
    }
    // A size update at the start is fine, and a 0-size table empties.
    assert!(decoded(&mut decoder, &hex("20 82")).is_ok());
    assert_eq!(decoder.size, 0);
}

#[test]
fn a_bomb_is_decoded_but_not_kept() {
    let mut decoder = Decoder::new(4096);
    // One 4000-byte value into the table, then 1000 references to it.
    let mut block = vec![0x40, 1, b'x'];
    encode_integer(&mut block, 4000, 7, 0);
    block.extend(std::iter::repeat_n(b'v', 4000));
    block.extend(std::iter::repeat_n(0x80 | 62, 1000));
    let mut list = HeaderList::default();
    decoder.decode(&block, 32_768, 128, &mut list).unwrap();
    assert!(list.too_large);
    assert!(list.len() <= 8, "{}", list.len());
    assert!(list.bytes.len() <= 32_768);
}

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
        // An HTTP/1 head's names, in any case, go lower case.
        encode_field(&mut block, b"Content-Type", b"a");
        encode_field(&mut block, b"X-Mixed-Case", b"b");
        let mut decoded = loona_hpack::Decoder::new().decode(&block).unwrap();
        assert_eq!(
            decoded.split_off(decoded.len() - 2),
            [
                (b"content-type".to_vec(), b"a".to_vec()),
                (b"x-mixed-case".to_vec(), b"b".to_vec())
            ]
        );
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
