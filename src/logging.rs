//! The log: env_logger, behind a filter for what clients do that an
//! operator cannot act on. rustls warns once per connection whose client
//! sends an IP address (or another name that is no host name) as SNI, as
//! wrk and many scripts do; those lines are counted (`/metrics`) and
//! logged at debug instead.

use std::sync::atomic::{AtomicU64, Ordering};

use log::{Level, Log, Metadata, Record};

static IGNORED_SNI: AtomicU64 = AtomicU64::new(0);

/// TLS handshakes whose SNI rustls ignored (an IP address, an invalid name).
pub fn ignored_sni() -> u64 {
    IGNORED_SNI.load(Ordering::Relaxed)
}

struct Filtered {
    inner: env_logger::Logger,
}

/// rustls's line about a client's SNI it ignored.
fn is_ignored_sni(record: &Record) -> bool {
    record.level() == Level::Warn
        && record.target().starts_with("rustls")
        && record.args().to_string().starts_with("Illegal SNI")
}

impl Log for Filtered {
    fn enabled(&self, metadata: &Metadata) -> bool {
        // rustls's warnings must reach `log` to be counted.
        self.inner.enabled(metadata)
            || (metadata.level() == Level::Warn && metadata.target().starts_with("rustls"))
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
