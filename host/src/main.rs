//! The `kres-kafka` command: parse arguments, set up logging, run the command.

use clap::Parser;
use kres_kafka::commands::Cli;
use std::process::ExitCode;

fn main() -> ExitCode {
    no_error_backtraces();
    let cli = Cli::parse();
    kres_kafka::logging::init(cli.log_level());
    cli.run().unwrap_or_else(|e| {
        eprintln!("kres-kafka: error: {e:#}");
        ExitCode::from(2)
    })
}

/// Errors are made in the daemon's hot path (a WASI call that finds no file returns one), and
/// with `RUST_BACKTRACE=1` each would capture a backtrace: `bench throughput` measured a small
/// file 12% slower in the guest. Panics still print theirs; `RUST_LIB_BACKTRACE=1` asks for
/// error backtraces too.
fn no_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the first thing the process does, before any other thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}
