//! A bounded, one-directional byte buffer: one per direction of a session.
//!
//! The buffer knows whether it may read (it is not full) and what it holds
//! for writing; backpressure is `is_full()`, checked in one place by the
//! session before it reads a socket.

use std::io::{self, Read};

/// Memory is taken in steps, so an idle or small exchange never holds the
/// whole bound.
const FIRST_ALLOCATION: usize = 8 * 1024;

pub struct Buffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    limit: usize,
}

/// What one `fill_from` saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fill {
    pub read: usize,
    /// The source signalled end of stream.
    pub eof: bool,
    /// The source has nothing more for now; wait for its next readiness event.
    pub drained: bool,
}

impl Buffer {
    pub fn new(limit: usize) -> Buffer {
        Buffer {
            bytes: Vec::new(),
            start: 0,
            end: 0,
            limit,
        }
    }

    pub fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn is_full(&self) -> bool {
        self.len() >= self.limit
    }

    pub fn consume(&mut self, count: usize) {
        debug_assert!(count <= self.len());
        self.start += count.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads from `source` until it would block, ends, or the buffer is full.
    pub fn fill_from<R: Read>(&mut self, source: &mut R) -> io::Result<Fill> {
        let mut fill = Fill::default();
        while !self.is_full() {
            self.make_room();
            match source.read(&mut self.bytes[self.end..]) {
                Ok(0) => {
                    fill.eof = true;
                    break;
                }
                Ok(count) => {
                    self.end += count;
                    fill.read += count;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    fill.drained = true;
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
        Ok(fill)
    }

    /// Ensures there is free space after `end`, growing up to the limit and
    /// moving live bytes to the front when that frees enough.
    fn make_room(&mut self) {
        if self.end < self.bytes.len() {
            return;
        }
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end < self.bytes.len() {
                return;
            }
        }
        let grown = (self.bytes.len() * 2).clamp(FIRST_ALLOCATION.min(self.limit), self.limit);
        self.bytes.resize(grown, 0);
    }

    /// Gives back the memory of an empty buffer, so idle keep-alive
    /// connections stay cheap.
    pub fn release(&mut self) {
        if self.is_empty() && self.bytes.len() > FIRST_ALLOCATION {
            self.bytes = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that yields its chunks one read at a time, then would block.
    struct Chunks(Vec<Vec<u8>>, bool);

    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return if self.1 {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let chunk = &mut self.0[0];
            let count = chunk.len().min(out.len());
            out[..count].copy_from_slice(&chunk[..count]);
            chunk.drain(..count);
            if chunk.is_empty() {
                self.0.remove(0);
            }
            Ok(count)
        }
    }

    #[test]
    fn stops_at_the_limit_and_resumes_after_consume() {
        let mut buffer = Buffer::new(10);
        let mut source = Chunks(vec![b"0123456789abcdef".to_vec()], false);
        let fill = buffer.fill_from(&mut source).unwrap();
        assert_eq!(fill.read, 10);
        assert!(!fill.drained);
        assert!(buffer.is_full());
        assert_eq!(buffer.data(), b"0123456789");
        buffer.consume(4);
        let fill = buffer.fill_from(&mut source).unwrap();
        assert_eq!(fill.read, 4);
        assert_eq!(buffer.data(), b"456789abcd");
        buffer.consume(10);
        let fill = buffer.fill_from(&mut source).unwrap();
        assert_eq!(
            fill,
            Fill {
                read: 2,
                eof: false,
                drained: true
            }
        );
        assert_eq!(buffer.data(), b"ef");
    }

    #[test]
    fn reports_end_of_stream() {
        let mut buffer = Buffer::new(100);
        let mut source = Chunks(vec![b"ab".to_vec()], true);
        let fill = buffer.fill_from(&mut source).unwrap();
        assert_eq!(fill.read, 2);
        assert!(fill.eof);
    }

    #[test]
    fn grows_in_steps_up_to_the_limit() {
        let mut buffer = Buffer::new(64 * 1024);
        let mut source = Chunks(vec![vec![7u8; 20_000]], false);
        buffer.fill_from(&mut source).unwrap();
        assert_eq!(buffer.len(), 20_000);
        assert!(buffer.bytes.len() <= 32 * 1024);
        buffer.consume(20_000);
        buffer.release();
        assert_eq!(buffer.bytes.len(), 0);
    }
}
