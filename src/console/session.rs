//! The console's session: a signed cookie naming the signed-in client and the end of
//! the session, and the CSRF tokens its forms carry.
//!
//! - **What the cookie holds**: `v1.<client name>.<end, Unix seconds>.<random nonce>`
//!   and an HMAC-SHA256 of that, never the token the client signed in with. Whether the
//!   client is an admin is not in the cookie either: it is looked up in the configuration
//!   at every request, so a changed `admin` flag takes effect at once.
//! - **The key** is derived from every configured client's name and token, not drawn at
//!   random per process: every instance that shares the configuration accepts the same
//!   sessions, and a restart signs nobody out. Forging a cookie takes every client's
//!   token, the admins' among them, and whoever has those can sign in anyway. Changing
//!   any token changes the key and ends every session.
//! - **The end** is inside the signed part: a cookie past it is refused whatever the
//!   browser does with `Max-Age`. Sign-out removes the cookie from the browser; nothing
//!   is recorded on the server, so a copy of the cookie taken before stays valid until
//!   its end (at most [`SESSION_LIFETIME`]).
//! - **CSRF**: every form of a session carries `HMAC(key, "csrf" ‖ session)`, checked on
//!   POST; another site can neither read it nor compute it. The sign-in form, which has
//!   no session yet, carries a token bound to a short-lived cookie of its own
//!   ([`SignInChallenge`]), so that another site cannot sign a browser in as someone else.
//!   The cookies are also `SameSite=Strict`.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

/// How long a session lasts after signing in.
pub const SESSION_LIFETIME: Duration = Duration::hours(12);
/// How long a sign-in form stays good after it was served.
pub const SIGN_IN_LIFETIME: Duration = Duration::minutes(30);

/// The key that signs sessions and form tokens. Prints as `[redacted]`.
#[derive(Clone)]
pub struct SessionKey(Arc<[u8; 32]>);

impl SessionKey {
    /// The key of a configuration whose clients have these names and tokens (in any
    /// order).
    pub fn derive<'a>(clients: impl IntoIterator<Item = (&'a str, &'a Secret)>) -> Self {
        let mut clients: Vec<(&str, &Secret)> = clients.into_iter().collect();
        clients.sort_by(|a, b| a.0.cmp(b.0));
        let mut mac = HmacSha256::new_from_slice(b"tollgate console session key v1")
            .expect("HMAC takes a key of any length");
        for (name, token) in clients {
            // Each part is preceded by its length, so that no two different lists of
            // names and tokens feed the same bytes.
            for part in [name.as_bytes(), token.expose().as_bytes()] {
                mac.update(&(part.len() as u64).to_be_bytes());
                mac.update(part);
            }
        }
        Self(Arc::new(mac.finalize().into_bytes().into()))
    }

    fn mac(&self, purpose: &str, payload: &str) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(self.0.as_slice()).expect("HMAC takes a key of any length");
        // The purpose keeps a token made for one use from passing as another's.
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(payload.as_bytes());
        mac
    }

    fn sign(&self, purpose: &str, payload: &str) -> String {
        BASE64.encode(self.mac(purpose, payload).finalize().into_bytes())
    }

    /// Whether `signature` is this key's for `payload`, compared in constant time.
    fn verify(&self, purpose: &str, payload: &str, signature: &str) -> bool {
        match BASE64.decode(signature) {
            Ok(bytes) => self.mac(purpose, payload).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey([redacted])")
    }
}

/// A signed-in client's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    client: String,
    expires_at: DateTime<Utc>,
    nonce: String,
}

/// Why a session cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session cookie is not one tollgate writes")]
    Malformed,
    #[error("the session cookie's signature does not match")]
    BadSignature,
    #[error("the session has ended")]
    Expired,
}

impl Session {
    /// A new session for `client`, ending [`SESSION_LIFETIME`] after `now`.
    pub fn start(client: &str, now: DateTime<Utc>) -> Self {
        Self {
            client: client.to_owned(),
            // Whole seconds, as the cookie carries them.
            expires_at: DateTime::from_timestamp((now + SESSION_LIFETIME).timestamp(), 0)
                .expect("a session's end is a representable time"),
            nonce: random_nonce(),
        }
    }

    pub fn client(&self) -> &str {
        &self.client
    }

    pub fn expires_at(&self) -> DateTime<Utc> {
        self.expires_at
    }

    fn payload(&self) -> String {
        format!(
            "v1.{}.{}.{}",
            BASE64.encode(self.client.as_bytes()),
            self.expires_at.timestamp(),
            self.nonce
        )
    }

    /// The cookie's value: the session and its signature.
    pub fn to_cookie_value(&self, key: &SessionKey) -> String {
        let payload = self.payload();
        let signature = key.sign("session", &payload);
        format!("{payload}.{signature}")
    }

    /// The session a cookie carries, if `key` signed it and it has not ended at `now`.
    pub fn from_cookie_value(
        value: &str,
        key: &SessionKey,
        now: DateTime<Utc>,
    ) -> Result<Self, SessionError> {
        let (payload, signature) = value.rsplit_once('.').ok_or(SessionError::Malformed)?;
        // The signature is checked before anything in the payload is believed.
        if !key.verify("session", payload, signature) {
            return Err(SessionError::BadSignature);
        }
        let parts: Vec<&str> = payload.split('.').collect();
        let ["v1", client, expires_at, nonce] = parts.as_slice() else {
            return Err(SessionError::Malformed);
        };
        let client = BASE64
            .decode(client)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or(SessionError::Malformed)?;
        let expires_at = expires_at
            .parse::<i64>()
            .ok()
            .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
            .ok_or(SessionError::Malformed)?;
        if now >= expires_at {
            return Err(SessionError::Expired);
        }
        Ok(Self {
            client,
            expires_at,
            nonce: (*nonce).to_owned(),
        })
    }

    /// The token this session's forms carry.
    pub fn csrf_token(&self, key: &SessionKey) -> String {
        key.sign("csrf", &self.payload())
    }

    /// Whether a form's token is this session's.
    pub fn accepts_csrf_token(&self, key: &SessionKey, token: Option<&str>) -> bool {
        token.is_some_and(|token| key.verify("csrf", &self.payload(), token))
    }
}

/// The sign-in form's protection: a random nonce in a short-lived cookie of its own,
/// and in the form a token only the server can make from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInChallenge {
    value: String,
}

impl SignInChallenge {
    pub fn issue(now: DateTime<Utc>) -> Self {
        Self {
            value: format!(
                "{}.{}",
                random_nonce(),
                (now + SIGN_IN_LIFETIME).timestamp()
            ),
        }
    }

    pub fn cookie_value(&self) -> &str {
        &self.value
    }

    /// The token the sign-in form carries.
    pub fn form_token(&self, key: &SessionKey) -> String {
        key.sign("sign-in", &self.value)
    }

    /// Whether a sign-in's cookie and form token belong together and are still good.
    pub fn accepts(
        key: &SessionKey,
        cookie: Option<&str>,
        token: Option<&str>,
        now: DateTime<Utc>,
    ) -> bool {
        let (Some(cookie), Some(token)) = (cookie, token) else {
            return false;
        };
        let fresh = cookie
            .rsplit_once('.')
            .and_then(|(_, end)| end.parse::<i64>().ok())
            .is_some_and(|end| now.timestamp() < end);
        fresh && key.verify("sign-in", cookie, token)
    }
}

fn random_nonce() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(token: &str) -> SessionKey {
        let admin = Secret::new(token.to_owned());
        let shop = Secret::new("shop-token".to_owned());
        SessionKey::derive([("ops", &admin), ("shop", &shop)])
    }

    #[test]
    fn a_session_survives_its_cookie_and_names_its_client() {
        let now = Utc::now();
        let key = key("admin-token");
        let session = Session::start("ops", now);
        let cookie = session.to_cookie_value(&key);
        assert_eq!(
            Session::from_cookie_value(&cookie, &key, now + Duration::hours(1)),
            Ok(session.clone())
        );
        assert_eq!(session.client(), "ops");
    }

    #[test]
    fn the_cookie_never_carries_a_token() {
        let key = key("admin-token");
        let cookie = Session::start("ops", Utc::now()).to_cookie_value(&key);
        assert!(!cookie.contains("admin-token") && !cookie.contains("shop-token"));
        let decoded: Vec<String> = cookie
            .split('.')
            .filter_map(|part| BASE64.decode(part).ok())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .collect();
        assert!(
            decoded.iter().all(|part| !part.contains("token")),
            "{decoded:?}"
        );
    }

    #[test]
    fn a_tampered_cookie_is_refused() {
        let now = Utc::now();
        let key = key("admin-token");
        let cookie = Session::start("shop", now).to_cookie_value(&key);
        // Another client's name put in place of the signed one.
        let parts: Vec<&str> = cookie.split('.').collect();
        let ops = BASE64.encode("ops");
        let forged = format!("v1.{ops}.{}.{}.{}", parts[2], parts[3], parts[4]);
        assert_eq!(
            Session::from_cookie_value(&forged, &key, now),
            Err(SessionError::BadSignature)
        );
        // A later end.
        let later = (now + Duration::days(365)).timestamp();
        let extended = format!("v1.{}.{later}.{}.{}", parts[1], parts[3], parts[4]);
        assert_eq!(
            Session::from_cookie_value(&extended, &key, now),
            Err(SessionError::BadSignature)
        );
        // A flipped character in the signature, and garbage.
        let mut flipped = cookie.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(Session::from_cookie_value(&flipped, &key, now).is_err());
        assert_eq!(
            Session::from_cookie_value("not-a-session", &key, now),
            Err(SessionError::Malformed)
        );
    }

    #[test]
    fn a_cookie_signed_with_another_configurations_key_is_refused() {
        let now = Utc::now();
        let cookie = Session::start("ops", now).to_cookie_value(&key("admin-token"));
        assert_eq!(
            Session::from_cookie_value(&cookie, &key("rotated-admin-token"), now),
            Err(SessionError::BadSignature)
        );
    }

    #[test]
    fn the_key_depends_on_the_clients_not_their_order() {
        let (a, b) = (Secret::new("a".to_owned()), Secret::new("b".to_owned()));
        let cookie = Session::start("x", Utc::now())
            .to_cookie_value(&SessionKey::derive([("x", &a), ("y", &b)]));
        assert!(Session::from_cookie_value(
            &cookie,
            &SessionKey::derive([("y", &b), ("x", &a)]),
            Utc::now()
        )
        .is_ok());
        // Moving a byte from a name to a token gives another key.
        let xa = Secret::new("xa".to_owned());
        assert!(Session::from_cookie_value(
            &cookie,
            &SessionKey::derive([("", &xa), ("y", &b)]),
            Utc::now()
        )
        .is_err());
    }

    #[test]
    fn an_expired_cookie_is_refused() {
        let now = Utc::now();
        let key = key("admin-token");
        let cookie = Session::start("ops", now).to_cookie_value(&key);
        assert!(Session::from_cookie_value(
            &cookie,
            &key,
            now + SESSION_LIFETIME - Duration::seconds(2)
        )
        .is_ok());
        assert_eq!(
            Session::from_cookie_value(
                &cookie,
                &key,
                now + SESSION_LIFETIME + Duration::seconds(1)
            ),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn a_form_token_belongs_to_its_session_only() {
        let now = Utc::now();
        let key = key("admin-token");
        let session = Session::start("ops", now);
        let other = Session::start("ops", now);
        let token = session.csrf_token(&key);
        assert!(session.accepts_csrf_token(&key, Some(&token)));
        assert!(!other.accepts_csrf_token(&key, Some(&token)));
        assert!(!session.accepts_csrf_token(&key, None));
        assert!(!session.accepts_csrf_token(&key, Some("")));
        // The session's own cookie signature is not a form token.
        let cookie = session.to_cookie_value(&key);
        let signature = cookie.rsplit_once('.').unwrap().1;
        assert!(!session.accepts_csrf_token(&key, Some(signature)));
    }

    #[test]
    fn a_sign_in_needs_its_own_fresh_challenge() {
        let now = Utc::now();
        let key = key("admin-token");
        let challenge = SignInChallenge::issue(now);
        let token = challenge.form_token(&key);
        let cookie = Some(challenge.cookie_value());
        assert!(SignInChallenge::accepts(&key, cookie, Some(&token), now));
        assert!(!SignInChallenge::accepts(&key, None, Some(&token), now));
        assert!(!SignInChallenge::accepts(&key, cookie, None, now));
        let other = SignInChallenge::issue(now);
        assert!(!SignInChallenge::accepts(
            &key,
            Some(other.cookie_value()),
            Some(&token),
            now
        ));
        assert!(!SignInChallenge::accepts(
            &key,
            cookie,
            Some(&token),
            now + SIGN_IN_LIFETIME + Duration::seconds(1)
        ));
    }
}
