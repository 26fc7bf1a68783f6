//! Response compression (`compress = { ... }`): a response the backend
//! did not encode, of a listed type and at least `min_bytes`, is encoded
//! for a client that accepts gzip or br (`Accept-Encoding`, q-values
//! honoured, br on a tie), as it streams: each run of the backend's body
//! (its own framing read off) goes through the encoder, and what comes out
//! goes to the client as chunks, with `Vary: Accept-Encoding`, no
//! `Content-Length`, a strong `ETag` made weak. Nothing is held beyond
//! one run in and its output: the encoder takes more of the backend's
//! body only once what it made went to the client.

use std::io::Write;

use crate::framing::{Chunked, Framing};

/// `compress = { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressConfig {
    /// Media types (`text/*` for a whole family) compressed.
    pub types: Vec<String>,
    /// A response announcing fewer bytes is sent as it is.
    pub min_bytes: u64,
    pub gzip_level: u32,
    pub brotli_level: u32,
}

impl Default for CompressConfig {
    fn default() -> CompressConfig {
        CompressConfig {
            types: [
                "text/*",
                "application/json",
                "application/javascript",
                "image/svg+xml",
            ]
            .map(String::from)
            .to_vec(),
            min_bytes: 1024,
            gzip_level: 5,
            brotli_level: 4,
        }
    }
}

/// A content coding rsp writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    Brotli,
}

impl Coding {
    pub fn token(self) -> &'static [u8] {
        match self {
            Coding::Gzip => b"gzip",
            Coding::Brotli => b"br",
        }
    }
}

/// The coding a client's `Accept-Encoding` prefers of gzip and br (RFC
/// 9110 §12.5.3): the higher q-value, br on a tie; `q=0` refuses one, `*`
/// stands for those not named. `None`: neither (or no field).
pub fn choose(accept: Option<&[u8]>) -> Option<Coding> {
    let accept = accept?;
    let (mut gzip, mut brotli, mut any) = (None, None, None);
    for member in accept.split(|&byte| byte == b',') {
        let mut parts = member.split(|&byte| byte == b';');
        let name = parts.next().unwrap_or_default().trim_ascii();
        let mut quality = 1000u32;
        for parameter in parts {
            let parameter = parameter.trim_ascii();
            if let Some(value) = parameter
                .strip_prefix(b"q=")
                .or_else(|| parameter.strip_prefix(b"Q="))
            {
                quality = qvalue(value).unwrap_or(0);
            }
        }
        if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
            gzip.get_or_insert(quality);
        } else if name.eq_ignore_ascii_case(b"br") {
            brotli.get_or_insert(quality);
        } else if name == b"*" {
            any.get_or_insert(quality);
        }
    }
    let gzip = gzip.or(any).unwrap_or(0);
    let brotli = brotli.or(any).unwrap_or(0);
    match (gzip, brotli) {
        (0, 0) => None,
        (gzip, brotli) if brotli >= gzip => Some(Coding::Brotli),
        _ => Some(Coding::Gzip),
    }
}

/// A qvalue in thousandths: `0`, `0.5`, `1.000`.
fn qvalue(text: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(text.trim_ascii()).ok()?;
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = match whole {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let thousandths = format!("{fraction:0<3}").parse::<u32>().ok()?;
    let value = whole * 1000 + thousandths;
    (value <= 1000).then_some(value)
}

/// Whether `content_type` is one of `types` (`text/*` a whole family),
/// its parameters aside.
pub fn listed(types: &[String], content_type: &[u8]) -> bool {
    let media = content_type
        .split(|&byte| byte == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    types.iter().any(|listed| {
        let listed = listed.as_bytes();
        match listed.strip_suffix(b"*") {
            Some(family) => {
                media.len() > family.len() && media[..family.len()].eq_ignore_ascii_case(family)
            }
            None => media.eq_ignore_ascii_case(listed),
        }
    })
}

/// brotli's window, as a power of two.
const BROTLI_WINDOW_BITS: u32 = 18;

/// What an encoder's state takes, about: zlib's deflate at the default
/// memory level holds its 32 KB window twice and its hash chains (256 KB
/// in all); brotli a ring buffer of its window and hash tables, about as
/// much again. Counted in what the connection holds (`memory.rs`).
pub const ENGINE_BYTES: usize = 300 * 1024;

enum Engine {
    Gzip(Box<flate2::write::GzEncoder<Vec<u8>>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

/// One response's encoder: the backend's body in (its framing read off),
/// the client's chunks out.
pub struct Encoder {
    engine: Option<Engine>,
    /// The backend's body is chunked: its coding is read off here.
    chunked: Option<Chunked>,
    /// Chunks ready for the client, and how much of them went.
    out: Vec<u8>,
    sent: usize,
    /// The encoder's last bytes and the last chunk's line are in `out`.
    finished: bool,
    /// The (empty) trailer section that ends the chunks is queued.
    pub terminated: bool,
    /// Body bytes in, and out, for the log.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// How the backend frames the body (the client gets chunks).
    pub backend_framing: Framing,
}

impl Encoder {
    /// An encoder to `coding` of a body the backend frames by `framing`.
    pub fn new(coding: Coding, config: &CompressConfig, framing: &Framing) -> Encoder {
        let engine = match coding {
            Coding::Gzip => Engine::Gzip(Box::new(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(config.gzip_level),
            ))),
            // A 256 KB window (lgwin 18), not brotli's 4 MB default: what
            // a response being compressed holds stays bounded.
            Coding::Brotli => Engine::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                config.brotli_level,
                BROTLI_WINDOW_BITS,
            ))),
        };
        Encoder {
            engine: Some(engine),
            chunked: matches!(framing, Framing::Chunked).then(Chunked::default),
            out: Vec::new(),
            sent: 0,
            finished: false,
            terminated: false,
            bytes_in: 0,
            bytes_out: 0,
            backend_framing: framing.clone(),
        }
    }

    /// Chunks not yet sent.
    pub fn pending(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    /// `count` bytes of `pending` went to the client.
    pub fn sent(&mut self, count: usize) {
        self.sent += count;
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
    }

    /// Every chunk, the last one too, went, and the end is queued.
    pub fn is_done(&self) -> bool {
        self.terminated && self.pending().is_empty()
    }

    /// The chunks went but for their end: the caller queues the trailer
    /// section (HTTP/1.1's CRLF, HTTP/2's END_STREAM) and says so
    /// (`terminated`).
    pub fn awaits_end(&self) -> bool {
        self.finished && !self.terminated && self.pending().is_empty()
    }

    /// Bytes of the backend's body as they came (its chunked coding, if
    /// any, included): what they decode to is encoded, and what the
    /// encoder made so far queued as a chunk.
    pub fn feed(&mut self, raw: &[u8]) -> std::io::Result<()> {
        let Some(engine) = self.engine.as_mut() else {
            return Ok(());
        };
        let mut result = Ok(());
        let mut write = |data: &[u8]| {
            if result.is_ok() {
                result = match engine {
                    Engine::Gzip(encoder) => encoder.write_all(data),
                    Engine::Brotli(encoder) => encoder.write_all(data),
                };
            }
        };
        match &mut self.chunked {
            Some(chunked) => {
                let walked = chunked.walk(raw, usize::MAX, |data| write(data));
                if walked.is_err() {
                    return Err(std::io::Error::other("broken chunked coding"));
                }
            }
            None => write(raw),
        }
        result?;
        self.bytes_in += raw.len() as u64;
        self.take_output();
        Ok(())
    }

    /// The backend's body is complete: the encoder's last bytes, then the
    /// last chunk's line (its trailer section is the caller's to queue).
    pub fn finish(&mut self) -> std::io::Result<()> {
        let Some(engine) = self.engine.take() else {
            return Ok(());
        };
        let tail = match engine {
            Engine::Gzip(encoder) => encoder.finish()?,
            Engine::Brotli(mut encoder) => {
                encoder.flush()?;
                encoder.into_inner()
            }
        };
        self.chunk(&tail);
        self.out.extend_from_slice(b"0\r\n");
        self.finished = true;
        Ok(())
    }

    /// What the encoder made so far, as a chunk.
    fn take_output(&mut self) {
        let made = match self.engine.as_mut() {
            Some(Engine::Gzip(encoder)) => std::mem::take(encoder.get_mut()),
            Some(Engine::Brotli(encoder)) => std::mem::take(encoder.get_mut()),
            None => return,
        };
        self.chunk(&made);
    }

    fn chunk(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.bytes_out += data.len() as u64;
        self.out
            .extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(b"\r\n");
    }

    /// Bytes it holds: its chunks, and its engine's state while it has
    /// one.
    pub fn held(&self) -> usize {
        self.out.capacity()
            + if self.engine.is_some() {
                ENGINE_BYTES
            } else {
                0
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn accept_encoding_is_negotiated_by_q_values() {
        let cases: [(&str, Option<Coding>); 10] = [
            ("gzip, deflate, br", Some(Coding::Brotli)),
            ("gzip", Some(Coding::Gzip)),
            ("br;q=0.5, gzip;q=0.8", Some(Coding::Gzip)),
            ("br;q=0, gzip;q=0.1", Some(Coding::Gzip)),
            ("gzip;q=0, br;q=0", None),
            ("*", Some(Coding::Brotli)),
            ("*;q=0.5, gzip", Some(Coding::Gzip)),
            ("identity", None),
            ("br;q=1.5", None),
            ("x-gzip", Some(Coding::Gzip)),
        ];
        for (accept, expected) in cases {
            assert_eq!(choose(Some(accept.as_bytes())), expected, "{accept}");
        }
        assert_eq!(choose(None), None);
    }

    #[test]
    fn listed_types_and_families() {
        let types = CompressConfig::default().types;
        assert!(listed(&types, b"text/html; charset=utf-8"));
        assert!(listed(&types, b"Application/JSON"));
        assert!(!listed(&types, b"image/png"));
        assert!(!listed(&types, b"text/"));
    }

    fn dechunk(mut wire: &[u8]) -> Vec<u8> {
        let mut data = Vec::new();
        loop {
            let line_end = wire.windows(2).position(|pair| pair == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&wire[..line_end]).unwrap(), 16).unwrap();
            wire = &wire[line_end + 2..];
            if size == 0 {
                assert_eq!(wire, b"\r\n");
                return data;
            }
            data.extend_from_slice(&wire[..size]);
            wire = &wire[size + 2..];
        }
    }

    /// Bodies as runs of any size, plain or chunked, come out as chunks
    /// that decode to the same bytes.
    #[test]
    fn bodies_decode_to_what_went_in() {
        let body: Vec<u8> = (0..200_000u32)
            .flat_map(|n| format!("line {n}\n").into_bytes())
            .collect();
        let mut chunked_body = Vec::new();
        for chunk in body.chunks(7_000) {
            chunked_body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            chunked_body.extend_from_slice(chunk);
            chunked_body.extend_from_slice(b"\r\n");
        }
        chunked_body.extend_from_slice(b"0\r\n\r\n");
        for coding in [Coding::Gzip, Coding::Brotli] {
            for (framing, raw) in [
                (Framing::Length(body.len() as u64), &body),
                (Framing::Chunked, &chunked_body),
            ] {
                let mut encoder = Encoder::new(coding, &CompressConfig::default(), &framing);
                let mut wire = Vec::new();
                for run in raw.chunks(3_333) {
                    encoder.feed(run).unwrap();
                    wire.extend_from_slice(encoder.pending());
                    let count = encoder.pending().len();
                    encoder.sent(count);
                }
                encoder.finish().unwrap();
                wire.extend_from_slice(encoder.pending());
                let count = encoder.pending().len();
                encoder.sent(count);
                assert!(encoder.awaits_end());
                wire.extend_from_slice(b"\r\n");
                encoder.terminated = true;
                assert!(encoder.is_done());
                let compressed = dechunk(&wire);
                assert!(
                    compressed.len() < body.len() / 4,
                    "{coding:?}: {}",
                    compressed.len()
                );
                let mut decoded = Vec::new();
                match coding {
                    Coding::Gzip => {
                        flate2::read::GzDecoder::new(&compressed[..])
                            .read_to_end(&mut decoded)
                            .unwrap();
                    }
                    Coding::Brotli => {
                        brotli::Decompressor::new(&compressed[..], 4096)
                            .read_to_end(&mut decoded)
                            .unwrap();
                    }
                }
                assert_eq!(decoded, body, "{coding:?} {framing:?}");
            }
        }
    }
}
