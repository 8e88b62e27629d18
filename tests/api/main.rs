//! tollgate's integration tests: one binary, every test with its own database.

mod aggregates;
mod alerts;
mod app;
mod browser;
mod cli;
mod console;
mod dashboards;
mod helpers;
mod ledger;
mod marketplace;
mod metrics;
mod notifiers;
mod reports;
mod schedule;
mod sends;
mod vendor;
mod vendor_formats;
