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
mod drop_in;
mod edge;
mod helpers;
mod ledger;
mod marketplace;
mod marketplace_sync;
mod metrics;
mod notifiers;
mod openapi;
mod packages;
mod reports;
mod schedule;
mod sends;
mod store;
mod traffic;
mod vendor;
mod vendor_formats;
