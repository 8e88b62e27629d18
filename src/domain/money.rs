//! Exact money (CNY) and unit counts. No float ever holds an amount.
//!
//! Amounts are kept as whole micro-yuan (¥0.000001) in an `i64`: exact, portable across
//! both database backends, and fine enough that any price with up to six decimals is
//! represented without rounding. Per-unit costs are derived with integer arithmetic so
//! that the charges of a fully used package add up to its price to the micro-yuan.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

const MICROS_PER_YUAN: i64 = 1_000_000;

/// An exact, non-negative amount of yuan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Yuan {
    micros: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YuanError {
    #[error("{0:?} is not a decimal amount of yuan (write it like 45.00)")]
    NotDecimal(String),
    #[error("amount {0} is negative")]
    Negative(String),
    #[error("amount {0} has more than 6 decimal places")]
    TooPrecise(String),
    #[error("amount {0} is too large")]
    TooLarge(String),
}

impl Yuan {
    pub const ZERO: Yuan = Yuan { micros: 0 };

    /// Parses a decimal string such as `45`, `45.00` or `0.045`. Exponents, signs other
    /// than none, and more than six decimals are refused rather than rounded.
    pub fn parse(raw: &str) -> Result<Self, YuanError> {
        let trimmed = raw.trim();
        let well_formed = !trimmed.is_empty()
            && trimmed
                .chars()
                .all(|c| c.is_ascii_digit() || c == '.' || c == '-')
            && trimmed.chars().filter(|c| *c == '.').count() <= 1
            && trimmed.chars().any(|c| c.is_ascii_digit());
        if !well_formed {
            return Err(YuanError::NotDecimal(raw.chars().take(40).collect()));
        }
        let decimal = Decimal::from_str(trimmed)
            .map_err(|_| YuanError::NotDecimal(raw.chars().take(40).collect()))?;
        Self::from_decimal(decimal)
    }

    pub fn from_decimal(decimal: Decimal) -> Result<Self, YuanError> {
        if decimal.is_sign_negative() && !decimal.is_zero() {
            return Err(YuanError::Negative(decimal.to_string()));
        }
        let scaled = decimal * Decimal::from(MICROS_PER_YUAN);
        if scaled.fract() != Decimal::ZERO {
            return Err(YuanError::TooPrecise(decimal.to_string()));
        }
        let micros: i64 = scaled
            .trunc()
            .try_into()
            .map_err(|_| YuanError::TooLarge(decimal.to_string()))?;
        Ok(Self { micros })
    }

    pub fn from_micros(micros: i64) -> Self {
        Self { micros }
    }

    pub fn micros(self) -> i64 {
        self.micros
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.micros, 6).normalize()
    }

    pub fn checked_add(self, other: Yuan) -> Option<Yuan> {
        self.micros.checked_add(other.micros).map(Yuan::from_micros)
    }

    /// Shows at least two decimals (`45.00`, `0.045`), as people write prices.
    pub fn to_display_string(self) -> String {
        let decimal = self.to_decimal();
        if decimal.scale() < 2 {
            format!("{:.2}", decimal)
        } else {
            decimal.to_string()
        }
    }
}

impl fmt::Display for Yuan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_display_string())
    }
}

impl std::iter::Sum for Yuan {
    fn sum<I: Iterator<Item = Yuan>>(iter: I) -> Yuan {
        Yuan::from_micros(iter.map(|y| y.micros).sum())
    }
}

/// Yuan travel in JSON as decimal strings (`"0.045"`), never as floats.
impl Serialize for Yuan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_display_string())
    }
}

impl<'de> Deserialize<'de> for Yuan {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Integer(u64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => Yuan::parse(&text).map_err(serde::de::Error::custom),
            Raw::Integer(whole) => {
                Yuan::parse(&whole.to_string()).map_err(serde::de::Error::custom)
            }
        }
    }
}

/// The cost of the units numbered `first_unit .. first_unit + count` of a package of
/// `package_units` that cost `price` in all.
///
/// Unit `n`'s cost is `round(price * n / units) - round(price * (n - 1) / units)`, so the
/// costs telescope: however a package is consumed, the charges for all of its units add
/// up to exactly its price. With a price that divides evenly (¥45.00 for 1000) every unit
/// costs the same (¥0.045); otherwise the micro-yuan remainders are spread over the units.
pub fn cost_of_units(price: Yuan, package_units: i64, first_unit: i64, count: i64) -> Yuan {
    assert!(package_units > 0, "a package has at least one unit");
    assert!(
        first_unit >= 0 && count >= 0 && first_unit + count <= package_units,
        "units {first_unit}+{count} lie outside a package of {package_units}"
    );
    let position = |n: i64| -> i64 {
        // Round half up; the product fits in i128 for any i64 price and count.
        let numerator = i128::from(price.micros) * i128::from(n) * 2 + i128::from(package_units);
        let value = numerator / (2 * i128::from(package_units));
        i64::try_from(value).expect("a share of the price fits in the price")
    };
    Yuan::from_micros(position(first_unit + count) - position(first_unit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_prices_exactly() {
        assert_eq!(Yuan::parse("45.00").unwrap().micros(), 45_000_000);
        assert_eq!(Yuan::parse("0.045").unwrap().micros(), 45_000);
        assert_eq!(Yuan::parse("7").unwrap().to_string(), "7.00");
        assert_eq!(Yuan::parse("0.045").unwrap().to_string(), "0.045");
    }

    #[test]
    fn refuses_what_is_not_an_exact_decimal() {
        assert!(matches!(Yuan::parse("abc"), Err(YuanError::NotDecimal(_))));
        assert!(matches!(Yuan::parse("1e3"), Err(YuanError::NotDecimal(_))));
        assert!(matches!(Yuan::parse(""), Err(YuanError::NotDecimal(_))));
        assert!(matches!(
            Yuan::parse("4.5.0"),
            Err(YuanError::NotDecimal(_))
        ));
        assert!(matches!(Yuan::parse("-1"), Err(YuanError::Negative(_))));
        assert!(matches!(
            Yuan::parse("0.0000001"),
            Err(YuanError::TooPrecise(_))
        ));
    }

    #[test]
    fn a_package_of_1000_at_45_yuan_costs_0_045_per_unit() {
        let price = Yuan::parse("45.00").unwrap();
        for n in 0..1000 {
            assert_eq!(
                cost_of_units(price, 1000, n, 1),
                Yuan::parse("0.045").unwrap()
            );
        }
        let total: Yuan = (0..1000).map(|n| cost_of_units(price, 1000, n, 1)).sum();
        assert_eq!(total, price);
    }

    proptest! {
        #[test]
        fn charges_of_a_fully_used_package_sum_to_its_price(
            price_micros in 0i64..10_000_000_000,
            units in 1i64..5_000,
            cuts in proptest::collection::vec(1i64..50, 0..200),
        ) {
            let price = Yuan::from_micros(price_micros);
            let mut used = 0;
            let mut total = Yuan::ZERO;
            for cut in cuts {
                let take = cut.min(units - used);
                total = total.checked_add(cost_of_units(price, units, used, take)).unwrap();
                used += take;
            }
            total = total.checked_add(cost_of_units(price, units, used, units - used)).unwrap();
            prop_assert_eq!(total, price);
        }

        #[test]
        fn every_unit_costs_within_a_micro_yuan_of_the_average(
            price_micros in 0i64..1_000_000_000,
            units in 1i64..2_000,
            n in 0i64..2_000,
        ) {
            let n = n % units;
            let cost = cost_of_units(Yuan::from_micros(price_micros), units, n, 1).micros();
            let floor = price_micros / units;
            prop_assert!(cost == floor || cost == floor + 1);
        }
    }
}
