//! The connection's budgets for what is legal but costly to rsp: resets
//! (rapid reset, MadeYouReset) and control frames. Past one, the client is
//! told to calm down (GOAWAY ENHANCE_YOUR_CALM).

use std::time::{Duration, Instant};

use crate::h2::frame::{ErrorCode, FrameError};
use crate::timer;

const FLOOD_HALF_LIFE: Duration = Duration::from_secs(1);
const MAX_RESETS: u32 = 200;
const MAX_CONTROL: u32 = 10_000;

/// What a connection may do of each costly-but-legal thing before it is
/// told to calm down (GOAWAY ENHANCE_YOUR_CALM). The counts halve every
/// `FLOOD_HALF_LIFE`, so a busy but honest client never reaches them,
/// and a flood does within a fraction of a second.
#[derive(Debug, Default)]
pub struct Flood {
    /// Streams reset by the client before their end (rapid reset,
    /// CVE-2023-44487), and by rsp because of what the client sent
    /// (MadeYouReset, CVE-2025-8671), refused streams included.
    resets: u32,
    /// PING, SETTINGS, PRIORITY, empty DATA, WINDOW_UPDATE frames and
    /// frames of unknown types: cheap for the client, work for rsp.
    control: u32,
    since: Option<Instant>,
}

impl Flood {
    fn decay(&mut self, now: Instant) {
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= FLOOD_HALF_LIFE {
            self.resets /= 2;
            self.control /= 2;
            self.since = Some(now);
        }
    }

    pub fn reset(&mut self) -> Result<(), FrameError> {
        self.decay(timer::now());
        self.resets += 1;
        if self.resets > MAX_RESETS {
            return Err(FrameError::Connection(
                ErrorCode::EnhanceYourCalm,
                "too many streams reset",
            ));
        }
        Ok(())
    }

    pub fn control(&mut self, what: &'static str) -> Result<(), FrameError> {
        self.decay(timer::now());
        self.control += 1;
        if self.control > MAX_CONTROL {
            return Err(FrameError::Connection(ErrorCode::EnhanceYourCalm, what));
        }
        Ok(())
    }
}
