//! What a send answers (SPEC §5) and what `GET /v1/messages/{id}` shows of a recorded
//! send: typed, so that the answer and its OpenAPI description are one thing.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::{SendClass, Yuan};
use crate::ledger::{Attempt, SendRecord, SendStatus};

/// The answer to an accepted send: the same for the first request and for every
/// idempotent repeat of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SendAnswer {
    /// The send's id, for `GET /v1/messages/{id}`.
    pub id: String,
    /// The channel that carried the send.
    pub channel: String,
    /// The mobile number, masked (`139****5678`).
    pub to: String,
    pub class: Option<SendClass>,
    pub status: SendStatus,
    /// Whether units were charged for it (a `vendor_rejected` send is charged too).
    pub charged: bool,
    /// Units the send was rated at.
    pub units: i64,
    pub cost: Yuan,
    pub upstream: UpstreamAnswer,
    pub quota: QuotaLeft,
    /// The route the send was addressed to (SPEC §13); absent for a send to a channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// A route's send: every channel tried, in order, the one that carried it last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// Present, and `false`, only when the vendor answered but the ledger could not
    /// record it yet: the outcome stands and is recorded once the database is back
    /// (`cost` is known then, through `GET /v1/messages/{id}`). Never retry such a send.
    #[serde(skip_serializing_if = "is_true")]
    #[schema(default = true)]
    pub recorded: bool,
}

fn is_true(value: &bool) -> bool {
    *value
}

/// What the vendor answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct UpstreamAnswer {
    /// The vendor's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Its `X-Ca-Request-Id`.
    pub request_id: Option<String>,
    /// The body's `TaskID`.
    pub task_id: Option<String>,
    /// The vendor's message, with any mobile number masked.
    pub message: Option<String>,
}

/// What is left of the channel once this send is charged.
#[derive(Debug, Serialize, ToSchema)]
pub struct QuotaLeft {
    pub remaining_units: i64,
}

/// One recorded send, with its charge (`GET /v1/messages/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageRecord {
    pub id: String,
    pub channel: String,
    /// The mobile number, masked.
    pub to: String,
    /// Absent for sends recorded before classes existed.
    pub class: Option<SendClass>,
    pub status: SendStatus,
    pub charged: bool,
    pub units: i64,
    pub cost: Yuan,
    pub upstream: RecordedUpstream,
    /// The client that sent it.
    pub client: String,
    pub created_at: DateTime<Utc>,
    /// When it was settled (charged or released); absent while reserved.
    pub settled_at: Option<DateTime<Utc>>,
    /// Whether the send is `uncertain` and should be checked against the vendor's console.
    pub needs_reconciliation: bool,
    /// The route the send was addressed to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// A route's send: every channel tried up to this one, which is last.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// What the vendor answered, as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordedUpstream {
    #[serde(flatten)]
    pub answer: UpstreamAnswer,
    /// The body's `RemainPoint`: what the vendor says is left of its own package.
    pub remain_point: Option<i64>,
}

impl SendAnswer {
    pub fn new(record: &SendRecord, remaining_units: i64) -> Self {
        SendAnswer {
            id: record.id.clone(),
            channel: record.channel.clone(),
            to: record.to.clone(),
            class: record.class,
            status: record.status,
            charged: record.charged(),
            units: record.units,
            cost: record.cost,
            upstream: UpstreamAnswer::new(record),
            quota: QuotaLeft { remaining_units },
            route: record.route.clone(),
            attempts: record.attempts(),
            recorded: true,
        }
    }
}

impl UpstreamAnswer {
    fn new(record: &SendRecord) -> Self {
        UpstreamAnswer {
            status: record.upstream.status,
            request_id: record.upstream.request_id.clone(),
            task_id: record.upstream.task_id.clone(),
            message: record.upstream.message.clone(),
        }
    }
}

impl MessageRecord {
    pub fn new(record: &SendRecord) -> Self {
        MessageRecord {
            id: record.id.clone(),
            channel: record.channel.clone(),
            to: record.to.clone(),
            class: record.class,
            status: record.status,
            charged: record.charged(),
            units: record.units,
            cost: record.cost,
            upstream: RecordedUpstream {
                answer: UpstreamAnswer::new(record),
                remain_point: record.upstream.remain_point,
            },
            client: record.client.clone(),
            created_at: record.created_at,
            settled_at: record.settled_at,
            needs_reconciliation: record.needs_reconciliation,
            route: record.route.clone(),
            attempts: record.attempts(),
        }
    }
}
