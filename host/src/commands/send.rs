//! `kres-kafka send`: the publisher. Files go out in the order given, configuration files last,
//! each in chunks with its SHA-256 and a transfer id; the exit status says whether the broker
//! took every one.

use crate::config::{Config, Server};
use crate::publish::Recipient;
use anyhow::Context as _;
use bytesize::ByteSize;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kres-kafka send`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config file(s) whose `kafka` section gives the brokers, topic, TLS and chunk size.
    #[arg(long = "config", short = 'c', value_name = "PATH")]
    pub configs: Vec<PathBuf>,

    /// Broker(s) as host@port, overriding `kafka.server`; repeat for more.
    #[arg(long, value_name = "HOST@PORT")]
    pub server: Vec<String>,

    /// Topic, overriding `kafka.topic`.
    #[arg(long)]
    pub topic: Option<String>,

    /// The resolver the files are for (the `hostname` header, and the key).
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "zone_id",
        conflicts_with = "zone_id"
    )]
    pub hostname: Option<String>,

    /// The zone the files are for: every resolver whose `kafka.zone-id` is ZONE (the key, as
    /// upstream's newest publisher sends it).
    #[arg(long, value_name = "ZONE")]
    pub zone_id: Option<String>,

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

/// `kres-kafka send`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = if args.configs.is_empty() {
        Config::defaults()?
    } else {
        Config::load(&args.configs)?
    };
    let mut kafka = config.kafka;
    for warning in crate::tls::check_files(&kafka.tls)? {
        tracing::warn!("{warning}");
    }
    if !args.server.is_empty() {
        kafka.servers = args
            .server
            .iter()
            .map(|s| Server::parse(s))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
    }
    if let Some(topic) = args.topic {
        kafka.topic = topic;
    }
    let chunk_size = args.chunk_size.map_or(kafka.chunk_size, |s| s.as_u64());
    anyhow::ensure!(chunk_size > 0, "--chunk-size must be at least 1 byte");
    let mut files = Vec::new();
    for path in &args.files {
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", path.display()))?;
        let name = match &args.dest_dir {
            Some(dir) => format!("{}/{base}", dir.trim_end_matches('/')),
            None => base.to_owned(),
        };
        kres_kafka_guest::name::check(&name)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        files.push(crate::publish::Outgoing {
            path: path.clone(),
            name,
        });
    }

    let to = match (args.hostname, args.zone_id) {
        (Some(host), _) => Recipient::Host(host),
        (None, Some(zone)) => Recipient::Zone(zone),
        (None, None) => unreachable!("clap requires one"),
    };
    let sent = super::block_on(async {
        let producer = crate::publish::producer(&kafka).context("creating the Kafka producer")?;
        let progress = crate::publish::progress_bar(&files);
        let sent =
            crate::publish::send(&producer, &kafka.topic, &to, &files, chunk_size, &progress).await;
        progress.finish_and_clear();
        anyhow::Ok(sent)
    })?;
    for (name, size, chunks) in &sent.delivered {
        println!("delivered {name} ({size} bytes, {chunks} chunks) to {to}");
    }
    if sent.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (name, reason) in &sent.failed {
        eprintln!("kres-kafka: not delivered: {name}: {reason}");
    }
    Ok(ExitCode::from(1))
}
