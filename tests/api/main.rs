//! tollgate's integration tests: one binary, every test with its own database.

mod aggregates;
mod alerts;
mod app;
mod cli;
mod dashboards;
mod helpers;
mod ledger;
mod marketplace;
mod marketplace_sync;
mod metrics;
mod notifiers;
mod reports;
mod schedule;
mod sends;
mod vendor;
mod vendor_formats;
