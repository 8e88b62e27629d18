//! An instance killed mid-burst holds nothing for long (SPEC §15): its reservations are
//! settled as `uncertain` (charged, flagged) by its successor at start, or by any other
//! instance once its lease lapses, well before `reservation_timeout`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Row;

use crate::app::SHOP_TOKEN;
use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;
use crate::server::{free_port, Server};
use crate::vendor::{Reply, StandInVendor};

on_both_backends!(a_restarted_instance_settles_what_its_killed_predecessor_held);

/// The SPEC's bound, and far below the `reservation_timeout` these servers run with.
const SETTLED_WITHIN: Duration = Duration::from_secs(30);

fn config(dir: &Path, db: &TestDb, vendor: &StandInVendor) -> std::path::PathBuf {
    config_with(dir, db.url.expose(), vendor, "")
}

/// The configuration of a real server on `database_url` whose voice notices go to
/// `vendor`, written to `dir`; `ledger_keys` are added to `[ledger]`.
pub fn config_with(
    dir: &Path,
    database_url: &str,
    vendor: &StandInVendor,
    ledger_keys: &str,
) -> std::path::PathBuf {
    let path = dir.join("tollgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            [server]
            shutdown_grace = "1s"
            [database]
            url = "{database_url}"
            [ledger]
            reservation_timeout = "1h"
            sweep_every = "1s"
            {ledger_keys}
            [upstream]
            appcode_env = "TEST_APPCODE"
            timeout = "50s"
            [[channels]]
            name = "voice_notice"
            kind = "voice_notice"
            url = "{vendor}"
            [[clients]]
            name = "ops"
            token_env = "TEST_ADMIN_TOKEN"
            admin = true
            [[clients]]
            name = "shop-backend"
            token_env = "TEST_SHOP_TOKEN"
            "#,
            vendor = vendor.url("/chuangxin/yytz"),
        ),
    )
    .unwrap();
    path
}

async fn reserved(db: &TestDb) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM sends WHERE status = 'reserved'")
        .fetch_one(db.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

async fn a_restarted_instance_settles_what_its_killed_predecessor_held(backend: Backend) {
    let db = TestDb::new(backend).await;
    let vendor = StandInVendor::start().await;
    // The vendor takes the calls and never answers in time: sends stay in flight.
    vendor.answer_with(Reply::success().delayed(Duration::from_secs(45)));
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db, &vendor);
    let port = free_port();
    let mut first = Server::start(&config, port);
    first.ready().await;
    let http = reqwest::Client::new();
    first.add_voice_notice_package(100, "10.00").await;

    // A burst of 20 sends, all waiting at the vendor when the instance is killed.
    let burst = 20;
    for _ in 0..burst {
        let (http, url) = (http.clone(), first.url("/v1/messages"));
        tokio::spawn(async move {
            let _ = http
                .post(url)
                .bearer_auth(SHOP_TOKEN)
                .json(&json!({ "channel": "voice_notice", "to": "13912345678", "content": "您的快递已到" }))
                .send()
                .await;
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while reserved(&db).await < burst && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reserved(&db).await, burst);
    assert_eq!(vendor.calls() as i64, burst);
    first.kill();
    assert_eq!(
        reserved(&db).await,
        burst,
        "a killed process settles nothing"
    );

    // The successor at the same address takes over at start.
    let mut second = Server::start(&config, port);
    second.ready().await;
    let started = Instant::now();
    while reserved(&db).await > 0 && started.elapsed() < SETTLED_WITHIN {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reserved(&db).await, 0, "settled within {SETTLED_WITHIN:?}");

    // Every one of them charged as uncertain and flagged; the quota adds up.
    let rows = sqlx::query(
        "SELECT status, charged_units, needs_reconciliation FROM sends ORDER BY created_at",
    )
    .fetch_all(db.db.pool())
    .await
    .unwrap();
    assert_eq!(rows.len() as i64, burst);
    for row in &rows {
        assert_eq!(row.get::<String, _>("status"), "uncertain");
        assert_eq!(row.get::<i64, _>("charged_units"), 1);
        assert_eq!(row.get::<i64, _>("needs_reconciliation"), 1);
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
    assert_eq!(quota["used"], burst);
    assert_eq!(quota["reserved"], 0);
    assert_eq!(quota["remaining"], 100 - burst);
}

/// Another instance, at another address, settles a killed instance's reservations once
/// its lease lapses (PostgreSQL: several instances share one database).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_instance_settles_a_killed_instances_reservations_once_its_lease_lapses() {
    let db = TestDb::new(Backend::Postgres).await;
    let vendor = StandInVendor::start().await;
    vendor.answer_with(Reply::success().delayed(Duration::from_secs(45)));
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db, &vendor);
    let mut survivor = Server::start(&config, free_port());
    survivor.ready().await;
    let mut doomed = Server::start(&config, free_port());
    doomed.ready().await;
    let http = reqwest::Client::new();
    survivor.add_voice_notice_package(50, "5.00").await;
    let burst = 8;
    for _ in 0..burst {
        let (http, url) = (http.clone(), doomed.url("/v1/messages"));
        tokio::spawn(async move {
            let _ = http
                .post(url)
                .bearer_auth(SHOP_TOKEN)
                .json(&json!({ "channel": "voice_notice", "to": "13912345678", "content": "您的快递已到" }))
                .send()
                .await;
        });
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while reserved(&db).await < burst && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reserved(&db).await, burst);
    doomed.kill();

    let killed = Instant::now();
    while reserved(&db).await > 0 && killed.elapsed() < SETTLED_WITHIN {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(reserved(&db).await, 0, "settled within {SETTLED_WITHIN:?}");
    let uncertain: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sends WHERE status = 'uncertain' AND needs_reconciliation = 1",
    )
    .fetch_one(db.db.pool())
    .await
    .unwrap();
    assert_eq!(uncertain, burst);
}
