//! `kres-kafka bench`: figures measured on this machine, printed beside the limit they are
//! measured against, in the same run. Run it from a release build (`cargo run --release --
//! bench throughput`): a debug build measures the debug build.
//!
//! - `bootstrap` (`bootstrap`): a resolver starting from nothing against a fleet state in the
//!   state topic, against consuming and writing the same records without kres-kafka.
//! - `guest-swap` (`swap`): from a new guest file in place to its first message.
//! - `resolver` (`resolver`): from `send` returning to the real Knot Resolver answering.
//! - `throughput` (`throughput`): delivery through the in-process broker to the real daemon,
//!   against consuming the same messages without kres-kafka; then the guest's cost per message
//!   under WebAssembly against the same logic compiled natively (`cost`).

use bytesize::ByteSize;
use std::path::PathBuf;
use std::process::ExitCode;

mod bootstrap;
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

    /// bootstrap: how many files of the resolver's the state topic holds.
    #[arg(long, default_value_t = 1000)]
    pub files: usize,

    /// bootstrap: their size in all.
    #[arg(long, default_value = "200MiB")]
    pub state_size: ByteSize,

    /// throughput, bootstrap: where the files directories go (the disk measured). Default: the system's
    /// temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// throughput, bootstrap: run against this broker (host:port, plaintext, topics created with the
    /// admin API, named `kres-kafka-bench-<time>-...`) instead of the in-process one.
    #[arg(long)]
    pub broker: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// A resolver starting from nothing against a fleet state (the state topic): time to
    /// every file in place, peak memory; needs a broker that keeps it (`--broker`, or nisshi).
    Bootstrap,
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

/// The fewest files `bench bootstrap` makes: one configuration and block lists.
const CONFIG_MIN: usize = 10;

/// Run a benchmark.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.what {
        Kind::Bootstrap => super::block_on(bootstrap::run(bootstrap::Options {
            files: args.files.max(CONFIG_MIN),
            size: args.state_size.as_u64(),
            dir: args.dir.unwrap_or_else(std::env::temp_dir),
            broker: args.broker,
        }))?,
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
