//! Domain types, each parsed once at the edge (HTTP, CLI, config) and trusted inside.

pub mod channel;
pub mod clock;
pub mod content;
pub mod cron;
pub mod instant;
pub mod keyed_hash;
pub mod ledger_mode;
pub mod mobile;
pub mod money;
pub mod outcome;
pub mod product_code;
pub mod reserve;
pub mod route_name;
pub mod send_class;
pub mod sms;
pub mod template;
pub mod threshold;
pub mod units;
pub mod vendor_method;
pub mod voice;
pub mod window;

pub use channel::{ChannelKind, ChannelName};
pub use clock::{system_clock, Clock, ManualClock};
pub use cron::{CronExpr, CronExprError};
pub use keyed_hash::HashKey;
pub use ledger_mode::LedgerMode;
pub use money::Yuan;
pub use outcome::{Outcome, UnknownOutcome};
pub use product_code::{ProductCode, ProductCodeError};
pub use reserve::ReserveRule;
pub use route_name::{RouteName, RouteNameError};
pub use send_class::{SendClass, UnknownSendClass};
pub use threshold::{QuotaThreshold, QuotaThresholdError};
pub use units::{PackageUnits, Units};
pub use vendor_method::{UnknownVendorMethod, VendorMethod};
