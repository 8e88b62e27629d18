//! The clock that code reads "now" from: the system's in production, one that tests move.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// Where "now" comes from. Everything that decides by time (the ledger's charges and
/// expiry, the alert engine, forecasts) takes one, so that tests can move time instead
/// of waiting for it. Cluster-wide decisions (leases, sweeps, due jobs) use the
/// database's clock instead; see `store::Db::now`.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// A clock that stands still until it is set or advanced (tests).
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.now.lock().expect("clock lock poisoned") = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        *self.now.lock().expect("clock lock poisoned") += by;
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock poisoned")
    }

    /// This clock as a [`Clock`] to hand to the code under test.
    pub fn clock(&self) -> Clock {
        let now = self.now.clone();
        Arc::new(move || *now.lock().expect("clock lock poisoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let manual = ManualClock::new(start);
        let clock = manual.clock();
        assert_eq!(clock(), start);
        manual.advance(chrono::Duration::hours(2));
        assert_eq!(clock(), start + chrono::Duration::hours(2));
    }
}
