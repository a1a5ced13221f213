//! The host's own view of what crosses the sandbox boundary: messages in, outcomes out. The
//! sandbox converts to and from the WIT bindings, so that no other module depends on wasmtime.

use serde::{Deserialize, Serialize};

/// One Kafka message handed to the guest.
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub key: Option<Vec<u8>>,
    /// Headers as the broker gave them: name and raw value.
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Vec<u8>,
    /// Where it came from, for logs (`-1` when injected by hand).
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Limits the guest enforces on every message. Defaults and reasons live with the
/// configuration that sets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_chunks: u32,
}

/// What the guest needs to know about the resolver it works for.
#[derive(Debug, Clone)]
pub struct Context {
    pub hostname: String,
    pub limits: Limits,
    /// Seconds since the Unix epoch, from the host's clock.
    pub now: u64,
}

/// What the resolver's manager must be asked to do after a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    None,
    Renew,
    Reload,
}

/// What one message led to: each is a durable end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not for this resolver.
    Skipped { reason: String },
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
    },
    /// Identical content was already in place.
    Unchanged { file: String },
}

/// Why the guest rejected a message, by kind (the WIT `process-error` cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RejectKind {
    BadHeader,
    BadName,
    InvalidConfig,
    ChecksumMismatch,
    TooLarge,
    Io,
}

impl RejectKind {
    /// The kind as in logs, JSON and metrics: `bad-header`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::BadHeader => "bad-header",
            RejectKind::BadName => "bad-name",
            RejectKind::InvalidConfig => "invalid-config",
            RejectKind::ChecksumMismatch => "checksum-mismatch",
            RejectKind::TooLarge => "too-large",
            RejectKind::Io => "io",
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

/// What a maintenance pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub temporaries_removed: u32,
    pub chunk_sets_expired: u32,
    pub chunk_sets_kept: u32,
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
