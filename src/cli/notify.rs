//! `tollgate notify test`: a `test` event through each configured notifier, directly
//! (not through the outbox), with the result per notifier.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde::Serialize;
use tollgate_notify::Event;

use super::output::{self, Format, Rows};
use crate::config::{self, ConfigSource};

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test event through every configured notifier (or one), and print what
    /// each answered.
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Only this notifier.
    #[arg(long, value_name = "NAME")]
    pub notifier: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Serialize)]
struct TestResult {
    notifier: String,
    #[serde(rename = "type")]
    kind: &'static str,
    delivered: bool,
    error: Option<String>,
}

pub async fn run(
    command: NotifyCommand,
    source: &ConfigSource,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<ExitCode> {
    let NotifyCommand::Test(args) = command;
    let settings = config::load(source, env)?;
    let chosen: Vec<_> = settings
        .alerts
        .notifiers
        .iter()
        .filter(|n| args.notifier.as_ref().is_none_or(|name| &n.name == name))
        .collect();
    if chosen.is_empty() {
        match &args.notifier {
            Some(name) => anyhow::bail!(
                "no notifier is named {name:?}; configured: {}",
                settings
                    .alerts
                    .notifiers
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => anyhow::bail!("no notifier is configured ([[notifiers]] in the configuration)"),
        }
    }
    let event = Event::test(
        format!("evt_{}", uuid::Uuid::now_v7().simple()),
        chrono::Utc::now(),
        settings.server.timezone.name(),
    );
    let mut results = Vec::new();
    for notifier in chosen {
        let outcome = match notifier.plugin.build(env) {
            Err(err) => Err(err.to_string()),
            Ok(ready) => ready.deliver(&event).await.map_err(|e| e.0),
        };
        results.push(TestResult {
            notifier: notifier.name.clone(),
            kind: notifier.kind,
            delivered: outcome.is_ok(),
            error: outcome.err(),
        });
    }
    output::print(args.format, &results, || Rows {
        headers: vec!["notifier", "type", "result", "error"],
        rows: results
            .iter()
            .map(|r| {
                vec![
                    r.notifier.clone(),
                    r.kind.to_owned(),
                    if r.delivered { "delivered" } else { "failed" }.to_owned(),
                    r.error.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    })?;
    Ok(if results.iter().all(|r| r.delivered) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
