//! `GET /console/usage`: the burn chart, daily units and cost over the last 30 local
//! days, from the ledger's day buckets (30 buckets per channel and client, whatever the
//! history). A client that is not an admin sees its own sends only.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Html;
use chrono::{Days, NaiveDate};
use maud::html;

use crate::console::chart::{bar_chart, Bar};
use crate::console::error::ConsoleError;
use crate::console::i18n::{self, bi};
use crate::console::layout::{self, Section};
use crate::console::viewer::Viewer;
use crate::domain::instant::local_midnight;
use crate::domain::Yuan;
use crate::http::AppState;
use crate::ledger::Span;

/// The chart's days, today included.
pub const DAYS: u64 = 30;

/// One day's charges for sends (reconciliation adjustments are corrections, not use).
#[derive(Debug, Clone, Copy, Default)]
struct Day {
    units: i64,
    cost_micros: i64,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let ledger = state.sends.ledger();
    let timezone = ledger.timezone();
    let today = ledger.now().with_timezone(&timezone).date_naive();
    let first = today - Days::new(DAYS - 1);
    let (from, to) = (
        local_midnight(first, timezone),
        local_midnight(today + Days::new(1), timezone),
    );
    let rows = ledger
        .usage(Span::Day, from, to, None)
        .await
        .map_err(ConsoleError::unavailable)?;
    let mut days: BTreeMap<NaiveDate, Day> = first
        .iter_days()
        .take(DAYS as usize)
        .map(|day| (day, Day::default()))
        .collect();
    let mut by_channel: BTreeMap<String, Day> = BTreeMap::new();
    for row in rows.iter().filter(|row| {
        viewer
            .only_client()
            .is_none_or(|client| row.client == client)
    }) {
        let day = row.bucket_start.with_timezone(&timezone).date_naive();
        for total in [
            days.entry(day).or_default(),
            by_channel.entry(row.channel.clone()).or_default(),
        ] {
            total.units += row.counts.billed_units;
            total.cost_micros += row.counts.cost_micros;
        }
    }
    let unit_bars: Vec<Bar> = days
        .iter()
        .map(|(day, d)| Bar {
            day: *day,
            value: d.units as f64,
            text: format!("{} 单位 units", d.units),
        })
        .collect();
    // Bars are drawn from micro-yuan as a float; every figure shown is the exact Yuan.
    let cost_bars: Vec<Bar> = days
        .iter()
        .map(|(day, d)| Bar {
            day: *day,
            value: d.cost_micros as f64,
            text: i18n::money(Yuan::from_micros(d.cost_micros)),
        })
        .collect();
    let total = days.values().fold(Day::default(), |sum, d| Day {
        units: sum.units + d.units,
        cost_micros: sum.cost_micros + d.cost_micros,
    });
    let body = html! {
        @if let Some(client) = viewer.only_client() {
            p.muted { (bi("只显示本客户端的用量：", "Only this client's usage:")) " " strong { (client) } }
        }
        p.muted {
            (first.format("%Y-%m-%d")) " – " (today.format("%Y-%m-%d")) " · " (timezone.name()) " · "
            (bi("合计", "total")) " " strong #total-units { (total.units) } " " (bi("计费单位", "units")) ", "
            strong #total-cost { (i18n::money(Yuan::from_micros(total.cost_micros))) }
        }
        div.pair {
            section.card #units-chart {
                h2 { (bi("每日计费单位", "Billed units per day")) }
                (bar_chart(&unit_bars, "bar-units", i18n::days, "billed units per day"))
            }
            section.card #cost-chart {
                h2 { (bi("每日费用", "Cost per day")) }
                (bar_chart(&cost_bars, "bar-cost", |v| i18n::money(Yuan::from_micros(v.round() as i64)), "cost per day"))
            }
        }
        @if !by_channel.is_empty() {
            section.card.scroll {
                h2 { (bi("按渠道（30 天）", "By channel (30 days)")) }
                table {
                    thead { tr { th { (bi("渠道", "Channel")) } th.num { (bi("计费单位", "Units")) } th.num { (bi("费用", "Cost")) } } }
                    tbody {
                        @for (channel, d) in &by_channel {
                            tr { td { (channel) } td.num { (d.units) } td.num { (i18n::money(Yuan::from_micros(d.cost_micros))) } }
                        }
                    }
                }
            }
        }
        details.card {
            summary { (bi("每日明细", "Daily figures")) }
            div.scroll {
                table #daily {
                    thead { tr { th { (bi("日期", "Date")) } th.num { (bi("计费单位", "Units")) } th.num { (bi("费用", "Cost")) } } }
                    tbody {
                        @for (day, d) in days.iter().rev() {
                            tr data-day=(day.format("%Y-%m-%d").to_string()) {
                                td { (day.format("%Y-%m-%d")) } td.num { (d.units) }
                                td.num { (i18n::money(Yuan::from_micros(d.cost_micros))) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer, Section::Usage, body))
}
