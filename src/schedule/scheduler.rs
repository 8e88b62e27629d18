//! The scheduler: runs each job once per due time across every instance.
//!
//! Every instance runs a [`Scheduler`] over the same database. When a job comes due,
//! each of them tries to insert the run record `(job, due_at)`; the table's primary key
//! lets exactly one insert succeed, and only that instance runs the job. The due time is
//! computed from the cron expression alone, so instances whose clocks disagree by a
//! little still name the same run.
//!
//! Missed runs: on every pass the scheduler looks at the *latest* due time at or before
//! now, and claims exactly that `(job, due_at)`: if nobody has (and the job's schedule
//! was already known then), it runs. After a downtime that is one catch-up run for the
//! most recent missed slot, not one per slot; and since only that exact row decides, a
//! run recorded for a later time by an instance whose clock ran ahead silences nothing.
//! The server's passes read "now" from the database's clock, which every instance
//! shares. A due time before the job was first seen is not a missed run: a fresh
//! install does not send last month's report the moment it starts.
//!
//! A run is attempted once: a job that fails is recorded as failed and waits for its next
//! due time, and a run whose instance died part-way stays recorded as started. Jobs are
//! written to be safe to re-run at the next due time (housekeeping deletes whatever is
//! still past its age; the quota check re-evaluates).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::Row;
use tokio::sync::watch;

use crate::domain::CronExpr;
use crate::store::{from_micros, to_micros, Db};

/// What a job's action returns.
pub type JobFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// The run a job's action is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRun {
    pub job: String,
    /// The due time being run (UTC).
    pub due_at: DateTime<Utc>,
    /// When the scheduler started it (the `now` given to [`Scheduler::try_run_once`]).
    pub started_at: DateTime<Utc>,
}

/// A named job, when it runs, and what it does.
#[derive(Clone)]
pub struct Job {
    name: String,
    when: CronExpr,
    action: Arc<dyn Fn(DueRun) -> JobFuture + Send + Sync>,
}

impl Job {
    pub fn new<F, Fut>(name: impl Into<String>, when: CronExpr, action: F) -> Self
    where
        F: Fn(DueRun) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            name: name.into(),
            when,
            action: Arc::new(move |run| Box::pin(action(run))),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What one pass did, job by job (jobs not due are absent).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub job: String,
    pub due_at: DateTime<Utc>,
    pub result: RunResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// This instance ran it, and it succeeded.
    Succeeded,
    /// This instance ran it, and it failed (the error, as recorded).
    Failed(String),
    /// Another instance claimed this due time first.
    ClaimedElsewhere,
}

impl Outcome {
    /// Due times this instance ran (whether they succeeded or not).
    pub fn ran(&self) -> usize {
        self.runs
            .iter()
            .filter(|r| r.result != RunResult::ClaimedElsewhere)
            .count()
    }
}

pub struct Scheduler {
    db: Db,
    timezone: Tz,
    /// Names this process in run records, for operators reading them.
    instance: String,
    jobs: Vec<Job>,
}

/// How long the loop sleeps at most before looking again, so that a changed wall
/// clock (or a missed wake-up) is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(300);
/// How long the loop waits after a pass failed (the database was unreachable).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

impl Scheduler {
    pub fn new(db: Db, timezone: Tz) -> Self {
        Self {
            db,
            timezone,
            instance: format!(
                "tollgate-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            jobs: Vec::new(),
        }
    }

    pub fn with_job(mut self, job: Job) -> Self {
        self.jobs.push(job);
        self
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.iter()
    }

    /// One pass at `now`: every job whose latest due time has no run yet is claimed and,
    /// if this instance won the claim, run. Jobs run one after the other.
    #[tracing::instrument(skip_all, fields(instance = %self.instance))]
    pub async fn try_run_once(&self, now: DateTime<Utc>) -> anyhow::Result<Outcome> {
        let mut outcome = Outcome::default();
        for job in &self.jobs {
            let Some(due_at) = job.when.latest_due_at_or_before(now, self.timezone) else {
                continue;
            };
            let first_seen = self.first_seen(job, now).await?;
            if due_at < first_seen {
                continue;
            }
            // The exact due time is claimed: whoever inserts (job, due_at) first runs
            // it, and a run recorded for some other time (a later one, written by an
            // instance whose clock ran ahead) silences nothing.
            let result = self.claim_and_run(job, due_at, now).await?;
            outcome.runs.push(Run {
                job: job.name.clone(),
                due_at,
                result,
            });
        }
        Ok(outcome)
    }

    /// The first due time after `now` of any job: when the loop should look again.
    pub fn next_due_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.jobs
            .iter()
            .filter_map(|job| job.when.next_due_after(now, self.timezone))
            .min()
    }

    /// Runs passes at every due time until `shutdown` turns true. A job under way when
    /// shutdown is asked for is finished first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.jobs.is_empty() {
            return;
        }
        loop {
            // The database's clock: every instance names the same due time.
            let pause = match self.pass().await {
                Ok(outcome) => {
                    for run in &outcome.runs {
                        match &run.result {
                            RunResult::Succeeded => {
                                tracing::info!(job = %run.job, due_at = %run.due_at, "scheduled job ran")
                            }
                            RunResult::Failed(error) => {
                                tracing::warn!(job = %run.job, due_at = %run.due_at, %error, "scheduled job failed; it runs again at its next due time")
                            }
                            RunResult::ClaimedElsewhere => {
                                tracing::debug!(job = %run.job, due_at = %run.due_at, "scheduled job run by another instance")
                            }
                        }
                    }
                    let after = self.db.now().await.unwrap_or_else(|_| Utc::now());
                    self.next_due_after(after)
                        .and_then(|due| (due - after).to_std().ok())
                        // Wake just after the due time, never just before it.
                        .map(|wait| wait + Duration::from_millis(20))
                        .unwrap_or(MAX_SLEEP)
                        .min(MAX_SLEEP)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "scheduler pass failed; will retry");
                    RETRY_AFTER_FAILURE
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// One pass at the database's time.
    async fn pass(&self) -> anyhow::Result<Outcome> {
        let now = self.db.now().await?;
        self.try_run_once(now).await
    }

    /// When the job's schedule was first seen by any instance (recorded on first sight).
    async fn first_seen(&self, job: &Job, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
        sqlx::query(
            "INSERT INTO schedule_jobs (job, first_seen_at) VALUES ($1, $2) \
             ON CONFLICT (job) DO NOTHING",
        )
        .bind(&job.name)
        .bind(to_micros(now))
        .execute(self.db.pool())
        .await?;
        let first: i64 = sqlx::query("SELECT first_seen_at FROM schedule_jobs WHERE job = $1")
            .bind(&job.name)
            .fetch_one(self.db.pool())
            .await?
            .try_get("first_seen_at")?;
        Ok(from_micros(first))
    }

    /// Inserts the run record; whoever inserts it runs the job. The insert commits on
    /// its own before the job starts, so a second instance sees the claim at once.
    async fn claim_and_run(
        &self,
        job: &Job,
        due_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<RunResult> {
        let claimed = sqlx::query(
            "INSERT INTO schedule_runs (job, due_at, instance, started_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job, due_at) DO NOTHING RETURNING job",
        )
        .bind(&job.name)
        .bind(to_micros(due_at))
        .bind(&self.instance)
        .bind(to_micros(now))
        .fetch_optional(self.db.pool())
        .await?;
        if claimed.is_none() {
            return Ok(RunResult::ClaimedElsewhere);
        }
        let run = DueRun {
            job: job.name.clone(),
            due_at,
            started_at: now,
        };
        let (outcome, error, result) = match (job.action)(run).await {
            Ok(()) => ("succeeded", None, RunResult::Succeeded),
            Err(err) => {
                let error: String = format!("{err:#}").chars().take(500).collect();
                ("failed", Some(error.clone()), RunResult::Failed(error))
            }
        };
        sqlx::query(
            "UPDATE schedule_runs SET finished_at = $1, outcome = $2, error = $3 \
             WHERE job = $4 AND due_at = $5",
        )
        .bind(to_micros(Utc::now()))
        .bind(outcome)
        .bind(error)
        .bind(&job.name)
        .bind(to_micros(due_at))
        .execute(self.db.pool())
        .await?;
        Ok(result)
    }
}
