//! Renewal reminders end to end: rules crossing thresholds, one notification per state
//! change (also with two instances on one database), durable delivery across a
//! restart, and the vendor's Quota Exhausted firing the critical alert.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Row;
use tollgate::alerts::{AlertEngine, Step};
use tollgate::config::{load_str, Settings};
use tollgate::domain::LedgerMode;
use tollgate::ledger::Ledger;
use tollgate::store::Db;
use tollgate_notify::{EventKind, Severity, Status};

use crate::app::{spawn_app_with, AppOptions, TestApp, ADMIN_TOKEN, SHOP_TOKEN};
use crate::helpers::{add_package, channel, Backend, PackageSpec, TestDb};
use crate::notifiers::{verify_webhook, Receiver};
use crate::on_both_backends;
use crate::vendor::Reply;

on_both_backends!(
    a_package_drawn_down_past_a_threshold_notifies_once_and_a_new_package_resolves_it_once,
    a_firing_alert_repeats_after_repeat_every_and_not_once_acknowledged,
    two_instances_crossing_the_threshold_at_once_notify_once,
    a_receiver_down_at_first_gets_the_notification_after_a_restart,
    the_vendor_answering_quota_exhausted_fires_the_critical_alert_at_once,
    evaluations_racing_registrations_and_reconciliations_notify_each_transition_once,
    a_channel_drawn_into_its_reserve_notifies_once_and_a_new_package_resolves_it,
);

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

/// Waits (bounded) until `sql` counts at least `at_least`.
async fn wait_for_count(db: &Db, sql: &str, at_least: i64) {
    for _ in 0..300 {
        if count(db, sql).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sql} never reached {at_least}: {}", count(db, sql).await);
}

fn webhook(name: &str, url: &str) -> String {
    format!(
        r#"
        [[notifiers]]
        name = "{name}"
        type = "webhook"
        url = "{url}"
        secret_env = "TEST_WEBHOOK_SECRET"
        "#
    )
}

fn low_quota_rule(notify: &str, ratio: f64) -> String {
    format!(
        r#"
        [[alert_rules]]
        name = "quota-low"
        channels = ["sms_code"]
        remaining_ratio_below = {ratio}
        severity = "warning"
        notify = [{notify}]
        repeat_every = "24h"
        "#
    )
}

async fn a_package_drawn_down_past_a_threshold_notifies_once_and_a_new_package_resolves_it_once(
    backend: Backend,
) {
    // Arrange: a rule at 50 % with two notifiers, a webhook and a script.
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("events.jsonl");
    let extra = format!(
        r#"
        {rule}
        {hook}
        [[notifiers]]
        name = "ops-script"
        type = "exec"
        command = "sh"
        args = ["-c", "cat >> {lines}; echo >> {lines}"]
        "#,
        rule = low_quota_rule(r#""ops-hook", "ops-script""#, 0.5),
        hook = webhook("ops-hook", &receiver.url("/hook")),
        lines = lines.display(),
    );
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: extra,
            ..AppOptions::default()
        },
    )
    .await;
    let db = app.ledger.db().clone();
    let sms = channel("sms_code");
    app.add_package("sms_code", 10, "1.00").await;
    for _ in 0..5 {
        assert_eq!(app.send_login_code().await.status(), 200);
    }
    app.alerts.evaluate_channel(&sms).await.unwrap();
    assert_eq!(
        count(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM notifications").await,
        0,
        "50 % left is not below 50 %"
    );

    // Act: the sixth send crosses the threshold; more sends follow.
    assert_eq!(app.send_login_code().await.status(), 200);
    let firing = receiver.wait_for(1).await;
    for _ in 0..2 {
        assert_eq!(app.send_login_code().await.status(), 200);
    }
    app.alerts.evaluate_channel(&sms).await.unwrap();

    // Assert: one firing notification per notifier, and no more.
    assert_eq!(
        count(
            &db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM notifications WHERE rule = 'quota-low'"
        )
        .await,
        2
    );
    let event = verify_webhook(&firing[0]);
    assert_eq!(
        (event.event, event.status),
        (EventKind::QuotaLow, Status::Firing)
    );
    assert_eq!(event.rule.as_deref(), Some("quota-low"));
    assert_eq!(event.severity, Severity::Warning);
    assert_eq!(
        (event.remaining_units, event.purchased_units),
        (Some(4), Some(10))
    );
    assert_eq!(event.remaining_ratio, Some(0.4));
    assert!(event.suggested_units.is_some());
    let alerts: Value = app.get_json("/v1/alerts", SHOP_TOKEN).await;
    let low = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["rule"] == "quota-low" && a["channel"] == "sms_code")
        .expect("the alert is listed")
        .clone();
    assert_eq!(low["state"], "firing");
    let id = low["id"].as_str().unwrap();
    let ack = |token: &'static str, id: String| {
        let request = app
            .http
            .post(app.url(&format!("/v1/alerts/{id}/ack")))
            .bearer_auth(token);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        ack(SHOP_TOKEN, id.to_owned()).await.status(),
        403,
        "acknowledging needs an admin"
    );
    assert_eq!(ack(ADMIN_TOKEN, "alr_missing".into()).await.status(), 404);
    let acked: Value = ack(ADMIN_TOKEN, id.to_owned()).await.json().await.unwrap();
    assert_eq!(acked["acknowledged_by"], "ops");

    // Act: a new package lifts the channel above the threshold.
    app.add_package("sms_code", 10, "1.00").await;

    // Assert: exactly one resolved notification per notifier.
    wait_for_count(
        &db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM notifications WHERE delivered_at IS NOT NULL",
        4,
    )
    .await;
    app.alerts.evaluate_channel(&sms).await.unwrap();
    assert_eq!(
        count(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM notifications").await,
        4
    );
    let received = receiver.received();
    assert_eq!(received.len(), 2, "one firing and one resolved webhook");
    let resolved = verify_webhook(&received[1]);
    assert_eq!(
        (resolved.event, resolved.status),
        (EventKind::QuotaRecovered, Status::Resolved)
    );
    assert_ne!(resolved.id, event.id);
    let script: Vec<Value> = std::fs::read_to_string(&lines)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        script.len(),
        2,
        "the script got the same two events: {script:?}"
    );
    assert_eq!(script[0]["id"], event.id.as_str());
    assert_eq!(script[1]["status"], "resolved");
    assert_eq!(
        count(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM notification_attempts WHERE outcome = 'delivered'").await,
        4
    );
    assert_eq!(
        ack(ADMIN_TOKEN, id.to_owned()).await.status(),
        409,
        "a resolved alert cannot be acknowledged"
    );
    app.stop().await;
}

/// Settings for engine-level tests: one channel, one rule, one notifier that is never
/// built (the engine only queues; no worker runs here).
fn engine_settings(db_url: &str) -> Settings {
    load_str(
        "engine test",
        &format!(
            r#"
            [database]
            url = "{db_url}"
            [[channels]]
            name = "sms_code"
            kind = "sms_code"
            url = "http://127.0.0.1:9/dxjk"
            signature = "【卡池】"
            {rule}
            {hook}
            "#,
            rule = low_quota_rule(r#""hook""#, 0.2),
            hook = webhook("hook", "http://127.0.0.1:9/hook"),
        ),
        &|_| None,
    )
    .unwrap()
}

async fn a_firing_alert_repeats_after_repeat_every_and_not_once_acknowledged(backend: Backend) {
    let db = TestDb::new(backend).await;
    let ledger = db.ledger(LedgerMode::Enforce);
    let sms = channel("sms_code");
    add_package(
        &ledger,
        PackageSpec {
            units: 100,
            ..PackageSpec::default()
        },
    )
    .await;
    ledger.reconcile(&sms, 10, None).await.unwrap();
    let start: DateTime<Utc> = Utc::now();
    let now = Arc::new(Mutex::new(start));
    let clock_now = now.clone();
    let engine = AlertEngine::new(
        ledger.clone(),
        &engine_settings(db.url.expose()),
        Arc::new(move || *clock_now.lock().unwrap()),
    );
    let at = |hours: i64| *now.lock().unwrap() = start + chrono::Duration::hours(hours);
    let steps = |changes: Vec<tollgate::alerts::Evaluation>| -> Vec<(String, Step)> {
        changes.into_iter().map(|c| (c.rule, c.step)).collect()
    };
    let low = || ("quota-low".to_owned(), Step::Fire);

    assert_eq!(steps(engine.evaluate_channel(&sms).await.unwrap()), [low()]);
    at(1);
    assert_eq!(steps(engine.evaluate_channel(&sms).await.unwrap()), []);
    at(24);
    assert_eq!(
        steps(engine.evaluate_channel(&sms).await.unwrap()),
        [("quota-low".to_owned(), Step::Repeat)]
    );
    let id = engine
        .list()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.rule == "quota-low")
        .unwrap()
        .id;
    assert!(matches!(
        engine.acknowledge(&id, "ops").await.unwrap(),
        tollgate::alerts::AckOutcome::Acknowledged(_)
    ));
    at(24 * 5);
    assert_eq!(
        steps(engine.evaluate_channel(&sms).await.unwrap()),
        [],
        "acknowledged: no repeat"
    );

    add_package(
        &ledger,
        PackageSpec {
            units: 1000,
            ..PackageSpec::default()
        },
    )
    .await;
    assert_eq!(
        steps(engine.evaluate_channel(&sms).await.unwrap()),
        [("quota-low".to_owned(), Step::Resolve)]
    );
    assert_eq!(steps(engine.evaluate_channel(&sms).await.unwrap()), []);
    // Fire, repeat, resolve: three notifications, each with its own event id.
    assert_eq!(
        count(
            &db.db,
            "SELECT CAST(COUNT(DISTINCT event_id) AS BIGINT) FROM notifications"
        )
        .await,
        3
    );
}

async fn two_instances_crossing_the_threshold_at_once_notify_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let first = db.ledger(LedgerMode::Enforce);
    let second = Ledger::new(db.another_instance().await, LedgerMode::Enforce);
    let sms = channel("sms_code");
    add_package(
        &first,
        PackageSpec {
            units: 100,
            ..PackageSpec::default()
        },
    )
    .await;
    let settings = engine_settings(db.url.expose());
    let system = || -> tollgate::domain::Clock { Arc::new(Utc::now) };
    let engines = [
        AlertEngine::new(first.clone(), &settings, system()),
        AlertEngine::new(second.clone(), &settings, system()),
    ];
    // Both instances have seen the channel healthy...
    for engine in &engines {
        assert!(engine.evaluate_channel(&sms).await.unwrap().is_empty());
    }
    // ...then it drops below the threshold and both evaluate at once, several times.
    first.reconcile(&sms, 5, None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let engine = engines[i % 2].clone();
        let sms = sms.clone();
        tasks.push(tokio::spawn(async move {
            engine.evaluate_channel(&sms).await.unwrap()
        }));
    }
    let mut fired = 0;
    for task in tasks {
        fired += task
            .await
            .unwrap()
            .iter()
            .filter(|c| c.step == Step::Fire)
            .count();
    }
    assert_eq!(fired, 1, "one instance made the change");
    assert_eq!(
        count(&db.db, "SELECT CAST(COUNT(*) AS BIGINT) FROM notifications").await,
        1,
        "one notification, not one per instance"
    );
}

async fn a_receiver_down_at_first_gets_the_notification_after_a_restart(backend: Backend) {
    // A port with nothing listening yet.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let extra = format!(
        r#"
        [alerts]
        retry_initial = "1s"
        retry_max = "2s"
        {rule}
        {hook}
        "#,
        rule = low_quota_rule(r#""hook""#, 0.5),
        hook = webhook("hook", &format!("http://{addr}/hook")),
    );
    let mut first = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: extra.clone(),
            ..AppOptions::default()
        },
    )
    .await;
    let db = first.db.db.clone();
    let sms = channel("sms_code");
    first.add_package("sms_code", 10, "1.00").await;
    first.ledger.reconcile(&sms, 2, None).await.unwrap();
    first.alerts.evaluate_channel(&sms).await.unwrap();
    wait_for_count(
        &db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM notification_attempts WHERE outcome = 'failed'",
        1,
    )
    .await;
    first.stop().await;

    // The receiver comes back, and tollgate starts again on the same database.
    let receiver = Receiver::start_on(addr).await;
    let mut second = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: extra,
            database_url: Some(first.db.url.expose().to_owned()),
            ..AppOptions::default()
        },
    )
    .await;
    let received = receiver.wait_for(1).await;
    let event = verify_webhook(&received[0]);
    let stored: String = sqlx::query("SELECT event_id FROM notifications")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get("event_id")
        .unwrap();
    assert_eq!(
        event.id, stored,
        "the notification queued before the restart"
    );
    assert_eq!(event.event, EventKind::QuotaLow);
    wait_for_count(
        &db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM notifications WHERE delivered_at IS NOT NULL",
        1,
    )
    .await;
    assert_eq!(
        count(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM notification_attempts WHERE outcome = 'delivered'").await,
        1
    );
    assert_eq!(receiver.received().len(), 1);
    second.stop().await;
    drop(first);
}

async fn the_vendor_answering_quota_exhausted_fires_the_critical_alert_at_once(backend: Backend) {
    let receiver = Receiver::start().await;
    let mut app: TestApp = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: webhook("ops-hook", &receiver.url("/hook")),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("sms_code", 100, "5.00").await;
    app.vendor
        .answer_with(Reply::gateway_error(403, "Quota Exhausted"));

    let response = app.send_login_code().await;
    assert_eq!(response.status(), 402);

    let received = receiver.wait_for(1).await;
    let event = verify_webhook(&received[0]);
    assert_eq!(event.event, EventKind::QuotaExhausted);
    assert_eq!(event.rule.as_deref(), Some("quota.exhausted"));
    assert_eq!(
        (event.severity, event.status),
        (Severity::Critical, Status::Firing)
    );
    assert_eq!(event.remaining_units, Some(0));
    app.stop().await;
}

/// `monthly_report` builds last month's report and hands it to the `report_notify`
/// notifiers through the outbox: once per month, however often the job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_monthly_report_is_delivered_once_through_report_notify() {
    let receiver = Receiver::start().await;
    let extra = format!(
        "{}\n[schedule]\nmonthly_report = \"* * * * * *\"\nreport_notify = [\"finance\"]\n",
        webhook("finance", &receiver.url("/hooks/finance"))
    );
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            extra_toml: extra,
            ..AppOptions::default()
        },
    )
    .await;

    let received = receiver.wait_for(1).await;
    let event = verify_webhook(&received[0]);
    // Every second the job runs again; the report must still be queued only once.
    wait_for_count(
        &app.db.db,
        "SELECT COUNT(*) FROM schedule_runs WHERE job = 'monthly_report' AND outcome = 'succeeded'",
        3,
    )
    .await;

    assert_eq!(event.event, EventKind::ReportMonthly);
    assert!(event.id.starts_with("report-"), "{}", event.id);
    assert!(event.summary.contains("月度费用报告"), "{}", event.summary);
    let html = event.report_html.clone().unwrap_or_default();
    assert!(
        html.contains("<html") && html.contains(&event.id["report-".len()..]),
        "{html}"
    );
    let queued = count(
        &app.db.db,
        "SELECT COUNT(*) FROM notifications WHERE event_id LIKE 'report-%'",
    )
    .await;
    assert_eq!(queued, 1);
}

/// Right after buying 10 units and sending 3, the reminder must not suggest "about 3":
/// it covers `suggest_days` at the burn rate, rounded up to a package the vendor sells,
/// and says how.
#[tokio::test]
async fn a_reminder_suggests_a_package_covering_the_horizon_and_says_how() {
    let receiver = Receiver::start().await;
    let extra = format!(
        "{rule}{hook}\n[alerts]\nsuggest_days = 30\n",
        rule = low_quota_rule(r#""buyer-hook""#, 0.8),
        hook = webhook("buyer-hook", &receiver.url("/hook")),
    );
    let mut app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            extra_toml: extra,
            sms_code_keys: "package_sizes = [5000, 1000, 10000]".into(),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("sms_code", 10, "1.00").await;
    for _ in 0..3 {
        assert_eq!(app.send_login_code().await.status(), 200);
    }

    let event = verify_webhook(&receiver.wait_for(1).await[0]);

    // 3 a day (the burn rate's window is at least a day) × 30 days = 90: the smallest
    // package that covers it is 1000.
    assert_eq!(event.suggested_units, Some(1000));
    assert!(
        event
            .summary
            .contains("按近 7 天日均 3 条 × 30 天 = 90 条，建议购买 1000 条套餐"),
        "{}",
        event.summary
    );
    assert_eq!(event.timezone, "Asia/Shanghai");
    assert_eq!(event.channel_kind.as_deref(), Some("sms_code"));
    app.stop().await;
}

/// Many evaluations at once, on two engines (two instances on PostgreSQL), while the
/// channel's quota goes low and back again and again: a reconciliation to 5 of 100 left
/// (the 20 % rule holds), then a new package of 100 (it does not), five times over,
/// each change followed by an evaluation as `POST /v1/packages` does.
///
/// An evaluation that decided on facts read before it took the state row's lock could
/// fire after a newer evaluation had seen the package and found nothing to do: an
/// alert left firing on a healthy channel, or a fire → resolve → fire → resolve for one
/// change. Decided on facts read under the lock, the notifications alternate fire,
/// resolve, fire…, there are at most as many as the condition changed, and the state
/// left is the one the final quota calls for.
async fn evaluations_racing_registrations_and_reconciliations_notify_each_transition_once(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let first = db.ledger(LedgerMode::Enforce);
    let second = match backend {
        Backend::Postgres => Ledger::new(db.another_instance().await, LedgerMode::Enforce),
        // SQLite serves one instance: two engines over one ledger.
        Backend::Sqlite => first.clone(),
    };
    let sms = channel("sms_code");
    add_package(
        &first,
        PackageSpec {
            units: 100,
            ..PackageSpec::default()
        },
    )
    .await;
    let settings = engine_settings(db.url.expose());
    let engines = [
        AlertEngine::new(first.clone(), &settings, Arc::new(Utc::now)),
        AlertEngine::new(second.clone(), &settings, Arc::new(Utc::now)),
    ];
    assert!(engines[0].evaluate_channel(&sms).await.unwrap().is_empty());

    // Evaluators on both engines, evaluating as fast as they can until the changes end.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut evaluators = Vec::new();
    for i in 0..16 {
        let (engine, sms, done) = (engines[i % 2].clone(), sms.clone(), done.clone());
        evaluators.push(tokio::spawn(async move {
            // Bounded, whatever happens to `done`.
            for _ in 0..2_000 {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                engine.evaluate_channel(&sms).await.unwrap();
            }
        }));
    }
    let cycles = 10;
    let mut changes = 0;
    for cycle in 0..cycles {
        let ledger = [&first, &second][cycle % 2];
        ledger.reconcile(&sms, 5, None).await.unwrap();
        engines[cycle % 2].evaluate_channel(&sms).await.unwrap();
        add_package(
            ledger,
            PackageSpec {
                units: 100,
                purchased_at: "2026-01-02T00:00:00Z",
                ..PackageSpec::default()
            },
        )
        .await;
        engines[(cycle + 1) % 2]
            .evaluate_channel(&sms)
            .await
            .unwrap();
        changes += 2;
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for evaluator in evaluators {
        evaluator.await.unwrap();
    }

    // The notifications, in the order their transitions were made: an event's id is a
    // UUIDv7 made under the state row's lock, and the ids one process makes are ordered
    // by their creation (both engines run in this process).
    let rows = sqlx::query("SELECT event_id, payload FROM notifications WHERE rule = 'quota-low'")
        .fetch_all(db.db.pool())
        .await
        .unwrap();
    let mut steps: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            let event: Value = serde_json::from_str(&row.get::<String, _>("payload")).unwrap();
            let status = event["status"].as_str().unwrap().to_owned();
            (row.get::<String, _>("event_id"), status)
        })
        .collect();
    steps.sort();
    let statuses: Vec<&str> = steps.iter().map(|(_, status)| status.as_str()).collect();
    assert!(!statuses.is_empty(), "the first drop fired");
    for (i, status) in statuses.iter().enumerate() {
        let expected = if i % 2 == 0 { "firing" } else { "resolved" };
        assert_eq!(
            *status, expected,
            "fire, resolve, fire… with no step twice in a row: {statuses:?}"
        );
    }
    assert!(
        statuses.len() <= changes,
        "at most one notification per change of the condition ({changes}): {statuses:?}"
    );
    let quota = first.quota(&sms).await.unwrap();
    assert!(
        quota.remaining_ratio >= 0.2,
        "the last change was a purchase"
    );
    let state = tollgate::alerts::AlertEngine::list(&engines[0])
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.rule == "quota-low")
        .expect("the rule's state is stored");
    assert_ne!(
        state.state,
        tollgate::alerts::AlertState::Firing,
        "the state left matches the final quota ({quota:?}): {statuses:?}"
    );
}

async fn a_channel_drawn_into_its_reserve_notifies_once_and_a_new_package_resolves_it(
    backend: Backend,
) {
    // Arrange: `sms_code` keeps 10 % for codes, and a rule fires when the reserve is entered.
    let receiver = Receiver::start().await;
    let extra = format!(
        r#"
        [[alert_rules]]
        name = "reserve-entered"
        channels = ["sms_code"]
        reserve_entered = true
        severity = "critical"
        notify = ["ops-hook"]
        {hook}
        "#,
        hook = webhook("ops-hook", &receiver.url("/hook")),
    );
    let app = spawn_app_with(
        backend,
        AppOptions {
            extra_toml: extra,
            sms_code_keys: r#"reserve_critical = "10%""#.into(),
            ..AppOptions::default()
        },
    )
    .await;
    let db = app.ledger.db().clone();
    let sms = channel("sms_code");
    let rule_count =
        "SELECT CAST(COUNT(*) AS BIGINT) FROM notifications WHERE rule = 'reserve-entered'";
    app.add_package("sms_code", 20, "0.90").await;
    assert_eq!(app.quota("sms_code").await["reserve_units"], 2);
    for _ in 0..17 {
        assert_eq!(app.send_login_code().await.status(), 200);
    }
    app.alerts.evaluate_channel(&sms).await.unwrap();
    assert_eq!(
        count(&db, rule_count).await,
        0,
        "3 left is above the 2 kept"
    );

    // Act: the 18th send leaves only the reserve; codes go on taking it.
    assert_eq!(app.send_login_code().await.status(), 200);
    let firing = receiver.wait_for(1).await;
    assert_eq!(app.send_login_code().await.status(), 200);
    app.alerts.evaluate_channel(&sms).await.unwrap();

    // Assert: one firing notification, with the figures and what it means.
    assert_eq!(count(&db, rule_count).await, 1);
    let event = verify_webhook(&firing[0]);
    assert_eq!(event.status, Status::Firing);
    assert_eq!(event.rule.as_deref(), Some("reserve-entered"));
    assert_eq!(event.severity, Severity::Critical);
    assert_eq!(event.remaining_units, Some(2));
    assert!(
        event.summary.contains("为验证码保留的 2 条"),
        "{}",
        event.summary
    );

    // Act: a new package lifts what is left out of the reserve.
    app.add_package("sms_code", 20, "0.90").await;

    // Assert: exactly one resolved notification.
    let received = receiver.wait_for(2).await;
    let resolved = verify_webhook(&received[1]);
    assert_eq!(
        (resolved.status, resolved.rule.as_deref()),
        (Status::Resolved, Some("reserve-entered"))
    );
    assert_eq!(resolved.event, EventKind::QuotaRecovered);
    app.alerts.evaluate_channel(&sms).await.unwrap();
    assert_eq!(count(&db, rule_count).await, 2);
    assert_eq!(receiver.received().len(), 2);
}
