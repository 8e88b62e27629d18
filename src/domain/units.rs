//! Unit counts: what one send costs (segments or calls) and what a package holds.

use std::fmt;

use serde::Serialize;

/// The units one send is rated at: SMS segments or voice calls. Always at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Units(u32);

impl Units {
    pub const ONE: Units = Units(1);

    /// `None` for zero: nothing is ever rated at zero units.
    pub fn new(count: u32) -> Option<Self> {
        (count > 0).then_some(Self(count))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_i64(self) -> i64 {
        i64::from(self.0)
    }
}

impl fmt::Display for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The size of a purchased package: a positive number of units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PackageUnits(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a package holds a positive whole number of units (at most 1000000000), not {0}")]
pub struct PackageUnitsError(pub String);

impl PackageUnits {
    pub const MAX: i64 = 1_000_000_000;

    pub fn new(count: i64) -> Result<Self, PackageUnitsError> {
        if (1..=Self::MAX).contains(&count) {
            Ok(Self(count))
        } else {
            Err(PackageUnitsError(count.to_string()))
        }
    }

    pub fn parse(raw: &str) -> Result<Self, PackageUnitsError> {
        let count: i64 = raw
            .trim()
            .parse()
            .map_err(|_| PackageUnitsError(raw.chars().take(40).collect()))?;
        Self::new(count)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_never_a_rating() {
        assert_eq!(Units::new(0), None);
        assert_eq!(Units::new(3).map(Units::get), Some(3));
    }

    #[test]
    fn packages_hold_a_positive_number_of_units() {
        assert!(PackageUnits::new(1000).is_ok());
        assert!(PackageUnits::new(0).is_err());
        assert!(PackageUnits::new(-5).is_err());
        assert!(PackageUnits::parse("12.5").is_err());
        assert!(PackageUnits::parse("abc").is_err());
        assert_eq!(PackageUnits::parse(" 500 ").unwrap().get(), 500);
    }
}
