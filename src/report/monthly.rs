//! The monthly cost report (SPEC §8): what each channel and client used and cost in a
//! month of the configured time zone, what was bought and what expired, the month's
//! total next to the previous month's, and a forecast for the next.
//!
//! Decisions a reader of the report should know:
//! - **Cost** is what the ledger charged: the sends' charge entries, plus reconciliation
//!   adjustments, which appear as lines of their own per channel (they belong to no
//!   client). `total.cost` is both together: the sum of every ledger entry of the month.
//! - **Purchases** are money paid for packages bought in the month (by `purchased_at`);
//!   they are reported beside the cost, not added to it: a package is paid once and
//!   consumed over months.
//! - **Expired units** are units of packages whose expiry fell in the month (up to now)
//!   and were never used; their value is the part of the price those units carried.
//! - **By route and channel**: a route's sends split by the channel that carried them
//!   (a route's attempts that a channel refused or its vendor failed count on that
//!   channel, as they do in the channel section), and the sends that named a channel
//!   themselves as `route: null`. Its rows sum to the total's sends, units and cost
//!   before adjustments, which belong to no route.
//! - **Forecast** for the next month: the month's daily burn (cost and units divided by
//!   the days of the month, or by the days elapsed if the month is still running) times
//!   the days of the next month, per channel. Adjustments are left out of it, since they
//!   correct the past rather than predict use.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::month::Month;
use crate::domain::Yuan;
use crate::ledger::{BucketCounts, Ledger, LedgerError, Span};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MonthlyReport {
    pub month: Month,
    /// Present when the report is one client's own ([`MonthlyReport::build_for_client`]):
    /// its lines only, without purchases, expiries or reconciliation adjustments, which
    /// belong to no client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    pub timezone: String,
    /// The month's first instant and the next month's first instant, as UTC.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// False while the month is still running: figures then cover it up to `generated_at`.
    pub complete: bool,
    pub generated_at: DateTime<Utc>,
    pub currency: &'static str,
    /// Per channel and client.
    pub lines: Vec<UsageLine>,
    /// Reconciliation adjustments, per channel.
    pub adjustments: Vec<AdjustmentLine>,
    pub channels: Vec<ChannelSummary>,
    pub clients: Vec<ClientSummary>,
    /// Per send class (SPEC §11), most important first; sends recorded before classes
    /// existed are `unclassified`.
    pub classes: Vec<ClassSummary>,
    /// Per route and the channel that carried its sends (what each vendor cost a route,
    /// and which one carried it): routes by name, then the sends that named a channel
    /// themselves (`route: null`).
    pub routes: Vec<RouteChannelSummary>,
    pub purchases: Vec<Purchase>,
    pub expired: Vec<Expired>,
    pub total: Total,
    pub previous_month: PreviousMonth,
    pub forecast: Forecast,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageLine {
    pub channel: String,
    pub client: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// Counts, units and cost, with cost as exact yuan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub sends: i64,
    pub sent: i64,
    pub failed: i64,
    pub uncertain: i64,
    pub billed_units: i64,
    pub cost: Yuan,
}

impl From<BucketCounts> for Figures {
    fn from(u: BucketCounts) -> Self {
        Figures {
            sends: u.sends,
            sent: u.sent,
            failed: u.failed,
            uncertain: u.uncertain,
            billed_units: u.billed_units,
            cost: Yuan::from_micros(u.cost_micros),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AdjustmentLine {
    pub channel: String,
    /// Units charged by reconciliation (negative: given back).
    pub units: i64,
    pub cost: Yuan,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChannelSummary {
    pub channel: String,
    #[serde(flatten)]
    pub figures: Figures,
    pub adjusted_units: i64,
    pub adjusted_cost: Yuan,
    /// `cost + adjusted_cost`.
    pub total_cost: Yuan,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClientSummary {
    pub client: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ClassSummary {
    pub class: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RouteChannelSummary {
    /// The route the sends were addressed to; `None` for sends that named the channel.
    pub route: Option<String>,
    pub channel: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The class of sends recorded before classes existed.
pub const UNCLASSIFIED: &str = "unclassified";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Purchase {
    pub package_id: i64,
    pub channel: String,
    pub units: i64,
    pub price: Yuan,
    pub purchased_at: DateTime<Utc>,
    pub order_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Expired {
    pub package_id: i64,
    pub channel: String,
    pub units: i64,
    pub value: Yuan,
    pub expired_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Total {
    #[serde(flatten)]
    pub figures: Figures,
    pub adjusted_units: i64,
    pub adjusted_cost: Yuan,
    /// Every ledger entry of the month: charges plus adjustments.
    pub total_cost: Yuan,
    pub purchased_units: i64,
    pub purchases: Yuan,
    pub expired_units: i64,
    pub expired_value: Yuan,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PreviousMonth {
    pub month: Month,
    pub total_cost: Yuan,
    pub billed_units: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Forecast {
    pub month: Month,
    pub days: u32,
    pub method: &'static str,
    pub billed_units: i64,
    pub cost: Yuan,
    pub channels: Vec<ChannelForecast>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChannelForecast {
    pub channel: String,
    pub billed_units: i64,
    pub cost: Yuan,
}

pub const FORECAST_METHOD: &str = "the month's daily burn (billed units and cost divided by \
     its days, or by the days elapsed while it runs) times the days of the next month";

impl MonthlyReport {
    /// Builds the report of `month` as of `now` from the ledger's day buckets: one row
    /// per day, channel, client, class and route, whatever the number of charges. The
    /// month is cut in the ledger's time zone (`[server] timezone`), the zone its day
    /// buckets are cut in.
    #[tracing::instrument(skip_all, fields(month = %month))]
    pub async fn build(
        ledger: &Ledger,
        month: Month,
        now: DateTime<Utc>,
    ) -> Result<Self, LedgerError> {
        Self::build_scoped(ledger, month, now, None).await
    }

    /// The report of one client's own use: its usage lines, its total, the same month
    /// before and its forecast, with nothing of other clients (what a client that is not
    /// an admin may see).
    #[tracing::instrument(skip_all, fields(month = %month))]
    pub async fn build_for_client(
        ledger: &Ledger,
        month: Month,
        now: DateTime<Utc>,
        client: &str,
    ) -> Result<Self, LedgerError> {
        Self::build_scoped(ledger, month, now, Some(client)).await
    }

    async fn build_scoped(
        ledger: &Ledger,
        month: Month,
        now: DateTime<Utc>,
        client: Option<&str>,
    ) -> Result<Self, LedgerError> {
        let timezone = ledger.timezone();
        let (from, to) = (month.start(timezone), month.end(timezone));
        let mut usage = MonthUsage::read(ledger, from, to.min(now.max(from))).await?;
        let previous = month.previous();
        let mut previous_usage = MonthUsage::read(
            ledger,
            previous.start(timezone),
            previous.end(timezone).min(from),
        )
        .await?;
        if let Some(client) = client {
            usage.keep_only(client);
            previous_usage.keep_only(client);
        }

        let lines: Vec<UsageLine> = usage
            .usage
            .iter()
            .map(|((channel, client), u)| UsageLine {
                channel: channel.clone(),
                client: client.clone(),
                figures: (*u).into(),
            })
            .collect();
        let adjustments: Vec<AdjustmentLine> = usage
            .adjustments
            .iter()
            .map(|(channel, a)| AdjustmentLine {
                channel: channel.clone(),
                units: a.adjusted_units,
                cost: Yuan::from_micros(a.adjusted_cost_micros),
            })
            .collect();

        let mut by_channel: BTreeMap<&str, (BucketCounts, i64, i64)> = BTreeMap::new();
        let mut by_client: BTreeMap<&str, BucketCounts> = BTreeMap::new();
        let mut sum = BucketCounts::default();
        for ((channel, client), u) in &usage.usage {
            by_channel.entry(channel).or_default().0.add(u);
            by_client.entry(client).or_default().add(u);
            sum.add(u);
        }
        let (mut adjusted_units, mut adjusted_micros) = (0, 0);
        for (channel, a) in &usage.adjustments {
            let entry = by_channel.entry(channel).or_default();
            entry.1 += a.adjusted_units;
            entry.2 += a.adjusted_cost_micros;
            adjusted_units += a.adjusted_units;
            adjusted_micros += a.adjusted_cost_micros;
        }
        let channels: Vec<ChannelSummary> = by_channel
            .iter()
            .map(|(channel, (u, units, micros))| ChannelSummary {
                channel: channel.to_string(),
                figures: (*u).into(),
                adjusted_units: *units,
                adjusted_cost: Yuan::from_micros(*micros),
                total_cost: Yuan::from_micros(u.cost_micros + micros),
            })
            .collect();
        let clients = by_client
            .iter()
            .map(|(client, u)| ClientSummary {
                client: client.to_string(),
                figures: (*u).into(),
            })
            .collect();
        let mut by_class: BTreeMap<&str, BucketCounts> = BTreeMap::new();
        for ((_, class), u) in &usage.classes {
            by_class.entry(class).or_default().add(u);
        }
        let rank = |class: &str| match class.parse::<crate::domain::SendClass>() {
            Ok(class) => std::cmp::Reverse(Some(class)),
            Err(_) => std::cmp::Reverse(None),
        };
        let mut classes: Vec<ClassSummary> = by_class
            .iter()
            .map(|(class, u)| ClassSummary {
                class: if class.is_empty() {
                    UNCLASSIFIED.to_owned()
                } else {
                    class.to_string()
                },
                figures: (*u).into(),
            })
            .collect();
        classes.sort_by_key(|c| rank(&c.class));
        let routes = route_summaries(&usage.routes);

        // Purchases and expiries are the account's, not a client's.
        let everyone = client.is_none();
        let purchases: Vec<Purchase> = ledger
            .purchases_between(from, to)
            .await?
            .into_iter()
            .filter(|_| everyone)
            .map(|p| Purchase {
                package_id: p.id,
                channel: p.channel,
                units: p.units,
                price: p.price,
                purchased_at: p.purchased_at,
                order_id: p.order_id,
            })
            .collect();
        let expired: Vec<Expired> = ledger
            .expired_between(from, to.min(now))
            .await?
            .into_iter()
            .filter(|_| everyone)
            .map(|e| Expired {
                package_id: e.package_id,
                channel: e.channel,
                units: e.units,
                value: e.value,
                expired_at: e.expired_at,
            })
            .collect();

        let complete = now >= to;
        let days_measured = if complete {
            month.days()
        } else {
            // Days begun so far, at least one.
            ((now.max(from) - from).num_seconds().max(1) as f64 / 86_400.0).ceil() as u32
        };
        let next = month.next();
        let project = |value: i64| -> i64 {
            // Round half away from zero, in integers: cost stays exact to the micro-yuan.
            let numerator = i128::from(value) * i128::from(next.days());
            let denominator = i128::from(days_measured.max(1));
            let rounded = (2 * numerator + denominator * numerator.signum()) / (2 * denominator);
            i64::try_from(rounded).unwrap_or(i64::MAX)
        };
        let forecast_channels: Vec<ChannelForecast> = by_channel
            .iter()
            .map(|(channel, (u, _, _))| ChannelForecast {
                channel: channel.to_string(),
                billed_units: project(u.billed_units),
                cost: Yuan::from_micros(project(u.cost_micros)),
            })
            .collect();
        let forecast = Forecast {
            month: next,
            days: next.days(),
            method: FORECAST_METHOD,
            billed_units: forecast_channels.iter().map(|c| c.billed_units).sum(),
            cost: forecast_channels.iter().map(|c| c.cost).sum(),
            channels: forecast_channels,
        };

        let previous_total = previous_usage.total();
        let total = Total {
            figures: sum.into(),
            adjusted_units,
            adjusted_cost: Yuan::from_micros(adjusted_micros),
            total_cost: Yuan::from_micros(sum.cost_micros + adjusted_micros),
            purchased_units: purchases.iter().map(|p| p.units).sum(),
            purchases: purchases.iter().map(|p| p.price).sum(),
            expired_units: expired.iter().map(|e| e.units).sum(),
            expired_value: expired.iter().map(|e| e.value).sum(),
        };
        Ok(MonthlyReport {
            month,
            client: client.map(str::to_owned),
            timezone: timezone.name().to_owned(),
            from,
            to,
            complete,
            generated_at: now,
            currency: "CNY",
            lines,
            adjustments,
            channels,
            clients,
            classes,
            routes,
            purchases,
            expired,
            total,
            previous_month: PreviousMonth {
                month: previous,
                total_cost: Yuan::from_micros(
                    previous_total.cost_micros + previous_total.adjusted_cost_micros,
                ),
                billed_units: previous_total.billed_units + previous_total.adjusted_units,
            },
            forecast,
        })
    }
}

/// The route-and-channel section from the sends by (client, route, channel): routes by
/// name, then the sends that named a channel themselves (the bucket's route `''`).
fn route_summaries(
    by_client: &BTreeMap<(String, String, String), BucketCounts>,
) -> Vec<RouteChannelSummary> {
    // `(false, route)` sorts every named route before `(true, "")`, the direct sends.
    let mut by_route: BTreeMap<(bool, &str, &str), BucketCounts> = BTreeMap::new();
    for ((_, route, channel), u) in by_client {
        by_route
            .entry((route.is_empty(), route, channel))
            .or_default()
            .add(u);
    }
    by_route
        .into_iter()
        .map(|((direct, route, channel), u)| RouteChannelSummary {
            route: (!direct).then(|| route.to_owned()),
            channel: channel.to_owned(),
            figures: u.into(),
        })
        .collect()
}

/// A range's usage from the day buckets: sends by (channel, client), by (client,
/// class) and by (client, route, channel), adjustments by channel (they belong to no
/// client).
#[derive(Default)]
struct MonthUsage {
    usage: BTreeMap<(String, String), BucketCounts>,
    classes: BTreeMap<(String, String), BucketCounts>,
    routes: BTreeMap<(String, String, String), BucketCounts>,
    adjustments: BTreeMap<String, BucketCounts>,
}

impl MonthUsage {
    async fn read(
        ledger: &Ledger,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Self, LedgerError> {
        let mut month = MonthUsage::default();
        if to <= from {
            return Ok(month);
        }
        for row in ledger.usage(Span::Day, from, to, None).await? {
            let mut sends = row.counts;
            let adjustment = BucketCounts {
                adjusted_units: sends.adjusted_units,
                adjusted_cost_micros: sends.adjusted_cost_micros,
                ..BucketCounts::default()
            };
            sends.adjusted_units = 0;
            sends.adjusted_cost_micros = 0;
            if sends != BucketCounts::default() {
                month
                    .usage
                    .entry((row.channel.clone(), row.client.clone()))
                    .or_default()
                    .add(&sends);
                month
                    .classes
                    .entry((row.client.clone(), row.class.clone()))
                    .or_default()
                    .add(&sends);
                month
                    .routes
                    .entry((row.client.clone(), row.route.clone(), row.channel.clone()))
                    .or_default()
                    .add(&sends);
            }
            if adjustment != BucketCounts::default() {
                month
                    .adjustments
                    .entry(row.channel)
                    .or_default()
                    .add(&adjustment);
            }
        }
        Ok(month)
    }

    /// Only `client`'s sends; reconciliation adjustments belong to no client.
    fn keep_only(&mut self, client: &str) {
        self.usage.retain(|(_, c), _| c == client);
        self.classes.retain(|(c, _), _| c == client);
        self.routes.retain(|(c, _, _), _| c == client);
        self.adjustments.clear();
    }

    fn total(&self) -> BucketCounts {
        let mut total = BucketCounts::default();
        for counts in self.usage.values().chain(self.adjustments.values()) {
            total.add(counts);
        }
        total
    }
}
