//! Quota views: what is left of a channel, where the rest went, and how fast it goes.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{MarketplaceRun, Package};

/// The burn rate is measured over this trailing window.
pub const BURN_WINDOW_DAYS: i64 = 7;

/// A channel's quota, read from the ledger's aggregates so that every instance reports
/// the same, whatever the size of the history.
///
/// Charges and corrections are kept apart (SPEC §4), over the channel's whole history:
/// `remaining = purchased − used − reserved − expired + reconciled`, where `used` counts
/// only units charged for sends against packages, `reconciled` is the signed net of
/// reconciliation adjustments (negative when units were written off, e.g. after the
/// vendor answered `Quota Exhausted`) and `expired` the unused units of expired
/// packages. Observe mode's units sent beyond the packages are `unmetered`, outside the
/// identity. `remaining_ratio` compares `remaining` with `pool_units`, the units of the
/// live pool (unexpired packages with units left; when there is none, the package that
/// ran out last), so that a channel that has bought for years still reads 20 % when a
/// fifth of what it currently holds is left.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct QuotaView {
    pub channel: String,
    /// Every unit of every package ever registered.
    pub purchased: i64,
    pub used: i64,
    /// Units held by sends under way.
    pub reserved: i64,
    pub reconciled: i64,
    pub expired: i64,
    pub remaining: i64,
    pub pool_units: i64,
    pub remaining_ratio: f64,
    /// Units charged per day over the trailing 7 days (or since the channel's first
    /// purchase, if that is more recent, but at least one day).
    pub burn_rate_per_day: f64,
    /// `remaining / burn_rate_per_day`; absent while nothing is being used.
    pub days_left: Option<f64>,
    pub next_expiry: Option<DateTime<Utc>>,
    /// Observe mode only: units sent beyond the packages (metered, not priced).
    pub unmetered: i64,
    /// The priority reserve in units now (`reserve_critical` of the live pool, SPEC §11;
    /// 0 without one), and what of it is left: units only critical sends may take.
    pub reserve_units: i64,
    pub reserved_for_critical: i64,
    /// Packages in the live pool.
    pub packages: usize,
    /// The vendor's own count of what is left, from its latest answer that gave one
    /// (`remaining_field`, SPEC §13).
    pub vendor_remaining: Option<i64>,
    pub vendor_remaining_at: Option<DateTime<Utc>>,
    /// `vendor_remaining − remaining`, compared as the marketplace's count is (negative:
    /// the ledger counts more than the vendor has left). The vendor's count is as of its
    /// latest answer and the ledger's is now, so they differ by the sends under way, and
    /// by a package registered or a reconciliation made since that answer, until the
    /// next answer brings the vendor's count up to date.
    pub vendor_drift: Option<i64>,
    /// What the marketplace had left at the channel's latest run of
    /// `tollgate reconcile --from-marketplace` or `marketplace_sync` (SPEC §14); absent
    /// without a `product_code` or before the first run.
    pub marketplace_remaining: Option<i64>,
    pub marketplace_remaining_at: Option<DateTime<Utc>>,
    /// The drift that run found: `marketplace_remaining −` the ledger's remaining count
    /// at that moment (before any reconciliation it applied).
    pub marketplace_drift: Option<i64>,
}

/// A channel's running totals as the ledger keeps them (one row of `channel_totals`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TotalsRow {
    pub billed_units: i64,
    pub cost_micros: i64,
    pub purchased_units: i64,
    pub reserved_units: i64,
    pub unmetered_units: i64,
    pub reconciled_units: i64,
    pub reconciled_cost_micros: i64,
    pub auth_failing: bool,
    pub vendor_remaining: Option<i64>,
    pub vendor_remaining_at: Option<DateTime<Utc>>,
    pub first_purchased_at: Option<DateTime<Utc>>,
}

impl QuotaView {
    /// Derives the view from the channel's totals, its live packages (unexpired, not
    /// used up), the size of the package that ran out last (for `pool_units` when
    /// nothing is live), and the units charged for sends in the burn window.
    pub fn compute(
        channel: &str,
        totals: &TotalsRow,
        live: &[Package],
        last_run_out_units: Option<i64>,
        charged_in_window: i64,
        now: DateTime<Utc>,
    ) -> Self {
        let remaining: i64 = live.iter().map(|p| p.remaining).sum();
        let used = totals.billed_units - totals.unmetered_units;
        let reserved = totals.reserved_units;
        let reconciled = totals.reconciled_units;
        // Every unit bought is charged, held, left, or expired: what is neither of the
        // first three is expired. (Charged here is net of reconciliation.)
        let expired = (totals.purchased_units - used + reconciled - reserved - remaining).max(0);
        let pool_units = if live.is_empty() {
            last_run_out_units.unwrap_or(0)
        } else {
            live.iter().map(|p| p.units).sum()
        };

        let window = totals
            .first_purchased_at
            .map(|first| (now - first).min(Duration::days(BURN_WINDOW_DAYS)))
            .unwrap_or(Duration::days(BURN_WINDOW_DAYS))
            .max(Duration::days(1));
        let window_days = window.num_seconds() as f64 / 86_400.0;
        let burn_rate_per_day = round4(charged_in_window as f64 / window_days);
        let days_left =
            (burn_rate_per_day > 0.0).then(|| round4(remaining as f64 / burn_rate_per_day));
        let remaining_ratio = if pool_units > 0 {
            round4(remaining as f64 / pool_units as f64)
        } else {
            0.0
        };
        QuotaView {
            channel: channel.to_owned(),
            purchased: totals.purchased_units,
            used,
            reserved,
            reconciled,
            expired,
            remaining,
            pool_units,
            remaining_ratio,
            burn_rate_per_day,
            days_left,
            next_expiry: live.iter().filter_map(|p| p.expires_at).min(),
            unmetered: totals.unmetered_units,
            reserve_units: 0,
            reserved_for_critical: 0,
            packages: live.len(),
            vendor_remaining: totals.vendor_remaining,
            vendor_remaining_at: totals.vendor_remaining_at,
            vendor_drift: totals.vendor_remaining.map(|vendor| vendor - remaining),
            marketplace_remaining: None,
            marketplace_remaining_at: None,
            marketplace_drift: None,
        }
    }

    /// Adds what the channel's latest marketplace run found.
    pub fn with_marketplace_run(mut self, run: &MarketplaceRun) -> Self {
        self.marketplace_remaining = Some(run.marketplace_remaining);
        self.marketplace_remaining_at = Some(run.observed_at);
        self.marketplace_drift = Some(run.drift);
        self
    }

    /// The view with the channel's priority reserve filled in.
    pub fn with_reserve(mut self, rule: &crate::domain::ReserveRule) -> Self {
        self.reserve_units = rule
            .critical
            .map(|t| t.units_of(self.pool_units))
            .unwrap_or(0);
        self.reserved_for_critical = rule.held_back(self.remaining, self.pool_units);
        self
    }

    /// When the quota runs out at the trailing burn rate (absent while nothing is used).
    pub fn exhausted_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.days_left.and_then(|days| {
            let seconds = (days * 86_400.0).round();
            (seconds.is_finite() && seconds < 1e12).then(|| now + Duration::seconds(seconds as i64))
        })
    }
}

/// Ratios and rates are for people and dashboards; four decimals is plenty and keeps
/// JSON free of float noise such as 0.30000000000000004.
fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Yuan;
    use crate::ledger::PackageStatus;

    fn package(units: i64, used: i64) -> Package {
        Package {
            id: 1,
            channel: "sms".into(),
            units,
            price: Yuan::ZERO,
            unit_price: rust_decimal::Decimal::ZERO,
            purchased_at: Utc::now() - Duration::days(10),
            expires_at: None,
            order_id: None,
            note: None,
            used,
            reserved: 0,
            remaining: units - used,
            expired_units: 0,
            status: PackageStatus::Active,
        }
    }

    fn totals(purchased: i64, billed: i64, reconciled: i64, days_ago: i64) -> TotalsRow {
        TotalsRow {
            purchased_units: purchased,
            billed_units: billed,
            reconciled_units: reconciled,
            first_purchased_at: Some(Utc::now() - Duration::days(days_ago)),
            ..TotalsRow::default()
        }
    }

    #[test]
    fn ratio_and_days_left_come_from_the_live_pool_and_history_adds_up() {
        // Two packages of 1000: the first used up, the second 300 used.
        let view = QuotaView::compute(
            "sms",
            &totals(2000, 1300, 0, 30),
            &[package(1000, 300)],
            None,
            700,
            Utc::now(),
        );
        assert_eq!(
            (view.purchased, view.used, view.remaining),
            (2000, 1300, 700)
        );
        assert_eq!(view.pool_units, 1000);
        assert_eq!(view.remaining_ratio, 0.7);
        assert_eq!(view.burn_rate_per_day, 100.0);
        assert_eq!(view.days_left, Some(7.0));
        assert_eq!(view.expired, 0);
    }

    #[test]
    fn a_write_off_is_reconciled_not_used() {
        // 20 bought, 3 sent, the vendor said the package is used up: 17 written off.
        let view = QuotaView::compute("sms", &totals(20, 3, -17, 1), &[], Some(20), 3, Utc::now());
        assert_eq!((view.used, view.reconciled, view.remaining), (3, -17, 0));
        assert_eq!(view.expired, 0);
        assert_eq!(view.pool_units, 20);
        assert_eq!(
            view.remaining,
            view.purchased - view.used - view.reserved - view.expired + view.reconciled
        );
    }

    #[test]
    fn unused_units_of_expired_packages_are_expired() {
        // 10 bought, 4 used, the package expired: 6 lost.
        let view = QuotaView::compute("sms", &totals(10, 4, 0, 40), &[], Some(10), 0, Utc::now());
        assert_eq!(
            (view.expired, view.remaining, view.remaining_ratio),
            (6, 0, 0.0)
        );
    }

    #[test]
    fn a_young_channel_burns_over_its_own_age() {
        let view = QuotaView::compute(
            "sms",
            &totals(1000, 100, 0, 2),
            &[package(1000, 100)],
            None,
            100,
            Utc::now(),
        );
        assert_eq!(view.burn_rate_per_day, 50.0);
    }

    #[test]
    fn the_vendors_own_count_is_compared_with_what_is_left() {
        let mut row = totals(100, 20, 0, 3);
        let none = QuotaView::compute("sms", &row, &[package(100, 20)], None, 20, Utc::now());
        assert_eq!(none.vendor_drift, None, "no answer carried a count");
        row.vendor_remaining = Some(65);
        let view = QuotaView::compute("sms", &row, &[package(100, 20)], None, 20, Utc::now());
        // 80 left here, 65 at the vendor: 15 billed around tollgate.
        assert_eq!(view.vendor_drift, Some(-15));
    }

    #[test]
    fn nothing_used_means_no_forecast() {
        let view = QuotaView::compute(
            "sms",
            &totals(10, 0, 0, 3),
            &[package(10, 0)],
            None,
            0,
            Utc::now(),
        );
        assert_eq!(view.days_left, None);
        assert_eq!(view.exhausted_at(Utc::now()), None);
        let empty = QuotaView::compute("sms", &TotalsRow::default(), &[], None, 0, Utc::now());
        assert_eq!((empty.remaining_ratio, empty.pool_units), (0.0, 0));
    }
}
