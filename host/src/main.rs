//! The `kres-kafka` command: parse arguments, set up logging, run the command.

use clap::Parser;
use kres_kafka::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let daemon_level = matches!(cli.command, Command::Run(_)).then_some("info");
    kres_kafka::logging::init(cli.log_level.as_deref().or(daemon_level));
    let result = match cli.command {
        Command::Apply(args) => kres_kafka::apply::run(args),
        Command::Run(args) => kres_kafka::commands::block_on(kres_kafka::commands::run(args)),
        Command::Send(args) => kres_kafka::commands::block_on(kres_kafka::commands::send(args)),
        Command::Demo(args) => kres_kafka::commands::block_on(kres_kafka::commands::demo(args)),
        Command::Guest(command) => kres_kafka::commands::guest(command),
        Command::Bench(args) => kres_kafka::commands::block_on(kres_kafka::bench::run(args)),
    };
    result.unwrap_or_else(|e| {
        eprintln!("kres-kafka: error: {e:#}");
        ExitCode::from(2)
    })
}
