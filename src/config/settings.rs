//! The validated settings tree: every value already parsed into its domain type.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use chrono_tz::Tz;

use crate::domain::template::TemplateBody;
use crate::domain::window::SendingWindow;
use crate::domain::{ChannelKind, ChannelName, ProductCode, ReserveRule, SendClass};
use crate::domain::{LedgerMode, VendorMethod};
use crate::secret::Secret;
use crate::store::{ConnectOptions, SessionLimits, SqliteSynchronous};
use crate::upstream::VendorFormat;

/// Everything tollgate is configured with. Built only by [`super::load`], which has
/// checked every value, so code that holds a `Settings` never re-validates it.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub ledger: LedgerSettings,
    pub privacy: PrivacySettings,
    pub upstream: UpstreamSettings,
    pub channels: Vec<ChannelSettings>,
    pub templates: Vec<TemplateSettings>,
    pub clients: Vec<ClientSettings>,
    /// `[[alert_rules]]`, `[[notifiers]]` and `[alerts]`.
    pub alerts: super::alerts::AlertSettings,
    /// `[schedule]`: when the scheduled jobs run.
    pub schedule: super::schedule::ScheduleSettings,
    /// `[marketplace]`: reading the marketplace's own count; `None` without the table.
    pub marketplace: Option<super::marketplace::MarketplaceSettings>,
    /// `[metrics]`: who may scrape `/metrics`.
    pub metrics: super::metrics::MetricsSettings,
    /// `[traffic]` and `[[limits]]`: limits checked before a send is charged.
    pub traffic: super::traffic::TrafficSettings,
    /// `[[routes]]`: channels a send may fail over between.
    pub routes: Vec<super::routes::RouteSettings>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub timezone: Tz,
    /// How long a shutdown may take: connections still open when it runs out are
    /// closed, and sends still under way are left to the sweeper.
    pub shutdown_grace: Duration,
    /// The edge's limits on clients.
    pub limits: EdgeLimits,
}

/// What one client, or all of them together, can hold of the HTTP edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    /// Longest a client may take to send a request's headers, and longest an idle
    /// keep-alive connection is kept open.
    pub header_read_timeout: Duration,
    /// Longest a request may take, its body included. A send that runs longer is not
    /// cut: the client is told it is still under way.
    pub request_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Sends under way at once in this process; more are refused with 503.
    pub max_in_flight_sends: usize,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// May hold a password, so it is kept as a secret and never printed whole.
    pub url: Secret,
    pub max_connections: u32,
    /// PostgreSQL's limits on every session of tollgate's.
    pub session_limits: SessionLimits,
    /// SQLite's `PRAGMA synchronous`.
    pub sqlite_synchronous: SqliteSynchronous,
}

#[derive(Debug, Clone)]
pub struct LedgerSettings {
    pub mode: LedgerMode,
    /// A reservation older than this was left by a crash and is settled as `uncertain`.
    pub reservation_timeout: Duration,
    /// How often the sweeper looks for reservations no live instance looks after
    /// (default 5s: with the 10 s lease, a crashed instance's are settled within 15 s).
    pub sweep_every: Duration,
    /// Where settlements the database could not take are journaled until it can, so
    /// that a restart records them with the vendor's real outcome.
    pub spool_dir: std::path::PathBuf,
}

#[derive(Debug, Clone)]
pub struct PrivacySettings {
    pub store_full_numbers: bool,
    /// The environment variable holding the key of keyed hashes (idempotency
    /// fingerprints, per-number limits); without it a key is generated once and kept
    /// in the database.
    pub hash_key_env: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub appcode_env: String,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub name: ChannelName,
    pub kind: ChannelKind,
    pub url: String,
    pub method: VendorMethod,
    pub proxy_path: Option<String>,
    pub repurchase_url: Option<String>,
    pub signature: Option<String>,
    pub unsubscribe_suffix: String,
    pub sending_window: SendingWindow,
    /// The environment variable holding this channel's AppCode (the upstream default
    /// unless the channel names its own).
    pub appcode_env: String,
    /// How the vendor takes a message and says it was accepted (`format`, SPEC §13).
    pub format: VendorFormat,
    /// The package sizes the vendor sells for this channel, ascending and each above 0;
    /// reminders round their suggestion up to them. Empty when not configured.
    pub package_sizes: Vec<i64>,
    /// The marketplace's code for the channel's product (`cmapi…`), whose count the
    /// Market API reports.
    pub product_code: Option<ProductCode>,
    /// The priority reserve (`reserve_critical`, `shed_bulk_below`, SPEC §11).
    pub reserve: ReserveRule,
    /// When a route stops trying the channel after upstream failures (SPEC §13).
    pub circuit: super::routes::CircuitSettings,
}

impl ChannelSettings {
    /// Whether the vendor's answers carry its own count of what is left: a template
    /// format with a `remaining_field` (SPEC §13). kapool's `RemainPoint` is not read as
    /// one (see `upstream::format::body`).
    pub fn carries_vendor_count(&self) -> bool {
        matches!(&self.format, VendorFormat::Template(t) if t.remaining_field.is_some())
    }
}

#[derive(Debug, Clone)]
pub struct TemplateSettings {
    pub name: String,
    pub channel: ChannelName,
    /// What tollgate rates (segments) and shows, also for a template-format channel.
    pub body: TemplateBody,
    /// The vendor's id of the template; set exactly when the channel's format is
    /// `template`.
    pub vendor_template_id: Option<String>,
    /// The class its sends have; the channel kind's when absent (SPEC §11).
    pub class: Option<SendClass>,
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub name: String,
    pub token_env: String,
    pub admin: bool,
}

impl DatabaseSettings {
    /// How to connect, with a pool of `max_connections`.
    pub fn connect_options(&self, max_connections: u32) -> ConnectOptions {
        ConnectOptions {
            max_connections,
            session_limits: self.session_limits,
            sqlite_synchronous: self.sqlite_synchronous,
        }
    }

    /// The URL with any password replaced by `***`, for messages and logs.
    pub fn url_for_display(&self) -> String {
        let Ok(mut url) = url::Url::parse(self.url.expose()) else {
            return "(unparsable database URL)".to_owned();
        };
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let secret =
                    key.eq_ignore_ascii_case("password") || key.eq_ignore_ascii_case("sslpassword");
                (
                    key.into_owned(),
                    if secret {
                        "***".to_owned()
                    } else {
                        value.into_owned()
                    },
                )
            })
            .collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

impl Settings {
    pub fn channel(&self, name: &str) -> Option<&ChannelSettings> {
        self.channels.iter().find(|c| c.name.as_str() == name)
    }

    /// Templates by (channel, template name).
    pub fn templates_by_channel(&self) -> BTreeMap<(&str, &str), &TemplateSettings> {
        self.templates
            .iter()
            .map(|t| ((t.channel.as_str(), t.name.as_str()), t))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_hidden_from_display() {
        let settings = DatabaseSettings {
            url: Secret::new("postgres://tollgate:hunter2@db:5432/tollgate"),
            max_connections: 1,
            session_limits: SessionLimits::default(),
            sqlite_synchronous: SqliteSynchronous::default(),
        };
        assert_eq!(
            settings.url_for_display(),
            "postgres://tollgate:***@db:5432/tollgate"
        );
    }
}
