//! The priority reserve (SPEC §11): a channel's last units kept for its most important
//! traffic. The ledger applies it inside the reservation, under the same row locks as
//! every other quota rule, so that it holds with any number of concurrent sends and
//! instances.

use super::{QuotaThreshold, SendClass};

/// A channel's reserve: below `critical` units left only critical sends are charged;
/// below `shed_bulk` bulk sends are refused. Percentages are of the live pool's units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReserveRule {
    pub critical: Option<QuotaThreshold>,
    pub shed_bulk: Option<QuotaThreshold>,
}

impl ReserveRule {
    /// Whether a send of `class` may take units so that `remaining_after` are left.
    pub fn admits(&self, class: SendClass, remaining_after: i64, pool_units: i64) -> bool {
        let below = |threshold: Option<QuotaThreshold>| {
            threshold.is_some_and(|t| remaining_after < t.units_of(pool_units))
        };
        match class {
            SendClass::Critical => true,
            SendClass::Normal => !below(self.critical),
            SendClass::Bulk => !below(self.critical) && !below(self.shed_bulk),
        }
    }

    /// The units only critical sends may take now: what is left, up to the reserve.
    pub fn held_back(&self, remaining: i64, pool_units: i64) -> i64 {
        self.critical
            .map(|t| t.units_of(pool_units).min(remaining).max(0))
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.critical.is_none() && self.shed_bulk.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> ReserveRule {
        ReserveRule {
            critical: Some(QuotaThreshold::Percent(10.0)),
            shed_bulk: Some(QuotaThreshold::Percent(30.0)),
        }
    }

    #[test]
    fn bulk_stops_at_30_normal_at_10_and_codes_take_the_last_unit() {
        let r = rule();
        // A one-unit send with `left` units left leaves `left - 1`.
        let admits = |class, left: i64| r.admits(class, left - 1, 100);
        assert!(admits(SendClass::Bulk, 31) && !admits(SendClass::Bulk, 30));
        assert!(admits(SendClass::Normal, 11) && !admits(SendClass::Normal, 10));
        assert!(admits(SendClass::Critical, 1));
        assert_eq!(r.held_back(50, 100), 10);
        assert_eq!(r.held_back(4, 100), 4);
        assert!(ReserveRule::default().admits(SendClass::Bulk, 0, 100));
    }
}
