//! One run of the marketplace's count (SPEC §14): each channel with a `product_code` is
//! asked of the Market API, and each answer is handed to the ledger, which records it
//! beside its own count and, with `[marketplace] apply`, reconciles the difference.
//!
//! `tollgate reconcile --from-marketplace` and the `marketplace_sync` job both run
//! [`MarketplaceSync::try_run_once`]; the scheduler makes the job run once per due time
//! across instances, and the ledger makes two runs at the same moment reconcile once.
//! The sync knows nothing of alerts: whatever must follow a recorded run (the alert
//! engine evaluating `ledger.drift`) plugs in as a [`RunObserver`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::client::{MarketClient, MarketError};
use super::metering::ProductMetering;
use crate::config::Settings;
use crate::domain::{ChannelName, ProductCode};
use crate::ledger::{Ledger, LedgerError, MarketplaceFigures, MarketplaceRun};

/// Told of every run the ledger recorded, before the sync goes on to the next channel.
pub trait RunObserver: Send + Sync {
    fn run_recorded<'a>(
        &'a self,
        run: &'a MarketplaceRun,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// Reads the marketplace's count of every channel that has a product code. Cheap to
/// clone.
#[derive(Clone)]
pub struct MarketplaceSync {
    inner: Arc<Inner>,
}

struct Inner {
    client: MarketClient,
    ledger: Ledger,
    /// The channels with a `product_code`, in the configuration's order.
    channels: Vec<(ChannelName, ProductCode)>,
    apply: bool,
    observers: Vec<Arc<dyn RunObserver>>,
}

/// Why one channel's count was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Market(#[from] MarketError),
    #[error("cannot record the marketplace's count")]
    Ledger(#[from] LedgerError),
}

/// A channel whose run failed; nothing of it was recorded.
#[derive(Debug)]
pub struct SyncFailure {
    pub channel: ChannelName,
    pub product_code: ProductCode,
    pub error: SyncError,
}

impl fmt::Display for SyncFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "channel {} (product {}): {}",
            self.channel, self.product_code, self.error
        )?;
        // The causes too (why the Market API could not be reached, why the database
        // refused): none of them carries a URL or a secret.
        let mut cause = std::error::Error::source(&self.error);
        while let Some(err) = cause {
            write!(f, ": {err}")?;
            cause = err.source();
        }
        Ok(())
    }
}

/// What one run did, channel by channel.
#[derive(Debug, Default)]
pub struct SyncOutcome {
    /// The runs the ledger recorded.
    pub runs: Vec<MarketplaceRun>,
    pub failures: Vec<SyncFailure>,
    /// Channels not asked because an earlier failure concerned every product (a wrong
    /// AccessKey secret, say): asking again would only fail again.
    pub skipped: Vec<ChannelName>,
}

impl SyncOutcome {
    /// The runs, or an error naming every channel that failed or was skipped.
    pub fn into_result(self) -> anyhow::Result<Vec<MarketplaceRun>> {
        if self.failures.is_empty() {
            return Ok(self.runs);
        }
        let mut message = self
            .failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if !self.skipped.is_empty() {
            let skipped: Vec<&str> = self.skipped.iter().map(ChannelName::as_str).collect();
            message.push_str(&format!("; not asked: {}", skipped.join(", ")));
        }
        if !self.runs.is_empty() {
            let recorded: Vec<&str> = self.runs.iter().map(|r| r.channel.as_str()).collect();
            message.push_str(&format!("; recorded: {}", recorded.join(", ")));
        }
        Err(anyhow::anyhow!(message))
    }
}

/// Which channels a run asks about.
#[derive(Debug, Clone, Copy)]
pub enum SyncScope<'a> {
    Every,
    Only(&'a ChannelName),
}

impl MarketplaceSync {
    pub fn new(
        client: MarketClient,
        ledger: Ledger,
        channels: Vec<(ChannelName, ProductCode)>,
        apply: bool,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                ledger,
                channels,
                apply,
                observers: Vec::new(),
            }),
        }
    }

    /// The sync the settings call for: `None` without `[marketplace]` or without a
    /// channel that has a `product_code` (nothing to ask). Reads the AccessKey pair
    /// through `env`; a missing half is an error that names its variable.
    pub fn from_settings(
        settings: &Settings,
        ledger: Ledger,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, MarketError> {
        let Some(marketplace) = &settings.marketplace else {
            return Ok(None);
        };
        let channels = product_channels(settings);
        if channels.is_empty() {
            return Ok(None);
        }
        let client = marketplace.client(env)?;
        Ok(Some(Self::new(client, ledger, channels, marketplace.apply)))
    }

    /// Adds an observer told of every recorded run. Call before cloning.
    pub fn observed_by(mut self, observer: Arc<dyn RunObserver>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("observers are added before the sync is shared")
            .observers
            .push(observer);
        self
    }

    /// The channels with a product code.
    pub fn channels(&self) -> impl Iterator<Item = (&ChannelName, &ProductCode)> {
        self.inner.channels.iter().map(|(c, p)| (c, p))
    }

    pub fn applies(&self) -> bool {
        self.inner.apply
    }

    /// Asks the marketplace about each channel in `scope`, one after the other, and has
    /// the ledger record each answer. A channel that fails is reported and the others
    /// go on, unless the failure concerns every product (then the rest are skipped).
    #[tracing::instrument(skip_all, fields(apply = self.inner.apply))]
    pub async fn try_run_once(&self, scope: SyncScope<'_>) -> SyncOutcome {
        let mut outcome = SyncOutcome::default();
        let channels = self
            .inner
            .channels
            .iter()
            .filter(|(channel, _)| match scope {
                SyncScope::Every => true,
                SyncScope::Only(only) => channel == only,
            });
        for (channel, product_code) in channels {
            let key_refused = outcome
                .failures
                .iter()
                .any(|f| matches!(&f.error, SyncError::Market(e) if e.concerns_every_product()));
            if key_refused {
                outcome.skipped.push(channel.clone());
                continue;
            }
            match self.run_channel(channel, product_code).await {
                Ok(run) => {
                    for observer in &self.inner.observers {
                        observer.run_recorded(&run).await;
                    }
                    outcome.runs.push(run);
                }
                Err(error) => {
                    tracing::warn!(channel = %channel, product_code = %product_code, error = %error, "the marketplace's count was not recorded");
                    outcome.failures.push(SyncFailure {
                        channel: channel.clone(),
                        product_code: product_code.clone(),
                        error,
                    });
                }
            }
        }
        outcome
    }

    async fn run_channel(
        &self,
        channel: &ChannelName,
        product_code: &ProductCode,
    ) -> Result<MarketplaceRun, SyncError> {
        let metering = self
            .inner
            .client
            .describe_api_metering(product_code)
            .await?;
        let run = self
            .inner
            .ledger
            .record_marketplace_count(channel, &figures(&metering), self.inner.apply)
            .await?;
        Ok(run)
    }
}

/// The channels of `settings` that have a product code, in order.
pub fn product_channels(settings: &Settings) -> Vec<(ChannelName, ProductCode)> {
    settings
        .channels
        .iter()
        .filter_map(|c| Some((c.name.clone(), c.product_code.clone()?)))
        .collect()
}

/// The figures the ledger records: sums over the product's rows, and the remaining
/// count as [`super::remaining_from`] reads each row.
pub fn figures(metering: &ProductMetering) -> MarketplaceFigures {
    MarketplaceFigures {
        product_code: metering.product_code.clone(),
        rows: metering.rows.len() as u64,
        total_quota: metering.total_quota(),
        total_usage: metering.total_usage(),
        total_capacity: metering.rows.iter().map(|row| row.total_capacity).sum(),
        remaining: metering.remaining(),
        confirmed: metering.confirmed(),
        request_ids: metering.request_ids.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marketplace::{MeteringRow, PackageKind};

    fn row(quota: i64, usage: i64, capacity: Option<i64>) -> MeteringRow {
        MeteringRow {
            kind: PackageKind::Plan,
            aliyun_pk: None,
            product_code: "cmapi00037415".into(),
            product_name: None,
            total_quota: quota,
            total_usage: usage,
            total_capacity: capacity,
            unit: Some("次".into()),
        }
    }

    fn metering(rows: Vec<MeteringRow>) -> ProductMetering {
        ProductMetering {
            product_code: ProductCode::parse("cmapi00037415").unwrap(),
            rows,
            request_ids: vec!["R1".into(), "R2".into()],
        }
    }

    #[test]
    fn the_figures_are_the_rows_sums_and_the_reading_of_each_row() {
        let figures = figures(&metering(vec![
            row(85, 15, Some(100)),
            row(1000, 1200, Some(1000)),
        ]));
        assert_eq!(figures.rows, 2);
        assert_eq!(
            (
                figures.total_quota,
                figures.total_usage,
                figures.total_capacity
            ),
            (1085, 1215, Some(1100))
        );
        // 85 left of the first, nothing of the overdrawn second.
        assert_eq!(figures.remaining, 85);
        assert!(figures.confirmed);
        assert_eq!(figures.request_ids, ["R1", "R2"]);
    }

    #[test]
    fn a_row_without_a_capacity_leaves_the_sum_of_capacities_unknown() {
        let figures = figures(&metering(vec![row(85, 15, Some(100)), row(5, 0, None)]));
        assert_eq!(figures.total_capacity, None);
        assert_eq!(figures.remaining, 90);
        assert!(!figures.confirmed);
    }

    #[test]
    fn a_failed_run_names_every_channel_it_failed_skipped_or_recorded() {
        let channel = |name: &str| ChannelName::parse(name).unwrap();
        let outcome = SyncOutcome {
            runs: vec![],
            failures: vec![SyncFailure {
                channel: channel("voice_notice"),
                product_code: ProductCode::parse("cmapi00037415").unwrap(),
                error: SyncError::Market(MarketError::WrongSecret {
                    request: super::super::client::RequestId(Some("E1".into())),
                }),
            }],
            skipped: vec![channel("sms_code")],
        };
        let message = outcome.into_result().unwrap_err().to_string();
        assert!(
            message.starts_with("channel voice_notice (product cmapi00037415): the marketplace refused the request signature (SignatureDoesNotMatch)"),
            "{message}"
        );
        assert!(message.ends_with("; not asked: sms_code"), "{message}");
    }
}
