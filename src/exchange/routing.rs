//! Routing: what every request gets before it goes anywhere, whichever
//! protocol carried it: a loop through rsp's own `Via` is answered 508,
//! an untrusted client's forwarding fields go, and `route()` decides.

use std::net::SocketAddr;

use crate::reply::{ErrorReply, LocalReply};
use crate::router::{Route, RouteError};
use crate::services::Services;
use crate::timer;

use super::Exchange;
use super::attempt::Target;

/// What routing decided for a request.
pub enum Routed {
    /// rsp answers with one of its errors.
    Answer(ErrorReply),
    /// `route()` answered with a reply table.
    Reply(LocalReply),
    /// The request goes there.
    To(Target),
}

impl Exchange {
    /// Routes the request of `client`: rsp's own name in `Via` is a loop
    /// (508); an untrusted client's forwarding fields are removed before
    /// `route()` sees the request (rsp writes its own); then `route()`.
    pub fn route(&mut self, services: &mut Services, client: SocketAddr) -> Routed {
        let head = &self.request.head;
        if let Some(name) = &services.settings.forwarding.via
            && head.came_through(name)
        {
            // rsp's own name in Via: the request went round, through
            // rsp or through proxies behind it, and would again.
            crate::client_log!(
                log::Level::Info,
                "{client}: 508, the request's Via names rsp ({name}): a loop"
            );
            return Routed::Answer(ErrorReply::LoopDetected);
        }
        if !services.settings.forwarding.trusts(client.ip()) {
            self.request.head.drop_untrusted();
        }
        let route = services.router.route(&mut self.request, &services.pools);
        if let Some(transaction) = &mut self.transaction {
            transaction.routed_at = timer::now();
            if let Ok(Route::Pool(pool, _)) = &route {
                transaction.pool = Some(*pool);
            }
        }
        match route {
            Ok(Route::Reply(reply)) => Routed::Reply(reply),
            Ok(Route::Pool(pool, key)) => Routed::To(Target::Pool { pool, key }),
            Ok(Route::Address(server)) => Routed::To(Target::Address(server)),
            Err(error) => Routed::Answer(route_failed(&error, client, &self.request.head)),
        }
    }
}

/// The answer to a request `route()` sent nowhere, and its log line.
fn route_failed(
    error: &RouteError,
    address: std::net::SocketAddr,
    head: &crate::http::RequestHead,
) -> ErrorReply {
    match error {
        RouteError::NoRoute => {
            crate::client_log!(
                log::Level::Info,
                "{address}: 503, route() chose no backend for {} {}",
                head.method(),
                head.target()
            );
            ErrorReply::NoRoute
        }
        RouteError::UnknownPool(name) => {
            crate::client_log!(
                log::Level::Warn,
                "{address}: 503, route() returned {name:?}, which is neither a pool nor \"ip:port\""
            );
            ErrorReply::NoRoute
        }
        RouteError::Script(error) => {
            crate::client_log!(log::Level::Error, "{address}: 500, route() failed: {error}");
            ErrorReply::ScriptFailed
        }
    }
}
