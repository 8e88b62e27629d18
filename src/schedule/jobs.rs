//! The scheduled jobs tollgate runs: `quota_check`, `monthly_report`,
//! `ledger_housekeeping` (old hour buckets, raw rows past retention when configured,
//! then spent traffic-limit counts)
//! and `marketplace_sync` (the marketplace's own count, SPEC §14).
//!
//! The scheduler does not know the alert engine or the notifiers: the application hands
//! their entry points in as [`JobHooks`], so this module depends on neither, and a job
//! whose hook is missing is not scheduled at all (rather than scheduled to do nothing).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use chrono_tz::Tz;

use super::{Job, JobFuture, Scheduler};
use crate::config::Settings;
use crate::ledger::Ledger;
use crate::marketplace::{MarketplaceSync, SyncScope};
use crate::policy::Limits;
use crate::report::{Month, MonthlyReport};

type QuotaCheck = Arc<dyn Fn() -> JobFuture + Send + Sync>;
type SendReport = Arc<dyn Fn(MonthlyReport, Vec<String>) -> JobFuture + Send + Sync>;

/// Entry points of other parts of tollgate that scheduled jobs call.
#[derive(Clone, Default)]
pub struct JobHooks {
    quota_check: Option<QuotaCheck>,
    send_report: Option<SendReport>,
    marketplace_sync: Option<MarketplaceSync>,
    traffic_limits: Option<Limits>,
}

impl JobHooks {
    /// What `quota_check` runs: the alert engine's evaluation of every rule.
    pub fn with_quota_check<F, Fut>(mut self, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.quota_check = Some(Arc::new(move || Box::pin(check())));
        self
    }

    /// How `monthly_report` delivers a report to the named notifiers (as a
    /// `report.monthly` event through the durable outbox).
    pub fn with_report_delivery<F, Fut>(mut self, send: F) -> Self
    where
        F: Fn(MonthlyReport, Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.send_report = Some(Arc::new(move |report, notifiers| {
            Box::pin(send(report, notifiers))
        }));
        self
    }

    /// What `marketplace_sync` runs: every channel with a `product_code` asked of the
    /// Market API and recorded by the ledger (with whatever observes the runs, such as
    /// the alert engine, already plugged into it).
    pub fn with_marketplace_sync(mut self, sync: MarketplaceSync) -> Self {
        self.marketplace_sync = Some(sync);
        self
    }

    /// The traffic limits whose spent counts `ledger_housekeeping` deletes.
    pub fn with_traffic_limits(mut self, limits: Limits) -> Self {
        self.traffic_limits = Some(limits);
        self
    }
}

/// A scheduler holding every job the settings and hooks call for.
pub fn standard_jobs(settings: &Settings, ledger: Ledger, hooks: JobHooks) -> Scheduler {
    let timezone = settings.server.timezone;
    let schedule = &settings.schedule;
    let mut scheduler = Scheduler::new(ledger.db().clone(), timezone);

    if let Some(check) = hooks.quota_check {
        scheduler = scheduler.with_job(Job::new(
            "quota_check",
            schedule.quota_check.clone(),
            move |_run| {
                let check = check.clone();
                async move { check().await.context("evaluating the alert rules") }
            },
        ));
    }

    if let Some(send) = hooks
        .send_report
        .filter(|_| !schedule.report_notify.is_empty())
    {
        let notifiers = schedule.report_notify.clone();
        let ledger = ledger.clone();
        scheduler = scheduler.with_job(Job::new(
            "monthly_report",
            schedule.monthly_report.clone(),
            move |run| {
                let (ledger, send, notifiers) = (ledger.clone(), send.clone(), notifiers.clone());
                async move {
                    let report =
                        last_months_report(&ledger, timezone, run.due_at, run.started_at).await?;
                    send(report, notifiers).await
                }
            },
        ));
    }

    if let Some(sync) = hooks
        .marketplace_sync
        .filter(|_| settings.marketplace.is_some())
    {
        scheduler = scheduler.with_job(Job::new(
            "marketplace_sync",
            schedule.marketplace_sync.clone(),
            move |_run| {
                let sync = sync.clone();
                async move {
                    // A channel that failed fails the run, so that `schedule_runs`
                    // records the marketplace's message; the others are recorded.
                    let runs = sync.try_run_once(SyncScope::Every).await.into_result()?;
                    for run in &runs {
                        tracing::info!(
                            channel = %run.channel,
                            marketplace_remaining = run.marketplace_remaining,
                            ledger_remaining = run.ledger_remaining,
                            drift = run.drift,
                            outcome = run.outcome.as_str(),
                            "the marketplace's count was recorded"
                        );
                    }
                    Ok(())
                }
            },
        ));
    }

    let retention = schedule.retention;
    let limits = hooks.traffic_limits;
    scheduler.with_job(Job::new(
        "ledger_housekeeping",
        schedule.rollup.clone(),
        move |run| {
            let ledger = ledger.clone();
            let limits = limits.clone();
            async move {
                let done = ledger
                    .housekeeping(retention, run.started_at)
                    .await
                    .context("ledger housekeeping")?;
                let windows = match &limits {
                    Some(limits) => limits
                        .housekeeping()
                        .await
                        .context("deleting spent traffic-limit counts")?,
                    None => 0,
                };
                tracing::info!(
                    hour_buckets = done.hour_buckets_deleted,
                    entries = done.entries_deleted,
                    sends = done.sends_deleted,
                    traffic_windows = windows,
                    "ledger housekeeping done"
                );
                Ok(())
            }
        },
    ))
}

/// The report of the month before the one `due_at` falls in.
pub async fn last_months_report(
    ledger: &Ledger,
    timezone: Tz,
    due_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<MonthlyReport> {
    let month = Month::containing(due_at, timezone).previous();
    MonthlyReport::build(ledger, month, now)
        .await
        .with_context(|| format!("building the report of {month}"))
}
