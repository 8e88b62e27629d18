//! Forecasts from the ledger: when a channel runs out, and how much to buy.
//!
//! The suggestion covers a horizon (`[alerts] suggest_days`, default 30) at the trailing
//! 7-day burn rate: `need = ⌈burn rate × days⌉`. It is then rounded up to what the vendor
//! sells (`[[channels]] package_sizes`): the smallest single package that covers the
//! need, or, when none does, the largest package as many times as it takes. Without
//! sizes the need itself is suggested. While nothing is being used there is no rate to
//! project, and the last package bought (rounded the same way) is suggested instead.
//!
//! The need is not reduced by the units still left: those may expire or be spent before
//! the new package arrives, and a buyer reads "what 30 days cost" more easily than a
//! difference.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::ledger::{Package, QuotaView};

/// How a suggestion is worked out for one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuggestionPlan {
    /// The horizon the suggestion covers, in days (at least 1).
    pub days: u32,
    /// The package sizes the vendor sells, ascending, each above 0 (may be empty).
    pub package_sizes: Vec<i64>,
}

impl Default for SuggestionPlan {
    fn default() -> Self {
        Self {
            days: 30,
            package_sizes: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Now plus `days_left` (absent while nothing is being used).
    pub exhausted_at: Option<DateTime<Utc>>,
    /// [`Suggestion::units`], for the event JSON.
    pub suggested_units: Option<i64>,
    /// How the suggestion was worked out (absent for a channel never bought).
    pub suggestion: Option<Suggestion>,
}

/// Units to buy, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub units: i64,
    pub basis: Basis,
    pub packages: Packages,
}

/// What the suggestion covers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "basis", rename_all = "snake_case")]
pub enum Basis {
    /// `need = ⌈per_day × days⌉`.
    BurnRate { per_day: f64, days: u32, need: i64 },
    /// Nothing used lately: as much as was bought last time.
    LastPackage { units: i64 },
}

/// How the need became something the vendor sells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "packages", rename_all = "snake_case")]
pub enum Packages {
    /// No package sizes configured: the need itself.
    AsNeeded,
    /// The smallest size that covers the need.
    One { size: i64 },
    /// No size covers the need: the largest one, `count` times.
    Repeated { size: i64, count: i64 },
}

impl Forecast {
    /// `packages` are the channel's, in any order.
    pub fn compute(
        quota: &QuotaView,
        packages: &[Package],
        plan: &SuggestionPlan,
        now: DateTime<Utc>,
    ) -> Forecast {
        let exhausted_at = quota.days_left.and_then(|days| {
            let seconds = (days * 86_400.0).round();
            (seconds.is_finite() && seconds < 1e12).then(|| now + Duration::seconds(seconds as i64))
        });
        let last_bought = packages
            .iter()
            .max_by_key(|p| (p.purchased_at, p.id))
            .map(|p| p.units);
        let suggestion = last_bought
            .and_then(|last| Suggestion::compute(quota.burn_rate_per_day, Some(last), plan));
        Forecast {
            exhausted_at,
            suggested_units: suggestion.as_ref().map(|s| s.units),
            suggestion,
        }
    }
}

impl Suggestion {
    /// The suggestion for a channel burning `per_day` units whose last package held
    /// `last_package` units; `None` with neither a burn rate nor a package.
    pub fn compute(
        per_day: f64,
        last_package: Option<i64>,
        plan: &SuggestionPlan,
    ) -> Option<Suggestion> {
        let days = plan.days.max(1);
        let basis = if per_day > 0.0 && per_day.is_finite() {
            // `as` saturates: an absurd rate gives i64::MAX, never a wrap-around.
            let need = (per_day * f64::from(days)).ceil().max(1.0) as i64;
            Basis::BurnRate {
                per_day,
                days,
                need,
            }
        } else {
            Basis::LastPackage {
                units: last_package.filter(|units| *units > 0)?,
            }
        };
        let need = match basis {
            Basis::BurnRate { need, .. } => need,
            Basis::LastPackage { units } => units,
        };
        let (units, packages) = round_to_packages(need, &plan.package_sizes);
        Some(Suggestion {
            units,
            basis,
            packages,
        })
    }

    /// One zh-CN sentence saying how the suggestion was worked out, such as
    /// `按近 7 天日均 60 条 × 30 天 = 1800 条，建议购买 5000 条套餐（能覆盖用量的最小套餐）`.
    /// `unit` is the channel's (条 or 次).
    pub fn explain_zh(&self, unit: &str) -> String {
        let basis = match &self.basis {
            Basis::BurnRate {
                per_day,
                days,
                need,
            } => format!(
                "按近 7 天日均 {} {unit} × {days} 天 = {need} {unit}",
                one_decimal(*per_day)
            ),
            Basis::LastPackage { units } => {
                format!("近 7 天没有用量，按上次购买的 {units} {unit}计")
            }
        };
        let advice = match self.packages {
            Packages::AsNeeded => format!("建议购买 {} {unit}", self.units),
            Packages::One { size } => {
                format!("建议购买 {size} {unit}套餐（能覆盖用量的最小套餐）")
            }
            Packages::Repeated { size, count } => format!(
                "超过最大套餐 {size} {unit}，建议购买 {count} 个 {size} {unit}套餐（共 {} {unit}）",
                self.units
            ),
        };
        format!("{basis}，{advice}")
    }
}

/// `need` rounded up to what the vendor sells: the smallest of `sizes` (ascending) that
/// covers it, else the largest repeated; `need` itself without sizes.
pub fn round_to_packages(need: i64, sizes: &[i64]) -> (i64, Packages) {
    if let Some(&size) = sizes.iter().find(|&&size| size >= need) {
        return (size, Packages::One { size });
    }
    match sizes.last() {
        None => (need, Packages::AsNeeded),
        Some(&size) => {
            let count = need.div_euclid(size) + i64::from(need.rem_euclid(size) != 0);
            (
                count.saturating_mul(size),
                Packages::Repeated { size, count },
            )
        }
    }
}

/// `60` for 60.0, `12.5` for 12.5: a rate as people write it.
fn one_decimal(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Yuan;
    use crate::ledger::{PackageStatus, TotalsRow};
    use proptest::prelude::*;

    fn package(units: i64, purchased_days_ago: i64) -> Package {
        Package {
            id: 1,
            channel: "sms".into(),
            units,
            price: Yuan::ZERO,
            unit_price: rust_decimal::Decimal::ZERO,
            purchased_at: Utc::now() - Duration::days(purchased_days_ago),
            expires_at: None,
            order_id: None,
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

    fn plan(days: u32, sizes: &[i64]) -> SuggestionPlan {
        SuggestionPlan {
            days,
            package_sizes: sizes.to_vec(),
        }
    }

    #[test]
    fn the_suggestion_covers_the_horizon_at_the_burn_rate() {
        let now = Utc::now();
        let packages = [package(1000, 30)];
        let quota = QuotaView::compute("sms", &totals(30), &packages, None, 700, now);
        // 100 a day over the last 7 days, for 30 days.
        let forecast = Forecast::compute(&quota, &packages, &SuggestionPlan::default(), now);
        assert_eq!(forecast.suggested_units, Some(3000));
        let at = forecast.exhausted_at.unwrap();
        assert_eq!((at - now).num_days(), 10);
    }

    #[test]
    fn right_after_a_small_purchase_the_suggestion_still_covers_the_horizon() {
        // Bought 10 and sent 3 today: 3 a day (the rate's window is at least one day),
        // so 30 days need 90, not "about 3".
        let now = Utc::now();
        let packages = [package(10, 0)];
        let quota = QuotaView::compute("sms", &totals(0), &packages, None, 3, now);
        let forecast = Forecast::compute(&quota, &packages, &plan(30, &[]), now);
        assert_eq!(forecast.suggested_units, Some(90));
    }

    #[test]
    fn the_need_is_rounded_up_to_the_smallest_package_that_covers_it() {
        let suggestion =
            Suggestion::compute(60.0, Some(1000), &plan(30, &[1000, 5000, 10000])).unwrap();
        assert_eq!(suggestion.units, 5000);
        assert_eq!(
            suggestion.explain_zh("条"),
            "按近 7 天日均 60 条 × 30 天 = 1800 条，建议购买 5000 条套餐（能覆盖用量的最小套餐）"
        );
    }

    #[test]
    fn a_need_above_every_package_buys_the_largest_several_times() {
        let suggestion = Suggestion::compute(800.0, Some(1000), &plan(30, &[1000, 10000])).unwrap();
        assert_eq!(suggestion.units, 30000);
        assert_eq!(
            suggestion.packages,
            Packages::Repeated {
                size: 10000,
                count: 3
            }
        );
        let text = suggestion.explain_zh("次");
        assert!(
            text.contains("24000 次") && text.contains("3 个 10000 次套餐（共 30000 次）"),
            "{text}"
        );
    }

    #[test]
    fn without_use_the_suggestion_is_the_last_package_rounded_to_a_size() {
        let now = Utc::now();
        let packages = [package(500, 3)];
        let quota = QuotaView::compute("sms", &totals(3), &packages, None, 0, now);
        let forecast = Forecast::compute(&quota, &packages, &plan(30, &[1000, 5000]), now);
        assert_eq!(forecast.suggested_units, Some(1000));
        assert_eq!(forecast.exhausted_at, None);
        let text = forecast.suggestion.unwrap().explain_zh("条");
        assert!(
            text.starts_with("近 7 天没有用量，按上次购买的 500 条计"),
            "{text}"
        );
        assert_eq!(Suggestion::compute(0.0, None, &plan(30, &[])), None);
    }

    #[test]
    fn rates_read_as_people_write_them() {
        assert_eq!(one_decimal(60.0), "60");
        assert_eq!(one_decimal(12.54), "12.5");
        assert_eq!(one_decimal(0.04), "0");
    }

    proptest! {
        #[test]
        fn the_suggestion_covers_the_horizon_and_is_something_the_vendor_sells(
            per_day in 0.001f64..1_000_000.0,
            days in 1u32..=366,
            mut sizes in proptest::collection::vec(1i64..1_000_000, 0..5),
        ) {
            sizes.sort_unstable();
            sizes.dedup();
            let suggestion = Suggestion::compute(per_day, None, &plan(days, &sizes)).unwrap();
            let horizon = per_day * f64::from(days);
            prop_assert!(suggestion.units > 0, "never 0 while burning");
            prop_assert!(suggestion.units as f64 >= horizon, "{} < {horizon}", suggestion.units);
            match sizes.last() {
                None => prop_assert_eq!(suggestion.packages, Packages::AsNeeded),
                Some(&largest) => prop_assert!(
                    sizes.contains(&suggestion.units)
                        || (suggestion.units % largest == 0 && suggestion.units > largest),
                    "{} is neither a size of {:?} nor a multiple of the largest",
                    suggestion.units,
                    sizes
                ),
            }
            // And it is the least such amount: one package less would not cover it.
            match suggestion.packages {
                Packages::One { size } => {
                    let smaller = sizes.iter().filter(|&&s| s < size).max();
                    prop_assert!(smaller.is_none_or(|&s| (s as f64) < horizon));
                }
                Packages::Repeated { size, count } => {
                    prop_assert!((((count - 1) * size) as f64) < horizon);
                }
                Packages::AsNeeded => prop_assert!(((suggestion.units - 1) as f64) < horizon),
            }
        }
    }
}
