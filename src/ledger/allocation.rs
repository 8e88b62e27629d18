//! Which packages a reservation took its units from, and how that is stored.

use std::fmt;
use std::str::FromStr;

/// The units a reservation took, package by package, in the order they were taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allocation {
    pub parts: Vec<(i64, i64)>,
}

impl Allocation {
    pub fn units(&self) -> i64 {
        self.parts.iter().map(|(_, units)| units).sum()
    }
}

/// Stored as `package_id:units,…` in `sends.allocation`.
impl fmt::Display for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (package, units)) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{package}:{units}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed stored allocation {0:?}")]
pub struct AllocationParseError(String);

impl FromStr for Allocation {
    type Err = AllocationParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || AllocationParseError(raw.to_owned());
        if raw.is_empty() {
            return Ok(Allocation::default());
        }
        let parts = raw
            .split(',')
            .map(|part| {
                let (package, units) = part.split_once(':').ok_or_else(bad)?;
                Ok((
                    package.parse().map_err(|_| bad())?,
                    units.parse().map_err(|_| bad())?,
                ))
            })
            .collect::<Result<_, _>>()?;
        Ok(Allocation { parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_round_trip_through_their_stored_form() {
        let allocation = Allocation {
            parts: vec![(3, 2), (7, 1)],
        };
        assert_eq!(allocation.to_string(), "3:2,7:1");
        assert_eq!("3:2,7:1".parse::<Allocation>().unwrap(), allocation);
        assert_eq!("".parse::<Allocation>().unwrap(), Allocation::default());
        assert!("3-2".parse::<Allocation>().is_err());
    }
}
