//! `tollgate package add` and `tollgate package list`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::output::{self, opt, Format, Rows};
use super::Context;
use crate::ledger::{NewPackage, Package, PackageInput};

#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Register a purchased package. With --order-id, registering the same order again
    /// changes nothing.
    Add(AddArgs),
    /// List packages with what is left of each.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    pub channel: String,
    /// Calls or segments in the package.
    #[arg(long, allow_hyphen_values = true)]
    pub units: String,
    /// What the package cost in CNY, as an exact decimal (e.g. 45.00).
    #[arg(long, allow_hyphen_values = true)]
    pub price: String,
    /// When it was bought (default: now). A date, or an RFC 3339 time.
    #[arg(long)]
    pub purchased_at: Option<String>,
    /// When its unused units expire (default: never). A date, or an RFC 3339 time.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// The marketplace order id; makes registration idempotent.
    #[arg(long)]
    pub order_id: Option<String>,
    #[arg(long)]
    pub note: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub channel: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

pub async fn run(command: PackageCommand, context: &Context) -> anyhow::Result<ExitCode> {
    let timezone = context.settings.server.timezone;
    match command {
        PackageCommand::Add(args) => {
            let channel = context.channel(&args.channel)?;
            let input = PackageInput {
                units: &args.units,
                price: &args.price,
                purchased_at: args.purchased_at.as_deref(),
                expires_at: args.expires_at.as_deref(),
                order_id: args.order_id,
                note: args.note,
            };
            let new = NewPackage::from_input(channel.clone(), input, timezone)?;
            let (package, created) = context.ledger.register_package(new).await?;
            if created {
                // Resolves a low-quota alert now: the state change and its notifications
                // are written here, and a running server's outbox delivers them.
                let engine = crate::alerts::AlertEngine::on_database_clock(
                    context.ledger.clone(),
                    &context.settings,
                );
                engine.evaluate_channel(&channel).await?;
            }
            if !created && args.format == Format::Table {
                eprintln!(
                    "order {} was already registered; nothing changed",
                    opt(&package.order_id)
                );
            }
            output::print(args.format, &package, || {
                table(std::slice::from_ref(&package))
            })?;
        }
        PackageCommand::List(args) => {
            let channel = args
                .channel
                .as_deref()
                .map(|c| context.channel(c))
                .transpose()?;
            let packages = context.ledger.list_packages(channel.as_ref()).await?;
            output::print(args.format, &packages, || table(&packages))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn table(packages: &[Package]) -> Rows {
    Rows {
        headers: vec![
            "id",
            "channel",
            "units",
            "price",
            "unit_price",
            "used",
            "reserved",
            "remaining",
            "expired",
            "status",
            "purchased_at",
            "expires_at",
            "order_id",
        ],
        rows: packages
            .iter()
            .map(|p| {
                vec![
                    p.id.to_string(),
                    p.channel.clone(),
                    p.units.to_string(),
                    p.price.to_string(),
                    p.unit_price.to_string(),
                    p.used.to_string(),
                    p.reserved.to_string(),
                    p.remaining.to_string(),
                    p.expired_units.to_string(),
                    format!("{:?}", p.status).to_lowercase(),
                    p.purchased_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    opt(&p
                        .expires_at
                        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
                    opt(&p.order_id),
                ]
            })
            .collect(),
    }
}
