//! What crosses the sandbox boundary, in the host's own types, and the one vocabulary for what
//! happened to a message. The sandbox produces an [`Outcome`] once per message; logs, metrics,
//! `apply`'s JSON and the manager request are all derived from it, so a new outcome is one
//! new variant here and the compiler names every place that must handle it.
//!
//! This module depends on nothing else in the crate.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// One Kafka message handed to the guest. The default is an empty message injected by hand
/// (no Kafka position: never recorded in the journal, never skipped as replayed).
#[derive(Debug, Clone)]
pub struct Message {
    pub key: Option<Vec<u8>>,
    /// Headers as the broker gave them: name and raw value.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Shared: the batch, its retries and the guest's payload hold the same bytes.
    pub value: std::sync::Arc<[u8]>,
    /// Where it came from, for logs (`-1` when injected by hand).
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            key: None,
            headers: Vec::new(),
            value: std::sync::Arc::from(&[][..]),
            topic: String::new(),
            partition: -1,
            offset: -1,
        }
    }
}

impl Message {
    /// The first value of header `name`, as text (lossy), for logs and reports.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// Limits the guest enforces on every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_chunks: u32,
}

impl Limits {
    /// Largest file accepted by default: 1 GiB. Above the largest public RPZ feeds (a few
    /// hundred MB), and a bound on the disk one transfer can take.
    pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024 * 1024;

    /// Largest `total-chunks` accepted by default: 4096, twice what the default maximum file
    /// size needs at the publisher's 512 KiB chunks. Bounds the files one transfer can create.
    pub const DEFAULT_MAX_CHUNKS: u32 = 4096;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: Self::DEFAULT_MAX_FILE_SIZE,
            max_chunks: Self::DEFAULT_MAX_CHUNKS,
        }
    }
}

/// What the guest needs to know about the resolver it works for.
#[derive(Debug, Clone)]
pub struct Context {
    pub hostname: String,
    /// Messages keyed with this zone-id are for this resolver too.
    pub zone_id: Option<String>,
    pub limits: Limits,
    /// Seconds since the Unix epoch, from the host's clock.
    pub now: u64,
    /// The publishers' keys trusted, and whether a signature is required.
    pub trust: Trust,
}

/// The publishers' Ed25519 public keys this resolver trusts (see `kafka.trusted-keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    pub keys: Vec<[u8; 32]>,
    pub require_signature: bool,
}

/// What the resolver's manager must be asked to do after a commit. `None` is the absence of a
/// call: there is no other encoding of "nothing to do".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    #[default]
    None,
    Renew,
    Reload,
}

/// What one message led to. Every variant is final for that message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not for this resolver.
    Skipped { why: SkipReason, reason: String },
    /// A chunk was stored.
    Stored {
        file: String,
        index: u32,
        total: u32,
        received: u32,
    },
    /// A file was committed.
    Committed {
        file: String,
        action: Action,
        size: u64,
        sha256: String,
        /// A configuration whose parsed content changed: the manager's running configuration
        /// must change when it reloads.
        config_changed: bool,
    },
    /// Identical content was already in place (or a removal found no file).
    Unchanged { file: String },
    /// A file was withdrawn (`send --remove`); its version is its `.backup`.
    Removed { file: String, action: Action },
    /// The guest refused the message.
    Rejected(Rejection),
    /// The call into the guest did not return (time limit, memory cap, trap).
    Failed(GuestFailure),
}

impl Outcome {
    /// Whether the message reached a durable end, so that its offset may be stored. A failure
    /// to write the files directory (the guest's `io` error) or to start the guest over it is
    /// not one: the message must be offered again.
    pub fn is_durable(&self) -> bool {
        !matches!(
            self,
            Outcome::Rejected(Rejection {
                kind: RejectKind::Io,
                ..
            }) | Outcome::Failed(GuestFailure::Start(_))
        )
    }

    /// Every [`Outcome::name`], so that a counter by outcome can start at zero.
    pub const NAMES: [&'static str; 7] = [
        "skipped",
        "stored",
        "committed",
        "unchanged",
        "removed",
        "rejected",
        "failed",
    ];

    /// The outcome's name in logs, metrics and JSON: `skipped`, `stored`, `committed`,
    /// `unchanged`, `removed`, `rejected` or `failed`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Skipped { .. } => "skipped",
            Outcome::Stored { .. } => "stored",
            Outcome::Committed { .. } => "committed",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::Removed { .. } => "removed",
            Outcome::Rejected(_) => "rejected",
            Outcome::Failed(_) => "failed",
        }
    }

    /// The file concerned, when the guest named one.
    pub fn file(&self) -> Option<&str> {
        match self {
            Outcome::Stored { file, .. }
            | Outcome::Committed { file, .. }
            | Outcome::Removed { file, .. }
            | Outcome::Unchanged { file } => Some(file),
            _ => None,
        }
    }

    /// What the manager must be asked for.
    pub fn action(&self) -> Action {
        match self {
            Outcome::Committed { action, .. } | Outcome::Removed { action, .. } => *action,
            _ => Action::None,
        }
    }

    /// For a rejection or failure: its kind (`bad-header`, `time-limit`, ...).
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Outcome::Rejected(r) => Some(r.kind.as_str()),
            Outcome::Failed(f) => Some(f.kind()),
            _ => None,
        }
    }

    /// Why a message was skipped, rejected or failed.
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Skipped { reason, .. } => Some(reason.clone()),
            Outcome::Rejected(r) => Some(r.reason.clone()),
            Outcome::Failed(f) => Some(f.to_string()),
            _ => None,
        }
    }

    /// Log one `message processed` event: skipped and stored chunks at debug, commits at
    /// info, rejections and guest failures at error.
    pub fn log(&self, partition: i32, offset: i64) {
        let outcome = self.name();
        match self {
            Outcome::Skipped { why, reason } => {
                tracing::debug!(partition, offset, outcome, why = why.as_str(), %reason, "message processed")
            }
            Outcome::Stored {
                file,
                index,
                total,
                received,
            } => {
                tracing::debug!(partition, offset, outcome, %file, index, total, received, "message processed")
            }
            Outcome::Unchanged { file } => {
                tracing::info!(partition, offset, outcome, %file, "message processed")
            }
            Outcome::Removed { file, action } => {
                tracing::info!(partition, offset, outcome, %file, ?action, "message processed")
            }
            Outcome::Committed {
                file,
                action,
                size,
                sha256,
                ..
            } => {
                tracing::info!(partition, offset, outcome, %file, size, %sha256, ?action, "message processed")
            }
            Outcome::Rejected(Rejection { kind, reason }) => {
                tracing::error!(partition, offset, outcome, kind = %kind.as_str(), %reason, "message processed")
            }
            Outcome::Failed(failure) => {
                tracing::error!(partition, offset, outcome, kind = %failure.kind(), %failure, "message processed")
            }
        }
    }
}

/// Why a message is not for this resolver (the WIT `skip-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    NoRecipient,
    OtherHost,
    OtherZone,
    /// Done before: redelivered by Kafka after a restart.
    Replayed,
}

impl SkipReason {
    /// Every reason, so that a counter by reason can start at zero.
    pub const ALL: [SkipReason; 4] = [
        SkipReason::NoRecipient,
        SkipReason::OtherHost,
        SkipReason::OtherZone,
        SkipReason::Replayed,
    ];

    /// As in logs and metrics: `no-recipient`, `other-host`, `other-zone`.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NoRecipient => "no-recipient",
            SkipReason::OtherHost => "other-host",
            SkipReason::OtherZone => "other-zone",
            SkipReason::Replayed => "replayed",
        }
    }
}

/// Why the guest rejected a message, by kind (the WIT `process-error` cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectKind {
    BadHeader,
    BadName,
    InvalidConfig,
    ChecksumMismatch,
    InvalidZone,
    TooLarge,
    Io,
    Unsigned,
    UnknownKey,
    BadSignature,
    WrongRecipient,
    Stale,
}

impl RejectKind {
    /// Every kind, so that a counter by kind can start at zero.
    pub const ALL: [RejectKind; 12] = [
        RejectKind::BadHeader,
        RejectKind::BadName,
        RejectKind::InvalidConfig,
        RejectKind::ChecksumMismatch,
        RejectKind::InvalidZone,
        RejectKind::TooLarge,
        RejectKind::Io,
        RejectKind::Unsigned,
        RejectKind::UnknownKey,
        RejectKind::BadSignature,
        RejectKind::WrongRecipient,
        RejectKind::Stale,
    ];

    /// The kind as in logs, JSON and metrics: `bad-header`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::BadHeader => "bad-header",
            RejectKind::BadName => "bad-name",
            RejectKind::InvalidConfig => "invalid-config",
            RejectKind::ChecksumMismatch => "checksum-mismatch",
            RejectKind::InvalidZone => "invalid-zone",
            RejectKind::TooLarge => "too-large",
            RejectKind::Io => "io",
            RejectKind::Unsigned => "unsigned",
            RejectKind::UnknownKey => "unknown-key",
            RejectKind::BadSignature => "bad-signature",
            RejectKind::WrongRecipient => "wrong-recipient",
            RejectKind::Stale => "stale",
        }
    }
}

/// A message the guest refused, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub kind: RejectKind,
    pub reason: String,
}

/// A call into the guest that did not return: the message it carried fails, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestFailure {
    #[error("the guest exceeded its time limit of {0:?}")]
    TimeLimit(Duration),
    #[error("the guest exceeded its memory cap of {cap} bytes (it asked for {requested})")]
    MemoryCap { cap: u64, requested: u64 },
    #[error("the guest trapped: {0}")]
    Trap(String),
    #[error("the guest could not be started: {0}")]
    Start(String),
}

impl GuestFailure {
    /// Every [`GuestFailure::kind`], so that a counter by kind can start at zero.
    pub const KINDS: [&'static str; 4] = ["time-limit", "memory-cap", "trap", "start"];

    /// The kind as in JSON and metrics: `time-limit`, `memory-cap`, `trap`, `start`.
    pub fn kind(&self) -> &'static str {
        match self {
            GuestFailure::TimeLimit(_) => "time-limit",
            GuestFailure::MemoryCap { .. } => "memory-cap",
            GuestFailure::Trap(_) => "trap",
            GuestFailure::Start(_) => "start",
        }
    }
}

/// What restoring one configuration file did (the WIT `restored`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    FromBackup,
    Removed,
    Absent,
}

/// What a maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub temporaries_removed: u32,
    pub chunk_sets_expired: u32,
    pub chunk_sets_kept: u32,
}

/// Why a call other than `process` (maintenance, a check, a restore) did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The guest answered with an error.
    #[error("{0}")]
    Refused(Rejection),
    #[error("{0}")]
    Failed(GuestFailure),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manager_call_comes_only_from_a_commit() {
        let committed = Outcome::Committed {
            file: "config.yaml".into(),
            action: Action::Reload,
            size: 3,
            sha256: "ab".into(),
            config_changed: true,
        };
        assert_eq!(committed.action(), Action::Reload);
        assert_eq!(committed.file(), Some("config.yaml"));
        let unchanged = Outcome::Unchanged {
            file: "config.yaml".into(),
        };
        assert_eq!(unchanged.action(), Action::None);
        let failed = Outcome::Failed(GuestFailure::Trap("x".into()));
        assert_eq!((failed.name(), failed.kind()), ("failed", Some("trap")));
    }

    /// The lists that counters start from at zero name every variant: a new variant fails
    /// to compile here until it is placed in its list.
    #[test]
    fn every_label_of_a_counter_is_listed() {
        let outcome = |o: &Outcome| match o {
            Outcome::Skipped { .. } => 0,
            Outcome::Stored { .. } => 1,
            Outcome::Committed { .. } => 2,
            Outcome::Unchanged { .. } => 3,
            Outcome::Removed { .. } => 4,
            Outcome::Rejected(_) => 5,
            Outcome::Failed(_) => 6,
        };
        let unchanged = Outcome::Unchanged { file: "f".into() };
        assert_eq!(Outcome::NAMES[outcome(&unchanged)], unchanged.name());
        let skip = |r: SkipReason| match r {
            SkipReason::NoRecipient => 0,
            SkipReason::OtherHost => 1,
            SkipReason::OtherZone => 2,
            SkipReason::Replayed => 3,
        };
        for (i, r) in SkipReason::ALL.iter().enumerate() {
            assert_eq!(skip(*r), i);
        }
        let reject = |k: RejectKind| match k {
            RejectKind::BadHeader
            | RejectKind::BadName
            | RejectKind::InvalidConfig
            | RejectKind::ChecksumMismatch
            | RejectKind::InvalidZone
            | RejectKind::TooLarge
            | RejectKind::Io
            | RejectKind::Unsigned
            | RejectKind::UnknownKey
            | RejectKind::BadSignature
            | RejectKind::WrongRecipient
            | RejectKind::Stale => RejectKind::ALL.contains(&k),
        };
        assert!(RejectKind::ALL.into_iter().all(reject));
        let distinct: std::collections::BTreeSet<_> =
            RejectKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(distinct.len(), RejectKind::ALL.len());
        for failure in [
            GuestFailure::TimeLimit(Duration::ZERO),
            GuestFailure::MemoryCap {
                cap: 0,
                requested: 0,
            },
            GuestFailure::Trap(String::new()),
            GuestFailure::Start(String::new()),
        ] {
            assert!(GuestFailure::KINDS.contains(&failure.kind()), "{failure}");
        }
    }
}
