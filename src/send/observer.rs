//! What the send path tells the parts of tollgate that watch it (metrics, alerts).

use crate::domain::{ChannelName, Outcome, RouteName, SendClass, Yuan};

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
    /// A route moved on from one channel to the next; `reason` is how the attempt
    /// ended (a vendor outcome, a refusal code, or `circuit_open`).
    FailedOver {
        route: &'a RouteName,
        from: &'a ChannelName,
        to: &'a ChannelName,
        reason: &'a str,
    },
    /// A channel's circuit opened (the vendor keeps failing) or closed again.
    Circuit {
        channel: &'a ChannelName,
        open: bool,
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
