//! Monthly cost reports, built from the ledger's day buckets (so a report costs the same
//! whatever the size of the history), and their renderings.

mod month;
mod monthly;
mod render;

pub use month::{Month, MonthError};
pub use monthly::{
    AdjustmentLine, ChannelForecast, ChannelSummary, ClientSummary, Expired, Figures, Forecast,
    MonthlyReport, PreviousMonth, Purchase, RouteChannelSummary, Total, UsageLine, FORECAST_METHOD,
};
pub use render::{
    escape as escape_html, to_csv, to_email, to_html, to_table, ReportContext, CSV_HEADER,
    DIRECT_LABEL,
};
