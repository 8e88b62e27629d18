//! Configuration: one typed settings tree, loaded from TOML and the environment.

pub mod alerts;
mod load;
pub mod marketplace;
pub mod metrics;
pub mod notifier_plugins;
mod raw;
pub mod routes;
pub mod schedule;
mod settings;
mod starter;
mod traffic;
mod vendor_format;

pub use load::{load, load_str, locate, ConfigSource, LoadError, BUILTIN_SANDBOX_CONFIG};
pub use settings::{
    ChannelSettings, ClientSettings, DatabaseSettings, EdgeLimits, LedgerSettings, PrivacySettings,
    ServerSettings, Settings, TemplateSettings, UpstreamSettings,
};
pub use starter::STARTER_CONFIG;
/// The one problem type, collector and duration grammar of the whole configuration,
/// notifier plugins included (they live in the plugin interface crate, which plugins and
/// tollgate both depend on).
pub use tollgate_notify::config::{
    parse_duration, parse_positive_duration, ConfigProblem, Problems,
};
pub use traffic::{LimitMax, LimitScope, LimitSettings, TrafficSettings};
