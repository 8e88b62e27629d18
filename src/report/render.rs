//! The monthly report as people and programs read it: tables, CSV, HTML (the email
//! body). JSON is the report's `Serialize` form.
//!
//! What people read (the CLI's tables, the email's text and HTML parts) is zh-CN first
//! with the English beside it, dates and times in the report's time zone, and units
//! named as each channel counts them (条 or 次). The table and the HTML are two layouts
//! of one document, so the email's two parts carry the same figures. CSV and JSON are
//! for programs: English keys, UTC instants.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use tollgate_notify::{local_time, unit_zh, RenderedReport};

use super::monthly::{Figures, MonthlyReport};
use crate::config::ChannelSettings;
use crate::domain::ChannelKind;

/// The CSV header. Every row has these columns; `section` says what the row is:
/// `usage` (a channel and client), `adjustment` (a channel's reconciliations),
/// `channel`, `client` and `class` (subtotals; `class` rows name theirs in the `class`
/// column), `route` (a route's sends carried by one channel, the route in the `route`
/// column, empty for the sends that named the channel themselves), `purchase`,
/// `expired`, `total`,
/// `previous_month_total` and `forecast_next_month`. For `purchase` rows `units` and
/// `cost` are the package's units and price; for `expired` rows, the units lost and
/// their value.
pub const CSV_HEADER: [&str; 12] = [
    "section",
    "month",
    "channel",
    "client",
    "sends",
    "sent",
    "failed",
    "uncertain",
    "units",
    "cost",
    "class",
    "route",
];

pub fn to_csv(report: &MonthlyReport) -> String {
    let month = report.month.to_string();
    let mut out = String::new();
    let mut line = |fields: Vec<String>| {
        out.push_str(&csv_line(&fields));
        out.push_str("\r\n");
    };
    line(CSV_HEADER.iter().map(|h| h.to_string()).collect());
    let figures = |section: &str, month: &str, channel: &str, client: &str, f: &Figures| {
        vec![
            section.to_owned(),
            month.to_owned(),
            channel.to_owned(),
            client.to_owned(),
            f.sends.to_string(),
            f.sent.to_string(),
            f.failed.to_string(),
            f.uncertain.to_string(),
            f.billed_units.to_string(),
            f.cost.to_string(),
            String::new(),
            String::new(),
        ]
    };
    let amount = |section: &str, month: &str, channel: &str, units: i64, cost: String| {
        vec![
            section.to_owned(),
            month.to_owned(),
            channel.to_owned(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            units.to_string(),
            cost,
            String::new(),
            String::new(),
        ]
    };
    for l in &report.lines {
        line(figures("usage", &month, &l.channel, &l.client, &l.figures));
    }
    for a in &report.adjustments {
        line(amount(
            "adjustment",
            &month,
            &a.channel,
            a.units,
            a.cost.to_string(),
        ));
    }
    for c in &report.channels {
        let mut row = figures("channel", &month, &c.channel, "", &c.figures);
        row[8] = (c.figures.billed_units + c.adjusted_units).to_string();
        row[9] = c.total_cost.to_string();
        line(row);
    }
    for c in &report.clients {
        line(figures("client", &month, "", &c.client, &c.figures));
    }
    for c in &report.classes {
        let mut row = figures("class", &month, "", "", &c.figures);
        row[10] = c.class.clone();
        line(row);
    }
    for r in &report.routes {
        let mut row = figures("route", &month, &r.channel, "", &r.figures);
        row[11] = r.route.clone().unwrap_or_default();
        line(row);
    }
    for p in &report.purchases {
        line(amount(
            "purchase",
            &month,
            &p.channel,
            p.units,
            p.price.to_string(),
        ));
    }
    for e in &report.expired {
        line(amount(
            "expired",
            &month,
            &e.channel,
            e.units,
            e.value.to_string(),
        ));
    }
    let mut total = figures("total", &month, "", "", &report.total.figures);
    total[8] = (report.total.figures.billed_units + report.total.adjusted_units).to_string();
    total[9] = report.total.total_cost.to_string();
    line(total);
    let previous = report.previous_month.month.to_string();
    line(amount(
        "previous_month_total",
        &previous,
        "",
        report.previous_month.billed_units,
        report.previous_month.total_cost.to_string(),
    ));
    let next = report.forecast.month.to_string();
    for c in &report.forecast.channels {
        line(amount(
            "forecast_next_month",
            &next,
            &c.channel,
            c.billed_units,
            c.cost.to_string(),
        ));
    }
    out
}

/// What rendering for people needs besides the figures: the unit each channel counts in
/// (条 for SMS, 次 for voice calls). A channel the report names but the configuration no
/// longer has is shown without a unit.
#[derive(Debug, Clone, Default)]
pub struct ReportContext {
    units: BTreeMap<String, &'static str>,
}

impl ReportContext {
    pub fn new<'a>(channels: impl IntoIterator<Item = (&'a str, ChannelKind)>) -> Self {
        Self {
            units: channels
                .into_iter()
                .map(|(name, kind)| (name.to_owned(), unit_zh(Some(kind.as_str()))))
                .collect(),
        }
    }

    pub fn from_channels(channels: &[ChannelSettings]) -> Self {
        Self::new(channels.iter().map(|c| (c.name.as_str(), c.kind)))
    }

    /// `1200 条`, or `1200` for a channel of unknown kind.
    fn units(&self, channel: &str, units: i64) -> String {
        match self.units.get(channel) {
            Some(unit) => format!("{units} {unit}"),
            None => units.to_string(),
        }
    }
}

/// The report as the email carries it: the event's one-line summary, the text part
/// (the same tables as `tollgate report monthly`) and the HTML part.
pub fn to_email(report: &MonthlyReport, context: &ReportContext) -> RenderedReport {
    RenderedReport {
        summary: format!(
            "tollgate {} 月度费用报告：合计 ¥{}",
            report.month, report.total.total_cost
        ),
        // Mail is read at any width: the text part's tables are never wrapped.
        text: tables(report, context, ContentArrangement::Disabled),
        html: to_html(report, context),
    }
}

/// The report as people read it, before it is laid out as text or HTML: both layouts
/// render this one document, so they carry the same figures.
struct Document {
    title: String,
    /// Label, English label, value.
    lines: Vec<(&'static str, &'static str, String)>,
    sections: Vec<Section>,
    note: String,
}

struct Section {
    title: &'static str,
    title_en: &'static str,
    /// zh-CN, English.
    headers: Vec<(&'static str, &'static str)>,
    rows: Vec<Vec<String>>,
}

const USAGE_HEADERS: [(&str, &str); 6] = [
    ("发送", "sends"),
    ("成功", "sent"),
    ("失败", "failed"),
    ("未确定", "uncertain"),
    ("计费量", "billed units"),
    ("费用（元）", "cost CNY"),
];

fn document(report: &MonthlyReport, context: &ReportContext) -> Document {
    let timezone: Tz = report.timezone.parse().unwrap_or(Tz::UTC);
    let first_day = report.month.first_day();
    let last_day = first_day + chrono::Days::new(u64::from(report.month.days() - 1));
    let mut lines = vec![(
        "统计周期",
        "Period",
        format!(
            "{} 至 {}（{} 当地日期 local dates）",
            first_day.format("%Y-%m-%d"),
            last_day.format("%Y-%m-%d"),
            report.timezone
        ),
    )];
    if !report.complete {
        lines.push((
            "注意",
            "Note",
            format!(
                "本月尚未结束，数据截至 {}（month still running）",
                local_time(report.generated_at, timezone)
            ),
        ));
    }
    let t = &report.total;
    lines.push((
        "合计费用",
        "Total cost",
        format!(
            "¥{}（计费 {} 单位，对账调整 ¥{}）",
            t.total_cost,
            t.figures.billed_units + t.adjusted_units,
            t.adjusted_cost
        ),
    ));
    lines.push((
        "上月费用",
        "Previous month",
        format!(
            "¥{}（{}，计费 {} 单位）",
            report.previous_month.total_cost,
            report.previous_month.month,
            report.previous_month.billed_units
        ),
    ));
    lines.push((
        "本月购买",
        "Purchases",
        format!("¥{}（{} 单位）", t.purchases, t.purchased_units),
    ));
    lines.push((
        "过期未用",
        "Expired unused",
        format!("¥{}（{} 单位）", t.expired_value, t.expired_units),
    ));
    lines.push((
        "下月预测",
        "Forecast",
        format!(
            "¥{}（{}，计费 {} 单位）",
            report.forecast.cost, report.forecast.month, report.forecast.billed_units
        ),
    ));

    let figure_cells = |channel: Option<&str>, f: &Figures| {
        vec![
            f.sends.to_string(),
            f.sent.to_string(),
            f.failed.to_string(),
            f.uncertain.to_string(),
            match channel {
                Some(channel) => context.units(channel, f.billed_units),
                // A client's units may mix SMS and calls: a count without a unit.
                None => f.billed_units.to_string(),
            },
            f.cost.to_string(),
        ]
    };

    let mut usage_rows: Vec<Vec<String>> = report
        .lines
        .iter()
        .map(|l| {
            let mut row = vec![l.channel.clone(), l.client.clone()];
            row.extend(figure_cells(Some(&l.channel), &l.figures));
            row
        })
        .collect();
    usage_rows.extend(report.adjustments.iter().map(|a| {
        vec![
            a.channel.clone(),
            "（对账调整 reconciliation）".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            context.units(&a.channel, a.units),
            a.cost.to_string(),
        ]
    }));
    let mut usage_headers = vec![("渠道", "channel"), ("客户", "client")];
    usage_headers.extend(USAGE_HEADERS);

    let channel_rows = report
        .channels
        .iter()
        .map(|c| {
            let mut row = vec![c.channel.clone()];
            row.extend(figure_cells(Some(&c.channel), &c.figures));
            row.push(c.adjusted_cost.to_string());
            row.push(c.total_cost.to_string());
            row
        })
        .collect();
    let mut channel_headers = vec![("渠道", "channel")];
    channel_headers.extend(USAGE_HEADERS);
    channel_headers.extend([
        ("对账调整（元）", "adjustments"),
        ("合计（元）", "total cost"),
    ]);

    let client_rows = report
        .clients
        .iter()
        .map(|c| {
            let mut row = vec![c.client.clone()];
            row.extend(figure_cells(None, &c.figures));
            row
        })
        .collect();
    let mut client_headers = vec![("客户", "client")];
    client_headers.extend(USAGE_HEADERS);

    let class_rows = report
        .classes
        .iter()
        .map(|c| {
            let mut row = vec![class_label(&c.class)];
            row.extend(figure_cells(None, &c.figures));
            row
        })
        .collect();
    let mut class_headers = vec![("类别", "class")];
    class_headers.extend(USAGE_HEADERS);

    let route_rows = report
        .routes
        .iter()
        .map(|r| {
            let mut row = vec![
                r.route.clone().unwrap_or_else(|| DIRECT_LABEL.to_owned()),
                r.channel.clone(),
            ];
            row.extend(figure_cells(Some(&r.channel), &r.figures));
            row
        })
        .collect();
    let mut route_headers = vec![("路由", "route"), ("渠道", "channel")];
    route_headers.extend(USAGE_HEADERS);

    let mut package_rows: Vec<Vec<String>> = report
        .purchases
        .iter()
        .map(|p| {
            vec![
                "购买 bought".into(),
                p.package_id.to_string(),
                p.channel.clone(),
                context.units(&p.channel, p.units),
                p.price.to_string(),
                local_time(p.purchased_at, timezone),
            ]
        })
        .collect();
    package_rows.extend(report.expired.iter().map(|e| {
        vec![
            "过期未用 expired unused".into(),
            e.package_id.to_string(),
            e.channel.clone(),
            context.units(&e.channel, e.units),
            e.value.to_string(),
            local_time(e.expired_at, timezone),
        ]
    }));

    let forecast_rows = report
        .forecast
        .channels
        .iter()
        .map(|c| {
            vec![
                c.channel.clone(),
                context.units(&c.channel, c.billed_units),
                c.cost.to_string(),
            ]
        })
        .collect();

    Document {
        title: format!("tollgate 月度费用报告 {}", report.month),
        lines,
        sections: vec![
            Section {
                title: "按渠道与客户",
                title_en: "Usage by channel and client",
                headers: usage_headers,
                rows: usage_rows,
            },
            Section {
                title: "按渠道",
                title_en: "By channel",
                headers: channel_headers,
                rows: channel_rows,
            },
            Section {
                title: "按客户",
                title_en: "By client",
                headers: client_headers,
                rows: client_rows,
            },
            Section {
                title: "按发送类别",
                title_en: "By class",
                headers: class_headers,
                rows: class_rows,
            },
            Section {
                title: "按路由与渠道",
                title_en: "By route and channel",
                headers: route_headers,
                rows: route_rows,
            },
            Section {
                title: "套餐购买与过期",
                title_en: "Packages",
                headers: vec![
                    ("", ""),
                    ("套餐", "package"),
                    ("渠道", "channel"),
                    ("数量", "units"),
                    ("金额（元）", "amount CNY"),
                    ("时间", "at"),
                ],
                rows: package_rows,
            },
            Section {
                title: "下月预测",
                title_en: "Forecast for next month",
                headers: vec![
                    ("渠道", "channel"),
                    ("计费量", "billed units"),
                    ("费用（元）", "cost CNY"),
                ],
                rows: forecast_rows,
            },
        ],
        note: format!(
            "预测方法：本月日均计费量与费用（月份未结束时按已过天数计）× 下月天数（{} 天）。Forecast method: {}.",
            report.forecast.days, report.forecast.method
        ),
    }
}

/// The route column of the sends that named a channel themselves.
pub const DIRECT_LABEL: &str = "—（直接发送 direct）";

/// A send class as people read it: `验证码 critical`, `通知 normal`, `营销 bulk`.
fn class_label(class: &str) -> String {
    match class {
        "critical" => "验证码 critical".to_owned(),
        "normal" => "通知 normal".to_owned(),
        "bulk" => "营销 bulk".to_owned(),
        other => format!("未分类 {other}"),
    }
}

/// Tables for people: `tollgate report monthly` (fitted to the terminal), and the
/// email's text part.
pub fn to_table(report: &MonthlyReport, context: &ReportContext) -> String {
    tables(report, context, ContentArrangement::Dynamic)
}

fn tables(
    report: &MonthlyReport,
    context: &ReportContext,
    arrangement: ContentArrangement,
) -> String {
    let document = document(report, context);
    let mut out = format!("{}（Monthly report）\n", document.title);
    for (label, label_en, value) in &document.lines {
        out.push_str(&format!("{label} {label_en}：{value}\n"));
    }
    for section in &document.sections {
        out.push_str(&format!("\n{} {}\n", section.title, section.title_en));
        if section.rows.is_empty() {
            out.push_str("无（none）\n");
            continue;
        }
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(arrangement.clone())
            .set_header(section.headers.iter().map(|(zh, en)| {
                if en.is_empty() {
                    String::new()
                } else {
                    format!("{zh}\n{en}")
                }
            }));
        for row in &section.rows {
            table.add_row(row.clone());
        }
        out.push_str(&format!("{table}\n"));
    }
    out.push_str(&format!("\n{}\n", document.note));
    out
}

/// The email body: a self-contained HTML page. Every value is escaped.
pub fn to_html(report: &MonthlyReport, context: &ReportContext) -> String {
    let document = document(report, context);
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\n<body style=\"font-family:sans-serif\">\n<h1>{title}</h1>\n<p style=\"color:#666\">Monthly report</p>\n<table cellpadding=\"4\">\n",
        title = escape(&document.title),
    );
    for (label, label_en, value) in &document.lines {
        html.push_str(&format!(
            "<tr><th align=\"left\">{} <small style=\"color:#666;font-weight:normal\">{}</small></th><td>{}</td></tr>\n",
            escape(label),
            escape(label_en),
            escape(value)
        ));
    }
    html.push_str("</table>\n");
    for section in &document.sections {
        html.push_str(&format!(
            "<h2>{} <small style=\"color:#666;font-weight:normal\">{}</small></h2>\n",
            escape(section.title),
            escape(section.title_en)
        ));
        if section.rows.is_empty() {
            html.push_str("<p>无（none）</p>\n");
            continue;
        }
        html.push_str(
            "<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">\n<tr>",
        );
        for (zh, en) in &section.headers {
            if zh.is_empty() {
                html.push_str("<th></th>");
                continue;
            }
            html.push_str(&format!(
                "<th>{}<br><small style=\"font-weight:normal\">{}</small></th>",
                escape(zh),
                escape(en)
            ));
        }
        html.push_str("</tr>\n");
        for row in &section.rows {
            html.push_str("<tr>");
            for cell in row {
                html.push_str(&format!("<td>{}</td>", escape(cell)));
            }
            html.push_str("</tr>\n");
        }
        html.push_str("</table>\n");
    }
    html.push_str(&format!(
        "<p style=\"color:#666\">{}</p>\n</body></html>\n",
        escape(&document.note)
    ));
    html
}

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// One RFC 4180 line: fields with a comma, quote or line break are quoted.
fn csv_line(fields: &[String]) -> String {
    fields
        .iter()
        .map(|field| {
            if field.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup() {
        assert_eq!(
            escape("<b>\"a\" & 'b'</b>"),
            "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;"
        );
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        assert_eq!(
            csv_line(&["a".into(), "b,c".into(), "x\"y".into()]),
            "a,\"b,c\",\"x\"\"y\""
        );
    }
}
