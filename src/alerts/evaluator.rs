//! Evaluation right after each charge, off the send path: the send service's observer
//! notes the channel and returns; a background task evaluates each noted channel once,
//! however many sends noted it meanwhile. Under heavy traffic a channel is evaluated at
//! most every [`MIN_INTERVAL`]: a charge is evaluated at once when the channel was quiet,
//! and within that interval otherwise, without an evaluation per send.
//! And evaluation right after each marketplace run, which the run waits for (it is
//! no send, and the command line has no background task to leave it to).

use std::collections::BTreeSet;
use std::sync::Mutex;

use tokio::sync::{watch, Notify};

use super::engine::AlertEngine;
use crate::domain::ChannelName;
use crate::ledger::MarketplaceRun;
use crate::marketplace::RunObserver;
use crate::send::{SendEvent, SendObserver};

/// Registered with the send service; never blocks.
#[derive(Default)]
pub struct AlertObserver {
    pending: Mutex<BTreeSet<ChannelName>>,
    wake: Notify,
}

impl AlertObserver {
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes a channel to evaluate (also for callers outside the send path).
    pub fn note(&self, channel: &ChannelName) {
        let mut pending = self.pending.lock().expect("pending lock poisoned");
        if pending.insert(channel.clone()) {
            self.wake.notify_one();
        }
    }

    fn take(&self) -> BTreeSet<ChannelName> {
        std::mem::take(&mut *self.pending.lock().expect("pending lock poisoned"))
    }
}

impl SendObserver for AlertObserver {
    fn observe(&self, event: &SendEvent<'_>) {
        // Only a settled send changes what the rules look at (quota, the vendor's
        // answer); a refusal changed nothing.
        if let SendEvent::Settled { channel, .. } = event {
            self.note(channel);
        }
    }
}

/// The least time between two evaluation rounds.
pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// A recorded marketplace run may start or end `ledger.drift`, and a reconciliation it
/// applied may empty the channel (`quota.exhausted`): the channel is evaluated at once.
impl RunObserver for AlertEngine {
    fn run_recorded<'a>(
        &'a self,
        run: &'a MarketplaceRun,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let Ok(channel) = ChannelName::parse(&run.channel) else {
                return;
            };
            if let Err(err) = self.evaluate_channel(&channel).await {
                // The quota_check schedule evaluates it again.
                tracing::error!(channel = %channel, error = format!("{err:#}"), "alert evaluation after the marketplace run failed");
            }
        })
    }
}

/// Evaluates noted channels until `stop` turns true, then once more for whatever the
/// last sends noted.
pub async fn run(
    observer: std::sync::Arc<AlertObserver>,
    engine: AlertEngine,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let noted = observer.take();
        let worked = !noted.is_empty();
        for channel in noted {
            if let Err(err) = engine.evaluate_channel(&channel).await {
                // The next charge or the quota_check schedule evaluates it again.
                tracing::error!(channel = %channel, error = format!("{err:#}"), "alert evaluation failed");
            }
        }
        if *stop.borrow() {
            break;
        }
        if worked {
            // Sends settled meanwhile are noted and evaluated together next round.
            tokio::select! {
                _ = tokio::time::sleep(MIN_INTERVAL) => {}
                changed = stop.changed() => if changed.is_err() { break },
            }
            continue;
        }
        tokio::select! {
            _ = observer.wake.notified() => {}
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
    for channel in observer.take() {
        if let Err(err) = engine.evaluate_channel(&channel).await {
            tracing::error!(channel = %channel, error = format!("{err:#}"), "alert evaluation failed");
        }
    }
}
