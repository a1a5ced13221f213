//! The benchmark's workloads, made record by record as they are published (a large file is
//! never held whole), and the producer that keeps them within the mock broker's retention.

use super::throughput::{ME, WINDOW};
use anyhow::{Context as _, bail};
use kres_kafka_guest::headers::{CHUNK_INDEX, FILE_NAME, HOSTNAME, SHA256, TOTAL_CHUNKS};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One record to publish.
pub(super) struct Record {
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) value: Vec<u8>,
}

/// A workload: its records, made as they are published (a large file is never held whole).
pub(super) trait Workload: Sync {
    fn count(&self) -> usize;
    fn record(&self, i: usize) -> Record;
}

/// A large RPZ file in chunks for `host`, then, if `then` is set, one small file for us.
pub(super) struct Chunked {
    pub(super) host: &'static str,
    pub(super) name: &'static str,
    pub(super) size: u64,
    pub(super) chunk: usize,
    pub(super) block: Vec<u8>,
    pub(super) sha256: String,
    pub(super) then: Option<&'static str>,
}

impl Chunked {
    pub(super) fn new(host: &'static str, name: &'static str, size: u64, chunk: usize) -> Chunked {
        let block = crate::demo::sample_rpz(chunk)[..chunk].to_vec();
        let mut this = Chunked {
            host,
            name,
            size,
            chunk,
            block,
            sha256: String::new(),
            then: None,
        };
        let mut hasher = Sha256::new();
        for i in 0..this.chunks() {
            hasher.update(this.chunk_value(i));
        }
        this.sha256 = kres_kafka_guest::durable::hex(&hasher.finalize());
        this
    }

    fn chunks(&self) -> usize {
        self.size.div_ceil(self.chunk as u64) as usize
    }

    /// Chunk `i` (0-based): the block, stamped with its index, cut at the file's end.
    fn chunk_value(&self, i: usize) -> Vec<u8> {
        let len = (self.size - (i * self.chunk) as u64).min(self.chunk as u64) as usize;
        let mut value = self.block[..len].to_vec();
        let stamp = format!("; {i:010}\n");
        let n = stamp.len().min(len);
        value[..n].copy_from_slice(&stamp.as_bytes()[..n]);
        value
    }
}

impl Workload for Chunked {
    fn count(&self) -> usize {
        self.chunks() + usize::from(self.then.is_some())
    }

    fn record(&self, i: usize) -> Record {
        if i == self.chunks() {
            let name = self.then.expect("counted");
            return Record {
                headers: vec![(HOSTNAME, ME.into()), (FILE_NAME, name.into())],
                value: b"; ours, after the large file for another resolver\n".to_vec(),
            };
        }
        Record {
            headers: vec![
                (HOSTNAME, self.host.into()),
                (FILE_NAME, self.name.into()),
                (TOTAL_CHUNKS, self.chunks().to_string()),
                (CHUNK_INDEX, (i + 1).to_string()),
                (SHA256, self.sha256.clone()),
            ],
            value: self.chunk_value(i),
        }
    }
}

/// Small JSON configurations for us, each about 1 KiB, each setting keys of its own (so that
/// the manager can merge them all).
pub(super) struct Configs(pub usize);

impl Configs {
    pub(super) fn name(i: usize) -> String {
        format!("views/{i:05}.json")
    }

    pub(super) fn content(i: usize) -> Vec<u8> {
        let addresses: Vec<String> = (0..24)
            .map(|j| format!("\"h{j:02}-{i:05}.bench.example.\":[\"192.0.2.{j}\"]"))
            .collect();
        format!(
            "{{\"local-data\":{{\"addresses\":{{{}}}}}}}\n",
            addresses.join(",")
        )
        .into_bytes()
    }
}

impl Workload for Configs {
    fn count(&self) -> usize {
        self.0
    }

    fn record(&self, i: usize) -> Record {
        Record {
            headers: vec![(HOSTNAME, ME.into()), (FILE_NAME, Configs::name(i))],
            value: Configs::content(i),
        }
    }
}

/// Publish `workload` to `topic`, staying at most [`WINDOW`] bytes ahead of `consumed`.
pub(super) fn produce(
    servers: &str,
    topic: &str,
    workload: &dyn Workload,
    consumed: &AtomicU64,
) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .context("creating the bench's producer")?;
    let mut produced = 0u64;
    for i in 0..workload.count() {
        let record = workload.record(i);
        while produced > consumed.load(Ordering::Relaxed) + WINDOW {
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_micros(200));
        }
        produced += record.value.len() as u64;
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut pending = BaseRecord::<(), [u8]>::to(topic)
            .payload(&record.value)
            .headers(headers);
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((e, back)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        bail!("publishing: {e}");
                    }
                    producer.poll(Duration::from_millis(5));
                    pending = back;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the bench's producer")?;
    Ok(())
}

/// One record.
pub(super) struct Single(pub(super) Record);

impl Workload for Single {
    fn count(&self) -> usize {
        1
    }
    fn record(&self, _: usize) -> Record {
        Record {
            headers: self.0.headers.clone(),
            value: self.0.value.clone(),
        }
    }
}
