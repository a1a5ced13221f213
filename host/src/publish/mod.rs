//! The publisher behind `kres-kafka send`. Sends files to one resolver in the wire format the daemon
//! consumes: files that configuration refers to first, configuration files last; values split
//! into chunks numbered from 1; `file-name`, `total-chunks`, `chunk-index`, `sha256` and
//! `transfer-id` headers; for one resolver a `hostname` header and that key, for a zone the
//! zone-id as key (upstream's newest addressing); either way one recipient's messages stay in
//! one partition, in order. Every delivery report is awaited; a file is delivered only when all
//! its chunks are.
//!
//! With a state topic (`kafka.state-topic`, on by default) each file is written there first,
//! then to the stream, then what the new version leaves behind in the state is deleted; a
//! withdrawn file (`send --remove`) is withdrawn in the state, then on the stream. The format
//! is in [`state`].
//!
//! # Layout
//!
//! - this file: the producer, the stream's records, chunking, signing, progress.
//! - `state`: the state topic: made ready, its recipient's part read, written.

pub mod state;

use crate::config::Settings;
use crate::kafka;
use ed25519_dalek::SigningKey;
use indicatif::{ProgressBar, ProgressStyle};
use kres_kafka_guest::headers;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Duration;

/// Messages in flight at once: enough to keep the broker busy, few enough to bound memory
/// (at most this many chunks are held while their delivery reports are pending).
const IN_FLIGHT: usize = 32;

/// How long librdkafka may try to deliver one message before reporting it failed, unless
/// `send --timeout` says otherwise: long enough to ride out a leader election (seconds), short
/// enough that a publisher pointed at a broker that is down hears it within the minute.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Who the files are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// One resolver: the `hostname` header, and the key (so its messages stay in order).
    Host(String),
    /// Every resolver of a zone, as upstream's newest publisher addresses them: the key is the
    /// zone-id; no `hostname` header.
    Zone(String),
}

impl Recipient {
    /// The key of its messages on the stream.
    pub fn key(&self) -> &str {
        match self {
            Recipient::Host(name) | Recipient::Zone(name) => name,
        }
    }

    /// As the state topic's keys name it.
    pub fn in_state(&self) -> kres_kafka_guest::state::Recipient {
        use kres_kafka_guest::state::Recipient as State;
        match self {
            Recipient::Host(host) => State::Host(host.clone()),
            Recipient::Zone(zone) => State::Zone(zone.clone()),
        }
    }

    /// As a signature names it.
    fn signed(&self) -> kres_kafka_guest::signature::Recipient {
        use kres_kafka_guest::signature::Recipient as Signed;
        match self {
            Recipient::Host(host) => Signed::Host(host.clone()),
            Recipient::Zone(zone) => Signed::Zone(zone.clone()),
        }
    }

    /// A message's headers as they start for it: `hostname` for one resolver.
    fn headers(&self) -> OwnedHeaders {
        match self {
            Recipient::Host(host) => OwnedHeaders::new().insert(Header {
                key: headers::HOSTNAME,
                value: Some(host),
            }),
            Recipient::Zone(_) => OwnedHeaders::new(),
        }
    }
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::Host(host) => write!(f, "resolver {host}"),
            Recipient::Zone(zone) => write!(f, "zone {zone}"),
        }
    }
}

/// One file to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where to read it.
    pub path: PathBuf,
    /// Its name inside the resolver's files directory.
    pub name: String,
}

/// What one `send` publishes to one recipient.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub to: &'a Recipient,
    /// Files to send: non-configuration files first, then configuration files.
    pub files: &'a [Outgoing],
    /// Names of files to withdraw (`send --remove`), after the files: a configuration that
    /// stopped referring to a file has been sent before the file goes.
    pub removals: &'a [String],
    pub chunk_size: u64,
    /// Sign every transfer and removal with this key.
    pub signer: Option<&'a SigningKey>,
}

/// A file the broker took, or its removal.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub name: String,
    pub size: u64,
    pub chunks: u32,
    /// Its `transfer-id` header, by which resolvers' status records name it.
    pub transfer_id: String,
    /// A removal (`send --remove`), not a version of the file.
    pub removal: bool,
}

/// What was sent.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    /// Each file delivered, in sending order.
    pub delivered: Vec<Delivered>,
    /// Files not delivered, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Whether `name` is a configuration file (sent last, validated and reloaded by the daemon).
pub fn is_config(name: &str) -> bool {
    kres_kafka_guest::config::Format::of(name).is_some()
}

/// `send`'s compression: zstd decodes fast and shrinks a block list five-fold.
pub const DEFAULT_COMPRESSION: &str = "zstd";

/// The producer for `kafka`'s brokers and TLS settings, compressing with `compression`
/// (librdkafka's `compression.type`: `zstd`, `lz4`, `gzip`, `snappy` or `none`), giving up on
/// a message after [`DEFAULT_TIMEOUT`].
pub fn producer(
    kafka: &Settings,
    compression: &str,
) -> Result<Publisher, rdkafka::error::KafkaError> {
    producer_within(kafka, compression, DEFAULT_TIMEOUT)
}

/// [`producer`], giving up on a message the brokers have not taken within `timeout`.
pub fn producer_within(
    kafka: &Settings,
    compression: &str,
    timeout: Duration,
) -> Result<Publisher, rdkafka::error::KafkaError> {
    let mut config = kafka::client_config(kafka, "kres-kafka-send");
    config
        // Retries must not reorder chunks, nor duplicate them.
        .set("enable.idempotence", "true")
        // At least 1 ms: librdkafka reads 0 as "never".
        .set(
            "message.timeout.ms",
            timeout.as_millis().clamp(1, i32::MAX as u128).to_string(),
        )
        .set("linger.ms", "5")
        // Kafka's default partitioner (the Java client's, kafka-python's): the daemon's
        // `partitions: addressed` computes the same to know where its messages are.
        .set("partitioner", "murmur2_random")
        .set("compression.type", compression);
    kafka::apply_extra_options(&mut config, kafka);
    let log = kafka::LogContext::default();
    Ok(Publisher {
        producer: config.create_with_context(log.clone())?,
        log,
        brokers: kafka
            .servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        timeout,
    })
}

/// The publisher's producer, logging through `tracing`, and a handle on what it logged.
pub struct Publisher {
    producer: FutureProducer<kafka::LogContext>,
    log: kafka::LogContext,
    /// The brokers it was given, for a message that says which did not answer.
    brokers: String,
    /// How long a message may wait for the brokers.
    timeout: Duration,
}

/// Why one file was not delivered.
enum Failure {
    /// The brokers did not take a chunk within the publisher's timeout: the next file would
    /// wait as long, for nothing.
    NoAnswer(String),
    Other(String),
}

/// Publish `batch`: its files, non-configuration files first, then its removals, each
/// signed if the batch has a signer; through `state` as well when there is one (see
/// [`state`]).
pub async fn send(
    publisher: &Publisher,
    topic: &str,
    batch: &Batch<'_>,
    mut state: Option<&mut state::State>,
    progress: &ProgressBar,
) -> Sent {
    let mut ordered: Vec<&Outgoing> = batch.files.iter().collect();
    ordered.sort_by_key(|f| is_config(&f.name));
    let jobs = ordered
        .into_iter()
        .map(Job::Send)
        .chain(batch.removals.iter().map(|name| Job::Remove(name)));
    let mut sent = Sent::default();
    let mut unanswered: Option<&str> = None;
    for job in jobs {
        let name = job.name();
        if let Some(first) = unanswered {
            sent.failed.push((
                name.to_owned(),
                format!(
                    "not sent: {} did not take {first}",
                    brokers(&publisher.brokers)
                ),
            ));
            continue;
        }
        let done = match job {
            Job::Send(file) => {
                send_file(
                    publisher,
                    topic,
                    batch,
                    file,
                    state.as_deref_mut(),
                    progress,
                )
                .await
            }
            Job::Remove(name) => remove_file(publisher, topic, batch, name, state.as_deref_mut())
                .await
                .map(|transfer_id| Delivered {
                    name: name.to_owned(),
                    size: 0,
                    chunks: 0,
                    transfer_id,
                    removal: true,
                }),
        };
        match done {
            Ok(delivered) => sent.delivered.push(delivered),
            Err(failure) => {
                let mut reason = match failure {
                    Failure::NoAnswer(reason) => {
                        unanswered = Some(name);
                        reason
                    }
                    Failure::Other(reason) => reason,
                };
                if let Some(broker) = publisher.log.last_error() {
                    reason = format!("{reason} (last broker error: {broker})");
                }
                progress.suspend(|| tracing::error!(file = %name, "not delivered: {reason}"));
                sent.failed.push((name.to_owned(), reason));
            }
        }
    }
    let _ = publisher.producer.flush(publisher.timeout);
    sent
}

/// One thing [`send`] does.
enum Job<'a> {
    Send(&'a Outgoing),
    Remove(&'a str),
}

impl<'a> Job<'a> {
    fn name(&self) -> &'a str {
        match self {
            Job::Send(file) => &file.name,
            Job::Remove(name) => name,
        }
    }
}

/// `the broker a:9092` or `the brokers a:9092, b:9092`.
fn brokers(list: &str) -> String {
    if list.contains(", ") {
        format!("the brokers {list}")
    } else {
        format!("the broker {list}")
    }
}

/// The `signature` and `signed-at` headers of file `name` with digest `sha256` for `to`,
/// signed now by `key` (see `kres_kafka_guest::signature` for the format).
pub fn sign(key: &SigningKey, name: &str, sha256: &[u8; 32], to: &Recipient) -> (String, String) {
    let at = unix_millis();
    let text = kres_kafka_guest::signature::signed_text(name, sha256, &to.signed(), at);
    (signature(key, &text), at.to_string())
}

/// The `signature` and `signed-at` headers of the removal of file `name` for `to`, signed now
/// by `key` (`kres_kafka_guest::signature::removal_text`).
pub fn sign_removal(key: &SigningKey, name: &str, to: &Recipient) -> (String, String) {
    let at = unix_millis();
    let text = kres_kafka_guest::signature::removal_text(name, &to.signed(), at);
    (signature(key, &text), at.to_string())
}

/// The `signature` header: `ed25519:<key-id>:<base64>` of `text` signed by `key`.
fn signature(key: &SigningKey, text: &str) -> String {
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    let sig = key.sign(text.as_bytes());
    format!(
        "ed25519:{}:{}",
        kres_kafka_guest::signature::key_id(key.verifying_key().as_bytes()),
        base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
    )
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Read a private key for `send --sign`: PKCS#8 PEM, as `kres-kafka keygen` and
/// `openssl genpkey -algorithm ed25519` write it.
pub fn read_signing_key(path: &std::path::Path) -> anyhow::Result<SigningKey> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let pem = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the signing key {}: {e}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "the signing key {} is not an Ed25519 private key in PKCS#8 PEM: {e}",
            path.display()
        )
    })
}

/// The line a resolver's `kafka.trusted-keys` takes for `key`.
pub fn public_key_line(key: &ed25519_dalek::VerifyingKey) -> String {
    use base64::Engine as _;
    format!(
        "ed25519:{}",
        base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
    )
}

/// A progress bar of bytes, drawn only on a terminal.
pub fn progress_bar(files: &[Outgoing]) -> ProgressBar {
    let total = files
        .iter()
        .filter_map(|f| std::fs::metadata(&f.path).ok())
        .map(|m| m.len())
        .sum();
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:24!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A file being sent: what every one of its records says.
struct Transfer<'a> {
    file: &'a Outgoing,
    size: u64,
    total: u32,
    sha256: String,
    transfer_id: String,
    /// `signature` and `signed-at`.
    signature: Option<(String, String)>,
}

impl Transfer<'_> {
    /// The headers of chunk `index` on the stream.
    fn headers(&self, to: &Recipient, index: u32) -> OwnedHeaders {
        let (index, total) = (index.to_string(), self.total.to_string());
        let headers = to
            .headers()
            .insert(Header {
                key: headers::FILE_NAME,
                value: Some(&self.file.name),
            })
            .insert(Header {
                key: headers::TOTAL_CHUNKS,
                value: Some(&total),
            })
            .insert(Header {
                key: headers::CHUNK_INDEX,
                value: Some(&index),
            })
            .insert(Header {
                key: headers::SHA256,
                value: Some(&self.sha256),
            })
            .insert(Header {
                key: headers::TRANSFER_ID,
                value: Some(&self.transfer_id),
            });
        signed(headers, self.signature.as_ref())
    }
}

/// `headers` with `signed-at` and `signature` when there is a signature.
fn signed(headers: OwnedHeaders, signature: Option<&(String, String)>) -> OwnedHeaders {
    match signature {
        Some((signature, at)) => headers
            .insert(Header {
                key: headers::SIGNED_AT,
                value: Some(at),
            })
            .insert(Header {
                key: headers::SIGNATURE,
                value: Some(signature),
            }),
        None => headers,
    }
}

/// Where a transfer's chunks go.
#[derive(Clone, Copy)]
enum Place<'a> {
    /// The stream: key and headers as the daemon reads them.
    Stream { topic: &'a str },
    /// The state topic: a key per chunk, the recipient's partition.
    State(&'a state::State),
}

/// Send one file: to the state (every chunk taken), then to the stream, then delete from the
/// state what this version leaves behind.
async fn send_file(
    publisher: &Publisher,
    topic: &str,
    batch: &Batch<'_>,
    file: &Outgoing,
    state: Option<&mut state::State>,
    progress: &ProgressBar,
) -> Result<Delivered, Failure> {
    let read_error = |e: io::Error| Failure::Other(format!("reading {}: {e}", file.path.display()));
    progress.set_message(file.name.clone());

    // First pass: size and digest, so every chunk carries the whole file's checksum.
    let mut hasher = Sha256::new();
    let mut reader = File::open(&file.path).map_err(read_error)?;
    let size = io::copy(&mut reader, &mut HashWriter(&mut hasher)).map_err(read_error)?;
    let digest: [u8; 32] = hasher.finalize().into();
    let total = size.div_ceil(batch.chunk_size).max(1);
    let total =
        u32::try_from(total).map_err(|_| Failure::Other(format!("{total} chunks is too many")))?;
    let transfer = Transfer {
        file,
        size,
        total,
        sha256: kres_kafka_guest::durable::hex(&digest),
        transfer_id: uuid::Uuid::new_v4().to_string(),
        signature: batch
            .signer
            .map(|key| sign(key, &file.name, &digest, batch.to)),
    };

    if let Some(state) = state.as_deref() {
        let hidden = ProgressBar::hidden();
        put_chunks(publisher, batch, &transfer, Place::State(state), &hidden).await?;
    }
    put_chunks(
        publisher,
        batch,
        &transfer,
        Place::Stream { topic },
        progress,
    )
    .await?;
    if let Some(state) = state {
        state.replaced(publisher, &file.name, total).await?;
    }
    Ok(Delivered {
        name: file.name.clone(),
        size,
        chunks: total,
        transfer_id: transfer.transfer_id,
        removal: false,
    })
}

/// Publish the chunks of `transfer` to `place`, with a bounded number of delivery reports
/// pending; every one taken when this returns.
async fn put_chunks(
    publisher: &Publisher,
    batch: &Batch<'_>,
    transfer: &Transfer<'_>,
    place: Place<'_>,
    progress: &ProgressBar,
) -> Result<(), Failure> {
    let file = transfer.file;
    let read_error = |e: io::Error| Failure::Other(format!("reading {}: {e}", file.path.display()));
    let total = transfer.total;
    // The stream's chunks are the ones a user thinks of: only the state's are placed.
    let shown = |index: u32| match place {
        Place::Stream { .. } => format!("chunk {index} of {total}"),
        Place::State(state) => format!(
            "chunk {index} of {total} in the state topic {:?}",
            state.topic()
        ),
    };
    let mut reader = File::open(&file.path).map_err(read_error)?;
    let mut pending = VecDeque::new();
    for index in 1..=total {
        let mut chunk = Vec::with_capacity(batch.chunk_size.min(transfer.size) as usize);
        (&mut reader)
            .take(batch.chunk_size)
            .read_to_end(&mut chunk)
            .map_err(read_error)?;
        let headers = transfer.headers(batch.to, index);
        let delivery = match place {
            Place::Stream { topic } => publisher
                .producer
                .send_result(
                    FutureRecord::to(topic)
                        .key(batch.to.key())
                        .payload(&chunk)
                        .headers(headers),
                )
                .map_err(|(e, _)| e),
            Place::State(state) => {
                let key = state.key(&file.name, index);
                publisher
                    .producer
                    .send_result(state.record(&key, headers).payload(chunk.as_slice()))
                    .map_err(|(e, _)| e)
            }
        }
        .map_err(|e| Failure::Other(format!("queueing {}: {e}", shown(index))))?;
        pending.push_back((shown(index), chunk.len() as u64, delivery));
        if pending.len() >= IN_FLIGHT {
            wait(publisher, pending.pop_front(), progress).await?;
        }
    }
    while let Some(next) = pending.pop_front() {
        wait(publisher, Some(next), progress).await?;
    }
    Ok(())
}

/// Withdraw file `name` from the batch's recipient: in the state (its chunks deleted, the
/// removal recorded), then on the stream (one message with header `remove: 1` and an empty
/// value). Returns the removal's `transfer-id`, by which the resolvers' status records name it.
async fn remove_file(
    publisher: &Publisher,
    topic: &str,
    batch: &Batch<'_>,
    name: &str,
    state: Option<&mut state::State>,
) -> Result<String, Failure> {
    let transfer_id = uuid::Uuid::new_v4().to_string();
    let signature = batch.signer.map(|key| sign_removal(key, name, batch.to));
    let headers = signed(
        batch
            .to
            .headers()
            .insert(Header {
                key: headers::FILE_NAME,
                value: Some(name),
            })
            .insert(Header {
                key: headers::REMOVE,
                value: Some("1"),
            })
            .insert(Header {
                key: headers::TRANSFER_ID,
                value: Some(&transfer_id),
            }),
        signature.as_ref(),
    );
    if let Some(state) = state {
        state.removed(publisher, name, headers.clone()).await?;
    }
    let record = FutureRecord::to(topic)
        .key(batch.to.key())
        .payload(&[][..])
        .headers(headers);
    let delivery = publisher
        .producer
        .send_result(record)
        .map_err(|(e, _)| Failure::Other(format!("queueing the removal: {e}")))?;
    let pending = ("the removal".to_owned(), 0, delivery);
    wait(publisher, Some(pending), &ProgressBar::hidden()).await?;
    Ok(transfer_id)
}

/// A record sent: what to call it in an error (`chunk 3 of 5`), its size for the progress
/// bar, its delivery report.
type Pending = (String, u64, rdkafka::producer::DeliveryFuture);

/// Wait for `next`'s delivery report.
async fn wait(
    publisher: &Publisher,
    next: Option<Pending>,
    progress: &ProgressBar,
) -> Result<(), Failure> {
    let Some((what, len, delivery)) = next else {
        return Ok(());
    };
    match delivery.await {
        Ok(Ok(_)) => {
            progress.inc(len);
            Ok(())
        }
        Ok(Err((e, _)))
            if e.rdkafka_error_code()
                == Some(rdkafka::types::RDKafkaErrorCode::MessageTimedOut) =>
        {
            Err(Failure::NoAnswer(format!(
                "{} did not take {what} within {} (--timeout)",
                brokers(&publisher.brokers),
                humantime::format_duration(publisher.timeout)
            )))
        }
        Ok(Err((e, _))) => Err(Failure::Other(format!("{what} was not delivered: {e}"))),
        Err(_) => Err(Failure::Other(format!("{what}: the producer stopped"))),
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
