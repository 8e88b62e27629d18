//! Renewal reminders: alert rules evaluated per channel, a state machine per (rule,
//! channel) in the database, and a durable outbox that notifier plugins deliver from.
//!
//! See ARCHITECTURE.md ("Alerts and the outbox"): a change of state and its
//! notifications are written in one transaction with the state row locked, so that
//! however many instances evaluate at once, each change is notified once; the outbox
//! worker then delivers them with retries, and survives restarts.

mod engine;
mod evaluator;
mod forecast;
mod notifiers;
mod outbox;
mod rules;
mod state;
mod store;

pub use engine::{AlertEngine, Evaluation};
pub use evaluator::AlertObserver;
pub use forecast::{Forecast, Suggestion, SuggestionPlan};
pub use notifiers::{build_notifiers, Notifiers};
pub use outbox::{DeliveryOutcome, OutboxWorker};
pub use rules::{RuleSpec, Trigger};
pub use state::{AlertState, Step};
pub use store::{AckOutcome, AlertRecord, NotificationCount};

use std::sync::Arc;

use tokio::sync::watch;

use crate::config::Settings;
use crate::ledger::Ledger;

/// The alerting part of a running server: the engine (shared with the HTTP handlers and
/// the schedules), the evaluator fed by the send path, and the outbox worker.
pub struct Alerts {
    engine: AlertEngine,
    observer: Arc<AlertObserver>,
    worker: OutboxWorker,
}

impl Alerts {
    /// Builds every configured notifier (reading their secrets through `env`) and the
    /// engine. A notifier that cannot be built stops the start, naming it.
    pub fn build(
        settings: &Settings,
        ledger: Ledger,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let notifiers = build_notifiers(&settings.alerts.notifiers, env)?;
        let engine = AlertEngine::on_database_clock(ledger.clone(), settings);
        let worker = OutboxWorker::new(
            ledger.db().clone(),
            notifiers,
            settings.alerts.delivery.clone(),
            engine.outbox_signal(),
        );
        Ok(Self {
            observer: Arc::new(AlertObserver::new()),
            engine,
            worker,
        })
    }

    pub fn engine(&self) -> &AlertEngine {
        &self.engine
    }

    /// The observer to register with the send service: it only notes the channel and
    /// wakes the evaluator, so it never blocks a send.
    pub fn send_observer(&self) -> Arc<dyn crate::send::SendObserver> {
        self.observer.clone()
    }

    /// Runs the evaluator and the outbox worker until `stop` turns true. The evaluator
    /// finishes the channels already noted before it stops.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let evaluator = tokio::spawn(evaluator::run(
            self.observer.clone(),
            self.engine.clone(),
            stop.clone(),
        ));
        let worker = tokio::spawn(self.worker.run(stop));
        let _ = evaluator.await;
        let _ = worker.await;
    }
}
