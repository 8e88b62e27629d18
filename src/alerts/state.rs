//! The state machine of one (rule, channel): ok → firing → (repeats) → resolved.
//! Pure: given the stored state, whether the rule holds, and the time, it says what to
//! do; the store applies it under a row lock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Ok,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Ok => "ok",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(raw: &str) -> Option<AlertState> {
        match raw {
            "ok" => Some(AlertState::Ok),
            "firing" => Some(AlertState::Firing),
            "resolved" => Some(AlertState::Resolved),
            _ => None,
        }
    }
}

/// A change that sends a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// ok or resolved → firing.
    Fire,
    /// Still firing, not acknowledged, and `repeat_every` has passed since the last one.
    Repeat,
    /// firing → resolved.
    Resolve,
}

/// The parts of a stored state that the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Current {
    pub state: AlertState,
    pub last_notified_at: Option<DateTime<Utc>>,
    pub acknowledged: bool,
}

/// What to do now. `None` for a (rule, channel) never stored is the same as `ok`.
pub fn decide(
    current: Option<Current>,
    holds: bool,
    now: DateTime<Utc>,
    repeat_every: Duration,
) -> Option<Step> {
    let state = current.map(|c| c.state).unwrap_or(AlertState::Ok);
    match (state, holds) {
        (AlertState::Ok | AlertState::Resolved, true) => Some(Step::Fire),
        (AlertState::Ok | AlertState::Resolved, false) => None,
        (AlertState::Firing, false) => Some(Step::Resolve),
        (AlertState::Firing, true) => {
            let current = current.expect("a firing state is stored");
            if current.acknowledged {
                return None;
            }
            let repeat = chrono::Duration::from_std(repeat_every).unwrap_or(chrono::Duration::MAX);
            let due = current
                .last_notified_at
                .is_none_or(|last| now.signed_duration_since(last) >= repeat);
            due.then_some(Step::Repeat)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn firing(last_hours_ago: i64, acknowledged: bool, now: DateTime<Utc>) -> Option<Current> {
        Some(Current {
            state: AlertState::Firing,
            last_notified_at: Some(now - chrono::Duration::hours(last_hours_ago)),
            acknowledged,
        })
    }

    #[test]
    fn a_condition_that_starts_to_hold_fires_once() {
        let now = Utc::now();
        assert_eq!(decide(None, true, now, DAY), Some(Step::Fire));
        assert_eq!(decide(firing(0, false, now), true, now, DAY), None);
        assert_eq!(decide(None, false, now, DAY), None);
    }

    #[test]
    fn a_firing_alert_repeats_after_repeat_every_unless_acknowledged() {
        let now = Utc::now();
        assert_eq!(decide(firing(23, false, now), true, now, DAY), None);
        assert_eq!(
            decide(firing(24, false, now), true, now, DAY),
            Some(Step::Repeat)
        );
        assert_eq!(decide(firing(48, true, now), true, now, DAY), None);
    }

    #[test]
    fn a_cleared_condition_resolves_once_and_can_fire_again() {
        let now = Utc::now();
        assert_eq!(
            decide(firing(1, true, now), false, now, DAY),
            Some(Step::Resolve)
        );
        let resolved = Some(Current {
            state: AlertState::Resolved,
            last_notified_at: Some(now),
            acknowledged: false,
        });
        assert_eq!(decide(resolved, false, now, DAY), None);
        assert_eq!(decide(resolved, true, now, DAY), Some(Step::Fire));
    }
}
