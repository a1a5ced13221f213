//! `kres-kafka demo`: the embedded demonstration (see `crate::demo`).

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kres-kafka demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keep the delivered files in this directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// Run `kres-kafka demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::block_on(crate::demo::run(args.keep))?;
    Ok(ExitCode::SUCCESS)
}
