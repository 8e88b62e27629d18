//! tollgate: a metering gateway for prepaid SMS and voice APIs.

pub mod domain;
pub mod secret;
pub mod upstream;
