//! HTTP/2 to clients (RFC 9113), built as the HTTP/1 stage is: sans-IO
//! pieces driven by the one event loop. So far the frame layer; the
//! connection (streams, flow control, HPACK, exchanges) is to come.

pub mod frame;
