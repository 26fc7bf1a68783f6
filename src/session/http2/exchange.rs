//! A stream driving its exchange: the request read from the header list
//! routed once, the body moved from DATA, the exchange advanced with the
//! calls the HTTP/1 stage makes (`Busy`), the answer written as frames.

use std::time::Instant;

use crate::config::Timeouts;
use crate::http::HeadError;
use crate::services::Services;
use crate::timer;

use super::super::exchange::Flow;
use super::super::forward::ForwardError;
use super::super::{Client, End, Key, Step, Timeout, client_error, drive_rounds};
use super::Stream;
use super::stream::{StreamSink, Tx};

impl Stream {
    /// Makes all the progress the stream's windows and the backend allow.
    pub(super) fn drive(
        &mut self,
        key: Key,
        client: &Client,
        tx: &mut Tx,
        services: &mut Services,
    ) -> Step {
        let buffer_bytes = self.inbound.limit();
        drive_rounds(buffer_bytes, || self.run_once(key, client, tx, services))
    }

    fn run_once(
        &mut self,
        key: Key,
        client: &Client,
        tx: &mut Tx,
        services: &mut Services,
    ) -> Result<bool, Step> {
        let filled = self.io.fill(&mut self.inbound, tx);
        self.busy.moved += filled as u64;
        let mut progress = filled > 0;
        let flow = match self.unrouted.take() {
            Some(read) => self.route(key, client, read, services),
            None => self
                .busy
                .advance(key.waiter, client, &mut self.inbound, services)
                .map_err(Step::Close)?,
        };
        progress |= flow_step(flow)?;
        if let Some(trailers) = self.io.take_end()
            && let Some(body) = self.busy.request_body_mut()
        {
            body.end(trailers);
            progress = true;
        }
        let (flow, read) = self
            .busy
            .pass_upstream(key.waiter, client, &mut self.inbound, services);
        progress |= flow_step(flow)? | read;
        let mut sink = StreamSink {
            io: &mut self.io,
            tx,
        };
        progress |= match self.busy.write_client(&mut sink) {
            Ok(moved) => moved,
            Err(ForwardError::Sink(error)) => return Err(client_error(error)),
            Err(error) => {
                return Err(Step::Close(End::Aborted(format!("response body: {error}"))));
            }
        };
        Ok(progress)
    }

    /// The request read from the stream's header list (`read`: the bytes
    /// it would take as an HTTP/1.1 head, or why it is refused) is
    /// counted, its record begins, and it is routed or refused.
    fn route(
        &mut self,
        key: Key,
        client: &Client,
        read: Result<usize, HeadError>,
        services: &mut Services,
    ) -> Flow {
        services.counters.requests += 1;
        let limit = services.settings.max_header_bytes;
        let length = read
            .as_ref()
            .ok()
            .copied()
            .filter(|&length| length <= limit);
        let busy = &mut self.busy;
        let parsed = (length.is_some(), length.unwrap_or(0));
        busy.begin(client, services, timer::now(), parsed);
        match read {
            Ok(length) if length <= limit => {
                if busy.refused_for_memory(client, services) {
                    return Flow::Moved;
                }
                busy.dispatch(key.waiter, client, &mut self.inbound, services)
            }
            Ok(_) => {
                busy.refuse_head(services, client.address, limit, HeadError::TooManyHeaders);
                Flow::Moved
            }
            Err(error) => {
                busy.refuse_head(services, client.address, limit, error);
                Flow::Moved
            }
        }
    }

    /// What the stream takes: the bytes of its request head, its body,
    /// the answer buffer, and what the script keeps for it (`req.ctx`).
    pub(super) fn held(&self) -> usize {
        let request = &self.busy.exchange.request;
        self.inbound.held()
            + self.busy.outbound.held()
            + request.head.held()
            + request.ctx_bytes
            + self.io.held()
            + self.busy.exchange.state.upstream_held()
    }

    /// The stream's next deadline: its exchange's upstream one, or the
    /// idle timeout since bytes of it last moved.
    pub(super) fn deadline(&self, timeouts: &Timeouts) -> (Instant, Timeout) {
        let idle = (self.last + timeouts.idle, Timeout::Idle);
        self.busy.exchange.state.deadline(timeouts).unwrap_or(idle)
    }

    /// A deadline passed: act on it.
    pub(super) fn expire(
        &mut self,
        key: Key,
        client: &Client,
        services: &mut Services,
        timeout: Timeout,
    ) -> Step {
        match timeout {
            Timeout::Queue | Timeout::Connect | Timeout::BackendResponse => {
                let link = (key.waiter, client, &mut self.inbound);
                let flow = self.busy.expire(link, services, timeout);
                match flow_step(flow) {
                    Ok(progress) => Step::Continue { progress },
                    Err(step) => step,
                }
            }
            _ => Step::Close(End::Aborted(format!(
                "no bytes moved for {:?}",
                services.settings.timeouts.idle
            ))),
        }
    }
}

/// What a stream does after its exchange's move: waits, goes on, or ends
/// (an answer all out, a cut, or a switch, which HTTP/2 has none of).
fn flow_step(flow: Flow) -> Result<bool, Step> {
    match flow {
        Flow::Wait => Ok(false),
        Flow::Moved => Ok(true),
        Flow::Done { .. } => Err(Step::Close(End::Done { linger: false })),
        // The request's head refuses upgrades; a 101 cannot come.
        Flow::Switched => Err(Step::Close(End::Aborted("an upgrade".into()))),
        Flow::Abort(why) => Err(Step::Close(End::Aborted(why))),
    }
}
