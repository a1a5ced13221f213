//! The guest's error type. Every variant maps onto one case of the WIT `process-error`, so the
//! host can count rejections by kind; every message names the header, file or value at fault.

use std::io;

/// Why a message was rejected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A header is missing, repeated or malformed.
    #[error("{0}")]
    BadHeader(String),
    /// `file-name` is not a safe relative name.
    #[error("{0}")]
    BadName(String),
    /// A configuration file does not parse or is not a mapping.
    #[error("{0}")]
    InvalidConfig(String),
    /// The assembled content does not match the `sha256` header.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// An RPZ file the resolver's zone loader would refuse.
    #[error("{0}")]
    InvalidZone(String),
    /// A limit was exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// A signature is required and the message has none.
    #[error("{0}")]
    Unsigned(String),
    /// The message is signed by a key that is not trusted.
    #[error("{0}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("{0}")]
    BadSignature(String),
    /// The signature names another recipient.
    #[error("{0}")]
    WrongRecipient(String),
    /// The signed transfer is not newer than the version in place.
    #[error("{0}")]
    Stale(String),
    /// Not an error of the message: the batch must end before it (see
    /// [`crate::batch::Batch::restart_set`]). Never leaves the guest.
    #[error("the batch ends before this message")]
    Cut,
    /// The files directory could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The kind, as the WIT `process-error` case is named.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::BadHeader(_) => "bad-header",
            Error::BadName(_) => "bad-name",
            Error::InvalidConfig(_) => "invalid-config",
            Error::ChecksumMismatch(_) => "checksum-mismatch",
            Error::InvalidZone(_) => "invalid-zone",
            Error::TooLarge(_) => "too-large",
            Error::Unsigned(_) => "unsigned",
            Error::UnknownKey(_) => "unknown-key",
            Error::BadSignature(_) => "bad-signature",
            Error::WrongRecipient(_) => "wrong-recipient",
            Error::Stale(_) => "stale",
            Error::Cut | Error::Io { .. } => "io",
        }
    }
}

impl Error {
    /// The rejection `kind` (as [`Error::kind`] names it) with `reason`, once more.
    pub fn again(kind: &str, reason: String) -> Error {
        match kind {
            "bad-name" => Error::BadName(reason),
            "invalid-config" => Error::InvalidConfig(reason),
            "checksum-mismatch" => Error::ChecksumMismatch(reason),
            "invalid-zone" => Error::InvalidZone(reason),
            "too-large" => Error::TooLarge(reason),
            "unsigned" => Error::Unsigned(reason),
            "unknown-key" => Error::UnknownKey(reason),
            "bad-signature" => Error::BadSignature(reason),
            "wrong-recipient" => Error::WrongRecipient(reason),
            "stale" => Error::Stale(reason),
            _ => Error::BadHeader(reason),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach what was being done to an I/O error.
pub trait IoContext<T> {
    fn io(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn io(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}
