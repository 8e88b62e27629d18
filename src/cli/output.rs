//! Output for the command line: tables for people, JSON and CSV for scripts.

use std::fmt;
use std::io::{self, Write};

use clap::ValueEnum;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde::Serialize;

/// `println!` for the commands: writes a line to stdout and returns from the calling
/// function with [`StdoutClosed`] when nobody reads it any more.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::output::write_out(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// Standard output was closed by its reader (`tollgate package list | head`): the
/// command stops, and `main` ends it quietly, as `head`'s other writers end.
#[derive(Debug, thiserror::Error)]
#[error("standard output was closed")]
pub struct StdoutClosed;

/// Writes `text` to stdout, at once. A closed stdout is [`StdoutClosed`]; any other
/// failure (a full disk behind a redirect) is an error worth reporting.
pub fn write_out(text: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_fmt(text).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(err) => Err(anyhow::Error::new(err).context("cannot write to standard output")),
    }
}

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
        Format::Json => say!("{}", serde_json::to_string_pretty(value)?),
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
            say!("{table}");
        }
        Format::Csv => {
            let Rows { headers, rows } = rows();
            say!("{}", csv_line(headers.iter().map(|h| h.to_string())));
            for row in rows {
                say!("{}", csv_line(row.into_iter()));
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
