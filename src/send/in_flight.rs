//! Counts sends under way, so that shutdown can wait for them to be settled and so
//! that no more than `server.max_in_flight_sends` run at once.
//!
//! The count is taken when a send is about to reserve and given back when its task
//! ends (settled, or given up to the sweeper), not when its HTTP request ends: a client
//! that stopped waiting leaves its send running, and that send still counts. The limit
//! is checked and the count taken in one atomic step, so concurrent sends can never
//! overshoot it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Clone)]
pub struct InFlight {
    inner: Arc<Inner>,
}

struct Inner {
    count: AtomicUsize,
    limit: usize,
    drained: Notify,
}

/// Held for the length of one send; dropping it (however the send ends, a panic
/// included) counts the send as done.
pub struct InFlightGuard(InFlight);

impl Default for InFlight {
    /// No limit.
    fn default() -> Self {
        Self::with_limit(usize::MAX)
    }
}

impl InFlight {
    /// A counter that lets at most `limit` sends be under way at once.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                count: AtomicUsize::new(0),
                limit: limit.max(1),
                drained: Notify::new(),
            }),
        }
    }

    /// Counts a send in, whatever the limit.
    pub fn enter(&self) -> InFlightGuard {
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// Counts a send in if fewer than the limit are under way; `None` when full.
    pub fn try_enter(&self) -> Option<InFlightGuard> {
        self.inner
            .count
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |count| {
                (count < self.inner.limit).then_some(count + 1)
            })
            .ok()
            .map(|_| InFlightGuard(self.clone()))
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    pub fn count(&self) -> usize {
        self.inner.count.load(Ordering::SeqCst)
    }

    /// Returns once no send is under way.
    pub async fn drained(&self) {
        loop {
            let notified = self.inner.drained.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.inner.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.inner.drained.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_sends_than_the_limit_are_let_in_and_a_finished_one_frees_its_place() {
        let in_flight = InFlight::with_limit(2);
        let first = in_flight.try_enter().expect("room for the first");
        let _second = in_flight.try_enter().expect("room for the second");
        assert!(in_flight.try_enter().is_none());
        assert_eq!(in_flight.count(), 2);

        drop(first);
        assert!(in_flight.try_enter().is_some());
    }

    #[test]
    fn concurrent_entries_never_overshoot_the_limit() {
        let in_flight = InFlight::with_limit(8);
        let admitted: Vec<_> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..32)
                .map(|_| scope.spawn(|| in_flight.try_enter()))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        assert_eq!(admitted.iter().filter(|guard| guard.is_some()).count(), 8);
        assert_eq!(in_flight.count(), 8);
    }
}
