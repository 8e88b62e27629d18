//! The `tollgate` command line: parses arguments and calls into the library.

// First, so that its `say!` is known to the modules below.
#[macro_use]
mod output;
mod config_check;
mod config_init;
mod notify;
mod packages;
mod quota;
mod report;
mod send;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use output::{Format, StdoutClosed};

use crate::config::{self, ConfigSource, Settings};
use crate::ledger::Ledger;

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "A metering gateway for prepaid SMS and voice APIs on the Alibaba Cloud API Marketplace"
)]
pub struct Cli {
    /// Configuration file (default: $TOLLGATE_CONFIG, then ./tollgate.toml, then the
    /// built-in sandbox setup).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (with no configuration: the built-in sandbox setup).
    Serve(serve::ServeArgs),
    /// Run the built-in sandbox with steady synthetic traffic, for dashboards.
    Demo(serve::DemoArgs),
    /// Send one message through a running tollgate.
    Send(send::SendArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Register and list purchased packages.
    #[command(subcommand)]
    Package(packages::PackageCommand),
    /// Show the remaining quota of every channel, or of one.
    Quota(quota::QuotaArgs),
    /// Record the vendor console's remaining count for a channel, or the marketplace's
    /// (--from-marketplace).
    Reconcile(quota::ReconcileArgs),
    /// Check the configuration and environment and print every problem found, or write
    /// a configuration to start from.
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// Send a test event through the configured notifiers.
    #[command(subcommand)]
    Notify(notify::NotifyCommand),
    /// Cost reports.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Run a simulation of the vendor's gateway (for demos, tests and benchmarks).
    SandboxUpstream(serve::SandboxArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let env = |key: &str| std::env::var(key).ok();
    let source = config::locate(cli.config.as_deref(), &env);
    match cli.command {
        Command::Serve(args) => serve::serve(&source, args).await,
        Command::Demo(args) => serve::demo(&source, args).await,
        Command::Send(args) => send::run(args, &source).await,
        Command::SandboxUpstream(args) => serve::sandbox_upstream(args).await,
        Command::Config(command) => config_check::run(command, &source, &env).await,
        Command::Notify(command) => notify::run(command, &source, &env).await,
        Command::Migrate => {
            let context = Context::open(&source).await?;
            say!(
                "migrations applied to {}",
                context.settings.database.url_for_display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Package(command) => packages::run(command, &Context::open(&source).await?).await,
        Command::Quota(args) => quota::run_quota(args, &Context::open(&source).await?).await,
        Command::Report(command) => report::run(command, &Context::open(&source).await?).await,
        Command::Reconcile(args) => {
            quota::run_reconcile(args, &Context::open(&source).await?).await
        }
    }
}

/// What most commands need: the settings and a migrated ledger.
pub(crate) struct Context {
    pub settings: Settings,
    pub ledger: Ledger,
}

impl Context {
    pub async fn open(source: &ConfigSource) -> anyhow::Result<Self> {
        let env = |key: &str| std::env::var(key).ok();
        let settings = config::load(source, &env)?;
        let ledger = Ledger::open(&settings, settings.database.max_connections).await?;
        Ok(Self { settings, ledger })
    }

    /// The configured channel called `name`, or an error that lists the known ones.
    pub fn channel(&self, name: &str) -> anyhow::Result<crate::domain::ChannelName> {
        match self.settings.channel(name) {
            Some(channel) => Ok(channel.name.clone()),
            None => anyhow::bail!(
                "unknown channel {name:?}; configured channels: {}",
                self.settings
                    .channels
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}
