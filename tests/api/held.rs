//! The vendor answered, and then the database went away before the settlement was
//! written. The client must hear the vendor's real outcome (a code that went out is
//! `sent`, never a timeout that invites a second one), and the ledger must record that
//! outcome once it can: by the same process when the database is back, or, if the
//! process died meanwhile, by its successor from the journal it left in the spool
//! folder, not as an `uncertain` guess.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;

use crate::app::{spawn_app_with, AppOptions, SHOP_TOKEN};
use crate::crash::config_with;
use crate::helpers::{Backend, TestDb};
use crate::pg_proxy::PgProxy;
use crate::server::{free_port, Server};
use crate::vendor::{Reply, StandInVendor};

const NUMBER: &str = "13912345678";
/// The bound on waiting for something that must happen.
const WAIT: Duration = Duration::from_secs(60);

fn notice() -> Value {
    json!({ "channel": "voice_notice", "to": NUMBER, "content": "您的快递已到" })
}

/// The one send's stored status, charged units and flag.
async fn stored(db: &TestDb) -> (String, i64, i64) {
    let row = sqlx::query("SELECT status, charged_units, needs_reconciliation FROM sends")
        .fetch_one(db.db.pool())
        .await
        .unwrap();
    (
        row.get("status"),
        row.get("charged_units"),
        row.get("needs_reconciliation"),
    )
}

async fn until_settled(db: &TestDb) -> (String, i64, i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = stored(db).await;
        if now.0 != "reserved" {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "the held settlement was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The journal files in a spool folder, with their text.
fn journals(spool: &Path) -> Vec<String> {
    std::fs::read_dir(spool)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one notice while the vendor holds its answer, cuts the database off once the
/// vendor has the request, and returns the answer the client got.
async fn send_then_cut_the_database(
    http: &reqwest::Client,
    url: String,
    vendor: &StandInVendor,
    proxy: &PgProxy,
) -> (u16, Value) {
    let request = http.post(url).bearer_auth(SHOP_TOKEN).json(&notice());
    let answer = tokio::spawn(async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json::<Value>().await.unwrap())
    });
    let deadline = Instant::now() + WAIT;
    while vendor.calls() == 0 {
        assert!(Instant::now() < deadline, "the vendor was never called");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.stop();
    answer.await.unwrap()
}

fn assert_sent_but_not_yet_recorded(status: u16, body: &Value) {
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "sent", "{body}");
    assert_eq!(body["charged"], true, "{body}");
    assert_eq!(body["recorded"], false, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_the_vendor_answered_while_the_database_was_away_is_sent_and_recorded_once_it_is_back(
) {
    // Arrange: a server reaching PostgreSQL through a proxy that can cut it off.
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = PgProxy::for_test_server().await;
    let app = spawn_app_with(
        Backend::Postgres,
        AppOptions {
            database_url: Some(proxy.url_for(db.url.expose())),
            ledger_keys: "sweep_every = \"1s\"".into(),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("voice_notice", 10, "1.00").await;
    app.vendor
        .answer_with(Reply::success().delayed(Duration::from_millis(1500)));

    // Act: the database goes away while the vendor is sending.
    let (status, body) =
        send_then_cut_the_database(&app.http, app.url("/v1/messages"), &app.vendor, &proxy).await;

    // Assert: the client hears `sent`; the ledger holds it, journaled, until it can.
    assert_sent_but_not_yet_recorded(status, &body);
    assert_eq!(app.ledger.held_settlements(), 1);
    let journal = journals(app.spool.path()).concat();
    assert!(journal.contains(body["id"].as_str().unwrap()), "{journal}");
    assert!(
        !journal.contains(NUMBER),
        "the journal holds no full number"
    );
    assert_eq!(
        stored(&db).await.0,
        "reserved",
        "nothing could be recorded yet"
    );

    proxy.start_again().await;
    let (status, charged, flagged) = until_settled(&db).await;
    assert_eq!(
        status, "sent",
        "recorded with the vendor's outcome, not swept"
    );
    assert_eq!(charged, 1);
    assert_eq!(flagged, 0);
    // The next pass of the sweeper lets it go (it may have been recorded by the
    // writer's queue before that).
    let deadline = Instant::now() + WAIT;
    while app.ledger.held_settlements() > 0 {
        assert!(Instant::now() < deadline, "the settlement is still held");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(journals(app.spool.path()).is_empty(), "the journal is gone");
    let record: Value = app
        .http
        .get(app.url(&format!("/v1/messages/{}", body["id"].as_str().unwrap())))
        .bearer_auth(SHOP_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["status"], "sent", "{record}");
    assert_eq!(record["cost"], "0.10", "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_settlement_outlives_a_killed_process_and_its_successor_records_the_real_outcome() {
    // Arrange: the real binary, reaching PostgreSQL through a proxy, with a spool folder.
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = PgProxy::for_test_server().await;
    let vendor = StandInVendor::start().await;
    vendor.answer_with(Reply::success().delayed(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let config = config_with(
        dir.path(),
        &proxy.url_for(db.url.expose()),
        &vendor,
        &format!("spool_dir = \"{}\"", spool.display()),
    );
    let port = free_port();
    let mut first = Server::start(&config, port);
    first.ready().await;
    let http = reqwest::Client::new();
    first.add_voice_notice_package(10, "1.00").await;
    let (status, body) =
        send_then_cut_the_database(&http, first.url("/v1/messages"), &vendor, &proxy).await;
    assert_sent_but_not_yet_recorded(status, &body);
    assert_eq!(
        journals(&spool).len(),
        1,
        "the held settlement is journaled"
    );

    // Act: the process dies holding it; the database comes back; a successor starts.
    first.kill();
    proxy.start_again().await;
    assert_eq!(
        stored(&db).await.0,
        "reserved",
        "a killed process records nothing"
    );
    let mut second = Server::start(&config, port);
    second.ready().await;

    // Assert: recorded as the vendor answered, not swept as uncertain.
    let (status, charged, flagged) = until_settled(&db).await;
    assert_eq!(status, "sent");
    assert_eq!(charged, 1);
    assert_eq!(flagged, 0, "not flagged: the outcome was known");
    let deadline = Instant::now() + WAIT;
    while !journals(&spool).is_empty() {
        assert!(Instant::now() < deadline, "the journal was never removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let quota: Value = http
        .get(second.url("/v1/quota/voice_notice"))
        .bearer_auth(SHOP_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(quota["used"], 1, "{quota}");
    assert_eq!(quota["remaining"], 9, "{quota}");
}
