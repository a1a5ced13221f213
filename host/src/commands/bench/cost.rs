//! The guest's cost per message under WebAssembly against the same logic compiled natively:
//! the guest crate's `process` called directly (with the host's SHA-256 and flush), and the
//! embedded guest through the sandbox (a fresh instance per batch, values as host payloads).
//! Both process the same messages in the daemon's batches, into files directories of their own
//! on the same disk.

use super::workload::Configs;
use crate::daemon::{BATCH_BYTES, BATCH_MESSAGES};
use crate::outcome::{Context, Limits, Message};
use crate::sandbox::{DEFAULT_GUEST, Sandbox, SandboxConfig};
use anyhow::Context as _;
use kres_kafka_guest::batch::Platform;
use kres_kafka_guest::headers::{
    CHUNK_INDEX, FILE_NAME, HOSTNAME, SHA256, SIGNATURE, SIGNED_AT, TOTAL_CHUNKS,
};
use kres_kafka_guest::process::Msg;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The target: WebAssembly at most this much slower than native.
const TARGET: f64 = 1.2;

const ME: &str = "bench-resolver";

/// The host's primitives, called directly.
struct Native(PathBuf);

impl Platform for Native {
    fn compress(&self, state: &mut [u32; 8], blocks: &[u8]) {
        kres_kafka_guest::digest::native_compress(state, blocks);
    }

    fn sync(&self) -> Result<(), String> {
        crate::system::sync_filesystem(&self.0).map_err(|e| e.to_string())
    }
}

/// Messages from partition 0 of topic `bench`, from offset 0.
fn messages(records: impl Iterator<Item = (Vec<(&'static str, String)>, Vec<u8>)>) -> Vec<Message> {
    records
        .enumerate()
        .map(|(offset, (headers, value))| Message {
            key: None,
            headers: headers
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.into_bytes()))
                .collect(),
            value: value.into(),
            topic: "bench".into(),
            partition: 0,
            offset: offset as i64,
        })
        .collect()
}

/// The daemon's batches of `msgs`.
fn batches(msgs: &[Message]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < msgs.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < msgs.len() && end - start < BATCH_MESSAGES && bytes < BATCH_BYTES {
            bytes += msgs[end].value.len();
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// The bench's publisher key: a fixed seed, so that runs compare.
fn publisher() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// The resolver's context: it trusts the bench's publisher, and requires no signature (the
/// unsigned workloads run as they do by default).
fn ctx() -> Context {
    Context {
        hostname: ME.into(),
        zone_id: None,
        limits: Limits::default(),
        now: crate::system::unix_now(),
        trust: crate::outcome::Trust {
            keys: vec![publisher().verifying_key().to_bytes()],
            require_signature: false,
        },
    }
}

fn native(dir: &Path, msgs: &[Message]) -> anyhow::Result<Duration> {
    use kres_kafka_guest::bindings::kres::kafka::types as wit;
    let files = kres_kafka_guest::store::Files::new(dir);
    let platform = Native(dir.to_owned());
    let ctx = ctx();
    let ctx = wit::Context {
        hostname: ctx.hostname,
        zone_id: None,
        limits: wit::Limits {
            max_file_size: ctx.limits.max_file_size,
            max_chunks: ctx.limits.max_chunks,
        },
        now: ctx.now,
        trust: wit::Trust {
            keys: ctx.trust.keys.iter().map(|k| k.to_vec()).collect(),
            require_signature: ctx.trust.require_signature,
        },
    };
    let started = Instant::now();
    for range in batches(msgs) {
        let batch: Vec<Msg<'_>> = msgs[range.clone()]
            .iter()
            .map(|m| Msg {
                key: m.key.as_deref(),
                headers: m
                    .headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_slice()))
                    .collect(),
                value: &m.value,
                topic: &m.topic,
                partition: m.partition,
                offset: m.offset,
            })
            .collect();
        let outcomes = kres_kafka_guest::process::process(
            &files,
            &kres_kafka_guest::judge::NoResolver,
            &platform,
            &ctx,
            &batch,
        );
        if outcomes.len() != range.len() || outcomes.iter().any(Result::is_err) {
            anyhow::bail!(
                "natively, a batch did not go through: {:?}",
                outcomes.first()
            );
        }
    }
    Ok(started.elapsed())
}

fn wasm(dir: &Path, msgs: &[Message]) -> anyhow::Result<Duration> {
    let sandbox = Sandbox::new(SandboxConfig::new(dir))?;
    let guest = sandbox.load(DEFAULT_GUEST, "embedded")?;
    let ctx = ctx();
    let started = Instant::now();
    for range in batches(msgs) {
        let outcomes = guest.process_batch(&ctx, &msgs[range.clone()]);
        let refused = |o: &crate::outcome::Outcome| {
            matches!(
                o,
                crate::outcome::Outcome::Rejected(_) | crate::outcome::Outcome::Failed(_)
            )
        };
        if outcomes.len() != range.len() || outcomes.iter().any(refused) {
            anyhow::bail!(
                "in the sandbox, a batch did not go through: {:?}",
                outcomes.first()
            );
        }
    }
    Ok(started.elapsed())
}

/// Measure and print.
pub async fn run(scratch: &Path, chunk: usize) -> anyhow::Result<()> {
    let block = super::workload::block_list(chunk, 1);
    let configs = messages((0..2000).map(|i| {
        let headers = vec![(HOSTNAME, ME.to_owned()), (FILE_NAME, Configs::name(i))];
        (headers, Configs::content(i))
    }));
    let total = 128;
    let chunks = messages((1..=total).map(|i| {
        let headers = vec![
            (HOSTNAME, ME.to_owned()),
            (FILE_NAME, "zones/big.rpz".to_owned()),
            (TOTAL_CHUNKS, total.to_string()),
            (CHUNK_INDEX, i.to_string()),
        ];
        (headers, block.clone())
    }));
    let foreign = messages((1..=total).map(|i| {
        let headers = vec![
            (HOSTNAME, "another-resolver".to_owned()),
            (FILE_NAME, "zones/big.rpz".to_owned()),
            (TOTAL_CHUNKS, total.to_string()),
            (CHUNK_INDEX, i.to_string()),
        ];
        (headers, block.clone())
    }));
    let rpz = messages((0..2000).map(|i| {
        let headers = vec![
            (HOSTNAME, ME.to_owned()),
            (FILE_NAME, format!("views/{i:05}.rpz")),
        ];
        (headers, super::workload::block_list(1024, i as u64))
    }));
    let key = publisher();
    let signed = messages((0..2000).map(|i| {
        use sha2::Digest as _;
        let name = format!("views/{i:05}.rpz");
        let content = super::workload::block_list(1024, i as u64);
        let digest: [u8; 32] = sha2::Sha256::digest(&content).into();
        let to = crate::publish::Recipient::Host(ME.to_owned());
        let (signature, at) = crate::publish::sign(&key, &name, &digest, &to);
        let headers = vec![
            (HOSTNAME, ME.to_owned()),
            (FILE_NAME, name),
            (SHA256, kres_kafka_guest::durable::hex(&digest)),
            (SIGNED_AT, at),
            (SIGNATURE, signature),
        ];
        (headers, content)
    }));
    let workloads = [
        ("B: a whole 1 KiB configuration, judged, committed", configs),
        ("B': the same as a 1 KiB RPZ file (not judged)", rpz),
        ("B'': the same RPZ, signed: its signature verified", signed),
        ("A: a 512 KiB chunk, appended and hashed", chunks),
        ("S: a 512 KiB chunk for another resolver, skipped", foreign),
    ];
    println!("guest cost per message: WebAssembly (the embedded guest, sandboxed) against native");
    println!(
        "  workload                                             native       wasm   ratio  target"
    );
    let scratch = scratch.to_owned();
    tokio::task::spawn_blocking(move || {
        for (n, (label, msgs)) in workloads.iter().enumerate() {
            let native_dir = scratch.join(format!("cost-native-{n}"));
            let wasm_dir = scratch.join(format!("cost-wasm-{n}"));
            std::fs::create_dir_all(&native_dir)?;
            std::fs::create_dir_all(&wasm_dir)?;
            // Whatever earlier parts left unwritten is not this part's to flush.
            crate::system::sync_filesystem(&scratch)?;
            let native = native(&native_dir, msgs).context("natively")?;
            crate::system::sync_filesystem(&scratch)?;
            let wasm = wasm(&wasm_dir, msgs).context("in the sandbox")?;
            let per = |d: Duration| d.as_secs_f64() * 1e6 / msgs.len() as f64;
            let ratio = wasm.as_secs_f64() / native.as_secs_f64();
            println!(
                "  {label:<52} {:>7.1} µs {:>7.1} µs {ratio:>6.2}  <= {TARGET}: {}",
                per(native),
                per(wasm),
                if ratio <= TARGET { "met" } else { "NOT met" }
            );
        }
        judge_speed(chunk);
        anyhow::Ok(())
    })
    .await?
}

/// Print how fast the host judges an RPZ (natively, on one thread, as it judges a chunked
/// file while it is written): the most a single large RPZ can be delivered at (O, W), however
/// fast the disk and the broker.
fn judge_speed(chunk: usize) {
    const SIZE: usize = 64 << 20;
    let file = super::workload::Chunked::new(ME, "zones/big.rpz", SIZE as u64, chunk);
    let pieces: Vec<Vec<u8>> = (0..SIZE.div_ceil(chunk))
        .map(|i| file.chunk_value(i))
        .collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let mut judge = kres_kafka_guest::zone::RpzJudge::new();
        for piece in &pieces {
            judge
                .feed(piece)
                .expect("the workload's block list is valid");
        }
        judge.finish().expect("the workload's block list is valid");
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!(
        "  the RPZ judge, natively on one thread: {:.0} MB/s (best of 3 over {} MiB)",
        SIZE as f64 / 1e6 / best,
        SIZE >> 20
    );
}
