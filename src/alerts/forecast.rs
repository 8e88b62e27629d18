//! Forecasts from the ledger: when a channel runs out, and how much to buy.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::ledger::{Package, QuotaView};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Now plus `days_left` (absent while nothing is being used).
    pub exhausted_at: Option<DateTime<Utc>>,
    /// Units to buy so that the next package lasts as long as the last one did at the
    /// trailing burn rate; the last package's size while there is no burn rate.
    pub suggested_units: Option<i64>,
}

impl Forecast {
    /// `packages` are the channel's, in any order.
    pub fn compute(quota: &QuotaView, packages: &[Package], now: DateTime<Utc>) -> Forecast {
        let exhausted_at = quota.days_left.and_then(|days| {
            let seconds = (days * 86_400.0).round();
            (seconds.is_finite() && seconds < 1e12).then(|| now + Duration::seconds(seconds as i64))
        });
        let last = packages.iter().max_by_key(|p| (p.purchased_at, p.id));
        let suggested_units = last.map(|last| {
            // How long the last package served (until now, or until it ran out at the
            // latest: the current moment is the best bound the ledger gives).
            let lasted_days = ((now - last.purchased_at).num_seconds() as f64 / 86_400.0).max(1.0);
            if quota.burn_rate_per_day > 0.0 {
                (quota.burn_rate_per_day * lasted_days).ceil() as i64
            } else {
                last.units
            }
        });
        Forecast {
            exhausted_at,
            suggested_units,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Yuan;
    use crate::ledger::{PackageStatus, TotalsRow};

    fn package(units: i64, purchased_days_ago: i64) -> Package {
        Package {
            id: 1,
            channel: "sms".into(),
            units,
            price: Yuan::ZERO,
            unit_price: rust_decimal::Decimal::ZERO,
            purchased_at: Utc::now() - Duration::days(purchased_days_ago),
            expires_at: None,
            vendor_order_id: None,
            note: None,
            used: 0,
            reserved: 0,
            remaining: units,
            expired_units: 0,
            status: PackageStatus::Active,
        }
    }

    fn totals(first_purchase_days_ago: i64) -> TotalsRow {
        TotalsRow {
            first_purchased_at: Some(Utc::now() - Duration::days(first_purchase_days_ago)),
            ..TotalsRow::default()
        }
    }

    #[test]
    fn the_next_package_should_last_as_long_as_the_last_one() {
        let now = Utc::now();
        let packages = [package(1000, 30)];
        let quota = QuotaView::compute("sms", &totals(30), &packages, None, 700, now);
        // 100 a day over the last 7 days, and the package has served 30 days.
        let forecast = Forecast::compute(&quota, &packages, now);
        assert_eq!(forecast.suggested_units, Some(3000));
        let at = forecast.exhausted_at.unwrap();
        assert_eq!((at - now).num_days(), 10);
    }

    #[test]
    fn without_use_the_suggestion_is_the_last_package() {
        let now = Utc::now();
        let packages = [package(500, 3)];
        let quota = QuotaView::compute("sms", &totals(3), &packages, None, 0, now);
        let forecast = Forecast::compute(&quota, &packages, now);
        assert_eq!(forecast.suggested_units, Some(500));
        assert_eq!(forecast.exhausted_at, None);
    }
}
