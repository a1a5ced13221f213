//! `kres-kafka bench`: figures measured on this machine, printed beside the limit they are
//! measured against, in the same run. Run it from a release build (`cargo run --release --
//! bench throughput`): a debug build measures the debug build.
//!
//! - `guest-swap` (`swap`): from a new guest file in place to its first message.
//! - `resolver` (`resolver`): from `send` returning to the real Knot Resolver answering.
//! - `throughput` (`throughput`): delivery through the in-process broker to the real daemon,
//!   against consuming the same messages without kres-kafka; then the guest's cost per message
//!   under WebAssembly against the same logic compiled natively (`cost`).

use bytesize::ByteSize;
use std::path::PathBuf;
use std::process::ExitCode;

mod cost;
mod harness;
mod resolver;
mod swap;
mod throughput;
mod workload;

pub use swap::guest_variant;

/// Arguments of `kres-kafka bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(value_enum)]
    pub what: Kind,

    /// guest-swap: how many swaps to time, cold and warm each.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,

    /// resolver: how many rounds of each kind to time.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,

    /// throughput: the size of the large file (workload A).
    #[arg(long, default_value = "256MiB")]
    pub size: ByteSize,

    /// throughput: the chunk size its publisher uses.
    #[arg(long, default_value = "512KiB")]
    pub chunk: ByteSize,

    /// throughput: how many small configuration files workload B sends.
    #[arg(long, default_value_t = 2000)]
    pub configs: usize,

    /// throughput: run only these parts (comma-separated); default: all.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<throughput::Part>,

    /// throughput: where the files directories go (the disk measured). Default: the system's
    /// temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// throughput: run against this broker (host:port, plaintext, topics created with the
    /// admin API, named `kres-kafka-bench-<time>-...`) instead of the in-process one.
    #[arg(long)]
    pub broker: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// From a new guest file in place to the first message processed by it.
    GuestSwap,
    /// From `send` returning to the real Knot Resolver answering from the new file (an RPZ,
    /// a configuration), split into its parts; needs `KNOT_RESOLVER_DIR` or Knot Resolver 6
    /// on the `PATH`.
    Resolver,
    /// Delivery of a large chunked file, of many small configurations, and past a large file
    /// for another resolver; peak memory; the guest's cost under WebAssembly.
    Throughput,
}

/// Run a benchmark.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        Kind::GuestSwap => super::block_on(swap::run(args.iterations.max(1)))?,
        Kind::Resolver => super::block_on(resolver::run(args.rounds.max(1)))?,
        Kind::Throughput => {
            let options = throughput::Options {
                only: args.only,
                size: args.size.as_u64(),
                chunk: args.chunk.as_u64() as usize,
                configs: args.configs,
                dir: args.dir.unwrap_or_else(std::env::temp_dir),
                broker: args.broker,
            };
            super::block_on(throughput::run(options))?
        }
    }
    Ok(ExitCode::SUCCESS)
}
