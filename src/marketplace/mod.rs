//! The Alibaba Cloud Marketplace's own count: the Market API client, its request signing,
//! the run that hands its answers to the ledger, and the simulation of it that
//! `tollgate sandbox-upstream` serves.

mod access_key;
mod client;
mod metering;
pub mod sandbox;
pub mod signature;
mod sync;

pub use access_key::{AccessKey, MissingAccessKey};
pub use client::{
    MarketClient, MarketClientConfig, MarketError, DEFAULT_TIMEOUT, MARKET_API_VERSION,
};
pub use metering::{remaining_from, MeteringRow, PackageKind, ProductMetering, Reading, Remaining};
pub use signature::RpcRequest;
pub use sync::{
    figures, product_channels, MarketplaceSync, RunObserver, SyncError, SyncFailure, SyncOutcome,
    SyncScope,
};
