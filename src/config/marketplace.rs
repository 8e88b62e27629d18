//! `[marketplace]` and the channels' `product_code`: reading the marketplace's own count,
//! as written and as checked.
//!
//! [`check_marketplace`] and [`check_product_codes`] take the raw values, return the
//! checked settings and record every problem found, with its full key, in the shared
//! [`Problems`] collector, like every other section's check.

use serde::Deserialize;
use url::Url;

use super::raw::RawChannel;
use super::Problems;
use crate::domain::ProductCode;
use crate::marketplace::{
    AccessKey, MarketClient, MarketClientConfig, MarketError, DEFAULT_TIMEOUT,
};

pub const DEFAULT_ACCESS_KEY_ID_ENV: &str = "ALIYUN_ACCESS_KEY_ID";
pub const DEFAULT_ACCESS_KEY_SECRET_ENV: &str = "ALIYUN_ACCESS_KEY_SECRET";
pub const DEFAULT_ENDPOINT: &str = "https://market.aliyuncs.com";
pub const DEFAULT_DRIFT_ALERT_UNITS: u64 = 10;

/// The `[marketplace]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMarketplace {
    pub access_key_id_env: Option<String>,
    pub access_key_secret_env: Option<String>,
    pub endpoint: Option<String>,
    pub apply: Option<bool>,
    /// Signed, so that a negative value is reported as such rather than as a type error.
    pub drift_alert_units: Option<i64>,
}

/// Where and with which AccessKey the marketplace's count is read, and what is done
/// with it. Present only when the file has a `[marketplace]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketplaceSettings {
    /// The environment variable holding the AccessKey ID (default `ALIYUN_ACCESS_KEY_ID`).
    pub access_key_id_env: String,
    /// The environment variable holding the AccessKey secret (default
    /// `ALIYUN_ACCESS_KEY_SECRET`).
    pub access_key_secret_env: String,
    /// The Market API's endpoint (default `https://market.aliyuncs.com`); `http://` only
    /// for a loopback address such as a sandbox.
    pub endpoint: Url,
    /// Whether a difference from the marketplace's count is recorded as a reconciliation.
    /// Off by default: the meaning of the marketplace's figures is not confirmed by
    /// Alibaba (see `crate::marketplace::remaining_from`), so until someone has compared
    /// them with the console once, a run only records what the marketplace said and
    /// alerts on drift, and changes no count.
    pub apply: bool,
    /// `ledger.drift` fires when the counts differ by at least this much (default 10).
    pub drift_alert_units: u64,
}

impl MarketplaceSettings {
    /// The AccessKey pair, from the environment variables named here.
    pub fn access_key(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AccessKey, MarketError> {
        Ok(AccessKey::from_env(
            &self.access_key_id_env,
            &self.access_key_secret_env,
            env,
        )?)
    }

    /// A ready client of the Market API, signed with the environment's AccessKey pair.
    pub fn client(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<MarketClient, MarketError> {
        MarketClient::new(MarketClientConfig {
            endpoint: self.endpoint.clone(),
            access_key: self.access_key(env)?,
            timeout: DEFAULT_TIMEOUT,
        })
    }
}

/// Checks `[marketplace]` (`None` when the file has no such table), recording each
/// problem in `p` by its key, e.g. `marketplace.endpoint`.
pub fn check_marketplace(
    raw: Option<&RawMarketplace>,
    p: &mut Problems,
) -> Option<MarketplaceSettings> {
    let raw = raw?;
    Some(p.scoped("marketplace", |p| marketplace(raw, p)))
}

/// The `[marketplace]` table's keys, each checked inside the `marketplace` scope.
fn marketplace(raw: &RawMarketplace, p: &mut Problems) -> MarketplaceSettings {
    let access_key_id_env = variable(
        p,
        "access_key_id_env",
        &raw.access_key_id_env,
        DEFAULT_ACCESS_KEY_ID_ENV,
    );
    let access_key_secret_env = variable(
        p,
        "access_key_secret_env",
        &raw.access_key_secret_env,
        DEFAULT_ACCESS_KEY_SECRET_ENV,
    );
    if access_key_id_env == access_key_secret_env {
        p.add(
            "access_key_secret_env",
            "must differ from access_key_id_env: the ID and the secret are two values",
        );
    }

    let endpoint_text = raw.endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let endpoint = match endpoint_problem(endpoint_text) {
        Ok(url) => url,
        Err(text) => {
            p.add("endpoint", text);
            Url::parse(DEFAULT_ENDPOINT).expect("a valid default")
        }
    };

    let drift_alert_units = match raw.drift_alert_units {
        None => DEFAULT_DRIFT_ALERT_UNITS,
        Some(units) if units >= 1 => units.unsigned_abs(),
        Some(_) => {
            p.add(
                "drift_alert_units",
                "must be at least 1 (an alert at 0 would fire on every run)",
            );
            DEFAULT_DRIFT_ALERT_UNITS
        }
    };

    MarketplaceSettings {
        access_key_id_env,
        access_key_secret_env,
        endpoint,
        apply: raw.apply.unwrap_or(false),
        drift_alert_units,
    }
}

/// The name of an environment variable given at `key` (`default` when absent); a name
/// that could not be one is recorded, and kept so that later checks still see it.
fn variable(p: &mut Problems, key: &str, value: &Option<String>, default: &str) -> String {
    let Some(value) = value else {
        return default.to_owned();
    };
    let well_formed = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !well_formed {
        p.add(
            key,
            format!("{value:?} must name an environment variable, like {default:?}"),
        );
    }
    value.clone()
}

/// The endpoint as a URL, or why it is not one the Market API can be reached at.
fn endpoint_problem(text: &str) -> Result<Url, String> {
    let url = Url::parse(text)
        .map_err(|err| format!("{text:?} is not a URL like {DEFAULT_ENDPOINT:?} ({err})"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(format!("{text:?} has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(
                "must be https:// (the AccessKey ID travels in every request); http:// is only for a loopback sandbox"
                    .into(),
            )
        }
        other => return Err(format!("{other}:// is neither https:// nor http://")),
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{text:?} must be the API's address alone, without a path or query: every request goes to /"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    Ok(url)
}

/// Checks each channel's `product_code` (`channels[i].product_code`): its shape, and that
/// no two channels name the same product, since the marketplace counts a product once
/// and that count cannot be split between two channels' ledgers. Returns one entry per
/// raw channel, in order; every problem is recorded in `p`.
pub fn check_product_codes(channels: &[RawChannel], p: &mut Problems) -> Vec<Option<ProductCode>> {
    let mut codes: Vec<Option<ProductCode>> = Vec::with_capacity(channels.len());
    for (i, channel) in channels.iter().enumerate() {
        let key = format!("channels[{i}].product_code");
        let code = channel
            .product_code
            .as_deref()
            .and_then(|raw| p.check(&key, ProductCode::parse(raw)));
        if let Some(code) = &code {
            if let Some(first) = codes.iter().position(|seen| seen.as_ref() == Some(code)) {
                p.add(
                    &key,
                    format!(
                        "{code} is channels[{first}]'s product too; the marketplace counts a product once, for one channel"
                    ),
                );
            }
        }
        codes.push(code);
    }
    codes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load_str, ConfigProblem, LoadError};

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// [`check_marketplace`] run on a collector of its own, with what it recorded.
    fn check_marketplace_alone(
        raw: Option<&RawMarketplace>,
    ) -> (Option<MarketplaceSettings>, Vec<ConfigProblem>) {
        let mut p = Problems::new();
        let settings = check_marketplace(raw, &mut p);
        (settings, p.into_vec())
    }

    /// [`check_product_codes`] run on a collector of its own, with what it recorded.
    fn check_product_codes_alone(
        channels: &[RawChannel],
    ) -> (Vec<Option<ProductCode>>, Vec<ConfigProblem>) {
        let mut p = Problems::new();
        let codes = check_product_codes(channels, &mut p);
        (codes, p.into_vec())
    }

    fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn no_table_means_no_marketplace() {
        let (settings, problems) = check_marketplace_alone(None);
        assert_eq!(settings, None);
        assert!(problems.is_empty());
    }

    #[test]
    fn an_empty_table_gives_the_defaults() {
        let (settings, problems) = check_marketplace_alone(Some(&RawMarketplace::default()));
        assert!(problems.is_empty(), "{problems:?}");
        let settings = settings.unwrap();
        assert_eq!(settings.access_key_id_env, "ALIYUN_ACCESS_KEY_ID");
        assert_eq!(settings.access_key_secret_env, "ALIYUN_ACCESS_KEY_SECRET");
        assert_eq!(settings.endpoint.as_str(), "https://market.aliyuncs.com/");
        assert!(!settings.apply, "applying is opted into");
        assert_eq!(settings.drift_alert_units, 10);
    }

    #[test]
    fn every_bad_value_is_named_by_its_key() {
        let raw = RawMarketplace {
            access_key_id_env: Some("MY KEY".into()),
            access_key_secret_env: Some("".into()),
            endpoint: Some("http://market.aliyuncs.com".into()),
            apply: Some(true),
            drift_alert_units: Some(0),
        };
        let (_, problems) = check_marketplace_alone(Some(&raw));
        assert_eq!(
            keys(&problems),
            [
                "marketplace.access_key_id_env",
                "marketplace.access_key_secret_env",
                "marketplace.endpoint",
                "marketplace.drift_alert_units"
            ]
        );
    }

    #[test]
    fn the_endpoint_must_be_https_without_a_path_except_on_loopback() {
        for bad in [
            "market.aliyuncs.com",
            "ftp://market.aliyuncs.com",
            "http://10.0.0.5:8090",
            "https://market.aliyuncs.com/api",
            "https://market.aliyuncs.com/?x=1",
            "https://user:pw@market.aliyuncs.com",
        ] {
            assert!(endpoint_problem(bad).is_err(), "{bad}");
        }
        for good in [
            "https://market.aliyuncs.com",
            "https://market.aliyuncs.com/",
            "http://127.0.0.1:8090",
            "http://localhost:8090/",
            "http://[::1]:8090",
        ] {
            assert!(endpoint_problem(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn the_id_and_secret_variables_must_differ() {
        let raw = RawMarketplace {
            access_key_id_env: Some("ALIYUN_KEY".into()),
            access_key_secret_env: Some("ALIYUN_KEY".into()),
            ..RawMarketplace::default()
        };
        let (_, problems) = check_marketplace_alone(Some(&raw));
        assert_eq!(keys(&problems), ["marketplace.access_key_secret_env"]);
    }

    #[test]
    fn product_codes_are_checked_for_shape_and_uniqueness() {
        let channel = |code: Option<&str>| RawChannel {
            product_code: code.map(str::to_owned),
            ..RawChannel::default()
        };
        let (codes, problems) = check_product_codes_alone(&[
            channel(Some("cmapi00037415")),
            channel(None),
            channel(Some("cmapi 1")),
            channel(Some("cmapi00037415")),
        ]);
        assert_eq!(codes[0].as_ref().unwrap().as_str(), "cmapi00037415");
        assert_eq!(codes[1], None);
        assert_eq!(codes[2], None);
        assert_eq!(
            keys(&problems),
            ["channels[2].product_code", "channels[3].product_code"]
        );
        assert!(problems[1].problem.contains("channels[0]"), "{problems:?}");
    }

    #[test]
    fn the_spec_example_loads_into_the_settings() {
        let settings = load_str(
            "t",
            r#"
            [marketplace]
            access_key_id_env = "ALIYUN_ACCESS_KEY_ID"
            access_key_secret_env = "ALIYUN_ACCESS_KEY_SECRET"
            endpoint = "https://market.aliyuncs.com"
            apply = true
            drift_alert_units = 10

            [[channels]]
            name = "voice_notice"
            kind = "voice_notice"
            url = "https://yytz.market.alicloudapi.com/chuangxin/yytz"
            product_code = "cmapi00037415"
            "#,
            &no_env,
        )
        .unwrap();
        let marketplace = settings.marketplace.as_ref().unwrap();
        assert!(marketplace.apply);
        assert_eq!(
            settings.channels[0].product_code.as_ref().unwrap().as_str(),
            "cmapi00037415"
        );
    }

    #[test]
    fn problems_reach_the_loaded_configuration_with_their_keys() {
        let err = load_str(
            "t",
            r#"
            [marketplace]
            endpoint = "https://market.aliyuncs.com/x"
            [[channels]]
            name = "voice_notice"
            kind = "voice_notice"
            url = "https://a"
            product_code = "cmapi-1"
            "#,
            &no_env,
        )
        .unwrap_err();
        let LoadError::Invalid { problems, .. } = err else {
            panic!("expected problems, got {err:?}");
        };
        assert_eq!(
            keys(&problems),
            ["channels[0].product_code", "marketplace.endpoint"]
        );
    }

    #[test]
    fn unknown_keys_in_the_table_are_refused() {
        let err = load_str("t", "[marketplace]\naccess_key = \"x\"\n", &no_env).unwrap_err();
        assert!(err.to_string().contains("access_key"), "{err}");
    }

    #[test]
    fn the_client_needs_both_variables_set() {
        let (settings, _) = check_marketplace_alone(Some(&RawMarketplace::default()));
        let settings = settings.unwrap();
        let err = settings.client(&no_env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Market API cannot be called: environment variable ALIYUN_ACCESS_KEY_ID (the marketplace AccessKey ID) is not set"
        );
        let env = |name: &str| Some(format!("value-of-{name}"));
        assert!(settings.client(&env).is_ok());
    }
}
