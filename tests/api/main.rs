//! tollgate's integration tests: one binary, every test with its own database.

mod app;
mod cli;
mod dashboards;
mod helpers;
mod ledger;
mod metrics;
mod sends;
mod vendor;
