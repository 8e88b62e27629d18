//! tollgate's integration tests: one binary, every test with its own database.

mod aggregates;
mod alerts;
mod app;
mod bench;
mod browser;
mod cli;
mod console;
mod crash;
mod dashboards;
mod edge;
mod faults;
mod helpers;
mod ledger;
mod ledger_check;
mod marketplace;
mod marketplace_sync;
mod metrics;
mod notifiers;
mod reports;
mod schedule;
mod sends;
mod server;
mod store;
mod vendor;
mod vendor_formats;
