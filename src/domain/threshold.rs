//! A quota threshold written as units or as a share of the live pool (`"10%"`, `200`),
//! for the priority reserve of SPEC §11.

use std::fmt;

/// `reserve_critical` and `shed_bulk_below`: a number of units, or a percentage of the
/// units of the channel's live pool (its unexpired packages with units left).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuotaThreshold {
    Units(i64),
    /// 0 to 100.
    Percent(f64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaThresholdError {
    #[error("{0:?} is neither a number of units (200) nor a percentage (\"10%\")")]
    Unreadable(String),
    #[error("must not be negative")]
    Negative,
    #[error("a percentage must be at most 100%")]
    AbovePool,
}

impl QuotaThreshold {
    /// `"10%"`, `"12.5%"`, `"200"`.
    pub fn parse(raw: &str) -> Result<Self, QuotaThresholdError> {
        let text = raw.trim();
        let unreadable = || QuotaThresholdError::Unreadable(raw.chars().take(40).collect());
        if let Some(number) = text.strip_suffix('%') {
            let percent: f64 = number.trim().parse().map_err(|_| unreadable())?;
            if !percent.is_finite() {
                return Err(unreadable());
            }
            return Self::percent(percent);
        }
        let units: i64 = text.parse().map_err(|_| unreadable())?;
        Self::units(units)
    }

    pub fn units(units: i64) -> Result<Self, QuotaThresholdError> {
        if units < 0 {
            return Err(QuotaThresholdError::Negative);
        }
        Ok(QuotaThreshold::Units(units))
    }

    pub fn percent(percent: f64) -> Result<Self, QuotaThresholdError> {
        if percent < 0.0 {
            return Err(QuotaThresholdError::Negative);
        }
        if percent > 100.0 {
            return Err(QuotaThresholdError::AbovePool);
        }
        Ok(QuotaThreshold::Percent(percent))
    }

    /// The threshold in units for a live pool of `pool_units` (a percentage rounds up:
    /// a reserve keeps at least what it says).
    pub fn units_of(&self, pool_units: i64) -> i64 {
        match *self {
            QuotaThreshold::Units(units) => units,
            QuotaThreshold::Percent(percent) => ((pool_units.max(0) as f64) * percent / 100.0
                - 1e-9)
                .ceil()
                .max(0.0) as i64,
        }
    }
}

impl fmt::Display for QuotaThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaThreshold::Units(units) => write!(f, "{units}"),
            QuotaThreshold::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units_and_percentages_are_read_and_refused_as_they_should() {
        assert_eq!(
            QuotaThreshold::parse("10%"),
            Ok(QuotaThreshold::Percent(10.0))
        );
        assert_eq!(
            QuotaThreshold::parse(" 200 "),
            Ok(QuotaThreshold::Units(200))
        );
        assert_eq!(
            QuotaThreshold::parse("-5"),
            Err(QuotaThresholdError::Negative)
        );
        assert_eq!(
            QuotaThreshold::parse("101%"),
            Err(QuotaThresholdError::AbovePool)
        );
        assert!(matches!(
            QuotaThreshold::parse("lots"),
            Err(QuotaThresholdError::Unreadable(_))
        ));
        assert_eq!(QuotaThreshold::Percent(10.0).units_of(100), 10);
        assert_eq!(QuotaThreshold::Percent(10.0).units_of(95), 10);
        assert_eq!(QuotaThreshold::Percent(30.0).units_of(0), 0);
    }

    proptest! {
        #[test]
        fn a_percentage_never_keeps_less_than_it_says_nor_more_than_the_pool(
            percent in 0.0f64..=100.0, pool in 0i64..10_000_000,
        ) {
            let units = QuotaThreshold::Percent(percent).units_of(pool);
            prop_assert!(units <= pool);
            prop_assert!(units as f64 + 1e-6 >= pool as f64 * percent / 100.0 - 1.0);
        }
    }
}
