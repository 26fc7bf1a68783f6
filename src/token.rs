//! The one codec between mio tokens and what they stand for. Ranges of the
//! token space belong to each kind; a backend socket's token comes from its
//! descriptor, so it stays the same while the socket moves between a
//! session and the idle store (no `epoll_ctl` for the hand-off).

use std::os::fd::RawFd;

use mio::Token;

const HEALTH_BASE: usize = usize::MAX / 4;
const BACKEND_BASE: usize = usize::MAX / 8 * 3;
const LISTENER_BASE: usize = usize::MAX / 2;
const REDIS_SUBSCRIBER: usize = usize::MAX - 3;
const REDIS: usize = usize::MAX - 2;
const WAKER: usize = usize::MAX - 1;
const SIGNAL: usize = usize::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A client socket: its session's slab key.
    Client(usize),
    /// A running health check, by its key.
    Health(usize),
    /// A backend socket, by descriptor (a session's or the idle store's).
    Backend(RawFd),
    /// A listening socket, by its slot.
    Listener(usize),
    /// The process's Redis connection (worker 0's).
    Redis,
    /// Its second connection, subscribed to the live maps' changes.
    RedisSubscriber,
    /// Another worker left commands in this one's mailbox.
    Waker,
    /// A signal arrived.
    Signal,
}

impl TokenKind {
    pub fn token(self) -> Token {
        Token(match self {
            TokenKind::Client(key) => key,
            TokenKind::Health(key) => HEALTH_BASE + key,
            TokenKind::Backend(fd) => BACKEND_BASE + fd as usize,
            TokenKind::Listener(slot) => LISTENER_BASE + slot,
            TokenKind::Redis => REDIS,
            TokenKind::RedisSubscriber => REDIS_SUBSCRIBER,
            TokenKind::Waker => WAKER,
            TokenKind::Signal => SIGNAL,
        })
    }

    pub fn of(token: Token) -> TokenKind {
        match token.0 {
            SIGNAL => TokenKind::Signal,
            WAKER => TokenKind::Waker,
            REDIS => TokenKind::Redis,
            REDIS_SUBSCRIBER => TokenKind::RedisSubscriber,
            value if value >= LISTENER_BASE => TokenKind::Listener(value - LISTENER_BASE),
            value if value >= BACKEND_BASE => {
                RawFd::try_from(value - BACKEND_BASE).map_or(TokenKind::Waker, TokenKind::Backend)
            }
            value if value >= HEALTH_BASE => TokenKind::Health(value - HEALTH_BASE),
            key => TokenKind::Client(key),
        }
    }
}

/// Where the high bits of a pool queue's entry (a waiter) start: below
/// them, the session's key; in them, the HTTP/2 stream's slot + 1, or 0
/// for the session itself (an HTTP/1 request, a tcp connection).
const STREAM_SHIFT: u32 = 32;

/// The queue entry of `session`, or of its stream in `slot`.
pub fn waiter(session: usize, slot: Option<usize>) -> usize {
    session | slot.map_or(0, |slot| (slot + 1) << STREAM_SHIFT)
}

/// The session and stream slot of a queue entry.
pub fn waiter_parts(waiter: usize) -> (usize, Option<usize>) {
    let session = waiter & ((1 << STREAM_SHIFT) - 1);
    let slot = (waiter >> STREAM_SHIFT).checked_sub(1);
    (session, slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_comes_back_as_itself() {
        let kinds = [
            TokenKind::Client(0),
            TokenKind::Client(123_456),
            TokenKind::Health(0),
            TokenKind::Health(77),
            TokenKind::Backend(0),
            TokenKind::Backend(RawFd::MAX),
            TokenKind::Listener(0),
            TokenKind::Listener(9),
            TokenKind::Redis,
            TokenKind::RedisSubscriber,
            TokenKind::Waker,
            TokenKind::Signal,
        ];
        for kind in kinds {
            assert_eq!(TokenKind::of(kind.token()), kind, "{kind:?}");
        }
        // The ranges do not overlap.
        assert!(TokenKind::Backend(RawFd::MAX).token().0 < TokenKind::Listener(0).token().0);
        assert!(TokenKind::Health(1 << 40).token().0 < TokenKind::Backend(0).token().0);
    }

    #[test]
    fn waiters_come_back_as_their_session_and_stream() {
        for (session, slot) in [(0, None), (7, None), (7, Some(0)), (123_456, Some(99))] {
            assert_eq!(waiter_parts(waiter(session, slot)), (session, slot));
        }
        assert_eq!(waiter(5, None), 5);
    }
}
