//! Scheduled jobs: crontab expressions evaluated in the configured time zone, each due
//! run executed once across every instance sharing the database.

mod jobs;
mod scheduler;

pub use jobs::{last_months_report, standard_jobs, JobHooks};
pub use scheduler::{DueRun, Job, JobFuture, Outcome, Run, RunResult, Scheduler};
