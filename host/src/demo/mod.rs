//! `kres-kafka demo`: the whole path on one machine with nothing installed. It starts an
//! in-process Kafka broker (librdkafka's mock cluster), a stand-in resolver manager on a
//! temporary unix socket, publishes a multi-chunk RPZ file and a configuration with the `send`
//! code, runs the daemon code until both are committed and the manager was called, and prints
//! what happened.

use crate::config::Config;
use crate::daemon;
use crate::publish::{self as send, Outgoing};
use anyhow::{Context as _, bail};
use bytesize::ByteSize;
use rdkafka::mocking::MockCluster;
use standin::{Recorder, StandIn};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub mod knot;
pub mod standin;

/// The name the demo's RPZ blocks first, asked of the real resolver.
const BLOCKED: &str = "ads-0000000.tracker.example";

/// Who plays the resolver's manager.
enum Resolver {
    /// The real Knot Resolver, found on this machine.
    Real(knot::KnotResolver),
    /// The stand-in, what it records, and the server (kept to the end: dropped, it stops).
    StandIn(Recorder, #[allow(dead_code)] StandIn),
}

/// How long the demo waits for delivery before declaring failure.
const DEADLINE: Duration = Duration::from_secs(120);

const HOSTNAME: &str = "demo-resolver";
const TOPIC: &str = "knot-resolver";

/// Run the demo. With `keep`, the files directory is left at that path to look at.
pub async fn run(keep: Option<PathBuf>) -> anyhow::Result<()> {
    let started = Instant::now();
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let files_dir = match &keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.clone()
        }
        None => scratch.path().join("files"),
    };
    std::fs::create_dir_all(&files_dir)?;
    let socket = scratch.path().join("kres-api.sock");
    let outbox = scratch.path().join("outbox");
    std::fs::create_dir(&outbox)?;

    // The broker and the stand-in manager.
    let cluster = MockCluster::new(1).context("starting the in-process Kafka broker")?;
    cluster
        .create_topic(TOPIC, 1, 1)
        .context("creating the topic")?;
    let servers = cluster.bootstrap_servers();

    // The resolver's own configuration, and kres-kafka's beside it, as an operator writes them.
    // The manager: the real Knot Resolver when one is at hand, else the stand-in.
    let server = servers
        .split(',')
        .next()
        .unwrap_or_default()
        .replacen(':', "@", 1);
    let resolver_yaml = scratch.path().join("config.yaml");
    let delivered = files_dir.join("config.json");
    let manager = match knot::Install::find() {
        Ok(install) => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            eprintln!(
                "starting the real Knot Resolver from {}",
                install.bin.display()
            );
            let real =
                knot::KnotResolver::start(&install, &scratch.path().join("kr"), &files_dir, port)
                    .context("starting Knot Resolver")?;
            real.write_host_config(&resolver_yaml, HOSTNAME)?;
            Resolver::Real(real)
        }
        Err(_) => {
            std::fs::write(
                &resolver_yaml,
                format!(
                    "hostname: {HOSTNAME}\nmanagement:\n  unix-socket: {}\nrundir: {}\n",
                    socket.display(),
                    scratch.path().join("run").display()
                ),
            )?;
            // The stand-in runs the resolver's file and the delivered one, as Knot Resolver's
            // manager started with `--config` for both.
            let recorder = Recorder::manager(vec![resolver_yaml.clone(), delivered.clone()]);
            let standin = StandIn::start(&socket, recorder.clone())
                .context("starting the stand-in manager")?;
            Resolver::StandIn(recorder, standin)
        }
    };
    let manager_files = match &manager {
        Resolver::Real(real) => real.config.clone(),
        Resolver::StandIn(..) => resolver_yaml.clone(),
    };
    let own_yaml = scratch.path().join("kres-kafka.yaml");
    std::fs::write(
        &own_yaml,
        format!(
            "kafka:\n  enable: true\n  topic: {TOPIC}\n  server: {server}\n  files-dir: {}\n  state-dir: {}\n  debounce: 1s\n  resolver-config: [{}, {}]\n",
            files_dir.display(),
            scratch.path().join("state").display(),
            manager_files.display(),
            delivered.display(),
        ),
    )?;
    let config = Config::load(&[resolver_yaml.clone(), own_yaml])?;

    // The files to publish: an RPZ block list of three chunks and a configuration naming it.
    let rpz = outbox.join("blocklist.rpz");
    std::fs::write(&rpz, sample_rpz(1_300_000))?;
    let json = outbox.join("config.json");
    // An absolute path: the manager reads a relative one from its first `--config` file's
    // directory.
    std::fs::write(
        &json,
        serde_json::to_vec_pretty(&serde_json::json!({
            "local-data": { "rpz": [{ "file": files_dir.join("blocklist.rpz") }] }
        }))?,
    )?;
    let files = [
        Outgoing {
            path: json.clone(),
            name: "config.json".into(),
        },
        Outgoing {
            path: rpz.clone(),
            name: "blocklist.rpz".into(),
        },
    ];

    let shutdown = CancellationToken::new();
    let (_recheck, recheck) = tokio::sync::mpsc::unbounded_channel();
    let daemon = tokio::spawn(daemon::run(config.clone(), shutdown.clone(), recheck));

    let published = Instant::now();
    let producer = send::producer(&config.kafka, send::DEFAULT_COMPRESSION)?;
    let progress = send::progress_bar(&files);
    // The demo's daemon starts with the topic: no state topic to keep.
    let batch = send::Batch {
        to: &send::Recipient::Host(HOSTNAME.into()),
        files: &files,
        removals: &[],
        chunk_size: config.kafka.chunk_size,
        signer: None,
    };
    let sent = send::send(&producer, TOPIC, &batch, None, &progress).await;
    progress.finish_and_clear();
    if let Some((name, reason)) = sent.failed.first() {
        bail!("publishing {name} failed: {reason}");
    }
    let publish_time = published.elapsed();

    // Wait for both files in place and the manager's call (the real resolver: its answer).
    let delivered = loop {
        let called = match &manager {
            Resolver::StandIn(recorder, _) => !recorder.calls().is_empty(),
            Resolver::Real(real) => {
                knot::query(real.port, BLOCKED).is_ok_and(|(rcode, _)| rcode == 3)
            }
        };
        if same(&rpz, &files_dir.join("blocklist.rpz"))
            && same(&json, &files_dir.join("config.json"))
            && called
        {
            break published.elapsed();
        }
        if daemon.is_finished() {
            shutdown.cancel();
            return match daemon.await {
                Ok(Err(e)) => Err(e.context("the daemon stopped")),
                _ => bail!("the daemon stopped early"),
            };
        }
        if published.elapsed() > DEADLINE {
            bail!("the files were not delivered within {DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    shutdown.cancel();
    daemon.await.context("the daemon task failed")??;
    drop(producer);
    drop(cluster);

    println!(
        "kres-kafka demo: files delivered to resolver {HOSTNAME:?} through an in-process Kafka broker\n"
    );
    for crate::publish::Delivered {
        name, size, chunks, ..
    } in &sent.delivered
    {
        println!(
            "  {name:<16} {:>10}  {chunks} chunk{}  committed, byte-identical",
            ByteSize::b(*size).display().iec().to_string(),
            if *chunks == 1 { "" } else { "s" }
        );
    }
    println!();
    match &manager {
        Resolver::StandIn(recorder, _) => {
            for call in recorder.calls() {
                println!(
                    "  manager call: {} {} -> {}",
                    call.method, call.path, call.status
                );
            }
            println!("  (the renew the RPZ file asked for is covered by the reload: one call)");
            println!(
                "  the stand-in manager now runs local-data.rpz = {} from the delivered configuration",
                recorder.running()["local-data"]["rpz"]
            );
            println!(
                "  (no Knot Resolver found: set KNOT_RESOLVER_DIR to a build to see it answer)\n"
            );
        }
        Resolver::Real(real) => {
            println!(
                "  Knot Resolver reloaded the delivered configuration; a real query to it:\n  \
                 {BLOCKED} -> {}\n",
                match knot::query(real.port, BLOCKED) {
                    Ok((3, _)) => "NXDOMAIN (blocked by the delivered RPZ)".to_owned(),
                    other => format!("{other:?}"),
                }
            );
        }
    }
    println!(
        "  published in {:.2} s; committed and reloaded {:.2} s after publishing (1 s of it is the debounce); total {:.2} s",
        publish_time.as_secs_f64(),
        delivered.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    match keep {
        Some(dir) => println!("  files directory: {}", dir.display()),
        None => println!("  (pass --keep DIR to keep the files directory)"),
    }
    Ok(())
}

/// An RPZ zone of about `size` bytes blocking made-up names.
pub fn sample_rpz(size: usize) -> Vec<u8> {
    let mut zone =
        b"$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 300\n  NS localhost.\n"
            .to_vec();
    let mut i = 0u64;
    while zone.len() < size {
        zone.extend_from_slice(format!("ads-{i:07}.tracker.example CNAME .\n").as_bytes());
        i += 1;
    }
    zone
}

fn same(a: &Path, b: &Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}
