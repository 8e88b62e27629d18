//! [`SendService::send`]: one send from request to settled charge.
//!
//! The lifecycle, in order: an earlier answer under the same idempotency key is
//! returned as it was; the request is parsed and rated (refused here, nothing is
//! charged); units are reserved; the vendor is called; the reservation is settled with
//! what the vendor answered; the answer is built from what was recorded. Everything
//! from the reservation on runs in a task of its own, so that a client hanging up can
//! never cut a send between the vendor's answer and its settlement.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;

use super::error::SendError;
use super::in_flight::InFlight;
use super::observer::{SendEvent, SendObserver};
use super::prepare::{Catalog, Channel, PreparedSend, Target};
use super::request::SendRequest;
use super::route::{self, Pass, Route};
use crate::config::Settings;
use crate::domain::{ChannelName, HashKey, LedgerMode, Outcome, SendClass, Yuan};
use crate::ledger::{
    Attempt, IdempotencyKey, Ledger, LedgerError, Reservation, ReserveOutcome, ReserveRequest,
    SendRecord, SendStatus, Settled, Settlement, UpstreamRecord,
};
use crate::policy::{Admission, Limits, SendFacts};
use crate::secret::Secret;
use crate::upstream::{VendorCall, VendorClient, VendorReply};

/// The end of a send that reached the ledger: the record as stored, with what was left.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    pub record: SendRecord,
    pub remaining: i64,
    /// Whether this answers a repeat of an earlier request (same Idempotency-Key).
    pub replayed: bool,
    /// The vendor's raw answer, for the drop-in proxy to mirror.
    pub vendor: Option<VendorReply>,
    /// Every channel a route tried, in order, the one that carried the send last;
    /// empty for a send to a channel.
    pub attempts: Vec<Attempt>,
    /// False when the vendor answered but the ledger has not recorded the settlement
    /// yet (it holds it until the database is back): `record` is built from the
    /// vendor's answer, and its cost is not known yet.
    pub recorded: bool,
}

/// How one channel's attempt ended before (or at) its reservation.
enum Step {
    /// Reserved: the vendor is called next.
    Reserved(Called),
    /// Refused before the vendor (a request error for this channel, a channel-specific
    /// limit, no quota or only a reserve): a route moves on.
    Refused(SendError),
    /// Its circuit is open: a route moves on without trying it.
    Skipped,
    /// An earlier request with the same key answers it.
    Replay(Result<SendOutcome, SendError>),
    /// No other channel can change this answer.
    Stop(SendError),
}

/// A reserved attempt, and once called, what its vendor answered.
struct Called {
    reservation: Reservation,
    prepared: PreparedSend,
    admission: Admission,
    idempotency: Option<IdempotencyKey>,
    /// What the vendor answered, once called.
    reply: Option<VendorReply>,
    /// Whether this call is its circuit's probe.
    probe: bool,
}

#[derive(Clone)]
pub struct SendService {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Ledger,
    vendor: VendorClient,
    catalog: Catalog,
    store_full_numbers: bool,
    observers: Vec<Arc<dyn SendObserver>>,
    in_flight: InFlight,
    /// The installation's key for keyed hashes (idempotency fingerprints, per-number
    /// limits).
    hash_key: HashKey,
    limits: Limits,
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
        hash_key: HashKey,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            inner: Arc::new(Inner {
                ledger: ledger.clone(),
                vendor,
                catalog: Catalog::new(settings, appcodes)?,
                store_full_numbers: settings.privacy.store_full_numbers,
                observers,
                limits: Limits::new(
                    ledger.db().clone(),
                    settings.traffic.effective(),
                    hash_key.clone(),
                ),
                hash_key,
                in_flight: InFlight::with_limit(settings.server.limits.max_in_flight_sends),
            }),
        })
    }

    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// The installation's key for keyed hashes.
    pub fn hash_key(&self) -> &HashKey {
        &self.inner.hash_key
    }

    /// The traffic limits sends are checked against.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Sends under way (shutdown waits for them).
    pub fn in_flight(&self) -> &InFlight {
        &self.inner.in_flight
    }

    /// The whole lifecycle of one send; see the module's documentation.
    pub async fn send(&self, request: SendRequest) -> Result<SendOutcome, SendError> {
        // A repeat gets the first answer before the request is validated again, so that
        // it does even when the request would no longer pass (the marketing window has
        // closed, a template was renamed).
        if let Some(key) = &request.idempotency {
            if let Some(existing) = self
                .inner
                .ledger
                .find_send_by_key(&request.client, key.key())
                .await?
            {
                return self.replay(&existing, Some(key)).await;
            }
        }
        let target =
            self.inner.catalog.target(&request.channel).ok_or_else(|| {
                SendError::UnknownChannel(request.channel.chars().take(64).collect())
            })?;
        let (route, channels, first) = match target {
            // A send to a channel is checked here, before anything else happens.
            Target::Channel(channel) => {
                let prepared = self.prepare(&request, &channel)?;
                (None, vec![channel], Some(prepared))
            }
            // A route's send is checked for each channel it tries (templates are looked
            // up by name on each, and each vendor rates its own text).
            Target::Route(route) => {
                let channels = route.ordered(&self.inner.ledger).await?;
                (Some(route), channels, None)
            }
        };
        let service = self.clone();
        let guard = self
            .inner
            .in_flight
            .try_enter()
            .ok_or(SendError::TooManyInFlight {
                limit: self.inner.in_flight.limit(),
            })?;
        let task = tokio::spawn(async move {
            let _guard = guard;
            service.execute(request, route, channels, first).await
        });
        task.await.unwrap_or_else(|err| {
            Err(SendError::Unavailable(LedgerError::Inconsistent(format!(
                "send task failed: {err}"
            ))))
        })
    }

    fn tell(&self, event: SendEvent<'_>) {
        for observer in &self.inner.observers {
            observer.observe(&event);
        }
    }

    /// Parses and rates a request for `channel`; a refusal is observed.
    fn prepare(
        &self,
        request: &SendRequest,
        channel: &Arc<Channel>,
    ) -> Result<PreparedSend, SendError> {
        let prepared = self.inner.catalog.prepare(request, channel, Utc::now());
        if let Err(err) = &prepared {
            self.tell(SendEvent::Refused {
                channel: &channel.settings.name,
                class: SendClass::default_for(channel.settings.kind),
                code: err.code(),
            });
        }
        prepared
    }

    /// Tries `channels` in order until one carries the send (a send to a channel has
    /// exactly one). A route moves on from a channel that refused the send before its
    /// vendor was called, whose circuit is open, or whose vendor took nothing
    /// ([`route::fails_over`]); it never moves on after the message may have gone out.
    ///
    /// A vendor attempt that failed stays reserved until the next attempt's reservation
    /// has taken the request's idempotency key over from it, and is settled (not
    /// charged) right after: a repeat of the request always finds the attempt under way
    /// or the one that ended the send, never a gap in which it could go out twice.
    async fn execute(
        &self,
        request: SendRequest,
        route: Option<Arc<Route>>,
        channels: Vec<Arc<Channel>>,
        mut first: Option<PreparedSend>,
    ) -> Result<SendOutcome, SendError> {
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut failed: Option<Called> = None;
        let mut refusal: Option<SendError> = None;
        for (i, channel) in channels.iter().enumerate() {
            if let (Some(route), Some(previous)) = (&route, attempts.last()) {
                let from = &channels[i - 1].settings.name;
                self.tell(SendEvent::FailedOver {
                    route: route.name(),
                    from,
                    to: &channel.settings.name,
                    reason: &previous.status,
                });
            }
            let step = self
                .attempt(
                    &request,
                    route.as_deref(),
                    channel,
                    first.take(),
                    &attempts,
                    &failed,
                )
                .await;
            let status = match step {
                Step::Stop(err) => {
                    if let Some(called) = failed.take() {
                        self.finish_quietly(called, &attempts).await;
                    }
                    return Err(err);
                }
                Step::Replay(replayed) => {
                    if let Some(called) = failed.take() {
                        self.finish_quietly(called, &attempts).await;
                    }
                    return replayed;
                }
                Step::Refused(err) => {
                    let status = err.code().to_owned();
                    refusal = Some(err);
                    status
                }
                Step::Skipped => "circuit_open".to_owned(),
                Step::Reserved(called) => {
                    // This attempt holds the key now: the one before it can be settled.
                    if let Some(earlier) = failed.take() {
                        self.finish_quietly(earlier, &attempts[..attempts.len() - 1])
                            .await;
                    }
                    let called = self.call(called).await;
                    let answer = &called
                        .reply
                        .as_ref()
                        .expect("a called attempt has a reply")
                        .answer;
                    let outcome = answer.outcome;
                    if route.is_some() && route::fails_over(outcome) && !answer.charged {
                        // Nothing was delivered: its traffic-limit counts go back now,
                        // before the next channel is admitted, or a code limited to one
                        // a minute per number would refuse its own failover.
                        let mut called = called;
                        self.inner
                            .limits
                            .release(std::mem::take(&mut called.admission));
                        failed = Some(called);
                        attempts.push(Attempt {
                            channel: channel.settings.name.to_string(),
                            status: outcome.as_str().to_owned(),
                        });
                        continue;
                    }
                    return self.finish(called, &attempts).await;
                }
            };
            if route.is_none() {
                return Err(refusal.expect("a send to a channel refused with its reason"));
            }
            attempts.push(Attempt {
                channel: channel.settings.name.to_string(),
                status,
            });
        }
        let route = route.expect("only a route runs out of channels");
        // Every channel was tried. A vendor that failed last holds the send's key and
        // its answer is the send's; else the last refusal is.
        if let Some(called) = failed.take() {
            let before = &attempts[..attempts.len() - 1];
            return self.finish(called, before).await;
        }
        Err(match refusal {
            Some(last) => SendError::Route {
                route: route.name().to_string(),
                attempts,
                last: Box::new(last),
            },
            None => SendError::RouteUnavailable {
                route: route.name().to_string(),
                attempts,
            },
        })
    }

    /// One channel's attempt, up to its reservation.
    async fn attempt(
        &self,
        request: &SendRequest,
        route: Option<&Route>,
        channel: &Arc<Channel>,
        prepared: Option<PreparedSend>,
        attempts: &[Attempt],
        failed: &Option<Called>,
    ) -> Step {
        let routed = route.is_some();
        let pass = if routed {
            channel.circuit.pass()
        } else {
            Pass::Go
        };
        if pass == Pass::Skip {
            return Step::Skipped;
        }
        let unused_probe = || {
            if pass == Pass::Probe {
                channel.circuit.probe_unused();
            }
        };
        let prepared = match prepared.map_or_else(|| self.prepare(request, channel), Ok) {
            Ok(prepared) => prepared,
            Err(err) => {
                unused_probe();
                return if routed && err.fails_over() {
                    Step::Refused(err)
                } else {
                    Step::Stop(err)
                };
            }
        };
        let admission = match self.admit(&prepared, &request.client).await {
            Ok(admission) => admission,
            Err(err) => {
                unused_probe();
                let channel_specific = matches!(
                    &err,
                    SendError::RateLimited {
                        channel_specific: true,
                        ..
                    }
                );
                return if routed && channel_specific {
                    Step::Refused(err)
                } else {
                    Step::Stop(err)
                };
            }
        };
        let name = &channel.settings.name;
        let reserve = ReserveRequest {
            send_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
            client: request.client.clone(),
            units: prepared.rated.units,
            class: prepared.class,
            route: route.map(|r| r.name().clone()),
            idempotency: request.idempotency.clone(),
            mobile_masked: prepared.mobile.masked(),
            mobile_full: self
                .inner
                .store_full_numbers
                .then(|| prepared.mobile.expose_national().to_owned()),
            attempts: attempts.to_vec(),
            takes_key_from: failed.as_ref().map(|f| f.reservation.send_id.clone()),
        };
        let (code, err) = match self.inner.ledger.reserve(name, reserve).await {
            Ok(ReserveOutcome::Reserved(reservation)) => {
                return Step::Reserved(Called {
                    reservation,
                    prepared,
                    admission,
                    idempotency: request.idempotency.clone(),
                    reply: None,
                    probe: pass == Pass::Probe,
                })
            }
            Ok(ReserveOutcome::QuotaExhausted { remaining }) => (
                "quota_exhausted",
                SendError::QuotaExhausted {
                    channel: name.to_string(),
                    remaining,
                    needed: prepared.rated.units.get(),
                },
            ),
            Ok(ReserveOutcome::QuotaReserved { remaining }) => (
                "quota_reserved",
                SendError::QuotaReserved {
                    channel: name.to_string(),
                    remaining,
                    class: prepared.class,
                    kept_for: match prepared.class {
                        SendClass::Bulk => "normal and critical",
                        _ => "critical",
                    },
                },
            ),
            Ok(ReserveOutcome::Duplicate { existing_id }) => {
                self.inner.limits.release(admission);
                unused_probe();
                return Step::Replay(
                    self.replay(&existing_id, request.idempotency.as_ref())
                        .await,
                );
            }
            Err(err) => {
                self.inner.limits.release(admission);
                unused_probe();
                return Step::Stop(err.into());
            }
        };
        // Refused for quota: nothing was recorded or sent.
        self.inner.limits.release(admission);
        unused_probe();
        self.tell(SendEvent::Refused {
            channel: name,
            class: prepared.class,
            code,
        });
        if routed {
            Step::Refused(err)
        } else {
            Step::Stop(err)
        }
    }

    /// Calls the vendor for a reserved attempt, and tells its circuit what it answered.
    async fn call(&self, mut called: Called) -> Called {
        let channel = &called.prepared.channel;
        let reply = self
            .inner
            .vendor
            .call(VendorCall {
                format: &channel.settings.format,
                url: &channel.settings.url,
                method: channel.settings.method,
                appcode: &channel.appcode,
                mobile: called.prepared.mobile.expose_national(),
                message: called.prepared.vendor_message(),
            })
            .await;
        let was_open = channel.circuit.is_open();
        channel.circuit.record(reply.answer.outcome);
        let open = channel.circuit.is_open();
        if was_open != open || (called.probe && open) {
            self.tell(SendEvent::Circuit {
                channel: &channel.settings.name,
                open,
            });
        }
        called.reply = Some(reply);
        called
    }

    /// Settles an attempt a route moved on from; a failure to record it is left to the
    /// sweeper (which charges it as `uncertain`), as for any send.
    async fn finish_quietly(&self, called: Called, before: &[Attempt]) {
        if let Err(err) = self.finish(called, before).await {
            tracing::warn!(error = %err, "could not settle a route's earlier attempt; the sweeper will");
        }
    }

    /// Settles a called attempt with what its vendor answered, and builds the answer.
    async fn finish(&self, called: Called, before: &[Attempt]) -> Result<SendOutcome, SendError> {
        let Called {
            reservation,
            prepared,
            admission,
            reply,
            idempotency,
            ..
        } = called;
        let reply = reply.expect("only a called attempt is finished");
        let ledger = &self.inner.ledger;
        let channel = &prepared.channel;
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
                package_remaining: answer.package_remaining,
            },
        };
        // Settled, or not recorded (yet): then the answer is built from what the
        // vendor said.
        let settled: Result<Settled, SendRecord> = match ledger
            .settle_or_hold(&reservation, settlement.clone())
            .await
        {
            Ok(Some(settled)) if settled.applied => Ok(settled),
            Ok(Some(_)) => {
                // Settled already, by the sweeper while this send waited: the stored
                // record is the truth, and answering from it keeps retries consistent.
                let outcome = self.stored_outcome(&reservation.send_id, reply).await?;
                self.counted(admission, outcome.record.charged_units, outcome.record.cost);
                return Ok(outcome);
            }
            Ok(None) => {
                // The vendor answered but the ledger cannot record it yet: the ledger
                // holds the settlement and records it once the database is back. The
                // client hears the vendor's real outcome (a message that went out is
                // `sent`, never a timeout that invites a second code), marked as not
                // yet recorded; its cost is known once it is.
                let mut record = self.record(
                    &reservation,
                    &prepared,
                    &settlement,
                    idempotency.as_ref(),
                    before,
                );
                if settlement.charge {
                    record.charged_units = reservation.units.as_i64();
                }
                Err(record)
            }
            Err(err) => {
                // The ledger refused the settlement outright (not an outage): the
                // reservation stays, and the sweeper will charge it as `uncertain`.
                // Answer that now, so the client does not retry a send that went out.
                tracing::error!(send_id = %reservation.send_id, error = %err, "could not settle a send; the sweeper will charge it as uncertain");
                let mut record = self.record(
                    &reservation,
                    &prepared,
                    &settlement,
                    idempotency.as_ref(),
                    before,
                );
                record.status = SendStatus::Settled(Outcome::Uncertain);
                record.charged_units = reservation.units.as_i64();
                record.needs_reconciliation = true;
                record.upstream.message = Some(format!(
                    "the vendor answered {}, but the ledger could not record it; the send will be charged as uncertain and flagged for reconciliation",
                    answer.outcome
                ));
                Err(record)
            }
        };
        let settled = match settled {
            Ok(settled) => settled,
            Err(record) => {
                // One that will be charged keeps its counts (its cost joins the budgets
                // once it is recorded); one that will not gives them back.
                if record.charged_units > 0 {
                    drop(admission);
                } else {
                    self.inner.limits.release(admission);
                }
                return Ok(SendOutcome {
                    attempts: record.attempts(),
                    record,
                    remaining: reservation.remaining,
                    replayed: false,
                    vendor: Some(reply),
                    recorded: false,
                });
            }
        };
        self.counted(admission, settled.charged_units, settled.cost);
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
            class: prepared.class,
            outcome: answer.outcome,
            charged_units: settled.charged_units,
            cost: settled.cost,
            latency: reply.latency,
            remaining,
        });
        let mut record = self.record(
            &reservation,
            &prepared,
            &settlement,
            idempotency.as_ref(),
            before,
        );
        record.charged_units = settled.charged_units;
        record.cost = settled.cost;
        Ok(SendOutcome {
            attempts: record.attempts(),
            record,
            remaining,
            replayed: false,
            vendor: Some(reply),
            recorded: true,
        })
    }

    /// Checks the send against the traffic limits; counts it when it fits.
    async fn admit(&self, prepared: &PreparedSend, client: &str) -> Result<Admission, SendError> {
        let facts = SendFacts {
            channel: &prepared.channel.settings.name,
            class: prepared.class,
            mobile: &prepared.mobile,
            client,
            units: prepared.rated.units.get(),
        };
        match self.inner.limits.admit(facts).await? {
            Ok(admission) => Ok(admission),
            Err(limited) => {
                self.tell(SendEvent::Refused {
                    channel: &prepared.channel.settings.name,
                    class: prepared.class,
                    code: "rate_limited",
                });
                Err(SendError::RateLimited {
                    limit: limited.limit,
                    rule: limited.rule,
                    retry_after: limited.retry_after,
                    channel_specific: limited.channel_specific,
                })
            }
        }
    }

    /// A settled send keeps its counts when it was charged (and adds its cost to its
    /// budgets); one that was not charged gives them back.
    fn counted(&self, admission: Admission, charged_units: i64, cost: Yuan) {
        if charged_units > 0 {
            self.inner.limits.charged(admission, cost);
        } else {
            self.inner.limits.release(admission);
        }
    }

    /// The send's record as settled with `settlement`, built in memory.
    fn record(
        &self,
        reservation: &Reservation,
        prepared: &PreparedSend,
        settlement: &Settlement,
        idempotency: Option<&IdempotencyKey>,
        attempts_before: &[Attempt],
    ) -> SendRecord {
        let now = Utc::now();
        SendRecord {
            id: reservation.send_id.clone(),
            channel: prepared.channel.settings.name.to_string(),
            client: reservation.client.clone(),
            to: prepared.mobile.masked(),
            units: i64::from(prepared.rated.units.get()),
            class: Some(reservation.class),
            route: reservation.route.as_ref().map(|r| r.to_string()),
            status: SendStatus::Settled(settlement.outcome),
            charged_units: 0,
            cost: Yuan::ZERO,
            needs_reconciliation: settlement.outcome == Outcome::Uncertain,
            upstream: settlement.upstream.clone(),
            created_at: now,
            settled_at: Some(now),
            request_hash: idempotency.map(|k| k.request_hash().to_owned()),
            attempts_before: attempts_before.to_vec(),
        }
    }

    /// The answer for a send as the ledger stored it.
    async fn stored_outcome(
        &self,
        send_id: &str,
        reply: VendorReply,
    ) -> Result<SendOutcome, SendError> {
        let record = self.stored(send_id).await?;
        let remaining = self.remaining_of(&record).await?;
        Ok(SendOutcome {
            attempts: record.attempts(),
            record,
            remaining,
            replayed: false,
            vendor: Some(reply),
            recorded: true,
        })
    }

    /// A repeat of an earlier request: the first result, without a second vendor call.
    async fn replay(
        &self,
        existing_id: &str,
        idempotency: Option<&IdempotencyKey>,
    ) -> Result<SendOutcome, SendError> {
        let record = self.stored(existing_id).await?;
        let same_body = idempotency
            .is_some_and(|key| record.request_hash.as_deref() == Some(key.request_hash()));
        if !same_body {
            return Err(SendError::IdempotencyConflict);
        }
        if record.status == SendStatus::Reserved {
            return Err(SendError::IdempotencyInProgress);
        }
        let remaining = self.remaining_of(&record).await?;
        Ok(SendOutcome {
            attempts: record.attempts(),
            record,
            remaining,
            replayed: true,
            vendor: None,
            recorded: true,
        })
    }

    async fn stored(&self, send_id: &str) -> Result<SendRecord, SendError> {
        self.inner.ledger.get_send(send_id).await?.ok_or_else(|| {
            SendError::Unavailable(LedgerError::Inconsistent(format!(
                "send {send_id} vanished"
            )))
        })
    }

    async fn remaining_of(&self, record: &SendRecord) -> Result<i64, SendError> {
        let channel = ChannelName::parse(&record.channel)
            .map_err(|e| SendError::Unavailable(LedgerError::Inconsistent(e.to_string())))?;
        Ok(self.inner.ledger.quota(&channel).await?.remaining)
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
