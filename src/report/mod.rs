//! Monthly cost reports, and the ledger housekeeping (daily roll-ups, retention) that
//! keeps them fast over a large ledger.

mod month;
mod monthly;
mod render;
mod rollup;
mod usage;

pub use month::{local_midnight, Month, MonthError};
pub use monthly::{
    AdjustmentLine, ChannelForecast, ChannelSummary, ClientSummary, Expired, Figures, Forecast,
    MonthlyReport, PreviousMonth, Purchase, Total, UsageLine, FORECAST_METHOD,
};
pub use render::{
    escape as escape_html, to_csv, to_email, to_html, to_table, ReportContext, CSV_HEADER,
};
pub use rollup::{
    apply_retention, roll_up, rolled_up_stretch, RetentionOutcome, RollupOutcome, SETTLE_GRACE,
};
pub use usage::{usage_between, Adjustment, RangeUsage, Source, Usage};
