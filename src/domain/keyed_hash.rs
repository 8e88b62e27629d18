//! Keyed hashes: fingerprints of values that must not be recoverable from what is
//! stored (a request body holding a mobile number, a number a traffic limit counts).
//!
//! A plain SHA-256 of an 11-digit number can be reversed by trying every number (about
//! 10⁹ tries for a mainland prefix); an HMAC with a key the attacker does not hold
//! cannot. The key is per installation: from `[privacy] hash_key_env` when set (then a
//! copy of the database alone reveals nothing), else generated once and kept in the
//! database so that every instance shares it (then it protects against everything but
//! a copy of the whole database).

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The installation's key for keyed hashes. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct HashKey(Vec<u8>);

/// Why a configured key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the hash key must be at least 16 bytes")]
pub struct HashKeyTooShort;

impl HashKey {
    pub fn new(bytes: Vec<u8>) -> Result<Self, HashKeyTooShort> {
        if bytes.len() < 16 {
            return Err(HashKeyTooShort);
        }
        Ok(Self(bytes))
    }

    /// 32 random bytes.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut bytes = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Hex, to keep the key in the database.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect();
        Self::new(bytes?).ok()
    }

    /// `hex(HMAC-SHA256(key, purpose || 0 || value))`: the purpose keeps hashes made for
    /// one use from matching those of another.
    pub fn hash(&self, purpose: &str, value: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(purpose.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        hex(&mac.finalize().into_bytes())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_the_key_and_the_purpose_and_round_trip_through_hex() {
        let key = HashKey::generate();
        let other = HashKey::generate();
        let number = b"13912345678";
        assert_eq!(key.hash("mobile", number), key.hash("mobile", number));
        assert_ne!(key.hash("mobile", number), other.hash("mobile", number));
        assert_ne!(key.hash("mobile", number), key.hash("request", number));
        assert_eq!(HashKey::from_hex(&key.to_hex()), Some(key.clone()));
        assert!(!format!("{key:?}").contains(&key.to_hex()));
        assert!(HashKey::new(vec![1; 8]).is_err());
        assert_eq!(HashKey::from_hex("zz"), None);
    }
}
