//! `tollgate quota` and `tollgate reconcile`.

use std::process::ExitCode;

use clap::Args;

use super::output::{self, opt, Format, Rows};
use super::Context;
use crate::ledger::QuotaView;

#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// One channel (default: all).
    pub channel: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    #[arg(long)]
    pub channel: String,
    /// The remaining count shown in the vendor's console.
    #[arg(long)]
    pub remaining: u64,
    #[arg(long)]
    pub note: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run_quota(args: QuotaArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let channels = match &args.channel {
        Some(name) => vec![context.channel(name)?],
        None => context
            .settings
            .channels
            .iter()
            .map(|c| c.name.clone())
            .collect(),
    };
    let views = context.ledger.quotas(&channels).await?;
    output::print(args.format, &views, || quota_table(&views))?;
    Ok(ExitCode::SUCCESS)
}

pub async fn run_reconcile(args: ReconcileArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let channel = context.channel(&args.channel)?;
    let record = context
        .ledger
        .reconcile(&channel, args.remaining, args.note)
        .await?;
    output::print(args.format, &record, || Rows {
        headers: vec![
            "id",
            "channel",
            "vendor_remaining",
            "local_remaining",
            "adjusted_units",
            "adjusted_cost",
            "remaining_after",
        ],
        rows: vec![vec![
            record.id.to_string(),
            record.channel.clone(),
            record.vendor_remaining.to_string(),
            record.local_remaining.to_string(),
            record.adjusted_units.to_string(),
            record.adjusted_cost.to_string(),
            record.remaining_after.to_string(),
        ]],
    })?;
    Ok(ExitCode::SUCCESS)
}

fn quota_table(views: &[QuotaView]) -> Rows {
    Rows {
        headers: vec![
            "channel",
            "purchased",
            "used",
            "reserved",
            "reconciled",
            "expired",
            "remaining",
            "pool",
            "ratio",
            "burn/day",
            "days_left",
            "next_expiry",
        ],
        rows: views
            .iter()
            .map(|v| {
                vec![
                    v.channel.clone(),
                    v.purchased.to_string(),
                    v.used.to_string(),
                    v.reserved.to_string(),
                    v.reconciled.to_string(),
                    v.expired.to_string(),
                    v.remaining.to_string(),
                    v.pool_units.to_string(),
                    format!("{:.1}%", v.remaining_ratio * 100.0),
                    v.burn_rate_per_day.to_string(),
                    opt(&v.days_left.map(|d| format!("{d:.1}"))),
                    opt(&v
                        .next_expiry
                        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
                ]
            })
            .collect(),
    }
}
