//! The whole-stack benchmark: the sandbox vendor, a real `tollgate serve` on the chosen
//! backend, the load generators (`wrk` for throughput; for a fixed rate, evenly spread arrivals of its own and `hey`) and the
//! same-run baselines (the vendor simulation alone, the direct vendor call, `pgbench`),
//! then the same throughput again over a large history, and a check that the ledger
//! adds up. `cargo bench --bench stack` runs it in full; the test suite runs a short
//! smoke version (`tests/api/bench.rs`) that asserts it runs and that the ledger adds
//! up, never a time.
//!
//! Figures from a shared, noisy machine are only meaningful next to a baseline measured
//! in the same run, so every row names its reference.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use serde_json::{json, Value};
use tollgate::domain::{ChannelName, SendClass};
use tollgate::ledger::{ImportedCharge, Ledger, LedgerOptions};
use tollgate::secret::Secret;
use tollgate::store::Db;

/// The backend tollgate runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// What to run, and how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub backend: Backend,
    /// The `tollgate` binary to run (the release build for real figures).
    pub tollgate: PathBuf,
    /// A PostgreSQL server where databases may be created (`…/postgres`).
    pub postgres_admin_url: String,
    /// Length of each throughput and fixed-rate run.
    pub duration: Duration,
    pub connections: usize,
    /// Sends per second of the fixed-rate runs.
    pub fixed_rate: u32,
    /// Charges of history loaded before the last throughput run.
    pub history: u64,
    /// Whether to run pgbench (PostgreSQL only).
    pub pgbench: bool,
}

impl Options {
    /// The full benchmark: 10 s runs at 64 connections, 500 sends/s, 10 million charges.
    pub fn full(backend: Backend, tollgate: PathBuf, postgres_admin_url: String) -> Self {
        Self {
            backend,
            tollgate,
            postgres_admin_url,
            duration: Duration::from_secs(10),
            connections: 64,
            fixed_rate: 500,
            history: 10_000_000,
            pgbench: backend == Backend::Postgres,
        }
    }

    /// Seconds in all: to prove the harness works and the ledger adds up.
    pub fn smoke(backend: Backend, tollgate: PathBuf, postgres_admin_url: String) -> Self {
        Self {
            duration: Duration::from_secs(1),
            connections: 8,
            fixed_rate: 40,
            history: 3_000,
            ..Self::full(backend, tollgate, postgres_admin_url)
        }
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: String,
    pub requests: u64,
    /// Answers that were not 2xx (or, for pgbench, failed transactions).
    pub failures: u64,
    pub per_second: f64,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
}

/// What the ledger says after the runs, against what the clients and the vendor saw.
#[derive(Debug, Clone)]
pub struct LedgerCheck {
    /// 2xx answers the load generators counted from tollgate.
    pub answered_2xx: u64,
    /// Units charged for sends (excluding the imported history).
    pub charged: i64,
    /// Messages the vendor simulation accepted.
    pub vendor_successes: i64,
    pub purchased: i64,
    pub remaining: i64,
    pub reserved: i64,
    /// Requests the load generators cut off when their time was up: tollgate finishes
    /// those sends, so they are charged without an answer having been counted.
    pub cut_off_at_most: u64,
}

impl LedgerCheck {
    /// Nothing oversold, every vendor success charged once, no charge without a send,
    /// and every 2xx counted by a client charged.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.charged + self.reserved + self.remaining > self.purchased {
            problems.push(format!(
                "oversold: {} charged + {} reserved + {} remaining > {} purchased",
                self.charged, self.reserved, self.remaining, self.purchased
            ));
        }
        if self.charged != self.vendor_successes {
            problems.push(format!(
                "{} units charged but the vendor accepted {}",
                self.charged, self.vendor_successes
            ));
        }
        if (self.charged as u64) < self.answered_2xx {
            problems.push(format!(
                "{} answers were 2xx but only {} units were charged",
                self.answered_2xx, self.charged
            ));
        }
        if self.charged as u64 > self.answered_2xx + self.cut_off_at_most {
            problems.push(format!(
                "{} units charged for {} 2xx answers and at most {} sends cut off",
                self.charged, self.answered_2xx, self.cut_off_at_most
            ));
        }
        if self.reserved != 0 {
            problems.push(format!(
                "{} units still reserved after the runs",
                self.reserved
            ));
        }
        problems
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub options: Options,
    pub runs: Vec<Run>,
    pub history_load: Option<(u64, Duration)>,
    pub metrics_latency: Option<(Duration, Duration)>,
    pub quota_latency: Option<(Duration, Duration)>,
    /// p50 and max of each console page, with the history loaded.
    pub console_latency: Vec<(&'static str, (Duration, Duration))>,
    pub peak_rss_kib: Option<u64>,
    pub check: LedgerCheck,
}

const TOKEN: &str = "bench-token-1f2e3d4c";
const APPCODE: &str = "bench-appcode-7a8b9c";
const CHANNEL: &str = "sms_notice";
const PROXY_PATH: &str = "/chuangxin/dxtz";
/// The proxy's query: the vendor's own request format.
const PROXY_QUERY: &str = "content=%E3%80%90%E5%8D%A1%E6%B1%A0%E3%80%91%E6%82%A8%E7%9A%84%E8%AE%A2%E5%8D%95%E5%B7%B2%E5%8F%91%E8%B4%A7&mobile=13800138000";

pub async fn run(options: Options) -> anyhow::Result<Report> {
    ensure_tools(&options)?;
    let work = tempfile::tempdir().context("a temporary folder")?;
    // TOLLGATE_BENCH_KEEP=1 keeps the run's folder (configuration, SQLite file) and
    // its PostgreSQL database to look at.
    let keep = std::env::var_os("TOLLGATE_BENCH_KEEP").is_some();
    let vendor_port = free_port()?;
    let tollgate_port = free_port()?;
    let vendor = Process::spawn(
        Command::new(&options.tollgate)
            .args(["sandbox-upstream", "--listen"])
            .arg(format!("127.0.0.1:{vendor_port}"))
            .args(["--latency", "0ms", "--quota", "4000000000"])
            .env("TOLLGATE_SANDBOX_APPCODE", APPCODE),
        "the sandbox vendor",
    )?;
    let vendor_url = format!("http://127.0.0.1:{vendor_port}");
    wait_until_up(&format!("{vendor_url}/__sandbox/stats"), None).await?;

    let database = Database::create(&options, work.path()).await?;
    let config = work.path().join("tollgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [server]
            listen = "127.0.0.1:{tollgate_port}"
            [database]
            url = "{url}"
            max_connections = 16
            [upstream]
            appcode_env = "BENCH_APPCODE"
            timeout = "10s"
            [[channels]]
            name = "{CHANNEL}"
            kind = "sms_notice"
            url = "{vendor_url}{PROXY_PATH}"
            method = "POST"
            signature = "【卡池】"
            proxy_path = "{PROXY_PATH}"
            [[templates]]
            name = "shipped"
            channel = "{CHANNEL}"
            body = "【卡池】您的订单#order#已发货"
            [[clients]]
            name = "bench"
            token_env = "BENCH_TOKEN"
            admin = true
            "#,
            url = database.url.expose(),
        ),
    )?;
    let server = Process::spawn(
        Command::new(&options.tollgate)
            .args(["serve", "--config"])
            .arg(&config)
            .env("BENCH_APPCODE", APPCODE)
            .env("BENCH_TOKEN", TOKEN)
            .env("RUST_LOG", "warn"),
        "tollgate serve",
    )?;
    let base = format!("http://127.0.0.1:{tollgate_port}");
    wait_until_up(&format!("{base}/readyz"), Some(&server)).await?;
    let http = reqwest::Client::new();
    let package = http
        .post(format!("{base}/v1/packages"))
        .bearer_auth(TOKEN)
        .json(
            &json!({ "channel": CHANNEL, "units": 200_000_000_i64, "price": "9000000.00",
                        "purchased_at": "2020-01-01" }),
        )
        .send()
        .await?;
    if !package.status().is_success() {
        bail!("registering the package failed: {}", package.text().await?);
    }

    let scripts = Scripts::write(work.path(), &base)?;
    let mut runs = Vec::new();
    let mut answered_2xx = 0;
    let mut cut_off = 0;
    let c = options.connections;
    let direct = format!("{vendor_url}{PROXY_PATH}?{PROXY_QUERY}");
    let proxied = format!("{base}{PROXY_PATH}?{PROXY_QUERY}");

    // Calls made straight to the vendor are counted out of the vendor's successes, so
    // that what is left is what tollgate sent.
    let stats_url = format!("{vendor_url}/__sandbox/stats");
    let successes = || vendor_successes(&http, &stats_url);
    let mut direct_successes = 0;

    progress("measuring: the vendor simulation alone, the JSON API, the drop-in proxy");
    let before = successes().await?;
    runs.push(
        wrk(
            &options,
            "vendor simulation alone",
            &direct,
            &scripts.vendor,
            c,
        )
        .await?,
    );
    direct_successes += successes().await? - before;
    let api = wrk(
        &options,
        "tollgate JSON API",
        &format!("{base}/v1/messages"),
        &scripts.api,
        c,
    )
    .await?;
    answered_2xx += api.requests - api.failures;
    cut_off += c as u64;
    runs.push(api);
    let proxy = wrk(
        &options,
        "tollgate drop-in proxy",
        &proxied,
        &scripts.proxy,
        c,
    )
    .await?;
    answered_2xx += proxy.requests - proxy.failures;
    cut_off += c as u64;
    runs.push(proxy);
    progress("measuring: the fixed rate, direct and through tollgate");
    // Sends the last run cut off still finish at the vendor: wait for them, or they
    // would be counted as direct calls.
    sends_settled(&http, &base).await?;
    // Two kinds of fixed rate: arrivals spread evenly (one every 1/rate s, the steady
    // traffic the overhead target speaks of), and hey's, whose 50 workers tick in step
    // (a burst of 50 every 100 ms at 500/s).
    for (kind, load) in [("steady", Load::Steady), ("hey, bursts of 50", Load::Hey)] {
        let before = successes().await?;
        runs.push(
            load.run(
                &options,
                &format!("direct to the vendor, {kind}"),
                &direct,
                &format!("APPCODE {APPCODE}"),
            )
            .await?,
        );
        direct_successes += successes().await? - before;
        let fixed = load
            .run(
                &options,
                &format!("tollgate proxy, {kind}"),
                &proxied,
                &format!("APPCODE {TOKEN}"),
            )
            .await?;
        answered_2xx += fixed.requests - fixed.failures;
        cut_off += 50;
        runs.push(fixed);
        sends_settled(&http, &base).await?;
    }
    if options.pgbench && options.backend == Backend::Postgres {
        progress("measuring: pgbench on the same server");
        runs.extend(pgbench(&options, work.path()).await?);
    }

    // History, written through the ledger's own bulk path, then the same throughput.
    let history_load = if options.history > 0 {
        progress(&format!("loading {} charges of history", options.history));
        let started = Instant::now();
        load_history(&database, options.history).await?;
        Some((options.history, started.elapsed()))
    } else {
        None
    };
    let with_history = wrk(
        &options,
        &format!(
            "tollgate drop-in proxy, {} charges of history",
            options.history
        ),
        &proxied,
        &scripts.proxy,
        c,
    )
    .await?;
    answered_2xx += with_history.requests - with_history.failures;
    cut_off += c as u64;
    runs.push(with_history);
    let bearer = format!("Bearer {TOKEN}");
    let metrics_latency = Some(latency_of(&http, &format!("{base}/metrics"), &bearer, 30).await?);
    let quota_latency = Some(latency_of(&http, &format!("{base}/v1/quota"), &bearer, 30).await?);
    // The console's pages, signed in as the admin (who sees every page).
    let session = console_session(&base).await?;
    let mut console_latency = Vec::new();
    for page in CONSOLE_PAGES {
        let url = format!("{base}{page}");
        console_latency.push((
            *page,
            latency_with(&http, &url, ("Cookie", &session), 30).await?,
        ));
    }
    let peak_rss_kib = server.peak_rss_kib();

    // Let sends cut off at the end of the last run finish, then read the books.
    sends_settled(&http, &base).await?;
    let quota: Value = http
        .get(format!("{base}/v1/quota/{CHANNEL}"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let stats: Value = http
        .get(format!("{vendor_url}/__sandbox/stats"))
        .send()
        .await?
        .json()
        .await?;
    let figure = |value: &Value, name: &str| value[name].as_i64().unwrap_or(-1);
    let check = LedgerCheck {
        answered_2xx,
        charged: figure(&quota, "used") - options.history as i64,
        vendor_successes: figure(&stats, "successes") - direct_successes,
        purchased: figure(&quota, "purchased"),
        remaining: figure(&quota, "remaining"),
        reserved: figure(&quota, "reserved"),
        cut_off_at_most: cut_off,
    };
    drop(server);
    drop(vendor);
    if keep {
        progress(&format!(
            "kept {} and {}",
            work.keep().display(),
            database.url.expose()
        ));
    } else {
        database.drop_it(&options).await;
    }
    Ok(Report {
        options,
        runs,
        history_load,
        metrics_latency,
        quota_latency,
        console_latency,
        peak_rss_kib,
        check,
    })
}

impl Report {
    /// The table printed at the end.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let o = &self.options;
        let _ = writeln!(
            out,
            "tollgate stack benchmark: {} backend, {} connections, {:?} per run, fixed rate {}/s",
            o.backend.as_str(),
            o.connections,
            o.duration,
            o.fixed_rate
        );
        let _ = writeln!(
            out,
            "| {:<52} | {:>10} | {:>9} | {:>9} | {:>9} |",
            "run", "per second", "p50 ms", "p99 ms", "non-2xx"
        );
        let _ = writeln!(
            out,
            "|{}|{}|{}|{}|{}|",
            "-".repeat(54),
            "-".repeat(12),
            "-".repeat(11),
            "-".repeat(11),
            "-".repeat(11)
        );
        let ms = |d: Option<Duration>| {
            d.map(|d| format!("{:.2}", d.as_secs_f64() * 1000.0))
                .unwrap_or_else(|| "—".into())
        };
        for run in &self.runs {
            let _ = writeln!(
                out,
                "| {:<52} | {:>10.0} | {:>9} | {:>9} | {:>9} |",
                run.name,
                run.per_second,
                ms(run.p50),
                ms(run.p99),
                run.failures
            );
        }
        let find = |prefix: &str| self.runs.iter().find(|r| r.name.starts_with(prefix));
        let mut ratio = |label: &str, a: Option<&Run>, b: Option<&Run>| {
            if let (Some(a), Some(b)) = (a, b) {
                if b.per_second > 0.0 {
                    let _ = writeln!(out, "{label}: ×{:.2}", a.per_second / b.per_second);
                }
            }
        };
        ratio(
            "proxy throughput / pgbench -N",
            find("tollgate drop-in proxy"),
            find("pgbench -N"),
        );
        ratio(
            "proxy throughput / pgbench hot row",
            find("tollgate drop-in proxy"),
            find("pgbench, one hot row"),
        );
        ratio(
            "proxy throughput with history / without",
            find("tollgate drop-in proxy,"),
            find("tollgate drop-in proxy"),
        );
        for (direct, proxied) in [
            ("direct to the vendor, steady", "tollgate proxy, steady"),
            ("direct to the vendor, hey", "tollgate proxy, hey"),
        ] {
            let (Some(direct), Some(proxied)) = (find(direct), find(proxied)) else {
                continue;
            };
            let add = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
                (Some(a), Some(b)) => {
                    format!("{:+.2} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1000.0)
                }
                _ => "—".into(),
            };
            let _ = writeln!(
                out,
                "tollgate adds at {}/s ({}): p50 {}, p99 {}",
                o.fixed_rate,
                if proxied.name.contains("steady") {
                    "steady"
                } else {
                    "hey's bursts"
                },
                add(proxied.p50, direct.p50),
                add(proxied.p99, direct.p99)
            );
        }
        if let Some((charges, took)) = self.history_load {
            let _ = writeln!(
                out,
                "history: {charges} charges loaded through the ledger's bulk path in {:.1} s ({:.0}/s)",
                took.as_secs_f64(),
                charges as f64 / took.as_secs_f64().max(0.001)
            );
        }
        let pages = self
            .console_latency
            .iter()
            .map(|(page, latency)| (format!("GET {page}"), Some(*latency)));
        for (name, latency) in [
            ("GET /metrics".to_owned(), self.metrics_latency),
            ("GET /v1/quota".to_owned(), self.quota_latency),
        ]
        .into_iter()
        .chain(pages)
        {
            if let Some((p50, max)) = latency {
                let _ = writeln!(
                    out,
                    "{name} with that history: p50 {:.2} ms, max {:.2} ms",
                    p50.as_secs_f64() * 1000.0,
                    max.as_secs_f64() * 1000.0
                );
            }
        }
        if let Some(rss) = self.peak_rss_kib {
            let _ = writeln!(out, "tollgate peak RSS: {:.1} MB", rss as f64 / 1024.0);
        }
        let c = &self.check;
        let _ = writeln!(
            out,
            "ledger: {} 2xx answers counted, {} units charged, {} accepted by the vendor, {} reserved, {} of {} purchased left",
            c.answered_2xx, c.charged, c.vendor_successes, c.reserved, c.remaining, c.purchased
        );
        match c.problems().as_slice() {
            [] => {
                let _ = writeln!(out, "ledger check: nothing oversold, every vendor success charged once, every 2xx charged");
            }
            problems => {
                for problem in problems {
                    let _ = writeln!(out, "LEDGER CHECK FAILED: {problem}");
                }
            }
        }
        out
    }
}

/// The database tollgate runs on, created for this run.
struct Database {
    url: Secret,
    postgres_name: Option<String>,
}

impl Database {
    async fn create(options: &Options, dir: &Path) -> anyhow::Result<Self> {
        match options.backend {
            Backend::Sqlite => Ok(Self {
                url: Secret::new(format!("sqlite://{}", dir.join("tollgate.db").display())),
                postgres_name: None,
            }),
            Backend::Postgres => {
                let name = format!("tollgate_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = Db::connect(&Secret::new(&options.postgres_admin_url), 1).await?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin.pool())
                    .await?;
                admin.close().await;
                Ok(Self {
                    url: Secret::new(database_url(&options.postgres_admin_url, &name)),
                    postgres_name: Some(name),
                })
            }
        }
    }

    async fn drop_it(&self, options: &Options) {
        if let Some(name) = &self.postgres_name {
            if let Ok(admin) = Db::connect(&Secret::new(&options.postgres_admin_url), 1).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(admin.pool())
                    .await;
                admin.close().await;
            }
        }
    }
}

fn database_url(admin_url: &str, name: &str) -> String {
    format!(
        "{}/{name}",
        admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .unwrap_or(admin_url)
    )
}

/// Writes `history` charges of one unit each, spread over the last 30 days, in chunks,
/// through `Ledger::import_charges`.
async fn load_history(database: &Database, history: u64) -> anyhow::Result<()> {
    let db = Db::connect(&database.url, 2).await?;
    let ledger = Ledger::with_options(
        db,
        LedgerOptions::new(tollgate::domain::LedgerMode::Enforce),
    );
    let channel = ChannelName::parse(CHANNEL)?;
    let now = Utc::now();
    let span_micros = 30 * 86_400 * 1_000_000_i64;
    let chunk = 20_000_u64;
    let mut done = 0_u64;
    while done < history {
        let n = chunk.min(history - done);
        let charges: Vec<ImportedCharge> = (0..n)
            .map(|i| {
                let k = done + i;
                let offset = span_micros - (k as i64 * span_micros / history as i64);
                ImportedCharge {
                    send_id: format!("hist_{k:010}"),
                    client: if k % 3 == 0 {
                        "crm".into()
                    } else {
                        "shop".into()
                    },
                    class: SendClass::Normal,
                    units: 1,
                    at: now - chrono::Duration::microseconds(offset.max(1)),
                    mobile_masked: "138****8000".into(),
                }
            })
            .collect();
        ledger.import_charges(&channel, &charges).await?;
        done += n;
    }
    // A history that built up over weeks has been vacuumed, analysed and checkpointed
    // many times; one loaded in minutes has not, and the first minutes after it measure
    // the database's catching up rather than tollgate.
    let settle = if ledger.db().backend() == tollgate::store::Backend::Postgres {
        ["CHECKPOINT", "VACUUM ANALYZE", "CHECKPOINT"].as_slice()
    } else {
        ["ANALYZE", "PRAGMA wal_checkpoint(TRUNCATE)"].as_slice()
    };
    for statement in settle {
        sqlx::query(statement).execute(ledger.db().pool()).await?;
    }
    ledger.db().close().await;
    Ok(())
}

/// The load generators' scripts.
struct Scripts {
    vendor: PathBuf,
    api: PathBuf,
    proxy: PathBuf,
}

impl Scripts {
    fn write(dir: &Path, _base: &str) -> anyhow::Result<Self> {
        // `done` prints one JSON line the harness reads (latencies in microseconds).
        let report = r#"
done = function(summary, latency, requests)
  io.write(string.format("WRK {\"requests\":%d,\"duration_us\":%d,\"non2xx\":%d,\"errors\":%d,\"p50\":%d,\"p99\":%d}\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;
        let vendor = dir.join("vendor.lua");
        std::fs::write(
            &vendor,
            format!("wrk.method = \"POST\"\nwrk.headers[\"Authorization\"] = \"APPCODE {APPCODE}\"\n{report}"),
        )?;
        let proxy = dir.join("proxy.lua");
        std::fs::write(
            &proxy,
            format!("wrk.method = \"POST\"\nwrk.headers[\"Authorization\"] = \"APPCODE {TOKEN}\"\n{report}"),
        )?;
        let api = dir.join("api.lua");
        let body = json!({ "channel": CHANNEL, "to": "13800138000", "template": "shipped",
                           "params": { "order": "20261201" } })
        .to_string();
        std::fs::write(
            &api,
            format!(
                "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {TOKEN}\"\n{report}"
            ),
        )?;
        Ok(Self { vendor, api, proxy })
    }
}

async fn wrk(
    options: &Options,
    name: &str,
    url: &str,
    script: &Path,
    connections: usize,
) -> anyhow::Result<Run> {
    let output = Command::new("wrk")
        .args(["-t", "2", "-c", &connections.to_string(), "-d"])
        .arg(format!("{}s", options.duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK "))
        .with_context(|| {
            format!(
                "wrk printed no summary: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    let summary: Value = serde_json::from_str(line)?;
    let number = |key: &str| summary[key].as_u64().unwrap_or(0);
    let seconds = number("duration_us") as f64 / 1e6;
    Ok(Run {
        name: name.to_owned(),
        requests: number("requests"),
        failures: number("non2xx") + number("errors"),
        per_second: number("requests") as f64 / seconds.max(1e-6),
        p50: Some(Duration::from_micros(number("p50"))),
        p99: Some(Duration::from_micros(number("p99"))),
    })
}

/// A fixed rate through `hey`: 50 workers, each at rate / 50 per second, in step.
/// A fixed-rate load generator.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// Open loop, arrivals spread evenly: one request every 1/rate s, each on its own
    /// task, so a slow answer delays no later request (no coordinated omission).
    Steady,
    /// `hey -q`: 50 workers, each at rate/50 per second, ticking in step.
    Hey,
}

impl Load {
    async fn run(
        self,
        options: &Options,
        name: &str,
        url: &str,
        authorization: &str,
    ) -> anyhow::Result<Run> {
        match self {
            Load::Steady => steady(options, name, url, authorization).await,
            Load::Hey => hey(options, name, url, authorization).await,
        }
    }
}

async fn steady(
    options: &Options,
    name: &str,
    url: &str,
    authorization: &str,
) -> anyhow::Result<Run> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let rate = f64::from(options.fixed_rate.max(1));
    let total = (rate * options.duration.as_secs_f64()).round().max(1.0) as u64;
    let started = tokio::time::Instant::now();
    let mut requests = Vec::with_capacity(total as usize);
    for i in 0..total {
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate)).await;
        let request = http.post(url).header("Authorization", authorization).send();
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match request.await {
                Ok(response) => {
                    let status = response.status();
                    response.bytes().await.is_ok() && status.is_success()
                }
                Err(_) => false,
            };
            (sent.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(requests.len());
    let mut failures = 0;
    for request in requests {
        let (took, ok) = request.await?;
        latencies.push(took);
        failures += u64::from(!ok);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(Run {
        name: format!("{name} ({}/s)", options.fixed_rate),
        requests: latencies.len() as u64,
        failures,
        per_second: latencies.len() as f64 / elapsed.as_secs_f64().max(1e-6),
        p50: Some(pick(0.50)),
        p99: Some(pick(0.99)),
    })
}

async fn hey(options: &Options, name: &str, url: &str, authorization: &str) -> anyhow::Result<Run> {
    let workers = 50_u32.min(options.fixed_rate.max(1));
    let per_worker = (f64::from(options.fixed_rate) / f64::from(workers)).max(0.1);
    let output = Command::new("hey")
        .args(["-m", "POST", "-c", &workers.to_string(), "-q"])
        .arg(format!("{per_worker}"))
        .arg("-z")
        .arg(format!("{}s", options.duration.as_secs().max(1)))
        .args([
            "-H",
            &format!("Authorization: {authorization}"),
            "-o",
            "csv",
        ])
        .arg(url)
        .output()
        .context("running hey")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
    let mut latencies = Vec::new();
    let mut failures = 0;
    let mut last_offset: f64 = 0.0;
    for line in stdout.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() < 8 {
            continue;
        }
        let (Ok(seconds), Ok(status), Ok(offset)) = (
            fields[0].parse::<f64>(),
            fields[6].parse::<u16>(),
            fields[7].parse::<f64>(),
        ) else {
            continue;
        };
        latencies.push(Duration::from_secs_f64(seconds));
        if !(200..300).contains(&status) {
            failures += 1;
        }
        last_offset = last_offset.max(offset + seconds);
    }
    if latencies.is_empty() {
        bail!(
            "hey produced no results: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(Run {
        name: format!("{name} ({}/s)", options.fixed_rate),
        requests: latencies.len() as u64,
        failures,
        per_second: latencies.len() as f64 / last_offset.max(1e-6),
        p50: Some(pick(0.50)),
        p99: Some(pick(0.99)),
    })
}

/// `pgbench -N` and a hot-row variant on a scratch database of the same server.
async fn pgbench(options: &Options, dir: &Path) -> anyhow::Result<Vec<Run>> {
    let name = format!("tollgate_pgbench_{}", uuid::Uuid::new_v4().simple());
    let admin = Db::connect(&Secret::new(&options.postgres_admin_url), 1).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await?;
    let url = database_url(&options.postgres_admin_url, &name);
    let result = async {
        let init = Command::new("pgbench")
            .args(["-i", "-q", "-s", "1", &url])
            .output()
            .context("running pgbench -i")?;
        if !init.status.success() {
            bail!("pgbench -i failed: {}", String::from_utf8_lossy(&init.stderr));
        }
        let hot = dir.join("hot_row.sql");
        std::fs::write(
            &hot,
            "UPDATE pgbench_accounts SET abalance = abalance - 1 WHERE aid = 1;\n\
             INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, -1, CURRENT_TIMESTAMP);\n",
        )?;
        let seconds = options.duration.as_secs().max(1).to_string();
        let clients = options.connections.to_string();
        let mut runs = Vec::new();
        for (label, extra) in [
            ("pgbench -N (simple updates, no hot row)", vec!["-N".to_owned()]),
            ("pgbench, one hot row debited", vec!["-f".to_owned(), hot.display().to_string()]),
        ] {
            let output = Command::new("pgbench")
                .args(["-n", "-c", &clients, "-j", "2", "-T", &seconds, "-r"])
                .args(&extra)
                .arg(&url)
                .output()
                .context("running pgbench")?;
            let stdout = String::from_utf8_lossy(&output.stdout);
            let tps = stdout
                .lines()
                .find(|l| l.starts_with("tps = "))
                .and_then(|l| l["tps = ".len()..].split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
                .with_context(|| format!("pgbench printed no tps: {stdout}{}", String::from_utf8_lossy(&output.stderr)))?;
            let latency = stdout
                .lines()
                .find(|l| l.starts_with("latency average = "))
                .and_then(|l| l["latency average = ".len()..].split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
                .map(|ms| Duration::from_secs_f64(ms / 1000.0));
            let failed = stdout
                .lines()
                .find(|l| l.starts_with("number of failed transactions: "))
                .and_then(|l| l.split(": ").nth(1)?.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            runs.push(Run {
                name: label.to_owned(),
                requests: (tps * options.duration.as_secs_f64()) as u64,
                failures: failed,
                per_second: tps,
                // pgbench reports the mean, shown in the p50 column and named so.
                p50: latency,
                p99: None,
            });
        }
        Ok(runs)
    }
    .await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin.pool())
        .await;
    admin.close().await;
    result
}

/// Waits until tollgate holds no reservation (every send under way has settled).
async fn sends_settled(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        let quota: Value = http
            .get(format!("{base}/v1/quota/{CHANNEL}"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        if quota["reserved"].as_i64() == Some(0) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("sends under way did not settle")
}

/// How many messages the vendor simulation has accepted so far.
async fn vendor_successes(http: &reqwest::Client, stats_url: &str) -> anyhow::Result<i64> {
    let stats: Value = http.get(stats_url).send().await?.json().await?;
    Ok(stats["successes"].as_i64().unwrap_or(0))
}

/// The console's pages whose time is measured.
pub const CONSOLE_PAGES: &[&str] = &[
    "/console",
    "/console/alerts",
    "/console/packages",
    "/console/reports",
    "/console/usage",
];

/// A console session cookie (`name=value`) for the admin client, signed in through
/// the sign-in form as a browser would.
async fn console_session(base: &str) -> anyhow::Result<String> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
            .with_context(|| format!("the console sets {name}"))
    };
    let form = http.get(format!("{base}/console/sign-in")).send().await?;
    let challenge = cookie(&form, "tollgate_console_sign_in")?;
    let page = form.text().await?;
    let marker = r#"name="csrf" value=""#;
    let start = page
        .find(marker)
        .context("a CSRF field on the sign-in form")?
        + marker.len();
    let csrf = page[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned();
    let signed_in = http
        .post(format!("{base}/console/sign-in"))
        .header("Cookie", challenge)
        .form(&[("token", TOKEN), ("csrf", csrf.as_str())])
        .send()
        .await?;
    if signed_in.status() != reqwest::StatusCode::SEE_OTHER {
        bail!("the console refused the sign-in: {}", signed_in.status());
    }
    cookie(&signed_in, "tollgate_console")
}

/// p50 and max of `count` sequential GETs with `authorization`.
async fn latency_of(
    http: &reqwest::Client,
    url: &str,
    authorization: &str,
    count: usize,
) -> anyhow::Result<(Duration, Duration)> {
    latency_with(http, url, ("Authorization", authorization), count).await
}

/// p50 and max of `count` sequential GETs with one header.
async fn latency_with(
    http: &reqwest::Client,
    url: &str,
    (name, value): (&str, &str),
    count: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let mut took = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let response = http.get(url).header(name, value).send().await?;
        let status = response.status();
        response.bytes().await?;
        if !status.is_success() {
            bail!("{url} answered {status}");
        }
        took.push(started.elapsed());
    }
    took.sort();
    Ok((took[took.len() / 2], took[took.len() - 1]))
}

/// `wrk` and `hey` from Debian's packages, installed when missing (as root).
fn ensure_tools(options: &Options) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = ["wrk", "hey"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if options.pgbench && options.backend == Backend::Postgres && !on_path("pgbench") {
        missing.push("postgresql-client");
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {} (Debian packages)", missing.join(", "));
    let update = Command::new("apt-get").args(["update", "-qq"]).status();
    let install = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    match (update, install) {
        (Ok(_), Ok(status)) if status.success() => Ok(()),
        _ => bail!(
            "the benchmark needs {}: install them (Debian: apt-get install {})",
            missing.join(", "),
            missing.join(" ")
        ),
    }
}

fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_until_up(url: &str, process: Option<&Process>) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Some(process) = process {
            process.fail_if_exited()?;
        }
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{url} did not come up")
}

/// A child process, killed when dropped.
struct Process {
    child: std::sync::Mutex<Child>,
    what: &'static str,
}

impl Process {
    fn spawn(command: &mut Command, what: &'static str) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Self {
            child: std::sync::Mutex::new(child),
            what,
        })
    }

    fn fail_if_exited(&self) -> anyhow::Result<()> {
        if let Some(status) = self.child.lock().unwrap().try_wait()? {
            bail!("{} exited with {status}", self.what);
        }
        Ok(())
    }

    /// The largest resident set the process had (`VmHWM`), in KiB.
    fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.lock().unwrap().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Prints to standard error at once (the table comes at the end).
pub fn progress(message: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "{message}");
}
