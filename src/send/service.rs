//! [`SendService`]: one send from request to settled charge.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Utc;

use crate::config::{ChannelSettings, Settings};
use crate::domain::content::{rate_message, ContentError, ContentRules, MessageBody, RatedMessage};
use crate::domain::mobile::Mobile;
use crate::domain::template::TemplateBody;
use crate::domain::ChannelName;
use crate::domain::{LedgerMode, Outcome};
use crate::ledger::{
    IdempotencyKey, Ledger, LedgerError, Reservation, ReserveOutcome, ReserveRequest, SendRecord,
    Settlement, UpstreamRecord,
};
use crate::secret::Secret;
use crate::upstream::{VendorCall, VendorClient, VendorMessage, VendorReply};

/// A configured channel, ready to send: its settings, content rules and AppCode.
struct Channel {
    settings: ChannelSettings,
    rules: ContentRules,
    appcode: Secret,
}

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

#[derive(Debug, Clone)]
pub struct SendRequest {
    pub channel: String,
    pub to: String,
    pub message: MessageSource,
    pub client: String,
    pub idempotency: Option<IdempotencyKey>,
    pub origin: Origin,
}

/// Why a send was refused or failed before the vendor answered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    #[error("{0}")]
    InvalidMobile(#[from] crate::domain::mobile::MobileError),
    #[error("channel {channel} has no template {template:?}")]
    UnknownTemplate { channel: String, template: String },
    #[error("{kind} channels send registered templates only: give \"template\" and \"params\" instead of \"content\"")]
    TemplateRequired { kind: &'static str },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(
        "no quota left on channel {channel}: {remaining} unit(s) remain, the send needs {needed}"
    )]
    QuotaExhausted {
        channel: String,
        remaining: i64,
        needed: u32,
    },
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    #[error("a request with this Idempotency-Key is still being sent; retry later")]
    IdempotencyInProgress,
    #[error("the ledger is unavailable; nothing was sent")]
    Unavailable(#[source] LedgerError),
}

impl SendError {
    /// The error code of SPEC §5.
    pub fn code(&self) -> &'static str {
        match self {
            SendError::UnknownChannel(_) => "unknown_channel",
            SendError::InvalidMobile(e) => e.code(),
            SendError::UnknownTemplate { .. } => "unknown_template",
            SendError::TemplateRequired { .. } => "invalid_request",
            SendError::Content(e) => e.code(),
            SendError::QuotaExhausted { .. } => "quota_exhausted",
            SendError::IdempotencyConflict | SendError::IdempotencyInProgress => {
                "idempotency_conflict"
            }
            SendError::Unavailable(_) => "unavailable",
        }
    }
}

/// A request that passed every check and is rated, ready to reserve.
pub struct PreparedSend {
    channel: Arc<Channel>,
    mobile: Mobile,
    rated: RatedMessage,
}

impl PreparedSend {
    pub fn channel(&self) -> &ChannelName {
        &self.channel.settings.name
    }

    pub fn units(&self) -> u32 {
        self.rated.units.get()
    }
}

/// The end of a send that reached the ledger: the record as stored, with what was left.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub record: SendRecord,
    pub remaining: i64,
    /// Whether this answers a repeat of an earlier request (same Idempotency-Key).
    pub replayed: bool,
    /// The vendor's raw answer, for the drop-in proxy to mirror.
    pub vendor: Option<VendorReply>,
}

/// What happened to one send, for the parts of tollgate that watch sends (metrics,
/// alerts). Observers are called on the send path, so they must not block.
#[derive(Debug)]
pub enum SendEvent<'a> {
    /// Refused before anything was reserved; `channel` is a configured channel.
    Refused {
        channel: &'a ChannelName,
        code: &'static str,
    },
    /// The vendor was called and the send settled.
    Settled {
        channel: &'a ChannelName,
        outcome: Outcome,
        charged_units: i64,
        cost: crate::domain::Yuan,
        latency: std::time::Duration,
        remaining: i64,
    },
}

pub trait SendObserver: Send + Sync + 'static {
    fn observe(&self, event: &SendEvent<'_>);
}

#[derive(Clone)]
pub struct SendService {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Ledger,
    vendor: VendorClient,
    channels: HashMap<String, Arc<Channel>>,
    templates: HashMap<(String, String), TemplateBody>,
    store_full_numbers: bool,
    observers: Vec<Arc<dyn SendObserver>>,
}

impl SendService {
    /// `appcodes` maps each channel to its AppCode, read from the environment by the
    /// caller; `observers` are told of every send's end.
    pub fn new(
        settings: &Settings,
        ledger: Ledger,
        vendor: VendorClient,
        appcodes: &HashMap<ChannelName, Secret>,
        observers: Vec<Arc<dyn SendObserver>>,
    ) -> anyhow::Result<Self> {
        let mut channels = HashMap::new();
        for channel in &settings.channels {
            let appcode = appcodes.get(&channel.name).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "channel {}: environment variable {} (its AppCode) is not set",
                    channel.name,
                    channel.appcode_env
                )
            })?;
            let rules = ContentRules {
                kind: channel.kind,
                signature: channel.signature.clone(),
                unsubscribe_suffix: channel.unsubscribe_suffix.clone(),
                sending_window: channel.sending_window.clone(),
                timezone: settings.server.timezone,
            };
            channels.insert(
                channel.name.to_string(),
                Arc::new(Channel {
                    settings: channel.clone(),
                    rules,
                    appcode,
                }),
            );
        }
        let templates = settings
            .templates
            .iter()
            .map(|t| ((t.channel.to_string(), t.name.clone()), t.body.clone()))
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                ledger,
                vendor,
                channels,
                templates,
                store_full_numbers: settings.privacy.store_full_numbers,
                observers,
            }),
        })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    fn tell(&self, event: SendEvent<'_>) {
        for observer in &self.inner.observers {
            observer.observe(&event);
        }
    }

    /// Parses and rates a request: every content rule is checked here, before anything
    /// is reserved, so a refused send costs nothing.
    pub fn prepare(&self, request: &SendRequest) -> Result<PreparedSend, SendError> {
        let prepared = self.prepare_unobserved(request);
        if let Err(err) = &prepared {
            if let Some(channel) = self.inner.channels.get(&request.channel) {
                self.tell(SendEvent::Refused {
                    channel: &channel.settings.name,
                    code: err.code(),
                });
            }
        }
        prepared
    }

    fn prepare_unobserved(&self, request: &SendRequest) -> Result<PreparedSend, SendError> {
        let channel = self
            .inner
            .channels
            .get(&request.channel)
            .ok_or_else(|| SendError::UnknownChannel(request.channel.chars().take(64).collect()))?
            .clone();
        let mobile = Mobile::parse(&request.to)?;
        let kind = channel.settings.kind;
        let now = Utc::now();
        let rated = match &request.message {
            MessageSource::Template { name, params } => {
                let body = self
                    .inner
                    .templates
                    .get(&(request.channel.clone(), name.clone()))
                    .ok_or_else(|| SendError::UnknownTemplate {
                        channel: request.channel.clone(),
                        template: name.chars().take(64).collect(),
                    })?;
                rate_message(&channel.rules, MessageBody::Template { body, params }, now)?
            }
            MessageSource::Content(text) => {
                if kind.is_sms() && request.origin == Origin::Api {
                    return Err(SendError::TemplateRequired {
                        kind: kind.as_str(),
                    });
                }
                rate_message(&channel.rules, MessageBody::Text(text), now)?
            }
        };
        Ok(PreparedSend {
            channel,
            mobile,
            rated,
        })
    }

    /// Reserves, calls the vendor and settles. Run it in its own task: a client that
    /// hangs up must not cancel a send half-way.
    #[tracing::instrument(skip_all, fields(channel = %prepared.channel(), units = prepared.units(), client = %client))]
    pub async fn execute(
        &self,
        prepared: PreparedSend,
        client: String,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<SendOutcome, SendError> {
        let ledger = &self.inner.ledger;
        let channel = &prepared.channel;
        let send_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
        let request = ReserveRequest {
            send_id,
            client,
            units: prepared.rated.units,
            idempotency: idempotency.clone(),
            mobile_masked: prepared.mobile.masked(),
            mobile_full: self
                .inner
                .store_full_numbers
                .then(|| prepared.mobile.expose_national().to_owned()),
        };
        let reservation = match ledger
            .reserve(&channel.settings.name, request)
            .await
            .map_err(SendError::Unavailable)?
        {
            ReserveOutcome::Reserved(reservation) => reservation,
            ReserveOutcome::QuotaExhausted { remaining } => {
                self.tell(SendEvent::Refused {
                    channel: &channel.settings.name,
                    code: "quota_exhausted",
                });
                return Err(SendError::QuotaExhausted {
                    channel: channel.settings.name.to_string(),
                    remaining,
                    needed: prepared.rated.units.get(),
                });
            }
            ReserveOutcome::Duplicate { existing_id } => {
                return self.replay(&existing_id, idempotency.as_ref()).await
            }
        };

        let reply = self
            .inner
            .vendor
            .call(VendorCall {
                format: &channel.settings.format,
                url: &channel.settings.url,
                method: channel.settings.method,
                appcode: &channel.appcode,
                mobile: prepared.mobile.expose_national(),
                message: VendorMessage::Text(&prepared.rated.text),
            })
            .await;
        let answer = &reply.answer;
        let settlement = Settlement {
            outcome: answer.outcome,
            charge: answer.charged,
            upstream: UpstreamRecord {
                status: answer.http_status,
                request_id: answer.request_id.clone(),
                task_id: answer.task_id.clone(),
                message: answer.message.clone(),
                remain_point: answer.remain_point,
                latency_ms: i64::try_from(reply.latency.as_millis()).ok(),
            },
        };
        let settled = match ledger.settle(&reservation, settlement.clone()).await {
            Ok(settled) if settled.applied => settled,
            Ok(_) => {
                // Settled already, by the sweeper while this send waited: the stored
                // record is the truth, and answering from it keeps retries consistent.
                return self.stored_outcome(&reservation.send_id, reply).await;
            }
            Err(err) => {
                // The vendor was called but the ledger cannot record its answer. The
                // reservation stays, and the sweeper will charge it as `uncertain`:
                // answer that now, so the client does not retry a send that went out.
                tracing::error!(send_id = %reservation.send_id, error = %err, "could not settle a send; the sweeper will charge it as uncertain");
                let mut record =
                    self.record(&reservation, &prepared, &settlement, idempotency.as_ref());
                record.status = Outcome::Uncertain.as_str().to_owned();
                record.charged_units = reservation.units.as_i64();
                record.needs_reconciliation = true;
                record.upstream.message = Some(format!(
                    "the vendor answered {}, but the ledger could not record it; the send will be charged as uncertain and flagged for reconciliation",
                    answer.outcome
                ));
                return Ok(SendOutcome {
                    record,
                    remaining: reservation.remaining,
                    replayed: false,
                    vendor: Some(reply),
                });
            }
        };
        if answer.outcome == Outcome::VendorQuotaExhausted {
            self.vendor_says_exhausted(&channel.settings.name).await;
        }
        let remaining = if answer.outcome == Outcome::VendorQuotaExhausted {
            0
        } else {
            settled.remaining
        };
        self.tell(SendEvent::Settled {
            channel: &channel.settings.name,
            outcome: answer.outcome,
            charged_units: settled.charged_units,
            cost: settled.cost,
            latency: reply.latency,
            remaining,
        });
        let mut record = self.record(&reservation, &prepared, &settlement, idempotency.as_ref());
        record.charged_units = settled.charged_units;
        record.cost = settled.cost;
        Ok(SendOutcome {
            record,
            remaining,
            replayed: false,
            vendor: Some(reply),
        })
    }

    /// The send's record as settled with `settlement`, built in memory.
    fn record(
        &self,
        reservation: &Reservation,
        prepared: &PreparedSend,
        settlement: &Settlement,
        idempotency: Option<&IdempotencyKey>,
    ) -> SendRecord {
        let now = Utc::now();
        SendRecord {
            id: reservation.send_id.clone(),
            channel: prepared.channel.settings.name.to_string(),
            client: reservation.client.clone(),
            to: prepared.mobile.masked(),
            units: i64::from(prepared.rated.units.get()),
            status: settlement.outcome.as_str().to_owned(),
            charged_units: 0,
            cost: crate::domain::Yuan::ZERO,
            needs_reconciliation: settlement.outcome == Outcome::Uncertain,
            upstream: settlement.upstream.clone(),
            created_at: now,
            settled_at: Some(now),
            request_hash: idempotency.map(|k| k.request_hash().to_owned()),
        }
    }

    /// The answer for a send as the ledger stored it.
    async fn stored_outcome(
        &self,
        send_id: &str,
        reply: VendorReply,
    ) -> Result<SendOutcome, SendError> {
        let record = self
            .inner
            .ledger
            .get_send(send_id)
            .await
            .map_err(SendError::Unavailable)?
            .ok_or_else(|| {
                SendError::Unavailable(LedgerError::Inconsistent(format!(
                    "send {send_id} vanished"
                )))
            })?;
        let channel = ChannelName::parse(&record.channel)
            .map_err(|e| SendError::Unavailable(LedgerError::Inconsistent(e.to_string())))?;
        let remaining = self
            .inner
            .ledger
            .quota(&channel)
            .await
            .map_err(SendError::Unavailable)?
            .remaining;
        Ok(SendOutcome {
            record,
            remaining,
            replayed: false,
            vendor: Some(reply),
        })
    }

    /// The first answer to a repeated request, if the client already used this
    /// idempotency key. Checked before the request is validated, so that a repeat gets
    /// the first answer even when the request would no longer pass (the marketing window
    /// has closed, a template was renamed).
    pub async fn earlier_answer(
        &self,
        client: &str,
        key: &IdempotencyKey,
    ) -> Result<Option<SendOutcome>, SendError> {
        let existing = self
            .inner
            .ledger
            .find_send_by_key(client, key.key())
            .await
            .map_err(SendError::Unavailable)?;
        match existing {
            Some(id) => self.replay(&id, Some(key)).await.map(Some),
            None => Ok(None),
        }
    }

    /// A repeat of an earlier request: the first result, without a second vendor call.
    async fn replay(
        &self,
        existing_id: &str,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<SendOutcome, SendError> {
        let record = self
            .inner
            .ledger
            .get_send(existing_id)
            .await
            .map_err(SendError::Unavailable)?
            .ok_or_else(|| {
                SendError::Unavailable(LedgerError::Inconsistent(format!(
                    "send {existing_id} vanished"
                )))
            })?;
        let same_body = idempotency
            .is_some_and(|key| record.request_hash.as_deref() == Some(key.request_hash()));
        if !same_body {
            return Err(SendError::IdempotencyConflict);
        }
        if record.status == "reserved" {
            return Err(SendError::IdempotencyInProgress);
        }
        let channel = ChannelName::parse(&record.channel)
            .map_err(|e| SendError::Unavailable(LedgerError::Inconsistent(e.to_string())))?;
        let remaining = self
            .inner
            .ledger
            .quota(&channel)
            .await
            .map_err(SendError::Unavailable)?
            .remaining;
        Ok(SendOutcome {
            record,
            remaining,
            replayed: true,
            vendor: None,
        })
    }

    /// The vendor says the package is used up while the ledger still shows units: the
    /// vendor is right. Record its count (zero) as a reconciliation, so the channel
    /// shows as exhausted everywhere and further sends are refused locally until a new
    /// package is registered.
    async fn vendor_says_exhausted(&self, channel: &ChannelName) {
        if self.inner.ledger.mode() == LedgerMode::Observe {
            return;
        }
        match self
            .inner
            .ledger
            .reconcile(channel, 0, Some("vendor answered Quota Exhausted".into()))
            .await
        {
            Ok(record) if record.adjusted_units != 0 => tracing::warn!(
                channel = %channel,
                units = record.adjusted_units,
                "vendor says the quota is exhausted; the channel is marked exhausted"
            ),
            Ok(_) => {}
            Err(err) => {
                tracing::error!(channel = %channel, error = %err, "could not mark the channel exhausted")
            }
        }
    }
}
