//! `[[routes]]` (SPEC §13): one kind of traffic spread over several channels, as
//! written and as validated; and each channel's circuit breaker keys.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use super::settings::ChannelSettings;
use super::Problems;
use crate::domain::{ChannelName, RouteName};

/// Consecutive upstream failures that open a channel's circuit, unless configured.
pub const DEFAULT_CIRCUIT_FAILURES: u32 = 5;
/// How long an open circuit waits before it lets one probe through, unless configured.
pub const DEFAULT_CIRCUIT_COOLDOWN: Duration = Duration::from_secs(30);

/// One `[[routes]]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRoute {
    pub name: Option<String>,
    pub channels: Option<Vec<String>>,
    pub strategy: Option<String>,
    pub proxy_path: Option<String>,
}

/// In which order a route tries its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteStrategy {
    /// As listed.
    #[default]
    Priority,
    /// The lowest unit cost first: the price per unit of the package each channel
    /// would charge next.
    Cheapest,
    /// The channel whose live package expires soonest first (a package without expiry
    /// last), so that units about to be lost are used.
    ExpiringFirst,
}

impl RouteStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteStrategy::Priority => "priority",
            RouteStrategy::Cheapest => "cheapest",
            RouteStrategy::ExpiringFirst => "expiring_first",
        }
    }
}

/// One route, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSettings {
    pub name: RouteName,
    /// In order of preference (the order `priority` keeps, and ties of the others).
    pub channels: Vec<ChannelName>,
    pub strategy: RouteStrategy,
    pub proxy_path: Option<String>,
}

/// A channel's circuit breaker (`circuit_failures`, `circuit_cooldown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    pub failures: u32,
    pub cooldown: Duration,
}

impl Default for CircuitSettings {
    fn default() -> Self {
        Self {
            failures: DEFAULT_CIRCUIT_FAILURES,
            cooldown: DEFAULT_CIRCUIT_COOLDOWN,
        }
    }
}

/// Checks a channel's `circuit_failures` and `circuit_cooldown` (under its scope).
pub fn check_circuit(
    failures: Option<i64>,
    cooldown: Option<&str>,
    p: &mut Problems,
) -> CircuitSettings {
    let mut circuit = CircuitSettings::default();
    if let Some(failures) = failures {
        match u32::try_from(failures) {
            Ok(n) if n >= 1 => circuit.failures = n,
            _ => p.add("circuit_failures", "must be a whole number of at least 1"),
        }
    }
    if let Some(cooldown) = cooldown {
        if let Some(cooldown) = p.check("circuit_cooldown", super::parse_duration(cooldown)) {
            if cooldown < Duration::from_secs(1) {
                p.add("circuit_cooldown", "must be at least 1s");
            } else {
                circuit.cooldown = cooldown;
            }
        }
    }
    circuit
}

/// Checks every `[[routes]]` entry (`routes[i]`): a name no channel has, channels that
/// exist (each once, all of one kind), a known strategy, and a drop-in path no channel
/// or other route uses.
pub fn check_routes(
    raw: &[RawRoute],
    channels: &[ChannelSettings],
    p: &mut Problems,
) -> Vec<RouteSettings> {
    let mut names = BTreeSet::new();
    let mut paths: BTreeSet<String> = channels
        .iter()
        .filter_map(|c| c.proxy_path.clone())
        .collect();
    raw.iter()
        .enumerate()
        .filter_map(|(i, route)| {
            p.scoped(&format!("routes[{i}]"), |p| {
                check_route(route, channels, &mut names, &mut paths, p)
            })
        })
        .collect()
}

fn check_route(
    raw: &RawRoute,
    channels: &[ChannelSettings],
    names: &mut BTreeSet<RouteName>,
    paths: &mut BTreeSet<String>,
    p: &mut Problems,
) -> Option<RouteSettings> {
    let name = p
        .required("name", raw.name.as_deref())
        .and_then(|n| p.check("name", RouteName::parse(n)));
    if let Some(name) = &name {
        if channels.iter().any(|c| c.name.as_str() == name.as_str()) {
            p.add(
                "name",
                format!("{name} is also a channel's name; a route needs a name of its own"),
            );
        } else if !names.insert(name.clone()) {
            p.add("name", format!("route {name} is defined twice"));
        }
    }
    if raw.channels.is_none() {
        p.add("channels", "is required");
    }
    let listed = raw.channels.as_ref();
    let mut members: Vec<ChannelName> = Vec::new();
    let mut kinds = BTreeSet::new();
    for (i, channel) in listed.into_iter().flatten().enumerate() {
        let channel = channel.as_str();
        let key = format!("channels[{i}]");
        let Some(settings) = channels.iter().find(|c| c.name.as_str() == channel) else {
            p.add(&key, format!("no channel is named {channel:?}"));
            continue;
        };
        if members.contains(&settings.name) {
            p.add(&key, format!("channel {channel} is listed twice"));
            continue;
        }
        kinds.insert(settings.kind.as_str());
        members.push(settings.name.clone());
    }
    if raw.channels.as_ref().is_some_and(|c| c.is_empty()) {
        p.add("channels", "a route needs at least one channel");
    }
    if kinds.len() > 1 {
        p.add(
            "channels",
            format!(
                "mixes channel kinds ({}): a route carries one kind of traffic",
                kinds.into_iter().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let strategy = match raw.strategy.as_deref() {
        None | Some("priority") => RouteStrategy::Priority,
        Some("cheapest") => RouteStrategy::Cheapest,
        Some("expiring_first") => RouteStrategy::ExpiringFirst,
        Some(other) => {
            p.add(
                "strategy",
                format!("{other:?} is not \"priority\", \"cheapest\" or \"expiring_first\""),
            );
            RouteStrategy::Priority
        }
    };
    if let Some(path) = &raw.proxy_path {
        if let Some(problem) = super::load::proxy_path_problem(path) {
            p.add("proxy_path", problem);
        } else if !paths.insert(path.clone()) {
            p.add(
                "proxy_path",
                format!("{path} is already the drop-in path of a channel or another route"),
            );
        }
    }
    Some(RouteSettings {
        name: name?,
        channels: members,
        strategy,
        proxy_path: raw.proxy_path.clone(),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{load_str, LoadError};

    const CHANNELS: &str = r#"
        [[channels]]
        name = "kapool_sms"
        kind = "sms_code"
        url = "https://a"
        signature = "【卡池】"
        proxy_path = "/chuangxin/dxjk"

        [[channels]]
        name = "backup_sms"
        kind = "sms_code"
        url = "https://b"
        signature = "【卡池】"

        [[channels]]
        name = "voice"
        kind = "voice_notice"
        url = "https://c"
    "#;

    fn problems(routes: &str) -> Vec<String> {
        match load_str("test.toml", &format!("{CHANNELS}\n{routes}"), &|_| None) {
            Err(LoadError::Invalid { problems, .. }) => {
                problems.into_iter().map(|p| p.to_string()).collect()
            }
            Ok(_) => Vec::new(),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_good_route_loads_with_its_strategy() {
        let settings = load_str(
            "test.toml",
            &format!(
                "{CHANNELS}\n[[routes]]\nname = \"otp\"\nchannels = [\"backup_sms\", \"kapool_sms\"]\nstrategy = \"cheapest\"\nproxy_path = \"/otp\"\n"
            ),
            &|_| None,
        )
        .unwrap();
        let route = &settings.routes[0];
        assert_eq!(route.name.as_str(), "otp");
        assert_eq!(route.strategy, super::RouteStrategy::Cheapest);
        let channels: Vec<&str> = route.channels.iter().map(|c| c.as_str()).collect();
        assert_eq!(channels, ["backup_sms", "kapool_sms"]);
    }

    #[test]
    fn every_bad_route_is_named_by_its_key() {
        let found = problems(
            r#"
            [[routes]]
            name = "otp"
            channels = ["kapool_sms", "nope", "kapool_sms"]
            strategy = "random"
            proxy_path = "/chuangxin/dxjk"

            [[routes]]
            name = "voice"
            channels = ["voice"]

            [[routes]]
            name = "mixed"
            channels = ["kapool_sms", "voice"]
            proxy_path = "/v1/otp"

            [[routes]]
            name = "otp"
            channels = ["backup_sms"]
            "#,
        );
        for expected in [
            "routes[0].channels[1]: no channel is named \"nope\"",
            "routes[0].channels[2]: channel kapool_sms is listed twice",
            "routes[0].strategy",
            "routes[0].proxy_path: /chuangxin/dxjk is already the drop-in path",
            "routes[1].name: voice is also a channel's name",
            "routes[2].channels: mixes channel kinds",
            "routes[2].proxy_path: collides with tollgate's own API paths",
            "routes[3].name: route otp is defined twice",
        ] {
            assert!(
                found.iter().any(|p| p.starts_with(expected)),
                "{expected:?} not in {found:#?}"
            );
        }
    }

    #[test]
    fn circuit_keys_are_checked_on_the_channel() {
        let found = problems(
            r#"
            [[channels]]
            name = "third"
            kind = "sms_code"
            url = "https://d"
            signature = "【卡池】"
            circuit_failures = 0
            circuit_cooldown = "soon"
            "#,
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("channels[3].circuit_failures")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("channels[3].circuit_cooldown")),
            "{found:?}"
        );
    }
}
