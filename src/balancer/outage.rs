//! A server out of rotation for a while on the evidence of real requests:
//! a failed connect *rests* it, and with a pool's `eject` a run of 5xx
//! answers or of errors *ejects* it (Envoy's outlier detection, HAProxy's
//! `observe layer7`). Both are an `Outage`, kept in one `Record` per server:
//!
//! - it runs from `since` to `until`, and nothing lengthens it: the result
//!   of an exchange whose server was picked before the outage began is old
//!   news, so fifty requests in flight when a server restarts make one
//!   outage, not fifty;
//! - each outage is one step of back-off: rests last 1 s, 2 s, 4 s ... up
//!   to 30 s, ejections `base_ms`, twice that ... up to `max_ms`;
//! - the pool logs it once when it begins and once when the server is back
//!   (noticed at the next pick or release after `until`: no timer needed);
//! - the back-off is forgiven when the server answers well again at least
//!   as long after its return as it was last out.

use std::time::{Duration, Instant};

use super::Outcome;
use crate::config::EjectConfig;

/// The first rest after a failed connect; each further rest in a row
/// doubles it, up to `MAX_REST`.
pub const FIRST_REST: Duration = Duration::from_secs(1);
pub const MAX_REST: Duration = Duration::from_secs(30);

impl EjectConfig {
    /// Whether `cause` is the streak that has just reached its threshold
    /// (not one that went past it), so a refused ejection is logged once.
    pub fn just_reached(&self, cause: Cause) -> bool {
        match cause {
            Cause::Consecutive5xx(count) => count == self.consecutive_5xx,
            Cause::ConsecutiveErrors(count) => count == self.consecutive_errors,
            Cause::FailedConnect => false,
        }
    }
}

/// Why a server is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Resting after a failed connect.
    FailedConnect,
    /// Ejected after this many 5xx answers in a row.
    Consecutive5xx(u32),
    /// Ejected after this many errors in a row.
    ConsecutiveErrors(u32),
}

impl Cause {
    pub fn is_ejection(self) -> bool {
        !matches!(self, Cause::FailedConnect)
    }

    /// For the log: "after {description}".
    pub fn description(self) -> String {
        match self {
            Cause::FailedConnect => "a failed connect".to_owned(),
            Cause::Consecutive5xx(count) => format!("{count} consecutive 5xx"),
            Cause::ConsecutiveErrors(count) => format!("{count} consecutive errors"),
        }
    }
}

/// One stretch of time a server is out of rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub since: Instant,
    pub until: Instant,
    pub cause: Cause,
    /// Outages of this kind in a row, this one included: its back-off step.
    pub step: u32,
}

impl Outage {
    pub fn length(&self) -> Duration {
        self.until.saturating_duration_since(self.since)
    }
}

/// What the balancer knows of a server from the outcomes of its exchanges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// The latest outage, kept once over: a result of an exchange begun
    /// before it began says nothing of the server since.
    latest: Option<Outage>,
    /// The server's return from `latest` has been noticed (and logged).
    back: bool,
    /// Rests in a row, and ejections in a row: each kind doubles on its own,
    /// so a server that rested through a restart is not ejected the longer
    /// for it.
    rests: u32,
    ejections: u32,
    /// 5xx answers in a row, and errors in a row, since the last good one.
    consecutive_5xx: u32,
    consecutive_errors: u32,
}

impl Record {
    /// The outage the server is in at `now`, if any.
    pub fn current(&self, now: Instant) -> Option<&Outage> {
        self.latest.as_ref().filter(|outage| now < outage.until)
    }

    pub fn is_out(&self, now: Instant) -> bool {
        self.current(now).is_some()
    }

    pub fn is_ejected(&self, now: Instant) -> bool {
        self.current(now)
            .is_some_and(|outage| outage.cause.is_ejection())
    }

    /// The outage that is over at `now`, the first time it is asked: the
    /// server is back (for the one log line saying so).
    pub fn come_back(&mut self, now: Instant) -> Option<Outage> {
        let outage = self.latest.filter(|outage| now >= outage.until)?;
        if self.back {
            return None;
        }
        self.back = true;
        Some(outage)
    }

    /// Counts how an exchange ended whose server was picked at `picked_at`;
    /// `false` when the result says nothing of the server now, which is
    /// when it is out, or was picked before its latest outage began.
    pub fn count(&mut self, outcome: Outcome, picked_at: Instant, now: Instant) -> bool {
        let stale = self.latest.is_some_and(|outage| picked_at <= outage.since);
        if stale || self.is_out(now) {
            return false;
        }
        match outcome {
            Outcome::Ok => {
                self.consecutive_5xx = 0;
                self.consecutive_errors = 0;
                if self.quiet_since_latest(now) {
                    self.rests = 0;
                    self.ejections = 0;
                }
            }
            Outcome::ServerError => self.consecutive_5xx += 1,
            Outcome::ConnectFailed | Outcome::Failed => self.consecutive_errors += 1,
        }
        true
    }

    /// The server has been back for at least as long as it was last out.
    fn quiet_since_latest(&self, now: Instant) -> bool {
        self.latest.is_none_or(|outage| {
            outage
                .until
                .checked_add(outage.length())
                .is_some_and(|quiet| now >= quiet)
        })
    }

    /// The ejection `eject` calls for after the results counted so far.
    pub fn ejection_due(&self, eject: &EjectConfig) -> Option<Cause> {
        let due = |count: u32, threshold: u32| threshold > 0 && count >= threshold;
        if due(self.consecutive_5xx, eject.consecutive_5xx) {
            Some(Cause::Consecutive5xx(self.consecutive_5xx))
        } else if due(self.consecutive_errors, eject.consecutive_errors) {
            Some(Cause::ConsecutiveErrors(self.consecutive_errors))
        } else {
            None
        }
    }

    /// Rests the server from `now` after a failed connect.
    pub fn rest(&mut self, now: Instant) -> Outage {
        self.rests += 1;
        let length = doubled(FIRST_REST, self.rests, MAX_REST);
        self.begin(Cause::FailedConnect, self.rests, now, length)
    }

    /// Ejects the server from `now`; its streaks start again from zero
    /// when it is back.
    pub fn eject(&mut self, cause: Cause, now: Instant, eject: &EjectConfig) -> Outage {
        self.ejections += 1;
        self.consecutive_5xx = 0;
        self.consecutive_errors = 0;
        let length = doubled(eject.base, self.ejections, eject.max);
        self.begin(cause, self.ejections, now, length)
    }

    fn begin(&mut self, cause: Cause, step: u32, now: Instant, length: Duration) -> Outage {
        let outage = Outage {
            since: now,
            until: now + length,
            cause,
            step,
        };
        self.latest = Some(outage);
        self.back = false;
        outage
    }

    /// Active checks brought the server up: a rest ends (the checks
    /// reached the server it could not connect to) and rests are forgiven;
    /// an ejection stays, being for answers the checks do not see.
    pub fn checks_passed(&mut self, now: Instant) {
        if let Some(outage) = &mut self.latest
            && outage.cause == Cause::FailedConnect
            && now < outage.until
        {
            outage.until = now;
            self.back = true;
        }
        self.rests = 0;
    }

    /// For the stats of several workers merged: an ejection anywhere shows
    /// over a rest, a rest over nothing.
    pub fn absorb(&mut self, other: &Record, now: Instant) {
        let rank = |record: &Record| match record.current(now) {
            Some(outage) if outage.cause.is_ejection() => 2,
            Some(_) => 1,
            None => 0,
        };
        if rank(other) > rank(self) {
            self.latest = other.latest;
        }
    }
}

/// `first`, doubled for each step after the first, at most `max`.
fn doubled(first: Duration, step: u32, max: Duration) -> Duration {
    first
        .saturating_mul(1 << step.saturating_sub(1).min(31))
        .min(max)
}

/// "300 ms", "10 s": how the log says an outage's length.
pub fn length_text(length: Duration) -> String {
    if length.subsec_millis() == 0 {
        format!("{} s", length.as_secs())
    } else {
        format!("{} ms", length.as_millis())
    }
}
