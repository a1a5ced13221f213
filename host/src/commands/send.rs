//! `kres-kafka send`: the publisher. Files go out in the order given, configuration files last,
//! each in chunks with its SHA-256 and a transfer id; the exit status says whether the broker
//! took every one. With `--wait`, it then reads the status topic for the resolvers' answers
//! about these transfers, and the exit status says whether every expected resolver took every
//! file and had its reload or renew served. The status topic's history, read first, names the
//! resolvers that have ever reported: a zone's, waited for when none is named, and an expected
//! one that never reported, said to be so.
//!
//! Before anything is published, the state topic (`kafka.state-topic`) is made ready and the
//! recipient's part of it read (`crate::publish::state`); each file goes there too, and
//! `--remove NAME` withdraws a file there and on the stream.

use crate::publish::Recipient;
use crate::status::{Progress, Reader, Roster, Tracker};
use anyhow::Context as _;
use bytesize::ByteSize;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Arguments of `kres-kafka send`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub client: super::ClientArgs,

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

    /// How the producer compresses its batches (chunks and whole files alike): `zstd`, `lz4`,
    /// `gzip`, `snappy` or `none`. Consumers decode every one of them without a setting.
    #[arg(long, value_name = "CODEC", default_value = "zstd", value_parser = ["zstd", "lz4", "gzip", "snappy", "none"])]
    pub compression: String,

    /// Sign every transfer with this Ed25519 private key (PKCS#8 PEM, from `kres-kafka keygen`
    /// or `openssl genpkey -algorithm ed25519`): resolvers that trust its public key accept it.
    #[arg(long, value_name = "KEY-FILE")]
    pub sign: Option<PathBuf>,

    /// Directory inside the resolver's files directory to deliver to (default: its top).
    #[arg(long, value_name = "DIR")]
    pub dest_dir: Option<String>,

    /// After publishing, wait for the resolvers' status records: exit 0 only when every
    /// expected resolver committed (or already had) every file and its reload or renew was
    /// served.
    #[arg(long)]
    pub wait: bool,

    /// A resolver `--wait` waits for (repeat for more); with `--hostname`, that resolver is
    /// expected anyway. With `--zone-id` and no `--expect`, `--wait` waits for every resolver
    /// whose status records say it is in that zone.
    #[arg(long, value_name = "NAME", requires = "wait")]
    pub expect: Vec<String>,

    /// How long `--wait` waits for the last answer.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration, requires = "wait")]
    pub wait_timeout: Duration,

    /// How long the brokers may take to answer: to take each file (librdkafka's
    /// `message.timeout.ms`), and with `--wait` to tell where the status topic ends. A broker
    /// that is down or does not answer fails the send then, naming it.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Withdraw the file NAME from the resolver (or zone): the resolver removes it from its
    /// files directory (keeping `.backup`), and a resolver that starts later does not get it.
    /// NAME is the file's name in the files directory, as its `file-name` header had it
    /// (`--dest-dir` does not apply). Repeat for more; removals follow the files sent.
    #[arg(long, value_name = "NAME")]
    pub remove: Vec<String>,

    /// Files to send; each is delivered under its own file name.
    #[arg(value_name = "FILE", required_unless_present = "remove")]
    pub files: Vec<PathBuf>,
}

/// `kres-kafka send`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kafka = args.client.settings()?;
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

    for name in &args.remove {
        kres_kafka_guest::name::check(name).map_err(|e| anyhow::anyhow!("--remove {name}: {e}"))?;
    }

    let to = match (args.hostname, args.zone_id) {
        (Some(host), _) => Recipient::Host(host),
        (None, Some(zone)) => Recipient::Zone(zone),
        (None, None) => unreachable!("clap requires one"),
    };
    let mut expected = args.expect.clone();
    if let Recipient::Host(host) = &to
        && !expected.contains(host)
    {
        expected.insert(0, host.clone());
    }
    // The status topic's ends before publishing: the answers come after them. Before them,
    // who has ever reported.
    let reader = if args.wait {
        let reader = Reader::new(&kafka)?.within(args.timeout);
        let ends = reader.ends()?;
        let roster = Roster::of(reader.history(&ends)?.values());
        if let Recipient::Zone(zone) = &to
            && expected.is_empty()
        {
            expected = zone_members(&roster, zone, reader.topic())?;
        }
        for resolver in expected.iter().filter(|r| !roster.knows(r)) {
            eprintln!(
                "kres-kafka: {resolver} has never reported on the status topic {:?}: is the \
                 hostname right? {} (waiting for it all the same)",
                reader.topic(),
                roster.known()
            );
        }
        Some((reader, ends, roster))
    } else {
        None
    };
    let signer = args
        .sign
        .as_deref()
        .map(crate::publish::read_signing_key)
        .transpose()?;
    let sent = super::block_on(async {
        let producer = crate::publish::producer_within(&kafka, &args.compression, args.timeout)
            .context("creating the Kafka producer")?;
        let mut state = match crate::publish::state::open(&kafka, &to, args.timeout).await {
            Ok(state) => state,
            Err(e) => return anyhow::Ok(Err(e)),
        };
        if let Some(state) = state.as_ref().filter(|s| s.created()) {
            println!(
                "created the state topic {:?} (cleanup.policy=compact, {} partitions)",
                state.topic(),
                state.partitions()
            );
        }
        let progress = crate::publish::progress_bar(&files);
        let batch = crate::publish::Batch {
            to: &to,
            files: &files,
            removals: &args.remove,
            chunk_size,
            signer: signer.as_ref(),
        };
        let sent =
            crate::publish::send(&producer, &kafka.topic, &batch, state.as_mut(), &progress).await;
        progress.finish_and_clear();
        anyhow::Ok(Ok(sent))
    })?;
    let sent = match sent {
        Ok(sent) => sent,
        // Nothing was published: the exit status of a send the brokers did not take.
        Err(e) => {
            eprintln!("kres-kafka: nothing sent: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    for d in &sent.delivered {
        if d.removal {
            println!("removed {} from {to}", d.name);
        } else {
            println!(
                "delivered {} ({} bytes, {} chunks) to {to}",
                d.name, d.size, d.chunks
            );
        }
    }
    for (name, reason) in &sent.failed {
        eprintln!("kres-kafka: not delivered: {name}: {reason}");
    }
    if !sent.failed.is_empty() {
        return Ok(ExitCode::from(1));
    }
    let Some((reader, ends, mut roster)) = reader else {
        return Ok(ExitCode::SUCCESS);
    };
    let transfers: Vec<_> = sent
        .delivered
        .iter()
        .map(|d| (d.name.clone(), d.transfer_id.clone()))
        .collect();
    let mut tracker = Tracker::new(&expected, &transfers);
    let starts: Vec<_> = ends.iter().map(|(p, _, high)| (*p, *high)).collect();
    reader.assign(&starts)?;
    wait(
        &reader,
        &mut tracker,
        &mut roster,
        args.wait_timeout,
        kafka.sasl.as_ref(),
    )?;
    let mut failed = false;
    let mut named = std::collections::BTreeSet::new();
    for ((resolver, file), progress) in &tracker.rows {
        match progress {
            // Not one record from it, ever: a typo'd hostname more often than a slow resolver.
            Progress::Waiting if !roster.knows(resolver) => {
                failed = true;
                if named.insert(resolver) {
                    eprintln!(
                        "kres-kafka: {resolver}: no status record from this resolver ever: is \
                         the hostname right? {}",
                        roster.known()
                    );
                }
            }
            Progress::Done { how } => println!("{resolver}: {file}: {how}"),
            Progress::Failed { why } => {
                failed = true;
                eprintln!("kres-kafka: {resolver}: {file}: {why}");
            }
            waiting => {
                failed = true;
                eprintln!(
                    "kres-kafka: {resolver}: {file}: no answer within {} ({})",
                    humantime::format_duration(args.wait_timeout),
                    waiting.show()
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The resolvers `--zone-id ZONE --wait` waits for when none is named: those whose latest
/// status record says they are in `zone`; none is an error (nothing is published).
fn zone_members(roster: &Roster, zone: &str, topic: &str) -> anyhow::Result<Vec<String>> {
    let members = roster.in_zone(zone);
    if members.is_empty() {
        anyhow::bail!(
            "--wait with --zone-id {zone}: no resolver has reported for zone {zone} on the \
             status topic {topic:?} {}: pass --expect NAME for each resolver to wait for",
            roster.known()
        );
    }
    let shown: Vec<String> = members
        .iter()
        .map(|(name, note)| match note {
            Some(note) => format!("{name} ({note})"),
            None => name.clone(),
        })
        .collect();
    println!(
        "waiting for {}: the resolvers that have reported for zone {zone} (--expect names \
         others)",
        shown.join(", ")
    );
    Ok(members.into_iter().map(|(name, _)| name).collect())
}

/// Read the status topic until every row is settled or `timeout` has passed, showing the
/// table live on a terminal, a line per change otherwise; every record read goes to
/// `roster`. A new password in `sasl-password-file` is taken for the next connections.
fn wait(
    reader: &Reader,
    tracker: &mut Tracker,
    roster: &mut Roster,
    timeout: Duration,
    sasl: Option<&crate::config::Sasl>,
) -> anyhow::Result<()> {
    let mut password = sasl.and_then(|s| s.password().ok());
    let live = std::io::stderr().is_terminal();
    let table = indicatif::ProgressBar::new_spinner();
    if live {
        table.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} waiting for the resolvers ({elapsed})\n{msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        table.enable_steady_tick(Duration::from_millis(200));
        table.set_message(show(tracker));
    } else {
        table.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let deadline = Instant::now() + timeout;
    while !tracker.settled() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        if let Some(sasl) = sasl
            && let Ok(Some(new)) = sasl.changed_password(password.as_deref())
        {
            match reader.set_sasl_credentials(&sasl.username, &new) {
                Ok(()) => tracing::info!(
                    file = %sasl.password_file.display(),
                    "new SASL password: the next connections authenticate with it"
                ),
                Err(e) => tracing::error!("taking the new SASL password: {e}"),
            }
            password = Some(new);
        }
        let Some((_, _, Some(record))) = reader.next(left.min(Duration::from_millis(200)))? else {
            continue;
        };
        roster.see(&record);
        let before = tracker.rows.clone();
        if tracker.see(&record) {
            if live {
                table.set_message(show(tracker));
            } else {
                for (key, now) in &tracker.rows {
                    if before.get(key) != Some(now) {
                        println!("{} {}: {}", key.0, key.1, now.show());
                    }
                }
            }
        }
    }
    table.finish_and_clear();
    Ok(())
}

/// The table: resolver, file, state.
fn show(tracker: &Tracker) -> String {
    let width =
        |f: fn(&(String, String)) -> usize| tracker.rows.keys().map(f).max().unwrap_or(0).max(8);
    let (rw, fw) = (width(|k| k.0.len()), width(|k| k.1.len()));
    let mut out = format!("{:rw$}  {:fw$}  STATE", "RESOLVER", "FILE");
    for ((resolver, file), progress) in &tracker.rows {
        out.push_str(&format!(
            "\n{resolver:rw$}  {file:fw$}  {}",
            progress.show()
        ));
    }
    out
}
