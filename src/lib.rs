//! tollgate: a metering gateway for prepaid SMS and voice APIs.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod upstream;

pub mod send;
