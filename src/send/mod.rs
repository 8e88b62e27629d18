//! The send path: parse and rate → reserve → call the vendor → settle.
//!
//! Both the JSON API and the drop-in proxy hand their requests to [`SendService`],
//! which is the only place that calls the vendor. Its order is the ledger's contract:
//! nothing reaches the vendor without a reservation, and every reservation is settled
//! with what the vendor answered (or by the sweeper, if this process dies first).

mod service;

pub use service::{
    MessageSource, Origin, PreparedSend, SendError, SendEvent, SendObserver, SendOutcome,
    SendRequest, SendService,
};
