//! `tollgate config check`: every problem with the configuration, its environment and
//! its ledger, in one run.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::{self, ConfigSource, LoadError, Settings};
use crate::ledger::Ledger;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and environment; exits 1 if anything is wrong.
    Check,
    /// Write a commented tollgate.toml to start from: every section with its defaults,
    /// the optional parts as commented-out examples.
    Init(super::config_init::InitArgs),
}

pub async fn run(
    command: ConfigCommand,
    source: &ConfigSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Check => check(source, env).await,
        ConfigCommand::Init(args) => super::config_init::run(args),
    }
}

async fn check(
    source: &ConfigSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ExitCode> {
    say!("configuration: {}", source.describe());
    let settings = match config::load(source, env) {
        Ok(settings) => settings,
        Err(LoadError::Invalid { problems, .. }) => {
            for problem in &problems {
                say!("error: {problem}");
            }
            say!("{} problem(s) found", problems.len());
            return Ok(ExitCode::FAILURE);
        }
        Err(err) => {
            say!("error: {err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut errors = environment_problems(&settings, source, env);
    let mut warnings = marketplace_warnings(&settings);
    match channels_without_packages(&settings).await {
        Ok(empty) => warnings.extend(empty.into_iter().map(|channel| {
            format!("channel {channel} has no package registered: every send to it will be refused (register one with `tollgate package add`)")
        })),
        Err(err) => errors.push(format!(
            "database {}: {err:#}",
            settings.database.url_for_display()
        )),
    }
    for warning in &warnings {
        say!("warning: {warning}");
    }
    for error in &errors {
        say!("error: {error}");
    }
    if errors.is_empty() {
        say!(
            "ok: {} channel(s), {} template(s), {} client(s), ledger mode {}",
            settings.channels.len(),
            settings.templates.len(),
            settings.clients.len(),
            settings.ledger.mode.as_str()
        );
        for channel in settings.channels.iter().filter(|c| !c.reserve.is_empty()) {
            let rule = &channel.reserve;
            let part = |t: Option<crate::domain::QuotaThreshold>| {
                t.map_or("none".to_owned(), |t| t.to_string())
            };
            println!(
                "reserve {}: reserve_critical {}, shed_bulk_below {}",
                channel.name,
                part(rule.critical),
                part(rule.shed_bulk)
            );
        }
        for limit in settings.traffic.effective() {
            println!("limit {limit}");
        }
        Ok(ExitCode::SUCCESS)
    } else {
        say!("{} problem(s) found", errors.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Secrets are read from the environment variables the file names; each must be set.
pub fn environment_problems(
    settings: &Settings,
    source: &ConfigSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let is_set = |name: &str| env(name).is_some_and(|v| !v.is_empty());
    if !source.is_sandbox() {
        for channel in &settings.channels {
            if !is_set(&channel.appcode_env) {
                problems.push(format!(
                    "channel {}: environment variable {} (its AppCode) is not set",
                    channel.name, channel.appcode_env
                ));
            }
        }
        for (i, client) in settings.clients.iter().enumerate() {
            if !is_set(&client.token_env) {
                problems.push(format!(
                    "clients[{i}] ({}): environment variable {} (its token) is not set",
                    client.name, client.token_env
                ));
            }
        }
        if let Some(marketplace) = &settings.marketplace {
            for (variable, half) in [
                (&marketplace.access_key_id_env, "AccessKey ID"),
                (&marketplace.access_key_secret_env, "AccessKey secret"),
            ] {
                if !is_set(variable) {
                    problems.push(format!(
                        "[marketplace]: environment variable {variable} (the marketplace {half}) is not set"
                    ));
                }
            }
        }
        if let Some(variable) = &settings.metrics.token_env {
            if !is_set(variable) {
                problems.push(format!(
                    "[metrics] token_env: environment variable {variable} (the token scrapes present) is not set"
                ));
            }
        }
        let mut tokens: Vec<String> = settings
            .clients
            .iter()
            .filter_map(|c| env(&c.token_env))
            .filter(|t| !t.is_empty())
            .collect();
        tokens.sort();
        if tokens.windows(2).any(|pair| pair[0] == pair[1]) {
            problems.push("two clients share the same token; each client needs its own".into());
        }
    }
    problems
}

/// What `[marketplace]` and the channels' `product_code`s leave undone: each is only
/// acted upon with the other.
pub fn marketplace_warnings(settings: &Settings) -> Vec<String> {
    let with_code: Vec<&str> = settings
        .channels
        .iter()
        .filter(|c| c.product_code.is_some())
        .map(|c| c.name.as_str())
        .collect();
    match (&settings.marketplace, with_code.is_empty()) {
        (Some(_), true) => vec![
            "[marketplace] is configured but no channel has a product_code: there is nothing to compare with the marketplace's count".to_owned(),
        ],
        (None, false) => vec![format!(
            "{} {} a product_code but there is no [marketplace] table: the marketplace's count is not read",
            with_code.join(", "),
            if with_code.len() == 1 { "has" } else { "have" }
        )],
        _ => Vec::new(),
    }
}

/// Channels that have never had a package registered.
pub async fn channels_without_packages(settings: &Settings) -> anyhow::Result<Vec<String>> {
    let ledger = Ledger::open(settings, 1).await?;
    let channels: Vec<_> = settings.channels.iter().map(|c| c.name.clone()).collect();
    let empty = ledger
        .quotas(&channels)
        .await?
        .into_iter()
        .filter(|view| view.purchased == 0)
        .map(|view| view.channel)
        .collect();
    ledger.db().close().await;
    Ok(empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(extra: &str) -> Vec<String> {
        let text = format!(
            "[[channels]]\nname = \"voice_notice\"\nkind = \"voice_notice\"\nurl = \"https://a\"\n{extra}"
        );
        marketplace_warnings(&config::load_str("t", &text, &|_| None).unwrap())
    }

    #[test]
    fn the_marketplace_and_a_product_code_each_warn_without_the_other() {
        let code = "product_code = \"cmapi00037415\"\n";
        assert_eq!(warnings(""), Vec::<String>::new());
        assert_eq!(
            warnings(&format!("{code}[marketplace]\n")),
            Vec::<String>::new()
        );
        assert_eq!(
            warnings("[marketplace]\n"),
            ["[marketplace] is configured but no channel has a product_code: there is nothing to compare with the marketplace's count"]
        );
        assert_eq!(
            warnings(code),
            ["voice_notice has a product_code but there is no [marketplace] table: the marketplace's count is not read"]
        );
    }
}
