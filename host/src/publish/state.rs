//! The state topic, as a publisher writes it.
//!
//! The stream is a log of changes; a resolver that starts with nothing reads the state topic
//! first, so that it holds the last version of every file addressed to it however long ago it
//! was published (keys: `kres_kafka_guest::state`). This is what `send` writes there, and what
//! any other publisher must write for its files to reach a starting resolver:
//!
//! - **The topic**: `kafka.state-topic` (default `<topic>-state`), with
//!   `cleanup.policy=compact`. Not `compact,delete`: with `delete` the broker drops a file's
//!   last version once it is older than `retention.ms`. Any partition count; `send` gives a
//!   topic it creates the stream topic's count and the brokers' default replication. `send`
//!   creates the topic when it is missing, refuses to send when its `cleanup.policy` does not
//!   include `compact`, and warns and goes on when the brokers cannot say (librdkafka's mock
//!   cluster, for one, serves neither CreateTopics nor DescribeConfigs).
//! - **Keys**: `host:<hostname>/<file-name>#<chunk-index>` for a file sent to one resolver,
//!   `zone:<zone-id>/<file-name>#<chunk-index>` for a zone; `%` and `/` in the hostname or
//!   zone-id written `%25` and `%2F`; chunk index 0 records a removal.
//! - **Partition**: chosen explicitly, never by the record's key: Kafka's default partitioner
//!   (murmur2, sign bit cleared, modulo the state topic's partition count) applied to the
//!   recipient's *stream* key (the hostname, or the zone-id). All of a recipient's state is in
//!   one partition, so a resolver reads one partition, not the fleet's state.
//! - **A version** of a file with N chunks, for recipient R, in this order:
//!   1. N records, keys `R/<file-name>#1` .. `#N`, each with the chunk as value and exactly
//!      the headers of the same chunk on the stream (`file-name`, `total-chunks`,
//!      `chunk-index`, `sha256`, `transfer-id`, `hostname` for a resolver, `signed-at` and
//!      `signature` when signed: the same signature), plus `zone-id: <zone-id>` for a zone,
//!      since there the record's key is not the zone-id. All acknowledged before step 2.
//!   2. The stream's records, as without a state topic.
//!   3. A tombstone (the key, a null value, the same partition) for every key of (R, file)
//!      still live in the state that this version does not have: chunks above N of an earlier
//!      version, and the removal `#0`.
//! - **A removal** of file F for R (`send --remove F`):
//!   1. A tombstone for every live chunk key of (R, F).
//!   2. The removal: key `R/F#0`, an empty (not null) value, headers `file-name: F`,
//!      `remove: 1`, `transfer-id`, `hostname` or `zone-id` as above, and when signed
//!      `signed-at` and a `signature` over `kres_kafka_guest::signature::removal_text`.
//!   3. On the stream, one message keyed as the file's messages are, with the same headers
//!      (but no `zone-id`) and an empty value.
//! - **What is live**: R's partition of the state topic read from its start to its high
//!   watermark; the last record of each key wins; a null value is a tombstone.
//!
//! The state is written before the stream, so that whatever a resolver finds on the stream is
//! in the state already; the leftovers of an earlier version are deleted after, so that the
//! state never lacks a file while its new version is on the way.
//!
//! This module never writes to the stream, and never changes another recipient's keys: it
//! reads past them.

use super::{Failure, Publisher, wait};
use crate::config::Settings;
use crate::kafka::{self, LogContext, partitioner::partition_of};
use indicatif::ProgressBar;
use kres_kafka_guest::headers;
use kres_kafka_guest::state::{Key, REMOVAL_INDEX, Recipient};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The cleanup policy the state topic must have.
const COMPACT: &str = "compact";

/// The state topic, ready for one `send` to one recipient: where its records go, and which of
/// its keys are live.
#[derive(Debug)]
pub struct State {
    topic: String,
    partitions: i32,
    /// The partition that holds all of the recipient's state.
    partition: i32,
    recipient: Recipient,
    /// Per file, the indices whose last record is not a tombstone (0: a removal).
    live: BTreeMap<String, BTreeSet<u32>>,
    created: bool,
}

/// Why the state topic cannot be used; nothing is sent then.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the state topic {topic:?} has cleanup.policy={policy}: the broker would delete the \
         current version of files with old segments; set cleanup.policy=compact on it \
         (kafka-configs.sh --alter --entity-type topics --entity-name {topic} --add-config \
         cleanup.policy=compact), or name another topic in kafka.state-topic (null: none)"
    )]
    NotCompacted { topic: String, policy: String },
    #[error(
        "creating the state topic {topic:?}: {code}; create it with cleanup.policy=compact, or \
         set kafka.state-topic: null"
    )]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error(
        "{brokers} did not answer within {} (--timeout): finding the state topic {topic:?}{}",
        humantime::format_duration(*timeout),
        last.as_ref().map(|l| format!(" (last broker error: {l})")).unwrap_or_default()
    )]
    NoAnswer {
        /// `the broker a:9092`, `the brokers a:9092, b:9092`.
        brokers: String,
        topic: String,
        timeout: Duration,
        /// What librdkafka said last (a TLS handshake refused, a login refused), if anything.
        last: Option<String>,
    },
    #[error("{doing} the state topic {topic:?}: {error}")]
    Kafka {
        topic: String,
        doing: &'static str,
        /// librdkafka's error, as text.
        error: String,
    },
    #[error(
        "reading partition {partition} of the state topic {topic:?}: no progress for {} at \
         offset {at} of {end} (--timeout)", humantime::format_duration(*timeout)
    )]
    Stalled {
        topic: String,
        partition: i32,
        at: i64,
        end: i64,
        timeout: Duration,
    },
}

/// The state topic for `to`, ready: created if it is missing, refused if it does not compact,
/// and the recipient's part of it read to know which keys are live. `None`, with a warning,
/// when `kafka.state-topic` is null.
///
/// Cost: the whole partition that holds the recipient's state is read from its start, values
/// included (Kafka cannot fetch keys alone): the live state of the recipients that share it
/// (about 1/P of the fleet's, with P partitions), plus what the broker has not compacted yet.
/// Once per `send`, whatever the number of files.
pub async fn open(
    kafka: &Settings,
    to: &super::Recipient,
    timeout: Duration,
) -> Result<Option<State>, Error> {
    let Some(topic) = kafka.state_topic() else {
        tracing::warn!(
            "kafka.state-topic is null: nothing is kept for resolvers that start later; they \
             get only what the topic {:?} still holds",
            kafka.topic
        );
        return Ok(None);
    };
    let (kafka, recipient) = (kafka.clone(), to.in_state());
    let runtime = tokio::runtime::Handle::current();
    let task_topic = topic.clone();
    // librdkafka's metadata and fetch calls block: off the async threads.
    tokio::task::spawn_blocking(move || prepare(&runtime, &kafka, task_topic, recipient, timeout))
        .await
        .map_err(|e| Error::Kafka {
            topic,
            doing: "preparing",
            error: e.to_string(),
        })?
        .map(Some)
}

/// [`open`]'s steps, in order: find the topic (or create it), check it compacts, read the
/// recipient's partition.
fn prepare(
    runtime: &tokio::runtime::Handle,
    kafka: &Settings,
    topic: String,
    recipient: Recipient,
    timeout: Duration,
) -> Result<State, Error> {
    let failed = |doing| {
        let topic = topic.clone();
        move |e: KafkaError| Error::Kafka {
            topic,
            doing,
            error: e.to_string(),
        }
    };
    let brokers = super::brokers(
        &kafka
            .servers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    );
    let consumer = reader(kafka, false).map_err(failed("connecting to"))?;
    let mut admin = kafka::client_config(kafka, "kres-kafka-send");
    kafka::apply_extra_options(&mut admin, kafka);
    let admin: AdminClient<LogContext> = admin
        .create_with_context(LogContext::default())
        .map_err(failed("connecting to"))?;
    let count = |consumer: &BaseConsumer<LogContext>, topic: &str| {
        partition_count(consumer, topic, timeout, &brokers)
    };
    let found = count(&consumer, &topic)?;
    // Admin requests go to the controller; without one they would wait out their timeout.
    let admin = has_controller(&consumer, &topic, timeout).then_some(&admin);
    let (partitions, created) = match found {
        Some(count) => {
            runtime.block_on(check_compacted(admin, &topic, timeout))?;
            (count, false)
        }
        None => {
            let stream = count(&consumer, &kafka.topic)?.unwrap_or(-1);
            let created = runtime.block_on(create(admin, &topic, stream, timeout))?;
            if let Created::Raced = created {
                runtime.block_on(check_compacted(admin, &topic, timeout))?;
            }
            // Without CreateTopics, a metadata request that allows it makes the broker create
            // the topic, if it creates topics at all.
            let auto;
            let asking = match created {
                Created::Unsupported => {
                    auto = reader(kafka, true).map_err(failed("connecting to"))?;
                    &auto
                }
                Created::Yes | Created::Raced => &consumer,
            };
            (
                wait_for_topic(|| count(asking, &topic), &topic, timeout)?,
                matches!(created, Created::Yes),
            )
        }
    };
    let partition = partition_of(recipient.stream_key().as_bytes(), partitions);
    let live = read_live(&consumer, &topic, partition, &recipient, timeout)?;
    Ok(State {
        topic,
        partitions,
        partition,
        recipient,
        live,
        created,
    })
}

/// A consumer that joins no group: it assigns itself the partition it reads. With
/// `auto_create`, its metadata requests ask the broker to create a missing topic.
fn reader(kafka: &Settings, auto_create: bool) -> Result<BaseConsumer<LogContext>, KafkaError> {
    let mut config = kafka::client_config(kafka, "kres-kafka-send");
    kafka::apply_extra_options(&mut config, kafka);
    config
        // librdkafka wants a group id to assign partitions; this one is never joined, and
        // nothing is committed.
        .set("group.id", "kres-kafka-send-state")
        .set("group.protocol", "classic")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "allow.auto.create.topics",
            if auto_create { "true" } else { "false" },
        )
        .set("fetch.wait.max.ms", "100");
    config.create_with_context(LogContext::default())
}

/// Whether the brokers name a controller among themselves: admin requests (CreateTopics,
/// DescribeConfigs) go to it. librdkafka's mock cluster names broker 0 while its brokers are
/// numbered from 1; an admin request would wait for that controller until it times out.
fn has_controller(consumer: &BaseConsumer<LogContext>, topic: &str, timeout: Duration) -> bool {
    let Ok(metadata) = consumer.fetch_metadata(Some(topic), timeout) else {
        return false;
    };
    let wait = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the client's handle, valid while `consumer` lives; librdkafka's calls on a
    // handle are thread-safe, and this one only reads its cached metadata (waiting for it).
    let controller =
        unsafe { rdkafka::bindings::rd_kafka_controllerid(consumer.client().native_ptr(), wait) };
    metadata.brokers().iter().any(|b| b.id() == controller)
}

/// How many partitions `topic` has; `None` when the brokers (`brokers`, as errors name them)
/// do not know it.
fn partition_count(
    consumer: &BaseConsumer<LogContext>,
    topic: &str,
    timeout: Duration,
    brokers: &str,
) -> Result<Option<i32>, Error> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
        match e.rdkafka_error_code() {
            Some(
                RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown,
            ) => Error::NoAnswer {
                brokers: brokers.to_owned(),
                topic: topic.to_owned(),
                timeout,
                last: consumer.context().last_error(),
            },
            _ => Error::Kafka {
                topic: topic.to_owned(),
                doing: "finding",
                error: match consumer.context().last_error() {
                    Some(last) => format!("{e} (last broker error: {last})"),
                    None => e.to_string(),
                },
            },
        }
    })?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Poll the metadata until `topic` has partitions: a topic just created takes a moment to
/// have leaders.
fn wait_for_topic(
    count: impl Fn() -> Result<Option<i32>, Error>,
    topic: &str,
    timeout: Duration,
) -> Result<i32, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(count) = count()? {
            return Ok(count);
        }
        if Instant::now() >= deadline {
            return Err(Error::Kafka {
                topic: topic.to_owned(),
                doing: "waiting for",
                error: format!(
                    "it has no partitions {} after it was asked for (--timeout)",
                    humantime::format_duration(timeout)
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What [`create`] did.
#[derive(Debug, Clone, Copy)]
enum Created {
    Yes,
    /// Someone else created it meanwhile.
    Raced,
    /// The brokers do not serve CreateTopics.
    Unsupported,
}

/// Create `topic` compacted, with `partitions` partitions (-1: the brokers' default) and the
/// brokers' default replication; replication 1 where the brokers cannot default it (before
/// Kafka 2.4).
async fn create(
    admin: Option<&AdminClient<LogContext>>,
    topic: &str,
    partitions: i32,
    timeout: Duration,
) -> Result<Created, Error> {
    let unsupported = || {
        tracing::warn!(
            "the brokers cannot create topics (no CreateTopics, or no controller): the state \
             topic {topic:?} is left to their automatic topic creation, which does not compact \
             it; create it with cleanup.policy=compact"
        );
        Ok(Created::Unsupported)
    };
    let Some(admin) = admin else {
        return unsupported();
    };
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let mut code = RDKafkaErrorCode::NoError;
    for (partitions, replication) in [(partitions, -1), (partitions.max(1), 1)] {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication))
            .set("cleanup.policy", COMPACT);
        code = match admin.create_topics([&new], &options).await {
            Ok(results) => match results.into_iter().next() {
                Some(Err((_, code))) => code,
                _ => RDKafkaErrorCode::NoError,
            },
            Err(KafkaError::AdminOp(code)) => code,
            Err(e) => {
                return Err(Error::Kafka {
                    topic: topic.to_owned(),
                    doing: "creating",
                    error: e.to_string(),
                });
            }
        };
        // librdkafka says so, without asking, of a broker that lacks CreateTopics or its
        // defaults.
        if code != RDKafkaErrorCode::UnsupportedFeature {
            break;
        }
    }
    match code {
        RDKafkaErrorCode::NoError => {
            tracing::info!(topic, partitions, "created the state topic, compacted");
            Ok(Created::Yes)
        }
        RDKafkaErrorCode::TopicAlreadyExists => Ok(Created::Raced),
        RDKafkaErrorCode::UnsupportedFeature => unsupported(),
        code => Err(Error::Create {
            topic: topic.to_owned(),
            code,
        }),
    }
}

/// Check that `topic`'s `cleanup.policy` compacts: a refusal when it does not, a warning when
/// the brokers cannot tell.
async fn check_compacted(
    admin: Option<&AdminClient<LogContext>>,
    topic: &str,
    timeout: Duration,
) -> Result<(), Error> {
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let cannot = |why: String| {
        tracing::warn!(
            "cannot check that the state topic {topic:?} is compacted ({why}): sending all the \
             same; it must have cleanup.policy=compact"
        );
        Ok(())
    };
    let Some(admin) = admin else {
        return cannot("no controller to ask".into());
    };
    let resource = match admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
        .await
    {
        Ok(results) => match results.into_iter().next() {
            Some(Ok(resource)) => resource,
            Some(Err(code)) => return cannot(code.to_string()),
            None => return cannot("no answer for it".into()),
        },
        Err(e) => return cannot(e.to_string()),
    };
    // Kafka describes every setting, defaults included; a broker that names only those set
    // on the topic (nisshi) leaves it out when it is the broker's default, which is `delete`
    // unless the broker says otherwise: refused, as `delete` would be.
    let Some(policy) = resource.get("cleanup.policy").and_then(|e| e.value.clone()) else {
        return Err(Error::NotCompacted {
            topic: topic.to_owned(),
            policy: "(not set: the broker's default, delete unless it says otherwise)".into(),
        });
    };
    let policies: Vec<&str> = policy.split(',').map(str::trim).collect();
    if !policies.contains(&COMPACT) {
        return Err(Error::NotCompacted {
            topic: topic.to_owned(),
            policy,
        });
    }
    if policies.contains(&"delete") {
        tracing::warn!(
            "the state topic {topic:?} has cleanup.policy={policy}: files published longer ago \
             than its retention.ms are deleted from it; cleanup.policy=compact keeps them"
        );
    }
    Ok(())
}

/// The keys of `recipient` live in `partition` of `topic`: the partition read from its start
/// to its high watermark, the last record of each key winning, a null value a tombstone. The
/// values are fetched (Kafka sends whole records) and dropped.
fn read_live(
    consumer: &BaseConsumer<LogContext>,
    topic: &str,
    partition: i32,
    recipient: &Recipient,
    timeout: Duration,
) -> Result<BTreeMap<String, BTreeSet<u32>>, Error> {
    let failed = |doing| {
        move |e: KafkaError| Error::Kafka {
            topic: topic.to_owned(),
            doing,
            error: e.to_string(),
        }
    };
    let mut live: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    // A topic the broker has just created may not know its partitions for a moment.
    let deadline = Instant::now() + timeout;
    let (low, end) = loop {
        match consumer.fetch_watermarks(topic, partition, timeout) {
            Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownPartition))
                if Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            result => break result.map_err(failed("finding the end of"))?,
        }
    };
    if end <= low {
        return Ok(live);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(failed("reading"))?;
    consumer.assign(&list).map_err(failed("reading"))?;
    let mut at = low;
    let mut moved = Instant::now();
    // Offsets have gaps (compaction, transaction markers): the position, not a count, says
    // when the end is reached.
    while at < end {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(record)) => {
                at = record.offset() + 1;
                moved = Instant::now();
                let Some(key) = record.key().and_then(Key::parse) else {
                    continue;
                };
                if key.recipient != *recipient {
                    continue;
                }
                let indices = live.entry(key.file).or_default();
                if record.payload().is_some() {
                    indices.insert(key.index);
                } else {
                    indices.remove(&key.index);
                }
            }
            Some(Err(e)) => return Err(failed("reading")(e)),
            None => {
                if let Ok(position) = consumer.position()
                    && let Some(Offset::Offset(next)) = position
                        .find_partition(topic, partition)
                        .map(|p| p.offset())
                {
                    at = at.max(next);
                }
                if at < end && moved.elapsed() > timeout {
                    return Err(Error::Stalled {
                        topic: topic.to_owned(),
                        partition,
                        at,
                        end,
                        timeout,
                    });
                }
            }
        }
    }
    let _ = consumer.unassign();
    live.retain(|_, indices| !indices.is_empty());
    Ok(live)
}

impl State {
    /// The topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// How many partitions the topic has.
    pub fn partitions(&self) -> i32 {
        self.partitions
    }

    /// The partition that holds all of the recipient's state.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Whether [`open`] created the topic.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The live indices of `file` for the recipient (0: its removal), as read and since
    /// written.
    pub fn live(&self, file: &str) -> Vec<u32> {
        self.live
            .get(file)
            .map(|i| i.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The key of chunk `index` of `file` for the recipient.
    pub(super) fn key(&self, file: &str, index: u32) -> String {
        Key {
            recipient: self.recipient.clone(),
            file: file.to_owned(),
            index,
        }
        .encode()
    }

    /// A record for `key`, in the recipient's partition, with the stream's `headers` and, for a
    /// zone, `zone-id`; its value still to be given.
    pub(super) fn record<'a>(
        &'a self,
        key: &'a str,
        headers: OwnedHeaders,
    ) -> FutureRecord<'a, str, [u8]> {
        let headers = match &self.recipient {
            Recipient::Zone(zone) => headers.insert(Header {
                key: headers::ZONE_ID,
                value: Some(zone),
            }),
            Recipient::Host(_) => headers,
        };
        FutureRecord::to(&self.topic)
            .key(key)
            .partition(self.partition)
            .headers(headers)
    }

    /// A version of `file` with `total` chunks is on the stream: delete from the state what
    /// it leaves behind (chunks above `total`, a removal).
    pub(super) async fn replaced(
        &mut self,
        publisher: &Publisher,
        file: &str,
        total: u32,
    ) -> Result<(), Failure> {
        let stale: Vec<u32> = self
            .live(file)
            .into_iter()
            .filter(|&index| index == REMOVAL_INDEX || index > total)
            .collect();
        self.tombstones(publisher, file, &stale).await?;
        self.live.insert(file.to_owned(), (1..=total).collect());
        Ok(())
    }

    /// Withdraw `file`: delete its chunks, then record its removal with `headers` (those of
    /// the stream's removal message). A removal already live is simply written again.
    pub(super) async fn removed(
        &mut self,
        publisher: &Publisher,
        file: &str,
        headers: OwnedHeaders,
    ) -> Result<(), Failure> {
        let chunks: Vec<u32> = self
            .live(file)
            .into_iter()
            .filter(|&index| index != REMOVAL_INDEX)
            .collect();
        self.tombstones(publisher, file, &chunks).await?;
        let key = self.key(file, REMOVAL_INDEX);
        // Empty, not null: a null value would be a tombstone.
        let record = self.record(&key, headers).payload(&[]);
        let delivery = publisher.producer.send_result(record).map_err(|(e, _)| {
            Failure::Other(format!(
                "queueing the removal in the state topic {:?}: {e}",
                self.topic
            ))
        })?;
        let what = format!("the removal in the state topic {:?}", self.topic);
        wait(publisher, Some((what, 0, delivery)), &ProgressBar::hidden()).await?;
        self.live
            .insert(file.to_owned(), BTreeSet::from([REMOVAL_INDEX]));
        Ok(())
    }

    /// Delete chunks `indices` of `file` (0: its removal) from the state: a tombstone each,
    /// every one acknowledged when this returns.
    async fn tombstones(
        &mut self,
        publisher: &Publisher,
        file: &str,
        indices: &[u32],
    ) -> Result<(), Failure> {
        let mut pending = Vec::with_capacity(indices.len());
        for &index in indices {
            let key = self.key(file, index);
            let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic)
                .key(key.as_str())
                .partition(self.partition);
            let delivery = publisher.producer.send_result(record).map_err(|(e, _)| {
                Failure::Other(format!("queueing the tombstone of {key}: {e}"))
            })?;
            let what = format!("the tombstone of {key} in the state topic {:?}", self.topic);
            pending.push((what, 0, delivery));
        }
        let hidden = ProgressBar::hidden();
        for next in pending {
            wait(publisher, Some(next), &hidden).await?;
        }
        if let Some(live) = self.live.get_mut(file) {
            live.retain(|index| !indices.contains(index));
        }
        Ok(())
    }
}
