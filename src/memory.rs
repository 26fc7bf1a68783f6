//! What a worker holds for its clients, and the bounds on it.
//!
//! Every client shares one process: a client that makes rsp hold much
//! (streams it never reads, heads and `req.ctx` it keeps alive) must run
//! into its own bound, not into everyone's. So rsp counts what it holds —
//! buffer storage and request heads here, exactly, as they are taken and
//! given back, and the script's Lua state from its allocator — and bounds
//! it three ways (`memory = { ... }` in the config):
//!
//! - one request's `req.ctx` (`script_per_request`): past it, that
//!   request fails (500);
//! - one client connection (`per_connection`): an HTTP/2 connection's
//!   streams together; past it, its new streams are refused
//!   (REFUSED_STREAM, which a client retries);
//! - the process (`limit`, shared out among the workers): at
//!   three quarters of it, exchanges that hold memory while their client
//!   takes nothing (a window shut, a socket not read, a body trickled) are
//!   cut after a grace (`stall_grace`, shorter the nearer the bound); at
//!   the limit, answer buffers stop growing and a connection's second and
//!   later exchanges are refused; at the ceiling (a quarter over) every
//!   new one is, with 503 or REFUSED_STREAM. RSS follows: the counted
//!   bytes are the bulk of it (see README, Security).

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    /// Bytes held by this worker's buffers and request heads.
    static HELD: Cell<usize> = const { Cell::new(0) };
    /// What the script's Lua state held after its last hook call.
    static SCRIPT: Cell<usize> = const { Cell::new(0) };
    /// This worker's share of `memory.limit` (unbounded until set).
    static SHARE: Cell<usize> = const { Cell::new(usize::MAX / 2) };
}

/// This worker's share of `memory.limit` (at start, and on reload).
pub fn set_share(bytes: usize) {
    SHARE.set(bytes);
}

/// What the script's state holds now (after each hook call).
pub fn set_script(bytes: usize) {
    SCRIPT.set(bytes);
}

/// All this worker holds for its clients: buffers, heads, the script.
pub fn total() -> usize {
    HELD.get() + SCRIPT.get()
}

/// How near its bound the worker is, now.
pub fn pressure() -> Pressure {
    Pressure::of(total(), SHARE.get())
}

/// Whether answer buffers may take more storage than their first: not
/// past the limit, where every exchange goes on with what it has (at a
/// lower pace) rather than each taking its whole bound. Looked at as each
/// buffer grows, so a burst of answers cannot overshoot between looks.
pub fn may_grow() -> bool {
    pressure() < Pressure::Full
}

/// The script's state is collected in full once it grew this much (or
/// an eighth of the share) since its last collection.
pub const MIN_COLLECT: usize = 4 << 20;

/// Storage freed at once beyond which it is handed back to the system.
const RETURN_AT: usize = 1 << 20;

/// `freed` bytes went from the spare lists (what they kept beyond the last
/// second's needs): when that comes to `RETURN_AT`, the allocator gives
/// its free pages back to the system (glibc keeps freed memory in its
/// heap, so RSS would stay at a burst's peak). Called once a second by the
/// worker.
pub fn trimmed(freed: usize) {
    if freed >= RETURN_AT {
        return_to_system();
    }
}

fn return_to_system() {
    // SAFETY: malloc_trim takes no pointer and only walks the allocator's
    // own free lists (under its lock).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// This worker's share of `memory.limit`.
pub fn share() -> usize {
    SHARE.get()
}

/// Bytes this thread's buffers and request heads hold now.
pub fn held() -> usize {
    HELD.get()
}

/// `bytes` more are held (storage taken or grown).
pub fn hold(bytes: usize) {
    HELD.set(HELD.get() + bytes);
}

/// `bytes` are held no more.
pub fn release(bytes: usize) {
    HELD.set(HELD.get().saturating_sub(bytes));
}

/// A part of what the worker holds, kept in step with the storage it
/// stands for: `set` after the storage changes, given back when dropped.
#[derive(Debug, Default)]
pub struct Tracked(usize);

impl Tracked {
    /// The storage now holds `bytes`.
    pub fn set(&mut self, bytes: usize) {
        if bytes != self.0 {
            HELD.set((HELD.get() + bytes).saturating_sub(self.0));
            self.0 = bytes;
        }
    }

    pub fn bytes(&self) -> usize {
        self.0
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// The `memory` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimits {
    /// What all workers together may hold (split evenly among them).
    pub limit: usize,
    /// What one client connection may make rsp hold.
    pub per_connection: usize,
    /// What one request's `req.ctx` may hold.
    pub script_per_request: usize,
}

impl Default for MemoryLimits {
    fn default() -> MemoryLimits {
        MemoryLimits {
            limit: 512 << 20,
            per_connection: 4 << 20,
            script_per_request: 64 << 10,
        }
    }
}

impl MemoryLimits {
    /// This worker's share of the process's limit.
    pub fn worker_share(&self, workers: usize) -> usize {
        self.limit / workers.max(1)
    }
}

/// How near its bound a worker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Pressure {
    Normal,
    /// Past three quarters: exchanges stalled on their clients are cut.
    High,
    /// Past the limit: a connection's further exchanges are refused.
    Full,
    /// A quarter past the limit: every new exchange is refused.
    Ceiling,
}

impl Pressure {
    pub fn of(held: usize, share: usize) -> Pressure {
        if held >= share + share / 4 {
            Pressure::Ceiling
        } else if held >= share {
            Pressure::Full
        } else if held >= share / 4 * 3 {
            Pressure::High
        } else {
            Pressure::Normal
        }
    }
}

/// How often a worker under pressure looks for stalled exchanges.
pub const RECLAIM_EVERY: Duration = Duration::from_millis(250);
/// How long an exchange may stall on its client before it is cut, when
/// what it holds is wanted: two seconds past three quarters of the limit,
/// one past the limit, and at the ceiling the next look after the one
/// that saw it stall.
pub fn stall_grace(pressure: Pressure) -> Duration {
    match pressure {
        Pressure::Normal | Pressure::High => Duration::from_secs(2),
        Pressure::Full => Duration::from_secs(1),
        Pressure::Ceiling => RECLAIM_EVERY,
    }
}
/// Bytes an exchange must move (either way) within the grace to count as
/// moving (2 KiB a second: a slow mobile link moves more): a window
/// opened a byte at a time, or a body sent a byte a second, does not.
pub const MIN_PROGRESS: u64 = 4 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_bytes_add_up_and_go_back() {
        let before = held();
        let mut a = Tracked::default();
        let mut b = Tracked::default();
        a.set(1000);
        b.set(500);
        assert_eq!(held(), before + 1500);
        a.set(200);
        assert_eq!(held(), before + 700);
        drop(b);
        assert_eq!(held(), before + 200);
        a.set(0);
        assert_eq!(held(), before);
    }

    #[test]
    fn pressure_by_share() {
        let share = 1000;
        assert_eq!(Pressure::of(0, share), Pressure::Normal);
        assert_eq!(Pressure::of(749, share), Pressure::Normal);
        assert_eq!(Pressure::of(750, share), Pressure::High);
        assert_eq!(Pressure::of(1000, share), Pressure::Full);
        assert_eq!(Pressure::of(1250, share), Pressure::Ceiling);
        assert!(Pressure::High < Pressure::Full);
    }
}
