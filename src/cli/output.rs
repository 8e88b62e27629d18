//! Output for the command line: tables for people, JSON and CSV for scripts.

use clap::ValueEnum;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    Csv,
}

/// Rows that can be shown as a table or CSV (same columns) or as JSON (the full value).
pub struct Rows {
    pub headers: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

pub fn print<T: Serialize>(
    format: Format,
    value: &T,
    rows: impl FnOnce() -> Rows,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Table => {
            let Rows { headers, rows } = rows();
            let mut table = Table::new();
            table
                .load_preset(UTF8_FULL_CONDENSED)
                .set_content_arrangement(ContentArrangement::Dynamic)
                .set_header(headers);
            for row in rows {
                table.add_row(row);
            }
            println!("{table}");
        }
        Format::Csv => {
            let Rows { headers, rows } = rows();
            println!("{}", csv_line(headers.iter().map(|h| h.to_string())));
            for row in rows {
                println!("{}", csv_line(row.into_iter()));
            }
        }
    }
    Ok(())
}

/// One RFC 4180 line: fields with a comma, quote or line break are quoted.
pub fn csv_line(fields: impl Iterator<Item = String>) -> String {
    fields
        .map(|field| {
            if field.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub fn opt<T: ToString>(value: &Option<T>) -> String {
    value.as_ref().map(T::to_string).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let line = csv_line(["a".into(), "b,c".into(), "say \"hi\"".into()].into_iter());
        assert_eq!(line, "a,\"b,c\",\"say \"\"hi\"\"\"");
    }
}
