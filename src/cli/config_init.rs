//! `tollgate config init`: writes the commented starter configuration, never over a
//! file that is already there unless told to.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::STARTER_CONFIG;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write it.
    #[arg(long, short, value_name = "FILE", default_value = "tollgate.toml")]
    pub output: PathBuf,
    /// Replace the file if it exists.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        // Created only if absent, in the same call, so that no file is ever overwritten
        // by a race between a check and the write.
        options.create_new(true);
    }
    let shown = args.output.display();
    let mut file = match options.open(&args.output) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {shown} exists; give --force to replace it, or --output another file"
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(err) => return Err(err).with_context(|| format!("cannot create {shown}")),
    };
    file.write_all(STARTER_CONFIG.as_bytes())
        .with_context(|| format!("cannot write {shown}"))?;
    say!(
        "wrote {shown}: set the variables it names (ALIYUN_APPCODE, TOLLGATE_TOKEN_SHOP, \
         TOLLGATE_TOKEN_OPS), then run `tollgate --config {shown} config check`"
    );
    Ok(ExitCode::SUCCESS)
}
