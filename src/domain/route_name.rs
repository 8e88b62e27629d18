//! Route names: a route spreads one kind of traffic over several channels (SPEC §13).

use std::fmt;

use serde::Serialize;

use super::channel::ChannelName;

/// The name of a configured route, e.g. `otp`. The same alphabet as channel names (it
/// is a metric label and stands where a channel name may stand), and never the name of
/// a channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RouteName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route name {0:?} must be 1-64 characters of a-z, 0-9, '_' or '-'")]
pub struct RouteNameError(pub String);

impl RouteName {
    pub fn parse(raw: &str) -> Result<Self, RouteNameError> {
        ChannelName::parse(raw)
            .map(|name| Self(name.as_str().to_owned()))
            .map_err(|_| RouteNameError(raw.chars().take(80).collect()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
