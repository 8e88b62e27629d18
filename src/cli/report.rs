//! `tollgate report monthly`: a month's cost report as a table, JSON, CSV or HTML.

use std::process::ExitCode;

use chrono::Utc;
use clap::{Args, Subcommand, ValueEnum};

use super::output::write_out;
use super::Context;
use crate::report::{to_csv, to_html, to_table, Month, MonthlyReport, ReportContext};

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// A month's cost per channel and client, purchases, expiries, and a forecast.
    Monthly(MonthlyArgs),
}

#[derive(Debug, Args)]
pub struct MonthlyArgs {
    /// The month, YYYY-MM, in the configured time zone (default: last month).
    #[arg(long, value_parser = parse_month)]
    pub month: Option<Month>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    /// The email body.
    Html,
}

fn parse_month(raw: &str) -> Result<Month, String> {
    Month::parse(raw).map_err(|err| err.to_string())
}

pub async fn run(command: ReportCommand, context: &Context) -> anyhow::Result<ExitCode> {
    let ReportCommand::Monthly(args) = command;
    let timezone = context.settings.server.timezone;
    let now = Utc::now();
    let month = args
        .month
        .unwrap_or_else(|| Month::containing(now, timezone).previous());
    let report = MonthlyReport::build(&context.ledger, month, now).await?;
    let people = ReportContext::from_channels(&context.settings.channels);
    match args.format {
        ReportFormat::Table => write_out(format_args!("{}", to_table(&report, &people)))?,
        ReportFormat::Json => say!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Csv => write_out(format_args!("{}", to_csv(&report)))?,
        ReportFormat::Html => write_out(format_args!("{}", to_html(&report, &people)))?,
    }
    Ok(ExitCode::SUCCESS)
}
