//! HTTP/2 to clients (RFC 9113), built as the HTTP/1 stage is: sans-IO
//! pieces driven by the one event loop. Here: frames, the checks of a
//! request's header list (request.rs) and the settings. Header blocks go
//! through `crate::hpack` (RFC 7541); response heads come encoded already
//! (`message`). The connection itself (streams, flow control, the
//! defences) is `session::http2`.

pub mod frame;
pub mod request;

use std::time::Duration;

use crate::hpack;

/// A header field as decoded: its name and value.
pub type Field<'a> = (&'a [u8], &'a [u8]);

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

/// A decoder that holds no more than `HEADER_TABLE_SIZE` of a client's
/// fields.
pub fn decoder() -> hpack::Decoder {
    hpack::Decoder::new(HEADER_TABLE_SIZE)
}
