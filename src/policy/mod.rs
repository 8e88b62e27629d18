//! The traffic policy checked before a send is charged: traffic limits per mobile
//! number and per client (SPEC §12). The priority reserve (SPEC §11) is the ledger's,
//! decided inside the reservation; see [`crate::domain::ReserveRule`].

mod limits;
mod window;

pub use limits::{Admission, Limits, RateLimited, SendFacts};
