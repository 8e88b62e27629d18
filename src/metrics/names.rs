//! The metric names of SPEC §9 and §14 (and the quota split of SPEC §4 beside them): a
//! contract with the dashboards and alerting rules.

pub const SENDS_TOTAL: &str = "tollgate_sends_total";
pub const BILLED_UNITS_TOTAL: &str = "tollgate_billed_units_total";
pub const COST_YUAN_TOTAL: &str = "tollgate_cost_yuan_total";
pub const QUOTA_REMAINING_UNITS: &str = "tollgate_quota_remaining_units";
pub const QUOTA_PURCHASED_UNITS: &str = "tollgate_quota_purchased_units";
pub const QUOTA_POOL_UNITS: &str = "tollgate_quota_pool_units";
pub const QUOTA_USED_UNITS: &str = "tollgate_quota_used_units";
pub const QUOTA_RESERVED_UNITS: &str = "tollgate_quota_reserved_units";
pub const QUOTA_RESERVE_UNITS: &str = "tollgate_quota_reserve_units";
pub const QUOTA_RECONCILED_UNITS: &str = "tollgate_quota_reconciled_units";
pub const QUOTA_EXPIRED_UNITS: &str = "tollgate_quota_expired_units";
pub const QUOTA_BURN_RATE_UNITS_PER_DAY: &str = "tollgate_quota_burn_rate_units_per_day";
pub const QUOTA_REMAINING_RATIO: &str = "tollgate_quota_remaining_ratio";
pub const QUOTA_TIME_LEFT_SECONDS: &str = "tollgate_quota_time_left_seconds";
pub const PACKAGE_EXPIRY_TIMESTAMP_SECONDS: &str = "tollgate_package_expiry_timestamp_seconds";
pub const UPSTREAM_REQUEST_DURATION_SECONDS: &str = "tollgate_upstream_request_duration_seconds";
pub const NOTIFICATIONS_TOTAL: &str = "tollgate_notifications_total";
pub const ALERT_FIRING: &str = "tollgate_alert_firing";
pub const MARKETPLACE_REMAINING_UNITS: &str = "tollgate_marketplace_remaining_units";
pub const LEDGER_DRIFT_UNITS: &str = "tollgate_ledger_drift_units";
pub const VENDOR_REMAINING_UNITS: &str = "tollgate_vendor_remaining_units";
pub const VENDOR_DRIFT_UNITS: &str = "tollgate_vendor_drift_units";
pub const ROUTE_FAILOVERS_TOTAL: &str = "tollgate_route_failovers_total";
pub const CIRCUIT_OPEN: &str = "tollgate_circuit_open";
pub const ROUTE_CHANNELS: &str = "tollgate_route_channels";
pub const ROUTE_CHANNELS_AVAILABLE: &str = "tollgate_route_channels_available";
pub const BUILD_INFO: &str = "tollgate_build_info";

/// Every metric family tollgate exports (a histogram also exposes `_bucket`, `_sum`
/// and `_count` series under its name).
pub const ALL: [&str; 27] = [
    SENDS_TOTAL,
    BILLED_UNITS_TOTAL,
    COST_YUAN_TOTAL,
    QUOTA_REMAINING_UNITS,
    QUOTA_PURCHASED_UNITS,
    QUOTA_POOL_UNITS,
    QUOTA_USED_UNITS,
    QUOTA_RESERVED_UNITS,
    QUOTA_RESERVE_UNITS,
    QUOTA_RECONCILED_UNITS,
    QUOTA_EXPIRED_UNITS,
    QUOTA_BURN_RATE_UNITS_PER_DAY,
    QUOTA_REMAINING_RATIO,
    QUOTA_TIME_LEFT_SECONDS,
    PACKAGE_EXPIRY_TIMESTAMP_SECONDS,
    UPSTREAM_REQUEST_DURATION_SECONDS,
    NOTIFICATIONS_TOTAL,
    ALERT_FIRING,
    MARKETPLACE_REMAINING_UNITS,
    LEDGER_DRIFT_UNITS,
    VENDOR_REMAINING_UNITS,
    VENDOR_DRIFT_UNITS,
    ROUTE_FAILOVERS_TOTAL,
    CIRCUIT_OPEN,
    ROUTE_CHANNELS,
    ROUTE_CHANNELS_AVAILABLE,
    BUILD_INFO,
];

/// Histograms among [`ALL`]: their series carry a suffix.
pub const HISTOGRAMS: [&str; 1] = [UPSTREAM_REQUEST_DURATION_SECONDS];

/// Whether `series` (a name as it appears in PromQL or the text format) is one that
/// tollgate exports: a family of [`ALL`], or a histogram's `_bucket`/`_sum`/`_count`.
pub fn is_exported_series(series: &str) -> bool {
    if ALL.contains(&series) {
        return true;
    }
    HISTOGRAMS.iter().any(|histogram| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| series.strip_prefix(histogram) == Some(suffix))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_series_are_exported_but_other_suffixes_are_not() {
        assert!(is_exported_series(
            "tollgate_upstream_request_duration_seconds_bucket"
        ));
        assert!(is_exported_series("tollgate_sends_total"));
        assert!(!is_exported_series("tollgate_sends_total_bucket"));
        assert!(!is_exported_series("tollgate_send_total"));
    }
}
