//! Channel names and kinds: which purchased API product a send goes to, and its rules.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The name of a configured channel, e.g. `sms_code`. Lower-case ASCII letters, digits,
/// `_` and `-`, 1 to 64 characters, so that it is safe as a metric label and in a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ChannelName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("channel name {0:?} must be 1-64 characters of a-z, 0-9, '_' or '-'")]
pub struct ChannelNameError(pub String);

impl ChannelName {
    pub fn parse(raw: &str) -> Result<Self, ChannelNameError> {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ChannelNameError(raw.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ChannelName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What kind of API product a channel is; decides rating and content rules (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    SmsCode,
    SmsNotice,
    SmsMarketing,
    VoiceCode,
    VoiceNotice,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 5] = [
        ChannelKind::SmsCode,
        ChannelKind::SmsNotice,
        ChannelKind::SmsMarketing,
        ChannelKind::VoiceCode,
        ChannelKind::VoiceNotice,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::SmsCode => "sms_code",
            ChannelKind::SmsNotice => "sms_notice",
            ChannelKind::SmsMarketing => "sms_marketing",
            ChannelKind::VoiceCode => "voice_code",
            ChannelKind::VoiceNotice => "voice_notice",
        }
    }

    /// SMS kinds are rated in segments; voice kinds cost one unit per call.
    pub fn is_sms(self) -> bool {
        matches!(
            self,
            ChannelKind::SmsCode | ChannelKind::SmsNotice | ChannelKind::SmsMarketing
        )
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown channel kind {0:?}; expected one of sms_code, sms_notice, sms_marketing, voice_code, voice_notice")]
pub struct ChannelKindError(pub String);

impl FromStr for ChannelKind {
    type Err = ChannelKindError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        ChannelKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .ok_or_else(|| ChannelKindError(raw.chars().take(80).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_label_safe() {
        assert!(ChannelName::parse("sms_code").is_ok());
        assert!(ChannelName::parse("voice-notice-2").is_ok());
        assert!(ChannelName::parse("").is_err());
        assert!(ChannelName::parse("SMS").is_err());
        assert!(ChannelName::parse("a b").is_err());
        assert!(ChannelName::parse(&"x".repeat(65)).is_err());
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in ChannelKind::ALL {
            assert_eq!(kind.as_str().parse::<ChannelKind>(), Ok(kind));
        }
        assert!("fax".parse::<ChannelKind>().is_err());
    }
}
