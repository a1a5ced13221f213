//! `kres-kafka apply`: one message from the command line through the guest, the outcome as one
//! JSON object on standard output. Operators use it to inject a file by hand and to try a new
//! guest offline; tests use it to drive the real binary.

use crate::config::{DEFAULT_GUEST_MEMORY_LIMIT, DEFAULT_GUEST_TIME_LIMIT};
use crate::outcome::{Action, Context, Limits, Message, Outcome};
use crate::sandbox::{NoResolver, Sandbox, SandboxConfig};
use anyhow::{Context as _, bail};
use bytesize::ByteSize;
use kres_kafka_guest::headers::FILE_NAME;
use serde::Serialize;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The JSON line `apply` prints.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    /// `skipped`, `stored`, `committed`, `unchanged` or `rejected`.
    pub status: &'static str,
    /// The file concerned, when known.
    pub file: Option<String>,
    /// What the resolver's manager would be asked to do.
    pub action: Action,
    /// For `rejected`: the kind of error (`bad-header`, `time-limit`, ...).
    pub kind: Option<String>,
    /// For `skipped` and `rejected`: why.
    pub reason: Option<String>,
    /// For `stored`: chunk index, total and how many are on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<[u32; 3]>,
    /// For `committed`: size and SHA-256 of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Report {
    fn new(status: &'static str, file: Option<String>) -> Self {
        Report {
            status,
            file,
            action: Action::None,
            kind: None,
            reason: None,
            chunk: None,
            size: None,
            sha256: None,
        }
    }

    /// The report of `outcome`; `named` is the `file-name` header, for a rejection (the guest
    /// names no file when it refuses one).
    pub fn of(outcome: &Outcome, named: Option<String>) -> Self {
        let rejected = matches!(outcome, Outcome::Rejected(_) | Outcome::Failed(_));
        let mut report = Report::new(
            outcome.name(),
            if rejected {
                named
            } else {
                outcome.file().map(str::to_owned)
            },
        );
        if rejected {
            report.status = "rejected";
        }
        report.action = outcome.action();
        report.kind = outcome.kind().map(str::to_owned);
        report.reason = outcome.reason();
        match outcome {
            Outcome::Stored {
                index,
                total,
                received,
                ..
            } => report.chunk = Some([*index, *total, *received]),
            Outcome::Committed { size, sha256, .. } => {
                report.size = Some(*size);
                report.sha256 = Some(sha256.clone());
            }
            _ => {}
        }
        report
    }
}

/// Run `kres-kafka apply`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.files_dir.is_dir() {
        bail!(
            "the files directory {} does not exist or is not a directory",
            args.files_dir.display()
        );
    }
    let value = match &args.value_file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => {
            let mut value = Vec::new();
            std::io::stdin()
                .read_to_end(&mut value)
                .context("reading the value from standard input")?;
            value
        }
    };
    let hostname = match args.hostname {
        Some(name) => name,
        None => crate::system::machine_hostname()?,
    };

    let sandbox = Sandbox::new(args.limits.sandbox(args.files_dir.clone()))?;
    let guest = sandbox.load_configured(args.guest.as_deref())?;
    let ctx = Context {
        hostname,
        zone_id: args.zone_id,
        limits: args.limits.limits(),
        now: crate::system::unix_now(),
        // Applied by hand: the operator is the authority, no publisher's signature is asked.
        trust: Default::default(),
    };
    let (topic, partition, offset) = args.position.unwrap_or((String::new(), -1, -1));
    let msg = Message {
        key: args.key.map(String::into_bytes),
        headers: args
            .headers
            .into_iter()
            .map(|(n, v)| (n, v.into_bytes()))
            .collect(),
        value: value.into(),
        topic,
        partition,
        offset,
    };
    let named = msg.header(FILE_NAME);
    let report = Report::of(&guest.process(&ctx, msg), named);
    println!("{}", serde_json::to_string(&report)?);
    Ok(if report.status == "rejected" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Arguments of `kres-kafka apply`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The files directory (the guest's only view of the filesystem).
    #[arg(long, value_name = "DIR")]
    pub files_dir: PathBuf,

    /// This resolver's hostname [default: the machine's hostname].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// The message key.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,

    /// The message's position, as if Kafka delivered it: `TOPIC/PARTITION@OFFSET`. With it the
    /// guest records the message as done and skips it as replayed when it comes again; without
    /// it the message is injected by hand and never recorded.
    #[arg(long, value_name = "TOPIC/PARTITION@OFFSET", value_parser = parse_position)]
    pub position: Option<(String, i32, i64)>,

    /// This resolver's zone-id: a message whose key equals it is for this resolver.
    #[arg(long, value_name = "ZONE")]
    pub zone_id: Option<String>,

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
#[derive(Debug, clap::Args)]
pub struct LimitArgs {
    /// Largest file accepted (bytes, or with a unit: 512KiB, 1GiB).
    #[arg(long, value_name = "SIZE", default_value_t = ByteSize::b(Limits::DEFAULT_MAX_FILE_SIZE))]
    pub max_file_size: ByteSize,

    /// Largest `total-chunks` accepted.
    #[arg(long, value_name = "N", default_value_t = Limits::DEFAULT_MAX_CHUNKS)]
    pub max_chunks: u32,

    /// Cap on the guest's memory.
    #[arg(long, value_name = "SIZE", default_value_t = ByteSize::b(DEFAULT_GUEST_MEMORY_LIMIT))]
    pub guest_memory_limit: ByteSize,

    /// Time limit for one message in the guest (e.g. 500ms, 30s).
    #[arg(long, value_name = "DURATION", default_value_t = DEFAULT_GUEST_TIME_LIMIT.into())]
    pub guest_time_limit: humantime::Duration,
}

fn parse_position(s: &str) -> Result<(String, i32, i64), String> {
    let bad = || format!("position {s:?} is not TOPIC/PARTITION@OFFSET");
    let (topic, rest) = s.rsplit_once('/').ok_or_else(bad)?;
    let (partition, offset) = rest.split_once('@').ok_or_else(bad)?;
    let partition: i32 = partition.parse().map_err(|_| bad())?;
    let offset: i64 = offset.parse().map_err(|_| bad())?;
    if topic.is_empty() || partition < 0 || offset < 0 {
        return Err(bad());
    }
    Ok((topic.to_owned(), partition, offset))
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
            resolver: Arc::new(NoResolver),
        }
    }
}
