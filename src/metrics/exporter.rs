//! [`MetricsExporter`]: builds one scrape's worth of metrics from this process's send
//! counters and the ledger's state.

use std::sync::Arc;

use prometheus::{CounterVec, Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use super::alert_tables;
use super::names;
use super::send_metrics::SendMetrics;
use crate::config::Settings;
use crate::domain::ChannelName;
use crate::ledger::{Ledger, LedgerError, PackageStatus};
use crate::send::SendObserver;

/// Why a scrape could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("cannot read the ledger")]
    Ledger(#[from] LedgerError),
    #[error("cannot read the alert tables")]
    Database(#[from] sqlx::Error),
    #[error("cannot assemble the metrics")]
    Prometheus(#[from] prometheus::Error),
}

/// Everything `/metrics` reports. Cheap to clone.
#[derive(Clone)]
pub struct MetricsExporter {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Ledger,
    channels: Vec<ChannelName>,
    sends: Arc<SendMetrics>,
}

impl MetricsExporter {
    pub fn new(ledger: Ledger, settings: &Settings) -> Self {
        let channels: Vec<ChannelName> = settings.channels.iter().map(|c| c.name.clone()).collect();
        let sends = Arc::new(SendMetrics::new(&channels));
        Self {
            inner: Arc::new(Inner {
                ledger,
                channels,
                sends,
            }),
        }
    }

    /// The observer to hand to the send service: it feeds `tollgate_sends_total` and
    /// the vendor latency histogram.
    pub fn send_observer(&self) -> Arc<dyn SendObserver> {
        self.inner.sends.clone()
    }

    /// One scrape in the Prometheus text format.
    #[tracing::instrument(skip_all)]
    pub async fn render(&self) -> Result<String, ScrapeError> {
        let registry = self.gather().await?;
        let mut text = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut text)?;
        Ok(String::from_utf8(text).expect("the text encoder writes UTF-8"))
    }

    /// A registry built for one scrape. Ledger figures are read afresh every time, so a
    /// package that expired or an alert that was deleted leaves no stale series behind.
    async fn gather(&self) -> Result<Registry, ScrapeError> {
        let registry = Registry::new();
        self.inner.sends.register_into(&registry)?;
        let (billed, cost) = self.totals().await?;
        registry.register(Box::new(billed))?;
        registry.register(Box::new(cost))?;
        for gauge in self.quota().await? {
            registry.register(Box::new(gauge))?;
        }
        registry.register(Box::new(self.package_expiry().await?))?;
        registry.register(Box::new(self.alerts_firing().await?))?;
        registry.register(Box::new(self.notifications().await?))?;
        registry.register(Box::new(build_info()?))?;
        Ok(registry)
    }

    /// `tollgate_billed_units_total` and `tollgate_cost_yuan_total` from the ledger's
    /// running totals, which only grow and are the same on every instance. A configured
    /// channel that never charged reports 0, so that its first charge is not lost to
    /// `increase()`.
    async fn totals(&self) -> Result<(IntCounterVec, CounterVec), ScrapeError> {
        let billed = IntCounterVec::new(
            Opts::new(
                names::BILLED_UNITS_TOTAL,
                "Units charged by the vendor since the ledger began (from the ledger: the same on every instance).",
            ),
            &["channel"],
        )?;
        let cost = CounterVec::new(
            Opts::new(
                names::COST_YUAN_TOTAL,
                "Cost of the units charged since the ledger began, in CNY (from the ledger: the same on every instance).",
            ),
            &["channel"],
        )?;
        for channel in &self.inner.channels {
            billed.with_label_values(&[channel.as_str()]);
            cost.with_label_values(&[channel.as_str()]);
        }
        for totals in self.inner.ledger.totals().await? {
            billed
                .with_label_values(&[totals.channel.as_str()])
                .inc_by(u64::try_from(totals.billed_units).unwrap_or(0));
            cost.with_label_values(&[totals.channel.as_str()])
                .inc_by(totals.cost.micros().max(0) as f64 / 1_000_000.0);
        }
        Ok((billed, cost))
    }

    /// The quota gauges of every configured channel. `tollgate_quota_time_left_seconds` has no
    /// series for a channel with no forecast (nothing charged in the last 7 days).
    async fn quota(&self) -> Result<[GaugeVec; 4], ScrapeError> {
        let gauge = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["channel"]);
        let remaining = gauge(
            names::QUOTA_REMAINING_UNITS,
            "Units left in the channel's live packages (not expired, not used up).",
        )?;
        let purchased = gauge(
            names::QUOTA_PURCHASED_UNITS,
            "Units bought in the channel's live packages.",
        )?;
        let ratio = gauge(
            names::QUOTA_REMAINING_RATIO,
            "Remaining units over purchased units of the live packages (0 to 1).",
        )?;
        let time_left = gauge(
            names::QUOTA_TIME_LEFT_SECONDS,
            "Seconds until the quota runs out at the trailing 7-day burn rate; absent while nothing is used.",
        )?;
        for channel in &self.inner.channels {
            let view = self.inner.ledger.quota(channel).await?;
            let label = [channel.as_str()];
            remaining
                .with_label_values(&label)
                .set(view.remaining as f64);
            purchased
                .with_label_values(&label)
                .set(view.purchased as f64);
            ratio.with_label_values(&label).set(view.remaining_ratio);
            if let Some(days) = view.days_left {
                time_left.with_label_values(&label).set(days * 86_400.0);
            }
        }
        Ok([remaining, purchased, ratio, time_left])
    }

    /// `tollgate_package_expiry_timestamp_seconds{channel,package}`: one series per
    /// active package that has an expiry, labelled with the package id. Packages that
    /// expired or are used up drop out, so the label set stays as small as what is live.
    async fn package_expiry(&self) -> Result<GaugeVec, ScrapeError> {
        let expiry = GaugeVec::new(
            Opts::new(
                names::PACKAGE_EXPIRY_TIMESTAMP_SECONDS,
                "When an active package expires, as a Unix timestamp in seconds.",
            ),
            &["channel", "package"],
        )?;
        for package in self.inner.ledger.list_packages(None).await? {
            let Some(expires_at) = package.expires_at else {
                continue;
            };
            if package.status != PackageStatus::Active {
                continue;
            }
            expiry
                .with_label_values(&[package.channel.as_str(), &package.id.to_string()])
                .set(expires_at.timestamp() as f64);
        }
        Ok(expiry)
    }

    async fn alerts_firing(&self) -> Result<GaugeVec, ScrapeError> {
        let firing = GaugeVec::new(
            Opts::new(
                names::ALERT_FIRING,
                "1 while the alert rule is firing for the channel, else 0.",
            ),
            &["rule", "channel"],
        )?;
        for state in alert_tables::alert_states(self.inner.ledger.db()).await? {
            firing
                .with_label_values(&[state.rule.as_str(), state.channel.as_str()])
                .set(if state.firing { 1.0 } else { 0.0 });
        }
        Ok(firing)
    }

    async fn notifications(&self) -> Result<IntCounterVec, ScrapeError> {
        let notifications = IntCounterVec::new(
            Opts::new(
                names::NOTIFICATIONS_TOTAL,
                "Notification delivery attempts by notifier and outcome (delivered or failed), from the database.",
            ),
            &["notifier", "outcome"],
        )?;
        for count in alert_tables::notification_counts(self.inner.ledger.db()).await? {
            notifications
                .with_label_values(&[count.notifier.as_str(), count.outcome.as_str()])
                .inc_by(count.attempts);
        }
        Ok(notifications)
    }
}

fn build_info() -> Result<GaugeVec, prometheus::Error> {
    let info = GaugeVec::new(
        Opts::new(
            names::BUILD_INFO,
            "Always 1; the version label says which tollgate is running.",
        ),
        &["version"],
    )?;
    info.with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1.0);
    Ok(info)
}
