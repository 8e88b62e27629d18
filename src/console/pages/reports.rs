//! `GET /console/reports`: this month's and last month's report (cost per channel, client
//! and route, purchases, expiries, the forecast), and `GET /console/reports/download`, the
//! same report as the API's CSV or JSON. A client that is not an admin gets its own
//! report: its lines only.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use chrono_tz::Tz;
use maud::{html, Markup};
use serde::Deserialize;

use crate::console::error::ConsoleError;
use crate::console::i18n::{self, bi};
use crate::console::layout::{self, Section};
use crate::console::viewer::Viewer;
use crate::http::AppState;
use crate::report::{to_csv, Month, MonthlyReport, DIRECT_LABEL};

#[derive(Debug, Deserialize)]
pub struct DownloadQuery {
    month: Option<String>,
    format: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let ledger = state.sends.ledger();
    let now = ledger.now();
    let timezone = state.settings.server.timezone;
    let this_month = Month::containing(now, timezone);
    let current = build(&state, &viewer, this_month).await?;
    let previous = build(&state, &viewer, this_month.previous()).await?;
    let body = html! {
        @if let Some(client) = viewer.only_client() {
            p.muted { (bi("只显示本客户端的用量：", "Only this client's usage:")) " " strong { (client) } }
        }
        (month_card(&current, ("本月", "This month"), &viewer, timezone))
        (month_card(&previous, ("上月", "Last month"), &viewer, timezone))
        p.muted {
            (bi(
                "费用为账本实际扣费（含对账调整）；购买金额单列，不计入费用。下月预测按本月日均用量乘以下月天数。",
                "Cost is what the ledger charged (with reconciliation adjustments); purchases are listed apart. The forecast is the month's daily burn times the next month's days."
            ))
        }
    };
    Ok(layout::page(&viewer, Section::Reports, body))
}

/// `GET /console/reports/download?month=YYYY-MM&format=csv|json`.
pub async fn download(
    State(state): State<AppState>,
    viewer: Viewer,
    query: Result<Query<DownloadQuery>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    let Query(query) = query.map_err(|err| ConsoleError::BadRequest(err.body_text()))?;
    let month = Month::parse(query.month.as_deref().unwrap_or(""))
        .map_err(|err| ConsoleError::BadRequest(err.to_string()))?;
    let report = build(&state, &viewer, month).await?;
    let scope = viewer
        .only_client()
        .map(|client| format!("-{client}"))
        .unwrap_or_default();
    let (content_type, extension, body) = match query.format.as_deref() {
        Some("csv") => ("text/csv; charset=utf-8", "csv", to_csv(&report)),
        Some("json") => (
            "application/json",
            "json",
            serde_json::to_string_pretty(&report).map_err(ConsoleError::unavailable)?,
        ),
        _ => {
            return Err(ConsoleError::BadRequest(
                "format must be csv or json".to_owned(),
            ))
        }
    };
    // Client names are configured, but only [A-Za-z0-9_-] go into a file name.
    let filename: String = format!("tollgate-report-{month}{scope}.{extension}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// The report `viewer` may see: everyone's for an admin, its own for another client.
async fn build(
    state: &AppState,
    viewer: &Viewer,
    month: Month,
) -> Result<MonthlyReport, ConsoleError> {
    let ledger = state.sends.ledger();
    let now = ledger.now();
    match viewer.only_client() {
        None => MonthlyReport::build(ledger, month, now).await,
        Some(client) => MonthlyReport::build_for_client(ledger, month, now, client).await,
    }
    .map_err(ConsoleError::unavailable)
}

fn month_card(
    report: &MonthlyReport,
    title: (&str, &str),
    viewer: &Viewer,
    timezone: Tz,
) -> Markup {
    let month = report.month.to_string();
    let total = &report.total;
    html! {
        section.card.report data-month=(month) {
            h2 {
                (bi(title.0, title.1)) " " (month)
                @if !report.complete {
                    " " span.muted { "(" (bi("截至", "as of")) " " (i18n::time(report.generated_at, timezone)) ")" }
                }
            }
            div.row {
                div { div.muted { (bi("费用", "Cost")) } div.big.total-cost { (i18n::money(total.total_cost)) } }
                div { div.muted { (bi("计费单位", "Billed units")) } div.big { (total.figures.billed_units + total.adjusted_units) } }
                div { div.muted { (bi("发送", "Sends")) } div.big { (total.figures.sends) } }
                div {
                    div.muted { (bi("上月", "Month before")) " " (report.previous_month.month.to_string()) }
                    div { (i18n::money(report.previous_month.total_cost)) }
                }
            }
            p {
                a.download href=(format!("/console/reports/download?month={month}&format=csv")) download { (bi("下载 CSV", "Download CSV")) }
                " · "
                a href=(format!("/console/reports/download?month={month}&format=json")) download { (bi("下载 JSON", "Download JSON")) }
            }
            h3 { (bi("按渠道", "By channel")) }
            @if report.channels.is_empty() {
                p.muted { (bi("没有用量。", "No usage.")) }
            } @else {
                div.scroll { table.by-channel {
                    thead { tr {
                        th { (bi("渠道", "Channel")) } th.num { (bi("发送", "Sends")) }
                        th.num { (bi("成功", "Sent")) } th.num { (bi("失败", "Failed")) }
                        th.num { (bi("计费单位", "Units")) } th.num { (bi("费用", "Cost")) }
                    } }
                    tbody {
                        @for c in &report.channels {
                            tr data-channel=(c.channel) {
                                td { (c.channel) } td.num { (c.figures.sends) } td.num { (c.figures.sent) }
                                td.num { (c.figures.failed) } td.num { (c.figures.billed_units + c.adjusted_units) }
                                td.num { (i18n::money(c.total_cost)) }
                            }
                        }
                    }
                } }
            }
            @if !report.clients.is_empty() {
                h3 { (bi("按客户端", "By client")) }
                div.scroll { table.by-client {
                    thead { tr {
                        th { (bi("客户端", "Client")) } th.num { (bi("发送", "Sends")) }
                        th.num { (bi("计费单位", "Units")) } th.num { (bi("费用", "Cost")) }
                    } }
                    tbody {
                        @for c in &report.clients {
                            tr data-client=(c.client) {
                                td { (c.client) } td.num { (c.figures.sends) }
                                td.num { (c.figures.billed_units) } td.num { (i18n::money(c.figures.cost)) }
                            }
                        }
                    }
                } }
            }
            // Only where a route carried traffic: without routes every row would repeat
            // the channel table above.
            @if report.routes.iter().any(|r| r.route.is_some()) {
                h3 { (bi("按路由与渠道", "By route and channel")) }
                div.scroll { table.by-route {
                    thead { tr {
                        th { (bi("路由", "Route")) } th { (bi("渠道", "Channel")) }
                        th.num { (bi("发送", "Sends")) } th.num { (bi("成功", "Sent")) }
                        th.num { (bi("计费单位", "Units")) } th.num { (bi("费用", "Cost")) }
                    } }
                    tbody {
                        @for r in &report.routes {
                            tr data-route=(r.route.as_deref().unwrap_or("")) data-channel=(r.channel) {
                                td { (r.route.as_deref().unwrap_or(DIRECT_LABEL)) } td { (r.channel) }
                                td.num { (r.figures.sends) } td.num { (r.figures.sent) }
                                td.num { (r.figures.billed_units) } td.num { (i18n::money(r.figures.cost)) }
                            }
                        }
                    }
                } }
            }
            @if viewer.admin && !report.purchases.is_empty() {
                h3 { (bi("本月购买", "Bought this month")) }
                div.scroll { table {
                    thead { tr {
                        th { (bi("日期", "Date")) } th { (bi("渠道", "Channel")) }
                        th.num { (bi("数量", "Units")) } th.num { (bi("价格", "Price")) }
                    } }
                    tbody {
                        @for p in &report.purchases {
                            tr {
                                td { (i18n::date(p.purchased_at, timezone)) } td { (p.channel) }
                                td.num { (p.units) } td.num { (i18n::money(p.price)) }
                            }
                        }
                    }
                } }
            }
            @if viewer.admin && !report.expired.is_empty() {
                h3 { (bi("过期作废", "Expired unused")) }
                div.scroll { table {
                    thead { tr {
                        th { (bi("日期", "Date")) } th { (bi("渠道", "Channel")) }
                        th.num { (bi("数量", "Units")) } th.num { (bi("价值", "Value")) }
                    } }
                    tbody {
                        @for e in &report.expired {
                            tr {
                                td { (i18n::date(e.expired_at, timezone)) } td { (e.channel) }
                                td.num { (e.units) } td.num { (i18n::money(e.value)) }
                            }
                        }
                    }
                } }
            }
            // A finished month's forecast is of the month now running, which its own
            // report shows as it happens: only the running month's is worth reading.
            @if !report.complete {
                h3 { (bi("下月预测", "Forecast for")) " " (report.forecast.month.to_string()) }
                p.forecast {
                    (i18n::money(report.forecast.cost)) " · " (report.forecast.billed_units) " " (bi("计费单位", "units"))
                    @for c in &report.forecast.channels {
                        br; span.muted { (c.channel) ": " (i18n::money(c.cost)) " · " (c.billed_units) }
                    }
                }
            }
        }
    }
}
