//! A bounded, one-directional byte buffer: one per direction of a session.
//!
//! The buffer knows whether it may read (it is not full) and what it holds
//! for writing; backpressure is `is_full()`, checked in one place by the
//! session before it reads a socket.

use std::cell::RefCell;
use std::io::{self, Read};

use crate::memory;

/// Storage is taken in steps, so a small exchange never holds the whole
/// bound (HAProxy's default buffer size).
const FIRST_ALLOCATION: usize = 16 * 1024;
/// Storage of empty buffers kept for reuse, per thread.
const MAX_SPARE_BYTES: usize = 4 * 1024 * 1024;

/// A buffer holds storage only while it holds bytes: an idle keep-alive
/// connection costs no buffer memory. Empty buffers give their storage back
/// here and take it again on the next read. Each event loop runs on its own
/// thread, so this list is the loop's own: taking and giving back is a pop
/// and a push, with no lock and, once warm, no allocation.
struct Spare {
    storage: Vec<Vec<u8>>,
    bytes: usize,
    /// The fewest pieces of storage the list held since it was last
    /// trimmed: that many were not needed in that time.
    low: usize,
}

thread_local! {
    static SPARE: RefCell<Spare> = const {
        RefCell::new(Spare { storage: Vec::new(), bytes: 0, low: 0 })
    };
}

fn take_storage() -> Vec<u8> {
    SPARE
        .with_borrow_mut(|spare| {
            let storage = spare.storage.pop()?;
            spare.bytes -= storage.len();
            spare.low = spare.low.min(spare.storage.len());
            Some(storage)
        })
        .unwrap_or_else(|| vec![0; FIRST_ALLOCATION])
}

/// Frees the spare storage that was not taken since the last trim (the
/// list kept at a burst's peak would otherwise hold it for good); returns
/// the bytes freed. Called once a second by the worker.
pub fn trim_spare() -> usize {
    SPARE.with_borrow_mut(|spare| {
        let unused = spare.low.min(spare.storage.len());
        let mut freed = 0;
        for storage in spare.storage.drain(..unused) {
            freed += storage.len();
        }
        spare.bytes -= freed;
        spare.low = spare.storage.len();
        freed
    })
}

fn give_storage(storage: Vec<u8>) {
    SPARE.with_borrow_mut(|spare| {
        if spare.bytes + storage.len() <= MAX_SPARE_BYTES {
            spare.bytes += storage.len();
            spare.storage.push(storage);
        }
    });
}

pub struct Buffer {
    /// Empty (no allocation) whenever the buffer holds no bytes.
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    /// The bound (at most 4 GiB: the config's is 1 GiB at most), 32 bits
    /// so that `streaming` costs an idle connection nothing.
    limit: u32,
    /// A buffer any size serves (an answer passed on): past the worker's
    /// memory limit it keeps the storage it has rather than grow to its
    /// bound (`memory::may_grow`). Buffers that must hold a whole thing
    /// (a request head, an HTTP/2 frame) always may.
    streaming: bool,
}

/// What one `fill_from` saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fill {
    pub read: usize,
    /// The source signalled end of stream.
    pub eof: bool,
    /// The source has nothing more for now (it would block, or gave less
    /// than asked for): wait for its next readiness event.
    pub drained: bool,
}

impl Buffer {
    pub fn new(limit: usize) -> Buffer {
        Buffer {
            bytes: Vec::new(),
            start: 0,
            end: 0,
            limit: clamp(limit),
            streaming: false,
        }
    }

    /// A buffer whose bytes pass through, any size serving (see `streaming`).
    pub fn streaming(limit: usize) -> Buffer {
        let mut buffer = Buffer::new(limit);
        buffer.streaming = true;
        buffer
    }

    /// What the buffer may hold now: its limit, or past the worker's
    /// memory limit, for a streaming one, the storage it has already.
    fn bound(&self) -> usize {
        if self.streaming && !memory::may_grow() {
            self.limit().min(self.bytes.len().max(FIRST_ALLOCATION))
        } else {
            self.limit()
        }
    }

    /// A new bound (from a reload), for a buffer that holds nothing.
    pub fn set_limit(&mut self, limit: usize) {
        debug_assert!(self.is_empty());
        self.limit = clamp(limit);
    }

    /// A larger bound, even while the buffer holds bytes (never smaller).
    pub fn raise_limit(&mut self, limit: usize) {
        self.limit = self.limit.max(clamp(limit));
    }

    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Appends what fits of `bytes`; returns how many went.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let mut source = bytes;
        // A slice reads to its end, then reports the end: no error.
        let _ = self.fill_from(&mut source, true);
        bytes.len() - source.len()
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

    /// What the buffer could hold beyond its first `used` bytes.
    pub fn capacity_left(&self, used: usize) -> usize {
        self.limit().saturating_sub(used)
    }

    pub fn is_full(&self) -> bool {
        // The memory bound matters only once the storage is all data: the
        // common case never looks at it.
        self.len() >= self.limit()
            || (self.streaming
                && self.len() == self.bytes.len()
                && self.bytes.len() >= self.bound())
    }

    /// The storage it holds, in bytes (counted in what the worker holds:
    /// `memory::held`).
    pub fn held(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the buffer holds storage (only while it holds bytes).
    pub fn has_storage(&self) -> bool {
        !self.bytes.is_empty()
    }

    pub fn consume(&mut self, count: usize) {
        debug_assert!(count <= self.len());
        self.start += count.min(self.len());
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.give_back();
        }
    }

    /// Reads from `source` until it would block, ends, or the buffer is
    /// full. A short read ends it too, unless `end_reported`: the poller
    /// already told of the source's end (or an error), which it will not
    /// tell again, so reading goes on until that end is seen.
    pub fn fill_from<R: Read>(&mut self, source: &mut R, end_reported: bool) -> io::Result<Fill> {
        let mut fill = Fill::default();
        while !self.is_full() {
            self.make_room();
            let room_end = self.room_end();
            match source.read(&mut self.bytes[self.end..room_end]) {
                Ok(0) => {
                    fill.eof = true;
                    break;
                }
                Ok(count) => {
                    self.end += count;
                    fill.read += count;
                    // Less than asked for: the socket is empty now. Edge-
                    // triggered polling reports the next bytes (or the
                    // end), so asking again would only earn an EAGAIN.
                    if self.end < room_end && !end_reported {
                        fill.drained = true;
                        break;
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    fill.drained = true;
                    break;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    if self.is_empty() {
                        self.give_back();
                    }
                    return Err(error);
                }
            }
        }
        if self.is_empty() {
            self.give_back();
        }
        Ok(fill)
    }

    /// Where reading may stop: the end of the storage, or the bound.
    fn room_end(&self) -> usize {
        // The storage never outgrows the memory bound (`make_room`).
        self.bytes.len().min(self.start + self.limit())
    }

    /// Ensures there is free space after `end`: storage taken if there is
    /// none, live bytes moved to the front, or the storage grown up to the
    /// limit.
    fn make_room(&mut self) {
        if self.bytes.is_empty() {
            self.bytes = take_storage();
            memory::hold(self.bytes.len());
        }
        if self.end < self.room_end() {
            return;
        }
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end < self.room_end() {
                return;
            }
        }
        let grown = (self.bytes.len() * 2).min(self.bound().max(self.bytes.len()));
        memory::hold(grown - self.bytes.len());
        self.bytes.resize(grown, 0);
    }

    fn give_back(&mut self) {
        if !self.bytes.is_empty() {
            memory::release(self.bytes.len());
            give_storage(std::mem::take(&mut self.bytes));
        }
    }
}

fn clamp(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX)
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.give_back();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_storage_not_taken_for_a_second_is_freed() {
        trim_spare();
        trim_spare();
        // A burst: four buffers fill, then empty.
        let mut buffers: Vec<Buffer> = (0..4).map(|_| Buffer::new(1 << 20)).collect();
        for buffer in &mut buffers {
            buffer.push(b"x");
        }
        for buffer in &mut buffers {
            buffer.consume(1);
        }
        // The next look keeps what the last second may have needed...
        assert_eq!(trim_spare(), 0);
        // ...and one buffer used since; the three never taken go.
        buffers[0].push(b"y");
        buffers[0].consume(1);
        assert_eq!(trim_spare(), 3 * FIRST_ALLOCATION);
        assert_eq!(trim_spare(), FIRST_ALLOCATION);
        assert_eq!(trim_spare(), 0);
    }

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
        let fill = buffer.fill_from(&mut source, false).unwrap();
        assert_eq!(fill.read, 10);
        assert!(!fill.drained);
        assert!(buffer.is_full());
        assert_eq!(buffer.data(), b"0123456789");
        buffer.consume(4);
        let fill = buffer.fill_from(&mut source, false).unwrap();
        assert_eq!(fill.read, 4);
        assert_eq!(buffer.data(), b"456789abcd");
        buffer.consume(10);
        let fill = buffer.fill_from(&mut source, false).unwrap();
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
        // A short read is taken as "empty for now"...
        let mut buffer = Buffer::new(100);
        let mut source = Chunks(vec![b"ab".to_vec()], true);
        let fill = buffer.fill_from(&mut source, false).unwrap();
        assert_eq!(fill.read, 2);
        assert!(fill.drained && !fill.eof);
        // ... unless the end was already reported: then it is read to the end.
        let mut buffer = Buffer::new(100);
        let mut source = Chunks(vec![b"ab".to_vec()], true);
        let fill = buffer.fill_from(&mut source, true).unwrap();
        assert_eq!(fill.read, 2);
        assert!(fill.eof);
    }

    #[test]
    fn grows_in_steps_up_to_the_limit() {
        let mut buffer = Buffer::new(64 * 1024);
        let mut source = Chunks(vec![vec![7u8; 20_000]], false);
        buffer.fill_from(&mut source, false).unwrap();
        assert_eq!(buffer.len(), 20_000);
        assert!(buffer.bytes.len() <= 32 * 1024);
        buffer.consume(20_000);
        assert!(!buffer.has_storage());
    }

    #[test]
    fn holds_storage_only_while_it_holds_bytes() {
        let mut buffer = Buffer::new(64 * 1024);
        // A readiness event with nothing to read leaves no storage behind.
        let fill = buffer
            .fill_from(&mut Chunks(Vec::new(), false), false)
            .unwrap();
        assert!(fill.drained && !buffer.has_storage());
        buffer
            .fill_from(&mut Chunks(vec![b"abc".to_vec()], false), false)
            .unwrap();
        assert!(buffer.has_storage());
        buffer.consume(2);
        assert!(buffer.has_storage());
        buffer.consume(1);
        assert!(!buffer.has_storage());
        // The storage went to the spare list and comes back from it.
        let spare_before = SPARE.with_borrow(|spare| spare.storage.len());
        assert!(spare_before >= 1);
        buffer
            .fill_from(&mut Chunks(vec![b"d".to_vec()], false), false)
            .unwrap();
        assert_eq!(
            SPARE.with_borrow(|spare| spare.storage.len()),
            spare_before - 1
        );
        assert_eq!(buffer.data(), b"d");
    }

    #[test]
    fn storage_is_counted_while_held() {
        let before = crate::memory::held();
        let mut buffer = Buffer::new(64 * 1024);
        buffer
            .fill_from(&mut Chunks(vec![vec![1u8; 40_000]], false), false)
            .unwrap();
        assert_eq!(crate::memory::held(), before + buffer.bytes.len());
        assert!(buffer.bytes.len() >= 40_000);
        buffer.consume(40_000);
        assert_eq!(crate::memory::held(), before);
        buffer.push(b"x");
        assert!(crate::memory::held() > before);
        drop(buffer);
        assert_eq!(crate::memory::held(), before);
    }

    #[test]
    fn a_streaming_buffer_stops_growing_past_the_memory_limit() {
        let mut streaming = Buffer::streaming(256 * 1024);
        let mut whole = Buffer::new(256 * 1024);
        crate::memory::set_share(1);
        for buffer in [&mut streaming, &mut whole] {
            let mut source = Chunks(vec![vec![1u8; 100_000]], false);
            buffer.fill_from(&mut source, false).unwrap();
        }
        assert_eq!(streaming.len(), FIRST_ALLOCATION);
        assert!(streaming.is_full());
        assert_eq!(
            whole.len(),
            100_000,
            "a head must fit whatever the pressure"
        );
        // It goes on: what is taken out makes room again.
        streaming.consume(1000);
        let mut source = Chunks(vec![vec![2u8; 5000]], false);
        assert_eq!(streaming.fill_from(&mut source, false).unwrap().read, 1000);
        crate::memory::set_share(usize::MAX / 2);
        let mut source = Chunks(vec![vec![3u8; 100_000]], false);
        streaming.fill_from(&mut source, false).unwrap();
        assert!(streaming.len() > FIRST_ALLOCATION);
    }

    #[test]
    fn a_bound_below_the_first_allocation_is_kept() {
        let mut buffer = Buffer::new(1024);
        let mut source = Chunks(vec![vec![1u8; 5000]], false);
        assert_eq!(buffer.fill_from(&mut source, false).unwrap().read, 1024);
        assert!(buffer.is_full());
        buffer.consume(1000);
        assert_eq!(buffer.fill_from(&mut source, false).unwrap().read, 1000);
        assert_eq!(buffer.len(), 1024);
    }
}
