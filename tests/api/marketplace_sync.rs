//! The marketplace's count flowing back into the ledger (SPEC §14): the real server and
//! the sandbox's signature-checking simulation of the Market API, each on port 0; runs
//! recorded, drifts reconciled or only recorded, `ledger.drift` fired and resolved, a
//! wrong secret changing nothing, and two instances reconciling once.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use tokio::net::TcpListener;
use tollgate::config::load_str;
use tollgate::domain::LedgerMode;
use tollgate::ledger::{Ledger, RunOutcome};
use tollgate::marketplace::sandbox::{SANDBOX_ACCESS_KEY_ID, SANDBOX_ACCESS_KEY_SECRET};
use tollgate::marketplace::{MarketError, MarketplaceSync, SyncError, SyncScope};
use tollgate::schedule::{standard_jobs, JobHooks, RunResult};
use tollgate::secret::Secret;
use tollgate::store::Db;
use tollgate::upstream::sandbox::{self, SandboxAccount, SandboxConfig, SandboxHandle};
use tollgate_notify::{EventKind, Severity, Status};

use crate::app::{spawn_app_with, AppOptions, TestApp, WRONG_MARKET_SECRET};
use crate::helpers::{add_package, channel, time, Backend, PackageSpec, TestDb};
use crate::notifiers::{verify_webhook, Receiver};
use crate::on_both_backends;

const PRODUCT: &str = "cmapi00037415";
const SANDBOX_APPCODE: &str = "marketplace-sync-appcode";

on_both_backends!(
    a_drift_of_15_units_becomes_one_reconciliation_and_one_signed_drift_webhook_resolved_once_the_counts_agree,
    with_apply_off_the_run_is_recorded_and_nothing_is_reconciled,
    a_wrong_secret_fails_with_the_clients_message_and_changes_nothing,
    two_runs_at_the_same_moment_reconcile_once,
);

/// The vendor's account as the marketplace counts it: `quota` calls left of `PRODUCT`.
async fn spawn_marketplace(quota: u64) -> SandboxHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    sandbox::spawn(
        listener,
        SandboxConfig {
            appcodes: vec![SandboxAccount {
                appcode: Secret::new(SANDBOX_APPCODE),
                quota,
                product_code: Some(PRODUCT.to_owned()),
            }],
            latency: Duration::ZERO,
            ..SandboxConfig::default()
        },
    )
    .await
}

/// `[marketplace]` at the sandbox, `sms_code` sold as `PRODUCT`, and a webhook.
async fn spawn_app_reading(
    backend: Backend,
    marketplace: &SandboxHandle,
    apply: bool,
    secret_env: &str,
    receiver: &Receiver,
) -> TestApp {
    spawn_app_with(
        backend,
        AppOptions {
            extra_toml: format!(
                r#"
                [marketplace]
                access_key_id_env = "TEST_MARKET_KEY_ID"
                access_key_secret_env = "{secret_env}"
                endpoint = "{endpoint}"
                apply = {apply}
                drift_alert_units = 10

                [[notifiers]]
                name = "ops-hook"
                type = "webhook"
                url = "{hook}"
                secret_env = "TEST_WEBHOOK_SECRET"
                "#,
                endpoint = marketplace.url(""),
                hook = receiver.url("/hook"),
            ),
            sms_code_keys: format!("product_code = \"{PRODUCT}\""),
            ..AppOptions::default()
        },
    )
    .await
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

const RUNS: &str = "SELECT CAST(COUNT(*) AS BIGINT) FROM marketplace_runs";
const RECONCILIATIONS: &str = "SELECT CAST(COUNT(*) AS BIGINT) FROM reconciliations";

/// One run of the server's `marketplace_sync` job, as the scheduler would start it.
async fn run_the_job(app: &TestApp) -> tollgate::marketplace::SyncOutcome {
    app.marketplace
        .as_ref()
        .expect("[marketplace] is configured")
        .try_run_once(SyncScope::Every)
        .await
}

async fn a_drift_of_15_units_becomes_one_reconciliation_and_one_signed_drift_webhook_resolved_once_the_counts_agree(
    backend: Backend,
) {
    // Arrange: 100 units in the ledger, 85 at the marketplace (15 were used around
    // tollgate, say from the marketplace's debug console).
    let marketplace = spawn_marketplace(85).await;
    let receiver = Receiver::start().await;
    let app = spawn_app_reading(
        backend,
        &marketplace,
        true,
        "TEST_MARKET_KEY_SECRET",
        &receiver,
    )
    .await;
    app.add_package("sms_code", 100, "10.00").await;

    // Act: the job runs.
    let outcome = run_the_job(&app).await;

    // Assert: the run is recorded with both counts and applied as one reconciliation.
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let [run] = outcome.runs.as_slice() else {
        panic!("one run: {:?}", outcome.runs);
    };
    assert_eq!(run.channel, "sms_code");
    assert_eq!(run.product_code, PRODUCT);
    assert_eq!((run.marketplace_remaining, run.ledger_remaining), (85, 100));
    assert_eq!(run.drift, -15);
    assert_eq!((run.total_quota, run.total_usage), (85, 0));
    assert_eq!(run.total_capacity, Some(85));
    assert!(run.confirmed);
    assert_eq!(run.outcome, RunOutcome::Reconciled);
    assert!(run.applied);
    assert_eq!(run.adjusted_units, 15);
    assert!(!run.request_ids.is_empty());
    let db = app.ledger.db().clone();
    assert_eq!(count(&db, RECONCILIATIONS).await, 1);
    let note: String = sqlx::query("SELECT note FROM reconciliations")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get("note")
        .unwrap();
    assert!(
        note.starts_with(&format!("marketplace DescribeApiMetering {PRODUCT} 20")),
        "{note}"
    );
    let quota = app.quota("sms_code").await;
    assert_eq!(
        (&quota["remaining"], &quota["used"], &quota["reconciled"]),
        (&Value::from(85), &Value::from(0), &Value::from(-15))
    );
    assert_eq!(quota["marketplace_remaining"], 85);
    assert_eq!(quota["marketplace_drift"], -15);

    // And one signed `ledger.drift` webhook says so.
    let received = receiver.wait_for(1).await;
    assert_eq!(received.len(), 1);
    let event = verify_webhook(&received[0]);
    assert_eq!(
        (event.event, event.status, event.severity),
        (EventKind::LedgerDrift, Status::Firing, Severity::Warning)
    );
    assert_eq!(event.rule.as_deref(), Some("ledger.drift"));
    assert_eq!(event.channel.as_deref(), Some("sms_code"));
    assert_eq!(
        serde_json::from_str::<Value>(&received[0].body).unwrap()["event"],
        "ledger.drift"
    );
    for expected in [
        "相差 15 条",
        "云市场剩余 85 条，账本剩余 100 条",
        "已按云市场的余量自动对账（调整 15 条）",
        "调试控制台",
    ] {
        assert!(
            event.summary.contains(expected),
            "{expected}: {}",
            event.summary
        );
    }

    // The metrics read the latest run; a channel without a product code has no series.
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tollgate_ledger_drift_units{channel=\"sms_code\"} -15"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_marketplace_remaining_units{channel=\"sms_code\"} 85"),
        "{metrics}"
    );
    assert!(!metrics.contains("tollgate_ledger_drift_units{channel=\"voice_notice\"}"));

    // Act: the next run finds the counts in agreement.
    let again = run_the_job(&app).await;

    // Assert: nothing more is reconciled, and one `resolved` follows.
    assert_eq!(again.runs[0].outcome, RunOutcome::Agreed);
    assert_eq!(again.runs[0].drift, 0);
    assert_eq!(count(&db, RECONCILIATIONS).await, 1);
    assert_eq!(count(&db, RUNS).await, 2);
    let received = receiver.wait_for(2).await;
    let resolved = verify_webhook(&received[1]);
    assert_eq!(
        (resolved.event, resolved.status),
        (EventKind::LedgerDrift, Status::Resolved)
    );
    assert!(
        resolved
            .summary
            .contains("云市场剩余 85 条，账本剩余 85 条"),
        "{}",
        resolved.summary
    );
    run_the_job(&app).await;
    app.alerts.evaluate_all().await.unwrap();
    assert_eq!(receiver.received().len(), 2, "one firing, one resolved");
}

async fn with_apply_off_the_run_is_recorded_and_nothing_is_reconciled(backend: Backend) {
    // Arrange
    let marketplace = spawn_marketplace(85).await;
    let receiver = Receiver::start().await;
    let app = spawn_app_reading(
        backend,
        &marketplace,
        false,
        "TEST_MARKET_KEY_SECRET",
        &receiver,
    )
    .await;
    app.add_package("sms_code", 100, "10.00").await;

    // Act
    let outcome = run_the_job(&app).await;

    // Assert: recorded, drift and all, and the ledger untouched.
    let run = &outcome.runs[0];
    assert_eq!((run.drift, run.outcome), (-15, RunOutcome::Recorded));
    assert!(!run.applied);
    assert_eq!((run.reconciliation_id, run.adjusted_units), (None, 0));
    let db = app.ledger.db().clone();
    assert_eq!(count(&db, RUNS).await, 1);
    assert_eq!(count(&db, RECONCILIATIONS).await, 0);
    let quota = app.quota("sms_code").await;
    assert_eq!(
        (&quota["remaining"], &quota["reconciled"]),
        (&Value::from(100), &Value::from(0))
    );
    assert_eq!(quota["marketplace_drift"], -15);
    let latest = app
        .ledger
        .latest_marketplace_run(&channel("sms_code"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &latest, run,
        "the read interface returns the run as recorded"
    );
    // The drift still warns, and says that nothing was changed.
    let firing = verify_webhook(&receiver.wait_for(1).await[0]);
    assert_eq!(
        (firing.event, firing.status),
        (EventKind::LedgerDrift, Status::Firing)
    );
    assert!(
        firing
            .summary
            .contains("未自动调整（[marketplace] apply = false）"),
        "{}",
        firing.summary
    );

    // Act: the marketplace's count comes back to the ledger's (a package it had not
    // reported, say).
    marketplace.add_quota(SANDBOX_APPCODE, 15);
    let agreed = run_the_job(&app).await;

    // Assert
    assert_eq!(agreed.runs[0].outcome, RunOutcome::Agreed);
    assert_eq!(count(&db, RECONCILIATIONS).await, 0);
    let resolved = verify_webhook(&receiver.wait_for(2).await[1]);
    assert_eq!(
        (resolved.event, resolved.status),
        (EventKind::LedgerDrift, Status::Resolved)
    );
}

/// A configuration file for the command line, on `db`, reading the marketplace at
/// `marketplace` with `apply = true`.
fn cli_config(
    dir: &std::path::Path,
    db: &TestDb,
    marketplace: &SandboxHandle,
) -> std::path::PathBuf {
    let path = dir.join("tollgate.toml");
    std::fs::write(
        &path,
        format!(
            r#"
            [database]
            url = "{db}"

            [marketplace]
            access_key_id_env = "TEST_MARKET_KEY_ID"
            access_key_secret_env = "TEST_MARKET_KEY_SECRET"
            endpoint = "{endpoint}"
            apply = true

            [[channels]]
            name = "voice_notice"
            kind = "voice_notice"
            url = "https://yytz.market.alicloudapi.com/chuangxin/yytz"
            product_code = "{PRODUCT}"

            [[channels]]
            name = "sms_code"
            kind = "sms_code"
            url = "https://dxyzm.market.alicloudapi.com/chuangxin/dxjk"
            signature = "【卡池】"
            "#,
            db = db.url.expose(),
            endpoint = marketplace.url(""),
        ),
    )
    .unwrap();
    path
}

fn tollgate(config: &std::path::Path, secret: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("DATABASE_URL")
        .env("TEST_MARKET_KEY_ID", SANDBOX_ACCESS_KEY_ID)
        .env("TEST_MARKET_KEY_SECRET", secret)
        .output()
        .unwrap()
}

async fn a_wrong_secret_fails_with_the_clients_message_and_changes_nothing(backend: Backend) {
    // Arrange: a drift that a run with the right key would reconcile.
    let marketplace = spawn_marketplace(85).await;
    let db = TestDb::new(backend).await;
    let ledger = db.ledger(LedgerMode::Enforce);
    add_package(
        &ledger,
        PackageSpec {
            channel: "voice_notice",
            units: 100,
            ..PackageSpec::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), &db, &marketplace);

    // Act
    let output = tollgate(
        &config,
        WRONG_MARKET_SECRET,
        &["reconcile", "--from-marketplace", "--format", "json"],
    );

    // Assert: it fails, says why and for which channel, and names no secret.
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: channel voice_notice (product cmapi00037415): the marketplace refused the request signature (SignatureDoesNotMatch): the AccessKey secret is not the one of this AccessKey ID"),
        "{stderr}"
    );
    let everything = format!("{stderr}{}", String::from_utf8_lossy(&output.stdout));
    assert!(!everything.contains(WRONG_MARKET_SECRET), "{everything}");
    assert!(!everything.contains(SANDBOX_ACCESS_KEY_ID), "{everything}");
    // And nothing changed: no run, no reconciliation, the same count.
    assert_eq!(count(&db.db, RUNS).await, 0);
    assert_eq!(count(&db.db, RECONCILIATIONS).await, 0);
    assert_eq!(
        ledger
            .quota(&channel("voice_notice"))
            .await
            .unwrap()
            .remaining,
        100
    );

    // The same run with the right secret reconciles, and prints each channel.
    let output = tollgate(
        &config,
        SANDBOX_ACCESS_KEY_SECRET,
        &["reconcile", "--from-marketplace", "--format", "json"],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let runs: Value = serde_json::from_slice(&output.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    assert_eq!(
        runs.len(),
        1,
        "only the channel with a product_code: {runs:?}"
    );
    assert_eq!(runs[0]["channel"], "voice_notice");
    assert_eq!(
        (
            &runs[0]["marketplace_remaining"],
            &runs[0]["ledger_remaining"],
            &runs[0]["drift"]
        ),
        (&Value::from(85), &Value::from(100), &Value::from(-15))
    );
    assert_eq!(
        (&runs[0]["applied"], &runs[0]["outcome"]),
        (&Value::from(true), &Value::from("reconciled"))
    );
    assert_eq!(count(&db.db, RECONCILIATIONS).await, 1);
}

// The command runs in a process of its own while this test's runtime serves the
// sandbox: a runtime of more than one thread keeps serving while the test waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_command_keeps_the_consoles_form_and_shows_a_table() {
    let marketplace = spawn_marketplace(85).await;
    let db = TestDb::new(Backend::Sqlite).await;
    let ledger = db.ledger(LedgerMode::Enforce);
    for channel in ["voice_notice", "sms_code"] {
        add_package(
            &ledger,
            PackageSpec {
                channel,
                units: 100,
                ..PackageSpec::default()
            },
        )
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = cli_config(dir.path(), &db, &marketplace);
    let secret = SANDBOX_ACCESS_KEY_SECRET;

    let table = tollgate(&config, secret, &["reconcile", "--from-marketplace"]);
    let without_code = tollgate(
        &config,
        secret,
        &["reconcile", "--from-marketplace", "--channel", "sms_code"],
    );
    let mixed = tollgate(
        &config,
        secret,
        &["reconcile", "--from-marketplace", "--remaining", "5"],
    );
    let console = tollgate(
        &config,
        secret,
        &[
            "reconcile",
            "--channel",
            "sms_code",
            "--remaining",
            "90",
            "--format",
            "json",
        ],
    );

    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8(table.stdout).unwrap();
    for expected in [
        "marketplace_remaining",
        "ledger_remaining",
        "drift",
        "applied",
        "voice_notice",
        "-15",
        "yes",
    ] {
        assert!(text.contains(expected), "{expected} missing from\n{text}");
    }
    assert!(!without_code.status.success());
    assert!(
        String::from_utf8_lossy(&without_code.stderr)
            .contains("channel sms_code has no product_code"),
        "{}",
        String::from_utf8_lossy(&without_code.stderr)
    );
    assert!(!mixed.status.success(), "--remaining is the console's form");
    assert!(
        console.status.success(),
        "{}",
        String::from_utf8_lossy(&console.stderr)
    );
    let record: Value = serde_json::from_slice(&console.stdout).unwrap();
    assert_eq!(record["adjusted_units"], 10);
}

async fn two_runs_at_the_same_moment_reconcile_once(backend: Backend) {
    // Arrange: two instances on one database, each with its own client.
    let marketplace = spawn_marketplace(85).await;
    let test = TestDb::new(backend).await;
    let settings = settings_reading(&test, &marketplace);
    let first = Ledger::new(test.db.clone(), LedgerMode::Enforce);
    let second = Ledger::new(test.another_instance().await, LedgerMode::Enforce);
    add_package(
        &first,
        PackageSpec {
            channel: "voice_notice",
            units: 100,
            ..PackageSpec::default()
        },
    )
    .await;
    let sync = |ledger: &Ledger| {
        MarketplaceSync::from_settings(&settings, ledger.clone(), &market_env)
            .unwrap()
            .unwrap()
    };
    let (a, b) = (sync(&first), sync(&second));

    // Act
    let (a, b) = tokio::join!(
        a.try_run_once(SyncScope::Every),
        b.try_run_once(SyncScope::Every)
    );

    // Assert: both recorded, one reconciled; the second found the counts agreeing.
    let mut outcomes: Vec<RunOutcome> = a
        .runs
        .iter()
        .chain(&b.runs)
        .map(|run| run.outcome)
        .collect();
    outcomes.sort_by_key(|o| o.as_str());
    assert_eq!(outcomes, [RunOutcome::Agreed, RunOutcome::Reconciled]);
    assert_eq!(count(&test.db, RECONCILIATIONS).await, 1);
    assert_eq!(
        first
            .quota(&channel("voice_notice"))
            .await
            .unwrap()
            .remaining,
        85
    );
}

fn market_env(key: &str) -> Option<String> {
    match key {
        "TEST_MARKET_KEY_ID" => Some(SANDBOX_ACCESS_KEY_ID.to_owned()),
        "TEST_MARKET_KEY_SECRET" => Some(SANDBOX_ACCESS_KEY_SECRET.to_owned()),
        _ => None,
    }
}

/// Settings with `[marketplace]` at `marketplace` (apply on) and `voice_notice` sold
/// as `PRODUCT`, on `test`'s database.
fn settings_reading(test: &TestDb, marketplace: &SandboxHandle) -> tollgate::config::Settings {
    load_str(
        "test",
        &format!(
            r#"
            [database]
            url = "{db}"

            [marketplace]
            access_key_id_env = "TEST_MARKET_KEY_ID"
            access_key_secret_env = "TEST_MARKET_KEY_SECRET"
            endpoint = "{endpoint}"
            apply = true

            [[channels]]
            name = "voice_notice"
            kind = "voice_notice"
            url = "https://yytz.market.alicloudapi.com/chuangxin/yytz"
            product_code = "{PRODUCT}"
            "#,
            db = test.url.expose(),
            endpoint = marketplace.url(""),
        ),
        &|_| None,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_running_the_job_at_the_same_due_time_reconcile_once() {
    // Arrange: two schedulers with the standard jobs on one PostgreSQL database.
    let marketplace = spawn_marketplace(85).await;
    let test = TestDb::new(Backend::Postgres).await;
    let settings = settings_reading(&test, &marketplace);
    assert_eq!(settings.schedule.marketplace_sync.as_str(), "0 * * * *");
    let ledgers = [
        Ledger::new(test.db.clone(), LedgerMode::Enforce),
        Ledger::new(test.another_instance().await, LedgerMode::Enforce),
    ];
    add_package(
        &ledgers[0],
        PackageSpec {
            channel: "voice_notice",
            units: 100,
            ..PackageSpec::default()
        },
    )
    .await;
    let [first, second] = ledgers.map(|ledger| {
        let sync = MarketplaceSync::from_settings(&settings, ledger.clone(), &market_env)
            .unwrap()
            .unwrap();
        standard_jobs(
            &settings,
            ledger,
            JobHooks::default().with_marketplace_sync(sync),
        )
    });
    assert!(first.jobs().any(|job| job.name() == "marketplace_sync"));
    // Both start at 09:30 (the 09:00 slot came before the job existed).
    let started = time("2026-11-15T09:30:00Z");
    let (a, b) = tokio::join!(first.try_run_once(started), second.try_run_once(started));
    assert_eq!(a.unwrap().ran() + b.unwrap().ran(), 0);

    // Act: both reach 10:00.
    let due = time("2026-11-15T10:00:00Z");
    let (a, b) = tokio::join!(first.try_run_once(due), second.try_run_once(due));

    // Assert: one ran it, and it reconciled once.
    let runs: Vec<_> = a
        .unwrap()
        .runs
        .into_iter()
        .chain(b.unwrap().runs)
        .filter(|run| run.job == "marketplace_sync")
        .collect();
    // The other either lost the claim or, coming later, found the run recorded.
    let ran: Vec<_> = runs
        .iter()
        .filter(|run| run.result != RunResult::ClaimedElsewhere)
        .collect();
    assert_eq!(ran.len(), 1, "{runs:?}");
    assert_eq!(ran[0].result, RunResult::Succeeded);
    assert_eq!(count(&test.db, RUNS).await, 1);
    assert_eq!(count(&test.db, RECONCILIATIONS).await, 1);
    assert_eq!(
        ledgers_remaining(&test).await,
        85,
        "the ledger holds the marketplace's count"
    );
}

async fn ledgers_remaining(test: &TestDb) -> i64 {
    test.ledger(LedgerMode::Enforce)
        .quota(&channel("voice_notice"))
        .await
        .unwrap()
        .remaining
}

#[tokio::test]
async fn a_wrong_secret_fails_the_job_with_the_clients_message() {
    let marketplace = spawn_marketplace(85).await;
    let receiver = Receiver::start().await;
    let app = spawn_app_reading(
        Backend::Sqlite,
        &marketplace,
        true,
        "TEST_MARKET_WRONG_SECRET",
        &receiver,
    )
    .await;
    app.add_package("sms_code", 100, "10.00").await;

    let outcome = run_the_job(&app).await;

    assert!(outcome.runs.is_empty());
    assert!(
        matches!(
            outcome.failures[0].error,
            SyncError::Market(MarketError::WrongSecret { .. })
        ),
        "{:?}",
        outcome.failures
    );
    let message = outcome.into_result().unwrap_err().to_string();
    assert!(
        message.contains("the marketplace refused the request signature (SignatureDoesNotMatch)"),
        "{message}"
    );
    assert_eq!(count(app.ledger.db(), RUNS).await, 0);
    assert_eq!(count(app.ledger.db(), RECONCILIATIONS).await, 0);
    assert_eq!(app.quota("sms_code").await["remaining"], 100);
    assert!(receiver.received().is_empty(), "no drift was seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_marketplace_sync_on_its_schedule_only_when_the_marketplace_is_read() {
    // Every second (6 fields, seconds first), so that the test waits briefly.
    let marketplace = spawn_marketplace(100).await;
    let receiver = Receiver::start().await;
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            extra_toml: format!(
                r#"
                [schedule]
                marketplace_sync = "* * * * * *"

                [marketplace]
                access_key_id_env = "TEST_MARKET_KEY_ID"
                access_key_secret_env = "TEST_MARKET_KEY_SECRET"
                endpoint = "{}"

                [[notifiers]]
                name = "ops-hook"
                type = "webhook"
                url = "{}"
                secret_env = "TEST_WEBHOOK_SECRET"
                "#,
                marketplace.url(""),
                receiver.url("/hook"),
            ),
            sms_code_keys: format!("product_code = \"{PRODUCT}\""),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("sms_code", 100, "10.00").await;
    let db = app.ledger.db().clone();
    let succeeded = "SELECT CAST(COUNT(*) AS BIGINT) FROM schedule_runs \
                     WHERE job = 'marketplace_sync' AND outcome = 'succeeded'";
    for _ in 0..100 {
        if count(&db, RUNS).await >= 1 && count(&db, succeeded).await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        count(&db, succeeded).await >= 1,
        "the job ran on its schedule"
    );
    let latest = app
        .ledger
        .latest_marketplace_run(&channel("sms_code"))
        .await
        .unwrap()
        .expect("the job recorded a run");
    assert_eq!(latest.marketplace_remaining, 100);

    // Without [marketplace] the job is not scheduled, even when handed a sync.
    let test = TestDb::new(Backend::Sqlite).await;
    let with = settings_reading(&test, &marketplace);
    let sync = MarketplaceSync::from_settings(&with, test.ledger(LedgerMode::Enforce), &market_env)
        .unwrap()
        .unwrap();
    let without = load_str(
        "test",
        &format!(
            "[database]\nurl = \"{}\"\n[[channels]]\nname = \"voice_notice\"\nkind = \"voice_notice\"\nurl = \"https://a\"\nproduct_code = \"{PRODUCT}\"\n",
            test.url.expose()
        ),
        &|_| None,
    )
    .unwrap();
    assert!(MarketplaceSync::from_settings(
        &without,
        test.ledger(LedgerMode::Enforce),
        &market_env
    )
    .unwrap()
    .is_none());
    let scheduler = standard_jobs(
        &without,
        test.ledger(LedgerMode::Enforce),
        JobHooks::default().with_marketplace_sync(sync),
    );
    assert!(!scheduler.jobs().any(|job| job.name() == "marketplace_sync"));
}
