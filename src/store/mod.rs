//! The database: one pool over PostgreSQL or SQLite, migrations, and time encoding.
//!
//! Both backends are reached through sqlx's `Any` driver with the same SQL. The schema
//! keeps to types both share (`BIGINT`, `TEXT`): times are UTC microseconds and money is
//! micro-yuan, so no value changes meaning between backends. Where the backends differ
//! (row locks, how a write transaction starts, how a connection is set up) [`Db`] says
//! so in one place.
//!
//! Every connection is set up so that nothing waits without bound:
//!
//! - on PostgreSQL each session gets `lock_timeout`, `statement_timeout` and
//!   `idle_in_transaction_session_timeout` ([`SessionLimits`]), so that a stalled
//!   instance holding a channel's row locks, a runaway query or a transaction abandoned
//!   half-way is ended by the server instead of making every other send wait on it;
//! - on SQLite the one connection waits at most `busy_timeout` for another process's
//!   write lock, and writes with `synchronous = FULL` unless configured otherwise
//!   ([`SqliteSynchronous`]): the reservation is committed before the vendor is called,
//!   and a power cut must not forget a reservation whose message may have gone out.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::secret::Secret;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A handle on the database, cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

pub type Transaction = sqlx::Transaction<'static, sqlx::Any>;

/// The server-side limits of every PostgreSQL session (SQLite has none of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Longest wait for a lock (a row of `packages`, a table, an advisory lock). The
    /// ledger's batches hold a channel's rows for milliseconds, so a longer wait means
    /// the holder is stuck (a stalled or cut-off instance) and failing fast, retryably,
    /// is better than queueing every send behind it.
    pub lock_timeout: Duration,
    /// Longest any one statement may run.
    pub statement_timeout: Duration,
    /// Longest a session may sit inside a transaction without sending a statement; the
    /// server then ends the session, releasing its locks.
    pub idle_in_transaction_timeout: Duration,
}

impl Default for SessionLimits {
    /// Sized for the send path: a batch of the ledger's writer is about ten statements
    /// of a few milliseconds each, and a send as a whole waits at most the vendor's
    /// timeout (10 s by default). A lock held 2 s is a stuck holder; a statement running
    /// 10 s, or a transaction idle for 10 s, is a fault, not load.
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(10),
        }
    }
}

impl SessionLimits {
    /// The `SET` statements that give a session these limits.
    fn set_statements(&self) -> String {
        format!(
            "SET lock_timeout = {}; SET statement_timeout = {}; \
             SET idle_in_transaction_session_timeout = {}",
            millis(self.lock_timeout),
            millis(self.statement_timeout),
            millis(self.idle_in_transaction_timeout),
        )
    }
}

/// PostgreSQL takes these settings in whole milliseconds, and 0 would switch a limit
/// off: a positive duration below a millisecond is rounded up, never down to "none".
fn millis(duration: Duration) -> u128 {
    duration.as_micros().div_ceil(1000).max(1)
}

/// How hard SQLite makes each commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SqliteSynchronous {
    /// Every commit is on disk before it returns, also across a power cut. The default:
    /// a reservation is committed before the vendor is called.
    #[default]
    Full,
    /// Like `Full`, and the WAL's directory is synced too.
    Extra,
    /// Faster commits; with WAL a power cut (not a crash of the process) may lose the
    /// last commits, and with them reservations of messages that went out.
    Normal,
}

impl SqliteSynchronous {
    /// The value as `PRAGMA synchronous` takes it and as it is configured.
    pub fn as_str(self) -> &'static str {
        match self {
            SqliteSynchronous::Full => "full",
            SqliteSynchronous::Extra => "extra",
            SqliteSynchronous::Normal => "normal",
        }
    }
}

impl FromStr for SqliteSynchronous {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "full" => Ok(SqliteSynchronous::Full),
            "extra" => Ok(SqliteSynchronous::Extra),
            "normal" => Ok(SqliteSynchronous::Normal),
            _ => Err(format!(
                "{raw:?} is not \"full\" (the default), \"extra\" or \"normal\""
            )),
        }
    }
}

/// Everything about a pool besides its URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectOptions {
    /// The pool's size on PostgreSQL; SQLite always uses one connection.
    pub max_connections: u32,
    pub session_limits: SessionLimits,
    pub sqlite_synchronous: SqliteSynchronous,
}

impl ConnectOptions {
    /// The defaults with a pool of `max_connections`.
    pub fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            session_limits: SessionLimits::default(),
            sqlite_synchronous: SqliteSynchronous::default(),
        }
    }
}

/// Which of the [`SessionLimits`] ended a statement, if one did. All three are
/// retryable: the statement or its transaction was rolled back, and nothing it did
/// took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitReached {
    /// `lock_timeout` (SQLSTATE 55P03, lock_not_available).
    Lock,
    /// `statement_timeout` (SQLSTATE 57014, query_canceled).
    Statement,
    /// `idle_in_transaction_session_timeout` (SQLSTATE 25P03): the server ended the
    /// session.
    IdleInTransaction,
}

impl LimitReached {
    /// The limit behind `err`, when it is a PostgreSQL error raised by one.
    pub fn of(err: &sqlx::Error) -> Option<LimitReached> {
        let sqlx::Error::Database(database) = err else {
            return None;
        };
        match database.code()?.as_ref() {
            "55P03" => Some(LimitReached::Lock),
            "57014" => Some(LimitReached::Statement),
            "25P03" => Some(LimitReached::IdleInTransaction),
            _ => None,
        }
    }
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite:…`) with the default
    /// [`ConnectOptions`]; a SQLite file is created if missing. Does not migrate: call
    /// [`Db::migrate`].
    pub async fn connect(url: &Secret, max_connections: u32) -> anyhow::Result<Db> {
        Self::connect_with(url, ConnectOptions::new(max_connections)).await
    }

    /// Connects to `url` with `options`: every PostgreSQL session gets the session
    /// limits, and SQLite its durability setting.
    pub async fn connect_with(url: &Secret, options: ConnectOptions) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let url = url.expose();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let pool = match backend {
            Backend::Postgres => {
                let connect = AnyConnectOptions::from_str(url)
                    .context("the database URL is not a valid postgres:// URL")?;
                let limits = options.session_limits.set_statements();
                AnyPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    // Set per session rather than per role or database, so that the
                    // limits hold whoever administers the server, and are the ones the
                    // configuration file says.
                    .after_connect(move |conn, _meta| {
                        let limits = limits.clone();
                        Box::pin(async move {
                            conn.execute(limits.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_with(connect)
                    .await
                    .context("cannot connect to PostgreSQL")?
            }
            Backend::Sqlite => {
                let with_create = if url.contains('?') {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                let connect = AnyConnectOptions::from_str(&with_create)
                    .context("the database URL is not a valid sqlite: URL")?;
                let synchronous = format!(
                    "PRAGMA synchronous = {}",
                    options.sqlite_synchronous.as_str().to_ascii_uppercase()
                );
                // SQLite allows one writer at a time. A single connection makes this
                // process's writers queue in the pool instead of failing with SQLITE_BUSY;
                // WAL and a busy timeout let other processes (the CLI) share the file.
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(move |conn, _meta| {
                        let synchronous = synchronous.clone();
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute(synchronous.as_str()).await?;
                            Ok(())
                        })
                    })
                    .connect_with(connect)
                    .await
                    .context("cannot open the SQLite database")?
            }
        };
        Ok(Db { pool, backend })
    }

    /// Applies the embedded migrations for this backend.
    ///
    /// On PostgreSQL they run on a connection of their own without the session limits,
    /// which is closed afterwards: a migration may rightly take longer than any send's
    /// statement, and an instance starting while another migrates must wait for the
    /// migrator's advisory lock rather than fail after `lock_timeout`. The wait is
    /// bounded all the same: every other session's statements and idle transactions
    /// are, so no lock a migration waits for is held for long.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Postgres => {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .context("cannot connect to PostgreSQL to migrate")?;
                conn.execute(
                    "SET lock_timeout = 0; SET statement_timeout = 0; \
                     SET idle_in_transaction_session_timeout = 0",
                )
                .await
                .context("cannot lift the session limits for the migrations")?;
                let migrated = POSTGRES_MIGRATIONS.run(&mut *conn).await;
                // Never hand the unlimited session back to the pool.
                let _ = conn.close().await;
                migrated.context("database migration failed")
            }
            Backend::Sqlite => SQLITE_MIGRATIONS
                .run(&self.pool)
                .await
                .context("database migration failed"),
        }
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so that a transaction that reads before it writes cannot
    /// fail half-way when another process wrote in between.
    pub async fn begin_write(&self) -> Result<Transaction, sqlx::Error> {
        match self.backend {
            Backend::Postgres => self.pool.begin().await,
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
        }
    }

    /// The clause that locks selected rows until the transaction ends. SQLite needs
    /// none: its write transaction already excludes every other writer.
    pub fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// The SQL expression of the database's clock, in UTC microseconds. Decisions that
    /// several instances make together (leases, sweeps, outbox claims, due jobs) read
    /// time from it, so that one instance's skewed clock cannot sweep another's live
    /// sends or suppress a job.
    pub fn now_sql(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
            // SQLite runs in this process: its clock is the machine's, read once per
            // statement, to the millisecond.
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
        }
    }

    /// The database's clock (see [`Db::now_sql`]).
    pub async fn now(&self) -> Result<DateTime<Utc>, sqlx::Error> {
        let micros: i64 = sqlx::query_scalar(&format!("SELECT {}", self.now_sql()))
            .fetch_one(&self.pool)
            .await?;
        Ok(from_micros(micros))
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `($1, $2), ($3, $4), …`: placeholders for `rows` rows of `columns` values, numbered
/// from `first`, for set-based statements (`INSERT … VALUES`, `UPDATE … FROM (VALUES …)`).
pub fn placeholders(rows: usize, columns: usize, first: usize) -> String {
    let mut sql = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push('$');
            sql.push_str(&(first + row * columns + column).to_string());
        }
        sql.push(')');
    }
    sql
}

/// Microseconds since the Unix epoch, UTC: how every time is stored.
pub fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("stored times are within chrono's range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_and_columns_in_order() {
        assert_eq!(placeholders(2, 3, 2), "($2, $3, $4), ($5, $6, $7)");
        assert_eq!(placeholders(1, 1, 1), "($1)");
    }

    #[test]
    fn a_limit_below_a_millisecond_is_rounded_up_never_switched_off() {
        assert_eq!(millis(Duration::from_micros(1)), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 2);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }

    #[test]
    fn sqlite_durability_reads_the_three_documented_values() {
        for value in ["full", "extra", "normal", "FULL"] {
            let parsed: SqliteSynchronous = value.parse().unwrap();
            assert_eq!(parsed.as_str(), value.to_ascii_lowercase());
        }
        assert!("off".parse::<SqliteSynchronous>().is_err());
        assert_eq!(SqliteSynchronous::default(), SqliteSynchronous::Full);
    }
}
