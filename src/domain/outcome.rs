//! How one vendor call ended, as the ledger records it and the metrics label it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The outcome of one vendor call. The strings from [`Outcome::as_str`] are stored in the
/// database and used as the `outcome` metric label, so they are part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The vendor accepted the message (`ReturnStatus: Success`).
    Sent,
    /// The vendor answered 200 but refused the message (e.g. `ReturnStatus: Faild`).
    VendorRejected,
    /// The vendor's gateway says the purchased package is used up or expired.
    VendorQuotaExhausted,
    /// The vendor's gateway throttled the call (`Throttled by … Flow Control`).
    Throttled,
    /// The vendor's gateway refused the AppCode.
    AuthFailed,
    /// Any other error answer, or a connection that could not be made.
    UpstreamError,
    /// The request may have reached the vendor but no answer came back.
    Uncertain,
}

impl Outcome {
    /// Every outcome, in declaration order (e.g. to pre-register metric series).
    pub const ALL: [Outcome; 7] = [
        Outcome::Sent,
        Outcome::VendorRejected,
        Outcome::VendorQuotaExhausted,
        Outcome::Throttled,
        Outcome::AuthFailed,
        Outcome::UpstreamError,
        Outcome::Uncertain,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::VendorRejected => "vendor_rejected",
            Outcome::VendorQuotaExhausted => "vendor_quota_exhausted",
            Outcome::Throttled => "throttled",
            Outcome::AuthFailed => "auth_failed",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Uncertain => "uncertain",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown outcome `{0}`")]
pub struct UnknownOutcome(pub String);

impl FromStr for Outcome {
    type Err = UnknownOutcome;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == s)
            .ok_or_else(|| UnknownOutcome(s.to_owned()))
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Outcome {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_round_trips_through_its_string() {
        for outcome in Outcome::ALL {
            assert_eq!(outcome.as_str().parse::<Outcome>(), Ok(outcome));
            assert_eq!(outcome.to_string(), outcome.as_str());
        }
    }

    #[test]
    fn the_strings_are_the_contract() {
        let strings: Vec<&str> = Outcome::ALL.iter().map(Outcome::as_str).collect();
        assert_eq!(
            strings,
            [
                "sent",
                "vendor_rejected",
                "vendor_quota_exhausted",
                "throttled",
                "auth_failed",
                "upstream_error",
                "uncertain"
            ]
        );
    }

    #[test]
    fn unknown_strings_are_refused() {
        assert_eq!(
            "Sent".parse::<Outcome>(),
            Err(UnknownOutcome("Sent".to_owned()))
        );
        assert!("".parse::<Outcome>().is_err());
    }

    #[test]
    fn outcomes_serialize_as_their_string() {
        assert_eq!(
            serde_json::to_string(&Outcome::VendorQuotaExhausted).unwrap(),
            "\"vendor_quota_exhausted\""
        );
        let back: Outcome = serde_json::from_str("\"uncertain\"").unwrap();
        assert_eq!(back, Outcome::Uncertain);
        assert!(serde_json::from_str::<Outcome>("\"nope\"").is_err());
    }
}
