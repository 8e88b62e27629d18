//! The ledger's read interface: what alerts, metrics, reports, the HTTP handlers and
//! the console may know of the ledger, and the only place outside the writers that
//! reads its tables (with `marketplace_counts.rs`, whose read methods of the
//! marketplace's runs belong to that concept's own file).
//!
//! Every read here costs the same whatever the number of charges ever made: it reads the
//! running totals (`channel_totals`, one row per channel), the live packages (a
//! channel's current purchases), and usage buckets over a bounded span of time (at most
//! 7 × 24 hour buckets for a burn rate; one day bucket per day of a report), and each
//! channel's latest marketplace run (`marketplace_counts.rs`, one index seek per channel).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

use super::aggregates::{BucketCounts, Span};
use super::packages::PACKAGE_COLUMNS;
use super::quota::{TotalsRow, BURN_WINDOW_DAYS};
use super::{Ledger, LedgerError, MarketplaceRun, Package, QuotaView};
use crate::domain::money::cost_of_units;
use crate::domain::{ChannelName, Yuan};
use crate::store::{from_micros, to_micros};

/// What a channel's sends have been charged since the ledger began: only ever grows.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelTotals {
    pub channel: String,
    pub billed_units: i64,
    pub cost: Yuan,
}

/// One bucket of usage: a channel's sends of one client, class and route in one local
/// hour or day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRow {
    pub channel: String,
    pub bucket_start: DateTime<Utc>,
    /// `''` for reconciliation adjustments, which belong to no client.
    pub client: String,
    /// `''` for adjustments and for sends recorded before classes existed.
    pub class: String,
    /// `''` when the send named the channel itself.
    pub route: String,
    #[serde(flatten)]
    pub counts: BucketCounts,
}

/// What a channel's alert rules are decided on, read at one moment of the ledger's
/// (see [`Ledger::channel_reading_on`]).
#[derive(Debug, Clone)]
pub struct ChannelReading {
    pub quota: QuotaView,
    /// Every package the channel ever had, newest purchase first.
    pub packages: Vec<Package>,
    /// Whether the vendor's latest word on the channel's AppCode was a refusal.
    pub auth_failing: bool,
    /// The channel's latest marketplace run, if it has one.
    pub marketplace: Option<MarketplaceRun>,
}

/// A package whose expiry fell in a range, with the units it left unused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiredPackage {
    pub package_id: i64,
    pub channel: String,
    pub units: i64,
    /// What those units carried of the package's price, by the ledger's own pricing.
    pub value: Yuan,
    pub expired_at: DateTime<Utc>,
}

impl Ledger {
    /// The quota view of one channel.
    pub async fn quota(&self, channel: &ChannelName) -> Result<QuotaView, LedgerError> {
        let mut views = self.quotas(std::slice::from_ref(channel)).await?;
        Ok(views.remove(0))
    }

    /// The quota views of `channels`, in their order, in a fixed number of statements.
    pub async fn quotas(&self, channels: &[ChannelName]) -> Result<Vec<QuotaView>, LedgerError> {
        let mut conn = self.db().pool().acquire().await?;
        Ok(self.quotas_on(&mut conn, channels).await?.0)
    }

    /// One channel's quota view, packages, vendor standing and latest marketplace run,
    /// read on `conn`: on a transaction's connection, every figure is read after the
    /// locks that transaction holds were taken. The alert engine decides a transition on
    /// this reading with the alert's state row locked, so that no evaluation acts on
    /// figures older than the last change it could be racing (SPEC §7: one notification
    /// per transition). Only reads: the transaction stays the caller's.
    pub async fn channel_reading_on(
        &self,
        conn: &mut AnyConnection,
        channel: &ChannelName,
    ) -> Result<ChannelReading, LedgerError> {
        let (mut quotas, totals, mut runs) =
            self.quotas_on(conn, std::slice::from_ref(channel)).await?;
        let packages = self.list_packages_on(conn, Some(channel)).await?;
        Ok(ChannelReading {
            quota: quotas.remove(0),
            packages,
            auth_failing: totals
                .get(channel.as_str())
                .is_some_and(|row| row.auth_failing),
            marketplace: runs.pop(),
        })
    }

    /// The quota views of `channels`, with the totals and marketplace runs they were
    /// computed from, read on `conn`.
    async fn quotas_on(
        &self,
        conn: &mut AnyConnection,
        channels: &[ChannelName],
    ) -> Result<
        (
            Vec<QuotaView>,
            BTreeMap<String, TotalsRow>,
            Vec<MarketplaceRun>,
        ),
        LedgerError,
    > {
        let now = self.now();
        let totals = self.totals_rows(conn).await?;
        let live = self.live_packages_on(conn, None).await?;
        let since = now - Duration::days(BURN_WINDOW_DAYS);
        let burned = self.billed_since(conn, since).await?;
        let runs = self.latest_marketplace_runs_on(conn, channels).await?;
        let mut views = Vec::with_capacity(channels.len());
        for channel in channels {
            let name = channel.as_str();
            let live: Vec<Package> = live.iter().filter(|p| p.channel == name).cloned().collect();
            let last_run_out = if live.is_empty() {
                self.last_package_units(conn, channel).await?
            } else {
                None
            };
            let row = totals.get(name).cloned().unwrap_or_default();
            let view = QuotaView::compute(
                name,
                &row,
                &live,
                last_run_out,
                burned.get(name).copied().unwrap_or(0),
                now,
            )
            .with_reserve(&self.reserve_rule(channel));
            views.push(match runs.iter().find(|run| run.channel == name) {
                Some(run) => view.with_marketplace_run(run),
                None => view,
            });
        }
        Ok((views, totals, runs))
    }

    /// Whether the vendor's latest word on the channel's AppCode was a refusal.
    pub async fn auth_failing(&self, channel: &ChannelName) -> Result<bool, LedgerError> {
        let mut conn = self.db().pool().acquire().await?;
        Ok(self
            .totals_rows(&mut conn)
            .await?
            .get(channel.as_str())
            .is_some_and(|row| row.auth_failing))
    }

    /// Every channel's charges since the ledger began (channels that never charged are
    /// absent).
    pub async fn totals(&self) -> Result<Vec<ChannelTotals>, LedgerError> {
        let mut conn = self.db().pool().acquire().await?;
        Ok(self
            .totals_rows(&mut conn)
            .await?
            .into_iter()
            .filter(|(_, row)| row.billed_units != 0 || row.cost_micros != 0)
            .map(|(channel, row)| ChannelTotals {
                channel,
                billed_units: row.billed_units,
                cost: Yuan::from_micros(row.cost_micros),
            })
            .collect())
    }

    /// The packages that can serve sends now (not expired, not used up), of one channel
    /// or of all, in serving order.
    pub async fn live_packages(
        &self,
        channel: Option<&ChannelName>,
    ) -> Result<Vec<Package>, LedgerError> {
        let mut conn = self.db().pool().acquire().await?;
        self.live_packages_on(&mut conn, channel).await
    }

    async fn live_packages_on(
        &self,
        conn: &mut AnyConnection,
        channel: Option<&ChannelName>,
    ) -> Result<Vec<Package>, LedgerError> {
        let now = self.now();
        let rows = sqlx::query(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages WHERE ($1 = '' OR channel = $1) \
             AND charged < units AND (expires_at IS NULL OR expires_at > $2) \
             ORDER BY channel, expires_at IS NULL, expires_at, purchased_at, id"
        ))
        .bind(channel.map(ChannelName::as_str).unwrap_or(""))
        .bind(to_micros(now))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| Package::from_row(row, now).map_err(LedgerError::from))
            .collect()
    }

    /// Usage buckets of `span` starting in `[from, to)`, optionally of one channel. With
    /// day buckets and `from`/`to` at local midnights (a month of the configured zone)
    /// the figures are exact: every send counts in the day of its settlement.
    pub async fn usage(
        &self,
        span: Span,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        channel: Option<&ChannelName>,
    ) -> Result<Vec<UsageRow>, LedgerError> {
        let rows = sqlx::query(
            "SELECT channel, bucket_start, client, class, route, sends, sent, failed, \
             uncertain, billed_units, cost_micros, adjusted_units, adjusted_cost_micros \
             FROM usage_buckets WHERE span = $1 AND bucket_start >= $2 AND bucket_start < $3 \
             AND ($4 = '' OR channel = $4) \
             ORDER BY bucket_start, channel, client, class, route",
        )
        .bind(span.as_str())
        .bind(to_micros(from))
        .bind(to_micros(to))
        .bind(channel.map(ChannelName::as_str).unwrap_or(""))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageRow {
                    channel: row.try_get("channel")?,
                    bucket_start: from_micros(row.try_get("bucket_start")?),
                    client: row.try_get("client")?,
                    class: row.try_get("class")?,
                    route: row.try_get("route")?,
                    counts: BucketCounts {
                        sends: row.try_get("sends")?,
                        sent: row.try_get("sent")?,
                        failed: row.try_get("failed")?,
                        uncertain: row.try_get("uncertain")?,
                        billed_units: row.try_get("billed_units")?,
                        cost_micros: row.try_get("cost_micros")?,
                        adjusted_units: row.try_get("adjusted_units")?,
                        adjusted_cost_micros: row.try_get("adjusted_cost_micros")?,
                    },
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(LedgerError::from)
    }

    /// A channel's settled sends per local hour in `[from, to)`, oldest first; hours
    /// without sends are absent.
    pub async fn sends_per_hour(
        &self,
        channel: &ChannelName,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, i64)>, LedgerError> {
        let mut conn = self.db().pool().acquire().await?;
        self.sends_per_hour_on(&mut conn, channel, from, to).await
    }

    /// [`Ledger::sends_per_hour`], read on `conn` (the alert engine's locked reading).
    pub async fn sends_per_hour_on(
        &self,
        conn: &mut AnyConnection,
        channel: &ChannelName,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(DateTime<Utc>, i64)>, LedgerError> {
        let rows = sqlx::query(
            "SELECT bucket_start, CAST(SUM(sends) AS BIGINT) AS sends FROM usage_buckets \
             WHERE span = 'hour' AND channel = $1 AND bucket_start >= $2 AND bucket_start < $3 \
             GROUP BY bucket_start ORDER BY bucket_start",
        )
        .bind(channel.as_str())
        .bind(to_micros(from))
        .bind(to_micros(to))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    from_micros(row.try_get("bucket_start")?),
                    row.try_get::<i64, _>("sends")?,
                ))
            })
            .filter(|hour: &Result<(DateTime<Utc>, i64), sqlx::Error>| {
                hour.as_ref().map_or(true, |(_, sends)| *sends > 0)
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(LedgerError::from)
    }

    /// Packages purchased in `[from, to)`, oldest first.
    pub async fn purchases_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Package>, LedgerError> {
        let now = self.now();
        let rows = sqlx::query(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages WHERE purchased_at >= $1 \
             AND purchased_at < $2 ORDER BY purchased_at, id"
        ))
        .bind(to_micros(from))
        .bind(to_micros(to))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|row| Package::from_row(row, now).map_err(LedgerError::from))
            .collect()
    }

    /// Packages whose expiry fell in `[from, to)` with units left unused.
    pub async fn expired_between(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ExpiredPackage>, LedgerError> {
        if to <= from {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT id, channel, units, price_micros, taken, expires_at FROM packages \
             WHERE expires_at >= $1 AND expires_at < $2 AND taken < units \
             ORDER BY expires_at, id",
        )
        .bind(to_micros(from))
        .bind(to_micros(to))
        .fetch_all(self.db().pool())
        .await?;
        rows.iter()
            .map(|row| {
                let units: i64 = row.try_get("units")?;
                let taken: i64 = row.try_get("taken")?;
                let price = Yuan::from_micros(row.try_get("price_micros")?);
                Ok(ExpiredPackage {
                    package_id: row.try_get("id")?,
                    channel: row.try_get("channel")?,
                    units: units - taken,
                    // The units after `taken` would have cost this, by the ledger's own
                    // pricing.
                    value: cost_of_units(price, units, taken, units - taken),
                    expired_at: from_micros(row.try_get("expires_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(LedgerError::from)
    }

    async fn totals_rows(
        &self,
        conn: &mut AnyConnection,
    ) -> Result<BTreeMap<String, TotalsRow>, LedgerError> {
        let rows = sqlx::query(
            "SELECT channel, billed_units, cost_micros, purchased_units, reserved_units, \
             unmetered_units, reconciled_units, reconciled_cost_micros, auth_failing, \
             vendor_remaining, vendor_remaining_at, first_purchased_at FROM channel_totals",
        )
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("channel")?,
                    TotalsRow {
                        billed_units: row.try_get("billed_units")?,
                        cost_micros: row.try_get("cost_micros")?,
                        purchased_units: row.try_get("purchased_units")?,
                        reserved_units: row.try_get("reserved_units")?,
                        unmetered_units: row.try_get("unmetered_units")?,
                        reconciled_units: row.try_get("reconciled_units")?,
                        reconciled_cost_micros: row.try_get("reconciled_cost_micros")?,
                        auth_failing: row.try_get::<i64, _>("auth_failing")? != 0,
                        vendor_remaining: row.try_get("vendor_remaining")?,
                        vendor_remaining_at: row
                            .try_get::<Option<i64>, _>("vendor_remaining_at")?
                            .map(from_micros),
                        first_purchased_at: row
                            .try_get::<Option<i64>, _>("first_purchased_at")?
                            .map(from_micros),
                    },
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(LedgerError::from)
    }

    /// Units charged for sends per channel in the hour buckets that start at or after
    /// `since` (the partial hour at the window's start is left out).
    async fn billed_since(
        &self,
        conn: &mut AnyConnection,
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<String, i64>, LedgerError> {
        let rows = sqlx::query(
            "SELECT channel, CAST(SUM(billed_units) AS BIGINT) AS billed FROM usage_buckets \
             WHERE span = 'hour' AND bucket_start >= $1 GROUP BY channel",
        )
        .bind(to_micros(since))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("channel")?, row.try_get("billed")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(LedgerError::from)
    }

    /// The size of the channel's latest purchase: with nothing live, the package that
    /// ran out last.
    async fn last_package_units(
        &self,
        conn: &mut AnyConnection,
        channel: &ChannelName,
    ) -> Result<Option<i64>, LedgerError> {
        let row = sqlx::query(
            "SELECT units FROM packages WHERE channel = $1 \
             ORDER BY purchased_at DESC, id DESC LIMIT 1",
        )
        .bind(channel.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.map(|row| row.try_get("units")).transpose()?)
    }
}
