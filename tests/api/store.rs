//! The database's connections: PostgreSQL's session limits and SQLite's durability.

use std::time::Duration;

use sqlx::Row;
use tollgate::store::{ConnectOptions, Db, LimitReached, SessionLimits};

use crate::app::{spawn_app_with, AppOptions};
use crate::helpers::{add_package, Backend, PackageSpec, TestDb};

/// Far above any limit under test: reaching it means the limit did not act.
const WAIT: Duration = Duration::from_secs(60);

async fn with_limits(db: &TestDb, limits: SessionLimits) -> Db {
    Db::connect_with(
        &db.url,
        ConnectOptions {
            session_limits: limits,
            ..ConnectOptions::new(2)
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_waiting_for_a_locked_row_fails_fast_with_a_retryable_error() {
    let test = TestDb::new(Backend::Postgres).await;
    let package = add_package(
        &test.ledger(tollgate::domain::LedgerMode::Enforce),
        PackageSpec::default(),
    )
    .await;
    let db = with_limits(
        &test,
        SessionLimits {
            lock_timeout: Duration::from_millis(200),
            ..SessionLimits::default()
        },
    )
    .await;
    let lock = "SELECT id FROM packages WHERE id = $1 FOR UPDATE";
    let mut holder = db.pool().begin().await.unwrap();
    sqlx::query(lock)
        .bind(package.id)
        .fetch_one(&mut *holder)
        .await
        .unwrap();

    let mut waiter = db.pool().begin().await.unwrap();
    let waited = tokio::time::timeout(
        WAIT,
        sqlx::query(lock).bind(package.id).fetch_one(&mut *waiter),
    )
    .await;

    let Err(err) = waited.expect("the waiter gave up") else {
        panic!("the row was locked, yet the waiter got it");
    };
    assert_eq!(LimitReached::of(&err), Some(LimitReached::Lock), "{err}");
    waiter.rollback().await.unwrap();
    holder.rollback().await.unwrap();
    let mut after = db.pool().begin().await.unwrap();
    sqlx::query(lock)
        .bind(package.id)
        .fetch_one(&mut *after)
        .await
        .expect("once released, the row can be locked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_transaction_is_ended_by_the_server() {
    let test = TestDb::new(Backend::Postgres).await;
    let db = with_limits(
        &test,
        SessionLimits {
            idle_in_transaction_timeout: Duration::from_millis(300),
            ..SessionLimits::default()
        },
    )
    .await;
    let mut abandoned = db.pool().begin().await.unwrap();
    let pid: i32 = sqlx::query("SELECT pg_backend_pid()")
        .fetch_one(&mut *abandoned)
        .await
        .unwrap()
        .get(0);

    // The transaction now sits idle; the server must end its session on its own.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let alive: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
            .bind(pid)
            .fetch_one(test.db.pool())
            .await
            .unwrap();
        if alive == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle session was never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sqlx::query("SELECT 1")
            .execute(&mut *abandoned)
            .await
            .is_err(),
        "the ended session still answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_configured_session_limits_are_in_effect_on_the_servers_connections() {
    let mut app = spawn_app_with(
        Backend::Postgres,
        AppOptions {
            database_keys: "lock_timeout = \"1500ms\"\nstatement_timeout = \"7s\"\nidle_in_transaction_timeout = \"45s\"".into(),
            ..AppOptions::default()
        },
    )
    .await;

    let row = sqlx::query(
        "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), \
         current_setting('idle_in_transaction_session_timeout')",
    )
    .fetch_one(app.ledger.db().pool())
    .await
    .unwrap();

    let settings: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(settings, ("1500ms".into(), "7s".into(), "45s".into()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_session_limits_fit_the_send_path() {
    let test = TestDb::new(Backend::Postgres).await;

    let row = sqlx::query(
        "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), \
         current_setting('idle_in_transaction_session_timeout')",
    )
    .fetch_one(test.db.pool())
    .await
    .unwrap();

    let settings: (String, String, String) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(settings, ("2s".into(), "10s".into(), "10s".into()));
}

async fn synchronous_of(db: &Db) -> i64 {
    sqlx::query_scalar::<_, i64>("PRAGMA synchronous")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_commits_are_durable_by_default_and_can_be_traded_for_speed() {
    let default = spawn_app_with(Backend::Sqlite, AppOptions::default()).await;
    let traded = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            database_keys: r#"sqlite_synchronous = "normal""#.into(),
            ..AppOptions::default()
        },
    )
    .await;

    // PRAGMA synchronous answers 2 for FULL and 1 for NORMAL.
    assert_eq!(synchronous_of(default.ledger.db()).await, 2);
    assert_eq!(synchronous_of(traded.ledger.db()).await, 1);
    let (mut default, mut traded) = (default, traded);
    default.stop().await;
    traded.stop().await;
}
