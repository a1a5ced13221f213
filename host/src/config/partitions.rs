//! Which partitions of the topic are read (`partitions`), and how often their number is read
//! again (`metadata-refresh`), so that partitions added to the topic are read too.

use super::ConfigError;
use serde::Deserialize;
use std::time::Duration;

/// Which partitions of the topic to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Partitions {
    /// Every partition: works with every publisher, whatever it keys its messages by.
    #[default]
    All,
    /// Only those a message for this resolver can be on: the ones its zone-id and hostname
    /// keys map to under Kafka's default partitioner (murmur2), as `send` and upstream's newest
    /// publisher place them.
    Addressed,
}

impl Partitions {
    pub fn name(self) -> &'static str {
        match self {
            Partitions::All => "all",
            Partitions::Addressed => "addressed",
        }
    }
}

/// How often the topic's partition count is read again: 30 s. A producer notices new
/// partitions at its own metadata refresh (5 minutes by default), so this is rarely the later.
pub const DEFAULT_METADATA_REFRESH: Duration = Duration::from_secs(30);

/// Refuse a `metadata-refresh` under a second.
pub fn check_metadata_refresh(refresh: Duration) -> Result<(), ConfigError> {
    if refresh < Duration::from_secs(1) {
        return Err(ConfigError::Invalid(
            "kafka.metadata-refresh must be at least 1s".into(),
        ));
    }
    Ok(())
}
