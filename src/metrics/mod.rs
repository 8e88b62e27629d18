//! Prometheus metrics: the names of SPEC §9, served at `GET /metrics`.
//!
//! Two kinds of figures, kept apart on purpose:
//!
//! - what *this process* saw on the send path (`tollgate_sends_total`, the vendor
//!   latency histogram), counted by [`SendMetrics`], the send service's observer;
//! - what *the ledger* and *the alert engine* say (billed units, cost, quota, package
//!   expiry, alerts, notifications), read through their read interfaces at every scrape
//!   by [`MetricsExporter`] (aggregates, so a scrape costs the same whatever the
//!   history), so
//!   that every instance on one database reports the same truth and dashboards can take
//!   `max by (channel)` across instances. Running totals live in the database and only
//!   grow, so a restart never makes a counter go backwards.
//!
//! Every label value comes from a bounded set: configured channel names, outcome enums,
//! configured rule and notifier names, package ids of live packages. Never a mobile
//! number, a message id or error text.

mod access;
mod endpoint;
mod exporter;
mod labels;
pub mod names;
mod send_metrics;

pub use access::{ScrapeAccess, ScrapeTurn, SCRAPE_QUEUE_WAIT};
// `__path_serve_metrics` is its OpenAPI description, for the router.
pub use endpoint::{__path_serve_metrics, serve_metrics};
pub use exporter::{MetricsExporter, ScrapeError};
pub use labels::SendOutcomeLabel;
pub use send_metrics::SendMetrics;
