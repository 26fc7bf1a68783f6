//! The HTTP/1 stage's deadlines, and what happens when one passes.

use std::time::Instant;

use crate::config::Timeouts;
use crate::reply::ErrorReply;
use crate::services::Services;

use super::super::exchange::Turn;
use super::super::{Client, End, Key, Step, Timeout};
use super::{Http1, Wait};

impl Http1 {
    /// The stage's next deadline.
    pub fn deadline(&self, timeouts: &Timeouts, last: Instant) -> (Instant, Timeout) {
        let idle = (last + timeouts.idle, Timeout::Idle);
        let Some(state) = self.state() else {
            return match self.wait {
                Wait::Silent => (last + timeouts.client_header, Timeout::Silent),
                Wait::KeepAlive if self.inbound.is_empty() => {
                    (last + timeouts.client_idle, Timeout::ClientIdle)
                }
                Wait::KeepAlive => (last + timeouts.client_header, Timeout::ClientHeader),
                Wait::Head { since } => (since + timeouts.client_header, Timeout::ClientHeader),
            };
        };
        state.deadline(timeouts).unwrap_or(idle)
    }

    /// A deadline passed: act on it.
    pub fn expire(
        &mut self,
        key: Key,
        client: &Client,
        services: &mut Services,
        timeout: Timeout,
    ) -> Step {
        let address = client.address;
        let timeouts = services.settings.timeouts;
        let moved = match timeout {
            // Like nginx, and HAProxy's http-ignore-probes: no 408 for a
            // connection that never asked anything (browsers open spare
            // ones, and would show a 408 arriving as they use it).
            Timeout::Silent => {
                crate::client_log!(
                    log::Level::Info,
                    "{address}: closed, no request within {:?}",
                    timeouts.client_header
                );
                return Step::Close(End::Done { linger: false });
            }
            Timeout::ClientIdle => {
                log::debug!("{address}: idle keep-alive connection closed");
                return Step::Close(End::Done { linger: false });
            }
            Timeout::ClientHeader => {
                self.begin(client, services);
                self.begin_transaction(client, services, false, self.inbound.len());
                crate::client_log!(
                    log::Level::Info,
                    "{address}: 408, request head not complete within {:?}",
                    timeouts.client_header
                );
                self.take(services, Turn::Answer(ErrorReply::RequestTimeout, None))
            }
            Timeout::Idle | Timeout::Tunnel => {
                return Step::Close(End::Aborted(format!(
                    "no bytes moved for {:?}",
                    timeouts.idle
                )));
            }
            upstream => {
                let Some(busy) = self.busy.as_deref_mut() else {
                    return Step::Continue { progress: false };
                };
                let flow = busy.expire((key.waiter, client, &mut self.inbound), services, upstream);
                self.flow(flow)
            }
        };
        match moved {
            Ok(_) => Step::Continue { progress: true },
            Err(step) => step,
        }
    }
}
