//! Routes and circuit breakers (SPEC §13): which channels a send may try, in which
//! order, and which of them to skip for now.
//!
//! A route's order is a preference, not a guarantee: the ledger decides each attempt
//! (a channel found without quota is refused before its vendor is called and the send
//! moves on), so the order may be read from a copy of the ledger's figures a few seconds
//! old. Circuits are per process: each instance learns on its own which vendor is
//! failing, from its own calls.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::prepare::Channel;
use crate::config::routes::{CircuitSettings, RouteSettings, RouteStrategy};
use crate::domain::{Outcome, RouteName};
use crate::ledger::{Ledger, LedgerError};

/// How long a route keeps the order it read from the ledger.
const ORDER_TTL: Duration = Duration::from_secs(5);

/// A configured route, with its channels ready to send.
pub(super) struct Route {
    pub settings: RouteSettings,
    pub channels: Vec<Arc<Channel>>,
    /// The order the strategy gave last, and when (indexes into `channels`).
    order: Mutex<Option<(Instant, Vec<usize>)>>,
}

impl Route {
    pub fn new(settings: RouteSettings, channels: Vec<Arc<Channel>>) -> Self {
        Self {
            settings,
            channels,
            order: Mutex::new(None),
        }
    }

    pub fn name(&self) -> &RouteName {
        &self.settings.name
    }

    /// The channels in the order the route's strategy prefers now.
    pub async fn ordered(&self, ledger: &Ledger) -> Result<Vec<Arc<Channel>>, LedgerError> {
        if self.settings.strategy == RouteStrategy::Priority {
            return Ok(self.channels.clone());
        }
        let cached = self
            .order
            .lock()
            .expect("route order lock poisoned")
            .as_ref()
            .filter(|(at, _)| at.elapsed() < ORDER_TTL)
            .map(|(_, order)| order.clone());
        let order = match cached {
            Some(order) => order,
            None => {
                let order = self.read_order(ledger).await?;
                *self.order.lock().expect("route order lock poisoned") =
                    Some((Instant::now(), order.clone()));
                order
            }
        };
        Ok(order
            .into_iter()
            .map(|i| self.channels[i].clone())
            .collect())
    }

    /// The strategy's order from the live packages: each channel's next package (the
    /// one its next send is charged to) decides its place; a channel without one goes
    /// last; ties keep the configured order.
    async fn read_order(&self, ledger: &Ledger) -> Result<Vec<usize>, LedgerError> {
        let live = ledger.live_packages(None).await?;
        let next_package = |channel: &Channel| {
            live.iter()
                .find(|p| p.channel == channel.settings.name.as_str() && p.remaining > 0)
        };
        let mut keyed: Vec<(usize, (u8, i128))> = self
            .channels
            .iter()
            .enumerate()
            .map(|(i, channel)| {
                let key = match (self.settings.strategy, next_package(channel)) {
                    (_, None) => (2, 0),
                    (RouteStrategy::Cheapest, Some(package)) => {
                        // Micro-yuan per unit, compared as exact fractions scaled up.
                        let per_unit = i128::from(package.price.micros()) * 1_000_000
                            / i128::from(package.units.max(1));
                        (0, per_unit)
                    }
                    (RouteStrategy::ExpiringFirst, Some(package)) => match package.expires_at {
                        Some(at) => (0, i128::from(at.timestamp_micros())),
                        None => (1, 0),
                    },
                    (RouteStrategy::Priority, Some(_)) => (0, 0),
                };
                (i, key)
            })
            .collect();
        keyed.sort_by_key(|(i, key)| (*key, *i));
        Ok(keyed.into_iter().map(|(i, _)| i).collect())
    }
}

/// Whether a channel may be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    /// The circuit is closed.
    Go,
    /// The circuit was open and its cool-down is over: this send is the probe.
    Probe,
    /// Open: skip the channel.
    Skip,
}

/// A channel's circuit breaker: open after `failures` consecutive upstream failures
/// (a gateway error or no answer in time), for `cooldown`; then one send probes, and
/// its answer closes the circuit or opens it for another cool-down.
pub(super) struct Circuit {
    settings: CircuitSettings,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The cool-down is over and a probe is under way.
    Probing,
}

impl Circuit {
    pub fn new(settings: CircuitSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("circuit lock poisoned")
    }

    /// Whether a route may try the channel now; taking a probe marks it under way.
    pub fn pass(&self) -> Pass {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => Pass::Go,
            State::Open { until } if Instant::now() >= until => {
                *state = State::Probing;
                Pass::Probe
            }
            State::Open { .. } | State::Probing => Pass::Skip,
        }
    }

    /// Whether the circuit is open (or probing): the channel is being skipped.
    pub fn is_open(&self) -> bool {
        !matches!(*self.state(), State::Closed { .. })
    }

    /// What the vendor answered a call (any call to the channel, routed or not).
    pub fn record(&self, outcome: Outcome) {
        let mut state = self.state();
        let failed = matches!(outcome, Outcome::UpstreamError | Outcome::Uncertain);
        *state = match (*state, failed) {
            (_, false) => State::Closed { failures: 0 },
            (State::Probing, true) | (State::Open { .. }, true) => self.opened(),
            (State::Closed { failures }, true) if failures + 1 >= self.settings.failures => {
                self.opened()
            }
            (State::Closed { failures }, true) => State::Closed {
                failures: failures + 1,
            },
        };
    }

    /// A probe that never reached the vendor (the send was refused first): the next
    /// send probes instead.
    pub fn probe_unused(&self) {
        let mut state = self.state();
        if matches!(*state, State::Probing) {
            *state = State::Open {
                until: Instant::now(),
            };
        }
    }

    fn opened(&self) -> State {
        tracing::warn!(
            cooldown_s = self.settings.cooldown.as_secs(),
            "a vendor failed repeatedly; its circuit opens and routes skip it"
        );
        State::Open {
            until: Instant::now() + self.settings.cooldown,
        }
    }
}

/// Whether a route tries its next channel after this vendor outcome: the vendor took
/// nothing (its package is used up, it refused the AppCode, it throttled, or it failed
/// without delivering). Never after `sent`, `vendor_rejected` or `uncertain`: the
/// message may have gone out.
pub(super) fn fails_over(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::VendorQuotaExhausted
            | Outcome::AuthFailed
            | Outcome::Throttled
            | Outcome::UpstreamError
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn circuit(failures: u32, cooldown_ms: u64) -> Circuit {
        Circuit::new(CircuitSettings {
            failures,
            cooldown: Duration::from_millis(cooldown_ms),
        })
    }

    #[test]
    fn the_circuit_opens_after_consecutive_failures_only() {
        let c = circuit(3, 60_000);
        c.record(Outcome::UpstreamError);
        c.record(Outcome::UpstreamError);
        c.record(Outcome::Sent);
        c.record(Outcome::UpstreamError);
        c.record(Outcome::Uncertain);
        assert_eq!(
            c.pass(),
            Pass::Go,
            "a success in between starts the count again"
        );
        c.record(Outcome::UpstreamError);
        assert_eq!(c.pass(), Pass::Skip);
        assert!(c.is_open());
    }

    #[test]
    fn after_the_cooldown_one_probe_goes_and_its_answer_decides() {
        let c = circuit(1, 0);
        c.record(Outcome::UpstreamError);
        assert_eq!(c.pass(), Pass::Probe);
        assert_eq!(c.pass(), Pass::Skip, "one probe at a time");
        c.record(Outcome::UpstreamError);
        assert_eq!(
            c.pass(),
            Pass::Probe,
            "failed probe: open again (no cool-down here)"
        );
        c.probe_unused();
        assert_eq!(
            c.pass(),
            Pass::Probe,
            "an unused probe lets the next send probe"
        );
        c.record(Outcome::VendorRejected);
        assert_eq!(c.pass(), Pass::Go, "the vendor answered: closed");
        assert!(!c.is_open());
    }

    #[test]
    fn only_outcomes_where_nothing_went_out_fail_over() {
        for outcome in Outcome::ALL {
            let expected = matches!(
                outcome,
                Outcome::VendorQuotaExhausted
                    | Outcome::AuthFailed
                    | Outcome::Throttled
                    | Outcome::UpstreamError
            );
            assert_eq!(fails_over(outcome), expected, "{outcome}");
        }
        assert!(!fails_over(Outcome::Uncertain) && !fails_over(Outcome::Sent));
    }
}
