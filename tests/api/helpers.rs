//! Test scaffolding: a fresh, migrated database per test on either backend.

use std::sync::Once;

use tollgate::domain::{
    ChannelName, LedgerMode, ManualClock, PackageUnits, SendClass, Units, Yuan,
};
use tollgate::ledger::{
    Ledger, LedgerOptions, NewPackage, Package, ReserveOutcome, ReserveRequest,
};
use tollgate::secret::Secret;
use tollgate::store::Db;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The server the PostgreSQL tests create their databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("TOLLGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A migrated database of its own for one test, removed when the test ends.
pub struct TestDb {
    pub url: Secret,
    pub db: Db,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

/// Captures every log line of this test process at DEBUG, to check what is logged.
/// `None` if another subscriber was installed first (as when tests share a process).
pub fn capture_logs() -> Option<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> {
    let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = buffer.clone();
    // try_init also routes the `log` records of dependencies (reqwest, hyper) here.
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(move || LogSink(sink.clone()))
        .finish()
        .try_init()
        .ok()?;
    Some(buffer)
}

struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            tollgate::telemetry::init();
        }
    });
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        init_tracing();
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = Secret::new(format!(
                    "sqlite://{}",
                    dir.path().join("tollgate.db").display()
                ));
                let db = Db::connect(&url, 5).await.expect("open sqlite");
                db.migrate().await.expect("migrate sqlite");
                TestDb {
                    url,
                    db,
                    _dir: Some(dir),
                    postgres_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Db::connect(&Secret::new(postgres_admin_url()), 1)
                    .await
                    .expect("PostgreSQL must be running for the tests (see README)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin.pool())
                    .await
                    .expect("create test database");
                admin.close().await;
                let base = postgres_admin_url();
                let url = Secret::new(format!("{}/{name}", base.rsplit_once('/').unwrap().0));
                let db = Db::connect(&url, 10).await.expect("connect test database");
                db.migrate().await.expect("migrate postgres");
                TestDb {
                    url,
                    db,
                    _dir: None,
                    postgres_name: Some(name),
                }
            }
        }
    }

    /// Another, independent connection pool on the same database: a second instance.
    pub async fn another_instance(&self) -> Db {
        Db::connect(&self.url, 10).await.expect("second pool")
    }

    /// Drops a PostgreSQL test database while it is in use: a database outage.
    pub async fn drop_database_now(&self) {
        let name = self
            .postgres_name
            .as_ref()
            .expect("only PostgreSQL databases can be dropped");
        let admin = Db::connect(&Secret::new(postgres_admin_url()), 1)
            .await
            .unwrap();
        sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(admin.pool())
            .await
            .unwrap();
        admin.close().await;
    }

    pub fn ledger(&self, mode: LedgerMode) -> Ledger {
        Ledger::new(self.db.clone(), mode)
    }

    /// A ledger (in Asia/Shanghai, enforce mode) whose "now" is `clock`'s.
    pub fn ledger_at(&self, clock: &ManualClock) -> Ledger {
        Ledger::with_options(
            self.db.clone(),
            LedgerOptions {
                clock: clock.clock(),
                ..LedgerOptions::new(LedgerMode::Enforce)
            },
        )
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else {
            return;
        };
        // Dropping needs async I/O, and Drop cannot await: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(admin) = Db::connect(&Secret::new(postgres_admin_url()), 1).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(admin.pool())
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

pub fn channel(name: &str) -> ChannelName {
    ChannelName::parse(name).unwrap()
}

pub fn yuan(raw: &str) -> Yuan {
    Yuan::parse(raw).unwrap()
}

pub struct PackageSpec<'a> {
    pub channel: &'a str,
    pub units: i64,
    pub price: &'a str,
    pub purchased_at: &'a str,
    pub expires_at: Option<&'a str>,
    pub order_id: Option<&'a str>,
}

impl Default for PackageSpec<'_> {
    fn default() -> Self {
        PackageSpec {
            channel: "sms_code",
            units: 100,
            price: "10.00",
            purchased_at: "2026-01-01T00:00:00Z",
            expires_at: None,
            order_id: None,
        }
    }
}

pub fn time(raw: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(raw).unwrap().into()
}

pub async fn add_package(ledger: &Ledger, spec: PackageSpec<'_>) -> Package {
    let new = NewPackage::new(
        channel(spec.channel),
        PackageUnits::new(spec.units).unwrap(),
        yuan(spec.price),
        time(spec.purchased_at),
        spec.expires_at.map(time),
        spec.order_id.map(str::to_owned),
        None,
    )
    .unwrap();
    ledger.register_package(new).await.unwrap().0
}

pub fn request(units: u32) -> ReserveRequest {
    ReserveRequest {
        send_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        client: "test-client".into(),
        units: Units::new(units).unwrap(),
        class: SendClass::Normal,
        route: None,
        idempotency: None,
        mobile_masked: "138****8000".into(),
        mobile_full: None,
        attempts: Vec::new(),
        takes_key_from: None,
    }
}

pub fn reserved(outcome: ReserveOutcome) -> tollgate::ledger::Reservation {
    match outcome {
        ReserveOutcome::Reserved(reservation) => reservation,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

/// Declares a test that runs once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}
