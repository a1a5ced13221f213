//! Reading this resolver's part of the state topic: what a resolver that starts with nothing
//! (an empty journal), or that lost messages to the broker's retention, needs before it
//! follows the stream.
//!
//! The state topic keeps, per recipient and file, the last thing published (see
//! `kres_kafka_guest::state` for its keys). Until the broker compacts it, it also holds older
//! versions; a file published three times must still reach a new resolver as its third version
//! only, never the first two, not even for an instant. So nothing is handed over before the
//! whole state was seen, and the broker is read once:
//!
//! 1. **Scan**: every record of the partitions this resolver's keys map to, up to their end
//!    when the read began. The values of ours go to a spool (an unlinked file in the state
//!    directory, never flushed: a crash starts the read again), their keys and headers to an
//!    index in memory; for each file of ours, the versions complete in the state (every chunk
//!    of one `transfer-id`) and its removals. A tombstone deletes what its key held before
//!    it. The file's event is the newest: by `signed-at` when signed (an older signed record
//!    written again after a newer one, by a replay, does not win), then by offset.
//! 2. **Hand over**: the records of each chosen event, from the spool, in offset order, to the
//!    guest, which judges them as it judges the stream (addressing, signatures, freshness
//!    against what is in place, validation). Configuration files go last, after the files
//!    they refer to.
//!
//! Memory is bounded by the index (a few hundred bytes per record of ours) and one batch.

use super::{Position, consumer_config};
use crate::config::Config;
use crate::outcome::Message;
use kres_kafka_guest::headers;
use kres_kafka_guest::state::{Key, REMOVAL_INDEX, Recipient};
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one metadata or watermark request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the state may go without a record or an end before the read is given up on.
const STALL: Duration = Duration::from_secs(30);

/// What the read found and handed over.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Files whose current version (or removal) was handed to the guest.
    pub files: usize,
    /// Bytes of their records.
    pub bytes: u64,
}

/// One record of ours, as the scan spooled it.
#[derive(Debug, Clone)]
struct Spooled {
    key: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    /// Where its value is in the spool, and its length.
    at: u64,
    len: u64,
}

/// One record of ours, as the scan keeps it.
#[derive(Debug, Clone)]
struct Seen {
    partition: i32,
    offset: i64,
    total: u32,
    transfer: Vec<u8>,
    signed_at: u64,
    size: u64,
}

/// The records that make the current version of one file.
#[derive(Debug)]
struct Chosen {
    file: String,
    records: Vec<(i32, i64)>,
    bytes: u64,
}

/// Where the state topic is, for this resolver.
pub struct StateTopic {
    consumer: super::Consumer,
    topic: String,
    hostname: String,
    zone_id: Option<String>,
}

impl StateTopic {
    /// A reader of `config`'s state topic; `None` when it is turned off.
    pub fn new(config: &Config, metrics: crate::metrics::Metrics) -> anyhow::Result<Option<Self>> {
        let Some(topic) = config.kafka.state_topic() else {
            return Ok(None);
        };
        let mut client = consumer_config(
            &config.kafka,
            &format!("kres-kafka-{}-state", config.hostname),
        );
        client
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            // The state is one or two partitions read once, its values spooled as they come:
            // librdkafka may run further ahead than for the stream (a broker that answers each
            // fetch slowly, nisshi, read the state at 0.55 of a raw consume with the stream's
            // 8 MiB and 1 MiB per partition, 0.75 with these; peak RSS 40 MiB either way).
            .set(
                "queued.max.messages.kbytes",
                (4 * super::QUEUED_KBYTES).to_string(),
            )
            .set("max.partition.fetch.bytes", (8 << 20).to_string());
        let consumer = client.create_with_context(super::ReaderContext::new(metrics))?;
        Ok(Some(StateTopic {
            consumer,
            topic,
            hostname: config.hostname.clone(),
            zone_id: config.kafka.zone_id.clone(),
        }))
    }

    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether the broker has the topic (with at least one partition): its partition count.
    pub fn partitions(&self) -> Result<Option<i32>, String> {
        let metadata = tokio::task::block_in_place(|| {
            self.consumer
                .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
        })
        .map_err(|e| format!("the broker did not describe {}: {e}", self.topic))?;
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == self.topic) else {
            return Ok(None);
        };
        if topic.error().is_some() || topic.partitions().is_empty() {
            return Ok(None);
        }
        Ok(Some(topic.partitions().len() as i32))
    }

    /// Whether a state record of `recipient` is for this resolver.
    fn ours(&self, recipient: &Recipient) -> bool {
        match recipient {
            Recipient::Host(host) => *host == self.hostname,
            Recipient::Zone(zone) => self.zone_id.as_deref() == Some(zone.as_str()),
        }
    }

    /// The partitions this resolver's state is on (its keys' under Kafka's partitioner).
    fn our_partitions(&self, count: i32) -> BTreeSet<i32> {
        let mut keys = vec![self.hostname.as_bytes()];
        if let Some(zone) = &self.zone_id {
            keys.push(zone.as_bytes());
        }
        super::partitioner::partitions_of(keys, count)
    }

    /// Read the state and hand the current version of each file of ours to `deliver`, in
    /// batches of at most `batch_bytes`; `deliver` returns false when the daemon is stopping.
    /// `None` when `shutdown` came first.
    pub async fn read<F, Fut>(
        &self,
        count: i32,
        spool_dir: &std::path::Path,
        batch_bytes: usize,
        shutdown: &CancellationToken,
        alive: impl Fn(),
        mut deliver: F,
    ) -> anyhow::Result<Option<Summary>>
    where
        F: FnMut(Vec<(Message, Position)>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let partitions = self.our_partitions(count);
        let mut spool = Spool {
            file: tempfile::tempfile_in(spool_dir).map_err(|e| {
                anyhow::anyhow!("creating the state's spool in {}: {e}", spool_dir.display())
            })?,
            end: 0,
            index: BTreeMap::new(),
        };
        let began = std::time::Instant::now();
        let Some(seen) = self.scan(&partitions, &mut spool, shutdown, &alive).await? else {
            return Ok(None);
        };
        tracing::info!(
            records = spool.index.len(),
            bytes = spool.end,
            "state scanned in {:.2} s: {} records of ours, {} bytes",
            began.elapsed().as_secs_f64(),
            spool.index.len(),
            spool.end
        );
        let chosen = choose(seen);
        let mut summary = Summary::default();
        // Files first, configuration last, each group in the state's order.
        let (configs, files): (Vec<Chosen>, Vec<Chosen>) = chosen
            .into_iter()
            .partition(|c| kres_kafka_guest::config::Format::of(&c.file).is_some());
        for (group, positioned) in [(files, true), (configs, false)] {
            if group.is_empty() {
                continue;
            }
            summary.files += group.len();
            summary.bytes += group.iter().map(|c| c.bytes).sum::<u64>();
            let wanted: BTreeSet<(i32, i64)> = group
                .iter()
                .flat_map(|c| c.records.iter().copied())
                .collect();
            if !self
                .hand_over(
                    &spool,
                    &wanted,
                    positioned,
                    batch_bytes,
                    shutdown,
                    &mut deliver,
                )
                .await?
            {
                return Ok(None);
            }
        }
        Ok(Some(summary))
    }

    /// Pass 1: the place and headers of every record of ours, by key, tombstones applied;
    /// their values spooled.
    async fn scan(
        &self,
        partitions: &BTreeSet<i32>,
        spool: &mut Spool,
        shutdown: &CancellationToken,
        alive: &impl Fn(),
    ) -> anyhow::Result<Option<BTreeMap<Key, Vec<Seen>>>> {
        let mut seen: BTreeMap<Key, Vec<Seen>> = BTreeMap::new();
        let mut list = TopicPartitionList::new();
        for p in partitions {
            list.add_partition_offset(&self.topic, *p, Offset::Beginning)?;
        }
        let mut failed = None;
        let done = self
            .each_record(list, shutdown, |record| {
                alive();
                if failed.is_some() {
                    return;
                }
                let Some(key) = record.key().and_then(Key::parse) else {
                    return;
                };
                if !self.ours(&key.recipient) {
                    return;
                }
                let Some(value) = record.payload() else {
                    // A tombstone: what the key held before is deleted.
                    seen.remove(&key);
                    return;
                };
                let headers: Vec<(String, Vec<u8>)> = record
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                let header = |name: &str| {
                    headers
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, v)| v.clone())
                };
                let number = |name: &str| {
                    header(name)
                        .and_then(|v| String::from_utf8(v).ok())
                        .and_then(|v| v.parse::<u64>().ok())
                };
                let entry = Seen {
                    partition: record.partition(),
                    offset: record.offset(),
                    total: number(headers::TOTAL_CHUNKS).map_or(1, |t| t as u32),
                    transfer: header(headers::TRANSFER_ID)
                        .or_else(|| header(headers::SHA256))
                        .unwrap_or_default(),
                    signed_at: number(headers::SIGNED_AT).unwrap_or(0),
                    size: value.len() as u64,
                };
                let place = (record.partition(), record.offset());
                let key_bytes = record.key().unwrap_or_default().to_vec();
                if let Err(e) = spool.put(place, key_bytes, headers, value) {
                    failed = Some(e);
                    return;
                }
                seen.entry(key).or_default().push(entry);
            })
            .await?;
        if let Some(e) = failed {
            anyhow::bail!("writing the state's spool: {e}");
        }
        Ok(done.then_some(seen))
    }

    /// Pass 2: the records at `wanted`, from the spool, handed over in batches.
    async fn hand_over<F, Fut>(
        &self,
        spool: &Spool,
        wanted: &BTreeSet<(i32, i64)>,
        positioned: bool,
        batch_bytes: usize,
        shutdown: &CancellationToken,
        deliver: &mut F,
    ) -> anyhow::Result<bool>
    where
        F: FnMut(Vec<(Message, Position)>) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let mut pending: Vec<(Message, Position)> = Vec::new();
        let mut bytes = 0;
        for (partition, offset) in wanted {
            if shutdown.is_cancelled() {
                return Ok(false);
            }
            let (mut message, position) = spool
                .get((*partition, *offset), &self.topic)
                .map_err(|e| anyhow::anyhow!("reading the state's spool: {e}"))?;
            if !positioned {
                // Handed over as if by hand: no position, never recorded nor skipped as
                // replayed (its offset is below the files' handed over before it).
                message.partition = -1;
                message.offset = -1;
            }
            bytes += message.value.len();
            pending.push((message, position));
            if bytes >= batch_bytes || pending.len() >= crate::daemon::BATCH_MESSAGES {
                if !deliver(std::mem::take(&mut pending)).await {
                    return Ok(false);
                }
                bytes = 0;
            }
        }
        if !pending.is_empty() && !deliver(pending).await {
            return Ok(false);
        }
        Ok(true)
    }

    /// Read `list` to its end (as it was when the read began), calling `each` for every
    /// record. False when `shutdown` came first.
    async fn each_record(
        &self,
        list: TopicPartitionList,
        shutdown: &CancellationToken,
        mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
    ) -> anyhow::Result<bool> {
        // A partition with nothing in it gives no end-of-partition: left out.
        let mut reading = TopicPartitionList::new();
        let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
        for element in list.elements() {
            let p = element.partition();
            let (low, high) = tokio::task::block_in_place(|| {
                self.consumer
                    .fetch_watermarks(&self.topic, p, REQUEST_TIMEOUT)
            })?;
            if high > low {
                ends.insert(p, high);
                reading.add_partition_offset(&self.topic, p, Offset::Beginning)?;
            }
        }
        if ends.is_empty() {
            return Ok(true);
        }
        self.consumer.assign(&reading)?;
        while !ends.is_empty() {
            let record = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Ok(false),
                record = tokio::time::timeout(STALL, self.consumer.recv()) => record,
            };
            match record {
                Err(_) => anyhow::bail!(
                    "reading the state topic {}: no record for {STALL:?} (partitions {:?} not read to their end)",
                    self.topic,
                    ends.keys().collect::<Vec<_>>()
                ),
                Ok(Err(KafkaError::PartitionEOF(p))) => {
                    ends.remove(&p);
                }
                Ok(Err(e)) => self.consumer.context().failed(&e),
                Ok(Ok(record)) => {
                    let (p, o) = (record.partition(), record.offset());
                    if ends.get(&p).is_some_and(|end| o < *end) {
                        each(&record);
                    }
                    if ends.get(&p).is_some_and(|end| o + 1 >= *end) {
                        ends.remove(&p);
                    }
                }
            }
        }
        let _ = self.consumer.unassign();
        Ok(true)
    }
}

/// The values of the records of ours, in an unlinked file, and where each is.
struct Spool {
    file: std::fs::File,
    end: u64,
    index: BTreeMap<(i32, i64), Spooled>,
}

impl Spool {
    fn put(
        &mut self,
        place: (i32, i64),
        key: Vec<u8>,
        headers: Vec<(String, Vec<u8>)>,
        value: &[u8],
    ) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        self.file.write_all_at(value, self.end)?;
        self.index.insert(
            place,
            Spooled {
                key,
                headers,
                at: self.end,
                len: value.len() as u64,
            },
        );
        self.end += value.len() as u64;
        Ok(())
    }

    /// The record at `place` of `topic`, as a message.
    fn get(&self, place: (i32, i64), topic: &str) -> std::io::Result<(Message, Position)> {
        use std::os::unix::fs::FileExt as _;
        let spooled = self
            .index
            .get(&place)
            .ok_or_else(|| std::io::Error::other(format!("no record at {place:?}")))?;
        let mut value = vec![0; spooled.len as usize];
        self.file.read_exact_at(&mut value, spooled.at)?;
        let position = Position {
            topic: topic.to_owned(),
            partition: place.0,
            offset: place.1,
        };
        let message = Message {
            key: Some(spooled.key.clone()),
            headers: spooled.headers.clone(),
            value: value.into(),
            topic: topic.to_owned(),
            partition: place.0,
            offset: place.1,
        };
        Ok((message, position))
    }
}

/// For each file, the records of its newest event: a version complete in the state, or a
/// removal.
fn choose(seen: BTreeMap<Key, Vec<Seen>>) -> Vec<Chosen> {
    // file -> transfer -> index -> the newest record of that chunk.
    let mut versions: BTreeMap<String, BTreeMap<Vec<u8>, BTreeMap<u32, Seen>>> = BTreeMap::new();
    let mut removals: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    for (key, records) in seen {
        for record in records {
            if key.index == REMOVAL_INDEX {
                removals.entry(key.file.clone()).or_default().push(record);
                continue;
            }
            let chunks = versions
                .entry(key.file.clone())
                .or_default()
                .entry(record.transfer.clone())
                .or_default();
            match chunks.get(&key.index) {
                Some(kept) if kept.offset >= record.offset => {}
                _ => {
                    chunks.insert(key.index, record);
                }
            }
        }
    }
    let mut names: BTreeSet<String> = versions.keys().cloned().collect();
    names.extend(removals.keys().cloned());
    let mut chosen = Vec::new();
    for file in names {
        // Each event: its rank (signed-at, then offset), and its records.
        let mut events: Vec<((u64, i64), Vec<&Seen>)> = Vec::new();
        for chunks in versions.get(&file).into_iter().flat_map(|v| v.values()) {
            let Some(total) = chunks.values().map(|s| s.total).max() else {
                continue;
            };
            let complete = (1..=total).all(|i| chunks.get(&i).is_some_and(|s| s.total == total));
            if !complete || chunks.len() != total as usize {
                continue;
            }
            let records: Vec<&Seen> = chunks.values().collect();
            let at = records.iter().map(|s| s.signed_at).max().unwrap_or(0);
            let last = records.iter().map(|s| s.offset).max().unwrap_or(0);
            events.push(((at, last), records));
        }
        for removal in removals.get(&file).into_iter().flatten() {
            events.push(((removal.signed_at, removal.offset), vec![removal]));
        }
        let best = events.into_iter().max_by_key(|(rank, _)| *rank);
        if let Some((_, records)) = best {
            let mut places: Vec<(i32, i64)> =
                records.iter().map(|s| (s.partition, s.offset)).collect();
            places.sort_unstable();
            chosen.push(Chosen {
                file,
                bytes: records.iter().map(|s| s.size).sum(),
                records: places,
            });
        }
    }
    // In the state's order: by the place of each event's first record.
    chosen.sort_by_key(|c| c.records.first().copied());
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(file: &str, index: u32) -> Key {
        Key {
            recipient: Recipient::Host("r1".into()),
            file: file.into(),
            index,
        }
    }

    fn seen(offset: i64, _index: u32, total: u32, transfer: &str, signed_at: u64) -> Seen {
        Seen {
            partition: 0,
            offset,
            total,
            transfer: transfer.as_bytes().to_vec(),
            signed_at,
            size: 10,
        }
    }

    fn state(records: &[(&str, u32, Seen)]) -> BTreeMap<Key, Vec<Seen>> {
        let mut map: BTreeMap<Key, Vec<Seen>> = BTreeMap::new();
        for (file, index, s) in records {
            map.entry(key(file, *index)).or_default().push(s.clone());
        }
        map
    }

    fn offsets(chosen: &[Chosen], file: &str) -> Vec<i64> {
        chosen
            .iter()
            .find(|c| c.file == file)
            .map(|c| c.records.iter().map(|(_, o)| *o).collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_last_complete_version_of_each_file_is_chosen_never_an_earlier_one() {
        let chosen = choose(state(&[
            ("a.rpz", 1, seen(0, 1, 2, "v1", 0)),
            ("a.rpz", 2, seen(1, 2, 2, "v1", 0)),
            ("a.rpz", 1, seen(2, 1, 1, "v2", 0)),
            ("a.rpz", 1, seen(3, 1, 2, "v3", 0)),
            // v3's second chunk is not in the state yet: v2 is the current version.
            ("b.rpz", 1, seen(4, 1, 1, "b1", 0)),
        ]));
        assert_eq!(offsets(&chosen, "a.rpz"), [2]);
        assert_eq!(offsets(&chosen, "b.rpz"), [4]);
    }

    #[test]
    fn a_signed_version_is_not_displaced_by_an_older_signature_written_after_it() {
        let chosen = choose(state(&[
            ("a.rpz", 1, seen(0, 1, 1, "new", 2_000)),
            ("a.rpz", 1, seen(1, 1, 1, "old", 1_000)),
        ]));
        assert_eq!(offsets(&chosen, "a.rpz"), [0]);
    }

    #[test]
    fn a_removal_after_the_last_version_is_the_files_event() {
        let chosen = choose(state(&[
            ("a.rpz", 1, seen(0, 1, 1, "v1", 0)),
            ("a.rpz", REMOVAL_INDEX, seen(1, 0, 1, "", 0)),
            ("b.rpz", REMOVAL_INDEX, seen(2, 0, 1, "", 0)),
            ("b.rpz", 1, seen(3, 1, 1, "b2", 0)),
        ]));
        assert_eq!(offsets(&chosen, "a.rpz"), [1]);
        assert_eq!(offsets(&chosen, "b.rpz"), [3]);
    }
}
