//! The topic names: the topic files arrive on, and the status and state topics that follow it
//! unless named (or turned off with `null`). Three topics that could be confused are refused.

use super::ConfigError;

/// Upstream's default topic.
pub const DEFAULT_TOPIC: &str = "knot-resolver";

/// Appended to the topic for the default status topic: `knot-resolver-status`, so that the
/// topic's ACLs can grant both with one prefix.
pub const STATUS_TOPIC_SUFFIX: &str = "-status";

/// Appended to the topic for the default state topic: `knot-resolver-state`, the compacted
/// topic where a starting resolver finds the current version of every file addressed to it.
pub const STATE_TOPIC_SUFFIX: &str = "-state";

/// The status topic a section names, its default resolved.
pub fn status_topic_of(setting: &Option<Option<String>>, topic: &str) -> Option<String> {
    match setting {
        None => Some(format!("{topic}{STATUS_TOPIC_SUFFIX}")),
        Some(named) => named.clone(),
    }
}

/// The state topic a section names, its default resolved.
pub fn state_topic_of(setting: &Option<Option<String>>, topic: &str) -> Option<String> {
    match setting {
        None => Some(format!("{topic}{STATE_TOPIC_SUFFIX}")),
        Some(named) => named.clone(),
    }
}

/// Refuse an empty topic, a status or state topic that is empty or the topic itself, and a
/// state topic that is the status topic.
pub fn check(
    topic: &str,
    status_topic: &Option<Option<String>>,
    state_topic: &Option<Option<String>>,
) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    if topic.is_empty() {
        return invalid("kafka.topic must not be empty".into());
    }
    if matches!(status_topic, Some(Some(t)) if t.is_empty() || t == topic) {
        return invalid(
            "kafka.status-topic must be neither empty nor kafka.topic: use null to turn it off"
                .into(),
        );
    }
    if matches!(state_topic, Some(Some(t)) if t.is_empty() || t == topic) {
        return invalid(
            "kafka.state-topic must be neither empty nor kafka.topic: use null to turn it off"
                .into(),
        );
    }
    if let (Some(state), Some(status)) = (
        state_topic_of(state_topic, topic),
        status_topic_of(status_topic, topic),
    ) && state == status
    {
        return invalid(format!(
            "kafka.state-topic and kafka.status-topic are both {state:?}: they must differ"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{error, parse};

    #[test]
    fn the_status_topic_follows_the_topic_unless_named_or_turned_off() {
        let mut c = parse("hostname: r1\n").unwrap();
        assert_eq!(
            c.kafka.status_topic().as_deref(),
            Some("knot-resolver-status")
        );
        c.kafka.topic = "dns".into();
        assert_eq!(c.kafka.status_topic().as_deref(), Some("dns-status"));
        let named = parse("kafka:\n  status-topic: fleet\n").unwrap();
        assert_eq!(named.kafka.status_topic().as_deref(), Some("fleet"));
        let off = parse("kafka:\n  status-topic: null\n").unwrap();
        assert_eq!(off.kafka.status_topic(), None);
        for bad in ["''", "knot-resolver"] {
            let e = error(&format!("kafka:\n  status-topic: {bad}\n"));
            assert!(e.contains("kafka.status-topic"), "{e}");
        }
    }
}
