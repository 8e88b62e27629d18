//! [`AlertEngine`]: evaluates every rule for a channel and applies the state changes.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use tokio::sync::Notify;
use tollgate_notify::{Event, RenderedReport, Status, EVENT_VERSION};

use super::forecast::{Forecast, SuggestionPlan};
use super::rules::{ChannelFacts, HourlyTraffic, RuleSpec, Trigger, VendorCount};
use super::state::{decide, Step};
use super::store::{self, AckOutcome, AlertRecord, TransitionInput};
use crate::config::alerts::Condition;
use crate::config::{ChannelSettings, Settings};
use crate::domain::{ChannelName, Clock};
use crate::ledger::{Ledger, Package, QuotaView};

/// How many times one evaluation looks at a rule: the first look and, after each
/// change it made, one more on fresh facts. A condition that flaps faster than this is
/// looked at again by the next evaluation (the next charge, or the `quota_check`
/// schedule).
const MAX_LOOKS: usize = 4;

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
    /// Where "now" comes from: `None` is the database's clock, which every instance
    /// shares (the state machine's times are cluster-wide: a firing stamped by one
    /// instance is repeated or resolved by another); a test's clock otherwise.
    clock: Option<Clock>,
    /// Woken after notifications are queued, so that this process's outbox worker
    /// delivers them at once instead of at its next poll.
    outbox_signal: Arc<Notify>,
}

impl AlertEngine {
    /// An engine that reads "now" from the database's clock, as every instance of a
    /// cluster must: one whose own clock is skewed then neither repeats a reminder early
    /// nor stamps a firing in the future, and an `expires_within` rule does not flap
    /// between instances that disagree on the time.
    pub fn on_database_clock(ledger: Ledger, settings: &Settings) -> Self {
        Self::with_clock(ledger, settings, None)
    }

    /// An engine whose "now" is `clock` (tests that move time).
    pub fn new(ledger: Ledger, settings: &Settings, clock: Clock) -> Self {
        Self::with_clock(ledger, settings, Some(clock))
    }

    fn with_clock(ledger: Ledger, settings: &Settings, clock: Option<Clock>) -> Self {
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
    /// changes due. Called after each charge, after a package is registered or a
    /// reconciliation made, and by [`AlertEngine::evaluate_all`].
    ///
    /// One notification per transition, cluster-wide (SPEC §7), rests on three things:
    ///
    /// - *the step is decided with the state row locked* ([`store::lock`]): a second
    ///   evaluation of the same alert, here or on another instance, waits and then finds
    ///   the state the first one left;
    /// - *on facts read under that lock*: the quota, packages and vendor standing are
    ///   read again on the locked transaction's connection, after the lock was taken, so
    ///   a decision is never made on figures older than the previous holder's. An
    ///   evaluation that read the quota before a package was registered, and reached the
    ///   lock after an evaluation that had seen the package, no longer fires on the old
    ///   figure (it used to: fire → resolve → fire → resolve for one purchase). The
    ///   lock holders therefore see the facts in the order of time, and the state moves
    ///   only when the condition they see changes;
    /// - *a committed change is looked at once more*: the facts may change between the
    ///   locked read and the commit (a package registered in between, whose own
    ///   evaluation looked at the state before this change was committed and found
    ///   nothing to do), so after each change the rule is evaluated again on fresh
    ///   facts, and the state left matches the last change of the facts.
    ///
    /// The unlocked first look only decides whether to take the lock: most evaluations
    /// (one after every charge) change nothing and take no lock.
    #[tracing::instrument(skip_all, fields(channel = %channel))]
    pub async fn evaluate_channel(&self, channel: &ChannelName) -> anyhow::Result<Vec<Evaluation>> {
        let Some(settings) = self.inner.channels.iter().find(|c| &c.name == channel) else {
            return Ok(Vec::new());
        };
        let db = self.inner.ledger.db();
        let (mut facts, mut now) = self.facts_now(settings).await?;
        let stored = store::for_channel(db, channel.as_str())
            .await
            .context("reading the alert states")?;

        let mut changes = Vec::new();
        for rule in self.inner.rules.iter().filter(|r| r.applies_to(channel)) {
            let input = TransitionInput {
                rule: &rule.name,
                channel: channel.as_str(),
                severity: rule.severity.as_str(),
                notifiers: &rule.notify,
            };
            let mut current = stored
                .iter()
                .find(|s| s.rule == rule.name)
                .map(|record| record.current());
            if current.is_none() {
                store::track(db, &input, now)
                    .await
                    .context("recording an alert state")?;
            }
            for _ in 0..MAX_LOOKS {
                if decide(current, rule.holds(&facts, now), now, rule.repeat_every).is_none() {
                    break;
                }
                let Some(change) = self
                    .transition(rule, settings, &input, now)
                    .await
                    .with_context(|| format!("changing the state of {} on {channel}", rule.name))?
                else {
                    // Under the lock, on fresher facts, nothing was due.
                    break;
                };
                changes.push(change);
                // Look again on facts read after the commit (see above).
                (facts, now) = self.facts_now(settings).await?;
                current = store::current(db, &rule.name, channel.as_str())
                    .await
                    .context("reading the alert state")?;
            }
        }
        if changes.iter().any(|c| c.notifications > 0) {
            self.inner.outbox_signal.notify_one();
        }
        Ok(changes)
    }

    /// Locks the rule's state row, reads the facts and "now" again under the lock,
    /// decides, and makes the step if there is one. `None`: nothing was due after all.
    async fn transition(
        &self,
        rule: &RuleSpec,
        settings: &ChannelSettings,
        input: &TransitionInput<'_>,
        first_look: DateTime<Utc>,
    ) -> anyhow::Result<Option<Evaluation>> {
        let db = self.inner.ledger.db();
        let mut locked = store::lock(db, input, first_look).await?;
        // "Now" is read under the lock too: the transitions' times are in lock order.
        let read = async {
            let now = self.now_on(locked.connection()).await?;
            let facts = self.facts(locked.connection(), settings, now).await?;
            anyhow::Ok((facts, now))
        }
        .await;
        let (facts, now) = match read {
            Ok(read) => read,
            Err(err) => {
                let _ = locked.release().await;
                return Err(err);
            }
        };
        let holds = rule.holds(&facts, now);
        let Some(step) = decide(Some(locked.current()), holds, now, rule.repeat_every) else {
            locked.release().await?;
            return Ok(None);
        };
        let event = self.event(rule, settings, &facts, step, now);
        locked.apply(db, input, step, &event).await?;
        tracing::info!(rule = %rule.name, step = ?step, event = event.event.as_str(), notifiers = rule.notify.len(), "alert state changed");
        Ok(Some(Evaluation {
            rule: rule.name.clone(),
            channel: settings.name.to_string(),
            step,
            event_id: event.id,
            notifications: rule.notify.len(),
        }))
    }

    /// The first look: the facts and "now", on a connection of the pool.
    async fn facts_now(
        &self,
        settings: &ChannelSettings,
    ) -> anyhow::Result<(ChannelFacts, DateTime<Utc>)> {
        let db = self.inner.ledger.db();
        let mut conn = db.pool().acquire().await.context("reading the facts")?;
        let now = self.now_on(&mut conn).await?;
        Ok((self.facts(&mut conn, settings, now).await?, now))
    }

    /// "Now", read on `conn` when it is the database's clock.
    async fn now_on(&self, conn: &mut sqlx::AnyConnection) -> anyhow::Result<DateTime<Utc>> {
        if let Some(clock) = &self.inner.clock {
            return Ok(clock());
        }
        let sql = format!("SELECT {}", self.inner.ledger.db().now_sql());
        let micros: i64 = sqlx::query_scalar(&sql)
            .fetch_one(conn)
            .await
            .context("reading the database's clock")?;
        Ok(crate::store::from_micros(micros))
    }

    /// "Now" without a database round trip, for what people read (the console's
    /// forecast): the test's clock, or this machine's.
    fn local_now(&self) -> DateTime<Utc> {
        self.inner
            .clock
            .as_ref()
            .map_or_else(Utc::now, |clock| clock())
    }

    /// What the rules look at for one channel at `now`, read on `conn` (a pool
    /// connection for the first look, the locked transaction's for the decision).
    async fn facts(
        &self,
        conn: &mut sqlx::AnyConnection,
        settings: &ChannelSettings,
        now: DateTime<Utc>,
    ) -> anyhow::Result<ChannelFacts> {
        let reading = self
            .inner
            .ledger
            .channel_reading_on(conn, &settings.name)
            .await
            .context("reading the quota")?;
        // Only `ledger.drift` reads the marketplace's count and the vendor's own, and only
        // on the channels it applies to. Both come with the reading above, on this
        // connection: the vendor's count is the channel's running total, kept by the
        // ledger writer from each answer that carries one, so nothing scans the history.
        let reads_drift =
            self.inner.rules.iter().any(|r| {
                matches!(r.trigger, Trigger::Drift { .. }) && r.applies_to(&settings.name)
            });
        // Only a burst rule reads the hourly traffic (7 days of hour buckets).
        let reads_traffic = self.inner.rules.iter().any(|r| {
            matches!(
                r.trigger,
                Trigger::Condition(Condition::BurstFactorAbove { .. })
            ) && r.applies_to(&settings.name)
        });
        let traffic = if reads_traffic {
            let hours = self
                .inner
                .ledger
                .sends_per_hour_on(
                    conn,
                    &settings.name,
                    now - chrono::Duration::days(7) - chrono::Duration::hours(2),
                    now + chrono::Duration::hours(1),
                )
                .await
                .context("reading the hourly traffic")?;
            Some(HourlyTraffic::from_hours(&hours, now))
        } else {
            None
        };
        Ok(ChannelFacts {
            marketplace: reading.marketplace.filter(|_| reads_drift),
            vendor: VendorCount::current(&reading.quota, &reading.packages)
                .filter(|_| reads_drift && settings.carries_vendor_count()),
            traffic,
            forecast: Forecast::compute(
                &reading.quota,
                &reading.packages,
                &self.plan(settings),
                now,
            ),
            has_packages: !reading.packages.is_empty(),
            auth_failing: reading.auth_failing,
            quota: reading.quota,
        })
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
        Forecast::compute(quota, &own, &plan, self.local_now())
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
        let now = match &self.inner.clock {
            Some(clock) => clock(),
            None => self.inner.ledger.db().now().await?,
        };
        store::acknowledge(self.inner.ledger.db(), id, by, now).await
    }
}
