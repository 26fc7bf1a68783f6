//! The log: env_logger, behind a filter for what clients do that an
//! operator cannot act on. The TLS library warns once per connection whose
//! client sends an IP address (or another name that is no host name) as
//! SNI, as wrk and many scripts do; those lines are counted (`/metrics`)
//! and logged at debug instead (`tls::is_ignored_sni`).
//!
//! Lines a client can make rsp write at will (a refused request, a reset
//! stream, a failed hook) go through `client_log!`: each worker writes at
//! most `CLIENT_LINES_PER_SECOND` of them a second, and counts the rest
//! (`rsp_log_lines_dropped_total`), saying how many once the second is
//! over. One client cannot fill the disk, nor hide what others did.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use log::{Level, Log, Metadata, Record};

static IGNORED_SNI: AtomicU64 = AtomicU64::new(0);

/// Client-triggered lines dropped by the rate limit, all workers.
static CLIENT_LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Client-triggered lines a worker writes in one second at most.
pub const CLIENT_LINES_PER_SECOND: u32 = 100;

thread_local! {
    /// This worker's second: when it began, lines written and dropped.
    static CLIENT_LINES: Cell<(Option<Instant>, u32, u64)> = const { Cell::new((None, 0, 0)) };
}

/// Whether a client-triggered line may be written now (see `client_log!`).
pub fn admit_client_line() -> bool {
    let now = crate::timer::now();
    let (since, written, dropped) = CLIENT_LINES.get();
    let (since, written, dropped) = match since {
        Some(since) if now.saturating_duration_since(since) < Duration::from_secs(1) => {
            (since, written, dropped)
        }
        _ => {
            if dropped > 0 {
                log::warn!(
                    "{dropped} log lines about clients dropped in the last second (at most {CLIENT_LINES_PER_SECOND} a second per worker)"
                );
            }
            (now, 0, 0)
        }
    };
    let admitted = written < CLIENT_LINES_PER_SECOND;
    if admitted {
        CLIENT_LINES.set((Some(since), written + 1, dropped));
    } else {
        CLIENT_LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
        CLIENT_LINES.set((Some(since), written, dropped + 1));
    }
    admitted
}

/// Client-triggered log lines dropped by the rate limit.
pub fn client_lines_dropped() -> u64 {
    CLIENT_LINES_DROPPED.load(Ordering::Relaxed)
}

/// `log::log!` for a line a client can make rsp write at will: rate-limited
/// per worker (`admit_client_line`). A line the log level hides costs
/// nothing and counts against nothing.
#[macro_export]
macro_rules! client_log {
    ($level:expr, $($argument:tt)+) => {
        if log::log_enabled!($level) && $crate::logging::admit_client_line() {
            log::log!($level, $($argument)+);
        }
    };
}

/// TLS handshakes whose SNI was ignored (an IP address, an invalid name).
pub fn ignored_sni() -> u64 {
    IGNORED_SNI.load(Ordering::Relaxed)
}

struct Filtered {
    inner: env_logger::Logger,
}

/// The TLS library's line about a client's SNI it ignored.
fn is_ignored_sni(record: &Record) -> bool {
    record.level() == Level::Warn
        && record.target().starts_with(crate::tls::LOG_TARGET)
        && crate::tls::is_ignored_sni(&record.args().to_string())
}

impl Log for Filtered {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // The TLS library's warnings must reach `log` to be counted.
        self.inner.enabled(metadata)
            || (metadata.level() == Level::Warn
                && metadata.target().starts_with(crate::tls::LOG_TARGET))
    }

    fn log(&self, record: &Record) {
        if is_ignored_sni(record) {
            IGNORED_SNI.fetch_add(1, Ordering::Relaxed);
            let demoted = Record::builder()
                .args(*record.args())
                .level(Level::Debug)
                .target(record.target())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build();
            if self.inner.enabled(demoted.metadata()) {
                self.inner.log(&demoted);
            }
            return;
        }
        if self.inner.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Logs to stderr with timestamps; `RUST_LOG` chooses how much (info by default).
pub fn init() {
    let inner = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .build();
    let level = inner.filter().max(log::LevelFilter::Warn);
    if log::set_boxed_logger(Box::new(Filtered { inner })).is_ok() {
        log::set_max_level(level);
    }
}
