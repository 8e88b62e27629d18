//! Who may scrape `/metrics`, and how much of the database scrapes may use.
//!
//! A scrape reads the ledger and the alert tables through the same connection pool as
//! the send path. Its reads are sequential, so one scrape holds at most one connection
//! at a time; letting only one scrape run at once therefore caps what scrapes take of
//! the pool at one connection, however many arrive together (several Prometheus
//! servers, a dashboard refreshed in a loop, an attacker). The others wait their turn
//! for a short while, holding no connection, then get 503 with `Retry-After`. A second
//! pool for scrapes would also work, but would add connections per instance on the
//! database for no better guarantee.
//!
//! With `[metrics] token_env` set, a scrape must also present that token
//! (`Authorization: Bearer <token>`); it is kept as a SHA-256 digest, like the clients'.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::secret::Secret;

/// How long a scrape waits for the one running before it to end. Well below
/// Prometheus' default scrape timeout (10 s), so that a refusal arrives in time to be
/// recorded as one.
pub const SCRAPE_QUEUE_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ScrapeAccess {
    token: Option<[u8; 32]>,
    turns: Arc<Semaphore>,
    wait: Duration,
}

/// The right to run one scrape; the next may start when it is dropped.
pub struct ScrapeTurn(#[allow(dead_code)] OwnedSemaphorePermit);

impl ScrapeAccess {
    /// Scrapes need `token` when one is given.
    pub fn new(token: Option<Secret>) -> Self {
        Self::with_wait(token, SCRAPE_QUEUE_WAIT)
    }

    pub fn with_wait(token: Option<Secret>, wait: Duration) -> Self {
        Self {
            token: token.map(|token| digest(token.expose())),
            turns: Arc::new(Semaphore::new(1)),
            wait,
        }
    }

    /// Whether the request may scrape: no token is configured, or it presents it.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("Bearer"))
            .map(|(_, token)| token.trim());
        presented.is_some_and(|token| &digest(token) == expected)
    }

    /// Waits for this scrape's turn; `None` if the one before it did not end in time.
    pub async fn turn(&self) -> Option<ScrapeTurn> {
        tokio::time::timeout(self.wait, self.turns.clone().acquire_owned())
            .await
            .ok()
            .map(|permit| ScrapeTurn(permit.expect("the semaphore is never closed")))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn without_a_token_configured_anyone_may_scrape() {
        assert!(ScrapeAccess::new(None).authorized(&HeaderMap::new()));
    }

    #[test]
    fn with_a_token_only_that_bearer_token_may_scrape() {
        let access = ScrapeAccess::new(Some(Secret::new("scrape-me-9f2c")));
        assert!(access.authorized(&bearer("scrape-me-9f2c")));
        assert!(!access.authorized(&bearer("scrape-me")));
        assert!(!access.authorized(&HeaderMap::new()));
        let mut basic = HeaderMap::new();
        basic.insert(
            header::AUTHORIZATION,
            "Basic scrape-me-9f2c".parse().unwrap(),
        );
        assert!(!access.authorized(&basic));
    }

    #[tokio::test(start_paused = true)]
    async fn one_scrape_runs_at_a_time_and_a_waiting_one_gives_up_after_its_wait() {
        let access = ScrapeAccess::with_wait(None, Duration::from_secs(2));
        let running = access.turn().await.expect("the first scrape runs");
        assert!(
            access.turn().await.is_none(),
            "a second scrape waits, then gives up"
        );

        drop(running);
        assert!(access.turn().await.is_some());
    }
}
