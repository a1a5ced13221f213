//! The `kres-kafka` command: parse arguments, set up logging, run the command.

use clap::Parser;
use kres_kafka::commands::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    kres_kafka::logging::init(cli.log_level());
    cli.run().unwrap_or_else(|e| {
        eprintln!("kres-kafka: error: {e:#}");
        ExitCode::from(2)
    })
}
