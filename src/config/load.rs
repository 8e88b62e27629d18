//! Loading: find the file, parse it, apply the environment, validate every key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tollgate_notify::config::{ConfigProblem, Problems};

use super::raw::{
    RawChannel, RawClient, RawConfig, RawDatabase, RawLedger, RawServer, RawTemplate,
};
use super::settings::*;
use crate::domain::template::TemplateBody;
use crate::domain::window::SendingWindow;
use crate::domain::{ChannelKind, ChannelName, QuotaThreshold, ReserveRule, SendClass};
use crate::domain::{LedgerMode, VendorMethod};
use crate::secret::Secret;
use crate::store::{SessionLimits, SqliteSynchronous};

/// The built-in sandbox setup used when no configuration file is given: SQLite in the
/// working directory and one channel of every kind, served by an in-process simulation
/// of the vendor (the URLs are pointed at it when `serve` starts).
pub const BUILTIN_SANDBOX_CONFIG: &str = include_str!("sandbox.toml");

/// Where the configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// No file anywhere: the built-in sandbox setup.
    BuiltinSandbox,
}

impl ConfigSource {
    pub fn is_sandbox(&self) -> bool {
        matches!(self, ConfigSource::BuiltinSandbox)
    }

    pub fn describe(&self) -> String {
        match self {
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::BuiltinSandbox => "built-in sandbox defaults".to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{origin} is not valid configuration: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin} has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        origin: String,
        problems: Vec<ConfigProblem>,
    },
}

/// Decides where the configuration comes from: `--config`, then `TOLLGATE_CONFIG`, then
/// `./tollgate.toml` if it exists, else the built-in sandbox.
pub fn locate(flag: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> ConfigSource {
    if let Some(path) = flag {
        return ConfigSource::File(path.to_owned());
    }
    if let Some(path) = env("TOLLGATE_CONFIG").filter(|p| !p.is_empty()) {
        return ConfigSource::File(PathBuf::from(path));
    }
    let local = PathBuf::from("tollgate.toml");
    if local.is_file() {
        return ConfigSource::File(local);
    }
    ConfigSource::BuiltinSandbox
}

/// Reads and validates the configuration. `env` looks up environment variables (tests
/// pass their own); only `DATABASE_URL` overrides a file value here, secrets are read
/// by the parts that use them.
pub fn load(
    source: &ConfigSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, LoadError> {
    let (origin, text) = match source {
        ConfigSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                path: path.clone(),
                source,
            })?;
            (path.display().to_string(), text)
        }
        ConfigSource::BuiltinSandbox => (
            "built-in sandbox configuration".to_owned(),
            BUILTIN_SANDBOX_CONFIG.to_owned(),
        ),
    };
    load_str(&origin, &text, env)
}

/// Parses and validates configuration text; `origin` names it in errors.
pub fn load_str(
    origin: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, LoadError> {
    let raw: RawConfig = toml::from_str(text).map_err(|err| LoadError::Parse {
        origin: origin.to_owned(),
        message: err.to_string(),
    })?;
    let mut problems = Problems::new();
    let settings = settings(raw, env, &mut problems);
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(LoadError::Invalid {
            origin: origin.to_owned(),
            problems: problems.into_vec(),
        })
    }
}

/// Every section checked, every problem recorded in `p` with its full key.
fn settings(raw: RawConfig, env: &dyn Fn(&str) -> Option<String>, p: &mut Problems) -> Settings {
    let upstream = UpstreamSettings {
        appcode_env: raw
            .upstream
            .appcode_env
            .clone()
            .unwrap_or_else(|| "ALIYUN_APPCODE".to_owned()),
        timeout: p.duration(
            "upstream.timeout",
            raw.upstream.timeout.as_deref(),
            Duration::from_secs(10),
        ),
    };
    let server = p.scoped("server", |p| server(&raw.server, &upstream, p));

    let url = env("DATABASE_URL")
        .filter(|u| !u.is_empty())
        .or(raw.database.url.clone())
        .unwrap_or_else(|| "sqlite://tollgate.db".to_owned());
    if !["postgres://", "postgresql://", "sqlite:"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
    {
        p.add(
            "database.url",
            "must start with postgres://, postgresql:// or sqlite: (DATABASE_URL overrides it)",
        );
    }
    let database = p.scoped("database", |p| database(&raw.database, Secret::new(url), p));

    let ledger = p.scoped("ledger", |p| ledger(&raw.ledger, &upstream, p));

    let product_codes = super::marketplace::check_product_codes(&raw.channels, p);
    let channels = channels(&raw.channels, &product_codes, &upstream.appcode_env, p);
    let marketplace = super::marketplace::check_marketplace(raw.marketplace.as_ref(), p);
    let templates = templates(&raw.templates, &channels, p);
    let traffic = super::traffic::check_traffic(&raw.traffic, &raw.limits, &channels, p);
    let routes = super::routes::check_routes(&raw.routes, &channels, p);
    let clients = clients(&raw.clients, p);

    let alerts = super::alerts::check(&raw.alerts, &raw.alert_rules, &raw.notifiers, &channels, p);
    let schedule = p.scoped("schedule", |p| {
        super::schedule::check_schedule(&raw.schedule, p)
    });
    for name in &schedule.report_notify {
        if !alerts.notifiers.iter().any(|n| &n.name == name) {
            p.add(
                "schedule.report_notify",
                format!("no [[notifiers]] entry is named {name:?}"),
            );
        }
    }

    let metrics = p.scoped("metrics", |p| {
        super::metrics::check_metrics(&raw.metrics, p)
    });

    Settings {
        server,
        database,
        ledger,
        privacy: PrivacySettings {
            store_full_numbers: raw.privacy.store_full_numbers.unwrap_or(false),
            hash_key_env: raw
                .privacy
                .hash_key_env
                .clone()
                .filter(|name| !name.trim().is_empty()),
        },
        upstream,
        channels,
        templates,
        clients,
        alerts,
        schedule,
        marketplace,
        metrics,
        traffic,
        routes,
    }
}

/// Why `path` cannot be a drop-in path (of a channel or a route), if it cannot.
pub(super) fn proxy_path_problem(path: &str) -> Option<&'static str> {
    const OWN: [&str; 6] = [
        "/v1/",
        "/metrics",
        "/healthz",
        "/readyz",
        "/console",
        "/openapi.json",
    ];
    if !path.starts_with('/') || path.len() < 2 {
        Some("must be a path starting with '/'")
    } else if OWN.iter().any(|own| path.starts_with(own)) {
        Some("collides with tollgate's own API paths")
    } else {
        None
    }
}

/// `[server]`, whose request timeout must leave a send time for the vendor's
/// (`upstream` is checked).
fn server(raw: &RawServer, upstream: &UpstreamSettings, p: &mut Problems) -> ServerSettings {
    let listen = raw
        .listen
        .as_deref()
        .unwrap_or("127.0.0.1:8080")
        .parse()
        .unwrap_or_else(|_| {
            p.add(
                "listen",
                "must be an address and port such as \"127.0.0.1:8080\"",
            );
            ([127, 0, 0, 1], 8080).into()
        });
    let timezone_name = raw.timezone.as_deref().unwrap_or("Asia/Shanghai");
    let timezone = timezone_name.parse().unwrap_or_else(|_| {
        p.add(
            "timezone",
            format!("{timezone_name:?} is not an IANA time zone such as \"Asia/Shanghai\""),
        );
        chrono_tz::Asia::Shanghai
    });
    // A send waits for the ledger, then at most the vendor's timeout, then the ledger
    // again: the default leaves 20 s beyond the vendor's timeout for the ledger's work.
    let default_request_timeout =
        (upstream.timeout + Duration::from_secs(20)).max(Duration::from_secs(30));
    let limits = EdgeLimits {
        header_read_timeout: p.duration(
            "header_read_timeout",
            raw.header_read_timeout.as_deref(),
            Duration::from_secs(10),
        ),
        request_timeout: p.duration(
            "request_timeout",
            raw.request_timeout.as_deref(),
            default_request_timeout,
        ),
        max_connections: at_least_one(p, "max_connections", raw.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS),
        max_in_flight_sends: at_least_one(p, "max_in_flight_sends", raw.max_in_flight_sends)
            .unwrap_or_else(default_max_in_flight_sends),
    };
    if limits.request_timeout <= upstream.timeout {
        p.add(
            "request_timeout",
            "must be longer than upstream.timeout, or a send the vendor is slow to answer would be given up at the edge before the vendor's timeout decides it",
        );
    }
    ServerSettings {
        listen,
        timezone,
        shutdown_grace: p.duration(
            "shutdown_grace",
            raw.shutdown_grace.as_deref(),
            Duration::from_secs(30),
        ),
        limits,
    }
}

/// Connections served at once by default. With the default in-flight sends and
/// database pool this stays below the open-file limit most systems start processes
/// with (1024): each connection, each send's vendor connection and each database
/// connection is a file descriptor.
const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Sends under way at once by default: 128 per core the process may use, at most
/// 1024. A send mostly waits for the vendor, so the bound is not CPU but what a slow
/// vendor would otherwise pile up (tasks, vendor connections, reservations); a healthy
/// vendor answering in 300 ms lets 128 in flight carry over 400 sends a second.
fn default_max_in_flight_sends() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (128 * cores).min(1024)
}

fn at_least_one(p: &mut Problems, key: &str, value: Option<u32>) -> Option<usize> {
    match value? {
        0 => {
            p.add(key, "must be at least 1");
            None
        }
        n => Some(n as usize),
    }
}

/// `[database]` besides its URL: the pool, PostgreSQL's session limits, SQLite's
/// durability.
fn database(raw: &RawDatabase, url: Secret, p: &mut Problems) -> DatabaseSettings {
    let max_connections = raw.max_connections.unwrap_or(10);
    if max_connections == 0 {
        p.add("max_connections", "must be at least 1");
    }
    let defaults = SessionLimits::default();
    let session_limits = SessionLimits {
        lock_timeout: p.duration(
            "lock_timeout",
            raw.lock_timeout.as_deref(),
            defaults.lock_timeout,
        ),
        statement_timeout: p.duration(
            "statement_timeout",
            raw.statement_timeout.as_deref(),
            defaults.statement_timeout,
        ),
        idle_in_transaction_timeout: p.duration(
            "idle_in_transaction_timeout",
            raw.idle_in_transaction_timeout.as_deref(),
            defaults.idle_in_transaction_timeout,
        ),
    };
    // PostgreSQL counts a lock wait inside the statement's time: a lock timeout as long
    // as the statement timeout would never be the one that fires.
    if session_limits.lock_timeout >= session_limits.statement_timeout {
        p.add(
            "lock_timeout",
            "must be shorter than statement_timeout, which would otherwise end a lock wait first",
        );
    }
    let sqlite_synchronous = raw
        .sqlite_synchronous
        .as_deref()
        .and_then(|value| p.check("sqlite_synchronous", value.parse::<SqliteSynchronous>()))
        .unwrap_or_default();
    DatabaseSettings {
        url,
        max_connections: max_connections.max(1),
        session_limits,
        sqlite_synchronous,
    }
}

/// `[ledger]`, which must leave sends under way time to finish (`upstream` is checked).
fn ledger(raw: &RawLedger, upstream: &UpstreamSettings, p: &mut Problems) -> LedgerSettings {
    let mode = match raw.mode.as_deref().unwrap_or("enforce") {
        "enforce" => LedgerMode::Enforce,
        "observe" => LedgerMode::Observe,
        other => {
            p.add(
                "mode",
                format!("{other:?} is neither \"enforce\" nor \"observe\""),
            );
            LedgerMode::Enforce
        }
    };
    let ledger = LedgerSettings {
        mode,
        reservation_timeout: p.duration(
            "reservation_timeout",
            raw.reservation_timeout.as_deref(),
            Duration::from_secs(300),
        ),
        sweep_every: p.duration(
            "sweep_every",
            raw.sweep_every.as_deref(),
            Duration::from_secs(5),
        ),
        spool_dir: std::path::PathBuf::from(raw.spool_dir.as_deref().unwrap_or("tollgate-spool")),
    };
    if raw.spool_dir.as_deref() == Some("") {
        p.add("spool_dir", "must name a folder");
    }
    // A send may wait the vendor timeout and then retry its settlement for a while
    // (about a minute at most); the sweeper must not race it.
    if ledger.reservation_timeout < upstream.timeout + Duration::from_secs(120) {
        p.add(
            "reservation_timeout",
            "must be at least upstream.timeout plus 2 minutes, or sends still under way could be swept",
        );
    }
    ledger
}

/// `[[channels]]`.
fn channels(
    raw: &[RawChannel],
    product_codes: &[Option<crate::domain::ProductCode>],
    default_appcode_env: &str,
    p: &mut Problems,
) -> Vec<ChannelSettings> {
    let mut seen_names = BTreeSet::new();
    let mut seen_paths = BTreeSet::new();
    let mut channels = Vec::new();
    for (i, ch) in raw.iter().enumerate() {
        let channel = p.scoped(&format!("channels[{i}]"), |p| {
            channel(ch, default_appcode_env, &mut seen_names, &mut seen_paths, p)
        });
        channels.extend(channel.map(|mut channel| {
            channel.product_code = product_codes.get(i).cloned().flatten();
            channel
        }));
    }
    channels
}

fn channel(
    ch: &RawChannel,
    default_appcode_env: &str,
    seen_names: &mut BTreeSet<ChannelName>,
    seen_paths: &mut BTreeSet<String>,
    p: &mut Problems,
) -> Option<ChannelSettings> {
    let name = p
        .required("name", ch.name.as_deref())
        .and_then(|n| p.check("name", ChannelName::parse(n)));
    if let Some(name) = &name {
        if !seen_names.insert(name.clone()) {
            p.add("name", format!("channel {name} is defined twice"));
        }
    }
    let kind = p
        .required("kind", ch.kind.as_deref())
        .and_then(|k| p.check("kind", k.parse::<ChannelKind>()));
    let url = p.required("url", ch.url.as_deref()).map(str::to_owned);
    if let Some(url) = &url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            p.add("url", "must be an http:// or https:// URL");
        }
    }
    let method = match ch.method.as_deref().unwrap_or("GET") {
        m if m.eq_ignore_ascii_case("get") => VendorMethod::Get,
        m if m.eq_ignore_ascii_case("post") => VendorMethod::Post,
        other => {
            p.add("method", format!("{other:?} is neither GET nor POST"));
            VendorMethod::Get
        }
    };
    if let Some(path) = &ch.proxy_path {
        if let Some(problem) = proxy_path_problem(path) {
            p.add("proxy_path", problem);
        } else if !seen_paths.insert(path.clone()) {
            p.add("proxy_path", format!("{path} is used by two channels"));
        }
    }
    let circuit =
        super::routes::check_circuit(ch.circuit_failures, ch.circuit_cooldown.as_deref(), p);
    if let Some(signature) = &ch.signature {
        let chars = signature.chars().count();
        if !(signature.starts_with('【') && signature.ends_with('】') && chars > 2) {
            p.add("signature", "must look like 【签名】");
        }
    }
    let package_sizes = package_sizes(ch.package_sizes.as_deref().unwrap_or_default(), p);
    let format = super::vendor_format::check_channel_format(ch, p);
    let reserve = ReserveRule {
        critical: threshold("reserve_critical", ch.reserve_critical.as_ref(), p),
        shed_bulk: threshold("shed_bulk_below", ch.shed_bulk_below.as_ref(), p),
    };
    let sending_window = match ch.sending_window.as_deref() {
        None => SendingWindow::default_marketing(),
        Some(raw_window) => p
            .check("sending_window", SendingWindow::parse(raw_window))
            .unwrap_or_else(SendingWindow::default_marketing),
    };
    Some(ChannelSettings {
        name: name?,
        kind: kind?,
        url: url?,
        method,
        proxy_path: ch.proxy_path.clone(),
        repurchase_url: ch.repurchase_url.clone(),
        signature: ch.signature.clone(),
        unsubscribe_suffix: ch
            .unsubscribe_suffix
            .clone()
            .unwrap_or_else(|| "退订回N".to_owned()),
        sending_window,
        appcode_env: ch
            .appcode_env
            .clone()
            .unwrap_or_else(|| default_appcode_env.to_owned()),
        package_sizes,
        format,
        product_code: None,
        reserve,
        circuit,
    })
}

/// `reserve_critical` / `shed_bulk_below`: `"10%"` of the live pool, or units (`200`).
fn threshold(key: &str, raw: Option<&toml::Value>, p: &mut Problems) -> Option<QuotaThreshold> {
    match raw? {
        toml::Value::String(text) => p.check(key, QuotaThreshold::parse(text)),
        toml::Value::Integer(units) => p.check(key, QuotaThreshold::units(*units)),
        _ => {
            p.add(
                key,
                "must be a number of units (200) or a percentage (\"10%\")",
            );
            None
        }
    }
}

/// `package_sizes = [1000, 5000, 10000]`: each above 0, in any order (they are sorted),
/// each once.
fn package_sizes(raw: &[i64], p: &mut Problems) -> Vec<i64> {
    let mut sizes = Vec::new();
    for (i, &size) in raw.iter().enumerate() {
        let key = format!("package_sizes[{i}]");
        if size <= 0 {
            p.add(&key, "must be a number of units above 0");
        } else if sizes.contains(&size) {
            p.add(&key, format!("{size} is listed twice"));
        } else {
            sizes.push(size);
        }
    }
    sizes.sort_unstable();
    sizes
}

/// `[[templates]]`, each for a configured channel.
fn templates(
    raw: &[RawTemplate],
    channels: &[ChannelSettings],
    p: &mut Problems,
) -> Vec<TemplateSettings> {
    let mut seen = BTreeSet::new();
    let mut templates = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let template = p.scoped(&format!("templates[{i}]"), |p| {
            template(t, channels, &mut seen, p)
        });
        templates.extend(template);
    }
    templates
}

fn template(
    t: &RawTemplate,
    channels: &[ChannelSettings],
    seen: &mut BTreeSet<(ChannelName, String)>,
    p: &mut Problems,
) -> Option<TemplateSettings> {
    let name = p.required("name", t.name.as_deref()).map(str::to_owned);
    let channel = p.required("channel", t.channel.as_deref()).and_then(|c| {
        let found = channels.iter().find(|ch| ch.name.as_str() == c);
        if found.is_none() {
            p.add("channel", format!("no channel is named {c:?}"));
        }
        found
    });
    let body = p
        .required("body", t.body.as_deref())
        .and_then(|b| p.check("body", TemplateBody::parse(b)));
    let class = t
        .class
        .as_deref()
        .and_then(|class| p.check("class", class.parse::<SendClass>()));
    let vendor_template_id = channel.and_then(|channel| {
        super::vendor_format::check_vendor_template_id(t, body.as_ref(), channel, p)
    });
    let (name, channel, body) = (name?, channel?, body?);
    if !seen.insert((channel.name.clone(), name.clone())) {
        p.add(
            "name",
            format!("template {name} is defined twice for {}", channel.name),
        );
    }
    if channel.kind.is_sms()
        && channel.signature.is_none()
        && crate::domain::sms::signature_of(body.as_str()).is_none()
    {
        p.add(
            "body",
            format!(
                "has no 【signature】 and channel {} sets none; SMS must carry one",
                channel.name
            ),
        );
    }
    Some(TemplateSettings {
        name,
        channel: channel.name.clone(),
        body,
        vendor_template_id,
        class,
    })
}

/// `[[clients]]`.
fn clients(raw: &[RawClient], p: &mut Problems) -> Vec<ClientSettings> {
    let mut seen = BTreeSet::new();
    let mut clients = Vec::new();
    for (i, c) in raw.iter().enumerate() {
        let client = p.scoped(&format!("clients[{i}]"), |p| {
            let name = p.required("name", c.name.as_deref()).map(str::to_owned);
            let token_env = p
                .required("token_env", c.token_env.as_deref())
                .map(str::to_owned);
            if let Some(name) = &name {
                let label_safe = name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
                if !label_safe {
                    p.add(
                        "name",
                        "must be 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
                    );
                }
                if !seen.insert(name.clone()) {
                    p.add("name", format!("client {name} is defined twice"));
                }
            }
            Some(ClientSettings {
                name: name?,
                token_env: token_env?,
                admin: c.admin.unwrap_or(false),
            })
        });
        clients.extend(client);
    }
    clients
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn problems(text: &str) -> Vec<ConfigProblem> {
        match load_str("test.toml", text, &no_env) {
            Err(LoadError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn the_builtin_sandbox_configuration_is_valid() {
        let settings = load(&ConfigSource::BuiltinSandbox, &no_env).unwrap();
        assert_eq!(settings.channels.len(), 6);
        assert_eq!(settings.routes.len(), 1);
        assert_eq!(settings.ledger.mode, LedgerMode::Enforce);
        assert_eq!(settings.database.url.expose(), "sqlite://tollgate.db");
    }

    #[test]
    fn the_example_in_the_spec_loads() {
        let text = include_str!("../../tests/fixtures/spec-example.toml");
        let settings = load_str("spec", text, &no_env).unwrap();
        assert_eq!(settings.channels.len(), 2);
        assert_eq!(settings.templates.len(), 1);
        assert_eq!(settings.schedule.report_notify, ["ops-mail"]);
    }

    #[test]
    fn database_url_from_the_environment_wins() {
        let env = |key: &str| (key == "DATABASE_URL").then(|| "postgres://x@h/db".to_owned());
        let settings = load_str("t", "[database]\nurl = \"sqlite://a.db\"\n", &env).unwrap();
        assert_eq!(settings.database.url.expose(), "postgres://x@h/db");
    }

    #[test]
    fn reports_go_only_to_configured_notifiers() {
        let found = problems("[schedule]\nreport_notify = [\"finance\"]\n");
        assert_eq!(found[0].key, "schedule.report_notify");
        assert!(found[0].problem.contains("finance"));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load_str("t", "[upstream]\napcode_env = \"X\"\n", &no_env).unwrap_err();
        assert!(err.to_string().contains("apcode_env"), "{err}");
    }

    #[test]
    fn every_problem_names_its_key() {
        let found = problems(
            r#"
            [server]
            listen = "nowhere"
            timezone = "Mars/Olympus"
            [ledger]
            mode = "lenient"
            [upstream]
            timeout = "soon"
            [[channels]]
            name = "sms"
            kind = "fax"
            url = "ftp://x"
            [[channels]]
            name = "v"
            kind = "voice_notice"
            url = "https://a"
            method = "PUT"
            proxy_path = "/v1/messages"
            [[templates]]
            name = "t"
            channel = "missing"
            body = "hi"
            "#,
        );
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "server.listen",
            "server.timezone",
            "ledger.mode",
            "upstream.timeout",
            "channels[0].kind",
            "channels[0].url",
            "channels[1].method",
            "channels[1].proxy_path",
            "templates[0].channel",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn sms_templates_need_a_signature_somewhere() {
        let found = problems(
            r#"
            [[channels]]
            name = "sms_code"
            kind = "sms_code"
            url = "https://a"
            [[templates]]
            name = "login"
            channel = "sms_code"
            body = "你的验证码是：#code#"
            "#,
        );
        assert_eq!(found[0].key, "templates[0].body");
    }

    #[test]
    fn duplicate_channels_and_clients_are_refused() {
        let found = problems(
            r#"
            [[channels]]
            name = "a"
            kind = "voice_code"
            url = "https://a"
            [[channels]]
            name = "a"
            kind = "voice_code"
            url = "https://a"
            [[clients]]
            name = "app"
            token_env = "T1"
            [[clients]]
            name = "app"
            token_env = "T2"
            "#,
        );
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["channels[1].name", "clients[1].name"]);
    }

    #[test]
    fn every_problem_in_one_notifier_table_is_reported_with_its_full_key() {
        let found = problems(
            r#"
            [[notifiers]]
            name = "ops-mail"
            type = "email"
            smtp_url = "mail.example.com"
            from = "not an address"
            to = ["ops@example.com", "nobody"]
            username_env = "SMTP_USER"
            timeout = "soon"
            "#,
        );
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "notifiers[0].smtp_url",
                "notifiers[0].password_env",
                "notifiers[0].from",
                "notifiers[0].to[1]",
                "notifiers[0].timeout"
            ]
        );
    }

    /// A duration in every section that takes one (ledger, alerts, schedule, a notifier),
    /// so that the same grammar, and the same message for a wrong value, can be shown to
    /// hold in each. Each key has its own bounds, hence four values.
    fn durations(reservation: &str, retry: &str, retention: &str, timeout: &str) -> String {
        format!(
            r#"
            [ledger]
            reservation_timeout = "{reservation}"
            [alerts]
            retry_initial = "{retry}"
            [schedule]
            retention = "{retention}"
            [[notifiers]]
            name = "hook"
            type = "webhook"
            url = "https://hooks.example.com/t"
            timeout = "{timeout}"
            "#
        )
    }

    #[test]
    fn one_duration_grammar_serves_the_ledger_alerts_schedule_and_notifiers() {
        let text = durations("1h30m", "1m30s", "40d12h", "2m500ms");
        let settings = load_str("t", &text, &no_env).unwrap();
        assert_eq!(settings.ledger.reservation_timeout.as_secs(), 5_400);
        assert_eq!(settings.alerts.delivery.retry_initial.as_secs(), 90);
        assert_eq!(
            settings.schedule.retention.map(|r| r.as_secs()),
            Some(40 * 86_400 + 12 * 3600)
        );
        assert_eq!(
            settings.alerts.notifiers[0].plugin.timeout().as_millis(),
            120_500
        );

        let wrong = "a fortnight";
        let found = problems(&durations(wrong, wrong, wrong, wrong));
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ledger.reservation_timeout",
                "alerts.retry_initial",
                "notifiers[0].timeout",
                "schedule.retention"
            ]
        );
        assert!(
            found.iter().all(|p| p.problem == found[0].problem),
            "one message for one mistake: {found:?}"
        );
        assert!(
            found[0].problem.contains("\"1h30m\""),
            "{}",
            found[0].problem
        );

        let zero = problems(&durations("0s", "0s", "0s", "0s"));
        assert_eq!(zero.len(), 4, "{zero:?}");
        assert!(zero.iter().all(|p| p.problem == "must be longer than zero"));
    }

    #[test]
    fn package_sizes_are_sorted_and_each_bad_one_is_named() {
        let channel = |sizes: &str| {
            format!(
                "[[channels]]\nname = \"v\"\nkind = \"voice_code\"\nurl = \"https://a\"\npackage_sizes = {sizes}\n"
            )
        };
        let settings = load_str("t", &channel("[10000, 1000, 5000]"), &no_env).unwrap();
        assert_eq!(settings.channels[0].package_sizes, [1000, 5000, 10000]);
        assert_eq!(settings.alerts.suggest_days, 30, "the default horizon");

        let found = problems(&format!(
            "{}[alerts]\nsuggest_days = 0\n",
            channel("[5000, 0, 1000, 1000, -5]")
        ));
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "channels[0].package_sizes[1]",
                "channels[0].package_sizes[3]",
                "channels[0].package_sizes[4]",
                "alerts.suggest_days"
            ]
        );
    }

    #[test]
    fn the_edge_and_the_database_have_limits_by_default() {
        let settings = load_str("t", "", &no_env).unwrap();
        let limits = settings.server.limits;
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.request_timeout, Duration::from_secs(30));
        assert_eq!(limits.max_connections, 512);
        assert!((128..=1024).contains(&limits.max_in_flight_sends));
        assert_eq!(settings.database.session_limits, SessionLimits::default());
        assert_eq!(
            settings.database.sqlite_synchronous,
            SqliteSynchronous::Full
        );
    }

    #[test]
    fn the_edge_and_database_limits_are_read_as_written() {
        let settings = load_str(
            "t",
            r#"
            [server]
            header_read_timeout = "3s"
            request_timeout = "45s"
            max_connections = 64
            max_in_flight_sends = 16
            [database]
            lock_timeout = "500ms"
            statement_timeout = "5s"
            idle_in_transaction_timeout = "20s"
            sqlite_synchronous = "normal"
            "#,
            &no_env,
        )
        .unwrap();
        assert_eq!(
            settings.server.limits,
            EdgeLimits {
                header_read_timeout: Duration::from_secs(3),
                request_timeout: Duration::from_secs(45),
                max_connections: 64,
                max_in_flight_sends: 16,
            }
        );
        assert_eq!(
            settings.database.session_limits,
            SessionLimits {
                lock_timeout: Duration::from_millis(500),
                statement_timeout: Duration::from_secs(5),
                idle_in_transaction_timeout: Duration::from_secs(20),
            }
        );
        assert_eq!(
            settings.database.sqlite_synchronous,
            SqliteSynchronous::Normal
        );
    }

    #[test]
    fn a_slower_vendor_moves_the_default_request_timeout_along() {
        let settings = load_str("t", "[upstream]\ntimeout = \"40s\"\n", &no_env).unwrap();
        assert_eq!(
            settings.server.limits.request_timeout,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn every_wrong_limit_is_named_by_its_key() {
        let found = problems(
            r#"
            [server]
            header_read_timeout = "0s"
            request_timeout = "5s"
            max_connections = 0
            max_in_flight_sends = 0
            [database]
            lock_timeout = "30s"
            idle_in_transaction_timeout = "soon"
            sqlite_synchronous = "off"
            [metrics]
            token_env = "not a name"
            "#,
        );
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.header_read_timeout",
                "server.max_connections",
                "server.max_in_flight_sends",
                "server.request_timeout",
                "database.idle_in_transaction_timeout",
                "database.lock_timeout",
                "database.sqlite_synchronous",
                "metrics.token_env",
            ]
        );
    }
}
