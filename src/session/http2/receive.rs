//! What the client sends: frames read off the connection's input, the
//! connection's settings and windows, DATA into its stream, and header
//! blocks decoded into a new stream's request or its trailers.

use crate::buffer::Buffer;
use crate::h2::frame::{self, ErrorCode, Frame, FrameError, setting};
use crate::h2::request::{self, BodyFraming};
use crate::hpack;
use crate::memory::Tracked;
use crate::reply::ErrorReply;
use crate::services::Services;
use crate::timer;

use super::super::Client;
use super::super::exchange::{Answer, Busy};
use super::closed::{self, Ended, Late};
use super::stream::StreamIo;
use super::{
    BLOCK_FACTOR, Block, CONNECTION_BUFFER, DECODED_FIELDS, DEFAULT_WINDOW, Http2, Life,
    MAX_CONTINUATIONS, STREAM_BUFFER_MAX, STREAM_BUFFER_MIN, Stream,
};

impl Http2 {
    /// Reads every whole frame the client sent. The buffer is taken out
    /// while its frames are handled, so they borrow it and nothing is
    /// copied before it is needed.
    pub(super) fn receive(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<(), FrameError> {
        let mut inbound = std::mem::replace(&mut self.inbound, Buffer::new(0));
        let result = self.receive_from(&mut inbound, session, client, services);
        self.inbound = inbound;
        result
    }

    pub(super) fn receive_from(
        &mut self,
        inbound: &mut Buffer,
        session: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<(), FrameError> {
        if self.life == Life::Preface {
            let Some(length) = frame::preface(inbound.data())? else {
                return Ok(());
            };
            inbound.consume(length);
            self.life = Life::FirstSettings;
        }
        loop {
            if self.round_used() && self.block.is_none() {
                break;
            }
            let data = inbound.data();
            let (parsed, length) = match frame::parse(data, self.settings.max_frame_size) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break,
                // One stream's error (a PRIORITY or WINDOW_UPDATE it may
                // not have): that stream is reset, the connection goes
                // on. A HEADERS frame's carries a header block that must
                // be decoded to keep HPACK in step: the connection's.
                Err(FrameError::Stream(stream, code, why))
                    if frame::Header::read(data)
                        .is_some_and(|header| header.kind != frame::kind::HEADERS) =>
                {
                    // On a stream not yet opened (RST_STREAM may not name
                    // one, §6.4), or inside a header block: the connection's.
                    if stream > self.last_stream || self.block.is_some() {
                        return Err(FrameError::Connection(ErrorCode::ProtocolError, why));
                    }
                    let length = frame::Header::read(data).map_or(data.len(), |header| {
                        frame::HEADER_LENGTH + header.length as usize
                    });
                    inbound.consume(length);
                    match self.slot(stream) {
                        Some(slot) => self.cut_stream(session, slot, code, services, why)?,
                        // Frames on a stream rsp reset are ignored (§5.1).
                        None if self.closed.ended(stream) == Ended::ResetByRsp => {
                            self.flood.control("a flood of frames on closed streams")?;
                        }
                        None => {
                            self.reset_stream(client.address, stream, code, &why, services);
                            self.flood.reset()?;
                        }
                    }
                    continue;
                }
                Err(error) => return Err(error),
            };
            // The frame borrows the buffer: what it carries is copied out
            // by the handler, then the bytes are consumed.
            let handled = self.frame(session, client, services, parsed);
            inbound.consume(length);
            handled?;
            if self.life.failed() {
                break;
            }
        }
        Ok(())
    }

    /// What a frame may not be where it comes (§3.4, §6.10): the first
    /// is the client's SETTINGS, and nothing interrupts a header block.
    fn check_order(&self, frame: &Frame) -> Result<(), FrameError> {
        if self.life == Life::FirstSettings && !matches!(frame, Frame::Settings { ack: false, .. })
        {
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "the first frame is not SETTINGS",
            ));
        }
        if let Some(block) = &self.block
            && !matches!(frame, Frame::Continuation { stream, .. } if *stream == block.stream)
        {
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "a header block interrupted",
            ));
        }
        Ok(())
    }

    pub(super) fn frame(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        frame: Frame,
    ) -> Result<(), FrameError> {
        self.check_order(&frame)?;
        match frame {
            Frame::Data {
                stream,
                end_stream,
                data,
                flow_length,
            } => self.data(
                session,
                client,
                services,
                (stream, end_stream),
                data,
                flow_length,
            ),
            Frame::Headers {
                stream,
                end_stream,
                end_headers,
                fragment,
                ..
            } => {
                self.block = Some(Block {
                    stream,
                    end_stream,
                    bytes: Vec::new(),
                    continuations: 0,
                });
                let piece = (fragment, end_headers, false);
                self.fragment(session, client, services, piece)
            }
            Frame::Continuation {
                end_headers,
                fragment,
                ..
            } => self.fragment(session, client, services, (fragment, end_headers, true)),
            // PRIORITY may name any stream, idle ones too (§5.1); rsp
            // does not act on priorities (RFC 9113 deprecates them).
            Frame::Priority { .. } => self.flood.control("PRIORITY flood"),
            Frame::RstStream { stream: id, code } => {
                self.check_known(id)?;
                let Some(slot) = self.slot(id) else {
                    return self.late_frame(client, services, frame::kind::RST_STREAM, id);
                };
                self.flood.reset()?;
                log::debug!(
                    "{}: HTTP/2 stream {id} reset by the client: {code:?}",
                    client.address
                );
                self.client_reset(session, slot, services);
                Ok(())
            }
            Frame::Settings { ack, payload } => self.settings(ack, payload),
            Frame::PushPromise { .. } => Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "a client may not push",
            )),
            Frame::Ping { ack, data } => {
                self.flood.control("PING flood")?;
                if !ack {
                    frame::write_ping_ack(&mut self.tx.out, data);
                }
                Ok(())
            }
            Frame::GoAway { code, .. } => {
                log::debug!(
                    "{}: HTTP/2 GOAWAY from the client: {code:?}",
                    client.address
                );
                self.life.go_away(false);
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                self.flood.control("WINDOW_UPDATE flood")?;
                self.window_update(session, client, services, stream, increment)
            }
            Frame::Unknown { .. } => self.flood.control("a flood of unknown frames"),
        }
    }

    /// A piece of the header block being gathered (HEADERS', then each
    /// CONTINUATION's); the whole block is decoded at its end.
    fn fragment(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        (fragment, end_headers, continuation): (&[u8], bool, bool),
    ) -> Result<(), FrameError> {
        let Some(block) = self.block.as_mut() else {
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "CONTINUATION without HEADERS",
            ));
        };
        block.continuations += u32::from(continuation);
        block.bytes.extend_from_slice(fragment);
        self.check_block()?;
        if end_headers {
            self.header_block(session, client, services)?;
        }
        Ok(())
    }

    /// The client's SETTINGS (its first opens the connection), or its
    /// acknowledgement of rsp's.
    fn settings(&mut self, ack: bool, payload: &[u8]) -> Result<(), FrameError> {
        self.flood.control("SETTINGS flood")?;
        if ack {
            self.settings_acknowledged();
            return Ok(());
        }
        if self.life == Life::FirstSettings {
            self.life = Life::Open;
        }
        self.apply_settings(payload)?;
        frame::write_settings_ack(&mut self.tx.out);
        Ok(())
    }

    /// A stream id the client has not opened yet may only be opened
    /// (RFC 9113 §5.1: anything else on an idle stream is a connection
    /// error).
    pub(super) fn check_known(&self, stream: u32) -> Result<(), FrameError> {
        if stream > self.last_stream {
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "a frame on a stream not yet opened",
            ));
        }
        Ok(())
    }

    /// The slot of the open stream `id`.
    pub(super) fn slot(&self, id: u32) -> Option<usize> {
        let at = self.ids.binary_search_by_key(&id, |&(id, _)| id).ok()?;
        Some(self.ids[at].1)
    }

    pub(super) fn check_block(&self) -> Result<(), FrameError> {
        let Some(block) = &self.block else {
            return Ok(());
        };
        let bound = self.settings.max_header_list_size as usize * BLOCK_FACTOR;
        if block.bytes.len() > bound || block.continuations > MAX_CONTINUATIONS {
            return Err(FrameError::Connection(
                ErrorCode::EnhanceYourCalm,
                "a header block over its bound (bytes or CONTINUATION frames)",
            ));
        }
        Ok(())
    }

    pub(super) fn apply_settings(&mut self, payload: &[u8]) -> Result<(), FrameError> {
        for (id, value) in frame::settings(payload) {
            frame::check_setting(id, value)?;
            match id {
                setting::INITIAL_WINDOW_SIZE => {
                    let delta = i64::from(value) - self.peer_initial_window;
                    self.peer_initial_window = i64::from(value);
                    for (_, stream) in self.streams.iter_mut() {
                        stream.io.send_window += delta;
                        if stream.io.send_window > i64::from(frame::MAX_WINDOW) {
                            return Err(FrameError::Connection(
                                ErrorCode::FlowControlError,
                                "a stream window over 2^31 - 1",
                            ));
                        }
                        stream.dirty = true;
                    }
                }
                setting::MAX_FRAME_SIZE => self.tx.max_frame = value,
                // rsp's encoder keeps no table; a change of the client's
                // is answered by saying so again (RFC 7541 §4.2).
                setting::HEADER_TABLE_SIZE => self.tx.table_update = true,
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn window_update(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        stream: u32,
        increment: u32,
    ) -> Result<(), FrameError> {
        if stream == 0 {
            self.tx.window += i64::from(increment);
            if self.tx.window > i64::from(frame::MAX_WINDOW) {
                return Err(FrameError::Connection(
                    ErrorCode::FlowControlError,
                    "the connection window over 2^31 - 1",
                ));
            }
            for (_, stream) in self.streams.iter_mut() {
                stream.dirty |= stream.io.waits_on_connection();
            }
            return Ok(());
        }
        self.check_known(stream)?;
        let Some(slot) = self.slot(stream) else {
            return self.late_frame(client, services, frame::kind::WINDOW_UPDATE, stream);
        };
        let entry = &mut self.streams[slot];
        entry.io.send_window += i64::from(increment);
        entry.dirty = true;
        if entry.io.send_window > i64::from(frame::MAX_WINDOW) {
            let why = "a stream window over 2^31 - 1";
            self.cut_stream(session, slot, ErrorCode::FlowControlError, services, why)?;
        }
        Ok(())
    }

    /// A frame of `kind` on stream `id`, at or below the highest opened
    /// and not open: closed, and what it gets depends on how (§5.1).
    pub(super) fn late_frame(
        &mut self,
        client: &Client,
        services: &mut Services,
        kind: u8,
        id: u32,
    ) -> Result<(), FrameError> {
        match closed::late(kind, self.closed.ended(id)) {
            // PRIORITY and WINDOW_UPDATE were charged as they came.
            Late::Ignore if matches!(kind, frame::kind::PRIORITY | frame::kind::WINDOW_UPDATE) => {
                Ok(())
            }
            Late::Ignore => self.flood.control("a flood of frames on closed streams"),
            Late::Reset(code, why) => {
                self.reset_stream(client.address, id, code, &why, services);
                self.flood.reset()
            }
            Late::Connection(code, why) => Err(FrameError::Connection(code, why)),
        }
    }

    pub(super) fn data(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        (stream, end_stream): (u32, bool),
        data: &[u8],
        flow_length: u32,
    ) -> Result<(), FrameError> {
        self.receive_window -= i64::from(flow_length);
        if self.receive_window < 0 {
            return Err(FrameError::Connection(
                ErrorCode::FlowControlError,
                "DATA past the connection window",
            ));
        }
        // Padding is flow-controlled but never buffered: given back now.
        self.tx.credit += u64::from(flow_length) - data.len() as u64;
        if data.is_empty() && !end_stream {
            self.flood.control("a flood of empty DATA frames")?;
        }
        self.check_known(stream)?;
        let Some(slot) = self.slot(stream) else {
            // A closed stream: its window is the connection's again.
            self.tx.credit += data.len() as u64;
            return self.late_frame(client, services, frame::kind::DATA, stream);
        };
        let entry = &mut self.streams[slot];
        let io = &mut entry.io;
        // Whatever of this frame is not kept is the connection's again.
        let dropped = data.len() as u64;
        if io.state.client_ended() {
            self.tx.credit += dropped;
            let why = "DATA after the end of the stream";
            return self.cut_stream(session, slot, ErrorCode::StreamClosed, services, why);
        }
        io.receive_window -= i64::from(flow_length);
        if io.receive_window < 0 {
            self.tx.credit += dropped;
            let why = "DATA past the stream's window";
            return self.cut_stream(session, slot, ErrorCode::FlowControlError, services, why);
        }
        // Padding is counted against the stream's window too, and is never
        // kept: given back with the body bytes the stage takes.
        io.credit += u64::from(flow_length) - dropped;
        io.received += data.len() as u64;
        let too_long = matches!(io.framing, BodyFraming::Length(length) if io.received > length);
        let too_short =
            end_stream && matches!(io.framing, BodyFraming::Length(length) if io.received < length);
        if too_long || too_short {
            self.tx.credit += dropped;
            let why = "DATA that does not add up to its content-length";
            return self.cut_stream(session, slot, ErrorCode::ProtocolError, services, why);
        }
        io.body.extend_from_slice(data);
        if end_stream {
            io.state.end_by_client();
        }
        entry.dirty = true;
        Ok(())
    }

    /// A whole header block arrived: a new stream's request, or trailers.
    pub(super) fn header_block(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<(), FrameError> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let limit = self.settings.max_header_list_size as usize;
        let mut list = std::mem::take(&mut self.list);
        let decoded = self
            .decoder
            .decode(&block.bytes, limit, DECODED_FIELDS, &mut list);
        // Both are bounded (the block by twice the list's bound).
        let read = block.bytes.len() + list.bytes();
        self.header_bytes = self
            .header_bytes
            .saturating_add(u32::try_from(read).unwrap_or(u32::MAX));
        let result = match decoded {
            Ok(()) => self.header_list(session, client, services, &block, &list),
            Err(hpack::HpackError(why)) => {
                log::debug!("{}: HPACK: {why}", client.address);
                Err(FrameError::Connection(
                    ErrorCode::CompressionError,
                    "a header block that is not HPACK",
                ))
            }
        };
        self.list = list;
        result
    }

    /// A decoded header block: a new stream's request, or trailers.
    pub(super) fn header_list(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        block: &Block,
        decoded: &hpack::HeaderList,
    ) -> Result<(), FrameError> {
        let id = block.stream;
        if let Some(slot) = self.slot(id) {
            let trailers = (block.end_stream, decoded.too_large, decoded);
            return self.trailers(session, client, services, slot, trailers);
        }
        if id.is_multiple_of(2) {
            // A server's id: §5.1.1.
            return Err(FrameError::Connection(
                ErrorCode::ProtocolError,
                "a stream id that is not odd",
            ));
        }
        if id <= self.last_stream {
            // A closed stream's: trailers the client sent before it saw
            // rsp's reset, say. Decoded (HPACK stays in step), then as
            // §5.1 says.
            return self.late_frame(client, services, frame::kind::HEADERS, id);
        }
        self.opened += 1;
        self.closed.opened(id, self.last_stream);
        self.last_stream = id;
        if self.life.goaway_sent() {
            // After GOAWAY, new streams are ignored (§6.8), and so are
            // their frames (`ClosedStreams::goaway`).
            return Ok(());
        }
        if self.streams.len() >= self.settings.max_concurrent_streams as usize {
            let why = format!("refused: {} streams open", self.streams.len());
            self.reset_stream(client.address, id, ErrorCode::RefusedStream, &why, services);
            return self.flood.reset();
        }
        if let Some(why) = self.memory_refusal(services, block.bytes.len()) {
            services.totals.refused_for_memory += 1;
            self.reset_stream(client.address, id, ErrorCode::RefusedStream, &why, services);
            return self.flood.reset();
        }
        let request = if decoded.too_large {
            None
        } else {
            match request::check(decoded.iter(), block.end_stream) {
                Ok(request) => Some(request),
                Err(malformed) => {
                    let why = format!("malformed request: {malformed}");
                    self.reset_stream(client.address, id, ErrorCode::ProtocolError, &why, services);
                    return self.flood.reset();
                }
            }
        };
        self.open_stream(client, services, id, (request, decoded), block.end_stream);
        Ok(())
    }

    /// A new stream, whose request is `request` with its header list
    /// `fields` (`None`: a list over its bound, answered 431 at once).
    fn open_stream(
        &mut self,
        client: &Client,
        services: &mut Services,
        id: u32,
        (request, fields): (Option<request::Request>, &hpack::HeaderList),
        end_stream: bool,
    ) {
        let framing = request.map_or(BodyFraming::None, |request| request.framing);
        let buffer = self.stream_buffer(services);
        let windows = (
            self.receive_window_of_new_stream(),
            self.peer_initial_window,
        );
        let io = StreamIo::new(id, (framing, end_stream), windows);
        let mut busy = Busy::take(client, buffer);
        let unrouted = request.map(|request| {
            let view = &mut busy.exchange.request;
            let policy = &services.settings.policy;
            view.head
                .read_h2(&request.parts, fields.iter(), policy, view.tls)
        });
        let slot = self.insert_stream(Stream {
            io,
            busy,
            inbound: Buffer::new(buffer),
            unrouted,
            last: timer::now(),
            dirty: true,
            client: client.address,
            bound: buffer,
            reserved: Tracked::default(),
        });
        let stream = &mut self.streams[slot];
        match stream.unrouted {
            Some(_) => {}
            None => {
                let limit = self.settings.max_header_list_size;
                crate::client_log!(
                    log::Level::Info,
                    "{}: HTTP/2 stream {id}: 431, header list over {limit} bytes or {DECODED_FIELDS} fields",
                    client.address,
                );
                // The stream keeps its real end: a client that had not ended
                // it may still send, and is told to stop (RST_STREAM NO_ERROR).
                services.counters.requests += 1;
                let busy = &mut stream.busy;
                busy.begin(client, services, timer::now(), (false, 0));
                busy.answer(services, Answer::Error(ErrorReply::HeadTooLarge), None);
            }
        }
        stream.reserve();
    }

    /// What a new stream's client may send: rsp's `initial_window` once
    /// the client acknowledged rsp's SETTINGS; before that, what the client
    /// may still assume (RFC 9113 §6.9.2: the protocol's 65,535 while
    /// rsp's setting is not known to be in force).
    pub(super) fn receive_window_of_new_stream(&self) -> i64 {
        let initial = i64::from(self.settings.initial_window);
        if self.settings_acked {
            initial
        } else {
            initial.max(DEFAULT_WINDOW)
        }
    }

    /// The client acknowledged rsp's SETTINGS: a window smaller than the
    /// protocol's default is in force from now on, streams opened before
    /// included.
    pub(super) fn settings_acknowledged(&mut self) {
        if self.settings_acked {
            return;
        }
        self.settings_acked = true;
        let shrink = DEFAULT_WINDOW - i64::from(self.settings.initial_window);
        if shrink > 0 {
            for (_, stream) in self.streams.iter_mut() {
                stream.io.receive_window -= shrink;
            }
        }
    }

    /// The buffers a new stream's stage gets: the connection's share,
    /// never less than a request head needs.
    pub(super) fn stream_buffer(&self, services: &Services) -> usize {
        let streams = self.streams.len() + 1;
        (CONNECTION_BUFFER / streams)
            .clamp(STREAM_BUFFER_MIN, STREAM_BUFFER_MAX)
            .max(services.settings.max_header_bytes + 1024)
            .min(services.settings.buffer_bytes)
    }

    /// HEADERS after a stream's request: its trailers, which end it.
    pub(super) fn trailers(
        &mut self,
        session: usize,
        client: &Client,
        services: &mut Services,
        slot: usize,
        (end_stream, too_large, fields): (bool, bool, &hpack::HeaderList),
    ) -> Result<(), FrameError> {
        let io = &mut self.streams[slot].io;
        let protocol = ErrorCode::ProtocolError;
        if io.state.client_ended() {
            let why = "HEADERS after the end of the stream";
            return self.cut_stream(session, slot, ErrorCode::StreamClosed, services, why);
        }
        if !end_stream || too_large {
            let why = "trailers that do not end the stream, or over the bound";
            return self.cut_stream(session, slot, protocol, services, why);
        }
        if matches!(io.framing, BodyFraming::Length(length) if io.received < length) {
            let why = "DATA that does not add up to its content-length";
            return self.cut_stream(session, slot, protocol, services, why);
        }
        match io.framing {
            BodyFraming::Chunked => match request::trailers(fields.iter()) {
                Ok(trailers) => io.trailers = trailers,
                Err(_) => {
                    let why = "malformed trailers";
                    return self.cut_stream(session, slot, protocol, services, why);
                }
            },
            // A body of known length carries no trailers in HTTP/1.1.
            _ => log::debug!(
                "{}: HTTP/2 stream {}: trailers dropped (the body has a content-length)",
                client.address,
                io.id
            ),
        }
        io.state.end_by_client();
        self.streams[slot].dirty = true;
        Ok(())
    }
}
