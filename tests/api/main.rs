//! tollgate's integration tests: one binary, every test with its own database.

mod app;
mod cli;
mod helpers;
mod ledger;
mod sends;
mod vendor;
