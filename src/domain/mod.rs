//! Domain types, each parsed once at the edge (HTTP, CLI, config) and trusted inside.

pub mod channel;
pub mod content;
pub mod instant;
pub mod mobile;
pub mod money;
pub mod sms;
pub mod template;
pub mod units;
pub mod voice;
pub mod window;

pub use channel::{ChannelKind, ChannelName};
pub use money::Yuan;
pub use units::{PackageUnits, Units};
