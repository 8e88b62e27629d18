//! [`AlertEngine`]: evaluates every rule for a channel and applies the state changes.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio::sync::Notify;
use tollgate_notify::{Event, RenderedReport, Status, EVENT_VERSION};

use super::forecast::{Forecast, SuggestionPlan};
use super::rules::{ChannelFacts, HourlyTraffic, RuleSpec, Trigger};
use super::state::{decide, Step};
use super::store::{self, AckOutcome, AlertRecord, TransitionInput};
use crate::config::alerts::Condition;
use crate::config::{ChannelSettings, Settings};
use crate::domain::{ChannelName, Clock};
use crate::ledger::{Ledger, Package, QuotaView};

/// One state change that was made, with the notifications it queued.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub rule: String,
    pub channel: String,
    pub step: Step,
    pub event_id: String,
    pub notifications: usize,
}

/// Evaluates the alert rules. Cheap to clone. Every instance of tollgate may run one
/// against the same database: the store makes each change happen once.
#[derive(Clone)]
pub struct AlertEngine {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Ledger,
    rules: Vec<RuleSpec>,
    channels: Vec<ChannelSettings>,
    /// `[server] timezone`: the zone of the times in the text people read.
    timezone: Tz,
    /// `[alerts] suggest_days`: the days of use a purchase suggestion covers.
    suggest_days: u32,
    clock: Clock,
    /// Woken after notifications are queued, so that this process's outbox worker
    /// delivers them at once instead of at its next poll.
    outbox_signal: Arc<Notify>,
}

impl AlertEngine {
    pub fn new(ledger: Ledger, settings: &Settings, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                ledger,
                rules: RuleSpec::all(settings),
                channels: settings.channels.clone(),
                timezone: settings.server.timezone,
                suggest_days: settings.alerts.suggest_days,
                clock,
                outbox_signal: Arc::new(Notify::new()),
            }),
        }
    }

    /// The signal this engine gives after queuing notifications (for the outbox worker).
    pub fn outbox_signal(&self) -> Arc<Notify> {
        self.inner.outbox_signal.clone()
    }

    pub fn rules(&self) -> &[RuleSpec] {
        &self.inner.rules
    }

    /// Evaluates every configured channel (the `quota_check` schedule calls this).
    #[tracing::instrument(skip_all)]
    pub async fn evaluate_all(&self) -> anyhow::Result<Vec<Evaluation>> {
        let mut changes = Vec::new();
        for channel in &self.inner.channels {
            changes.extend(self.evaluate_channel(&channel.name).await?);
        }
        Ok(changes)
    }

    /// Evaluates every rule that applies to `channel`, and makes and notifies the state
    /// changes due. Called after each charge, after a package is registered, and by
    /// [`AlertEngine::evaluate_all`].
    #[tracing::instrument(skip_all, fields(channel = %channel))]
    pub async fn evaluate_channel(&self, channel: &ChannelName) -> anyhow::Result<Vec<Evaluation>> {
        let Some(settings) = self.inner.channels.iter().find(|c| &c.name == channel) else {
            return Ok(Vec::new());
        };
        let ledger = &self.inner.ledger;
        let db = ledger.db();
        let now = (self.inner.clock)();
        let quota = ledger.quota(channel).await.context("reading the quota")?;
        let packages = ledger
            .list_packages(Some(channel))
            .await
            .context("reading the packages")?;
        // Only `ledger.drift` reads the marketplace's count, and only on the channels
        // it applies to: the other evaluations (one after every charge) skip the read.
        let reads_drift = self
            .inner
            .rules
            .iter()
            .any(|r| matches!(r.trigger, Trigger::Drift { .. }) && r.applies_to(channel));
        let marketplace = if reads_drift {
            ledger
                .latest_marketplace_run(channel)
                .await
                .context("reading the marketplace's count")?
        } else {
            None
        };
        // Only a burst rule reads the hourly traffic (7 days of hour buckets).
        let reads_traffic = self.inner.rules.iter().any(|r| {
            matches!(
                r.trigger,
                Trigger::Condition(Condition::BurstFactorAbove { .. })
            ) && r.applies_to(channel)
        });
        let traffic = if reads_traffic {
            let hours = ledger
                .sends_per_hour(
                    channel,
                    now - chrono::Duration::days(7) - chrono::Duration::hours(2),
                    now + chrono::Duration::hours(1),
                )
                .await
                .context("reading the hourly traffic")?;
            Some(HourlyTraffic::from_hours(&hours, now))
        } else {
            None
        };
        let facts = ChannelFacts {
            marketplace,
            traffic,
            forecast: Forecast::compute(&quota, &packages, &self.plan(settings), now),
            has_packages: !packages.is_empty(),
            auth_failing: ledger
                .auth_failing(channel)
                .await
                .context("reading the last vendor answer")?,
            quota,
        };
        let stored = store::for_channel(db, channel.as_str())
            .await
            .context("reading the alert states")?;

        let mut changes = Vec::new();
        for rule in self.inner.rules.iter().filter(|r| r.applies_to(channel)) {
            let holds = rule.holds(&facts, now);
            let current = stored.iter().find(|s| s.rule == rule.name);
            let input = TransitionInput {
                rule: &rule.name,
                channel: channel.as_str(),
                severity: rule.severity.as_str(),
                holds,
                now,
                repeat_every: rule.repeat_every,
                notifiers: &rule.notify,
            };
            // Most evaluations change nothing: decide on the unlocked read first, and
            // take the lock (and decide again) only when a change looks due.
            let due = decide(
                current.map(|c| c.current_for_engine()),
                holds,
                now,
                rule.repeat_every,
            );
            if due.is_none() {
                if current.is_none() {
                    store::track(db, &input)
                        .await
                        .context("recording an alert state")?;
                }
                continue;
            }
            let made = store::transition(db, &input, |step| {
                self.event(rule, settings, &facts, step, now)
            })
            .await
            .with_context(|| format!("changing the state of {} on {channel}", rule.name))?;
            if let Some((step, event)) = made {
                tracing::info!(rule = %rule.name, step = ?step, event = event.event.as_str(), notifiers = rule.notify.len(), "alert state changed");
                changes.push(Evaluation {
                    rule: rule.name.clone(),
                    channel: channel.to_string(),
                    step,
                    event_id: event.id,
                    notifications: rule.notify.len(),
                });
            }
        }
        if changes.iter().any(|c| c.notifications > 0) {
            self.inner.outbox_signal.notify_one();
        }
        Ok(changes)
    }

    /// The forecast the reminders give for `quota` now: when it runs out, and what to
    /// buy by the channel's package sizes. `packages` are the channel's (any order; more
    /// are ignored). For the console, which shows the same suggestion as the reminders.
    pub fn forecast(&self, quota: &QuotaView, packages: &[Package]) -> Forecast {
        let plan = self
            .inner
            .channels
            .iter()
            .find(|c| c.name.as_str() == quota.channel)
            .map(|settings| self.plan(settings))
            .unwrap_or_default();
        let own: Vec<Package> = packages
            .iter()
            .filter(|p| p.channel == quota.channel)
            .cloned()
            .collect();
        Forecast::compute(quota, &own, &plan, (self.inner.clock)())
    }

    fn plan(&self, channel: &ChannelSettings) -> SuggestionPlan {
        SuggestionPlan {
            days: self.inner.suggest_days,
            package_sizes: channel.package_sizes.clone(),
        }
    }

    fn event(
        &self,
        rule: &RuleSpec,
        channel: &ChannelSettings,
        facts: &ChannelFacts,
        step: Step,
        now: DateTime<Utc>,
    ) -> Event {
        let status = match step {
            Step::Fire | Step::Repeat => Status::Firing,
            Step::Resolve => Status::Resolved,
        };
        let quota = &facts.quota;
        Event {
            version: EVENT_VERSION.to_owned(),
            id: store::new_id("evt"),
            event: rule.event_kind(status),
            status,
            rule: Some(rule.name.clone()),
            severity: rule.severity,
            channel: Some(channel.name.to_string()),
            channel_kind: Some(channel.kind.as_str().to_owned()),
            remaining_units: Some(quota.remaining),
            // What `remaining_ratio` is measured against: the live pool's units.
            purchased_units: Some(quota.pool_units),
            remaining_ratio: Some(quota.remaining_ratio),
            burn_rate_per_day: Some(quota.burn_rate_per_day),
            days_left: quota.days_left,
            forecast_exhausted_at: facts.forecast.exhausted_at,
            repurchase_url: channel.repurchase_url.clone(),
            suggested_units: facts.forecast.suggested_units,
            summary: rule.summary(channel, facts, status, self.inner.timezone),
            occurred_at: now,
            timezone: self.inner.timezone.name().to_owned(),
            last_hour_sends: facts.traffic.map(|t| t.last_hour),
            hourly_average_sends: facts
                .traffic
                .map(|t| (t.hourly_average * 100.0).round() / 100.0),
            report_html: None,
            report_text: None,
        }
    }

    /// Queues a `report.monthly` event for `notifiers` in the durable outbox. The event
    /// id is derived from `key` (e.g. the month), so a run that is retried, or two
    /// instances doing it, queue it once.
    pub async fn enqueue_report(
        &self,
        key: &str,
        report: RenderedReport,
        notifiers: &[String],
        occurred_at: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        let event = Event::monthly_report(
            format!("report-{key}"),
            report,
            occurred_at,
            self.inner.timezone.name(),
        );
        store::enqueue(self.inner.ledger.db(), &event, notifiers).await?;
        self.outbox_signal().notify_one();
        Ok(())
    }

    /// Every stored alert state.
    pub async fn list(&self) -> Result<Vec<AlertRecord>, sqlx::Error> {
        store::list(self.inner.ledger.db()).await
    }

    /// Every notifier's delivery attempts by outcome, ever.
    pub async fn notification_counts(&self) -> Result<Vec<store::NotificationCount>, sqlx::Error> {
        store::notification_counts(self.inner.ledger.db()).await
    }

    /// Acknowledges a firing alert on behalf of the client `by`.
    pub async fn acknowledge(&self, id: &str, by: &str) -> Result<AckOutcome, sqlx::Error> {
        store::acknowledge(self.inner.ledger.db(), id, by, (self.inner.clock)()).await
    }
}
