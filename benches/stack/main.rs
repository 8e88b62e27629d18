//! `cargo bench --bench stack [-- --backend sqlite] [--smoke] [--history N]`: the whole-stack
//! benchmark (see `harness.rs` and the README's "Performance" section).

mod harness;

use harness::{Backend, Options};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let backend = match args.iter().position(|a| a == "--backend") {
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("sqlite") => Backend::Sqlite,
            Some("postgres") | None => Backend::Postgres,
            Some(other) => anyhow::bail!("--backend is postgres or sqlite, not {other}"),
        },
        None => Backend::Postgres,
    };
    let tollgate = std::path::PathBuf::from(env!("CARGO_BIN_EXE_tollgate"));
    let admin = std::env::var("TOLLGATE_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut options = if args.iter().any(|a| a == "--smoke") {
        Options::smoke(backend, tollgate, admin)
    } else {
        Options::full(backend, tollgate, admin)
    };
    if let Some(i) = args.iter().position(|a| a == "--history") {
        let given = args.get(i + 1).map(String::as_str).unwrap_or_default();
        options.history = given
            .replace('_', "")
            .parse()
            .map_err(|_| anyhow::anyhow!("--history takes a number of charges, not {given:?}"))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(harness::run(options))?;
    print!("{}", report.table());
    if !report.check.problems().is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
