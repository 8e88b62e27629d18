//! [`MetricsExporter`]: builds one scrape's worth of metrics from this process's send
//! counters and the ledger's state.

use std::sync::Arc;

use prometheus::{CounterVec, Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

use super::labels::NOTIFICATION_OUTCOMES;
use super::names;
use super::send_metrics::SendMetrics;
use crate::alerts::{AlertEngine, AlertState};
use crate::config::Settings;
use crate::domain::ChannelName;
use crate::ledger::{Ledger, LedgerError, QuotaView};
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
    alerts: AlertEngine,
    channels: Vec<ChannelName>,
    /// The channels with a `product_code`, when `[marketplace]` reads their count.
    marketplace_channels: Vec<ChannelName>,
    /// The channels whose vendor's answers carry its own count (`remaining_field`).
    vendor_count_channels: Vec<ChannelName>,
    sends: Arc<SendMetrics>,
    routes: Vec<crate::config::routes::RouteSettings>,
}

impl MetricsExporter {
    pub fn new(ledger: Ledger, alerts: AlertEngine, settings: &Settings) -> Self {
        let channels: Vec<ChannelName> = settings.channels.iter().map(|c| c.name.clone()).collect();
        let sends = Arc::new(SendMetrics::new(&channels, &settings.routes));
        let marketplace_channels = match settings.marketplace {
            Some(_) => crate::marketplace::product_channels(settings)
                .into_iter()
                .map(|(channel, _)| channel)
                .collect(),
            None => Vec::new(),
        };
        let vendor_count_channels = settings
            .channels
            .iter()
            .filter(|c| c.carries_vendor_count())
            .map(|c| c.name.clone())
            .collect();
        Self {
            inner: Arc::new(Inner {
                ledger,
                alerts,
                channels,
                marketplace_channels,
                vendor_count_channels,
                sends,
                routes: settings.routes.clone(),
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
        for gauge in self.marketplace().await? {
            registry.register(Box::new(gauge))?;
        }
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

    /// The quota gauges of every configured channel, from one read of the quota views.
    /// `tollgate_quota_time_left_seconds` has no series for a channel with no forecast
    /// (nothing charged in the last 7 days).
    async fn quota(&self) -> Result<Vec<GaugeVec>, ScrapeError> {
        type Figure = fn(&QuotaView) -> Option<f64>;
        let gauges: [(&str, &str, Figure); 11] = [
            (
                names::QUOTA_REMAINING_UNITS,
                "Units left in the channel's live packages (not expired, not used up).",
                |v| Some(v.remaining as f64),
            ),
            (
                names::QUOTA_PURCHASED_UNITS,
                "Units of every package the channel ever bought.",
                |v| Some(v.purchased as f64),
            ),
            (
                names::QUOTA_POOL_UNITS,
                "Units bought in the channel's live pool: what remaining_ratio is measured against.",
                |v| Some(v.pool_units as f64),
            ),
            (
                names::QUOTA_USED_UNITS,
                "Units charged for sends against the channel's packages, ever.",
                |v| Some(v.used as f64),
            ),
            (
                names::QUOTA_RESERVED_UNITS,
                "Units held by sends under way (reservations not yet settled).",
                |v| Some(v.reserved as f64),
            ),
            (
                names::QUOTA_RESERVE_UNITS,
                "Units the priority reserve holds back for critical sends now (reserve_critical, up to what is left; 0 without a reserve).",
                |v| Some(v.reserved_for_critical as f64),
            ),
            (
                names::QUOTA_RECONCILED_UNITS,
                "Signed net of reconciliation adjustments, ever (negative: written off).",
                |v| Some(v.reconciled as f64),
            ),
            (
                names::QUOTA_EXPIRED_UNITS,
                "Unused units of the channel's expired packages, ever.",
                |v| Some(v.expired as f64),
            ),
            (
                names::QUOTA_REMAINING_RATIO,
                "Remaining units over the units of the live pool (0 to 1).",
                |v| Some(v.remaining_ratio),
            ),
            (
                names::QUOTA_TIME_LEFT_SECONDS,
                "Seconds until the quota runs out at the trailing 7-day burn rate; absent while nothing is used.",
                |v| v.days_left.map(|days| days * 86_400.0),
            ),
            (
                names::QUOTA_BURN_RATE_UNITS_PER_DAY,
                "Units charged per day over the trailing 7 days.",
                |v| Some(v.burn_rate_per_day),
            ),
        ];
        let views = self.inner.ledger.quotas(&self.inner.channels).await?;
        let mut families = Vec::with_capacity(gauges.len());
        for (name, help, figure) in gauges {
            let gauge = GaugeVec::new(Opts::new(name, help), &["channel"])?;
            for view in &views {
                if let Some(value) = figure(view) {
                    gauge.with_label_values(&[view.channel.as_str()]).set(value);
                }
            }
            families.push(gauge);
        }
        families.extend(self.routes(&views)?);
        families.extend(self.vendor_counts(&views)?);
        Ok(families)
    }

    /// `tollgate_route_channels{route}` (configured) and
    /// `tollgate_route_channels_available{route}`: the channels a route can use now,
    /// those with units left whose circuit this process has not opened.
    fn routes(&self, views: &[QuotaView]) -> Result<[GaugeVec; 2], ScrapeError> {
        let configured = GaugeVec::new(
            Opts::new(names::ROUTE_CHANNELS, "Channels configured in the route."),
            &["route"],
        )?;
        let available = GaugeVec::new(
            Opts::new(
                names::ROUTE_CHANNELS_AVAILABLE,
                "Channels of the route that can carry a send now: units left, and a circuit this process has not opened.",
            ),
            &["route"],
        )?;
        for route in &self.inner.routes {
            let usable = route
                .channels
                .iter()
                .filter(|channel| {
                    views
                        .iter()
                        .any(|v| v.channel == channel.as_str() && v.remaining > 0)
                        && !self.inner.sends.circuit_open(channel)
                })
                .count();
            configured
                .with_label_values(&[route.name.as_str()])
                .set(route.channels.len() as f64);
            available
                .with_label_values(&[route.name.as_str()])
                .set(usable as f64);
        }
        Ok([configured, available])
    }

    /// `tollgate_vendor_remaining_units` and `tollgate_vendor_drift_units`: the vendor's
    /// own count from its latest answer that carried one (`remaining_field`, SPEC §13),
    /// and that count minus the ledger's remaining units, the sign of
    /// `tollgate_ledger_drift_units` (SPEC §14: compared in the same way). Only for the
    /// channels with a `remaining_field` whose answers have carried a count: a 0 would
    /// claim the counts agree. Read from the quota views, the channel's running totals.
    fn vendor_counts(&self, views: &[QuotaView]) -> Result<[GaugeVec; 2], ScrapeError> {
        let remaining = GaugeVec::new(
            Opts::new(
                names::VENDOR_REMAINING_UNITS,
                "Units the vendor said were left in its latest answer that carried a count (the channel's remaining_field).",
            ),
            &["channel"],
        )?;
        let drift = GaugeVec::new(
            Opts::new(
                names::VENDOR_DRIFT_UNITS,
                "The vendor's own remaining units (its latest answer that carried a count) minus the ledger's remaining units now (negative: the ledger counts more than the vendor has left; sends under way read as positive until settled).",
            ),
            &["channel"],
        )?;
        for view in views {
            let carries = self
                .inner
                .vendor_count_channels
                .iter()
                .any(|c| c.as_str() == view.channel);
            let (true, Some(vendor), Some(difference)) =
                (carries, view.vendor_remaining, view.vendor_drift)
            else {
                continue;
            };
            remaining
                .with_label_values(&[view.channel.as_str()])
                .set(vendor as f64);
            drift
                .with_label_values(&[view.channel.as_str()])
                .set(difference as f64);
        }
        Ok([remaining, drift])
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
        for package in self.inner.ledger.live_packages(None).await? {
            let Some(expires_at) = package.expires_at else {
                continue;
            };
            expiry
                .with_label_values(&[package.channel.as_str(), &package.id.to_string()])
                .set(expires_at.timestamp() as f64);
        }
        Ok(expiry)
    }

    /// `tollgate_marketplace_remaining_units` and `tollgate_ledger_drift_units` from each
    /// channel's latest marketplace run (SPEC §14). A channel without a product code, or
    /// without a run yet, has no series: a 0 would claim the counts agree.
    async fn marketplace(&self) -> Result<[GaugeVec; 2], ScrapeError> {
        let remaining = GaugeVec::new(
            Opts::new(
                names::MARKETPLACE_REMAINING_UNITS,
                "Units the marketplace reported left of the channel's product at its latest run (DescribeApiMetering, as tollgate reads its figures).",
            ),
            &["channel"],
        )?;
        let drift = GaugeVec::new(
            Opts::new(
                names::LEDGER_DRIFT_UNITS,
                "The marketplace's remaining units minus the ledger's at the channel's latest marketplace run (negative: the ledger counts more than the marketplace has left).",
            ),
            &["channel"],
        )?;
        for run in self
            .inner
            .ledger
            .latest_marketplace_runs(&self.inner.marketplace_channels)
            .await?
        {
            remaining
                .with_label_values(&[run.channel.as_str()])
                .set(run.marketplace_remaining as f64);
            drift
                .with_label_values(&[run.channel.as_str()])
                .set(run.drift as f64);
        }
        Ok([remaining, drift])
    }

    async fn alerts_firing(&self) -> Result<GaugeVec, ScrapeError> {
        let firing = GaugeVec::new(
            Opts::new(
                names::ALERT_FIRING,
                "1 while the alert rule is firing for the channel, else 0.",
            ),
            &["rule", "channel"],
        )?;
        for alert in self.inner.alerts.list().await? {
            firing
                .with_label_values(&[alert.rule.as_str(), alert.channel.as_str()])
                .set(if alert.state == AlertState::Firing {
                    1.0
                } else {
                    0.0
                });
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
        for count in self.inner.alerts.notification_counts().await? {
            // The label takes only the values the alerts feature defines.
            if !NOTIFICATION_OUTCOMES.contains(&count.outcome.as_str()) {
                continue;
            }
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
