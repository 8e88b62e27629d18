//! Quota views: what is left of a channel, and how fast it is going.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Ledger, LedgerError, Package, PackageStatus};
use crate::domain::ChannelName;
use crate::store::to_micros;

/// The burn rate is measured over this trailing window.
const BURN_WINDOW_DAYS: i64 = 7;

/// A channel's quota, read from the ledger so that every instance reports the same.
///
/// The figures cover the channel's *live pool*: packages that have not expired and
/// still have units not charged. A package that is used up or expired drops out, so
/// that `remaining_ratio` compares what is left with what is currently bought, not
/// with every purchase ever made. When every package is used up, the view shows the
/// one that ran out last (remaining 0); with no package at all, everything is 0.
#[derive(Debug, Clone, Serialize)]
pub struct QuotaView {
    pub channel: String,
    pub purchased: i64,
    pub used: i64,
    pub reserved: i64,
    pub remaining: i64,
    /// Unused units of packages that expired (lost).
    pub expired_units: i64,
    pub remaining_ratio: f64,
    /// Units charged per day over the trailing 7 days (or since the channel's first
    /// purchase, if that is more recent, but at least one day).
    pub burn_rate_per_day: f64,
    /// `remaining / burn_rate_per_day`; absent while nothing is being used.
    pub days_left: Option<f64>,
    pub next_expiry: Option<DateTime<Utc>>,
    pub packages: usize,
}

impl QuotaView {
    /// Derives the view from a channel's packages and its units charged in the window.
    pub fn compute(
        channel: &str,
        packages: &[Package],
        charged_in_window: i64,
        now: DateTime<Utc>,
    ) -> Self {
        let mut live: Vec<&Package> = packages
            .iter()
            .filter(|p| p.status == PackageStatus::Active)
            .collect();
        if live.is_empty() {
            // Run dry: show the package that ran out last, so that the view reads
            // "bought N, used N, 0 left" rather than all zeros.
            live.extend(
                packages
                    .iter()
                    .filter(|p| p.status == PackageStatus::Exhausted)
                    .max_by_key(|p| (p.purchased_at, p.id)),
            );
        }
        let purchased: i64 = live.iter().map(|p| p.units).sum();
        let used: i64 = live.iter().map(|p| p.used).sum();
        let reserved: i64 = live.iter().map(|p| p.reserved).sum();
        let remaining: i64 = live.iter().map(|p| p.remaining).sum();
        let expired_units = packages.iter().map(|p| p.expired_units).sum();

        let first_purchase = packages.iter().map(|p| p.purchased_at).min();
        let window = first_purchase
            .map(|first| (now - first).min(Duration::days(BURN_WINDOW_DAYS)))
            .unwrap_or(Duration::days(BURN_WINDOW_DAYS))
            .max(Duration::days(1));
        let window_days = window.num_seconds() as f64 / 86_400.0;
        let burn_rate_per_day = round4(charged_in_window as f64 / window_days);
        let days_left =
            (burn_rate_per_day > 0.0).then(|| round4(remaining as f64 / burn_rate_per_day));
        let remaining_ratio = if purchased > 0 {
            round4(remaining as f64 / purchased as f64)
        } else {
            0.0
        };
        QuotaView {
            channel: channel.to_owned(),
            purchased,
            used,
            reserved,
            remaining,
            expired_units,
            remaining_ratio,
            burn_rate_per_day,
            days_left,
            next_expiry: live
                .iter()
                .filter(|p| p.status == PackageStatus::Active)
                .filter_map(|p| p.expires_at)
                .min(),
            packages: live.len(),
        }
    }
}

/// Ratios and rates are for people and dashboards; four decimals is plenty and keeps
/// JSON free of float noise such as 0.30000000000000004.
fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

/// What a channel's sends have been charged since the ledger began: only ever grows.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelTotals {
    pub channel: String,
    pub billed_units: i64,
    pub cost: crate::domain::Yuan,
}

impl Ledger {
    /// Every channel's running totals (channels that never charged are absent).
    pub async fn totals(&self) -> Result<Vec<ChannelTotals>, LedgerError> {
        let rows = sqlx::query(
            "SELECT channel, billed_units, cost_micros FROM channel_totals ORDER BY channel",
        )
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ChannelTotals {
                    channel: row.try_get("channel")?,
                    billed_units: row.try_get("billed_units")?,
                    cost: crate::domain::Yuan::from_micros(row.try_get("cost_micros")?),
                })
            })
            .collect()
    }

    pub async fn quota(&self, channel: &ChannelName) -> Result<QuotaView, LedgerError> {
        let now = Utc::now();
        let packages = self.list_packages(Some(channel)).await?;
        let since = now - Duration::days(BURN_WINDOW_DAYS);
        let charged: i64 = sqlx::query(
            "SELECT CAST(COALESCE(SUM(units), 0) AS BIGINT) AS charged FROM ledger_entries \
             WHERE channel = $1 AND created_at >= $2 AND send_id IS NOT NULL",
        )
        .bind(channel.as_str())
        .bind(to_micros(since))
        .fetch_one(self.db().pool())
        .await?
        .try_get("charged")?;
        Ok(QuotaView::compute(
            channel.as_str(),
            &packages,
            charged,
            now,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Yuan;

    fn package(units: i64, used: i64, status: PackageStatus, purchased_days_ago: i64) -> Package {
        let now = Utc::now();
        Package {
            id: 1,
            channel: "sms".into(),
            units,
            price: Yuan::ZERO,
            unit_price: rust_decimal::Decimal::ZERO,
            purchased_at: now - Duration::days(purchased_days_ago),
            expires_at: None,
            vendor_order_id: None,
            note: None,
            used,
            reserved: 0,
            remaining: if status == PackageStatus::Active {
                units - used
            } else {
                0
            },
            expired_units: if status == PackageStatus::Expired {
                units - used
            } else {
                0
            },
            status,
        }
    }

    #[test]
    fn ratio_and_days_left_come_from_the_live_pool() {
        let packages = [
            package(1000, 1000, PackageStatus::Exhausted, 30),
            package(1000, 300, PackageStatus::Active, 10),
        ];
        let view = QuotaView::compute("sms", &packages, 700, Utc::now());
        assert_eq!(view.purchased, 1000);
        assert_eq!(view.remaining, 700);
        assert_eq!(view.remaining_ratio, 0.7);
        assert_eq!(view.burn_rate_per_day, 100.0);
        assert_eq!(view.days_left, Some(7.0));
    }

    #[test]
    fn a_channel_run_dry_shows_the_package_that_ran_out_last() {
        let packages = [
            package(500, 500, PackageStatus::Exhausted, 60),
            package(1000, 1000, PackageStatus::Exhausted, 30),
        ];
        let view = QuotaView::compute("sms", &packages, 0, Utc::now());
        assert_eq!((view.purchased, view.used, view.remaining), (1000, 1000, 0));
        assert_eq!(view.remaining_ratio, 0.0);
    }

    #[test]
    fn a_young_channel_burns_over_its_own_age() {
        let packages = [package(1000, 100, PackageStatus::Active, 2)];
        let view = QuotaView::compute("sms", &packages, 100, Utc::now());
        assert_eq!(view.burn_rate_per_day, 50.0);
    }

    #[test]
    fn nothing_used_means_no_forecast() {
        let view = QuotaView::compute(
            "sms",
            &[package(10, 0, PackageStatus::Active, 3)],
            0,
            Utc::now(),
        );
        assert_eq!(view.days_left, None);
        let empty = QuotaView::compute("sms", &[], 0, Utc::now());
        assert_eq!(empty.remaining_ratio, 0.0);
    }

    #[test]
    fn expired_units_are_reported_as_lost() {
        let view = QuotaView::compute(
            "sms",
            &[package(10, 4, PackageStatus::Expired, 40)],
            0,
            Utc::now(),
        );
        assert_eq!(view.expired_units, 6);
        assert_eq!(view.remaining, 0);
    }
}
