//! Time as operations see it. Wall time (operation ids, journal timestamps, the `restartedAt`
//! annotation, and the daemon's schedules) comes from a [`Clock`] the caller passes in, so
//! tests can set it. Elapsed times and deadlines use tokio's clock (`tokio::time::Instant`),
//! which tests pause and advance with tokio's own `time::pause`.

use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

/// Where wall time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Timestamp;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that says what it is told: starts at a given instant and moves only when set or
/// advanced.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    pub fn new(at: Timestamp) -> Self {
        Self {
            now: Mutex::new(at),
        }
    }

    pub fn set(&self, at: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub fn advance(&self, by: SignedDuration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = now.checked_add(by).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start: Timestamp = "2026-03-29T00:30:00Z".parse().expect("a timestamp");
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(SignedDuration::from_hours(2));
        assert_eq!(c.now().to_string(), "2026-03-29T02:30:00Z");
        c.set(start);
        assert_eq!(c.now(), start);
    }
}
