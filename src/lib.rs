//! tollgate: a metering gateway for prepaid SMS and voice APIs.

pub mod alerts;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod report;
pub mod schedule;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod upstream;

pub mod send;
