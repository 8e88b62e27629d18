//! The configuration file exactly as written: serde structs with no meaning attached yet.
//!
//! Every table denies unknown keys, so a typo such as `apcode_env` is an error that names
//! the key instead of a setting silently ignored. [`super::load`] turns this into the
//! validated [`super::Settings`].

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub database: RawDatabase,
    pub ledger: RawLedger,
    pub privacy: RawPrivacy,
    pub upstream: RawUpstream,
    pub channels: Vec<RawChannel>,
    pub templates: Vec<RawTemplate>,
    pub clients: Vec<RawClient>,
    /// Alert rules, notifiers and delivery tuning are checked by [`super::alerts`]; a
    /// notifier's table goes, without its `name`, to the plugin its `type` selects.
    pub alerts: super::alerts::RawAlerts,
    pub alert_rules: Vec<super::alerts::RawAlertRule>,
    pub notifiers: Vec<toml::Table>,
    /// `[schedule]`, checked by [`super::schedule`].
    pub schedule: super::schedule::RawSchedule,
    /// `[marketplace]`, checked by [`super::marketplace`]; `None` when absent.
    pub marketplace: Option<super::marketplace::RawMarketplace>,
    /// `[metrics]`, checked by [`super::metrics`].
    pub metrics: super::metrics::RawMetrics,
    /// `[traffic]` and `[[limits]]` (SPEC §12), checked by [`super::traffic`].
    pub traffic: super::traffic::RawTraffic,
    pub limits: Vec<super::traffic::RawLimit>,
    /// `[[routes]]` (SPEC §13), checked by [`super::routes`].
    pub routes: Vec<super::routes::RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: Option<String>,
    pub timezone: Option<String>,
    pub shutdown_grace: Option<String>,
    /// The edge's limits (checked in [`super::load`]).
    pub header_read_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub max_connections: Option<u32>,
    pub max_in_flight_sends: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatabase {
    pub url: Option<String>,
    pub max_connections: Option<u32>,
    /// PostgreSQL's session limits and SQLite's durability (checked in [`super::load`]).
    pub lock_timeout: Option<String>,
    pub statement_timeout: Option<String>,
    pub idle_in_transaction_timeout: Option<String>,
    pub sqlite_synchronous: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLedger {
    pub mode: Option<String>,
    pub reservation_timeout: Option<String>,
    pub sweep_every: Option<String>,
    pub spool_dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPrivacy {
    pub store_full_numbers: Option<bool>,
    pub hash_key_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    pub appcode_env: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawChannel {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub method: Option<String>,
    pub proxy_path: Option<String>,
    pub repurchase_url: Option<String>,
    pub signature: Option<String>,
    pub unsubscribe_suffix: Option<String>,
    pub sending_window: Option<String>,
    pub appcode_env: Option<String>,
    /// The vendor format (SPEC §13) and the `template` format's keys, checked by
    /// [`super::vendor_format`]. Flattening them into a struct of their own would not
    /// work with `deny_unknown_fields`, so they sit here.
    pub format: Option<String>,
    pub mobile_param: Option<String>,
    pub template_id_param: Option<String>,
    pub params_param: Option<String>,
    pub params_style: Option<String>,
    pub params_in: Option<String>,
    pub static_params: Option<toml::Table>,
    pub success_field: Option<String>,
    pub success_values: Option<Vec<toml::Value>>,
    pub remaining_field: Option<String>,
    pub package_sizes: Option<Vec<i64>>,
    /// SPEC §11's priority reserve: `"10%"` of the live pool or a number of units.
    pub reserve_critical: Option<toml::Value>,
    pub shed_bulk_below: Option<toml::Value>,
    /// The marketplace's code for the channel's product, checked by [`super::marketplace`].
    pub product_code: Option<String>,
    /// The channel's circuit breaker (SPEC §13), checked by [`super::routes`].
    pub circuit_failures: Option<i64>,
    pub circuit_cooldown: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTemplate {
    pub name: Option<String>,
    pub channel: Option<String>,
    pub body: Option<String>,
    /// The vendor's id of this template, for a `template`-format channel.
    pub vendor_template_id: Option<String>,
    /// SPEC §11: the class of the template's sends, overriding the channel kind's.
    pub class: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClient {
    pub name: Option<String>,
    pub token_env: Option<String>,
    pub admin: Option<bool>,
}
