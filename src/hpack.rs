//! HPACK (RFC 7541), both halves, sans IO.
//!
//! Encoding, for the response heads rsp sends: every field a literal that
//! is never added to a table (rsp announces a table size of 0 at a
//! connection's first block, so a client holds nothing for it and no
//! table state can drift), names from the static table where it has them.
//!
//! Decoding, for the request heads clients send: the dynamic table bounded
//! by what rsp announced (4096 bytes), the decoded list bounded by the
//! caller (an HPACK bomb costs decoding time only: past the bound nothing
//! is kept), Huffman strings decoded a nibble at a time by a state
//! machine of the code's tree (the code of Appendix B is canonical: the
//! tree follows from its lengths, built at compile time), and every
//! malformed input an error, never a panic. The `loona-hpack`
//! crate (sozu's) was tried first: it builds a hash map of the whole
//! Huffman code for every string it decodes, a third of rsp's CPU on
//! small HTTP/2 requests; it stays as the reference the tests check this
//! decoder against.

/// The static table's names (RFC 7541 Appendix A), index 1 first; the
/// entries that also have a value are `STATIC_VALUES`.
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

/// The static table's values, by index: the entries not here have none.
const STATIC_VALUES: [(usize, &[u8]); 14] = [
    (2, b"GET"),
    (3, b"POST"),
    (4, b"/"),
    (5, b"/index.html"),
    (6, b"http"),
    (7, b"https"),
    (8, b"200"),
    (9, b"204"),
    (10, b"206"),
    (11, b"304"),
    (12, b"400"),
    (13, b"404"),
    (14, b"500"),
    (16, b"gzip, deflate"),
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

/// A field as a literal without indexing (§6.2.2), its name lower case
/// (HTTP/2 field names are, §8.2.1; an HTTP/1 head's need not be).
pub fn encode_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    match STATIC_NAMES
        .iter()
        .position(|known| known.eq_ignore_ascii_case(name))
    {
        Some(index) => encode_integer(out, index + 1, 4, 0),
        None => {
            out.push(0);
            encode_integer(out, name.len(), 7, 0);
            out.extend(name.iter().map(u8::to_ascii_lowercase));
        }
    }
    encode_string(out, value);
}

/// The Huffman code's lengths (RFC 7541 Appendix B), symbols 0 to 255,
/// then EOS (256). The code is canonical: codes of each length are
/// consecutive, in symbol order, after the shorter ones.
pub const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const MAX_CODE: usize = 30;
const EOS: u16 = 256;

/// The code's tree: 256 internal nodes (0 the root, as every complete
/// binary tree with 257 leaves has), each child a node (below 256) or a
/// leaf (256 + its symbol).
const fn tree() -> [[u16; 2]; 256] {
    // The canonical codes: those of each length consecutive, in symbol
    // order, after the shorter ones.
    let mut count = [0u32; MAX_CODE + 1];
    let mut symbol = 0;
    while symbol < 257 {
        count[HUFFMAN_LENGTHS[symbol] as usize] += 1;
        symbol += 1;
    }
    let mut next_code = [0u32; MAX_CODE + 1];
    let (mut code, mut length) = (0u32, 1);
    while length <= MAX_CODE {
        code = (code + count[length - 1]) << 1;
        next_code[length] = code;
        length += 1;
    }
    let mut tree = [[0u16; 2]; 256];
    let mut nodes = 1;
    let mut symbol = 0;
    while symbol < 257 {
        let length = HUFFMAN_LENGTHS[symbol] as usize;
        let code = next_code[length];
        next_code[length] += 1;
        let mut node = 0;
        let mut bit = length;
        while bit > 0 {
            bit -= 1;
            let branch = ((code >> bit) & 1) as usize;
            if bit == 0 {
                tree[node][branch] = 256 + symbol as u16;
            } else {
                if tree[node][branch] == 0 {
                    tree[node][branch] = nodes;
                    nodes += 1;
                }
                node = tree[node][branch] as usize;
            }
        }
        symbol += 1;
    }
    tree
}

/// What decoding four bits from a node does: the node it ends at, the
/// symbol it completed (`NO_SYMBOL` if none: codes are at least five bits
/// long, so four bits complete one at most), or EOS, which a string may
/// not hold.
#[derive(Clone, Copy)]
struct Step {
    next: u8,
    symbol: u16,
}

const NO_SYMBOL: u16 = u16::MAX;

/// The decoder's state machine, a nibble at a time (as nghttp2's): one
/// table lookup per four bits, whatever the codes' lengths; `accepts`: a
/// string may end at the node (its bits since the last symbol are a
/// prefix of EOS, all ones, shorter than a byte: §5.2's padding).
struct HuffmanMachine {
    steps: [[Step; 16]; 256],
    accepts: [bool; 256],
}

const fn huffman_machine() -> HuffmanMachine {
    let tree = tree();
    let mut decoder = HuffmanMachine {
        steps: [[Step {
            next: 0,
            symbol: NO_SYMBOL,
        }; 16]; 256],
        accepts: [false; 256],
    };
    let mut state = 0;
    while state < 256 {
        let mut nibble = 0;
        while nibble < 16 {
            let (mut node, mut symbol, mut bit) = (state, NO_SYMBOL, 4);
            while bit > 0 {
                bit -= 1;
                let child = tree[node][(nibble >> bit) & 1];
                if child >= 256 {
                    symbol = child - 256;
                    node = 0;
                    if symbol == EOS {
                        break;
                    }
                } else {
                    node = child as usize;
                }
            }
            decoder.steps[state][nibble] = Step {
                next: node as u8,
                symbol,
            };
            nibble += 1;
        }
        state += 1;
    }
    // The all-ones path from the root, seven bits deep at most.
    let (mut node, mut depth) = (0, 0);
    while depth <= 7 {
        decoder.accepts[node] = true;
        node = tree[node][1] as usize;
        depth += 1;
    }
    decoder
}

static HUFFMAN: HuffmanMachine = huffman_machine();

/// Why a header block cannot be decoded: a connection error
/// (COMPRESSION_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HpackError(pub &'static str);

/// Decodes a Huffman-coded string onto `out`.
fn huffman_decode(input: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    let machine = &HUFFMAN;
    let mut state = 0;
    for &byte in input {
        for nibble in [byte >> 4, byte & 15] {
            let step = machine.steps[state][nibble as usize];
            match step.symbol {
                NO_SYMBOL => {}
                EOS => return Err(HpackError("EOS in a Huffman string")),
                symbol => out.push(symbol as u8),
            }
            state = step.next as usize;
        }
    }
    if !machine.accepts[state] {
        return Err(HpackError("bad Huffman padding"));
    }
    Ok(())
}

/// Reads an integer with a `prefix`-bit prefix (§5.1); the value and the
/// bytes it took.
fn decode_integer(input: &[u8], prefix: u8) -> Result<(usize, usize), HpackError> {
    let first = *input.first().ok_or(HpackError("a truncated integer"))?;
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok((value, 1));
    }
    for (at, &byte) in input.iter().enumerate().skip(1) {
        // Four continuation bytes are 2^28 on top of the prefix: more than
        // any length or index a block may carry.
        if at > 4 {
            return Err(HpackError("an integer too large"));
        }
        value += usize::from(byte & 0x7f) << (7 * (at - 1));
        if byte & 0x80 == 0 {
            return Ok((value, at + 1));
        }
    }
    Err(HpackError("a truncated integer"))
}

/// Reads a string literal (§5.2) onto `out`; the bytes it took.
fn decode_string(input: &[u8], out: &mut Vec<u8>) -> Result<usize, HpackError> {
    let huffman = input.first().is_some_and(|byte| byte & 0x80 != 0);
    let (length, used) = decode_integer(input, 7)?;
    let bytes = input
        .get(used..used + length)
        .ok_or(HpackError("a string longer than its block"))?;
    if huffman {
        huffman_decode(bytes, out)?;
    } else {
        out.extend_from_slice(bytes);
    }
    Ok(used + length)
}

/// A decoded header list: every name and value in one buffer.
#[derive(Debug, Default)]
pub struct HeaderList {
    bytes: Vec<u8>,
    /// (start, name length, value length) of each field in `bytes`.
    fields: Vec<(usize, usize, usize)>,
    /// Over the bound the decoder was given: the fields past it were not
    /// kept (the block was still decoded whole, to keep the table in step).
    pub too_large: bool,
}

impl HeaderList {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.fields.clear();
        self.too_large = false;
    }

    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone + '_ {
        self.fields.iter().map(|&(start, name, value)| {
            let name_end = start + name;
            (
                &self.bytes[start..name_end],
                &self.bytes[name_end..name_end + value],
            )
        })
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// The names' and values' bytes it holds.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The storage it holds.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
            + self.fields.capacity() * std::mem::size_of::<(usize, usize, usize)>()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// A dynamic table entry: a name and its value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// The decoder of one connection: its dynamic table.
pub struct Decoder {
    /// Newest first: index 62 is the front.
    table: std::collections::VecDeque<Entry>,
    /// The table's size as §4.1 counts it (32 bytes an entry on top).
    size: usize,
    /// The size the client last set, at most `limit`.
    max_size: usize,
    /// The size rsp announced (SETTINGS_HEADER_TABLE_SIZE).
    limit: usize,
    /// Scratch for a field's name and value before they are stored.
    name: Vec<u8>,
    value: Vec<u8>,
}

impl Decoder {
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            table: std::collections::VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
            name: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Gives back scratch storage a large field grew.
    pub fn shed(&mut self) {
        for scratch in [&mut self.name, &mut self.value] {
            if scratch.capacity() > 1024 {
                *scratch = Vec::new();
            }
        }
    }

    /// The entry at `index` of the static and dynamic tables (§2.3.3).
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        match index {
            0 => Err(HpackError("index 0")),
            1..=61 => {
                let value = STATIC_VALUES
                    .iter()
                    .find(|(at, _)| *at == index)
                    .map_or(&b""[..], |(_, value)| value);
                Ok((STATIC_NAMES[index - 1], value))
            }
            _ => self
                .table
                .get(index - 62)
                .map(|(name, value)| (&name[..], &value[..]))
                .ok_or(HpackError("an index past the table")),
        }
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let Some((name, value)) = self.table.pop_back() else {
                break;
            };
            self.size -= name.len() + value.len() + 32;
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + 32;
        if size > self.max_size {
            // Larger than the table: it empties it (§4.4).
            self.evict_to(0);
            return;
        }
        self.evict_to(self.max_size - size);
        self.table.push_front((name.into(), value.into()));
        self.size += size;
    }

    /// Decodes one header block into `list` (cleared first), keeping no
    /// more than `max_list_size` of it as SETTINGS_MAX_HEADER_LIST_SIZE
    /// counts (names, values and 32 bytes a field) nor more than
    /// `max_fields` fields.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        max_fields: usize,
        list: &mut HeaderList,
    ) -> Result<(), HpackError> {
        list.clear();
        let (mut at, mut list_size, mut fields_seen) = (0, 0usize, false);
        while at < block.len() {
            let first = block[at];
            let rest = &block[at..];
            let (index, used, indexing) = if first & 0x80 != 0 {
                let (index, used) = decode_integer(rest, 7)?;
                let (name, value) = self.entry(index)?;
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                keep(list, name, value, list_size > max_list_size, max_fields);
                at += used;
                fields_seen = true;
                continue;
            } else if first & 0x40 != 0 {
                let (index, used) = decode_integer(rest, 6)?;
                (index, used, true)
            } else if first & 0x20 != 0 {
                // A size update: only at the start of a block (§4.2).
                if fields_seen {
                    return Err(HpackError("a table size update after a field"));
                }
                let (size, used) = decode_integer(rest, 5)?;
                if size > self.limit {
                    return Err(HpackError("a table size over SETTINGS_HEADER_TABLE_SIZE"));
                }
                self.max_size = size;
                self.evict_to(size);
                at += used;
                continue;
            } else {
                let (index, used) = decode_integer(rest, 4)?;
                (index, used, false)
            };
            at += used;
            let mut name = std::mem::take(&mut self.name);
            let mut value = std::mem::take(&mut self.value);
            name.clear();
            value.clear();
            let read = (|| {
                if index == 0 {
                    at += decode_string(&block[at..], &mut name)?;
                } else {
                    name.extend_from_slice(self.entry(index)?.0);
                }
                at += decode_string(&block[at..], &mut value)?;
                Ok::<(), HpackError>(())
            })();
            if read.is_ok() {
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                keep(list, &name, &value, list_size > max_list_size, max_fields);
                if indexing {
                    self.insert(&name, &value);
                }
                fields_seen = true;
            }
            self.name = name;
            self.value = value;
            read?;
        }
        Ok(())
    }
}

/// Keeps a field in the list, unless the list went over its bounds.
fn keep(list: &mut HeaderList, name: &[u8], value: &[u8], over: bool, max_fields: usize) {
    if over || list.fields.len() >= max_fields {
        list.too_large = true;
    }
    if list.too_large {
        return;
    }
    list.fields
        .push((list.bytes.len(), name.len(), value.len()));
    list.bytes.extend_from_slice(name);
    list.bytes.extend_from_slice(value);
}

#[cfg(test)]
#[path = "hpack_tests.rs"]
mod tests;
