//! The Alibaba Cloud Marketplace's own count: the Market API client, its request signing,
//! and the simulation of it that `tollgate sandbox-upstream` serves.

mod access_key;
pub mod signature;

pub use access_key::{AccessKey, MissingAccessKey};
pub use signature::RpcRequest;
