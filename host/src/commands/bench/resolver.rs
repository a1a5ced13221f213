//! `bench resolver`: what users wait for, against the real Knot Resolver 6 (a build named by
//! `KNOT_RESOLVER_DIR`, or one on the `PATH`): from `send` returning to the resolver answering
//! from the new file, for an RPZ of 10,000 names (a renew) and for a configuration (a reload),
//! median of several rounds, split into its parts: send to commit, the debounce, the rest. The
//! manager's own call is measured in the same run (`POST /renew` and `/reload` made directly,
//! timed), and so is the resolver's own validator (`kresctl validate`, which the daemon runs on
//! every configuration before committing it): what is left beyond the debounce, that call and
//! that validator is kres-kafka's.

use super::throughput::FETCH_WAIT_MS;
use crate::config::Config;
use crate::demo::knot::{Install, KnotResolver, query};
use crate::manager::Manager;
use crate::outcome::Action;
use crate::publish::{self, Outgoing, Recipient};
use anyhow::{Context as _, bail};
use rdkafka::mocking::MockCluster;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const TOPIC: &str = "knot-resolver";
const ME: &str = "bench-resolver";
/// The debounce the daemon runs with here (docs/developer-guide.md, "Send to answer").
const DEBOUNCE: Duration = Duration::from_secs(1);
/// Names in each round's RPZ.
const NAMES: usize = 10_000;
/// What kres-kafka may add beyond the debounce and the manager's own call.
const TARGET: Duration = Duration::from_millis(200);
/// How long one round may take before the bench gives up.
const PATIENCE: Duration = Duration::from_secs(60);
/// DNS response code NXDOMAIN.
const NXDOMAIN: u8 = 3;

/// One round's times, from `send` returning.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// `send` itself (publish and the broker's acknowledgement).
    send: Duration,
    /// From `send` returning to the file in place.
    commit: Duration,
    /// From `send` returning to the resolver answering from the new file.
    answer: Duration,
}

pub async fn run(rounds: usize) -> anyhow::Result<()> {
    let install = match Install::find() {
        Ok(install) => install,
        Err(why) => {
            bail!("no Knot Resolver 6 to measure against: {why} (set KNOT_RESOLVER_DIR to a build)")
        }
    };
    // Short paths: the manager's unix sockets live in its rundir.
    let scratch = tempfile::Builder::new()
        .prefix("kres-bench-")
        .tempdir_in("/tmp")?;
    let files = scratch.path().join("files");
    let outbox = scratch.path().join("outbox");
    std::fs::create_dir_all(&files)?;
    std::fs::create_dir_all(&outbox)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    eprintln!("starting Knot Resolver from {}", install.bin.display());
    let resolver = KnotResolver::start(&install, &scratch.path().join("kr"), &files, port)?;

    let cluster = MockCluster::new(1).context("starting the in-process Kafka broker")?;
    cluster.create_topic(TOPIC, 1, 1)?;
    cluster.create_topic(&format!("{TOPIC}-status"), 1, 1)?;
    let server = cluster.bootstrap_servers().replacen(':', "@", 1);
    let own = scratch.path().join("kres-kafka.yaml");
    let host_config = scratch.path().join("resolver.yaml");
    resolver.write_host_config(&host_config, ME)?;
    std::fs::write(
        &own,
        format!(
            "kafka:\n  enable: true\n  topic: {TOPIC}\n  server: {server}\n  files-dir: {}\n  state-dir: {}\n  \
             debounce: {}ms\n  resolver-config: [{}, {}]\n  validate-command: [{}, validate]\n  \
             librdkafka:\n    fetch.wait.max.ms: {FETCH_WAIT_MS}\n",
            files.display(),
            scratch.path().join("state").display(),
            DEBOUNCE.as_millis(),
            resolver.config.display(),
            files.join("config.json").display(),
            install.bin.join("kresctl").display(),
        ),
    )?;
    let config = Config::load(&[host_config, own])?;
    let shutdown = CancellationToken::new();
    let (_recheck, recheck) = tokio::sync::mpsc::unbounded_channel();
    let daemon = tokio::spawn(crate::daemon::run(
        config.clone(),
        shutdown.clone(),
        recheck,
    ));
    let publisher = publish::producer(&config.kafka, publish::DEFAULT_COMPRESSION)?;
    let block = files.join("block.rpz");

    // Warm-up: the RPZ, then the configuration naming it.
    let send = |name: &str, content: Vec<u8>| {
        let path = outbox.join(name);
        let publisher = &publisher;
        let name = name.to_owned();
        let chunk = config.kafka.chunk_size;
        async move {
            std::fs::write(&path, &content)?;
            let progress = indicatif::ProgressBar::hidden();
            let files = [Outgoing { path, name }];
            let to = Recipient::Host(ME.into());
            let batch = publish::Batch {
                to: &to,
                files: &files,
                removals: &[],
                chunk_size: chunk,
                signer: None,
            };
            let sent = publish::send(publisher, TOPIC, &batch, None, &progress).await;
            match sent.failed.first() {
                Some((name, why)) => bail!("publishing {name}: {why}"),
                None => anyhow::Ok(content),
            }
        }
    };
    let zone = |round: usize| -> Vec<u8> {
        let mut zone =
            b"$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 300\n  NS localhost.\n"
                .to_vec();
        for i in 0..NAMES {
            zone.extend_from_slice(
                format!("ads-{round}-{i:05}.tracker.example CNAME .\n").as_bytes(),
            );
        }
        zone
    };
    let configuration = |round: usize| -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "local-data": {
                "rpz": [{ "file": block.display().to_string() }],
                "records": format!("cfg-{round}.example. 300 A 192.0.2.1\n"),
            }
        }))
        .expect("JSON")
    };
    let content = send("block.rpz", zone(0)).await?;
    wait_for_file(&files.join("block.rpz"), &content).await?;
    send("config.json", configuration(0)).await?;
    wait_for_name(port, "cfg-0.example", 0).await?;
    let owed = scratch.path().join("state/pending-action");
    settle(&owed).await?;

    let mut renews = Vec::new();
    let mut reloads = Vec::new();
    for round in 1..=rounds {
        let started = Instant::now();
        let content = send("block.rpz", zone(round)).await?;
        let sent = Instant::now();
        let commit = wait_for_file(&files.join("block.rpz"), &content).await? - sent;
        wait_for_name(
            port,
            &format!("ads-{round}-00000.tracker.example"),
            NXDOMAIN,
        )
        .await?;
        settle(&owed).await?;
        renews.push(Round {
            send: sent - started,
            commit,
            answer: sent.elapsed(),
        });

        let started = Instant::now();
        let content = send("config.json", configuration(round)).await?;
        let sent = Instant::now();
        let commit = wait_for_file(&files.join("config.json"), &content).await? - sent;
        wait_for_name(port, &format!("cfg-{round}.example"), 0).await?;
        reloads.push(Round {
            send: sent - started,
            commit,
            answer: sent.elapsed(),
        });
        eprintln!("round {round}/{rounds} done");
        settle(&owed).await?;
    }

    // The manager's own calls, in the same run, on the same files.
    let manager = Manager::new(config.management.clone(), false);
    let own = |action: Action| {
        let manager = manager.clone();
        async move {
            let mut times = Vec::new();
            for _ in 0..rounds.max(3) {
                let started = Instant::now();
                manager.call(action).await?;
                times.push(started.elapsed());
            }
            anyhow::Ok(median(times))
        }
    };
    let renew_call = own(Action::Renew).await?;
    let reload_call = own(Action::Reload).await?;
    // The resolver's own validator on the last configuration, as the daemon runs it: part of
    // send-to-commit for a configuration, and the resolver's code, not kres-kafka's.
    let mut validator = Vec::new();
    for _ in 0..rounds.max(3) {
        let started = Instant::now();
        let status = std::process::Command::new(install.bin.join("kresctl"))
            .arg("validate")
            .args([&resolver.config, &files.join("config.json")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        validator.push(started.elapsed());
        if !status.success() {
            bail!("kresctl validate refused the configuration the resolver runs");
        }
    }
    let validator = median(validator);
    shutdown.cancel();
    let _ = daemon.await;
    drop(resolver);

    println!(
        "From `send` returning to the real resolver answering from the new file (Knot Resolver \
         from {}; debounce {} s; median of {rounds} rounds):",
        install.bin.display(),
        DEBOUNCE.as_secs_f64()
    );
    println!(
        "  {:<30} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>13}",
        "", "send", "->commit", "kresctl", "debounce", "manager", "->answer", "kres-kafka's"
    );
    for (what, rounds, call, kresctl) in [
        (
            format!("RPZ, {NAMES} names (renew)"),
            &renews,
            renew_call,
            Duration::ZERO,
        ),
        (
            "configuration (reload)".to_owned(),
            &reloads,
            reload_call,
            validator,
        ),
    ] {
        let pick = |f: fn(&Round) -> Duration| median(rounds.iter().map(f).collect());
        let (send, commit, answer) = (pick(|r| r.send), pick(|r| r.commit), pick(|r| r.answer));
        let ours = answer.saturating_sub(DEBOUNCE + call + kresctl);
        println!(
            "  {what:<30} {:>5.2}s {:>8.2}s {:>8.2}s {:>8.2}s {:>8.2}s {:>8.2}s {:>8.2}s  <= {:.1} s: {}",
            send.as_secs_f64(),
            commit.as_secs_f64(),
            kresctl.as_secs_f64(),
            DEBOUNCE.as_secs_f64(),
            call.as_secs_f64(),
            answer.as_secs_f64(),
            ours.as_secs_f64(),
            TARGET.as_secs_f64(),
            if ours <= TARGET { "met" } else { "NOT met" }
        );
        let each: Vec<String> = rounds
            .iter()
            .map(|r| format!("{:.2}", r.answer.as_secs_f64()))
            .collect();
        println!("    every round, send to answer (s): {}", each.join(", "));
    }
    println!(
        "  manager: its own POST /renew and /reload, and kresctl: `kresctl validate` on the same \
         files, each timed directly in the same run (the manager polls its policy-loader once a \
         second); kres-kafka's = send to answer - debounce - manager - kresctl"
    );
    Ok(())
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Wait until the daemon owes the manager no call (its marker `owed` is gone): the call that
/// served a round, and the checks after it, are over before the next round starts.
async fn settle(owed: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    while owed.exists() {
        if started.elapsed() > PATIENCE {
            bail!("the daemon still owes a manager call after {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Wait until `path` holds `content`; the instant it was seen.
async fn wait_for_file(path: &Path, content: &[u8]) -> anyhow::Result<Instant> {
    let started = Instant::now();
    loop {
        if std::fs::read(path).is_ok_and(|c| c == content) {
            return Ok(Instant::now());
        }
        if started.elapsed() > PATIENCE {
            bail!("{} was not delivered within {PATIENCE:?}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Wait until the resolver answers `name` with response code `rcode` (and, for NOERROR, an
/// answer).
async fn wait_for_name(port: u16, name: &str, rcode: u8) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let asked = name.to_owned();
        let answer = tokio::task::spawn_blocking(move || query(port, &asked)).await?;
        if let Ok((code, answers)) = answer
            && code == rcode
            && (rcode != 0 || answers > 0)
        {
            return Ok(());
        }
        if started.elapsed() > PATIENCE {
            bail!("the resolver did not answer {name} within {PATIENCE:?}: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
