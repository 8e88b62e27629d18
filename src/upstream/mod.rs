//! The vendor: the Alibaba Cloud Marketplace client, its vendor formats, answer
//! classification and the sandbox.

mod classify;
mod client;
pub mod format;
mod redact;
pub mod sandbox;

pub use classify::{classify, VendorAnswer};
pub use client::{RawResponse, VendorCall, VendorClient, VendorClientError, VendorReply};
pub use format::{TemplateFormat, VendorFormat, VendorMessage};
pub use sandbox::{SandboxAccount, SandboxConfig, SandboxHandle, SandboxState, SandboxStats};
