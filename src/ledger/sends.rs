//! Sends as the ledger records them: one row per reserved send, settled once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::{Ledger, LedgerError};
use crate::domain::{HashKey, Outcome, SendClass, Yuan};
use crate::store::from_micros;

/// Where a send stands in the ledger: reserved while the vendor call is under way, then
/// settled with the vendor's outcome. Parsed once where the row is read, so that every
/// place that must handle a new outcome is found by the compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    Reserved,
    Settled(Outcome),
}

impl SendStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            SendStatus::Reserved => "reserved",
            SendStatus::Settled(outcome) => outcome.as_str(),
        }
    }

    /// The outcome, once settled.
    pub fn outcome(&self) -> Option<Outcome> {
        match self {
            SendStatus::Reserved => None,
            SendStatus::Settled(outcome) => Some(*outcome),
        }
    }

    fn parse(raw: &str) -> Result<Self, sqlx::Error> {
        if raw == "reserved" {
            return Ok(SendStatus::Reserved);
        }
        raw.parse()
            .map(SendStatus::Settled)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
}

impl Serialize for SendStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A client's `Idempotency-Key` and a fingerprint of the request it came with, so that
/// a repeat with a different body can be told apart from a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    key: String,
    request_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1-255 visible ASCII characters")]
pub struct IdempotencyKeyError;

impl IdempotencyKey {
    /// `request` is a canonical form of the request (e.g. its parsed JSON re-serialized),
    /// so that two byte-wise different encodings of the same request still match. Its
    /// fingerprint is a keyed hash: the request holds the full mobile number, which a
    /// plain digest would let anyone holding the table recover by trying every number.
    pub fn new(key: &str, request: &[u8], hash_key: &HashKey) -> Result<Self, IdempotencyKeyError> {
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IdempotencyKeyError);
        }
        Ok(Self {
            key: key.to_owned(),
            request_hash: hash_key.hash("request", request),
        })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn request_hash(&self) -> &str {
        &self.request_hash
    }
}

/// What the vendor answered, as recorded on the send.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct UpstreamRecord {
    pub status: Option<u16>,
    pub request_id: Option<String>,
    pub task_id: Option<String>,
    pub message: Option<String>,
    /// A count of what is left the vendor's answer reported (kapool's `RemainPoint`, a
    /// template vendor's `remaining_field`), as reported.
    pub remain_point: Option<i64>,
    pub latency_ms: Option<i64>,
    /// The vendor's count of the buyer's package, when the answer gave one: the
    /// channel's `vendor_remaining` follows it. Not stored per send.
    #[serde(skip)]
    pub package_remaining: Option<i64>,
}

/// One channel a send through a route tried: its name and how the attempt ended (the
/// vendor outcome of SPEC §3, or the refusal code of SPEC §5 such as `quota_exhausted`
/// or `circuit_open`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    pub channel: String,
    pub status: String,
}

impl Attempt {
    /// The stored form of the attempts before a send's own (`''` for none).
    pub fn to_stored(attempts: &[Attempt]) -> String {
        if attempts.is_empty() {
            String::new()
        } else {
            serde_json::to_string(attempts).expect("attempts serialize")
        }
    }

    fn from_stored(stored: &str) -> Vec<Attempt> {
        if stored.is_empty() {
            return Vec::new();
        }
        serde_json::from_str(stored).unwrap_or_default()
    }
}

/// One send with its charge, as stored.
#[derive(Debug, Clone, Serialize)]
pub struct SendRecord {
    pub id: String,
    pub channel: String,
    pub client: String,
    pub to: String,
    pub units: i64,
    /// The class it was sent as (absent for sends recorded before classes existed).
    pub class: Option<SendClass>,
    /// The route it was addressed to, if any.
    pub route: Option<String>,
    pub status: SendStatus,
    pub charged_units: i64,
    pub cost: Yuan,
    pub needs_reconciliation: bool,
    pub upstream: UpstreamRecord,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub request_hash: Option<String>,
    /// The channels a route tried before this one (empty for a send to a channel).
    pub attempts_before: Vec<Attempt>,
}

impl SendRecord {
    pub fn charged(&self) -> bool {
        self.charged_units > 0
    }

    /// Every channel tried, in order, this send's own channel last (a route's send);
    /// empty for a send addressed to a channel.
    pub fn attempts(&self) -> Vec<Attempt> {
        if self.route.is_none() {
            return Vec::new();
        }
        let mut attempts = self.attempts_before.clone();
        attempts.push(Attempt {
            channel: self.channel.clone(),
            status: self.status.as_str().to_owned(),
        });
        attempts
    }
}

impl Ledger {
    /// The send a client already made under an idempotency key, if any.
    pub async fn find_send_by_key(
        &self,
        client: &str,
        key: &str,
    ) -> Result<Option<String>, LedgerError> {
        let row = sqlx::query("SELECT id FROM sends WHERE client = $1 AND idempotency_key = $2")
            .bind(client)
            .bind(key)
            .fetch_optional(self.db().pool())
            .await?;
        Ok(row.map(|row| row.try_get("id")).transpose()?)
    }

    pub async fn get_send(&self, id: &str) -> Result<Option<SendRecord>, LedgerError> {
        let row = sqlx::query(
            "SELECT id, channel, client, mobile_masked, units, class, route, status, \
             charged_units, cost_micros, needs_reconciliation, upstream_status, \
             upstream_request_id, upstream_task_id, upstream_message, upstream_remain_point, \
             latency_ms, created_at, settled_at, request_hash, attempts FROM sends WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db().pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SendRecord {
            id: row.try_get("id")?,
            channel: row.try_get("channel")?,
            client: row.try_get("client")?,
            to: row.try_get("mobile_masked")?,
            units: row.try_get("units")?,
            class: row.try_get::<String, _>("class")?.parse().ok(),
            route: Some(row.try_get::<String, _>("route")?).filter(|r| !r.is_empty()),
            status: SendStatus::parse(&row.try_get::<String, _>("status")?)?,
            charged_units: row.try_get("charged_units")?,
            cost: Yuan::from_micros(row.try_get("cost_micros")?),
            needs_reconciliation: row.try_get::<i64, _>("needs_reconciliation")? != 0,
            upstream: UpstreamRecord {
                status: row
                    .try_get::<Option<i64>, _>("upstream_status")?
                    .and_then(|s| u16::try_from(s).ok()),
                request_id: row.try_get("upstream_request_id")?,
                task_id: row.try_get("upstream_task_id")?,
                message: row.try_get("upstream_message")?,
                remain_point: row.try_get("upstream_remain_point")?,
                latency_ms: row.try_get("latency_ms")?,
                package_remaining: None,
            },
            created_at: from_micros(row.try_get("created_at")?),
            settled_at: row
                .try_get::<Option<i64>, _>("settled_at")?
                .map(from_micros),
            request_hash: row.try_get("request_hash")?,
            attempts_before: Attempt::from_stored(&row.try_get::<String, _>("attempts")?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_fingerprint_is_keyed_so_a_number_cannot_be_tried_back() {
        let request = br#"{"channel":"sms_code","to":"13912345678"}"#;
        let key = HashKey::generate();
        let idem = IdempotencyKey::new("k-1", request, &key).unwrap();
        let again = IdempotencyKey::new("k-1", request, &key).unwrap();
        let other_key = IdempotencyKey::new("k-1", request, &HashKey::generate()).unwrap();
        assert_eq!(idem.request_hash(), again.request_hash());
        assert_ne!(idem.request_hash(), other_key.request_hash());
        use sha2::{Digest, Sha256};
        let plain: String = Sha256::digest(request)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_ne!(idem.request_hash(), plain);
        assert!(IdempotencyKey::new("", request, &key).is_err());
    }
}
