//! The publisher behind `kres-kafka send`. Sends files to one resolver in the wire format the daemon
//! consumes: files that configuration refers to first, configuration files last; values split
//! into chunks numbered from 1; `file-name`, `total-chunks`, `chunk-index`, `sha256` and
//! `transfer-id` headers; for one resolver a `hostname` header and that key, for a zone the
//! zone-id as key (upstream's newest addressing); either way one recipient's messages stay in
//! one partition, in order. Every delivery report is awaited; a file is delivered only when all
//! its chunks are.

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

/// A file the broker took.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub name: String,
    pub size: u64,
    pub chunks: u32,
    /// Its `transfer-id` header, by which resolvers' status records name it.
    pub transfer_id: String,
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

/// Send `files` to `to`, non-configuration files first, each signed by `signer` if given.
pub async fn send(
    publisher: &Publisher,
    topic: &str,
    to: &Recipient,
    files: &[Outgoing],
    chunk_size: u64,
    signer: Option<&SigningKey>,
    progress: &ProgressBar,
) -> Sent {
    let mut ordered: Vec<&Outgoing> = files.iter().collect();
    ordered.sort_by_key(|f| is_config(&f.name));
    let mut sent = Sent::default();
    let mut unanswered: Option<&str> = None;
    for file in ordered {
        if let Some(first) = unanswered {
            sent.failed.push((
                file.name.clone(),
                format!(
                    "not sent: {} did not take {first}",
                    brokers(&publisher.brokers)
                ),
            ));
            continue;
        }
        match send_file(publisher, topic, to, file, chunk_size, signer, progress).await {
            Ok((size, chunks, transfer_id)) => sent.delivered.push(Delivered {
                name: file.name.clone(),
                size,
                chunks,
                transfer_id,
            }),
            Err(failure) => {
                let mut reason = match failure {
                    Failure::NoAnswer(reason) => {
                        unanswered = Some(&file.name);
                        reason
                    }
                    Failure::Other(reason) => reason,
                };
                if let Some(broker) = publisher.log.last_error() {
                    reason = format!("{reason} (last broker error: {broker})");
                }
                progress.suspend(|| tracing::error!(file = %file.name, "not delivered: {reason}"));
                sent.failed.push((file.name.clone(), reason));
            }
        }
    }
    let _ = publisher.producer.flush(publisher.timeout);
    sent
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
    use base64::Engine as _;
    use ed25519_dalek::Signer as _;
    use kres_kafka_guest::signature::{self, Recipient as Signed};
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let recipient = match to {
        Recipient::Host(host) => Signed::Host(host.clone()),
        Recipient::Zone(zone) => Signed::Zone(zone.clone()),
    };
    let text = signature::signed_text(name, sha256, &recipient, at);
    let sig = key.sign(text.as_bytes());
    (
        format!(
            "ed25519:{}:{}",
            signature::key_id(key.verifying_key().as_bytes()),
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
        ),
        at.to_string(),
    )
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

async fn send_file(
    publisher: &Publisher,
    topic: &str,
    to: &Recipient,
    file: &Outgoing,
    chunk_size: u64,
    signer: Option<&SigningKey>,
    progress: &ProgressBar,
) -> Result<(u64, u32, String), Failure> {
    let producer = &publisher.producer;
    let read_error = |e: io::Error| Failure::Other(format!("reading {}: {e}", file.path.display()));
    progress.set_message(file.name.clone());

    // First pass: size and digest, so every chunk carries the whole file's checksum.
    let mut hasher = Sha256::new();
    let mut reader = File::open(&file.path).map_err(read_error)?;
    let size = io::copy(&mut reader, &mut HashWriter(&mut hasher)).map_err(read_error)?;
    let digest: [u8; 32] = hasher.finalize().into();
    let sha256 = kres_kafka_guest::durable::hex(&digest);
    let signature = signer.map(|key| sign(key, &file.name, &digest, to));
    let total = size.div_ceil(chunk_size).max(1);
    let total =
        u32::try_from(total).map_err(|_| Failure::Other(format!("{total} chunks is too many")))?;
    let transfer_id = uuid::Uuid::new_v4().to_string();

    // Second pass: the chunks, with a bounded number of delivery reports pending.
    let mut reader = File::open(&file.path).map_err(read_error)?;
    let mut pending = VecDeque::new();
    for index in 1..=total {
        let mut chunk = Vec::with_capacity(chunk_size.min(size) as usize);
        (&mut reader)
            .take(chunk_size)
            .read_to_end(&mut chunk)
            .map_err(read_error)?;
        let (index_text, total_text) = (index.to_string(), total.to_string());
        let (key, mut headers) = match to {
            Recipient::Host(host) => (
                host,
                OwnedHeaders::new().insert(Header {
                    key: headers::HOSTNAME,
                    value: Some(host),
                }),
            ),
            Recipient::Zone(zone) => (zone, OwnedHeaders::new()),
        };
        headers = headers
            .insert(Header {
                key: headers::FILE_NAME,
                value: Some(&file.name),
            })
            .insert(Header {
                key: headers::TOTAL_CHUNKS,
                value: Some(&total_text),
            })
            .insert(Header {
                key: headers::CHUNK_INDEX,
                value: Some(&index_text),
            })
            .insert(Header {
                key: headers::SHA256,
                value: Some(&sha256),
            })
            .insert(Header {
                key: headers::TRANSFER_ID,
                value: Some(&transfer_id),
            });
        if let Some((signature, at)) = &signature {
            headers = headers
                .insert(Header {
                    key: headers::SIGNED_AT,
                    value: Some(at),
                })
                .insert(Header {
                    key: headers::SIGNATURE,
                    value: Some(signature),
                });
        }
        let record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(&chunk)
            .headers(headers);
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| Failure::Other(format!("queueing chunk {index} of {total}: {e}")))?;
        pending.push_back((index, chunk.len() as u64, delivery));
        if pending.len() >= IN_FLIGHT {
            wait(publisher, pending.pop_front(), total, progress).await?;
        }
    }
    while let Some(next) = pending.pop_front() {
        wait(publisher, Some(next), total, progress).await?;
    }
    Ok((size, total, transfer_id))
}

async fn wait(
    publisher: &Publisher,
    next: Option<(u32, u64, rdkafka::producer::DeliveryFuture)>,
    total: u32,
    progress: &ProgressBar,
) -> Result<(), Failure> {
    let Some((index, len, delivery)) = next else {
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
                "{} did not take chunk {index} of {total} within {} (--timeout)",
                brokers(&publisher.brokers),
                humantime::format_duration(publisher.timeout)
            )))
        }
        Ok(Err((e, _))) => Err(Failure::Other(format!(
            "chunk {index} of {total} was not delivered: {e}"
        ))),
        Err(_) => Err(Failure::Other(format!(
            "chunk {index} of {total}: the producer stopped"
        ))),
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
