//! Several real `tollgate serve` processes on one PostgreSQL (SPEC §2, §15): one of two
//! stalled by `kill -STOP` while it holds a channel's row locks, and three serving one
//! client spread over them, one with its clock a day ahead (under `faketime`). They
//! behave as one system: no unit sold twice, one notification per transition, one run
//! per due job, and no instance hangs another for longer than the lock timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row;

use crate::app::SHOP_TOKEN;
use crate::faults::voice_notice;
use crate::helpers::{Backend, TestDb};
use crate::ledger_check::{check_ledger_against_vendor, VendorSaw};
use crate::notifiers::Receiver;
use crate::server::{free_port, Server};
use crate::vendor::{Reply, StandInVendor};

/// `[database] lock_timeout` of the stalled-instance test.
const LOCK_TIMEOUT: Duration = Duration::from_secs(1);
/// `[database] idle_in_transaction_timeout` of the stalled-instance test: the server
/// ends the stalled session's transaction and releases its locks after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
/// What a loaded machine may add to a bound.
const MARGIN: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(60);

fn config(dir: &Path, db: &TestDb, vendor: &StandInVendor, extra: &str) -> PathBuf {
    let path = dir.join("tollgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            [server]
            shutdown_grace = "1s"
            [database]
            url = "{db}"
            lock_timeout = "{lock}ms"
            idle_in_transaction_timeout = "{idle}ms"
            [ledger]
            sweep_every = "1s"
            [upstream]
            appcode_env = "TEST_APPCODE"
            timeout = "5s"
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
            {extra}
            "#,
            db = db.url.expose(),
            lock = LOCK_TIMEOUT.as_millis(),
            idle = IDLE_TIMEOUT.as_millis(),
            vendor = vendor.url("/chuangxin/yytz"),
        ),
    )
    .unwrap();
    path
}

/// Sends voice notice `i` through `server`: the status, the body and how long it took.
async fn send(http: &reqwest::Client, server_url: &str, i: usize) -> (u16, Value, Duration) {
    let started = Instant::now();
    let response = http
        .post(format!("{server_url}/v1/messages"))
        .bearer_auth(SHOP_TOKEN)
        .json(&voice_notice(i))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap(), started.elapsed())
}

async fn reserved(db: &TestDb) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM sends WHERE status = 'reserved'")
        .fetch_one(db.db.pool())
        .await
        .unwrap()
        .get("n")
}

async fn until_settled(db: &TestDb) {
    let deadline = Instant::now() + WAIT;
    while reserved(db).await > 0 {
        assert!(Instant::now() < deadline, "reservations were left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sessions of this test's database that sit in a transaction holding `packages` rows
/// locked (`FOR UPDATE` takes `RowShareLock` on the table; a plain read takes only
/// `AccessShareLock`): a writer stopped between its statements.
async fn stalled_holders_of_packages(db: &TestDb) -> i64 {
    sqlx::query(
        "SELECT COUNT(DISTINCT a.pid) AS n FROM pg_stat_activity a \
         JOIN pg_locks l ON l.pid = a.pid \
         WHERE a.datname = current_database() AND a.pid <> pg_backend_pid() \
         AND a.state = 'idle in transaction' \
         AND l.relation = 'packages'::regclass AND l.mode = 'RowShareLock' AND l.granted",
    )
    .fetch_one(db.db.pool())
    .await
    .unwrap()
    .get("n")
}

/// Registers one-unit packages on the channel from outside every instance until
/// `running` turns false: each changes the rows the instances' writers last saw, so
/// their next batch is written in a transaction that locks the rows (the locked path)
/// rather than in one statement.
fn churn_packages(db: &TestDb, running: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let ledger = db.ledger(tollgate::domain::LedgerMode::Enforce);
    tokio::spawn(async move {
        while running.load(Ordering::Relaxed) {
            let package = tollgate::ledger::NewPackage::new(
                crate::helpers::channel("voice_notice"),
                tollgate::domain::PackageUnits::new(1).unwrap(),
                crate::helpers::yuan("0.10"),
                chrono::Utc::now(),
                None,
                None,
                None,
            )
            .unwrap();
            // Refused while the stalled instance holds the rows: that is the point.
            let _ = ledger.register_package(package).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_stopped_holding_the_row_locks_delays_the_other_by_no_more_than_the_lock_timeout(
) {
    let db = TestDb::new(Backend::Postgres).await;
    let vendor = StandInVendor::start().await;
    vendor.answer_with(Reply::success().numbered());
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &db, &vendor, "");
    let mut stalled = Server::start(&config, free_port());
    let mut other = Server::start(&config, free_port());
    stalled.ready().await;
    other.ready().await;
    let http = reqwest::Client::new();
    stalled.add_voice_notice_package(100_000, "10.00").await;

    // Traffic on the one to be stopped, writing under the channel's row locks; stop it
    // until it is caught holding them between two statements.
    let next = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let churning = Arc::new(AtomicBool::new(true));
    let churn = churn_packages(&db, churning.clone());
    let mut load = Vec::new();
    for _ in 0..6 {
        let url = stalled.url("");
        let (http, next, running) = (http.clone(), next.clone(), running.clone());
        load.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while running.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                answers.push((i, send(&http, &url, i).await));
            }
            answers
        }));
    }
    let mut caught = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        stalled.pause();
        let deadline = Instant::now() + Duration::from_millis(200);
        while Instant::now() < deadline && !caught {
            caught = stalled_holders_of_packages(&db).await > 0;
        }
        if caught {
            break;
        }
        stalled.resume();
    }
    assert!(
        caught,
        "the instance was never stopped inside a ledger transaction"
    );
    let stopped_at = Instant::now();
    churning.store(false, Ordering::Relaxed);

    // Act: a client of the other instance keeps sending while the stalled one holds
    // the rows, and after the idle-in-transaction timeout ended its session.
    let mut during = Vec::new();
    while stopped_at.elapsed() < IDLE_TIMEOUT + MARGIN {
        let i = next.fetch_add(1, Ordering::Relaxed);
        during.push((i, send(&http, &other.url(""), i).await));
    }
    let deadline = Instant::now() + WAIT;
    loop {
        assert_eq!(
            stalled_holders_of_packages(&db).await,
            0,
            "the stalled session was ended"
        );
        let i = next.fetch_add(1, Ordering::Relaxed);
        let (status, body, taken) = send(&http, &other.url(""), i).await;
        during.push((i, (status, body.clone(), taken)));
        if status == 200 {
            assert_eq!(body["status"], "sent");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other instance never sent again"
        );
    }
    stalled.resume();
    running.store(false, Ordering::Relaxed);
    churn.await.unwrap();
    let mut all = during.clone();
    for client in load {
        all.extend(client.await.unwrap());
    }

    // Assert: no send through the other instance waited longer than the lock timeout
    // (and a margin); each was sent or refused as retryable, with nothing sent.
    let refused = during
        .iter()
        .filter(|(_, (status, ..))| *status == 503)
        .count();
    assert!(
        refused > 0,
        "the other instance met the stalled one's locks"
    );
    for (i, (status, body, taken)) in &during {
        assert!(
            *taken <= LOCK_TIMEOUT + MARGIN,
            "send {i} through the running instance took {taken:?}: {body}"
        );
        match status {
            200 => assert_eq!(body["status"], "sent"),
            503 => assert_eq!(body["error"]["charged"], false, "{body}"),
            other => panic!("send {i}: {other} {body}"),
        }
    }
    // The stalled instance's own clients were answered once it ran again: sent, or
    // refused with nothing sent (its session and the transaction in it were ended).
    for (i, (status, body, _)) in &all {
        assert!(
            *status == 200 || *status == 503,
            "send {i}: {status} {body}"
        );
    }
    until_settled(&db).await;
    let saw = VendorSaw::stand_in(&vendor, Duration::from_secs(5));
    let check = check_ledger_against_vendor(&db.db, &saw, 0).await;
    assert_eq!(
        check.count("sent") as usize,
        all.iter()
            .filter(|(_, (status, ..))| *status == 200)
            .count(),
        "every send told `sent` is charged once, and no other"
    );
    stalled.kill();
    other.kill();
}

/// The `faketime` wrapper (Debian's `faketime` package; `scripts/test` installs it).
fn faketime() -> PathBuf {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("faketime"))
        .find(|path| path.is_file());
    found.expect("faketime is needed to skew an instance's clock: apt-get install faketime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_one_a_day_ahead_sell_each_unit_once_notify_once_and_run_each_job_once() {
    let db = TestDb::new(Backend::Postgres).await;
    let vendor = StandInVendor::start().await;
    vendor.answer_with(Reply::success().numbered());
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"
        [alerts]
        retry_initial = "1s"
        retry_max = "2s"
        [schedule]
        quota_check = "*/2 * * * * *"
        [[notifiers]]
        name = "hook"
        type = "webhook"
        url = "{hook}"
        secret_env = "TEST_WEBHOOK_SECRET"
        [[alert_rules]]
        name = "quota-low"
        channels = ["voice_notice"]
        remaining_units_below = 30
        severity = "warning"
        notify = ["hook"]
        repeat_every = "24h"
        "#,
        hook = receiver.url("/hook"),
    );
    let config = config(dir.path(), &db, &vendor, &extra);
    let mut instances = vec![
        Server::start(&config, free_port()),
        Server::start(&config, free_port()),
    ];
    // The third runs a day ahead. Its timers (the monotonic clock) run as usual.
    let ahead = Server::start_wrapped(
        &faketime(),
        &["-f", "+1d"],
        &config,
        free_port(),
        &[("FAKETIME_DONT_FAKE_MONOTONIC", "1")],
    );
    instances.push(ahead);
    for instance in &mut instances {
        instance.ready().await;
    }
    let http = reqwest::Client::new();
    let started = Instant::now();
    instances[0].add_voice_notice_package(100, "10.00").await;

    // Act: 150 sends for 100 units, spread over the three, 15 at a time.
    let next = Arc::new(AtomicUsize::new(0));
    let urls: Vec<String> = instances.iter().map(|s| s.url("")).collect();
    let mut clients = Vec::new();
    for client in 0..15 {
        let (http, next, url) = (http.clone(), next.clone(), urls[client % 3].clone());
        clients.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= 150 {
                    return answers;
                }
                answers.push((i, send(&http, &url, i).await));
            }
        }));
    }
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }
    // The channel ran low, then out: one notification each. Then a purchase on
    // another instance ends both alerts.
    until_settled(&db).await;
    receiver.wait_for(2).await;
    instances[1].add_voice_notice_package(100, "10.00").await;

    // Assert: exactly the 100 units were sold, each once.
    let sent = answers.iter().filter(|(_, (s, ..))| *s == 200).count();
    assert_eq!(sent, 100, "every unit sold, none twice");
    for (i, (status, body, _)) in &answers {
        if *status != 200 {
            assert_eq!(
                (*status, body["error"]["code"].as_str()),
                (402, Some("quota_exhausted")),
                "send {i}"
            );
        }
    }
    let check = check_ledger_against_vendor(
        &db.db,
        &VendorSaw::stand_in(&vendor, Duration::from_secs(5)),
        0,
    )
    .await;
    assert_eq!(check.charged_units, 100);

    // One notification per transition: quota-low fired and resolved once, and so did
    // the built-in quota.exhausted; every event delivered once.
    let received = receiver.wait_for(4).await;
    // Some more scheduled checks on every instance must change nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = receiver.received().len().max(received.len());
    // (Not `verify_webhook`: the instance a day ahead stamps `webhook-timestamp` with its
    // own clock, which a receiver's five-minute tolerance refuses. The signature holds.)
    let events: Vec<Value> = receiver.received().iter().map(|r| r.json()).collect();
    let mut per_transition: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for event in &events {
        let key = (
            event["rule"].as_str().unwrap().to_owned(),
            event["status"].as_str().unwrap().to_owned(),
        );
        *per_transition.entry(key).or_default() += 1;
        *per_id
            .entry(event["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let expected: BTreeMap<(String, String), usize> = [
        (("quota-low", "firing"), 1),
        (("quota-low", "resolved"), 1),
        (("quota.exhausted", "firing"), 1),
        (("quota.exhausted", "resolved"), 1),
    ]
    .into_iter()
    .map(|((rule, status), n)| ((rule.to_owned(), status.to_owned()), n))
    .collect();
    assert_eq!(per_transition, expected, "{received} deliveries");
    assert!(
        per_id.values().all(|n| *n == 1),
        "each event delivered once: {per_id:?}"
    );

    // One run per due time of `quota_check` (the key of `schedule_runs`), every due
    // time on the database's clock, none recorded ahead of it by the instance a day
    // ahead, and the job kept running all along (nobody silenced).
    let deadline = Instant::now() + WAIT;
    loop {
        let runs: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM schedule_runs WHERE job = 'quota_check'")
                .fetch_one(db.db.pool())
                .await
                .unwrap();
        if runs >= 5 {
            break;
        }
        assert!(Instant::now() < deadline, "quota_check ran {runs} times");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now: i64 = sqlx::query_scalar(&format!("SELECT {}", db.db.now_sql()))
        .fetch_one(db.db.pool())
        .await
        .unwrap();
    let rows = sqlx::query(
        "SELECT due_at, instance FROM schedule_runs WHERE job = 'quota_check' ORDER BY due_at",
    )
    .fetch_all(db.db.pool())
    .await
    .unwrap();
    let due: Vec<i64> = rows.iter().map(|row| row.get("due_at")).collect();
    let span = started.elapsed();
    assert!(
        due.len() as u64 >= span.as_secs() / 4,
        "{} runs of a 2-second job in {span:?}",
        due.len()
    );
    assert!(
        due.iter().all(|at| *at <= now),
        "a run was recorded ahead of time: {due:?}"
    );
    for pair in due.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]) % 2_000_000,
            0,
            "due times of the job: {due:?}"
        );
    }
    let ran: std::collections::BTreeSet<String> =
        rows.iter().map(|row| row.get("instance")).collect();
    eprintln!(
        "quota_check ran {} times in {span:?}, by {} instances",
        due.len(),
        ran.len()
    );
}
