//! `kres-kafka run`: consume the topic, hand each message to the guest, schedule the manager
//! calls its commits ask for, and store each offset once its message reached a durable end.
//!
//! This module only wires the services together and owns the main loop; every task it starts
//! is tracked and awaited before [`run`] returns. Shutdown and the "check the guest" signal
//! come from the caller. Messages are processed in batches (those already fetched, up to a
//! bound), in order; each batch is one group commit in the guest.
//! Shutdown finishes the message in progress, commits stored offsets (giving the broker a few
//! seconds: the journal holds the positions), then serves the pending manager call. Each durable outcome, manager call, swap, start and stop is reported on the
//! status topic (`status`), which never holds up the loop.
//!
//! # Layout
//!
//! A start goes in named steps, in this order: **check** (the preflight: a directory that
//! cannot be written refuses the start, a manager or broker that does not answer is a
//! warning), **prepare** (the state directory, both locks, the guest, metrics), **connect**
//! (watchers first, then the clients they watch for: the SASL password, the status producer,
//! the guest file, the scheduler, the consumer), **serve** (the loop).
//!
//! # Layout
//!
//! - this file: the steps of a start, the loop, delivery with its pauses.
//! - `preflight`: the checks, also `run --check`.
//! - `lock`: one daemon per state directory and per files directory.
//! - `passwords`: the watch on `kafka.sasl-password-file`, and giving the clients a new one.
//! - `worker`: runs the guest on the blocking pool; logs and counts outcomes.
//! - `executor`: makes the manager calls; rolls back a refused reload.
//! - `probe`: every few seconds, the manager reachable and the files directory writable, for
//!   `/ready` and the gauges.

mod executor;
mod lock;
mod passwords;
pub mod preflight;
mod probe;
mod worker;

pub use lock::LOCK_FILE;

use crate::config::Config;
use crate::config::Settings;
use crate::health::{self, Health};
use crate::kafka;
use crate::manager::Manager;
use crate::metrics::{self, Metrics};
use crate::resolver::{self, ResolverAccess, Validator};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::scheduler::{Ledger, PendingMarker, Scheduler};
use crate::status::{About, Event, Status};
use crate::swap;
use anyhow::Context as _;
use executor::ManagerExecutor;
use rdkafka::consumer::Consumer as _;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use worker::{Runner, Worker};

/// How often incomplete chunk sets are checked for expiry (and crash leftovers removed) after
/// the start-up pass.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// First wait before offering a message again after the files directory could not be written;
/// doubles up to [`IO_RETRY_MAX`].
const IO_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between two tries: a disk freed by an operator is used within this.
const IO_RETRY_MAX: Duration = Duration::from_secs(30);

/// Most messages in one batch (one group commit).
pub const BATCH_MESSAGES: usize = 1000;
/// Most bytes of values in one batch: what the host holds for the guest at once.
pub const BATCH_BYTES: usize = 8 << 20;

/// How long a batch waits for more messages after its first: a burst arriving message by
/// message still makes one group commit, for a delay no one sees next to the manager's debounce.
const BATCH_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// Take the messages already fetched after `first`, and those arriving within
/// [`BATCH_LINGER`], up to the batch's bounds.
async fn take_batch(consumer: &kafka::Consumer, metrics: &Metrics, first: Message) -> Vec<Message> {
    let mut bytes = first.0.value.len();
    metrics.received(bytes);
    let mut batch = vec![first];
    let linger = tokio::time::Instant::now() + BATCH_LINGER;
    while batch.len() < BATCH_MESSAGES && bytes < BATCH_BYTES {
        let next = tokio::select! {
            biased;
            record = consumer.recv() => record,
            () = tokio::time::sleep_until(linger) => break,
        };
        match next {
            Ok(record) => {
                let message = kafka::to_message(&record);
                bytes += message.0.value.len();
                metrics.received(message.0.value.len());
                batch.push(message);
            }
            Err(e) => {
                consumer.context().failed(&e);
                break;
            }
        }
    }
    batch
}

/// A message and where it came from.
type Message = (crate::outcome::Message, kafka::Position);

/// Process `batch` until each message in it reached a durable end, reporting each outcome and
/// storing each offset as it does. A failure to write the files directory (a full disk, a
/// read-only remount) is not an end: delivery pauses, and the messages from the first one it
/// stopped are offered again with backoff, their offsets not stored, until they go through.
/// False when `shutdown` came first.
async fn deliver(
    worker: &Worker,
    scheduler: &Scheduler,
    status: &Status,
    reader: Option<&kafka::Reader>,
    batch: Vec<Message>,
    shutdown: &CancellationToken,
) -> bool {
    let mut wait = IO_RETRY_FIRST;
    let mut done = 0;
    // Whether delivery is paused at `batch[done]`: reported once when it starts and once when
    // it ends, not at every try.
    let mut paused = false;
    while done < batch.len() {
        // A pause waits here between tries: the loop is not stuck.
        worker.health.turned();
        let rest = &batch[done..];
        let done_before = done;
        let outcomes = worker
            .process(rest.iter().map(|(m, _)| m.clone()).collect())
            .await;
        let mut stopped = None;
        for (outcome, (message, position)) in outcomes.iter().zip(rest) {
            if !outcome.is_durable() {
                stopped = Some((outcome, message));
                break;
            }
            let about = About::of(message);
            // Queued, never awaited: a status topic that cannot be written costs a log line
            // and a counter, never delivery.
            status.message(&about, outcome);
            scheduler.request_for(outcome, about.transfer_id);
            if let crate::outcome::Outcome::Skipped { why, .. } = outcome
                && *why != crate::outcome::SkipReason::Replayed
            {
                worker
                    .metrics
                    .skipped_bytes(why.as_str(), message.value.len());
            }
            if let Some(Err(e)) = reader.map(|r| r.store(position)) {
                tracing::warn!(
                    partition = position.partition,
                    offset = position.offset,
                    "storing the offset: {e}"
                );
            }
            done += 1;
        }
        if paused && done > done_before {
            paused = false;
            resume(worker, status);
        }
        let Some((outcome, message)) = stopped else {
            if outcomes.len() < rest.len() {
                tracing::debug!(
                    done = outcomes.len(),
                    rest = rest.len() - outcomes.len(),
                    "the guest ended the batch early: offering the rest again"
                );
            }
            wait = IO_RETRY_FIRST;
            continue;
        };
        let reason = format!(
            "files dir not writable: {}",
            outcome.reason().unwrap_or_default()
        );
        tracing::error!(
            partition = message.partition,
            offset = message.offset,
            %reason,
            "delivery paused: the files directory cannot be written; trying again in {wait:?}"
        );
        if !paused {
            paused = true;
            worker.metrics.delivery_paused(true);
            worker.health.paused(Some(reason.clone()));
            status.paused(&About::of(message), &reason);
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(IO_RETRY_MAX);
    }
    if paused {
        resume(worker, status);
    }
    true
}

/// Read the state topic first when the journal cannot say where to start (a new or rebuilt
/// resolver: it holds no position on the topic) or when the broker no longer holds messages
/// its positions need: the current version of every file of ours, handed to the guest as the
/// stream's are; then the stream is read from where it ended before the state was read (a
/// file published meanwhile is in both, and comes `unchanged` the second time), never from an
/// earlier incarnation's group offsets. Returns those ends and what the state gave; `None`
/// when the state was not read (not needed, turned off, absent, or a stop came first) or held
/// nothing of ours: the stream is then read as before, from the journal or `start-from` (a
/// publisher that writes no state, upstream's, still reaches a new resolver while the stream
/// holds its messages).
async fn from_state(
    config: &Config,
    start: &kafka::Start,
    reader: &kafka::Reader,
    worker: &Worker,
    scheduler: &Scheduler,
    status: &Status,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<(std::collections::BTreeMap<i32, i64>, kafka::state::Summary)>> {
    for lost in &start.lost {
        tracing::warn!("{lost}: reading the state topic to converge");
        worker
            .metrics
            .offsets_lost((lost.to - lost.from + 1).max(0) as u64);
        status.lifecycle_because(Event::OffsetsLost, lost.to_string());
    }
    if !start.empty && start.lost.is_empty() {
        return Ok(None);
    }
    let why = if start.empty {
        "the journal holds no position on the topic"
    } else {
        "messages were lost"
    };
    let Some(state) = kafka::state::StateTopic::new(config, worker.metrics.clone())? else {
        tracing::warn!(
            "{why}, and kafka.state-topic is off: only what the stream still holds can arrive"
        );
        return Ok(None);
    };
    let count = match state.partitions() {
        Ok(Some(count)) => count,
        Ok(None) => {
            tracing::warn!(
                state_topic = state.topic(),
                "{why}, and the state topic does not exist (`send` creates it): only what the stream still holds can arrive"
            );
            return Ok(None);
        }
        Err(e) => {
            tracing::warn!(
                "{why}, and the state topic cannot be read: {e}: only what the stream still holds can arrive"
            );
            return Ok(None);
        }
    };
    // The stream's ends first: what is published after them is read from the stream; what
    // before, is in the state already (publishers write the state first).
    let ends = reader.stream_ends(start)?;
    let began = std::time::Instant::now();
    tracing::info!(
        state_topic = state.topic(),
        "{why}: reading the state topic first"
    );
    let summary = state
        .read(
            count,
            &config.kafka.state_dir,
            BATCH_BYTES,
            shutdown,
            // A long read is work, not a stall: `/health` stays 200.
            || worker.health.turned(),
            |batch| {
                worker.health.turned();
                deliver(worker, scheduler, status, None, batch, shutdown)
            },
        )
        .await?;
    let Some(summary) = summary else {
        return Ok(None);
    };
    if summary.files == 0 {
        tracing::info!(
            "the state topic holds nothing for this resolver: reading the stream from kafka.start-from"
        );
        return Ok(None);
    }
    let topic = config.kafka.topic.clone();
    let positions: Vec<(String, i64)> = ends
        .iter()
        .map(|(p, end)| (format!("{topic}/{p}"), *end))
        .collect();
    worker
        .runner
        .in_guest(move |guest, _| guest.skip_before(&positions))
        .await
        .map_err(|e| anyhow::anyhow!("recording where the stream starts: {e}"))?
        .map_err(|e| anyhow::anyhow!("recording where the stream starts: {e}"))?;
    tracing::info!(
        files = summary.files,
        bytes = summary.bytes,
        "bootstrap from the state: {} files, {} bytes, in {:.2} s",
        summary.files,
        summary.bytes,
        began.elapsed().as_secs_f64()
    );
    worker.metrics.bootstrapped(summary.files);
    Ok(Some((ends, summary)))
}

/// Delivery goes on after a pause: said in the log, the gauge, `/ready` and on the status
/// topic.
fn resume(worker: &Worker, status: &Status) {
    tracing::info!("delivery resumed: the files directory can be written again");
    worker.metrics.delivery_paused(false);
    worker.health.paused(None);
    status.resumed();
}

/// The manager's schema as last fetched, in the state directory.
pub const SCHEMA_CACHE: &str = "resolver-schema.json";

/// The resolver's own validator, when one is configured (or found on `PATH`).
pub fn validator(kafka: &Settings) -> Option<Validator> {
    if kafka.validate_command.is_empty() {
        return None;
    }
    Some(Validator {
        command: kafka.validate_command.clone(),
        resolver_config: kafka.resolver_config.clone(),
        files_dir: kafka.files_dir.clone(),
        scratch: kafka.state_dir.join("validate"),
        timeout: kafka.validate_timeout,
    })
}

/// Check: what delivery needs from this machine ([`preflight`]), before anything is taken or
/// touched. A problem that stops delivery refuses the start, each named; one that delays it
/// is a warning. False when `shutdown` came first.
async fn check(config: &Config, shutdown: &CancellationToken) -> anyhow::Result<bool> {
    let report = tokio::select! {
        biased;
        () = shutdown.cancelled() => return Ok(false),
        report = preflight::check(config) => report,
    };
    let stopping: Vec<&str> = report.stopping().map(|p| p.text.as_str()).collect();
    if !stopping.is_empty() {
        anyhow::bail!("{}", stopping.join("\n"));
    }
    for found in &report.passed {
        tracing::info!("preflight: {found}");
    }
    for problem in &report.problems {
        tracing::warn!("{}", problem.text);
    }
    Ok(true)
}

/// Run the daemon until `shutdown`. Each value on `recheck_guest` (SIGHUP) makes it look at the
/// guest file again.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    recheck_guest: mpsc::UnboundedReceiver<()>,
) -> anyhow::Result<()> {
    crate::system::keep_large_buffers();
    let kafka = &config.kafka;

    // 1. Check.
    if !check(&config, &shutdown).await? {
        tracing::info!("stopped during the preflight");
        return Ok(());
    }

    // 2. Prepare: the state directory and both locks, before anything touches either
    //    directory; the manager's schema, the guest, metrics.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&kafka.state_dir)
        .with_context(|| format!("creating kafka.state-dir {}", kafka.state_dir.display()))?;
    let _locks = lock::take(kafka)?;
    for warning in &kafka.warnings {
        tracing::warn!("{warning}");
    }
    let manager = Manager::new(config.management.clone(), kafka.force);
    let schema_cache = kafka.state_dir.join(SCHEMA_CACHE);
    let resolver = Arc::new(ResolverAccess::new(
        resolver::initial_schema(&manager, &schema_cache, true, kafka.schema_file.as_deref()).await,
        validator(kafka),
    ));
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        files_dir: kafka.files_dir.clone(),
        memory_limit: kafka.guest_memory_limit,
        time_limit: kafka.guest_time_limit,
        cache_dir: Some(kafka.guest_cache_dir()),
        resolver: resolver.clone(),
    })?);
    // Loading self-tests the guest, whose WASI calls block: off the async threads.
    let (loader, path) = (Arc::clone(&sandbox), kafka.guest.clone());
    let guest =
        tokio::task::spawn_blocking(move || loader.load_configured(path.as_deref())).await??;
    tracing::info!(
        guest = %guest.origin(), version = %guest.version(), sha256 = %guest.digest(), cached = guest.cached(),
        "guest loaded"
    );
    let tasks = TaskTracker::new();
    let metrics = Metrics::default();
    metrics.guest(guest.version(), guest.digest(), false);
    let mut clients = vec!["consumer"];
    if kafka.status_topic().is_some() {
        clients.push("status");
    }
    metrics.expect_broker_errors(&clients, &kafka::ERROR_KINDS);
    let calls: Vec<&str> = [
        crate::outcome::Action::Reload,
        crate::outcome::Action::Renew,
    ]
    .into_iter()
    .filter_map(|a| manager.path(a))
    .collect();
    metrics.expect_manager_calls(&calls, &crate::manager::CallError::RESULTS);
    let health = Health::new(
        health::stall_limit(kafka.guest_time_limit),
        shutdown.clone(),
    );
    // The listener outlives `shutdown` so that `/ready` says "stopping" while the stop goes
    // on; it closes when `run` returns, however it returns.
    let listener_tasks = TaskTracker::new();
    let listener_closed = CancellationToken::new();
    let _close_listener = listener_closed.clone().drop_guard();
    if let Some(address) = &kafka.metrics_address {
        let bound = metrics::serve(
            (address.host.clone(), address.port),
            metrics.clone(),
            health.clone(),
            listener_closed.clone(),
            &listener_tasks,
        )
        .await?;
        tracing::info!("metrics on http://{bound}/metrics, health on /health and /ready");
    }
    probe::spawn(
        config.management.clone(),
        kafka.files_dir.clone(),
        health.clone(),
        metrics.clone(),
        shutdown.clone(),
        &tasks,
    );

    // 3. Connect: each watcher before the client it watches for. The password watch comes
    //    before the status producer and the consumer read the password file, so that a
    //    password fixed while the broker refuses the logins is taken (a refused login never
    //    reaches the loop).
    let mut passwords = passwords::Passwords::watch(kafka)?;
    let status = Status::new(&config, metrics.clone(), guest.version());
    let mut swaps = swap::spawn(
        Arc::clone(&sandbox),
        kafka.guest.clone(),
        guest.digest().to_owned(),
        swap::Refusals {
            metrics: metrics.clone(),
            status: status.clone(),
        },
        recheck_guest,
        shutdown.clone(),
        &tasks,
    )?;
    let (current, in_use) = watch::channel(Arc::new(guest));
    let runner = Runner::new(in_use, Arc::new(config.clone()));
    let mut worker = Worker {
        runner: runner.clone(),
        current,
        swaps: 0,
        metrics: metrics.clone(),
        health: health.clone(),
        status: status.clone(),
    };
    worker.maintain().await;

    let executor = ManagerExecutor {
        manager,
        runner,
        resolver: Arc::clone(&resolver),
        schema_cache,
        shutdown: shutdown.clone(),
        metrics,
        health: health.clone(),
        status: status.clone(),
    };
    let marker = PendingMarker::new(kafka.state_dir.join("pending-action"));
    let owed = marker.read();
    let ledger = Ledger::new(Some(marker));
    resolver.set_ledger(Arc::clone(&ledger));
    let (scheduler, _) = Scheduler::spawn_with(kafka.debounce, executor, ledger, &tasks);
    if owed != crate::outcome::Action::None {
        tracing::warn!(
            action = ?owed,
            "a manager call was still owed when kres-kafka last stopped: asking for it now"
        );
        scheduler.request(owed, None);
    }

    let mut reader = kafka::Reader::new(&config, worker.metrics.clone(), health.clone())
        .context("creating the Kafka consumer")?;
    let start = reader
        .connect(&kafka.files_dir, &shutdown, |consumer| {
            health.turned();
            if passwords.changed_now() {
                passwords.take_new(kafka, consumer, &status);
            }
        })
        .await?;
    let bootstrapped = match &start {
        Some(start) => {
            from_state(
                &config, start, &reader, &worker, &scheduler, &status, &shutdown,
            )
            .await?
        }
        None => None,
    };
    let Some(start) = start.filter(|_| !shutdown.is_cancelled()) else {
        tracing::info!("stopped before the broker answered");
        drop(scheduler);
        drop(swaps);
        tasks.close();
        tasks.wait().await;
        close(listener_closed, listener_tasks).await;
        return Ok(());
    };
    reader.assign(&start, bootstrapped.as_ref().map(|(ends, _)| ends))?;
    health.consuming();
    tracing::info!(
        servers = %kafka.bootstrap_servers(), topic = %kafka.topic, group = %kafka.group_id, zone = ?kafka.zone_id,
        hostname = %config.hostname, files_dir = %kafka.files_dir.display(),
        status_topic = kafka.status_topic().as_deref().unwrap_or("off"), "consuming"
    );
    match &bootstrapped {
        Some((_, summary)) => status.lifecycle_because(
            Event::Started,
            format!("bootstrap: {} files", summary.files),
        ),
        None => status.lifecycle(Event::Started),
    }

    // 4. Serve.
    let mut gone = None;
    let mut commits = tokio::time::interval(kafka::COMMIT_EVERY);
    let mut refresh = tokio::time::interval_at(
        tokio::time::Instant::now() + kafka.metadata_refresh,
        kafka.metadata_refresh,
    );
    let mut maintenance = tokio::time::interval_at(
        tokio::time::Instant::now() + MAINTENANCE_EVERY,
        MAINTENANCE_EVERY,
    );
    loop {
        // The commit timer below makes the loop turn at least every few seconds.
        health.turned();
        tokio::select! {
            // Shutdown first: it is only looked at between messages, so the message in
            // progress always finishes and its offset is stored.
            biased;
            () = shutdown.cancelled() => break,
            // A new guest next: it takes over from the next message on; the message in
            // progress, if any, has finished on the guest it started with.
            Some(swapped) = swaps.recv() => worker.swap(swapped),
            _ = maintenance.tick() => worker.maintain().await,
            () = passwords.changed() => passwords.take_new(kafka, reader.consumer(), &status),
            _ = commits.tick() => {
                reader.commit();
                worker.metrics.consumer_lag(&reader.lag());
            }
            _ = refresh.tick() => {
                reader.refresh().await;
                let (received, addressed) = worker.metrics.addressed_share();
                tracing::debug!(received, addressed, "bytes fetched, and for this resolver");
            }
            record = reader.consumer().recv() => {
                let record = match record {
                    Ok(record) => record,
                    Err(e) => {
                        reader.consumer().context().failed(&e);
                        continue;
                    }
                };
                let first = kafka::to_message(&record);
                drop(record);
                let batch = take_batch(reader.consumer(), &worker.metrics, first).await;
                // Messages deleted before they were read: none of the batch is delivered, so
                // that the journal stays before the gap and the next start finds it, reports
                // it and converges from the state topic.
                if let Some(lost) = reader.gap(batch.iter().map(|(_, position)| position)) {
                    tracing::error!("{lost} (deleted before they were read): stopping");
                    gone = Some(lost);
                    // What runs beside the loop (the metrics server, the guest watcher) ends
                    // at the shutdown.
                    shutdown.cancel();
                    break;
                }
                if !deliver(&worker, &scheduler, &status, Some(&reader), batch, &shutdown).await {
                    // Shut down while the files directory could not be written: the offsets
                    // not stored come again after the restart.
                    break;
                }
            }
        }
    }

    let (received, addressed) = worker.metrics.addressed_share();
    tracing::info!(
        received,
        addressed,
        "shutting down: committing offsets (bytes fetched, and for this resolver)"
    );
    reader.stop().await;
    // The scheduler serves what is pending once its last handle is gone; the metrics server
    // and the swap watcher end at `shutdown`.
    drop(scheduler);
    drop(swaps);
    tasks.close();
    tasks.wait().await;
    // After the last manager call, so that its record goes out too; bounded, so that a status
    // topic that cannot be written does not hold up the stop.
    status.lifecycle(Event::Stopped);
    let _ = tokio::task::spawn_blocking(move || status.flush(crate::status::FLUSH_AT_STOP)).await;
    close(listener_closed, listener_tasks).await;
    if let Some(lost) = gone {
        anyhow::bail!(
            "{lost} (deleted before they were read): stopped; the next start reports them and reads the state topic (systemd restarts the daemon)"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Close the metrics listener (the last thing a stop does) and wait for it.
async fn close(closed: CancellationToken, tasks: TaskTracker) {
    closed.cancel();
    tasks.close();
    tasks.wait().await;
}
