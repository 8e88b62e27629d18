//! Send classes (SPEC §11): how important a send is when quota runs short.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ChannelKind;

/// `critical` (verification codes) may take the channel's last units; `normal`
/// (notifications) stops at the reserve kept for critical sends; `bulk` (marketing) is
/// shed first. Ordered from least to most important.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SendClass {
    Bulk,
    Normal,
    Critical,
}

impl SendClass {
    pub const ALL: [SendClass; 3] = [SendClass::Critical, SendClass::Normal, SendClass::Bulk];

    /// The class of a send to a channel of `kind` whose template names none.
    pub fn default_for(kind: ChannelKind) -> SendClass {
        match kind {
            ChannelKind::SmsCode | ChannelKind::VoiceCode => SendClass::Critical,
            ChannelKind::SmsNotice | ChannelKind::VoiceNotice => SendClass::Normal,
            ChannelKind::SmsMarketing => SendClass::Bulk,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            SendClass::Critical => "critical",
            SendClass::Normal => "normal",
            SendClass::Bulk => "bulk",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a send class: write \"critical\", \"normal\" or \"bulk\"")]
pub struct UnknownSendClass(pub String);

impl FromStr for SendClass {
    type Err = UnknownSendClass;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        SendClass::ALL
            .into_iter()
            .find(|class| class.as_str() == raw)
            .ok_or_else(|| UnknownSendClass(raw.chars().take(40).collect()))
    }
}

impl fmt::Display for SendClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SendClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SendClass {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_trip_and_order_by_importance() {
        for class in SendClass::ALL {
            assert_eq!(class.as_str().parse::<SendClass>(), Ok(class));
        }
        assert!(SendClass::Critical > SendClass::Normal && SendClass::Normal > SendClass::Bulk);
        assert!("urgent".parse::<SendClass>().is_err());
    }

    #[test]
    fn each_kind_has_the_class_of_spec_11() {
        assert_eq!(
            SendClass::default_for(ChannelKind::SmsCode),
            SendClass::Critical
        );
        assert_eq!(
            SendClass::default_for(ChannelKind::VoiceCode),
            SendClass::Critical
        );
        assert_eq!(
            SendClass::default_for(ChannelKind::SmsNotice),
            SendClass::Normal
        );
        assert_eq!(
            SendClass::default_for(ChannelKind::VoiceNotice),
            SendClass::Normal
        );
        assert_eq!(
            SendClass::default_for(ChannelKind::SmsMarketing),
            SendClass::Bulk
        );
    }
}
