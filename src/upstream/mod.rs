//! The vendor: the Alibaba Cloud Marketplace client, answer classification and the sandbox.

mod classify;
mod client;
mod redact;
pub mod sandbox;

pub use classify::{classify, VendorAnswer};
pub use client::{RawResponse, VendorCall, VendorClient, VendorClientError, VendorReply};
pub use sandbox::{SandboxAccount, SandboxConfig, SandboxHandle, SandboxState, SandboxStats};
