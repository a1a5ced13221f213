//! `kres-kafka bench guest-swap` times, many times over, the path an operator's new guest
//! takes: the file is renamed into place, the watcher notices, the guest is read, compiled (cold
//! cache) or loaded from the cache (warm), checked against the world, self-tested, handed over,
//! and processes a first message. It uses the daemon's own swap code, sandbox and file watcher.

use crate::outcome::{Context, Limits, Message, Outcome};
use crate::sandbox::{DEFAULT_GUEST, Guest, Sandbox, SandboxConfig};
use crate::swap::{self, Swapped};
use anyhow::{Context as _, bail};
use kres_kafka_guest::headers::{FILE_NAME, HOSTNAME};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The swap target the issue sets: host work with a warm cache.
const WARM_TARGET: Duration = Duration::from_millis(5);

/// A copy of `guest` that differs only in a custom section: same behaviour, new digest, so it
/// is a new guest to the swap code and to the cache.
pub fn guest_variant(guest: &[u8], n: u64) -> Vec<u8> {
    let name = b"kres-kafka-variant";
    let payload = n.to_le_bytes();
    let mut body = leb128(name.len() as u64);
    body.extend_from_slice(name);
    body.extend_from_slice(&payload);
    let mut out = guest.to_vec();
    out.push(0); // custom section
    out.extend(leb128(body.len() as u64));
    out.extend(body);
    out
}

fn leb128(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

struct Sample {
    /// From the rename to the first message's outcome.
    latency: Duration,
    /// Loading (read, compile or cache, checks, self-test) plus the first message.
    host_work: Duration,
    /// Of which loading.
    load: Duration,
    cached: bool,
}

/// Time `iterations` swaps with a cold cache, then as many with a warm one; print the figures.
pub async fn run(iterations: usize) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let files = scratch.path().join("files");
    let guest_dir = scratch.path().join("guest");
    std::fs::create_dir(&files)?;
    std::fs::create_dir(&guest_dir)?;
    let guest_path = guest_dir.join("guest.wasm");
    let config = SandboxConfig {
        cache_dir: Some(scratch.path().join("cache")),
        ..SandboxConfig::new(&files)
    };
    let sandbox = Arc::new(Sandbox::new(config)?);

    let first = guest_variant(DEFAULT_GUEST, 0);
    std::fs::write(&guest_path, &first)?;
    let loader = Arc::clone(&sandbox);
    let initial = tokio::task::spawn_blocking(move || loader.load(&first, "variant 0")).await??;
    let shutdown = CancellationToken::new();
    let mut swaps = swap::spawn(
        Arc::clone(&sandbox),
        Some(guest_path.clone()),
        initial.digest().to_owned(),
        swap::Refusals {
            metrics: crate::metrics::Metrics::default(),
            status: crate::status::Status::off(),
        },
        tokio::sync::mpsc::unbounded_channel().1,
        shutdown.clone(),
        &TaskTracker::new(),
    )?;

    eprintln!(
        "guest swap: {iterations} swaps with a cold cache, then {iterations} with a warm one"
    );
    let mut cold = Vec::new();
    for i in 1..=iterations {
        eprint!("\r  cold {i}/{iterations}");
        cold.push(
            swap_once(
                &mut swaps,
                &guest_path,
                &guest_variant(DEFAULT_GUEST, i as u64),
                i,
            )
            .await?,
        );
    }
    // Two guests compiled ahead (as `guest compile` does), then swapped back and forth.
    let (a, b) = (
        guest_variant(DEFAULT_GUEST, 1_000_001),
        guest_variant(DEFAULT_GUEST, 1_000_002),
    );
    sandbox.precompile(&a, "variant a")?;
    sandbox.precompile(&b, "variant b")?;
    let mut warm = Vec::new();
    for i in 1..=iterations {
        eprint!("\r  warm {i}/{iterations}");
        let bytes = if i % 2 == 1 { &a } else { &b };
        warm.push(swap_once(&mut swaps, &guest_path, bytes, iterations + i).await?);
    }
    eprintln!();
    shutdown.cancel();

    if cold.iter().any(|s| s.cached) || warm.iter().any(|s| !s.cached) {
        bail!("the cache did not behave: cold swaps must compile, warm ones must not");
    }
    println!("guest swap: new guest file renamed into place -> first message processed by it");
    println!(
        "  ({iterations} swaps each; the guest is {} KiB)",
        DEFAULT_GUEST.len() / 1024
    );
    println!("                              median       p90       max");
    for (label, samples) in [("cold cache", &cold), ("warm cache", &warm)] {
        print_row(
            &format!("{label}   host work"),
            samples.iter().map(|s| s.host_work),
        );
        print_row(
            "               of which loading",
            samples.iter().map(|s| s.load),
        );
        print_row("             latency", samples.iter().map(|s| s.latency));
    }
    println!(
        "  host work: read, compile or load from the cache, check against the world, self-test,"
    );
    println!(
        "  first message. Latency adds the file watcher and the {:?} settle delay.",
        swap::SETTLE
    );
    let median = percentile(warm.iter().map(|s| s.host_work), 50);
    println!(
        "  target: warm host work under {WARM_TARGET:?}: {} (median {median:.2?})",
        if median < WARM_TARGET {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

async fn swap_once(
    swaps: &mut mpsc::Receiver<Swapped>,
    path: &Path,
    bytes: &[u8],
    n: usize,
) -> anyhow::Result<Sample> {
    let tmp = path.with_extension("wasm.new");
    std::fs::write(&tmp, bytes)?;
    let renamed = Instant::now();
    std::fs::rename(&tmp, path)?;
    let swapped = tokio::time::timeout(Duration::from_secs(60), swaps.recv())
        .await
        .context("no swap within 60 s")?
        .context("the swap task stopped")?;
    let handed = Instant::now();
    let outcome = first_message(Arc::clone(&swapped.guest), n).await?;
    let done = Instant::now();
    if !matches!(outcome, Outcome::Committed { .. }) {
        bail!("the new guest did not commit the first message: {outcome:?}");
    }
    Ok(Sample {
        latency: done - renamed,
        host_work: swapped.loaded_in + (done - handed),
        load: swapped.loaded_in,
        cached: swapped.guest.cached(),
    })
}

async fn first_message(guest: Arc<Guest>, n: usize) -> anyhow::Result<Outcome> {
    let ctx = Context {
        hostname: "bench".into(),
        zone_id: None,
        limits: Limits::default(),
        now: crate::system::unix_now(),
        trust: Default::default(),
    };
    let msg = Message {
        headers: vec![
            (HOSTNAME.into(), b"bench".to_vec()),
            (FILE_NAME.into(), format!("f{n}.rpz").into_bytes()),
        ],
        value: format!("f{n}.example CNAME .\n").into_bytes().into(),
        ..Message::default()
    };
    Ok(tokio::task::spawn_blocking(move || guest.process(&ctx, msg)).await?)
}

pub(super) fn percentile(values: impl Iterator<Item = Duration>, p: usize) -> Duration {
    let mut v: Vec<_> = values.collect();
    v.sort();
    v[(v.len() - 1) * p / 100]
}

fn print_row(label: &str, values: impl Iterator<Item = Duration> + Clone) {
    println!(
        "  {label:<24} {:>9.2?} {:>9.2?} {:>9.2?}",
        percentile(values.clone(), 50),
        percentile(values.clone(), 90),
        percentile(values, 100)
    );
}
