//! What the send path tells the parts of tollgate that watch it (metrics, alerts).

use crate::domain::{ChannelName, Outcome, SendClass, Yuan};

/// What happened to one send. Observers are called on the send path, so they must not
/// block.
#[derive(Debug)]
pub enum SendEvent<'a> {
    /// Refused before the vendor was called; `channel` is a configured channel.
    Refused {
        channel: &'a ChannelName,
        /// The send's class (the channel kind's when it was refused before its
        /// template was found).
        class: SendClass,
        code: &'static str,
    },
    /// The vendor was called and the send settled.
    Settled {
        channel: &'a ChannelName,
        class: SendClass,
        outcome: Outcome,
        charged_units: i64,
        cost: Yuan,
        latency: std::time::Duration,
        remaining: i64,
    },
}

pub trait SendObserver: Send + Sync + 'static {
    fn observe(&self, event: &SendEvent<'_>);
}
