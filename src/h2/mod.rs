//! HTTP/2 to clients (RFC 9113), built as the HTTP/1 stage is: sans-IO
//! pieces driven by the one event loop. Here: frames, the translation of
//! requests to HTTP/1.1 and of responses back, header blocks through HPACK
//! (RFC 7541, the `loona-hpack` crate), and the settings. The connection
//! itself (streams, flow control, the defences) is `session::http2`.

pub mod frame;
pub mod hpack;
pub mod request;
pub mod response;

use std::borrow::Cow;
use std::time::Duration;

/// The `http2` table: what rsp announces and enforces per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Streams a client may have open at once; more are refused.
    pub max_concurrent_streams: u32,
    /// Each stream's receive window: what a client may send of a body
    /// before rsp has passed it on.
    pub initial_window: u32,
    /// The largest frame payload rsp accepts.
    pub max_frame_size: u32,
    /// The largest decoded header list (RFC 9113 §6.5.2: names, values
    /// and 32 bytes a field); a larger request gets 431.
    pub max_header_list_size: u32,
    /// A connection with no stream open closes after this long.
    pub idle_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_concurrent_streams: 100,
            initial_window: 65_535,
            max_frame_size: frame::DEFAULT_MAX_FRAME_SIZE,
            max_header_list_size: 32_768,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The dynamic table size rsp's decoder allows (RFC 7541 §4.2): the
/// protocol's default, so a client cannot make rsp hold more.
pub const HEADER_TABLE_SIZE: usize = 4096;

/// A decoded header list, or what made it unusable.
#[derive(Debug, Default)]
pub struct Decoded {
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
    /// Over the list size or field count bound: the stream gets 431 (the
    /// block was still decoded whole, to keep the table in step).
    pub too_large: bool,
}

/// Decodes one header block. The bound is on the decoded list, counted as
/// SETTINGS_MAX_HEADER_LIST_SIZE counts it, so an HPACK bomb (a few bytes
/// naming a large table entry many times) costs only the decoding: past
/// the bound nothing more is kept. `Err`: the block is not valid HPACK,
/// a connection error (COMPRESSION_ERROR).
pub fn decode_block(
    decoder: &mut loona_hpack::Decoder<'static>,
    block: &[u8],
    max_list_size: usize,
) -> Result<Decoded, loona_hpack::decoder::DecoderError> {
    let mut decoded = Decoded::default();
    let mut size = 0usize;
    decoder.decode_with_cb(block, |name: Cow<[u8]>, value: Cow<[u8]>| {
        size = size.saturating_add(name.len() + value.len() + 32);
        if size > max_list_size || decoded.fields.len() >= crate::http::MAX_HEADERS {
            decoded.too_large = true;
        }
        if !decoded.too_large {
            decoded.fields.push((name.into_owned(), value.into_owned()));
        }
    })?;
    Ok(decoded)
}

/// A decoder that holds no more than `HEADER_TABLE_SIZE` of a client's
/// fields.
pub fn decoder() -> loona_hpack::Decoder<'static> {
    let mut decoder = loona_hpack::Decoder::new();
    decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
    decoder
}
