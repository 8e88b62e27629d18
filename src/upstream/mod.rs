//! The vendor: the Alibaba Cloud Marketplace client, answer classification and the sandbox.
