//! `kres-kafka bench throughput`: the real daemon (this binary's `run`, default configuration)
//! against librdkafka's in-process mock broker, beside the limit measured in the same run.
//!
//! - **A**: one large RPZ file in chunks, for this resolver (a generated block list: distinct
//!   domains, sorted, a rule and a wildcard rule each), compressed as `send` does. Limit:
//!   consuming the same messages and writing their values into one file, fsynced once. Also
//!   shown: the bytes sent to the broker per byte of file.
//! - **B**: many whole small JSON configurations, for this resolver, each judged against the
//!   resolver's schema and committed durably. Limit shown: consuming them raw.
//! - **W**: a backlog, twelve 20 MiB block lists (each in chunks on a partition of its own, as
//!   a publisher keying by file name spreads them) all in the topic before the daemon starts;
//!   from its start to every list committed. Limit: consuming them (all waiting) and writing
//!   each list to its file, each fsynced once.
//! - **L**: the same lists published while the daemon runs, as fast as the producer can
//!   (`send` unthrottled), from the first record to every list committed. Limit: the same
//!   publisher with a plain consumer reading, writing and fsyncing as it goes (on two cores
//!   the publisher's compression takes CPU from either).
//! - **S**: the same lists for another resolver waiting, then one small file for this one;
//!   from the daemon's start to that file committed. Limit: consuming them and throwing them
//!   away.
//!
//! W, L and S run three rounds, each the limit then a fresh daemon; the round with the median
//! ratio is shown, and every round below it. Their peak memory is over the daemon's whole
//! life, start-up included.
//! - **O**: one large RPZ (`--size`, in `--chunk` chunks) for this resolver on one partition,
//!   the main case: a resolver that is behind. The mock broker keeps only about 5 MiB
//!   a partition, so the producer stays [`BEHIND`] ahead of the consumer (what a partition
//!   keeps, compressed): the consumer always finds that much waiting. Limit: the same producer
//!   with a plain consumer writing the values into one file, fsynced once.
//! - **X**: the same file for another resolver, then one small file for this one: what
//!   skipping another resolver's traffic costs. Limit: consuming the same messages and throwing
//!   them away.
//! - **C**: `--configs` whole 1 KiB configurations waiting (on the partition their key maps to)
//!   before the daemon starts; from its start to all committed, in commits per second. Limit: consuming them.
//!
//! O, X and C run three rounds, as W, L and S do.
//! - **F**: a fleet's traffic waiting on a 12-partition topic (a file for each of 24
//!   resolvers, keyed and placed as `send` does): what one resolver fetches per byte of its own
//!   file, reading every partition (`partitions: all`) and only those its key maps to
//!   (`addressed`), and how long it takes from its start to have read all of it.
//!
//! The mock broker keeps only about 5 MiB per partition (compressed), so A and B are produced
//! while they are consumed: the producer stays at most [`WINDOW`] ahead of what the consumer has
//! received (the daemon's `kres_kafka_received_bytes_total`). Both sides run with
//! `fetch.wait.max.ms` = [`FETCH_WAIT_MS`], as the mock does not wake a waiting fetch early;
//! every other setting is the default. Peak memory is the daemon's own (`VmHWM`).

use super::cost;
use super::harness::{
    Broker, Done, Sink, Topic, catch_up, first_start, precompile, raw, raw_backlog, sha256_file,
    through_daemon, write_and_rename,
};
use super::workload::{Behind, Chunked, Configs, Fleet, Lists, produce};
use crate::kafka::partitioner::{partition_of, partitions_of};
use anyhow::{Context as _, bail};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The resolver the daemon works for.
pub(super) const ME: &str = "bench-resolver";
/// The resolver workload S is for.
pub(super) const OTHER: &str = "another-resolver";
/// How far the producer may run ahead of the consumer (the mock keeps ~5 MiB a partition).
pub(super) const WINDOW: u64 = 4 << 20;
/// `fetch.wait.max.ms` on both sides: the mock broker does not wake a waiting fetch early.
pub(super) const FETCH_WAIT_MS: &str = "1";
/// Longest any step may take.
pub(super) const PATIENCE: Duration = Duration::from_secs(600);

/// Targets the project sets itself.
const TARGET_RATIO: f64 = 0.5;
const TARGET_COMMITS: f64 = 10_000.0;
const TARGET_RSS_MIB: f64 = 64.0;
/// From a first start (empty state directory) to consuming, in seconds.
const TARGET_FIRST_START_S: f64 = 0.5;
/// Catching up (a backlog, an unthrottled publisher) against the limit.
const TARGET_CATCH_UP: f64 = 0.8;
/// Rounds of each catch-up workload (W, L, S), each paired with its limit: on a shared
/// machine one round varies by 20% and more, the median of three much less.
const ROUNDS: usize = 3;
/// Block lists of workloads W and L: each on a partition of its own, which holds about
/// 5 MiB compressed (0.18 of a list).
const LISTS: usize = 12;
const LIST_SIZE: u64 = 20 << 20;
/// How far the producer runs ahead of the consumer in workloads O and X: what one partition of
/// the mock broker keeps (about 5 MiB compressed; a block list compresses to 0.18).
const BEHIND: u64 = 24 << 20;
/// Bytes sent to the broker per byte of a block list, compressed as `send` does.
const TARGET_WIRE: f64 = 0.25;

/// What to run.
pub struct Options {
    /// Parts to run; empty: all.
    pub only: Vec<Part>,
    pub size: u64,
    pub chunk: usize,
    pub configs: usize,
    pub dir: PathBuf,
    /// A broker to run against instead of the in-process one.
    pub broker: Option<String>,
}

/// Run the workloads, print the table, then the guest's cost.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("kres-kafka-bench")
        .tempdir_in(&options.dir)
        .with_context(|| format!("creating a scratch directory in {}", options.dir.display()))?;
    let broker = match &options.broker {
        Some(servers) => Broker::external(servers),
        None => Broker::mock()?,
    };
    let servers = broker.servers();
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let size = options.size;
    let runs = |part: Part| options.only.is_empty() || options.only.contains(&part);
    eprintln!(
        "throughput: {} MiB in {} KiB chunks (A), {} configurations (B), files in {}",
        size >> 20,
        options.chunk >> 10,
        options.configs,
        options.dir.display()
    );
    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    // Peak resident memory over a daemon's whole life, start-up included.
    let mut whole_life: Vec<(&str, f64)> = Vec::new();
    // Compiled once, as `kres-kafka guest compile` or a daemon's first start does; each daemon
    // then starts with it in its cache, as it does on every later start.
    let (compiled, compile_peak) = precompile(scratch.path())?;
    let setup = Setup {
        broker: &broker,
        scratch: scratch.path(),
        compiled: &compiled,
    };
    eprintln!("first start");
    let (first, first_peak) = first_start(&broker, scratch.path()).await?;

    if runs(Part::A) {
        let a = Chunked::new(ME, "zones/big.rpz", size, options.chunk);
        eprintln!("A: kres-kafka");
        let done = Done::File("zones/big.rpz", size);
        let ours = through_daemon(
            &broker,
            scratch.path(),
            &compiled,
            broker.topic("a").as_str().into(),
            &a,
            done,
            &[],
        )
        .await?;
        if sha256_file(&ours.files.join("zones/big.rpz"))? != a.sha256 {
            bail!("workload A: the delivered file is not the file published");
        }
        eprintln!("A: limit");
        let sink = Sink::File(scratch.path().join("limit-a"));
        let limit = raw(&broker, &broker.topic("a-limit"), &a, sink)?;
        let (ours_rate, limit_rate) = (mb(size) / secs(ours.time), mb(size) / secs(limit));
        let ratio = ours_rate / limit_rate;
        rows.push(format!(
            "  A  {:>4} MiB RPZ in {} KiB chunks            {ours_rate:>8.0} MB/s      consume, write, fsync {limit_rate:>6.0} MB/s   {ratio:>5.2}  >= {TARGET_RATIO}: {}",
            size >> 20,
            options.chunk >> 10,
            met(ratio >= TARGET_RATIO)
        ));
        let wire = ours.sent as f64 / size as f64;
        rows.push(format!(
            "     sent to the broker: {wire:.2} byte per byte of file ({}, as `send` compresses)                                <= {TARGET_WIRE}: {}",
            crate::publish::DEFAULT_COMPRESSION,
            met(wire <= TARGET_WIRE)
        ));
        whole_life.push(("A", ours.start_peak_mib.max(ours.peak_rss_mib)));
        peaks.push(("A", ours));
    }
    if runs(Part::B) {
        let b = Configs(options.configs);
        let files: Vec<PathBuf> = (0..b.0).map(|i| PathBuf::from(Configs::name(i))).collect();
        eprintln!("B: kres-kafka");
        let done = Done::Committed(b.0);
        let ours = through_daemon(
            &broker,
            scratch.path(),
            &compiled,
            broker.topic("b").as_str().into(),
            &b,
            done,
            &files,
        )
        .await?;
        eprintln!("B: limit");
        let limit = raw(&broker, &broker.topic("b-limit"), &b, Sink::Discard)?;
        let disk = write_and_rename(&scratch.path().join("b-disk"), &b)?;
        let (commits, limit_rate) = (b.0 as f64 / secs(ours.time), b.0 as f64 / secs(limit));
        let disk_rate = b.0 as f64 / secs(disk);
        rows.push(format!(
            "  B  {:>5} whole 1 KiB JSON configurations    {commits:>8.0} commits/s  consume only {limit_rate:>8.0} msg/s                >= {TARGET_COMMITS:.0}/s: {}",
            b.0,
            met(commits >= TARGET_COMMITS)
        ));
        rows.push(format!(
            "                                                                   the disk: write, rename, one sync {disk_rate:>6.0} files/s   {:>5.2}",
            commits / disk_rate
        ));
        whole_life.push(("B", ours.start_peak_mib.max(ours.peak_rss_mib)));
        peaks.push(("B", ours));
    }
    if runs(Part::O) || runs(Part::X) {
        let label = format!("one {} MiB RPZ on one partition", size >> 20,);
        let ours = Chunked::new(ME, "zones/big.rpz", size, options.chunk);
        let theirs = Chunked::new(OTHER, "zones/big.rpz", size, options.chunk);
        let mut parts = Vec::new();
        if runs(Part::O) {
            parts.push(("O", &ours, None));
        }
        if runs(Part::X) {
            parts.push(("X", &theirs, Some("ours.rpz")));
        }
        for (part, file, then) in parts {
            let mut rounds = Rounds::default();
            let workload = Behind {
                file,
                window: BEHIND,
                then,
            };
            for round in 0..ROUNDS {
                eprintln!("{part}: limit, round {}", round + 1);
                let sink = match then {
                    None => Sink::File(scratch.path().join("limit-o")),
                    Some(_) => Sink::Discard,
                };
                let topic = broker.topic(&format!("{}-limit-{round}", part.to_lowercase()));
                let limit = raw(&broker, &topic, &workload, sink)?;
                let _ = std::fs::remove_file(scratch.path().join("limit-o"));
                eprintln!("{part}: kres-kafka, round {}", round + 1);
                let topic = broker.topic(&format!("{}-{round}", part.to_lowercase()));
                let done = match then {
                    None => Done::File("zones/big.rpz", size),
                    Some(name) => Done::File(name, 0),
                };
                let ours = through_daemon(
                    &broker,
                    scratch.path(),
                    &compiled,
                    topic.as_str().into(),
                    &workload,
                    done,
                    &[],
                )
                .await?;
                if then.is_none() && sha256_file(&ours.files.join("zones/big.rpz"))? != file.sha256
                {
                    bail!("workload O: the delivered file is not the file published");
                }
                std::fs::remove_dir_all(scratch.path().join(&topic))?;
                rounds.add(
                    mb(size) / secs(ours.time),
                    mb(size) / secs(limit),
                    ours.start_peak_mib.max(ours.peak_rss_mib),
                );
            }
            let (rate, limit_rate, ratio) = rounds.median();
            rows.push(match then {
                None => format!(
                    "  O  {label}, behind      {rate:>8.0} MB/s      consume, write, fsync {limit_rate:>6.0} MB/s   {ratio:>5.2}  >= {TARGET_CATCH_UP}: {}",
                    met(ratio >= TARGET_CATCH_UP)
                ),
                Some(_) => format!(
                    "  X  {label} for another resolver, then ours {rate:>4.0} MB/s   consume only {limit_rate:>13.0} MB/s   {ratio:>5.2}  >= {TARGET_CATCH_UP}: {}",
                    met(ratio >= TARGET_CATCH_UP)
                ),
            });
            rows.push(rounds.line());
            whole_life.push((part, rounds.peak()));
        }
    }
    if runs(Part::C) {
        let configs = Configs(options.configs);
        // Two partitions, all of it on the one its key maps to: a topic of one partition is
        // made by the daemon's start (see `Topic`), and this one must be filled before.
        const PARTITIONS: i32 = 2;
        let name = broker.topic("c");
        broker.create_topic(&name, PARTITIONS)?;
        eprintln!("C: publishing {} configurations", configs.0);
        produce(servers, &name, &configs, &AtomicU64::new(u64::MAX / 2))?;
        let bytes: u64 = (0..configs.0)
            .map(|i| Configs::content(i).len() as u64)
            .sum();
        let topic = Topic {
            name: &name,
            partitions: PARTITIONS,
            settings: "",
        };
        let rounds = backlog_rounds(
            &setup,
            "C",
            topic,
            bytes,
            None,
            || Done::Committed(configs.0),
            &|_| Ok(()),
        )
        .await?;
        // From MB/s back to messages per second.
        let per_second = |mb_s: f64| mb_s * 1e6 / bytes as f64 * configs.0 as f64;
        let (rate, limit_rate, ratio) = rounds.median();
        rows.push(format!(
            "  C  {} whole 1 KiB configurations waiting    {:>8.0} commits/s  consume only {:>8.0} msg/s                {ratio:>5.2}",
            configs.0,
            per_second(rate),
            per_second(limit_rate),
        ));
        let each: Vec<String> = rounds
            .rates
            .iter()
            .map(|(ours, limit)| {
                format!("{:.0}/{:.0} per s", per_second(*ours), per_second(*limit))
            })
            .collect();
        rows.push(format!(
            "     median of {} rounds: {}",
            rounds.rates.len(),
            each.join(", ")
        ));
        whole_life.push(("C", rounds.peak()));
    }
    if runs(Part::W) || runs(Part::L) || runs(Part::S) {
        let label = format!("{LISTS} x {} MiB lists", LIST_SIZE >> 20);
        let partitions = LISTS as i32;
        let backlog = |name: &str| broker.create_topic(name, partitions);
        let lists = Lists::new(ME, LISTS, LIST_SIZE, options.chunk);
        let bytes = lists.bytes();
        let check = |files: &std::path::Path| -> anyhow::Result<()> {
            for list in &lists.lists {
                if sha256_file(&files.join(&list.name))? != list.sha256 {
                    bail!(
                        "{}: the delivered file is not the file published",
                        list.name
                    );
                }
            }
            Ok(())
        };
        if runs(Part::W) {
            let name = broker.topic("w");
            backlog(&name)?;
            let topic = lists_topic(&name);
            eprintln!("W: publishing {label}");
            produce(servers, topic.name, &lists, &AtomicU64::new(0))?;
            let rounds = backlog_rounds(
                &setup,
                "W",
                topic,
                bytes,
                Some(scratch.path()),
                || Done::Files(lists.files()),
                &check,
            )
            .await?;
            let (rate, limit_rate, ratio) = rounds.median();
            rows.push(format!(
                "  W  {label} waiting, from start to committed {rate:>6.0} MB/s      consume, write, fsync {limit_rate:>6.0} MB/s   {ratio:>5.2}  >= {TARGET_CATCH_UP}: {}",
                met(ratio >= TARGET_CATCH_UP)
            ));
            rows.push(rounds.line());
            whole_life.push(("W", rounds.peak()));
        }
        if runs(Part::L) {
            let mut rounds = Rounds::default();
            for round in 0..ROUNDS {
                // The limit: the same publisher, with a plain consumer writing as it reads.
                let (limit_topic, daemon_topic) = (
                    broker.topic(&format!("l-limit-{round}")),
                    broker.topic(&format!("l-{round}")),
                );
                backlog(&limit_topic)?;
                backlog(&daemon_topic)?;
                let topic = lists_topic(&limit_topic);
                eprintln!("L: limit, round {}", round + 1);
                let sink = scratch.path().join(format!("limit-l-{round}"));
                std::fs::create_dir_all(&sink)?;
                let (ready, start) = std::sync::mpsc::channel();
                let (started, limit) = std::thread::scope(|scope| {
                    let consumer = scope.spawn(|| {
                        raw_backlog(servers, topic.name, partitions, Some(&sink), bytes, || {
                            let _ = ready.send(());
                        })
                    });
                    let _ = start.recv();
                    let started = std::time::Instant::now();
                    let produced = produce(servers, topic.name, &lists, &AtomicU64::new(0));
                    let consumed = consumer.join().expect("the limit's consumer panicked");
                    (started, produced.and(consumed))
                });
                let limit = limit? - started;
                std::fs::remove_dir_all(&sink)?;
                eprintln!("L: kres-kafka, round {}", round + 1);
                let topic = lists_topic(&daemon_topic);
                let done = Done::Files(lists.files());
                let ours =
                    through_daemon(&broker, scratch.path(), &compiled, topic, &lists, done, &[])
                        .await?;
                check(&ours.files)?;
                std::fs::remove_dir_all(scratch.path().join(topic.name))?;
                let peak = ours.start_peak_mib.max(ours.peak_rss_mib);
                rounds.add(mb(bytes) / secs(ours.time), mb(bytes) / secs(limit), peak);
                if round == 0 {
                    peaks.push(("L", ours));
                }
            }
            let (rate, limit_rate, ratio) = rounds.median();
            rows.push(format!(
                "  L  {label}, published unthrottled       {rate:>8.0} MB/s      publish, consume, write, fsync {limit_rate:>4.0} MB/s  {ratio:>5.2}  >= {TARGET_CATCH_UP}: {}",
                met(ratio >= TARGET_CATCH_UP)
            ));
            rows.push(rounds.line());
            whole_life.push(("L", rounds.peak()));
        }
        if runs(Part::S) {
            let mut theirs = Lists::new(OTHER, LISTS, LIST_SIZE, options.chunk);
            theirs.then = Some("ours.rpz");
            let name = broker.topic("s");
            backlog(&name)?;
            let topic = lists_topic(&name);
            eprintln!("S: publishing {label} for another resolver, then one for us");
            produce(servers, topic.name, &theirs, &AtomicU64::new(0))?;
            let rounds = backlog_rounds(
                &setup,
                "S",
                topic,
                bytes,
                None,
                || Done::File("ours.rpz", 0),
                &|_| Ok(()),
            )
            .await?;
            let (rate, limit_rate, ratio) = rounds.median();
            rows.push(format!(
                "  S  {label} for another resolver waiting, then ours {rate:>4.0} MB/s   consume only {limit_rate:>13.0} MB/s   {ratio:>5.2}  >= {TARGET_CATCH_UP}: {}",
                met(ratio >= TARGET_CATCH_UP)
            ));
            rows.push(rounds.line());
            whole_life.push(("S", rounds.peak()));
        }
    }

    if runs(Part::F) {
        const PARTITIONS: i32 = 12;
        let fleet = Fleet {
            resolvers: 24,
            size: 192 << 10,
        };
        let name = broker.topic("f");
        broker.create_topic(&name, PARTITIONS)?;
        eprintln!("F: publishing the fleet's files");
        produce(servers, &name, &fleet, &AtomicU64::new(u64::MAX / 2))?;
        let size = fleet.size as u64;
        let total = size * fleet.resolvers as u64;
        let ours = partitions_of([ME.as_bytes()], PARTITIONS);
        let on_ours = (0..fleet.resolvers)
            .filter(|r| ours.contains(&partition_of(Fleet::hostname(*r).as_bytes(), PARTITIONS)))
            .count() as u64
            * size;
        let mut fetched = Vec::new();
        for (mode, expected) in [("all", total), ("addressed", on_ours)] {
            eprintln!("F: kres-kafka, partitions: {mode}");
            let topic = Topic {
                name: &name,
                partitions: PARTITIONS,
                settings: &format!("  partitions: {mode}\n"),
            };
            let run = format!("f-{mode}");
            let done = Done::File("fleet-0000.rpz", 0);
            let caught = catch_up(
                &broker,
                scratch.path(),
                &compiled,
                &run,
                topic,
                done,
                expected,
            )
            .await?;
            fetched.push((caught.time, caught.fetched));
        }
        let per = |bytes: u64| bytes as f64 / size as f64;
        let (all, addressed) = (per(fetched[0].1), per(fetched[1].1));
        let share = addressed / all;
        let goal = 2.0 / PARTITIONS as f64;
        rows.push(format!(
            "  F  {} resolvers' files on {PARTITIONS} partitions, fetched per byte of ours: all {all:.1}, addressed {addressed:.1}   {share:>5.2} of all's  <= 2/{PARTITIONS}: {}",
            fleet.resolvers,
            met(share <= goal)
        ));
        rows.push(format!(
            "     from a start to all read: all {:.2} s, addressed {:.2} s",
            secs(fetched[0].0),
            secs(fetched[1].0)
        ));
    }

    if !rows.is_empty() {
        println!(
            "throughput: kres-kafka {} (release build: {}), default configuration, against {}",
            env!("CARGO_PKG_VERSION"),
            !cfg!(debug_assertions),
            broker.describe()
        );
        println!(
            "  both sides with fetch.wait.max.ms={FETCH_WAIT_MS} (the mock broker does not wake a waiting fetch early);"
        );
        println!(
            "  A and B: the producer stays {} MiB ahead (it keeps ~5 MiB a partition); W, L, S: median of {ROUNDS} rounds",
            WINDOW >> 20
        );
        println!();
        println!(
            "  workload                                      kres-kafka          limit, same run                    ratio  target"
        );
        for row in &rows {
            println!("{row}");
        }
        if !peaks.is_empty() {
            let during: Vec<String> = peaks
                .iter()
                .map(|(name, m)| format!("{name} {:.1} MiB", m.peak_rss_mib))
                .collect();
            println!(
                "  peak RSS of the daemon during the workload: {}",
                during.join(", ")
            );
            let start: Vec<String> = peaks
                .iter()
                .map(|(name, m)| format!("{name} {:.1} MiB", m.start_peak_mib))
                .collect();
            println!(
                "  peak RSS from start-up to the first message (guest compiled ahead): {}",
                start.join(", ")
            );
            println!(
                "  peak RSS while compiling a guest (a new guest, `guest compile`; a first start needs none): {compile_peak:.1} MiB"
            );
            let batches: Vec<String> = peaks
                .iter()
                .map(|(name, m)| format!("{name} {}", m.batches))
                .collect();
            println!("  batches (each one group commit): {}", batches.join(", "));
        }
        if !whole_life.is_empty() {
            let worst = whole_life.iter().map(|(_, mib)| *mib).fold(0.0, f64::max);
            let each: Vec<String> = whole_life
                .iter()
                .map(|(name, mib)| format!("{name} {mib:.1} MiB"))
                .collect();
            println!(
                "  peak RSS over the daemon's whole life, start-up included: {}   <= {TARGET_RSS_MIB} MiB: {}",
                each.join(", "),
                met(worst <= TARGET_RSS_MIB)
            );
        }
        println!();
    }
    println!(
        "  first start, empty state directory: consuming after {:.2} s (<= {TARGET_FIRST_START_S} s: {}), peak RSS {first_peak:.1} MiB (<= {TARGET_RSS_MIB} MiB: {})",
        secs(first),
        met(secs(first) <= TARGET_FIRST_START_S),
        met(first_peak <= TARGET_RSS_MIB)
    );
    println!();
    if runs(Part::Cost) {
        cost::run(scratch.path(), options.chunk).await?;
    }
    Ok(())
}

/// What every daemon of the bench starts from.
struct Setup<'a> {
    broker: &'a Broker,
    scratch: &'a std::path::Path,
    /// The guest, compiled ahead, for each daemon's cache.
    compiled: &'a std::path::Path,
}

/// [`ROUNDS`] rounds of a backlog of `bytes` already waiting on `topic`, each the limit (a
/// plain consumer reading it all from the start, writing each value to its file under
/// `write_in` and fsyncing each once, or throwing them away) then a fresh daemon until `done`
/// and all of it fetched; `check` looks at that daemon's files directory.
async fn backlog_rounds(
    setup: &Setup<'_>,
    part: &str,
    topic: Topic<'_>,
    bytes: u64,
    write_in: Option<&std::path::Path>,
    done: impl Fn() -> Done,
    check: &dyn Fn(&std::path::Path) -> anyhow::Result<()>,
) -> anyhow::Result<Rounds> {
    let mb = bytes as f64 / 1e6;
    let mut rounds = Rounds::default();
    for round in 0..ROUNDS {
        eprintln!("{part}: limit, round {}", round + 1);
        let sink = write_in.map(|dir| dir.join(format!("limit-{}-{round}", topic.name)));
        if let Some(sink) = &sink {
            std::fs::create_dir_all(sink)?;
        }
        let t0 = std::time::Instant::now();
        let servers = setup.broker.servers();
        let limit = raw_backlog(
            servers,
            topic.name,
            topic.partitions,
            sink.as_deref(),
            bytes,
            || (),
        )? - t0;
        if let Some(sink) = &sink {
            std::fs::remove_dir_all(sink)?;
        }
        eprintln!("{part}: kres-kafka, round {}", round + 1);
        let run = format!("{}-daemon-{round}", topic.name);
        let ours = catch_up(
            setup.broker,
            setup.scratch,
            setup.compiled,
            &run,
            topic,
            done(),
            bytes,
        )
        .await?;
        check(&ours.files)?;
        std::fs::remove_dir_all(setup.scratch.join(&run))?;
        rounds.add(mb / secs(ours.time), mb / secs(limit), ours.peak_rss_mib);
    }
    Ok(rounds)
}

/// The topic of workloads W, L and S: a partition for each list.
fn lists_topic(name: &str) -> Topic<'_> {
    Topic {
        name,
        partitions: LISTS as i32,
        settings: "",
    }
}

/// Paired rounds of a catch-up workload: each round measures the limit, then the daemon.
#[derive(Default)]
struct Rounds {
    /// The daemon's rate, the limit's, in MB/s.
    rates: Vec<(f64, f64)>,
    /// The highest peak RSS of the daemons, in MiB.
    peak: f64,
}

impl Rounds {
    fn add(&mut self, ours: f64, limit: f64, peak_mib: f64) {
        self.rates.push((ours, limit));
        self.peak = self.peak.max(peak_mib);
    }

    /// The round whose ratio is the median: its rate, its limit's, the ratio.
    fn median(&self) -> (f64, f64, f64) {
        let mut rounds = self.rates.clone();
        rounds.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
        let (ours, limit) = rounds[rounds.len() / 2];
        (ours, limit, ours / limit)
    }

    fn peak(&self) -> f64 {
        self.peak
    }

    /// Every round, for the row below the median's.
    fn line(&self) -> String {
        let each: Vec<String> = self
            .rates
            .iter()
            .map(|(ours, limit)| format!("{ours:.0}/{limit:.0} MB/s {:.2}", ours / limit))
            .collect();
        format!(
            "     median of {} rounds: {}",
            self.rates.len(),
            each.join(", ")
        )
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// A part of the benchmark, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    A,
    B,
    /// Twelve 20 MiB block lists for another resolver waiting, then one file for us.
    S,
    /// A backlog: twelve 20 MiB block lists waiting on their partitions, from the daemon's
    /// start to every list committed.
    W,
    /// The same lists published as fast as the producer can while the daemon runs.
    L,
    /// A fleet's traffic on 12 partitions: what one resolver fetches, `all` and `addressed`.
    F,
    /// The guest's cost under WebAssembly against native.
    Cost,
    /// One large RPZ on one partition, the producer keeping the partition as full as the mock
    /// broker keeps it: a resolver that is behind.
    O,
    /// The same for another resolver, then one small file for us: skipping.
    X,
    /// Many whole small configurations waiting, from the daemon's start to all committed.
    C,
}
