//! One Redis connection's traffic, without its socket: commands queued
//! for writing (bounded), the replies expected in the order the commands
//! went, and the bytes read that do not yet make a reply (bounded).

use std::collections::VecDeque;
use std::time::Instant;

use super::resp::{self, Reply, ReplyError};

/// Commands waiting for their replies, at most; past it, new commands are
/// refused (the caller counts them and goes on without Redis).
pub const MAX_PENDING: usize = 1024;
/// Bytes of commands not yet written, at most.
pub const MAX_UNSENT: usize = 1024 * 1024;
/// The largest reply rsp reads; a larger one ends the connection.
pub const MAX_REPLY: usize = 8 * 1024 * 1024;

/// A command refused: the queue is full. Its purpose comes back, so
/// what waited for it (an admin change) can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full<P>(pub P);

pub struct Pipeline<P> {
    unsent: Vec<u8>,
    input: Vec<u8>,
    /// How far the reply being read was scanned.
    scan: resp::Scan,
    /// What each awaited reply is for, and when its command was queued.
    awaited: VecDeque<(P, Instant)>,
    /// A subscribed connection's: what a message (a reply to no
    /// command) is for.
    messages: Option<fn() -> P>,
}

impl<P> Default for Pipeline<P> {
    fn default() -> Self {
        Pipeline {
            unsent: Vec::new(),
            input: Vec::new(),
            scan: resp::Scan::default(),
            awaited: VecDeque::new(),
            messages: None,
        }
    }
}

impl<P> Pipeline<P> {
    /// A pipeline whose connection subscribes: a pub/sub message
    /// (`["message", channel, payload]`, which no command's reply looks
    /// like) is `message()`'s, not the next awaited reply.
    pub fn subscriber(message: fn() -> P) -> Pipeline<P> {
        Pipeline {
            messages: Some(message),
            ..Pipeline::default()
        }
    }

    /// Queues a command whose reply is for `purpose`.
    pub fn push(&mut self, purpose: P, args: &[&[u8]], now: Instant) -> Result<(), Full<P>> {
        let size: usize = args.iter().map(|arg| arg.len() + 16).sum();
        if self.awaited.len() >= MAX_PENDING || self.unsent.len() + size > MAX_UNSENT {
            return Err(Full(purpose));
        }
        resp::command(&mut self.unsent, args);
        self.awaited.push_back((purpose, now));
        Ok(())
    }

    /// Bytes to write.
    pub fn unsent(&self) -> &[u8] {
        &self.unsent
    }

    /// `count` bytes were written.
    pub fn sent(&mut self, count: usize) {
        self.unsent.drain(..count);
        if self.unsent.is_empty() && self.unsent.capacity() > 64 * 1024 {
            self.unsent = Vec::new();
        }
    }

    /// When the oldest command still waiting for its reply was queued.
    pub fn oldest(&self) -> Option<Instant> {
        self.awaited.front().map(|(_, since)| *since)
    }

    /// Commands waiting for replies.
    pub fn pending(&self) -> usize {
        self.awaited.len()
    }

    /// Room for `count` more bytes of input, within the reply bound.
    pub fn input_room(&self) -> usize {
        MAX_REPLY.saturating_sub(self.input.len())
    }

    /// Bytes read: the replies they complete go to `replies`, each with
    /// its purpose and when its command was queued (those complete before
    /// an error too: what they were for is answered all the same).
    pub fn received(
        &mut self,
        bytes: &[u8],
        replies: &mut Vec<(P, Instant, Reply)>,
    ) -> Result<(), ReplyError> {
        self.input.extend_from_slice(bytes);
        let mut at = 0;
        while let Some(length) = resp::extent_from(&self.input[at..], &mut self.scan)? {
            let reply = resp::decode(&self.input[at..at + length])?;
            at += length;
            if let Some(message) = self.messages
                && is_message(&reply)
            {
                replies.push((message(), Instant::now(), reply));
                continue;
            }
            let Some((purpose, since)) = self.awaited.pop_front() else {
                return Err(ReplyError("a reply to no command".into()));
            };
            replies.push((purpose, since, reply));
        }
        self.input.drain(..at);
        if self.input.len() >= MAX_REPLY {
            return Err(ReplyError(format!("a reply over {MAX_REPLY} bytes")));
        }
        if self.input.is_empty() && self.input.capacity() > 64 * 1024 {
            self.input = Vec::new();
        }
        Ok(())
    }

    /// The connection ended: what was awaited is lost; returns it.
    pub fn reset(&mut self) -> Vec<P> {
        self.unsent.clear();
        self.input.clear();
        self.scan = resp::Scan::default();
        self.awaited.drain(..).map(|(purpose, _)| purpose).collect()
    }
}

/// A pub/sub message: `["message", channel, payload]`.
fn is_message(reply: &Reply) -> bool {
    matches!(reply, Reply::Array(parts)
        if parts.len() == 3 && matches!(&parts[0], Reply::BulkString(kind) if kind == b"message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_meet_their_commands_in_order_however_they_are_split() {
        let now = Instant::now();
        let mut pipeline = Pipeline::default();
        pipeline.push("ping", &[b"PING"], now).unwrap();
        pipeline.push("get", &[b"GET", b"k"], now).unwrap();
        assert_eq!(
            pipeline.unsent(),
            b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
        pipeline.sent(pipeline.unsent().len());
        let bytes = b"+PONG\r\n$5\r\nvalue\r\n";
        let mut got = Vec::new();
        let mut replies = Vec::new();
        for byte in bytes {
            pipeline.received(&[*byte], &mut replies).unwrap();
        }
        for (purpose, _, reply) in replies {
            got.push((purpose, reply));
        }
        assert_eq!(
            got,
            [
                ("ping", Reply::SimpleString(b"PONG".to_vec())),
                ("get", Reply::BulkString(b"value".to_vec()))
            ]
        );
        assert_eq!(pipeline.pending(), 0);
        assert!(
            pipeline.received(b":1\r\n", &mut Vec::new()).is_err(),
            "a reply nobody asked for"
        );
    }

    #[test]
    fn messages_are_told_from_replies() {
        let now = Instant::now();
        let mut pipeline = Pipeline::subscriber(|| "message");
        pipeline
            .push("subscribe", &[b"SUBSCRIBE", b"c"], now)
            .unwrap();
        pipeline.push("ping", &[b"PING"], now).unwrap();
        let bytes = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n\
                      *3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\napps\r\n\
                      *2\r\n$4\r\npong\r\n$0\r\n\r\n\
                      *3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$6\r\napps k\r\n";
        let mut replies = Vec::new();
        pipeline.received(bytes, &mut replies).unwrap();
        let purposes: Vec<&str> = replies.into_iter().map(|(purpose, _, _)| purpose).collect();
        assert_eq!(purposes, ["subscribe", "message", "ping", "message"]);
        // On a connection that did not subscribe, it is a reply to no command.
        let mut plain: Pipeline<&str> = Pipeline::default();
        assert!(
            plain
                .received(
                    b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n",
                    &mut Vec::new()
                )
                .is_err()
        );
    }

    #[test]
    fn the_queue_and_the_input_are_bounded() {
        let now = Instant::now();
        let mut pipeline = Pipeline::default();
        for _ in 0..MAX_PENDING {
            pipeline.push((), &[b"PING"], now).unwrap();
        }
        assert_eq!(pipeline.push((), &[b"PING"], now), Err(Full(())));
        let mut huge = Pipeline::default();
        huge.push((), &[b"GET", b"k"], now).unwrap();
        let header = format!("${}\r\n", MAX_REPLY * 2);
        let mut replies = Vec::new();
        huge.received(header.as_bytes(), &mut replies).unwrap();
        assert!(replies.is_empty());
        let chunk = vec![b'x'; 1024 * 1024];
        let mut refused = false;
        for _ in 0..16 {
            if huge.received(&chunk, &mut replies).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "a reply past MAX_REPLY is refused");
        assert_eq!(huge.reset(), [()]);
    }
}
