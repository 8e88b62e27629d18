//! What can go wrong in the ledger.

use std::sync::Arc;

use super::NewPackageError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    InvalidPackage(#[from] NewPackageError),
    /// The database could not be reached or refused the transaction; nothing of the
    /// operation was applied. Shared because one failed batch fails every operation in it.
    #[error("the database is unavailable")]
    Unavailable(#[source] Arc<sqlx::Error>),
    #[error("the ledger writer for this channel has stopped")]
    WriterStopped,
    /// The channel's writer has more waiting than it takes, or did not answer in time:
    /// nothing of the operation is known to be applied. Retry shortly.
    #[error("the ledger is busy; retry shortly")]
    Busy,
    #[error("the ledger is inconsistent: {0}")]
    Inconsistent(String),
}

/// The marker the writer puts on an error that no retry can fix.
pub(super) const INCONSISTENCY: &str = "ledger inconsistency: ";

impl From<sqlx::Error> for LedgerError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Protocol(message) if message.starts_with(INCONSISTENCY) => {
                LedgerError::Inconsistent(message[INCONSISTENCY.len()..].to_owned())
            }
            err => LedgerError::Unavailable(Arc::new(err)),
        }
    }
}
