//! Reading the status topic back: partitions assigned at chosen offsets, no consumer group
//! joined, nothing committed.

use super::Record;
use crate::config::Settings;
use crate::kafka::{self, LogContext};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

/// The status topic, read without a consumer group.
pub struct Reader {
    consumer: BaseConsumer<LogContext>,
    topic: String,
    /// How long a metadata or watermark request may take.
    timeout: Duration,
}

/// Why the status topic could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("kafka.status-topic is null: resolvers report nothing")]
    Off,
    #[error(
        "the status topic {topic:?} does not exist (yet): is kafka.status-topic the resolvers' own?"
    )]
    NoTopic { topic: String },
    #[error("reading the status topic {topic:?}: {error}{}", broker(last))]
    Kafka {
        topic: String,
        /// librdkafka's error, as text: the error type is large, and only shown.
        error: String,
        last: Option<String>,
    },
}

/// ` (last broker error: ...)`, when there was one.
fn broker(last: &Option<String>) -> String {
    last.as_ref()
        .map(|l| format!(" (last broker error: {l})"))
        .unwrap_or_default()
}

/// How long a metadata or watermark request may take before the reader gives up, unless
/// [`Reader::within`] says otherwise; and how long reading the topic's history may stay quiet
/// before it ends.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Reader {
    /// A reader of `kafka`'s status topic, with its brokers and TLS settings.
    pub fn new(kafka: &Settings) -> Result<Reader, ReadError> {
        let topic = kafka.status_topic().ok_or(ReadError::Off)?;
        let mut client = kafka::client_config(kafka, "kres-kafka-status");
        kafka::apply_extra_options(&mut client, kafka);
        client
            // librdkafka wants a group id to assign partitions, but this one is never joined:
            // partitions are assigned at chosen offsets, nothing is committed.
            .set("group.id", "kres-kafka-status-reader")
            .set("group.protocol", "classic")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "100");
        let consumer = client
            .create_with_context(LogContext::default())
            .map_err(|error| ReadError::Kafka {
                topic: topic.clone(),
                error: error.to_string(),
                last: None,
            })?;
        Ok(Reader {
            consumer,
            topic,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// Give up on a metadata or watermark request after `timeout` (`send --timeout`).
    pub fn within(mut self, timeout: Duration) -> Reader {
        self.timeout = timeout;
        self
    }

    /// The status topic's name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn failed(&self, error: KafkaError) -> ReadError {
        ReadError::Kafka {
            topic: self.topic.clone(),
            error: error.to_string(),
            last: self.consumer.context().last_error(),
        }
    }

    /// Each partition of the topic with its low and high watermarks. Blocks.
    pub fn ends(&self) -> Result<Vec<(i32, i64, i64)>, ReadError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.topic), self.timeout)
            .map_err(|e| self.failed(e))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| ReadError::NoTopic {
                topic: self.topic.clone(),
            })?;
        topic
            .partitions()
            .iter()
            .map(|p| {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(&self.topic, p.id(), self.timeout)
                    .map_err(|e| self.failed(e))?;
                Ok((p.id(), low, high))
            })
            .collect()
    }

    /// New SASL credentials for the next connections (see
    /// [`crate::kafka::set_sasl_credentials`]).
    pub fn set_sasl_credentials(&self, username: &str, password: &str) -> Result<(), String> {
        kafka::set_sasl_credentials(self.consumer.client(), username, password)
    }

    /// Read from `offsets` (partition, offset) on.
    pub fn assign(&self, offsets: &[(i32, i64)]) -> Result<(), ReadError> {
        let mut list = TopicPartitionList::new();
        for (partition, offset) in offsets {
            list.add_partition_offset(&self.topic, *partition, Offset::Offset(*offset))
                .map_err(|e| self.failed(e))?;
        }
        self.consumer.assign(&list).map_err(|e| self.failed(e))
    }

    /// The next record within `timeout`: `Some((partition, offset, record))`, with `None` as
    /// the record for one that is not a status record. Blocks.
    /// An error librdkafka retries on its own (a broker down, a login refused) is logged once
    /// in a while and gives `None`.
    pub fn next(&self, timeout: Duration) -> Result<Option<(i32, i64, Option<Record>)>, ReadError> {
        match self.consumer.poll(timeout) {
            None => Ok(None),
            Some(Err(e @ KafkaError::MessageConsumption(_))) => {
                let text = format!("reading the status topic: {e}");
                if self.consumer.context().first_in_a_while(&text) {
                    tracing::warn!("{text} (retrying)");
                }
                Ok(None)
            }
            Some(Err(e)) => Err(self.failed(e)),
            Some(Ok(m)) => {
                let record = m.payload().and_then(|v| serde_json::from_slice(v).ok());
                Ok(Some((m.partition(), m.offset(), record)))
            }
        }
    }

    /// Every record from the beginning to the end as of now, latest per key, by key. Blocks.
    pub fn latest(&self) -> Result<std::collections::BTreeMap<String, Record>, ReadError> {
        self.history(&self.ends()?)
    }

    /// Every record before `ends` (from [`Reader::ends`]), latest per key, by key. Blocks.
    pub fn history(
        &self,
        ends: &[(i32, i64, i64)],
    ) -> Result<std::collections::BTreeMap<String, Record>, ReadError> {
        let mut left: std::collections::HashMap<i32, i64> = ends
            .iter()
            .filter(|(_, low, high)| high > low)
            .map(|(p, _, high)| (*p, *high))
            .collect();
        let starts: Vec<_> = ends
            .iter()
            .filter(|(p, _, _)| left.contains_key(p))
            .map(|(p, low, _)| (*p, *low))
            .collect();
        let mut latest = std::collections::BTreeMap::new();
        if starts.is_empty() {
            return Ok(latest);
        }
        self.assign(&starts)?;
        let mut deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        while !left.is_empty() {
            match self.next(Duration::from_millis(200))? {
                Some((partition, offset, record)) => {
                    deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
                    if let Some(record) = record {
                        latest.insert(record.key(), record);
                    }
                    if left.get(&partition).is_some_and(|high| offset + 1 >= *high) {
                        left.remove(&partition);
                    }
                }
                // Nothing for a while: a partition whose last records were compacted or
                // deleted meanwhile never reaches its old end; stop once it stays quiet.
                None if std::time::Instant::now() > deadline => break,
                None => {}
            }
        }
        Ok(latest)
    }
}
