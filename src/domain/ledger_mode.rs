//! Whether the ledger refuses sends without quota (`enforce`) or only meters them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerMode {
    /// Refuse a send when no local quota is left (the default).
    Enforce,
    /// Send anyway and only meter.
    Observe,
}

impl LedgerMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerMode::Enforce => "enforce",
            LedgerMode::Observe => "observe",
        }
    }
}
