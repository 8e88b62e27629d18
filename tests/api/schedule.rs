//! Scheduled jobs: once per due time across instances, one catch-up after downtime, and
//! the server's own schedule.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sqlx::Row;
use tollgate::domain::CronExpr;
use tollgate::schedule::{Job, RunResult, Scheduler};
use tollgate::store::{to_micros, Db};

use crate::app::{spawn_app_with, AppOptions};
use crate::helpers::*;
use crate::on_both_backends;

const SHANGHAI: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

/// A scheduler with one job, every five minutes, that counts its runs in `runs`.
fn counting_scheduler(db: Db, runs: Arc<AtomicUsize>) -> Scheduler {
    Scheduler::new(db, SHANGHAI).with_job(Job::new(
        "count",
        CronExpr::parse("*/5 * * * *").unwrap(),
        move |_run| {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        },
    ))
}

async fn two_instances_never_run_the_same_due_job_twice(backend: Backend) {
    let test = TestDb::new(backend).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let first = counting_scheduler(test.db.clone(), runs.clone());
    let second = counting_scheduler(test.another_instance().await, runs.clone());

    // Both start at 10:02; the 10:00 slot came before the job existed.
    let started = time("2026-11-15T10:02:00Z");
    let (a, b) = tokio::join!(first.try_run_once(started), second.try_run_once(started));
    assert_eq!(a.unwrap().ran() + b.unwrap().ran(), 0);

    for round in 0..5 {
        let due = time("2026-11-15T10:05:00Z") + chrono::Duration::minutes(5 * round);
        let (a, b) = tokio::join!(first.try_run_once(due), second.try_run_once(due));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.ran() + b.ran(), 1, "round {round}: {a:?} {b:?}");
        // Looking again a minute later changes nothing.
        let again = due + chrono::Duration::minutes(1);
        let (a, b) = tokio::join!(first.try_run_once(again), second.try_run_once(again));
        assert_eq!(a.unwrap().ran() + b.unwrap().ran(), 0);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 5);
    let recorded: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM schedule_runs WHERE job = 'count' AND outcome = 'succeeded'",
    )
    .fetch_one(test.db.pool())
    .await
    .unwrap()
    .try_get("n")
    .unwrap();
    assert_eq!(recorded, 5);
}

async fn a_run_missed_while_down_is_caught_up_once_at_the_next_start(backend: Backend) {
    let test = TestDb::new(backend).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let before = counting_scheduler(test.db.clone(), runs.clone());
    let outcome = before
        .try_run_once(time("2026-11-15T10:05:00Z"))
        .await
        .unwrap();
    assert_eq!(outcome.ran(), 1);
    drop(before);

    // Down for three days (864 slots missed); a new process starts at 10:07.
    let after = counting_scheduler(test.db.clone(), runs.clone());
    let restart = time("2026-11-18T10:07:30Z");
    let caught_up = after.try_run_once(restart).await.unwrap();
    assert_eq!(caught_up.ran(), 1);
    assert_eq!(caught_up.runs[0].due_at, time("2026-11-18T10:05:00Z"));
    assert_eq!(caught_up.runs[0].result, RunResult::Succeeded);
    assert_eq!(after.try_run_once(restart).await.unwrap().ran(), 0);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    // And then on schedule again.
    assert_eq!(
        after
            .try_run_once(time("2026-11-18T10:10:00Z"))
            .await
            .unwrap()
            .ran(),
        1
    );
}

async fn a_failing_job_is_recorded_and_waits_for_its_next_due_time(backend: Backend) {
    let test = TestDb::new(backend).await;
    let scheduler = Scheduler::new(test.db.clone(), SHANGHAI).with_job(Job::new(
        "broken",
        CronExpr::parse("0 * * * *").unwrap(),
        |_run| async { anyhow::bail!("the notifier is unreachable") },
    ));
    scheduler
        .try_run_once(time("2026-11-15T09:30:00Z"))
        .await
        .unwrap();
    let outcome = scheduler
        .try_run_once(time("2026-11-15T10:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        outcome.runs[0].result,
        RunResult::Failed("the notifier is unreachable".into())
    );
    assert_eq!(
        scheduler
            .try_run_once(time("2026-11-15T10:30:00Z"))
            .await
            .unwrap()
            .ran(),
        0
    );
    let row = sqlx::query(
        "SELECT outcome, error FROM schedule_runs WHERE job = 'broken' AND due_at = $1",
    )
    .bind(to_micros(time("2026-11-15T10:00:00Z")))
    .fetch_one(test.db.pool())
    .await
    .unwrap();
    assert_eq!(row.try_get::<String, _>("outcome").unwrap(), "failed");
    assert_eq!(
        row.try_get::<String, _>("error").unwrap(),
        "the notifier is unreachable"
    );
}

/// One instance's clock runs a day ahead: the run it records for tomorrow's due time
/// must not make the others skip today's.
async fn a_run_recorded_by_a_clock_a_day_ahead_silences_nothing(backend: Backend) {
    let test = TestDb::new(backend).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let ahead = counting_scheduler(test.db.clone(), runs.clone());
    let on_time = counting_scheduler(test.another_instance().await, runs.clone());
    let started = time("2026-11-15T10:02:00Z");
    on_time.try_run_once(started).await.unwrap();

    let tomorrow = time("2026-11-16T10:05:00Z");
    assert_eq!(ahead.try_run_once(tomorrow).await.unwrap().ran(), 1);
    let today = time("2026-11-15T10:05:00Z");
    assert_eq!(on_time.try_run_once(today).await.unwrap().ran(), 1);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

on_both_backends!(
    a_run_recorded_by_a_clock_a_day_ahead_silences_nothing,
    two_instances_never_run_the_same_due_job_twice,
    a_run_missed_while_down_is_caught_up_once_at_the_next_start,
    a_failing_job_is_recorded_and_waits_for_its_next_due_time,
);

#[tokio::test]
async fn the_server_runs_quota_check_and_the_housekeeping_on_their_schedules() {
    // Every second (6 fields, seconds first), so that the test waits briefly.
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            extra_toml: "[schedule]\nquota_check = \"* * * * * *\"\nrollup = \"* * * * * *\"\n"
                .into(),
            ..AppOptions::default()
        },
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = sqlx::query(
            "SELECT DISTINCT job FROM schedule_runs WHERE outcome = 'succeeded' ORDER BY job",
        )
        .fetch_all(app.db.db.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get::<String, _>("job").unwrap())
        .collect::<Vec<_>>();
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, ["ledger_housekeeping", "quota_check"]);
}
