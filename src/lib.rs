//! tollgate: a metering gateway for prepaid SMS and voice APIs.
//!
//! Layout (ARCHITECTURE.md has the full map and the invariants):
//! - [`domain`]: newtypes parsed once at the edge (mobile, template, rating, money).
//! - [`config`]: the typed settings tree from TOML and the environment.
//! - [`store`]: the database over PostgreSQL or SQLite, migrations, and the limits every
//!   connection gets.
//! - [`ledger`]: packages, reservations, charges, reconciliation; the only writer of quota.
//! - [`upstream`]: the vendor's client, its vendor formats, answer classification and the
//!   sandbox vendor.
//! - [`marketplace`]: the Market API client (the marketplace's own count), its request
//!   signing, the run that hands its answers to the ledger, and its simulation in the
//!   sandbox.
//! - [`policy`]: the traffic limits checked before a send is reserved (per number and per
//!   client, counted across instances in sliding windows).
//! - [`send`]: one send from request to settled charge; the only caller of the vendor.
//! - [`http`]: the API and its OpenAPI description, the drop-in proxy, health, the accept
//!   loop and its limits; [`app`]
//!   builds and runs the server.
//! - [`console`]: the web pages for the people who repurchase (balances, alerts,
//!   packages, reports, a burn chart), reading the ledger's read interface.
//! - [`metrics`], [`alerts`], [`schedule`], [`report`]: what is built on the ledger.
//! - [`cli`]: the `tollgate` command line; [`secret`], [`telemetry`]: small shared pieces.

pub mod alerts;
pub mod app;
pub mod cli;
pub mod config;
pub mod console;
pub mod domain;
pub mod http;
pub mod ledger;
pub mod marketplace;
pub mod metrics;
pub mod policy;
pub mod report;
pub mod schedule;
pub mod secret;
pub mod send;
pub mod store;
pub mod telemetry;
pub mod upstream;
