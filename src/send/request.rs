//! What a client asks to send, as the HTTP edge hands it to the send service.

use std::collections::BTreeMap;

use crate::ledger::IdempotencyKey;

/// Where a send came from; decides which content rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `POST /v1/messages`: SMS must name a registered template.
    Api,
    /// The drop-in proxy: the application sends the full text, as the vendor expects.
    Proxy,
}

#[derive(Debug, Clone)]
pub enum MessageSource {
    Template {
        name: String,
        params: BTreeMap<String, String>,
    },
    Content(String),
}

/// One send as asked for: still raw text (the channel, the number, the message), which
/// the send service parses before anything is reserved.
#[derive(Debug, Clone)]
pub struct SendRequest {
    pub channel: String,
    pub to: String,
    pub message: MessageSource,
    /// The authenticated client's name.
    pub client: String,
    pub idempotency: Option<IdempotencyKey>,
    pub origin: Origin,
}
