//! Configuration: one typed settings tree, loaded from TOML and the environment.

pub mod alerts;
mod load;
pub mod marketplace;
mod raw;
pub mod schedule;
mod settings;

pub use load::{
    load, load_str, locate, ConfigProblem, ConfigSource, LoadError, BUILTIN_SANDBOX_CONFIG,
};
pub use settings::{
    ChannelSettings, ClientSettings, DatabaseSettings, LedgerSettings, PrivacySettings,
    ServerSettings, Settings, TemplateSettings, UpstreamSettings,
};
