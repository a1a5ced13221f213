//! Command-line arguments. Each command's module takes its `Args` and does the work.

use crate::sandbox::{self, SandboxConfig};
use crate::types::Limits;
use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Delivers files from Kafka to Knot Resolver 6 through a sandboxed WebAssembly guest.
#[derive(Debug, Parser)]
#[command(name = "kres-kafka", version, about)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace); `RUST_LOG` overrides it.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Feed one message to the guest, as if it came from Kafka, and print the outcome as JSON.
    ///
    /// Exit status: 0 when the message was skipped, stored, committed or unchanged; 1 when it
    /// was rejected (the JSON says why); 2 when the guest or the arguments are unusable.
    Apply(ApplyArgs),

    /// Run the daemon: consume the topic and deliver files to this resolver.
    ///
    /// Reads the resolver's own config files (merged in order). SIGTERM or SIGINT finishes the
    /// message in progress, commits offsets, serves the pending manager call and exits 0.
    Run(RunArgs),

    /// Publish files to one resolver: other files first, configuration last, in chunks.
    Send(SendArgs),

    /// Show kres-kafka working with nothing installed: an in-process broker, a stand-in
    /// manager, a published RPZ file and configuration, delivered and reloaded.
    Demo(DemoArgs),

    /// Check a guest component, or compile it into the cache ahead of a deployment.
    #[command(subcommand)]
    Guest(GuestCommand),

    /// Measure kres-kafka's figures on this machine and print them.
    Bench(BenchArgs),
}

#[derive(Debug, Subcommand)]
pub enum GuestCommand {
    /// Compile, check against the world, self-test; print the version. Exit 1 if refused.
    Check(GuestCheckArgs),
    /// Compile into the cache the daemon uses, so that starting or swapping to it is fast.
    Compile(GuestCompileArgs),
}

/// Arguments of `kres-kafka guest check`.
#[derive(Debug, Args)]
pub struct GuestCheckArgs {
    /// The guest component.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

/// Arguments of `kres-kafka guest compile`.
#[derive(Debug, Args)]
pub struct GuestCompileArgs {
    /// The guest component.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// The resolver config whose guest cache (in `kafka.state-dir`, or its default) to fill.
    #[arg(long = "config", short = 'c', value_name = "PATH", default_value = crate::config::DEFAULT_CONFIG_FILE)]
    pub configs: Vec<PathBuf>,

    /// The cache directory, overriding the config's.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Arguments of `kres-kafka bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub what: BenchKind,

    /// How many swaps to time, cold and warm each.
    #[arg(long, default_value_t = 20)]
    pub iterations: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchKind {
    /// From a new guest file in place to the first message processed by it.
    GuestSwap,
}

/// Arguments of `kres-kafka run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A resolver config file; repeat to merge several, as the manager does.
    #[arg(long = "config", short = 'c', value_name = "PATH", default_value = crate::config::DEFAULT_CONFIG_FILE)]
    pub configs: Vec<PathBuf>,

    /// A guest component to use instead of `kafka.guest` or the embedded one.
    #[arg(long, value_name = "PATH")]
    pub guest: Option<PathBuf>,
}

/// Arguments of `kres-kafka send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Config file(s) whose `kafka` section gives the brokers, topic, TLS and chunk size.
    #[arg(long = "config", short = 'c', value_name = "PATH")]
    pub configs: Vec<PathBuf>,

    /// Broker(s) as host@port, overriding `kafka.server`; repeat for more.
    #[arg(long, value_name = "HOST@PORT")]
    pub server: Vec<String>,

    /// Topic, overriding `kafka.topic`.
    #[arg(long)]
    pub topic: Option<String>,

    /// The resolver the files are for (the `hostname` header).
    #[arg(long, value_name = "NAME")]
    pub hostname: String,

    /// Chunk size, overriding `kafka.chunk-size` [default: 512KiB].
    #[arg(long, value_name = "SIZE")]
    pub chunk_size: Option<ByteSize>,

    /// Directory inside the resolver's files directory to deliver to (default: its top).
    #[arg(long, value_name = "DIR")]
    pub dest_dir: Option<String>,

    /// Files to send; each is delivered under its own file name.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Arguments of `kres-kafka demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the delivered files in this directory.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
}

/// Arguments of `kres-kafka apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The files directory (the guest's only view of the filesystem).
    #[arg(long, value_name = "DIR")]
    pub files_dir: PathBuf,

    /// This resolver's hostname [default: the machine's hostname].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// The message key.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,

    /// A message header, e.g. `-H file-name=block.rpz`; repeat for more.
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// A guest component to use instead of the embedded one.
    #[arg(long, value_name = "PATH")]
    pub guest: Option<PathBuf>,

    #[command(flatten)]
    pub limits: LimitArgs,

    /// The message value [default: standard input].
    #[arg(value_name = "VALUE_FILE")]
    pub value_file: Option<PathBuf>,
}

/// Limits on the guest and on the files it may write.
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Largest file accepted (bytes, or with a unit: 512KiB, 1GiB).
    #[arg(long, value_name = "SIZE", default_value_t = ByteSize::b(Limits::DEFAULT_MAX_FILE_SIZE))]
    pub max_file_size: ByteSize,

    /// Largest `total-chunks` accepted.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_CHUNKS)]
    pub max_chunks: u32,

    /// Cap on the guest's memory.
    #[arg(long, value_name = "SIZE", default_value_t = ByteSize::b(sandbox::DEFAULT_MEMORY_LIMIT))]
    pub guest_memory_limit: ByteSize,

    /// Time limit for one message in the guest (e.g. 500ms, 30s).
    #[arg(long, value_name = "DURATION", default_value_t = sandbox::DEFAULT_TIME_LIMIT.into())]
    pub guest_time_limit: humantime::Duration,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("header {s:?} is not NAME=VALUE"))?;
    if name.is_empty() {
        return Err(format!("header {s:?} has an empty name"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

impl LimitArgs {
    /// The limits the guest enforces on each message.
    pub fn limits(&self) -> Limits {
        Limits {
            max_file_size: self.max_file_size.as_u64(),
            max_chunks: self.max_chunks,
        }
    }

    /// The sandbox's configuration for `files_dir` under these limits.
    pub fn sandbox(&self, files_dir: PathBuf) -> SandboxConfig {
        SandboxConfig {
            files_dir,
            memory_limit: self.guest_memory_limit.as_u64(),
            time_limit: self.guest_time_limit.into(),
            cache_dir: None,
        }
    }
}
