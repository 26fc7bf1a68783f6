//! The tcp stage of a `mode = "tcp"` listener: choose the pool (the
//! listener's, or the one `route(conn)` names), pick a server and connect,
//! with the pool's balancing, queue and retries; then a tunnel. Bytes the
//! client sends meanwhile wait in the buffer.

use std::io;
use std::time::Instant;

use mio::{Registry, Token};

use crate::buffer::Buffer;
use crate::reply::ErrorReply;
use crate::router::{ConnectionView, RequestView, Route};
use crate::services::Services;
use crate::transaction::Transaction;

use super::attempt::{self, Attempt, Dial, DialRequest, Target};
use super::forward::Queue;
use super::transport::Endpoint;
use super::tunnel::Tunnel;
use super::{App, Client, End, Step, Timeout};
use crate::exchange::{client_left, finish_transaction};

enum Connect {
    /// Nothing chosen yet: the first drive routes.
    Unrouted,
    Dialing {
        attempt: Attempt,
        dial: Dial,
    },
}

pub struct TcpConnect {
    inbound: Buffer,
    /// For the tunnel: backend → client.
    outbound: Buffer,
    /// A PROXY header for the backend.
    to_backend: Queue,
    connect: Connect,
    /// For the access log line of the tunnel (no HTTP head).
    request: RequestView,
    transaction: Option<Transaction>,
}

impl TcpConnect {
    pub fn new(client: &Client, inbound: Buffer, buffer_bytes: usize) -> TcpConnect {
        TcpConnect {
            inbound,
            outbound: Buffer::new(buffer_bytes),
            to_backend: Queue::default(),
            connect: Connect::Unrouted,
            request: RequestView::new(client.address, client.transport.is_tls()),
            transaction: None,
        }
    }

    /// What waits in the client buffer (for the stage's tests).
    #[cfg(test)]
    pub fn inbound_data(&self) -> &[u8] {
        self.inbound.data()
    }

    /// The dialing state by value, to move its attempt on; the caller sets
    /// what follows.
    fn take_connect(&mut self) -> Connect {
        std::mem::replace(&mut self.connect, Connect::Unrouted)
    }

    pub fn drive(&mut self, key: usize, client: &mut Client, services: &mut Services) -> Step {
        let mut any = false;
        loop {
            let mut progress = false;
            match client.read_into(&mut self.inbound) {
                Ok(fill) => progress |= fill.read > 0 || fill.eof,
                Err(end) => return Step::Close(end),
            }
            match self.advance(key, client, services) {
                Ok(moved) => progress |= moved,
                Err(step) => return step,
            }
            if !progress {
                return Step::Continue { progress: any };
            }
            any = true;
        }
    }

    fn advance(
        &mut self,
        key: usize,
        client: &Client,
        services: &mut Services,
    ) -> Result<bool, Step> {
        match &mut self.connect {
            Connect::Unrouted => {
                let attempt = self
                    .route(client, services)
                    .ok_or(Step::Close(End::Done { linger: false }))?;
                self.dial(key, client, services, attempt, false)
            }
            Connect::Dialing {
                dial: Dial::Queued { woken: false, .. },
                ..
            } => Ok(false),
            Connect::Dialing {
                dial: Dial::Queued { .. },
                ..
            } => {
                let Connect::Dialing { attempt, .. } = self.take_connect() else {
                    return Ok(false);
                };
                self.dial(key, client, services, attempt, true)
            }
            Connect::Dialing {
                dial: Dial::Connecting { backend, .. },
                ..
            } => match attempt::connect_result(backend) {
                Ok(true) => Err(Step::Upgrade),
                Ok(false) => Ok(false),
                Err(error) => self.connect_failed(key, client, services, error),
            },
        }
    }

    /// The pool for this connection: the listener's, or `route(conn)`'s.
    fn route(&mut self, client: &Client, services: &mut Services) -> Option<Attempt> {
        let App::Tcp { pool, listen } = &*client.app else {
            return None;
        };
        let mut transaction = Transaction::new(crate::timer::now(), false);
        if let Some(ids) = services.request_ids.as_mut() {
            ids.generate(&mut self.request.request_id);
        }
        let pool = match pool {
            Some(name) => services.pools.iter().position(|pool| &pool.name == name),
            None => {
                let connection = ConnectionView {
                    client: client.address,
                    listen: *listen,
                };
                match services
                    .router
                    .route_connection(&connection, &services.pools)
                {
                    Ok(Route::Pool(pool, _)) => Some(pool),
                    Ok(Route::Address(server)) => {
                        self.transaction = Some(transaction);
                        return Some(Attempt::new(Target::Address(server)));
                    }
                    Ok(Route::Reply(_)) => {
                        crate::client_log!(
                            log::Level::Warn,
                            "{}: route(conn) returned a reply; a tcp connection needs a pool",
                            client.address
                        );
                        None
                    }
                    Err(error) => {
                        crate::client_log!(
                            log::Level::Warn,
                            "{}: tcp on {listen}: route(conn) chose no pool: {error:?}",
                            client.address
                        );
                        None
                    }
                }
            }
        };
        transaction.pool = pool;
        self.transaction = Some(transaction);
        // Hash balancing keeps a client address on one server.
        let key = Some(client.address.ip().to_string().into_bytes());
        pool.map(|pool| Attempt::new(Target::Pool { pool, key }))
    }

    fn dial(
        &mut self,
        key: usize,
        client: &Client,
        services: &mut Services,
        mut attempt: Attempt,
        waited: bool,
    ) -> Result<bool, Step> {
        let request = DialRequest {
            waiter: key,
            client: client.address,
            host: b"",
            reuse: false,
            waited,
        };
        match attempt.dial(services, &request) {
            Ok(dial) => {
                if let Dial::Connecting { backend, .. } = &dial {
                    self.to_backend.clear();
                    let out = self.to_backend.tail();
                    attempt.begin_on(backend, services, client, self.transaction.as_mut(), out);
                }
                self.connect = Connect::Dialing { attempt, dial };
                Ok(true)
            }
            Err(reply) => Err(self.refuse(reply)),
        }
    }

    /// No HTTP on a tcp connection: an error just closes it.
    fn refuse(&mut self, reply: ErrorReply) -> Step {
        if let Some(transaction) = &mut self.transaction {
            transaction.status = reply.status();
        }
        Step::Close(End::Done { linger: false })
    }

    fn connect_failed(
        &mut self,
        key: usize,
        client: &Client,
        services: &mut Services,
        error: io::Error,
    ) -> Result<bool, Step> {
        let Connect::Dialing { mut attempt, dial } = self.take_connect() else {
            return Ok(false);
        };
        let server = match &dial {
            Dial::Connecting { backend, .. } => backend.server,
            Dial::Queued { .. } => return Ok(false),
        };
        match attempt.connect_failed(services, client.address, server, &error) {
            Ok(()) => self.dial(key, client, services, attempt, true),
            Err(reply) => Err(self.refuse(reply)),
        }
    }

    pub fn deadline(
        &self,
        last: Instant,
        client_header: std::time::Duration,
    ) -> (Instant, Timeout) {
        match &self.connect {
            Connect::Dialing {
                dial: Dial::Queued { deadline, .. },
                ..
            } => (*deadline, Timeout::Queue),
            Connect::Dialing {
                dial: Dial::Connecting { deadline, .. },
                ..
            } => (*deadline, Timeout::Connect),
            Connect::Unrouted => (last + client_header, Timeout::Silent),
        }
    }

    pub fn expire(
        &mut self,
        key: usize,
        client: &Client,
        services: &mut Services,
        timeout: Timeout,
    ) -> Step {
        match timeout {
            Timeout::Queue => {
                if let Connect::Dialing {
                    attempt:
                        Attempt {
                            target: Target::Pool { pool, .. },
                            ..
                        },
                    ..
                } = &self.connect
                {
                    let pool = &mut services.pools[*pool];
                    pool.dequeue(key);
                    crate::client_log!(
                        log::Level::Warn,
                        "{}: 503, no server of pool {} was free within the queue timeout",
                        client.address,
                        pool.name
                    );
                }
                self.connect = Connect::Unrouted;
                self.refuse(ErrorReply::NoRoute)
            }
            Timeout::Connect => {
                let error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                match self.connect_failed(key, client, services, error) {
                    Ok(_) => Step::Continue { progress: true },
                    Err(step) => step,
                }
            }
            _ => Step::Close(End::Done { linger: false }),
        }
    }

    pub fn update_interest(
        &mut self,
        client: &mut Client,
        registry: &Registry,
        token: Token,
    ) -> io::Result<()> {
        if let Connect::Dialing {
            dial: Dial::Connecting { backend, .. },
            ..
        } = &mut self.connect
        {
            let backend_token = backend.token();
            backend
                .endpoint
                .update_interest(registry, backend_token, true)?;
        }
        let wants_write = client.transport.wants_write();
        client
            .transport
            .endpoint_mut()
            .update_interest(registry, token, wants_write)
    }

    pub fn backend_mut(&mut self) -> Option<&mut Endpoint> {
        match &mut self.connect {
            Connect::Dialing { dial, .. } => dial.backend_mut(),
            Connect::Unrouted => None,
        }
    }

    pub fn wake(&mut self) {
        if let Connect::Dialing { dial, .. } = &mut self.connect {
            dial.wake();
        }
    }

    pub fn follow_reload(
        &mut self,
        moved: &[Vec<Option<(usize, usize)>>],
        pool_moved: &[Option<usize>],
    ) -> bool {
        if let Connect::Dialing { attempt, .. } = &mut self.connect {
            attempt.follow_reload(moved, pool_moved);
        }
        false
    }

    /// Connected: the same sockets go on as a tunnel.
    pub fn into_tunnel(self) -> Option<Tunnel> {
        let TcpConnect {
            inbound,
            outbound,
            to_backend,
            connect,
            request,
            transaction,
        } = self;
        match connect {
            Connect::Dialing {
                attempt,
                dial: Dial::Connecting { backend, .. },
            } => Some(Tunnel::new(
                backend,
                Some(attempt),
                [inbound, outbound],
                [Queue::default(), to_backend],
                request,
                transaction,
            )),
            _ => None,
        }
    }

    pub fn close(mut self, key: usize, services: &mut Services, end: &End) {
        client_left(&mut self.transaction, end);
        match &mut self.connect {
            Connect::Dialing {
                attempt,
                dial: Dial::Queued { .. },
            } => {
                if let Target::Pool { pool, .. } = attempt.target {
                    services.pools[pool].dequeue(key);
                }
            }
            Connect::Dialing { attempt, .. } => {
                attempt.release(services, crate::balancer::Outcome::Ok)
            }
            Connect::Unrouted => {}
        }
        finish_transaction(
            &mut self.transaction,
            &mut self.request,
            services,
            false,
            false,
        );
    }
}
