//! The benchmark's workloads, made record by record as they are published (a large file is
//! never held whole), and the producer that keeps them within the mock broker's retention. It
//! compresses as `kres-kafka send` does, so the daemon's figures include the decompression.

use super::throughput::{ME, WINDOW};
use anyhow::{Context as _, bail};
use kres_kafka_guest::headers::{CHUNK_INDEX, FILE_NAME, HOSTNAME, SHA256, TOTAL_CHUNKS};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One record to publish.
pub(super) struct Record {
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) value: Vec<u8>,
    /// The partition, when the workload places its records itself.
    pub(super) partition: Option<i32>,
}

/// A workload: its records, made as they are published (a large file is never held whole).
pub(super) trait Workload: Sync {
    fn count(&self) -> usize;
    fn record(&self, i: usize) -> Record;
    /// Whether the producer publishes as fast as it can instead of staying within
    /// [`WINDOW`] of the consumer (the workload fits in the broker's retention).
    fn unthrottled(&self) -> bool {
        false
    }
    /// How far ahead of the consumer the producer may run, in bytes of values.
    fn window(&self) -> u64 {
        WINDOW
    }
}

/// Distinct blocks a large file's chunks take their content from in turn: more than a
/// producer batch holds, so that no batch compresses a block against a copy of itself.
const BLOCKS: usize = 8;

/// A large RPZ file in chunks for `host`.
pub(super) struct Chunked {
    pub(super) host: &'static str,
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) chunk: usize,
    pub(super) blocks: Vec<Vec<u8>>,
    pub(super) sha256: String,
}

impl Chunked {
    pub(super) fn new(host: &'static str, name: &str, size: u64, chunk: usize) -> Chunked {
        // The blocks hold RPZ lines only: the file's header is the first chunk's.
        let blocks = (0..BLOCKS as u64)
            .map(|seed| rpz_lines(chunk, seed))
            .collect();
        let mut this = Chunked {
            host,
            name: name.to_owned(),
            size,
            chunk,
            blocks,
            sha256: String::new(),
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

    /// Chunk `i` (0-based): a block, its first line (a comment) stamped with the index, the
    /// first chunk starting with the zone's header, cut at the file's end: whole lines, so that
    /// the file is an RPZ the resolver loads, whatever its size.
    pub(super) fn chunk_value(&self, i: usize) -> Vec<u8> {
        let len = (self.size - (i * self.chunk) as u64).min(self.chunk as u64) as usize;
        let mut value = self.blocks[i % BLOCKS].clone();
        let stamp = format!("; {i:010}\n");
        value[..stamp.len()].copy_from_slice(stamp.as_bytes());
        if i == 0 {
            value[..RPZ_HEADER.len()].copy_from_slice(RPZ_HEADER);
            let rest = value[RPZ_HEADER.len()..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(value.len(), |n| RPZ_HEADER.len() + n + 1);
            fill_with_comment(&mut value[RPZ_HEADER.len()..rest]);
        }
        value.truncate(len);
        let last_line = value.iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1);
        fill_with_comment(&mut value[last_line..]);
        value
    }
}

/// The start of every RPZ the benchmark makes, as a published block list starts.
const RPZ_HEADER: &[u8] =
    b"$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 300\n  NS localhost.\n";

/// Make `bytes` one comment line (or an empty line, for one byte), so that a block cut
/// anywhere ends in whole lines.
fn fill_with_comment(bytes: &mut [u8]) {
    if let Some((last, rest)) = bytes.split_last_mut() {
        *last = b'\n';
        if let Some((first, middle)) = rest.split_first_mut() {
            *first = b';';
            middle.fill(b'x');
        }
    }
}

impl Workload for Chunked {
    fn count(&self) -> usize {
        self.chunks()
    }

    fn record(&self, i: usize) -> Record {
        Record {
            headers: vec![
                (HOSTNAME, self.host.into()),
                (FILE_NAME, self.name.clone()),
                (TOTAL_CHUNKS, self.chunks().to_string()),
                (CHUNK_INDEX, (i + 1).to_string()),
                (SHA256, self.sha256.clone()),
            ],
            value: self.chunk_value(i),
            partition: None,
        }
    }
}

/// `size` bytes of a block list as operators publish them: the zone's header, then distinct
/// made-up domains (the labels of a few thousand words and random strings, under common
/// suffixes), sorted, each with a `CNAME .` rule and a wildcard rule, as an RPZ made from a
/// domain list has. The same `seed` gives the same bytes.
pub(super) fn block_list(size: usize, seed: u64) -> Vec<u8> {
    let mut zone = rpz_lines(size.max(RPZ_HEADER.len() + 16), seed);
    zone[..RPZ_HEADER.len()].copy_from_slice(RPZ_HEADER);
    let rest = zone[RPZ_HEADER.len()..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(zone.len(), |n| RPZ_HEADER.len() + n + 1);
    fill_with_comment(&mut zone[RPZ_HEADER.len()..rest]);
    zone.truncate(size);
    zone
}

/// Exactly `size` bytes of whole RPZ lines: a comment line of 13 bytes (room for a stamp),
/// then rules for distinct domains, sorted; the last line a comment that fills what remains.
fn rpz_lines(size: usize, seed: u64) -> Vec<u8> {
    const SUFFIXES: [&str; 12] = [
        "com", "net", "org", "info", "xyz", "top", "ru", "cn", "de", "co.uk", "io", "online",
    ];
    const SYLLABLES: [&str; 24] = [
        "ad", "track", "cdn", "pix", "stat", "click", "media", "srv", "metric", "tag", "bid",
        "sync", "log", "beacon", "promo", "cash", "win", "bet", "cloud", "fast", "get", "my",
        "top", "net",
    ];
    // splitmix64: a fixed sequence, no dependency.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut domains = std::collections::BTreeSet::new();
    let mut bytes = 0;
    while bytes < size {
        let mut name = String::new();
        for _ in 0..1 + next() % 3 {
            name.push_str(SYLLABLES[(next() % SYLLABLES.len() as u64) as usize]);
        }
        // Most names carry a random part, as generated tracker and malware domains do.
        if next() % 4 != 0 {
            const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
            for _ in 0..2 + next() % 8 {
                name.push(ALPHABET[(next() % ALPHABET.len() as u64) as usize] as char);
            }
        }
        if next() % 5 == 0 {
            name.push('.');
            name.push_str(SYLLABLES[(next() % SYLLABLES.len() as u64) as usize]);
        }
        name.push('.');
        name.push_str(SUFFIXES[(next() % SUFFIXES.len() as u64) as usize]);
        bytes += 2 * name.len() + 20;
        domains.insert(name);
    }
    let mut zone = b"; 0000000000\n".to_vec();
    for name in domains {
        if zone.len() >= size {
            break;
        }
        zone.extend_from_slice(format!("{name} CNAME .\n*.{name} CNAME .\n").as_bytes());
    }
    zone.truncate(size);
    zone.resize(size, b'\n');
    let last_line = zone.iter().rposition(|&b| b == b'\n').map_or(0, |n| n + 1);
    let last_line = if last_line == zone.len() {
        // Ends with a newline: the cut may still have split the line before it.
        zone[..zone.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |n| n + 1)
    } else {
        last_line
    };
    fill_with_comment(&mut zone[last_line..]);
    zone
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmarks_block_lists_are_rpz_files_the_resolver_loads_at_any_size() {
        for size in [200, 4096, 100_000, 524_288 + 17] {
            let list = block_list(size, 3);
            assert_eq!(list.len(), size);
            kres_kafka_guest::zone::judge_rpz(&list).unwrap();
        }
        for (size, chunk) in [
            (3 * 65_536 + 100, 65_536),
            (2 * 65_536, 65_536),
            (1_000, 65_536),
        ] {
            let file = Chunked::new(ME, "big.rpz", size, chunk);
            let whole: Vec<u8> = (0..file.chunks())
                .flat_map(|i| file.chunk_value(i))
                .collect();
            assert_eq!(whole.len() as u64, size);
            kres_kafka_guest::zone::judge_rpz(&whole).unwrap();
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
            partition: None,
        }
    }
}

/// The producer's context: the bytes it sent to the brokers, from librdkafka's statistics.
#[derive(Default)]
struct Sent {
    bytes: AtomicU64,
    reports: AtomicU64,
}

impl ClientContext for Sent {
    fn stats(&self, statistics: rdkafka::Statistics) {
        let sent: u64 = statistics.brokers.values().map(|b| b.txbytes).sum();
        self.bytes.store(sent, Ordering::Relaxed);
        self.reports.fetch_add(1, Ordering::Relaxed);
    }
}

impl rdkafka::producer::ProducerContext for Sent {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// How often the producer reports what it sent.
const STATISTICS_MS: u64 = 100;

/// Publish `workload` to `topic`, compressed, keyed (by the `hostname` header) and placed
/// (Kafka's default partitioner) as `send` does, staying at most [`WINDOW`] bytes ahead of
/// `consumed`. Returns the bytes sent to the broker (requests included).
pub(super) fn produce(
    servers: &str,
    topic: &str,
    workload: &dyn Workload,
    consumed: &AtomicU64,
) -> anyhow::Result<u64> {
    let producer: BaseProducer<Sent> = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("compression.type", crate::publish::DEFAULT_COMPRESSION)
        .set("partitioner", "murmur2_random")
        .set("statistics.interval.ms", STATISTICS_MS.to_string())
        .create_with_context(Sent::default())
        .context("creating the bench's producer")?;
    let mut produced = 0u64;
    for i in 0..workload.count() {
        let record = workload.record(i);
        while !workload.unthrottled()
            && produced > consumed.load(Ordering::Relaxed) + workload.window()
        {
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
        let key = record
            .headers
            .iter()
            .find(|(name, _)| *name == HOSTNAME)
            .map(|(_, host)| host.as_bytes());
        let mut pending = BaseRecord::<[u8], [u8]>::to(topic)
            .payload(&record.value)
            .headers(headers);
        if let Some(key) = key {
            pending = pending.key(key);
        }
        if let Some(partition) = record.partition {
            pending = pending.partition(partition);
        }
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
    // Two reports after the flush: the second counts everything sent.
    let reports = producer.context().reports.load(Ordering::Relaxed);
    let deadline = std::time::Instant::now() + Duration::from_millis(20 * STATISTICS_MS);
    while producer.context().reports.load(Ordering::Relaxed) < reports + 2
        && std::time::Instant::now() < deadline
    {
        producer.poll(Duration::from_millis(STATISTICS_MS / 4));
    }
    Ok(producer.context().bytes.load(Ordering::Relaxed))
}

/// Block lists for `host`, each in chunks on a partition of its own (as a publisher keying by
/// file name spreads them), published as fast as the producer can: the mock broker keeps
/// about 5 MiB (compressed) a partition, so each list fits on its partition whole. Then, if
/// `then` is set, one small file for us.
pub(super) struct Lists {
    pub(super) lists: Vec<Chunked>,
    pub(super) then: Option<&'static str>,
}

impl Lists {
    pub(super) fn new(host: &'static str, count: usize, size: u64, chunk: usize) -> Lists {
        let lists = (0..count)
            .map(|j| Chunked::new(host, &format!("lists/list-{j:02}.rpz"), size, chunk))
            .collect();
        Lists { lists, then: None }
    }

    /// Each list's name and size.
    pub(super) fn files(&self) -> Vec<(String, u64)> {
        self.lists
            .iter()
            .map(|l| (l.name.clone(), l.size))
            .collect()
    }

    /// The lists' bytes (not counting the file for us).
    pub(super) fn bytes(&self) -> u64 {
        self.lists.iter().map(|l| l.size).sum()
    }

    fn chunks(&self) -> usize {
        self.lists.iter().map(Workload::count).sum()
    }
}

impl Workload for Lists {
    fn count(&self) -> usize {
        self.chunks() + usize::from(self.then.is_some())
    }

    /// The lists interleaved, chunk by chunk, as several publishers at once would send them.
    fn record(&self, i: usize) -> Record {
        if i == self.chunks() {
            let name = self.then.expect("counted");
            return Record {
                headers: vec![(HOSTNAME, ME.into()), (FILE_NAME, name.into())],
                value: b"; ours, after the lists for another resolver\n".to_vec(),
                partition: None,
            };
        }
        let n = self.lists.len();
        let (list, chunk) = (i % n, i / n);
        let mut record = self.lists[list].record(chunk);
        record.partition = Some(list as i32);
        record
    }

    fn unthrottled(&self) -> bool {
        true
    }
}

/// A fleet's traffic: one file of `size` bytes for each of `resolvers` resolvers, ours the
/// first.
pub(super) struct Fleet {
    pub(super) resolvers: usize,
    pub(super) size: usize,
}

impl Fleet {
    pub(super) fn hostname(r: usize) -> String {
        if r == 0 {
            ME.to_owned()
        } else {
            format!("resolver-{r:04}.fleet.example")
        }
    }
}

impl Workload for Fleet {
    fn count(&self) -> usize {
        self.resolvers
    }

    fn record(&self, r: usize) -> Record {
        Record {
            headers: vec![
                (HOSTNAME, Fleet::hostname(r)),
                (FILE_NAME, format!("fleet-{r:04}.rpz")),
            ],
            value: block_list(self.size, r as u64),
            partition: None,
        }
    }
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
            partition: self.0.partition,
        }
    }
}

/// A large file behind: the producer keeps `window` bytes of it ahead of the consumer, as much
/// as one partition of the mock broker keeps (compressed), so that the consumer always finds a
/// backlog waiting; then, if `then` is set, one small file for us.
pub(super) struct Behind<'a> {
    pub(super) file: &'a Chunked,
    pub(super) window: u64,
    pub(super) then: Option<&'static str>,
}

impl Workload for Behind<'_> {
    fn count(&self) -> usize {
        self.file.count() + usize::from(self.then.is_some())
    }

    fn record(&self, i: usize) -> Record {
        match self.then {
            Some(name) if i == self.file.count() => Record {
                headers: vec![(HOSTNAME, ME.into()), (FILE_NAME, name.into())],
                value: b"; ours, after a file for another resolver\n".to_vec(),
                partition: None,
            },
            _ => self.file.record(i),
        }
    }

    fn window(&self) -> u64 {
        self.window
    }
}
