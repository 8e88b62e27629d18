//! PostgreSQL at its worst, behind a proxy that breaks it on demand (`pg_proxy`): the
//! connection cut at the ledger's commit, so that tollgate cannot know whether it
//! happened, and the database stopped and started again under traffic. What must hold:
//! no send waits without bound while it is down (503 with `Retry-After`), recovery
//! without help, and a ledger that agrees with the vendor afterwards (a reservation that
//! committed is not lost, a send the vendor got is never answered "nothing was sent",
//! nothing is charged twice).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Row;

use crate::app::{spawn_app_with, AppOptions, TestApp, SHOP_TOKEN};
use crate::faults::{burst, voice_notice};
use crate::helpers::{Backend, TestDb};
use crate::ledger_check::{check_ledger_against_vendor, VendorSaw};
use crate::pg_proxy::{Cut, PgProxy};
use crate::vendor::Reply;

/// The longest a send may wait while the database is unreachable: the outage, the
/// ledger writer's read-back backoff (2 s) and a margin for a loaded machine. A send that
/// waits longer is hanging.
///
/// Sends are not refused at once: the channel's writer first reads back the batch the
/// outage cut (its outcome is unknown, and its senders must not be told "nothing was
/// sent" if it committed), and the sends queued behind it wait for that read-back. A
/// send that arrives during the outage is answered when the database returns or 503 at
/// the writer's answer timeout (15 s), whichever comes first; one that was at the vendor
/// when the outage began is answered once its settlement is recorded, after the restart.
const ANSWER_BOUND: Duration = Duration::from_secs(18 + 2 + 3);

/// How long the database stays down in the outage test: longer than the writer's answer
/// timeout, so that some sends are refused, and short enough for CI.
const OUTAGE: Duration = Duration::from_secs(18);

/// The bound on waiting for something that must happen.
const WAIT: Duration = Duration::from_secs(60);

async fn app_behind(proxy: &PgProxy, db: &TestDb) -> TestApp {
    spawn_app_with(
        Backend::Postgres,
        AppOptions {
            database_url: Some(proxy.url_for(db.url.expose())),
            vendor_timeout: Some("5s"),
            ..AppOptions::default()
        },
    )
    .await
}

/// Whether the vendor received the voice notice tagged `i` (see [`voice_notice`]).
fn vendor_received(app: &TestApp, i: usize) -> bool {
    let text = voice_notice(i)["content"].as_str().unwrap().to_owned();
    app.vendor
        .received()
        .iter()
        .any(|r| r.query.get("content") == Some(&text))
}

async fn reserved(db: &TestDb) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM sends WHERE status = 'reserved'")
        .fetch_one(db.db.pool())
        .await
        .unwrap()
        .get("n")
}

/// Waits (bounded) until every reservation is settled.
async fn until_settled(db: &TestDb) {
    let deadline = Instant::now() + WAIT;
    while reserved(db).await > 0 {
        assert!(Instant::now() < deadline, "reservations were left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 503 says nothing was sent: the vendor must not have received that send.
fn refusals_were_not_sent(app: &TestApp, answers: &[(usize, u16, Value)]) -> usize {
    let mut refused = 0;
    for (i, status, body) in answers {
        if *status == 503 {
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            assert_eq!(body["error"]["charged"], false, "{body}");
            assert!(
                !vendor_received(app, *i),
                "send {i} was answered 503 \"nothing was sent\", and the vendor got it"
            );
            refused += 1;
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_cut_after_the_ledgers_commit_loses_no_reservation_and_charges_none_twice() {
    cut_during_a_burst(Cut::AfterLedgerCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_cut_before_the_ledgers_commit_is_applied_again_once() {
    cut_during_a_burst(Cut::BeforeLedgerCommit).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_cut_after_the_writers_one_statement_batch_loses_nothing() {
    cut_during_a_burst(Cut::AfterLedgerBatch).await;
}

async fn cut_during_a_burst(cut: Cut) {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = PgProxy::for_test_server().await;
    let mut app = app_behind(&proxy, &db).await;
    app.vendor.answer_with(Reply::success().numbered());
    app.add_package("voice_notice", 100, "10.00").await;
    if cut == Cut::AfterLedgerBatch {
        // The writer batches in one statement once it holds the rows it committed.
        for (status, _) in burst(&app, 2).await {
            assert_eq!(status, 200);
        }
    }
    let happened = proxy.arm(cut);

    let answers: Vec<(usize, u16, Value)> = burst(&app, 30)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, (status, body))| (i, status, body))
        .collect();

    tokio::time::timeout(Duration::from_secs(1), happened)
        .await
        .expect("the burst went through the ledger write that was to be cut")
        .unwrap();
    let refused = refusals_were_not_sent(&app, &answers);
    for (i, status, body) in &answers {
        assert!(
            *status == 200 || *status == 503,
            "send {i}: {status} {body}"
        );
    }
    // The writer read back what committed (or applied again what did not): the cut
    // costs no send, and no send id is recorded twice.
    assert_eq!(
        refused, 0,
        "every send of the cut batch carried on: {answers:?}"
    );
    until_settled(&db).await;
    let saw = VendorSaw::stand_in(&app.vendor, Duration::from_secs(5));
    let check = check_ledger_against_vendor(&db.db, &saw, 0).await;
    let warm_up = if cut == Cut::AfterLedgerBatch { 2 } else { 0 };
    assert_eq!(check.count("sent"), 30 + warm_up);
    app.stop().await;
}

/// One client sending voice notices one after another until `stop`, each tagged with
/// the next number of `counter`; what each was told, and how long it took.
type Answers = Arc<Mutex<Vec<(usize, u16, Value, Duration, Instant)>>>;

fn sender(
    app: &TestApp,
    counter: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    answers: Answers,
) -> tokio::task::JoinHandle<()> {
    let (http, url) = (app.http.clone(), app.url("/v1/messages"));
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let i = counter.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            let response = http
                .post(&url)
                .bearer_auth(SHOP_TOKEN)
                .json(&voice_notice(i))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let retry_after = response.headers().contains_key("retry-after");
            let body: Value = response.json().await.unwrap();
            if status == 503 {
                assert!(retry_after, "a 503 says when to retry: {body}");
            }
            answers
                .lock()
                .unwrap()
                .push((i, status, body, started.elapsed(), Instant::now()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_stopped_and_started_under_traffic_bounds_every_wait_and_recovers_by_itself() {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = PgProxy::for_test_server().await;
    let mut app = app_behind(&proxy, &db).await;
    app.vendor.answer_with(Reply::success().numbered());
    app.add_package("voice_notice", 10_000, "100.00").await;
    let (counter, stop, answers) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
        Answers::default(),
    );
    let senders: Vec<_> = (0..4)
        .map(|_| sender(&app, counter.clone(), stop.clone(), answers.clone()))
        .collect();
    let sent = || {
        answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, status, ..)| *status == 200)
            .count()
    };
    let deadline = Instant::now() + WAIT;
    while sent() < 20 {
        assert!(Instant::now() < deadline, "traffic flows before the outage");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Act: PostgreSQL goes away for a few seconds, under traffic, and comes back.
    proxy.stop();
    let stopped_at = Instant::now();
    let deadline = Instant::now() + WAIT;
    loop {
        let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never noticed the outage"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Sends that arrive while it is down, one every 250 ms, each on its own.
    let mut probes = Vec::new();
    while stopped_at.elapsed() < OUTAGE {
        let i = counter.fetch_add(1, Ordering::Relaxed);
        let request = app
            .http
            .post(app.url("/v1/messages"))
            .bearer_auth(SHOP_TOKEN)
            .json(&voice_notice(i));
        probes.push(tokio::spawn(async move {
            let started = Instant::now();
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (i, status, body, started.elapsed(), Instant::now())
        }));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    proxy.start_again().await;
    let restarted_at = Instant::now();
    // Recovery by itself: sends succeed again without a restart of tollgate.
    let deadline = Instant::now() + WAIT;
    let recovered = loop {
        let after = answers
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, status, _, taken, at)| *status == 200 && *at - *taken > restarted_at)
            .count();
        if after >= 20 {
            break restarted_at.elapsed();
        }
        assert!(Instant::now() < deadline, "sends never succeeded again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "ready again");
    for sender in senders {
        sender.await.unwrap();
    }
    for probe in probes {
        let answer = probe.await.unwrap();
        answers.lock().unwrap().push(answer);
    }
    let answers = answers.lock().unwrap().clone();

    // Assert: nothing hung, the refusals were true, and the ledger agrees.
    let mut refusals = 0;
    let mut longest = Duration::ZERO;
    for (i, status, body, taken, _) in &answers {
        match status {
            200 => assert_eq!(body["status"], "sent"),
            503 => refusals += 1,
            other => panic!("send {i}: {other} {body}"),
        }
        assert!(*taken < ANSWER_BOUND, "send {i} took {taken:?}");
        longest = longest.max(*taken);
    }
    assert!(refusals > 0, "sends during the outage were refused");
    let with_index: Vec<(usize, u16, Value)> = answers
        .iter()
        .map(|(i, status, body, ..)| (*i, *status, body.clone()))
        .collect();
    refusals_were_not_sent(&app, &with_index);
    until_settled(&db).await;
    let saw = VendorSaw::stand_in(&app.vendor, Duration::from_secs(5));
    let check = check_ledger_against_vendor(&db.db, &saw, 0).await;
    assert_eq!(
        check.count("sent") as usize,
        answers.iter().filter(|(_, s, ..)| *s == 200).count(),
        "every send told `sent` is charged, and no other"
    );
    eprintln!(
        "outage of {OUTAGE:?}: {} sends, {refusals} refused, the longest wait {longest:?}, \
         recovered {recovered:?} after the restart",
        answers.len()
    );
    app.stop().await;
}
