//! The monthly report as people and programs read it: tables, CSV, HTML (the email
//! body). JSON is the report's `Serialize` form.

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};

use super::monthly::{Figures, MonthlyReport};

/// The CSV header. Every row has these columns; `section` says what the row is:
/// `usage` (a channel and client), `adjustment` (a channel's reconciliations),
/// `channel` and `client` (subtotals), `purchase`, `expired`, `total`,
/// `previous_month_total` and `forecast_next_month`. For `purchase` rows `units` and
/// `cost` are the package's units and price; for `expired` rows, the units lost and
/// their value.
pub const CSV_HEADER: [&str; 10] = [
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

/// Tables for people, one per part of the report.
pub fn to_table(report: &MonthlyReport) -> String {
    let mut out = format!(
        "Monthly report {} ({}, {} to {}){}\n",
        report.month,
        report.timezone,
        report.from.to_rfc3339(),
        report.to.to_rfc3339(),
        if report.complete {
            ""
        } else {
            " — month still running"
        }
    );
    let new_table = |headers: Vec<&str>| {
        let mut table = Table::new();
        table
            .load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(headers);
        table
    };
    let figure_cells = |f: &Figures| {
        vec![
            f.sends.to_string(),
            f.sent.to_string(),
            f.failed.to_string(),
            f.uncertain.to_string(),
            f.billed_units.to_string(),
            f.cost.to_string(),
        ]
    };
    let mut usage = new_table(vec![
        "channel",
        "client",
        "sends",
        "sent",
        "failed",
        "uncertain",
        "billed units",
        "cost (CNY)",
    ]);
    for l in &report.lines {
        let mut row = vec![l.channel.clone(), l.client.clone()];
        row.extend(figure_cells(&l.figures));
        usage.add_row(row);
    }
    for a in &report.adjustments {
        usage.add_row(vec![
            a.channel.clone(),
            "(reconciliation)".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            a.units.to_string(),
            a.cost.to_string(),
        ]);
    }
    out.push_str(&format!("\nUsage by channel and client\n{usage}\n"));

    let mut channels = new_table(vec![
        "channel",
        "sends",
        "sent",
        "failed",
        "uncertain",
        "billed units",
        "cost",
        "adjustments",
        "total cost",
    ]);
    for c in &report.channels {
        let mut row = vec![c.channel.clone()];
        row.extend(figure_cells(&c.figures));
        row.push(c.adjusted_cost.to_string());
        row.push(c.total_cost.to_string());
        channels.add_row(row);
    }
    out.push_str(&format!("\nBy channel\n{channels}\n"));

    let mut clients = new_table(vec![
        "client",
        "sends",
        "sent",
        "failed",
        "uncertain",
        "billed units",
        "cost",
    ]);
    for c in &report.clients {
        let mut row = vec![c.client.clone()];
        row.extend(figure_cells(&c.figures));
        clients.add_row(row);
    }
    out.push_str(&format!("\nBy client\n{clients}\n"));

    if !report.purchases.is_empty() || !report.expired.is_empty() {
        let mut packages = new_table(vec![
            "",
            "package",
            "channel",
            "units",
            "amount (CNY)",
            "at",
        ]);
        for p in &report.purchases {
            packages.add_row(vec![
                "bought".into(),
                p.package_id.to_string(),
                p.channel.clone(),
                p.units.to_string(),
                p.price.to_string(),
                p.purchased_at.to_rfc3339(),
            ]);
        }
        for e in &report.expired {
            packages.add_row(vec![
                "expired unused".into(),
                e.package_id.to_string(),
                e.channel.clone(),
                e.units.to_string(),
                e.value.to_string(),
                e.expired_at.to_rfc3339(),
            ]);
        }
        out.push_str(&format!("\nPackages\n{packages}\n"));
    }
    let t = &report.total;
    out.push_str(&format!(
        "\nTotal cost: {} CNY ({} billed units; adjustments {}), previous month {}: {} CNY\n\
         Purchases: {} units for {} CNY; expired unused: {} units worth {} CNY\n\
         Forecast for {}: {} units, {} CNY ({})\n",
        t.total_cost,
        t.figures.billed_units,
        t.adjusted_cost,
        report.previous_month.month,
        report.previous_month.total_cost,
        t.purchased_units,
        t.purchases,
        t.expired_units,
        t.expired_value,
        report.forecast.month,
        report.forecast.billed_units,
        report.forecast.cost,
        report.forecast.method,
    ));
    out
}

/// The email body: a self-contained HTML page. Every value is escaped.
pub fn to_html(report: &MonthlyReport) -> String {
    let mut html = String::new();
    let title = format!("tollgate monthly report {}", report.month);
    html.push_str(&format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n<body style=\"font-family:sans-serif\">\n<h1>{}</h1>\n<p>{} ({}){}</p>\n",
        escape(&title),
        escape(&title),
        escape(&format!("{} to {}", report.from.to_rfc3339(), report.to.to_rfc3339())),
        escape(&report.timezone),
        if report.complete { "" } else { " — month still running" },
    ));
    let t = &report.total;
    html.push_str(&format!(
        "<p><strong>Total cost: {} CNY</strong> (previous month {}: {} CNY; forecast for {}: {} CNY)</p>\n",
        escape(&t.total_cost.to_string()),
        escape(&report.previous_month.month.to_string()),
        escape(&report.previous_month.total_cost.to_string()),
        escape(&report.forecast.month.to_string()),
        escape(&report.forecast.cost.to_string()),
    ));
    let headers = [
        "channel",
        "client",
        "sends",
        "sent",
        "failed",
        "uncertain",
        "billed units",
        "cost (CNY)",
    ];
    let mut rows: Vec<Vec<String>> = report
        .lines
        .iter()
        .map(|l| {
            let f = &l.figures;
            vec![
                l.channel.clone(),
                l.client.clone(),
                f.sends.to_string(),
                f.sent.to_string(),
                f.failed.to_string(),
                f.uncertain.to_string(),
                f.billed_units.to_string(),
                f.cost.to_string(),
            ]
        })
        .collect();
    rows.extend(report.adjustments.iter().map(|a| {
        vec![
            a.channel.clone(),
            "(reconciliation)".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            a.units.to_string(),
            a.cost.to_string(),
        ]
    }));
    html_table(&mut html, "Usage by channel and client", &headers, &rows);
    let rows: Vec<Vec<String>> = report
        .channels
        .iter()
        .map(|c| {
            vec![
                c.channel.clone(),
                c.figures.sends.to_string(),
                c.figures.billed_units.to_string(),
                c.total_cost.to_string(),
            ]
        })
        .collect();
    html_table(
        &mut html,
        "By channel",
        &["channel", "sends", "billed units", "total cost (CNY)"],
        &rows,
    );
    let rows: Vec<Vec<String>> = report
        .clients
        .iter()
        .map(|c| {
            vec![
                c.client.clone(),
                c.figures.sends.to_string(),
                c.figures.billed_units.to_string(),
                c.figures.cost.to_string(),
            ]
        })
        .collect();
    html_table(
        &mut html,
        "By client",
        &["client", "sends", "billed units", "cost (CNY)"],
        &rows,
    );
    let mut rows: Vec<Vec<String>> = report
        .purchases
        .iter()
        .map(|p| {
            vec![
                "bought".into(),
                p.channel.clone(),
                p.units.to_string(),
                p.price.to_string(),
            ]
        })
        .collect();
    rows.extend(report.expired.iter().map(|e| {
        vec![
            "expired unused".into(),
            e.channel.clone(),
            e.units.to_string(),
            e.value.to_string(),
        ]
    }));
    html_table(
        &mut html,
        "Packages",
        &["", "channel", "units", "amount (CNY)"],
        &rows,
    );
    html.push_str(&format!(
        "<p>Forecast method: {}.</p>\n</body></html>\n",
        escape(report.forecast.method)
    ));
    html
}

fn html_table(html: &mut String, title: &str, headers: &[&str], rows: &[Vec<String>]) {
    html.push_str(&format!("<h2>{}</h2>\n", escape(title)));
    if rows.is_empty() {
        html.push_str("<p>None.</p>\n");
        return;
    }
    html.push_str(
        "<table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">\n<tr>",
    );
    for header in headers {
        html.push_str(&format!("<th>{}</th>", escape(header)));
    }
    html.push_str("</tr>\n");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            html.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
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
