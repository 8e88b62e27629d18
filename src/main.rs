//! The `tollgate` binary: parses the command line and hands it to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = tollgate::cli::Cli::parse();
    tollgate::telemetry::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tollgate::cli::run(cli)) {
        Ok(code) => code,
        // `tollgate package list | head`: the reader has what it wanted. End quietly,
        // with the status a process killed by SIGPIPE would have (128 + 13).
        Err(err) if err.is::<tollgate::cli::StdoutClosed>() => ExitCode::from(141),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
