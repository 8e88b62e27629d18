//! The whole-stack benchmark's smoke run: it starts, measures, and the ledger adds up
//! (nothing oversold, every vendor success charged once, every 2xx charged). It asserts
//! no time: figures come from `cargo bench --bench stack`.

#[path = "../../benches/stack/harness.rs"]
mod harness;

use harness::{Backend, Options};

async fn the_benchmark_runs_and_the_ledger_adds_up(backend: Backend) {
    let options = Options::smoke(
        backend,
        env!("CARGO_BIN_EXE_tollgate").into(),
        crate::helpers::postgres_admin_url(),
    );
    let report = harness::run(options).await.expect("the benchmark runs");
    let table = report.table();
    println!("{table}");
    assert!(report.check.problems().is_empty(), "{table}");
    assert!(report.check.answered_2xx > 0, "{table}");
    let names: Vec<&str> = report.runs.iter().map(|r| r.name.as_str()).collect();
    for expected in [
        "vendor simulation alone",
        "tollgate JSON API",
        "tollgate drop-in proxy",
    ] {
        assert!(names.contains(&expected), "{names:?}");
    }
    assert!(report.runs.iter().all(|r| r.requests > 0), "{table}");
    if backend == Backend::Postgres {
        assert!(
            names.iter().any(|n| n.starts_with("pgbench -N")),
            "{names:?}"
        );
    }
    assert!(report.peak_rss_kib.is_some_and(|kib| kib > 0));
    assert!(report.metrics_latency.is_some() && report.quota_latency.is_some());
    // Every console page was signed in to and answered (latency_with fails otherwise).
    let pages: Vec<&str> = report.console_latency.iter().map(|(p, _)| *p).collect();
    assert_eq!(pages, harness::CONSOLE_PAGES, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres() {
    the_benchmark_runs_and_the_ledger_adds_up(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite() {
    the_benchmark_runs_and_the_ledger_adds_up(Backend::Sqlite).await
}
