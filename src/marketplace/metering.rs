//! What the marketplace says of a purchased product (`DescribeApiMetering`'s rows), and the
//! one place where its figures are read as a remaining count.
//!
//! **The meaning of `TotalQuota` is not confirmed by Alibaba.** The field names alone
//! suggest "everything bought", so that what is left would be `TotalQuota − TotalUsage`.
//! But the API's own reference page (help.aliyun.com/document_detail/447490, titled
//! "API余量获取", *get the API's remaining count*) says the operation returns "API余量、总量、
//! 使用量" (remaining, total, used), and its sample answer is `TotalQuota: 98`,
//! `TotalUsage: 220`, `TotalCapacity: 318`: 98 + 220 = 318, and a total of 98 could not
//! have 220 used. So the sample reads as `TotalQuota` = remaining, `TotalCapacity` =
//! total. [`remaining_from`] follows the sample, and lets `TotalCapacity`, when the answer
//! carries it, say which reading holds for that row; nothing else in tollgate interprets
//! these fields.

use serde::Serialize;

use crate::domain::ProductCode;

/// Which kind of package a row counts: the request's `type` parameter (1 = 套餐包, plan
/// package; 2 = 资源包, resource package, per the API's reference page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PackageKind {
    Plan,
    Resource,
}

impl PackageKind {
    /// Both kinds: [`crate::marketplace::MarketClient`] asks for each, because a product
    /// bought as a resource package is not among the plan packages, and reconciling to a
    /// partial count would write a wrong adjustment.
    pub const ALL: [PackageKind; 2] = [PackageKind::Plan, PackageKind::Resource];

    /// The value of the `type` parameter.
    pub fn type_parameter(self) -> &'static str {
        match self {
            PackageKind::Plan => "1",
            PackageKind::Resource => "2",
        }
    }

    pub fn from_type_parameter(value: &str) -> Option<Self> {
        match value {
            "1" => Some(PackageKind::Plan),
            "2" => Some(PackageKind::Resource),
            _ => None,
        }
    }
}

/// One row of the answer's `Result`, figures as the marketplace wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeteringRow {
    pub kind: PackageKind,
    /// The Alibaba Cloud account's id, when the answer carries it.
    pub aliyun_pk: Option<String>,
    pub product_code: String,
    pub product_name: Option<String>,
    pub total_quota: i64,
    pub total_usage: i64,
    /// Absent from the SDK's model but present in the reference page's sample.
    pub total_capacity: Option<i64>,
    /// E.g. `次` (calls).
    pub unit: Option<String>,
}

impl MeteringRow {
    pub fn remaining(&self) -> Remaining {
        remaining_from(self.total_quota, self.total_usage, self.total_capacity)
    }
}

/// Everything the marketplace said of one product, over both kinds of package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProductMetering {
    pub product_code: ProductCode,
    /// Only rows for `product_code`, in the order the marketplace answered.
    pub rows: Vec<MeteringRow>,
    /// The `RequestId` of every page read, for Alibaba's support.
    pub request_ids: Vec<String>,
}

impl ProductMetering {
    pub fn total_quota(&self) -> i64 {
        self.rows.iter().map(|row| row.total_quota).sum()
    }

    pub fn total_usage(&self) -> i64 {
        self.rows.iter().map(|row| row.total_usage).sum()
    }

    /// What is left of the product: the sum of each row's [`MeteringRow::remaining`], so
    /// that one overdrawn package cannot hide another's units.
    pub fn remaining(&self) -> u64 {
        self.rows
            .iter()
            .map(|row| row.remaining().units)
            .fold(0, u64::saturating_add)
    }

    /// Whether every row's reading was confirmed by its `TotalCapacity`.
    pub fn confirmed(&self) -> bool {
        self.rows.iter().all(|row| row.remaining().confirmed)
    }
}

/// Which way a row's figures were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// `TotalQuota` is what is left (the reference page's sample; the default).
    QuotaIsRemaining,
    /// `TotalQuota` is everything bought, and what is left is `TotalQuota − TotalUsage`.
    QuotaIsTotal,
}

/// A row's remaining count and how it was arrived at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Remaining {
    pub units: u64,
    pub reading: Reading,
    /// `true` when `TotalCapacity` agreed with the reading; `false` when the answer had no
    /// `TotalCapacity` (or one that fits neither reading) and the default was assumed.
    pub confirmed: bool,
}

/// **An interpretation, not a documented rule**: what is left of a package, from a row's
/// `TotalQuota`, `TotalUsage` and (if present) `TotalCapacity`. Never below zero.
///
/// - `TotalCapacity == TotalQuota + TotalUsage`: `TotalQuota` is the remaining count (as
///   in the API reference page's sample, 98 + 220 = 318).
/// - `TotalCapacity == TotalQuota` (and something was used): `TotalQuota` is the total,
///   and the remaining count is `TotalQuota − TotalUsage`.
/// - Otherwise (no `TotalCapacity`, or one that fits neither): the sample's reading,
///   `TotalQuota`, marked unconfirmed.
///
/// This is the only function in tollgate that gives these fields a meaning; if Alibaba
/// documents them otherwise, this is what changes (and its tests say how).
pub fn remaining_from(
    total_quota: i64,
    total_usage: i64,
    total_capacity: Option<i64>,
) -> Remaining {
    let non_negative = |value: i64| u64::try_from(value).unwrap_or(0);
    let quota_is_remaining = Remaining {
        units: non_negative(total_quota),
        reading: Reading::QuotaIsRemaining,
        confirmed: true,
    };
    match total_capacity {
        Some(capacity) if Some(capacity) == total_quota.checked_add(total_usage) => {
            quota_is_remaining
        }
        Some(capacity) if capacity == total_quota => Remaining {
            units: non_negative(total_quota.saturating_sub(total_usage)),
            reading: Reading::QuotaIsTotal,
            confirmed: true,
        },
        _ => Remaining {
            confirmed: false,
            ..quota_is_remaining
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(quota: i64, usage: i64, capacity: Option<i64>) -> MeteringRow {
        MeteringRow {
            kind: PackageKind::Plan,
            aliyun_pk: None,
            product_code: "cmapi00037415".into(),
            product_name: None,
            total_quota: quota,
            total_usage: usage,
            total_capacity: capacity,
            unit: Some("次".into()),
        }
    }

    #[test]
    fn the_reference_pages_sample_reads_as_98_left() {
        let remaining = remaining_from(98, 220, Some(318));
        assert_eq!(
            remaining,
            Remaining {
                units: 98,
                reading: Reading::QuotaIsRemaining,
                confirmed: true
            }
        );
    }

    #[test]
    fn a_capacity_equal_to_the_quota_reads_the_quota_as_the_total() {
        let remaining = remaining_from(1000, 260, Some(1000));
        assert_eq!(remaining.units, 740);
        assert_eq!(remaining.reading, Reading::QuotaIsTotal);
        assert!(remaining.confirmed);
    }

    #[test]
    fn without_a_capacity_the_quota_is_taken_as_what_is_left_unconfirmed() {
        let remaining = remaining_from(98, 220, None);
        assert_eq!(remaining.units, 98);
        assert_eq!(remaining.reading, Reading::QuotaIsRemaining);
        assert!(!remaining.confirmed);
        assert!(!remaining_from(98, 220, Some(5)).confirmed, "fits neither");
    }

    #[test]
    fn nothing_used_means_both_readings_agree() {
        let remaining = remaining_from(500, 0, Some(500));
        assert_eq!(remaining.units, 500);
        assert!(remaining.confirmed);
    }

    #[test]
    fn the_remaining_count_is_never_below_zero() {
        assert_eq!(remaining_from(-3, 0, None).units, 0);
        assert_eq!(remaining_from(100, 130, Some(100)).units, 0);
        assert_eq!(remaining_from(i64::MIN, i64::MAX, Some(-1)).units, 0);
    }

    #[test]
    fn a_product_sums_its_rows_each_read_on_its_own() {
        let metering = ProductMetering {
            product_code: ProductCode::parse("cmapi00037415").unwrap(),
            rows: vec![row(98, 220, Some(318)), row(1000, 1200, Some(1000))],
            request_ids: vec![],
        };
        // The overdrawn second row counts 0, not −200 against the first.
        assert_eq!(metering.remaining(), 98);
        assert_eq!(metering.total_quota(), 1098);
        assert_eq!(metering.total_usage(), 1420);
        assert!(metering.confirmed());
    }

    #[test]
    fn the_type_parameter_round_trips() {
        for kind in PackageKind::ALL {
            assert_eq!(
                PackageKind::from_type_parameter(kind.type_parameter()),
                Some(kind)
            );
        }
        assert_eq!(PackageKind::from_type_parameter("3"), None);
    }
}
