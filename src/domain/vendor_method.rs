//! The HTTP method a channel's vendor API expects (GET or POST).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The HTTP method a channel's vendor API expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VendorMethod {
    Get,
    Post,
}

impl VendorMethod {
    pub fn as_str(&self) -> &'static str {
        match self {
            VendorMethod::Get => "GET",
            VendorMethod::Post => "POST",
        }
    }
}

impl fmt::Display for VendorMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A method other than GET or POST.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown vendor method `{0}`: expected GET or POST")]
pub struct UnknownVendorMethod(pub String);

impl FromStr for VendorMethod {
    type Err = UnknownVendorMethod;

    /// Case-insensitive, since configuration files write both `GET` and `get`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            m if m.eq_ignore_ascii_case("get") => Ok(VendorMethod::Get),
            m if m.eq_ignore_ascii_case("post") => Ok(VendorMethod::Post),
            other => Err(UnknownVendorMethod(other.to_owned())),
        }
    }
}

impl Serialize for VendorMethod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for VendorMethod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
