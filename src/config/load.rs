//! Loading: find the file, parse it, apply the environment, validate every key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawConfig;
use super::settings::*;
use crate::domain::template::TemplateBody;
use crate::domain::window::SendingWindow;
use crate::domain::{ChannelKind, ChannelName};
use crate::domain::{LedgerMode, VendorMethod};
use crate::secret::Secret;

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

/// One thing wrong with the configuration, naming the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub problem: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.problem)
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
    let mut check = Checker::default();
    let settings = check.settings(raw, env);
    if check.problems.is_empty() {
        Ok(settings)
    } else {
        Err(LoadError::Invalid {
            origin: origin.to_owned(),
            problems: check.problems,
        })
    }
}

/// Collects every problem instead of stopping at the first, so that one run of
/// `tollgate config check` shows all of them.
#[derive(Default)]
struct Checker {
    problems: Vec<ConfigProblem>,
}

impl Checker {
    fn problem(&mut self, key: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.into(),
            problem: problem.into(),
        });
    }

    fn duration(&mut self, key: &str, raw: Option<&str>, default: Duration) -> Duration {
        let Some(raw) = raw else { return default };
        match humantime::parse_duration(raw) {
            Ok(duration) if !duration.is_zero() => duration,
            Ok(_) => {
                self.problem(key, "must be longer than zero");
                default
            }
            Err(err) => {
                self.problem(
                    key,
                    format!("{raw:?} is not a duration like \"30s\", \"24h\" or \"14d\" ({err})"),
                );
                default
            }
        }
    }

    fn required<'a>(&mut self, key: String, value: &'a Option<String>) -> Option<&'a str> {
        match value.as_deref().map(str::trim) {
            Some(v) if !v.is_empty() => Some(v),
            _ => {
                self.problem(key, "is required");
                None
            }
        }
    }

    fn settings(&mut self, raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Settings {
        let listen = raw
            .server
            .listen
            .as_deref()
            .unwrap_or("127.0.0.1:8080")
            .parse()
            .unwrap_or_else(|_| {
                self.problem(
                    "server.listen",
                    "must be an address and port such as \"127.0.0.1:8080\"",
                );
                ([127, 0, 0, 1], 8080).into()
            });
        let timezone_name = raw.server.timezone.as_deref().unwrap_or("Asia/Shanghai");
        let timezone = timezone_name.parse().unwrap_or_else(|_| {
            self.problem(
                "server.timezone",
                format!("{timezone_name:?} is not an IANA time zone such as \"Asia/Shanghai\""),
            );
            chrono_tz::Asia::Shanghai
        });
        let server = ServerSettings {
            listen,
            timezone,
            shutdown_grace: self.duration(
                "server.shutdown_grace",
                raw.server.shutdown_grace.as_deref(),
                Duration::from_secs(30),
            ),
        };

        let url = env("DATABASE_URL")
            .filter(|u| !u.is_empty())
            .or(raw.database.url)
            .unwrap_or_else(|| "sqlite://tollgate.db".to_owned());
        if !["postgres://", "postgresql://", "sqlite:"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            self.problem(
                "database.url",
                "must start with postgres://, postgresql:// or sqlite: (DATABASE_URL overrides it)",
            );
        }
        let max_connections = raw.database.max_connections.unwrap_or(10);
        if max_connections == 0 {
            self.problem("database.max_connections", "must be at least 1");
        }
        let database = DatabaseSettings {
            url: Secret::new(url),
            max_connections: max_connections.max(1),
        };

        let mode = match raw.ledger.mode.as_deref().unwrap_or("enforce") {
            "enforce" => LedgerMode::Enforce,
            "observe" => LedgerMode::Observe,
            other => {
                self.problem(
                    "ledger.mode",
                    format!("{other:?} is neither \"enforce\" nor \"observe\""),
                );
                LedgerMode::Enforce
            }
        };
        let upstream = UpstreamSettings {
            appcode_env: raw
                .upstream
                .appcode_env
                .unwrap_or_else(|| "ALIYUN_APPCODE".to_owned()),
            timeout: self.duration(
                "upstream.timeout",
                raw.upstream.timeout.as_deref(),
                Duration::from_secs(10),
            ),
        };
        let ledger = LedgerSettings {
            mode,
            reservation_timeout: self.duration(
                "ledger.reservation_timeout",
                raw.ledger.reservation_timeout.as_deref(),
                Duration::from_secs(300),
            ),
            sweep_every: self.duration(
                "ledger.sweep_every",
                raw.ledger.sweep_every.as_deref(),
                Duration::from_secs(30),
            ),
        };
        // A send may wait the vendor timeout and then retry its settlement for a while
        // (about a minute at most); the sweeper must not race it.
        if ledger.reservation_timeout < upstream.timeout + Duration::from_secs(120) {
            self.problem(
                "ledger.reservation_timeout",
                "must be at least upstream.timeout plus 2 minutes, or sends still under way could be swept",
            );
        }

        let (product_codes, product_code_problems) =
            super::marketplace::check_product_codes(&raw.channels);
        self.problems.extend(product_code_problems);
        let channels = self.channels(&raw.channels, &product_codes, &upstream.appcode_env);
        let (marketplace, marketplace_problems) =
            super::marketplace::check_marketplace(raw.marketplace.as_ref());
        self.problems.extend(marketplace_problems);
        let templates = self.templates(&raw.templates, &channels);
        let clients = self.clients(&raw.clients);

        let (alerts, alert_problems) =
            super::alerts::check(&raw.alerts, &raw.alert_rules, &raw.notifiers, &channels);
        self.problems.extend(alert_problems);

        let (schedule, schedule_problems) = super::schedule::check_schedule(&raw.schedule);
        self.problems.extend(schedule_problems);
        for name in &schedule.report_notify {
            if !alerts.notifiers.iter().any(|n| &n.name == name) {
                self.problem(
                    "schedule.report_notify",
                    format!("no [[notifiers]] entry is named {name:?}"),
                );
            }
        }

        let mut unsupported_sections = Vec::new();
        // Read and checked, but no run of the marketplace's count exists yet.
        if marketplace.is_some() {
            unsupported_sections.push("marketplace".to_owned());
        }

        Settings {
            server,
            database,
            ledger,
            privacy: PrivacySettings {
                store_full_numbers: raw.privacy.store_full_numbers.unwrap_or(false),
            },
            upstream,
            channels,
            templates,
            clients,
            alerts,
            schedule,
            marketplace,
            unsupported_sections,
        }
    }

    fn channels(
        &mut self,
        raw: &[super::raw::RawChannel],
        product_codes: &[Option<crate::domain::ProductCode>],
        default_appcode_env: &str,
    ) -> Vec<ChannelSettings> {
        let mut seen_names = BTreeSet::new();
        let mut seen_paths = BTreeSet::new();
        let mut channels = Vec::new();
        for (i, ch) in raw.iter().enumerate() {
            let at = |field: &str| format!("channels[{i}].{field}");
            let name =
                self.required(at("name"), &ch.name)
                    .and_then(|n| match ChannelName::parse(n) {
                        Ok(name) => Some(name),
                        Err(err) => {
                            self.problem(at("name"), err.to_string());
                            None
                        }
                    });
            if let Some(name) = &name {
                if !seen_names.insert(name.clone()) {
                    self.problem(at("name"), format!("channel {name} is defined twice"));
                }
            }
            let kind =
                self.required(at("kind"), &ch.kind)
                    .and_then(|k| match k.parse::<ChannelKind>() {
                        Ok(kind) => Some(kind),
                        Err(err) => {
                            self.problem(at("kind"), err.to_string());
                            None
                        }
                    });
            let url = self.required(at("url"), &ch.url).map(str::to_owned);
            if let Some(url) = &url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    self.problem(at("url"), "must be an http:// or https:// URL");
                }
            }
            let method = match ch.method.as_deref().unwrap_or("GET") {
                m if m.eq_ignore_ascii_case("get") => VendorMethod::Get,
                m if m.eq_ignore_ascii_case("post") => VendorMethod::Post,
                other => {
                    self.problem(at("method"), format!("{other:?} is neither GET nor POST"));
                    VendorMethod::Get
                }
            };
            if let Some(path) = &ch.proxy_path {
                let reserved = ["/v1/", "/metrics", "/healthz", "/readyz"];
                if !path.starts_with('/') || path.len() < 2 {
                    self.problem(at("proxy_path"), "must be a path starting with '/'");
                } else if reserved.iter().any(|r| path.starts_with(r)) {
                    self.problem(at("proxy_path"), "collides with tollgate's own API paths");
                } else if !seen_paths.insert(path.clone()) {
                    self.problem(at("proxy_path"), format!("{path} is used by two channels"));
                }
            }
            if let Some(signature) = &ch.signature {
                let chars = signature.chars().count();
                if !(signature.starts_with('【') && signature.ends_with('】') && chars > 2) {
                    self.problem(at("signature"), "must look like 【签名】");
                }
            }
            let sending_window = match ch.sending_window.as_deref() {
                None => SendingWindow::default_marketing(),
                Some(raw_window) => SendingWindow::parse(raw_window).unwrap_or_else(|err| {
                    self.problem(at("sending_window"), err.to_string());
                    SendingWindow::default_marketing()
                }),
            };
            if let (Some(name), Some(kind), Some(url)) = (name, kind, url) {
                channels.push(ChannelSettings {
                    name,
                    kind,
                    url,
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
                    product_code: product_codes[i].clone(),
                });
            }
        }
        channels
    }

    fn templates(
        &mut self,
        raw: &[super::raw::RawTemplate],
        channels: &[ChannelSettings],
    ) -> Vec<TemplateSettings> {
        let mut seen = BTreeSet::new();
        let mut templates = Vec::new();
        for (i, t) in raw.iter().enumerate() {
            let at = |field: &str| format!("templates[{i}].{field}");
            let name = self.required(at("name"), &t.name).map(str::to_owned);
            let channel = self.required(at("channel"), &t.channel).and_then(|c| {
                let found = channels.iter().find(|ch| ch.name.as_str() == c);
                if found.is_none() {
                    self.problem(at("channel"), format!("no channel is named {c:?}"));
                }
                found
            });
            let body =
                self.required(at("body"), &t.body)
                    .and_then(|b| match TemplateBody::parse(b) {
                        Ok(body) => Some(body),
                        Err(err) => {
                            self.problem(at("body"), err.to_string());
                            None
                        }
                    });
            if let (Some(name), Some(channel), Some(body)) = (name, channel, body) {
                if !seen.insert((channel.name.clone(), name.clone())) {
                    self.problem(
                        at("name"),
                        format!("template {name} is defined twice for {}", channel.name),
                    );
                }
                if channel.kind.is_sms()
                    && channel.signature.is_none()
                    && crate::domain::sms::signature_of(body.as_str()).is_none()
                {
                    self.problem(
                        at("body"),
                        format!(
                            "has no 【signature】 and channel {} sets none; SMS must carry one",
                            channel.name
                        ),
                    );
                }
                templates.push(TemplateSettings {
                    name,
                    channel: channel.name.clone(),
                    body,
                });
            }
        }
        templates
    }

    fn clients(&mut self, raw: &[super::raw::RawClient]) -> Vec<ClientSettings> {
        let mut seen = BTreeSet::new();
        let mut clients = Vec::new();
        for (i, c) in raw.iter().enumerate() {
            let at = |field: &str| format!("clients[{i}].{field}");
            let name = self.required(at("name"), &c.name).map(str::to_owned);
            let token_env = self
                .required(at("token_env"), &c.token_env)
                .map(str::to_owned);
            if let Some(name) = &name {
                let label_safe = name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
                if !label_safe {
                    self.problem(
                        at("name"),
                        "must be 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-'",
                    );
                }
                if !seen.insert(name.clone()) {
                    self.problem(at("name"), format!("client {name} is defined twice"));
                }
            }
            if let (Some(name), Some(token_env)) = (name, token_env) {
                clients.push(ClientSettings {
                    name,
                    token_env,
                    admin: c.admin.unwrap_or(false),
                });
            }
        }
        clients
    }
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
        assert_eq!(settings.channels.len(), 5);
        assert_eq!(settings.ledger.mode, LedgerMode::Enforce);
        assert_eq!(settings.database.url.expose(), "sqlite://tollgate.db");
    }

    #[test]
    fn the_example_in_the_spec_loads() {
        let text = include_str!("../../tests/fixtures/spec-example.toml");
        let settings = load_str("spec", text, &no_env).unwrap();
        assert_eq!(settings.channels.len(), 2);
        assert_eq!(settings.templates.len(), 1);
        assert!(settings.unsupported_sections.is_empty());
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
}
