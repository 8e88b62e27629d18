//! The vendor: the Alibaba Cloud Marketplace client, answer classification and the sandbox.

mod classify;
mod client;
mod outcome;
mod redact;
pub mod sandbox;

pub use classify::{classify, VendorAnswer};
pub use client::{
    RawResponse, UnknownVendorMethod, VendorCall, VendorClient, VendorClientError, VendorMethod,
    VendorReply,
};
pub use outcome::{Outcome, UnknownOutcome};
pub use sandbox::{SandboxAccount, SandboxConfig, SandboxHandle, SandboxState, SandboxStats};
