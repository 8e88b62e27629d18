//! The database: one pool over PostgreSQL or SQLite, migrations, and time encoding.
//!
//! Both backends are reached through sqlx's `Any` driver with the same SQL. The schema
//! keeps to types both share (`BIGINT`, `TEXT`): times are UTC microseconds and money is
//! micro-yuan, so no value changes meaning between backends. Where the backends differ
//! (row locks, how a write transaction starts) [`Db`] says so in one place.

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

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite:…`); a SQLite file is created if
    /// missing. Does not migrate: call [`Db::migrate`].
    pub async fn connect(url: &Secret, max_connections: u32) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let url = url.expose();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let pool = match backend {
            Backend::Postgres => {
                let options = AnyConnectOptions::from_str(url)
                    .context("the database URL is not a valid postgres:// URL")?;
                AnyPoolOptions::new()
                    .max_connections(max_connections)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .context("cannot connect to PostgreSQL")?
            }
            Backend::Sqlite => {
                let with_create = if url.contains('?') {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                let options = AnyConnectOptions::from_str(&with_create)
                    .context("the database URL is not a valid sqlite: URL")?;
                // SQLite allows one writer at a time. A single connection makes this
                // process's writers queue in the pool instead of failing with SQLITE_BUSY;
                // WAL and a busy timeout let other processes (the CLI) share the file.
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
                    .context("cannot open the SQLite database")?
            }
        };
        Ok(Db { pool, backend })
    }

    /// Applies the embedded migrations for this backend.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .context("database migration failed")
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
    use super::placeholders;

    #[test]
    fn placeholders_number_rows_and_columns_in_order() {
        assert_eq!(placeholders(2, 3, 2), "($2, $3, $4), ($5, $6, $7)");
        assert_eq!(placeholders(1, 1, 1), "($1)");
    }
}
