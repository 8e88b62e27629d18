//! The send path: parse and rate → check the traffic limits → reserve → call the
//! vendor → settle; through a route, the same for each channel tried, in order.
//!
//! Both the JSON API and the drop-in proxy hand their requests to
//! [`SendService::send`], which is the only place that calls the vendor. Its order is the
//! ledger's contract: nothing reaches the vendor without a reservation, and every
//! reservation is settled with what the vendor answered (or by the sweeper, if this
//! process dies first).

mod error;
mod in_flight;
mod observer;
mod prepare;
mod request;
mod route;
mod service;

pub use error::SendError;
pub use in_flight::{InFlight, InFlightGuard};
pub use observer::{SendEvent, SendObserver};
pub use prepare::PreparedSend;
pub use request::{MessageSource, Origin, SendRequest};
pub use service::{SendOutcome, SendService};
