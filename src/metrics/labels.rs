//! Label values: every one from a closed set, so that no series can multiply unbounded.

use crate::domain::Outcome;

/// The `outcome` label of `tollgate_sends_total`.
///
/// A send that reached the vendor is labelled with the vendor outcome (`sent`,
/// `vendor_rejected`, …, the strings of [`Outcome::as_str`]). A send refused before the
/// vendor was called is labelled `quota_exhausted` (no local quota left, 402),
/// `quota_reserved` (what is left is kept for a higher class, 402), `rate_limited` (over
/// a traffic limit, 429) or `rejected` (any request or content error: invalid mobile,
/// unknown template, outside the sending window, …). Error codes are deliberately folded into `rejected`: the
/// API's answers tell the caller which rule failed; the metric tells ops how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendOutcomeLabel {
    Vendor(Outcome),
    QuotaExhausted,
    QuotaReserved,
    RateLimited,
    Rejected,
}

impl SendOutcomeLabel {
    /// The label of a send refused with the API error `code`.
    pub fn for_refusal(code: &str) -> Self {
        match code {
            "quota_exhausted" => SendOutcomeLabel::QuotaExhausted,
            "quota_reserved" => SendOutcomeLabel::QuotaReserved,
            "rate_limited" => SendOutcomeLabel::RateLimited,
            _ => SendOutcomeLabel::Rejected,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            SendOutcomeLabel::Vendor(outcome) => outcome.as_str(),
            SendOutcomeLabel::QuotaExhausted => "quota_exhausted",
            SendOutcomeLabel::QuotaReserved => "quota_reserved",
            SendOutcomeLabel::RateLimited => "rate_limited",
            SendOutcomeLabel::Rejected => "rejected",
        }
    }

    /// Every value the label can take.
    pub fn all() -> impl Iterator<Item = SendOutcomeLabel> {
        Outcome::ALL
            .into_iter()
            .map(SendOutcomeLabel::Vendor)
            .chain([
                SendOutcomeLabel::QuotaExhausted,
                SendOutcomeLabel::QuotaReserved,
                SendOutcomeLabel::RateLimited,
                SendOutcomeLabel::Rejected,
            ])
    }
}

/// The `outcome` label of `tollgate_notifications_total`: the values the alerts
/// feature records per delivery attempt. Anything else is not exported.
pub const NOTIFICATION_OUTCOMES: [&str; 2] = ["delivered", "failed"];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Every error code a refused send can carry (SPEC §5 and the mobile and content
    /// errors), none of which may become a label value of its own.
    const REFUSAL_CODES: [&str; 18] = [
        "invalid_request",
        "unknown_channel",
        "invalid_mobile",
        "unknown_template",
        "missing_template_param",
        "unknown_template_param",
        "content_empty",
        "content_too_long",
        "missing_signature",
        "missing_unsubscribe_suffix",
        "invalid_voice_code",
        "outside_sending_window",
        "quota_exhausted",
        "quota_reserved",
        "rate_limited",
        "idempotency_conflict",
        "unavailable",
        "some error text with 13912345678 in it",
    ];

    #[test]
    fn the_outcome_label_takes_eleven_values() {
        let values: HashSet<&str> = SendOutcomeLabel::all().map(|l| l.as_str()).collect();
        assert_eq!(values.len(), 11);
        assert!(values.contains("sent"));
        assert!(values.contains("quota_exhausted"));
        assert!(values.contains("rejected"));
    }

    #[test]
    fn every_refusal_folds_into_a_known_value() {
        let known: HashSet<&str> = SendOutcomeLabel::all().map(|l| l.as_str()).collect();
        let seen: HashSet<&str> = REFUSAL_CODES
            .iter()
            .map(|code| SendOutcomeLabel::for_refusal(code).as_str())
            .collect();
        assert!(seen.is_subset(&known));
        assert_eq!(
            seen,
            HashSet::from([
                "quota_exhausted",
                "quota_reserved",
                "rate_limited",
                "rejected"
            ])
        );
    }

    #[test]
    fn label_values_are_plain_snake_case() {
        for label in SendOutcomeLabel::all() {
            assert!(label
                .as_str()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
