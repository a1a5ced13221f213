//! The daemon's consumer: it assigns itself partitions (no consumer group membership, so no
//! rebalance and no session timeout to wait out after a crash), starts each where the journal
//! says, and commits offsets to its group id only for the usual lag tools.
//!
//! Every resolver consumes the whole stream on its own; a group would share nothing and cost a
//! session timeout after every kill. So, as Kafka Connect sinks and Flink's source do:
//!
//! - **Which partitions**: `partitions: all` reads every one; `addressed` reads only those a
//!   message for this resolver can be on, the ones its zone-id and hostname keys map to under
//!   Kafka's default partitioner ([`super::partitioner`]).
//! - **Where to start**: the later of the journal's position plus one (what the guest made
//!   durable) and the group's committed offset (which also covers messages for others, skipped
//!   after the journal's last entry); with neither, `start-from`.
//! - **Growth**: the partition count is read again every `metadata-refresh`. New partitions
//!   are read from their start (a publisher's new messages may already be there); in
//!   `addressed` mode a partition no longer addressed is kept until its messages up to the
//!   growth are read, then dropped.
//! - **Commits**: stored offsets are committed asynchronously every [`COMMIT_EVERY`]; a
//!   refusal is logged and counted, never fatal (the journal holds the positions).
//! - **Stop**: one last commit and the close, given [`STOP_WAIT`]; a broker that does not
//!   answer is given up on, and the log says so.

use super::{LogContext, Position, QUEUED_KBYTES, apply_extra_options, client_config};
use crate::config::{Config, Partitions, Settings, StartFrom};
use crate::health::Health;
use crate::metrics::Metrics;
use kres_kafka_guest::journal::Journal;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often stored offsets are committed to the group (for lag tools; the journal is what a
/// restart reads).
pub const COMMIT_EVERY: Duration = Duration::from_secs(5);

/// How long a stop waits for the broker: the last commit and closing the client. Nothing a
/// stop must do needs the broker (the journal holds the positions; the group's offsets are
/// for lag tools only), so a broker that does not answer at once is not waited for: with the
/// status topic's flush ([`crate::status::FLUSH_AT_STOP`]) a stop takes under a second,
/// whatever the broker does. A broker that answers commits in milliseconds.
pub const STOP_WAIT: Duration = Duration::from_millis(400);

/// How long one metadata, watermark or committed-offset request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How often librdkafka reports on its connections (its statistics), from which `/ready`
/// learns whether any broker is connected.
const STATISTICS_EVERY: Duration = Duration::from_secs(2);

/// The consumer's client context: librdkafka's logs, the results of commits, and (for the
/// daemon's consumer) whether a broker is connected.
#[derive(Clone)]
pub struct ReaderContext {
    log: LogContext,
    metrics: Metrics,
    health: Option<Health>,
}

impl ClientContext for ReaderContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics
            .broker_error("consumer", super::error_kind(&error));
        self.log.error(error, reason);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(health) = &self.health {
            health.broker(broker_down(statistics));
        }
    }
}

/// Why no broker is connected, from librdkafka's statistics (`None`: one is, or they cannot be
/// read). Only the connections' states are read: a broker that refuses logins or is gone goes
/// from `UP` to `AUTH...`, `DOWN` or `CONNECT` and back.
fn broker_down(statistics: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Statistics {
        brokers: BTreeMap<String, Broker>,
    }
    #[derive(serde::Deserialize)]
    struct Broker {
        state: String,
        source: String,
    }
    let brokers = serde_json::from_slice::<Statistics>(statistics)
        .ok()?
        .brokers;
    let ours = || {
        brokers
            .iter()
            .filter(|(_, b)| b.source == "learned" || b.source == "configured")
    };
    if ours().any(|(_, b)| b.state == "UP") {
        return None;
    }
    let states: Vec<String> = ours()
        .map(|(name, b)| format!("{name} {}", b.state))
        .collect();
    Some(format!(
        "no broker connected ({})",
        if states.is_empty() {
            "none known".to_owned()
        } else {
            states.join(", ")
        }
    ))
}

impl ReaderContext {
    /// A context counting the consumer's errors in `metrics`.
    pub fn new(metrics: Metrics) -> ReaderContext {
        ReaderContext {
            log: LogContext::default(),
            metrics,
            health: None,
        }
    }

    /// An error the consumer's queue gave instead of a message (librdkafka hands a consumer's
    /// errors over that way, not to [`ClientContext::error`]): counted, logged once in a while.
    pub fn failed(&self, error: &KafkaError) {
        self.metrics
            .broker_error("consumer", super::error_kind(error));
        let text = format!("Kafka: {error}");
        if self.log.first_in_a_while(&text) {
            tracing::warn!(target: "librdkafka", "{text} (retrying)");
        } else {
            tracing::debug!(target: "librdkafka", "{text} (retrying)");
        }
    }
}

impl ConsumerContext for ReaderContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::trace!(offsets = ?offsets.to_topic_map(), "offsets committed"),
            // Nothing stored since the last commit.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                self.metrics.commit_failed();
                let text = format!("committing offsets to the group: {e}");
                if self.log.first_in_a_while(&text) {
                    tracing::warn!("{text} (the journal holds the positions; retrying)");
                } else {
                    tracing::debug!("{text}");
                }
            }
        }
    }
}

/// The consumer's librdkafka client.
pub type Consumer = StreamConsumer<ReaderContext>;

/// The consumer's options: the client's, the offsets', then the operator's.
pub fn consumer_config(kafka: &Settings, client_id: &str) -> ClientConfig {
    let mut client = client_config(kafka, client_id);
    client
        // Only for committing offsets: no group is joined (`assign`, never `subscribe`).
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // What librdkafka prefetches (64 MiB by default): bounded so that memory stays flat,
        // still a batch ahead of the guest.
        .set("queued.max.messages.kbytes", QUEUED_KBYTES.to_string())
        // When that queue is full, librdkafka waits this long before fetching again (1 s by
        // default): a resolver that is behind then drains the queue in a fraction of that and
        // idles for the rest. Checking every 10 ms costs a wake-up, and memory stays bounded
        // by the queue.
        .set("fetch.queue.backoff.ms", "10")
        .set(
            "auto.offset.reset",
            match kafka.start_from {
                StartFrom::Earliest => "earliest",
                StartFrom::Latest => "latest",
            },
        );
    apply_extra_options(&mut client, kafka);
    client
}

/// What a start found, before any partition is assigned: whether the state topic must be read
/// first.
#[derive(Debug)]
pub struct Start {
    /// The topic's partition count.
    count: i32,
    /// The guest's journal (`topic/partition` to the last offset done).
    journal: BTreeMap<String, i64>,
    /// The journal holds no position on this topic: a new resolver, or one rebuilt.
    pub empty: bool,
    /// Messages the journal's positions needed that the broker no longer holds.
    pub lost: Vec<Lost>,
}

/// Offsets `from..=to` of a partition, gone from the broker before they were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "offsets {}..{} of partition {} are gone from the broker",
            self.from, self.to, self.partition
        )
    }
}

/// A partition kept after a growth that no longer maps to this resolver's keys: read up to
/// `until` (the high watermark when it stopped being addressed), then dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Draining {
    until: i64,
}

/// The consumer and the partitions it reads.
pub struct Reader {
    consumer: Consumer,
    topic: String,
    mode: Partitions,
    /// Where a partition with neither journal nor group offset starts.
    start_from: StartFrom,
    /// This resolver's keys: its zone-id, if any, and its hostname.
    keys: Vec<Vec<u8>>,
    /// The topic's partition count when last read.
    count: i32,
    /// Assigned partitions; those in `draining` go once read up to their bound.
    assigned: BTreeSet<i32>,
    draining: BTreeMap<i32, Draining>,
    /// The offset of the last message done on each partition.
    done: Mutex<BTreeMap<i32, i64>>,
    /// Whether an offset was stored since the last commit.
    stored: AtomicBool,
}

impl Reader {
    /// Create the consumer. Nothing is asked of the broker yet (see [`Reader::connect`]), so
    /// that what must watch the client's credentials can be given it first.
    /// Whether a broker is connected goes to `health` (`/ready`).
    pub fn new(config: &Config, metrics: Metrics, health: Health) -> anyhow::Result<Reader> {
        let kafka = &config.kafka;
        let client_id = format!("kres-kafka-{}", config.hostname);
        let mut options = consumer_config(kafka, &client_id);
        // The operator's own interval, if set, is kept (only `/ready` follows it then).
        if options.get("statistics.interval.ms").is_none() {
            options.set(
                "statistics.interval.ms",
                STATISTICS_EVERY.as_millis().to_string(),
            );
        }
        let context = ReaderContext {
            health: Some(health),
            ..ReaderContext::new(metrics)
        };
        let consumer: Consumer = options.create_with_context(context)?;
        let mut keys = Vec::new();
        if let Some(zone) = &kafka.zone_id {
            keys.push(zone.as_bytes().to_vec());
        }
        keys.push(config.hostname.as_bytes().to_vec());
        Ok(Reader {
            consumer,
            topic: kafka.topic.clone(),
            mode: kafka.partitions,
            start_from: kafka.start_from,
            keys,
            count: 0,
            assigned: BTreeSet::new(),
            draining: BTreeMap::new(),
            done: Mutex::default(),
            stored: AtomicBool::new(false),
        })
    }

    /// Wait for the broker to describe the topic (logging why while it cannot), then assign
    /// the partitions, each from where the journal in `files_dir` says. `meanwhile` is called
    /// between two tries, with the consumer (a new password may be given it there). False when
    /// `shutdown` came first.
    pub async fn connect(
        &mut self,
        files_dir: &std::path::Path,
        shutdown: &CancellationToken,
        meanwhile: impl FnMut(&Consumer),
    ) -> anyhow::Result<Option<Start>> {
        let Some(count) = self.wait_for_partition_count(shutdown, meanwhile).await else {
            return Ok(None);
        };
        let journal = Journal::read(files_dir)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .applied;
        let known = self.known(&journal);
        let mut lost = Vec::new();
        for (partition, offset) in &known {
            let Ok((low, _)) = tokio::task::block_in_place(|| {
                self.consumer
                    .fetch_watermarks(&self.topic, *partition, REQUEST_TIMEOUT)
            }) else {
                continue;
            };
            if low > offset + 1 {
                lost.push(Lost {
                    partition: *partition,
                    from: offset + 1,
                    to: low - 1,
                });
            }
        }
        Ok(Some(Start {
            count,
            journal,
            empty: known.is_empty(),
            lost,
        }))
    }

    /// The offset after which each partition of the stream ends now: where a resolver that
    /// reads the state from now on reads the stream from.
    pub fn stream_ends(&self, start: &Start) -> anyhow::Result<BTreeMap<i32, i64>> {
        let mut ends = BTreeMap::new();
        for p in self.addressed(start.count) {
            ends.insert(p, self.high_watermark(p)?);
        }
        Ok(ends)
    }

    /// Assign the partitions, each from where the journal and the group say; with `floor`
    /// (the stream's ends before the state was read), never before it. With no position in
    /// the journal, the group's offsets (an earlier incarnation's) are ignored: `start-from`.
    pub fn assign(
        &mut self,
        start: &Start,
        floor: Option<&BTreeMap<i32, i64>>,
    ) -> anyhow::Result<()> {
        // Past offsets the broker deleted (reported by the start): reading on from the journal,
        // librdkafka would move there itself, and the check for gaps would take it for one.
        let past_lost: BTreeMap<i32, i64> = start
            .lost
            .iter()
            .map(|lost| (lost.partition, lost.to + 1))
            .collect();
        self.assign_initial(start.count, &start.journal, floor, &past_lost)
    }

    /// A gap the broker made in what this daemon reads: the first message of `batch` on a
    /// partition whose offset is past the next one expected there (the last done plus one, or
    /// the message before it in the batch), when the broker no longer holds that next one (its
    /// first offset is beyond it). The broker deleted messages before they were read (the
    /// daemon fell behind the topic's retention while it ran, during a long pause say), and
    /// librdkafka moved on to the first it holds. A gap the broker still covers (a
    /// transaction's marker, a compacted topic) is none. Asks the broker only when a partition
    /// skips offsets and librdkafka does not know its first offset.
    pub fn gap<'p>(&self, batch: impl IntoIterator<Item = &'p Position>) -> Option<Lost> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for position in batch {
            let expected = match next.get(&position.partition) {
                Some(n) => Some(*n),
                None => self.done(position.partition).map(|o| o + 1),
            };
            next.insert(position.partition, position.offset + 1);
            let Some(expected) = expected else { continue };
            if position.offset <= expected {
                continue;
            }
            let low = super::cached_watermarks(&self.consumer, &self.topic, position.partition)
                .and_then(|(low, _)| low)
                .or_else(|| {
                    tokio::task::block_in_place(|| {
                        self.consumer.fetch_watermarks(
                            &self.topic,
                            position.partition,
                            REQUEST_TIMEOUT,
                        )
                    })
                    .ok()
                    .map(|(low, _)| low)
                });
            if let Some(low) = low
                && low > expected
            {
                return Some(Lost {
                    partition: position.partition,
                    from: expected,
                    to: low.min(position.offset) - 1,
                });
            }
        }
        None
    }

    /// The journal's position on each partition of this topic.
    fn known(&self, journal: &BTreeMap<String, i64>) -> BTreeMap<i32, i64> {
        journal
            .iter()
            .filter_map(|(at, offset)| {
                let (topic, partition) = at.rsplit_once('/')?;
                (topic == self.topic)
                    .then(|| partition.parse().ok().map(|p| (p, *offset)))
                    .flatten()
            })
            .collect()
    }

    /// The librdkafka consumer.
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// The partitions this resolver's keys map to among `count`, or all of them.
    fn addressed(&self, count: i32) -> BTreeSet<i32> {
        match self.mode {
            Partitions::All => (0..count).collect(),
            Partitions::Addressed => {
                super::partitioner::partitions_of(self.keys.iter().map(Vec::as_slice), count)
            }
        }
    }

    /// The topic's partition count, asked until the broker answers or `shutdown`; `meanwhile`
    /// between two tries.
    async fn wait_for_partition_count(
        &self,
        shutdown: &CancellationToken,
        mut meanwhile: impl FnMut(&Consumer),
    ) -> Option<i32> {
        loop {
            match self.partition_count() {
                Ok(count) => return Some(count),
                Err(why) => {
                    let text = format!("waiting for the topic: {why}");
                    if self.consumer.context().log.first_in_a_while(&text) {
                        tracing::warn!(topic = %self.topic, "{text}");
                    } else {
                        tracing::debug!(topic = %self.topic, "{text}");
                    }
                }
            }
            // Nothing is assigned yet: the queue gives only errors (a login refused, say).
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                Err(e) = self.consumer.recv() => self.consumer.context().failed(&e),
            }
            meanwhile(&self.consumer);
        }
    }

    /// The topic's partition count, from the broker's metadata.
    fn partition_count(&self) -> Result<i32, String> {
        let metadata = tokio::task::block_in_place(|| {
            self.consumer
                .fetch_metadata(Some(&self.topic), REQUEST_TIMEOUT)
        })
        .map_err(|e| format!("the broker did not describe it: {e}"))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .ok_or_else(|| "the broker did not describe it".to_owned())?;
        if let Some(error) = topic.error() {
            return Err(format!("{}", RDKafkaErrorCode::from(error)));
        }
        match topic.partitions().len() {
            0 => Err("it has no partitions".to_owned()),
            n => Ok(n as i32),
        }
    }

    /// The high watermark of `partition` (the offset of the next message published).
    fn high_watermark(&self, partition: i32) -> Result<i64, KafkaError> {
        tokio::task::block_in_place(|| {
            self.consumer
                .fetch_watermarks(&self.topic, partition, REQUEST_TIMEOUT)
        })
        .map(|(_, high)| high)
    }

    /// The group's committed offsets of `partitions`; none when the broker does not say.
    fn committed(&self, partitions: &BTreeSet<i32>) -> BTreeMap<i32, i64> {
        let mut list = TopicPartitionList::new();
        for p in partitions {
            list.add_partition(&self.topic, *p);
        }
        let answer =
            tokio::task::block_in_place(|| self.consumer.committed_offsets(list, REQUEST_TIMEOUT));
        match answer {
            Ok(list) => list
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if e.error().is_ok() => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::debug!("the group's committed offsets: {e} (starting from the journal)");
                BTreeMap::new()
            }
        }
    }

    /// Assign the partitions of a topic of `count`, each from where `journal` (the guest's
    /// `applied` map) and the group say.
    fn assign_initial(
        &mut self,
        count: i32,
        journal: &BTreeMap<String, i64>,
        floor: Option<&BTreeMap<i32, i64>>,
        past_lost: &BTreeMap<i32, i64>,
    ) -> anyhow::Result<()> {
        let mut wanted = self.addressed(count);
        let known = self.known(journal);
        // A partition this resolver read before but no longer maps to (the topic grew, or
        // `partitions` changed): read until what is in it now is read.
        for (partition, offset) in &known {
            if wanted.contains(partition) || *partition >= count {
                continue;
            }
            match self.high_watermark(*partition) {
                Ok(high) if high > offset + 1 => {
                    self.draining.insert(*partition, Draining { until: high });
                    wanted.insert(*partition);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    partition,
                    "cannot tell whether a partition read before holds more: {e} (not reading it)"
                ),
            }
        }
        // With no position in the journal (a new or rebuilt resolver), the group's offsets are
        // an earlier incarnation's at best: the messages they passed are not in this files
        // directory.
        let fresh = known.is_empty() || floor.is_some();
        let committed = if fresh {
            BTreeMap::new()
        } else {
            self.committed(&wanted)
        };
        // Where a partition with no position starts: the group's offset (librdkafka reads it,
        // `start-from` without one), or `start-from` itself for a fresh resolver.
        let unknown = match (fresh, self.start_from) {
            (false, _) => Offset::Stored,
            (true, StartFrom::Earliest) => Offset::Beginning,
            (true, StartFrom::Latest) => Offset::End,
        };
        let mut list = TopicPartitionList::new();
        let mut starts = Vec::new();
        for p in &wanted {
            let from_journal = known.get(p).map(|o| o + 1);
            let start = from_journal
                .max(committed.get(p).copied())
                .max(floor.and_then(|f| f.get(p).copied()))
                .max(past_lost.get(p).copied());
            let offset = start.map_or(unknown, Offset::Offset);
            if let Some(start) = start {
                self.set_done(*p, start - 1);
            }
            list.add_partition_offset(&self.topic, *p, offset)?;
            starts.push(match start {
                Some(o) => format!("{p}@{o}"),
                None => format!("{p}@start-from"),
            });
        }
        self.consumer.assign(&list)?;
        self.count = count;
        self.assigned = wanted;
        tracing::info!(
            topic = %self.topic, partitions = count, mode = self.mode.name(),
            reading = %starts.join(" "), "partitions assigned"
        );
        Ok(())
    }

    /// Read the partition count again; on growth, take the partitions now addressed and keep
    /// those no longer addressed until they are read. Drops the drained ones.
    pub async fn refresh(&mut self) {
        match self.partition_count() {
            Ok(count) if count > self.count => self.grow(count),
            Ok(count) if count < self.count => tracing::warn!(
                topic = %self.topic, was = self.count, now = count,
                "the topic has fewer partitions than before: was it deleted and created again? (the journal then needs removing, see docs/operator-guide.md, \"Crashes and full disks\")"
            ),
            Ok(_) => {}
            Err(why) => tracing::debug!(topic = %self.topic, "metadata refresh: {why}"),
        }
        self.drop_drained();
    }

    fn grow(&mut self, count: i32) {
        let wanted = self.addressed(count);
        let mut added = TopicPartitionList::new();
        for p in wanted.difference(&self.assigned) {
            // New, or newly addressed: everything in it may be for us.
            let start = self
                .done(*p)
                .map_or(Offset::Beginning, |o| Offset::Offset(o + 1));
            if let Err(e) = added.add_partition_offset(&self.topic, *p, start) {
                tracing::warn!(partition = p, "{e}");
            }
        }
        for p in self
            .assigned
            .difference(&wanted)
            .copied()
            .collect::<Vec<_>>()
        {
            if self.draining.contains_key(&p) {
                continue;
            }
            match self.high_watermark(p) {
                Ok(until) => {
                    self.draining.insert(p, Draining { until });
                }
                // Kept for good rather than risk missing what is on it.
                Err(e) => tracing::warn!(
                    partition = p,
                    "keeping a partition no longer addressed: {e}"
                ),
            }
        }
        if added.count() > 0 {
            if let Err(e) = self.consumer.incremental_assign(&added) {
                tracing::error!("assigning the new partitions: {e} (retrying at the next refresh)");
                return;
            }
            self.assigned
                .extend(added.elements().iter().map(|e| e.partition()));
        }
        tracing::info!(
            topic = %self.topic, was = self.count, now = count,
            added = ?added.elements().iter().map(|e| e.partition()).collect::<Vec<_>>(),
            draining = ?self.draining.keys().collect::<Vec<_>>(),
            "the topic grew"
        );
        self.count = count;
    }

    /// Stop reading the partitions no longer addressed whose messages up to their bound are
    /// done.
    fn drop_drained(&mut self) {
        let drained: Vec<i32> = self
            .draining
            .iter()
            .filter(|(p, d)| self.done(**p).is_some_and(|o| o + 1 >= d.until) || d.until == 0)
            .map(|(p, _)| *p)
            .collect();
        if drained.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for p in &drained {
            list.add_partition(&self.topic, *p);
        }
        if let Err(e) = self.consumer.incremental_unassign(&list) {
            tracing::warn!("releasing partitions no longer addressed: {e}");
            return;
        }
        for p in &drained {
            self.draining.remove(p);
            self.assigned.remove(p);
        }
        tracing::info!(partitions = ?drained, "read what was left on partitions no longer addressed: released");
    }

    /// Mark `position` done: its offset is committed with the next commit.
    pub fn store(&self, position: &Position) -> Result<(), KafkaError> {
        self.set_done(position.partition, position.offset);
        self.stored.store(true, Ordering::Relaxed);
        self.consumer
            .store_offset(&position.topic, position.partition, position.offset)
    }

    /// Commit the offsets stored since the last commit, without waiting for the broker; the
    /// result is logged (and counted) when it comes.
    pub fn commit(&self) {
        if !self.stored.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
            tracing::debug!("committing offsets: {e}");
        }
    }

    /// The offset of the last message done on `partition`, if any.
    fn done(&self, partition: i32) -> Option<i64> {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .copied()
    }

    fn set_done(&self, partition: i32, offset: i64) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let last = done.entry(partition).or_insert(offset);
        *last = (*last).max(offset);
    }

    /// The lag of each partition read: the high watermark librdkafka last saw in a fetch
    /// response minus the next offset to finish (the last done plus one; for a partition with
    /// none done yet, where the consumer is, else where `start-from` puts it). Asks the broker
    /// nothing, so it is cheap enough for every commit tick; a partition whose watermark
    /// librdkafka has not seen yet has no lag to tell.
    pub fn lag(&self) -> BTreeMap<i32, i64> {
        let positions: BTreeMap<i32, i64> = self
            .consumer
            .position()
            .map(|list| {
                list.elements()
                    .iter()
                    .filter_map(|e| match e.offset() {
                        Offset::Offset(o) => Some((e.partition(), o)),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.assigned
            .iter()
            .filter_map(|p| {
                let (low, high) = super::cached_watermarks(&self.consumer, &self.topic, *p)?;
                let next = self
                    .done(*p)
                    .map(|o| o + 1)
                    .or_else(|| positions.get(p).copied())
                    .or(match self.start_from {
                        StartFrom::Earliest => low,
                        StartFrom::Latest => Some(high),
                    })?;
                Some((*p, (high - next).max(0)))
            })
            .collect()
    }

    /// The partitions read, for the log and tests.
    pub fn assigned(&self) -> &BTreeSet<i32> {
        &self.assigned
    }

    /// Commit what is stored and close the client, giving the broker [`STOP_WAIT`]: past it,
    /// the stop goes on without it (the journal holds the positions) and the log says what was
    /// given up.
    pub async fn stop(self) {
        let started = std::time::Instant::now();
        let (done, waited) = tokio::sync::oneshot::channel();
        // A thread of its own, not the runtime's blocking pool: a runtime waits for those.
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                // Whatever is stored and not acknowledged yet, a failed periodic commit's
                // offsets included; `NoOffset` when there is nothing.
                let commit = self.consumer.commit_consumer_state(CommitMode::Sync);
                // Dropping the client is librdkafka's close.
                drop(self);
                let _ = done.send(commit);
            });
        if let Err(e) = spawned {
            tracing::warn!("closing the Kafka consumer: {e}");
            return;
        }
        match tokio::time::timeout(STOP_WAIT, waited).await {
            Ok(Ok(Ok(()))) => {
                tracing::info!(took = ?started.elapsed(), "offsets committed, consumer closed")
            }
            Ok(Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)))) => {
                tracing::info!(took = ?started.elapsed(), "nothing left to commit, consumer closed")
            }
            Ok(Ok(Err(e))) => tracing::warn!(
                took = ?started.elapsed(),
                "committing offsets at stop: {e} (the journal holds the positions: nothing is lost)"
            ),
            Ok(Err(_)) => {
                tracing::warn!("closing the Kafka consumer: the closing thread ended early")
            }
            Err(_) => tracing::warn!(
                waited = ?STOP_WAIT,
                "the broker did not answer: gave up committing offsets and closing the connection (the journal holds the positions: nothing is lost)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::broker_down;

    #[test]
    fn a_broker_is_connected_while_one_of_ours_is_up() {
        // Trimmed from librdkafka's statistics: a bootstrap entry, the broker learned from
        // metadata, and the internal one (never a connection to a broker).
        let up = br#"{"name":"c#consumer-1","brokers":{
            "127.0.0.1:9092/bootstrap":{"name":"127.0.0.1:9092/bootstrap","nodeid":-1,"source":"configured","state":"INIT"},
            "127.0.0.1:9092/1":{"name":"127.0.0.1:9092/1","nodeid":1,"source":"learned","state":"UP"},
            "GroupCoordinator":{"name":"GroupCoordinator","nodeid":-1,"source":"logical","state":"UP"}}}"#;
        assert_eq!(broker_down(up), None);
        let gone = br#"{"brokers":{
            "127.0.0.1:9092/1":{"source":"learned","state":"CONNECT"},
            ":0/internal":{"source":"internal","state":"UP"},
            "GroupCoordinator":{"source":"logical","state":"UP"}}}"#;
        assert_eq!(
            broker_down(gone).as_deref(),
            Some("no broker connected (127.0.0.1:9092/1 CONNECT)")
        );
        assert_eq!(
            broker_down(br#"{"brokers":{}}"#).as_deref(),
            Some("no broker connected (none known)")
        );
        assert_eq!(broker_down(b"not json"), None, "unreadable: no verdict");
    }
}
