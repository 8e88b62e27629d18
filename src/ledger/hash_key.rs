//! The installation's key for keyed hashes, when the configuration gives none: made
//! once and kept in `ledger_meta`, so that every instance on the database shares it.

use sqlx::Row;

use super::{Ledger, LedgerError};
use crate::domain::HashKey;

const KEY: &str = "hash_key";

impl Ledger {
    /// `configured` if given, else the key kept in the database (made on first use).
    pub async fn hash_key(&self, configured: Option<HashKey>) -> Result<HashKey, LedgerError> {
        if let Some(key) = configured {
            return Ok(key);
        }
        let generated = HashKey::generate();
        // The first instance to insert it decides; the others read what it wrote.
        sqlx::query(
            "INSERT INTO ledger_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(KEY)
        .bind(generated.to_hex())
        .execute(self.db().pool())
        .await?;
        let stored: String = sqlx::query("SELECT value FROM ledger_meta WHERE key = $1")
            .bind(KEY)
            .fetch_one(self.db().pool())
            .await?
            .try_get("value")?;
        HashKey::from_hex(&stored)
            .ok_or_else(|| LedgerError::Inconsistent("the stored hash key is malformed".into()))
    }
}
