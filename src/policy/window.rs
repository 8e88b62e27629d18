//! A sliding window of counts, kept as up to 60 slots of a sixtieth of the window each.
//!
//! A limit of "N per window" admits a send when what the slots that overlap the
//! trailing window hold (sends, units or micro-yuan, whichever the limit counts), plus
//! this send, stays within N. Slots make the window
//! slide in steps of a sixtieth of its length (one second for a one-minute window, one
//! minute for an hour, 24 minutes for a day), which is close to a true sliding window
//! while every count stays one small row whatever the traffic. A fixed window would
//! let 2N through around each boundary; a per-send log would grow with the traffic.

use std::time::Duration;

/// How many slots a window is cut into.
pub const SLOTS: i64 = 60;

/// One slot: its index (its start in slot lengths since the epoch) and what it counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub index: i64,
    pub amount: u64,
}

/// A window's slots as stored (`index:amount;…`, oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub slots: Vec<Slot>,
}

/// The length of one slot of `window`, in microseconds (at least one second).
pub fn slot_micros(window: Duration) -> i64 {
    slot_micros_of(i64::try_from(window.as_micros()).unwrap_or(i64::MAX))
}

/// How many slots a window spans (rounded up: never fewer than it covers).
pub fn slots_in(window: Duration) -> i64 {
    let window = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    let slot = slot_micros_of(window);
    (window + slot - 1) / slot
}

fn slot_micros_of(window_micros: i64) -> i64 {
    (window_micros / SLOTS).max(1_000_000)
}

impl Window {
    pub fn parse(stored: &str) -> Window {
        let slots = stored
            .split(';')
            .filter_map(|slot| {
                let mut parts = slot.split(':');
                Some(Slot {
                    index: parts.next()?.parse().ok()?,
                    amount: parts.next()?.parse().ok()?,
                })
            })
            .collect();
        Window { slots }
    }

    pub fn to_stored(&self) -> String {
        self.slots
            .iter()
            .map(|s| format!("{}:{}", s.index, s.amount))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Drops the slots that no longer overlap the window ending at `now`. A slot counts
    /// until the latest moment it covers has left the window, so the window is never
    /// shorter than configured (it is up to one slot longer).
    pub fn prune(&mut self, now_micros: i64, window: Duration) {
        let slot = slot_micros(window);
        let current = now_micros.div_euclid(slot);
        let span = slots_in(window);
        self.slots.retain(|s| s.index >= current - span);
    }

    /// What the window holds (after [`Window::prune`]).
    pub fn total(&self) -> u64 {
        self.slots.iter().map(|s| s.amount).sum()
    }

    /// Counts `amount` at `now`; returns the index of the slot it went to (for
    /// [`Window::remove`]).
    pub fn add(&mut self, now_micros: i64, window: Duration, amount: u64) -> i64 {
        let index = now_micros.div_euclid(slot_micros(window));
        match self.slots.last_mut() {
            Some(last) if last.index >= index => last.amount += amount,
            _ => self.slots.push(Slot { index, amount }),
        }
        self.slots.last().map_or(index, |last| last.index)
    }

    /// Takes back `amount` counted in slot `index` (a send that was admitted and then
    /// not charged); nothing when that slot has left the window already.
    pub fn remove(&mut self, index: i64, amount: u64) {
        if let Some(slot) = self.slots.iter_mut().find(|s| s.index == index) {
            slot.amount = slot.amount.saturating_sub(amount);
        }
        self.slots.retain(|s| s.amount > 0);
    }

    /// How long until enough of what the window holds has slid out of it that `need`
    /// more fits under `max`.
    pub fn wait_until_fits(
        &self,
        now_micros: i64,
        window: Duration,
        max: u64,
        need: u64,
    ) -> Duration {
        let slot = slot_micros(window);
        let span = slots_in(window);
        let mut held = self.total();
        for s in &self.slots {
            if held + need <= max {
                break;
            }
            held -= s.amount;
            // The slot leaves the window when the slot `span + 1` after it begins.
            let leaves_at = (s.index + span + 1) * slot;
            if held + need <= max {
                return Duration::from_micros(
                    u64::try_from(leaves_at - now_micros).unwrap_or(0).max(1),
                );
            }
        }
        if held + need <= max {
            Duration::ZERO
        } else {
            // Never fits (more than the maximum at once): the whole window.
            window
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn two_within_a_minute_are_two_and_the_first_slides_out_after_it() {
        let second = 1_000_000;
        let mut w = Window::default();
        w.add(10 * second, MINUTE, 1);
        w.prune(50 * second, MINUTE);
        assert_eq!(w.total(), 1);
        // A second one at 0:50 does not fit a limit of 1: wait until 1:11 (the slot of
        // 0:10 covers up to 0:10.999…, which leaves the window ending at 1:11).
        let wait = w.wait_until_fits(50 * second, MINUTE, 1, 1);
        assert_eq!(wait, Duration::from_secs(21));
        w.prune(71 * second, MINUTE);
        assert_eq!(w.total(), 0);
        assert_eq!(Window::parse(&w.to_stored()), w);
    }

    proptest! {
        /// Whatever the send times, admitting only when the pruned window plus one fits
        /// never lets more than `max` into any window's span.
        #[test]
        fn admitted_sends_never_exceed_the_maximum_in_any_window(
            gaps in proptest::collection::vec(0i64..20_000_000, 1..80),
            max in 1u64..6,
            window_ms in prop_oneof![Just(60_000u64), Just(1_500), Just(90_000), Just(3_600_000)],
        ) {
            let window = Duration::from_millis(window_ms);
            let mut w = Window::default();
            let mut admitted: Vec<i64> = Vec::new();
            let mut now = 0;
            for gap in gaps {
                now += gap;
                w.prune(now, window);
                if w.total() < max {
                    w.add(now, window, 1);
                    admitted.push(now);
                }
            }
            let span = i64::try_from(window.as_micros()).unwrap();
            for (i, start) in admitted.iter().enumerate() {
                let within = admitted[i..].iter().filter(|t| **t < start + span).count();
                prop_assert!(within as u64 <= max, "{within} sends within {window:?} of {start}");
            }
        }

        /// The wait a refusal names is exact: after it the send fits, a microsecond
        /// before it does not.
        #[test]
        fn the_wait_named_is_when_the_send_fits(
            gaps in proptest::collection::vec(0i64..5_000_000, 1..40),
            max in 1u64..6,
            need in 1u64..3,
        ) {
            let window = MINUTE;
            let mut w = Window::default();
            let mut now = 0;
            for gap in gaps {
                now += gap;
                w.prune(now, window);
                if w.total() < max {
                    w.add(now, window, 1);
                }
            }
            let fits_at = |at: i64| {
                let mut later = w.clone();
                later.prune(at, window);
                later.total() + need <= max
            };
            let wait = i64::try_from(w.wait_until_fits(now, window, max, need).as_micros()).unwrap();
            if need <= max {
                prop_assert!(fits_at(now + wait));
                if wait > 0 {
                    prop_assert!(!fits_at(now + wait - 1));
                }
            }
        }
    }
}
