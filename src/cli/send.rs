//! `tollgate send`: one message through a running tollgate's API.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};

use super::output::{self, Format, Rows};
use super::serve::{default_token, server_url};
use crate::config::{self, ConfigSource};

#[derive(Debug, Args)]
pub struct SendArgs {
    #[arg(long)]
    pub channel: String,
    /// The mobile number (mainland China, optionally +86).
    #[arg(long)]
    pub to: String,
    /// A template configured for the channel.
    #[arg(long, conflicts_with = "content")]
    pub template: Option<String>,
    /// A template parameter, `name=value`; repeat for each.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// The text itself (voice channels).
    #[arg(long)]
    pub content: Option<String>,
    /// The tollgate to send through (default: the configured listen address).
    #[arg(long)]
    pub server: Option<String>,
    /// Bearer token (default: $TOLLGATE_TOKEN).
    #[arg(long, env = "TOLLGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(args: SendArgs, source: &ConfigSource) -> anyhow::Result<ExitCode> {
    let env = |key: &str| std::env::var(key).ok();
    let server = match args.server {
        Some(server) => server,
        None => server_url(&config::load(source, &env)?),
    };
    let token = args
        .token
        .or_else(|| default_token(source))
        .context("give --token or set TOLLGATE_TOKEN to the client's bearer token")?;
    let mut params = serde_json::Map::new();
    for pair in &args.params {
        let (name, value) = pair
            .split_once('=')
            .with_context(|| format!("--param {pair:?} must look like name=value"))?;
        params.insert(name.to_owned(), json!(value));
    }
    let mut body = json!({ "channel": args.channel, "to": args.to });
    match (args.template, args.content) {
        (Some(template), None) => {
            body["template"] = json!(template);
            body["params"] = Value::Object(params);
        }
        (None, Some(content)) => body["content"] = json!(content),
        _ => anyhow::bail!("give --template (with --param) or --content"),
    }
    let mut request = reqwest::Client::new()
        .post(format!("{}/v1/messages", server.trim_end_matches('/')))
        .bearer_auth(token)
        .json(&body);
    if let Some(key) = args.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.with_context(|| {
        format!("cannot reach tollgate at {server}; is `tollgate serve` running?")
    })?;
    let ok = response.status().is_success();
    let answer: Value = response
        .json()
        .await
        .context("tollgate answered something that is not JSON")?;
    output::print(args.format, &answer, || summary(&answer))?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summary(answer: &Value) -> Rows {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    if let Some(error) = answer.get("error") {
        return Rows {
            headers: vec!["error", "message", "charged"],
            rows: vec![vec![
                text(&error["code"]),
                text(&error["message"]),
                text(&error["charged"]),
            ]],
        };
    }
    Rows {
        headers: vec![
            "id",
            "channel",
            "to",
            "status",
            "units",
            "cost",
            "remaining",
        ],
        rows: vec![vec![
            text(&answer["id"]),
            text(&answer["channel"]),
            text(&answer["to"]),
            text(&answer["status"]),
            text(&answer["units"]),
            text(&answer["cost"]),
            text(&answer["quota"]["remaining_units"]),
        ]],
    }
}
