//! `tollgate quota` and `tollgate reconcile` (with the console's count, or the
//! marketplace's).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use super::output::{self, opt, Format, Rows};
use super::Context;
use crate::alerts::AlertEngine;
use crate::ledger::{MarketplaceRun, QuotaView, RunOutcome};
use crate::marketplace::{MarketplaceSync, SyncScope};

#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// One channel (default: all).
    pub channel: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The channel (with --from-marketplace: only this one; default every channel with a
    /// product_code).
    #[arg(long, required_unless_present = "from_marketplace")]
    pub channel: Option<String>,
    /// The remaining count shown in the vendor's console.
    #[arg(
        long,
        required_unless_present = "from_marketplace",
        conflicts_with = "from_marketplace"
    )]
    pub remaining: Option<u64>,
    #[arg(long, conflicts_with = "from_marketplace")]
    pub note: Option<String>,
    /// Ask the marketplace (DescribeApiMetering) instead: record what it says of each
    /// channel's product_code and, with [marketplace] apply = true, reconcile to it.
    #[arg(long)]
    pub from_marketplace: bool,
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
    if args.from_marketplace {
        return from_marketplace(args, context).await;
    }
    let (Some(channel), Some(remaining)) = (&args.channel, args.remaining) else {
        anyhow::bail!("--channel and --remaining are required without --from-marketplace");
    };
    let channel = context.channel(channel)?;
    let record = context
        .ledger
        .reconcile(&channel, remaining, args.note)
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

/// `reconcile --from-marketplace`: one run of the marketplace's count, the alert rules
/// evaluated after each channel's (their notifications wait in the outbox for a running
/// server to deliver). Exits 1 if any channel failed; what was recorded is printed.
async fn from_marketplace(args: ReconcileArgs, context: &Context) -> anyhow::Result<ExitCode> {
    let settings = &context.settings;
    anyhow::ensure!(
        settings.marketplace.is_some(),
        "--from-marketplace needs a [marketplace] table in the configuration (see the README, \"Reconciling with the marketplace's count\")"
    );
    let only = args
        .channel
        .as_deref()
        .map(|name| context.channel(name))
        .transpose()?;
    if let Some(channel) = &only {
        let has_code = settings
            .channel(channel.as_str())
            .is_some_and(|c| c.product_code.is_some());
        anyhow::ensure!(
            has_code,
            "channel {channel} has no product_code: the marketplace cannot be asked about it"
        );
    }
    let env = |key: &str| std::env::var(key).ok();
    let engine = AlertEngine::on_database_clock(context.ledger.clone(), settings);
    let Some(sync) = MarketplaceSync::from_settings(settings, context.ledger.clone(), &env)
        .context("[marketplace]")?
    else {
        anyhow::bail!("no channel has a product_code: there is nothing to ask the marketplace");
    };
    let sync = sync.observed_by(Arc::new(engine));
    let scope = match &only {
        Some(channel) => SyncScope::Only(channel),
        None => SyncScope::Every,
    };
    let outcome = sync.try_run_once(scope).await;
    if !outcome.runs.is_empty() || outcome.failures.is_empty() {
        output::print(args.format, &outcome.runs, || {
            marketplace_table(&outcome.runs)
        })?;
    }
    for failure in &outcome.failures {
        eprintln!("error: {failure}");
    }
    for channel in &outcome.skipped {
        eprintln!(
            "error: channel {channel} was not asked: the marketplace refused the request itself"
        );
    }
    Ok(if outcome.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn marketplace_table(runs: &[MarketplaceRun]) -> Rows {
    Rows {
        headers: vec![
            "channel",
            "product_code",
            "marketplace_remaining",
            "ledger_remaining",
            "drift",
            "applied",
            "adjusted_units",
            "reading",
        ],
        rows: runs
            .iter()
            .map(|run| {
                vec![
                    run.channel.clone(),
                    run.product_code.clone(),
                    run.marketplace_remaining.to_string(),
                    run.ledger_remaining.to_string(),
                    run.drift.to_string(),
                    match run.outcome {
                        RunOutcome::Reconciled => "yes".to_owned(),
                        RunOutcome::Agreed => "no (the counts agree)".to_owned(),
                        RunOutcome::Recorded => "no (apply = false)".to_owned(),
                    },
                    run.adjusted_units.to_string(),
                    if run.confirmed {
                        "confirmed".to_owned()
                    } else {
                        "unconfirmed".to_owned()
                    },
                ]
            })
            .collect(),
    }
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
