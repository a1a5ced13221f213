//! The kres-kafka guest: what to do with each Kafka message, run by the host inside a
//! WebAssembly sandbox whose only view of the world is the files directory.
//!
//! # Layout
//!
//! - `headers`: strict parsing of the wire format's headers (pure).
//! - `name`: the rules a `file-name` must follow (pure).
//! - `config`: configuration files parsed and checked against the resolver's closed JSON Schema,
//!   as its manager does (pure).
//! - `store`: the files directory: what is in place, staging, backups, maintenance; chunk sets
//!   appended in order and hashed as they come (`std::fs`).
//! - `batch`: a batch of messages committed as a group: one flush, one journal write.
//! - `digest`: SHA-256 that can be stored with a transfer and resumed (the host compresses).
//! - `judge`: a configuration judged in layers (schema, the resolver's validator); whether a
//!   commit changes what the manager runs.
//! - `signature`: signed transfers: the signed text, verification, freshness (pure).
//! - `journal`: the offset applied per partition, recorded with what it applied: replay is a
//!   no-op.
//! - `process`: one message from headers to outcome, built from the modules above.
//! - `durable`: whole-or-absent file writes, directory fsync, hex (`std::fs`; the host uses it too).
//! - `error`: the error type, one variant per WIT `process-error` case.
//! - `state`: the keys of the state topic, where a starting resolver finds the current files
//!   (pure).
//! - `zone`: RPZ zone files judged as the resolver's policy-loader would load them (pure,
//!   streaming).
//!
//! Everything but this file compiles natively and is unit-tested with `cargo test`; this file
//! only binds the logic to the WIT world `kres:kafka/consumer`.

pub mod batch;
pub mod config;
pub mod digest;
pub mod durable;
pub mod error;
pub mod headers;
pub mod journal;
pub mod judge;
pub mod name;
pub mod process;
pub mod signature;
pub mod state;
pub mod store;
pub mod zone;

/// Bindings generated from `wit/`, the contract shared with the host.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "consumer",
        pub_export_macro: true,
    });
}

use bindings::exports::kres::kafka::processor::Guest;
use bindings::kres::kafka::log::Level;
use bindings::kres::kafka::types::{
    Context, MaintenanceReport, Message, Outcome, ProcessError, Restored,
};
use error::Error;
use judge::{Resolver, Validation};
use store::Files;

/// The files directory as the guest sees it: the host preopens it as `/`.
const ROOT: &str = "/";

/// The version reported to the host, logged at load and at every swap.
pub const VERSION: &str = concat!("kres-kafka-guest ", env!("CARGO_PKG_VERSION"));

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Component;

impl Guest for Component {
    fn version() -> String {
        VERSION.to_owned()
    }

    fn process(ctx: Context, msgs: Vec<Message>) -> Vec<Result<Outcome, ProcessError>> {
        let msgs: Vec<process::Msg<'_>> = msgs
            .iter()
            .map(|m| process::Msg {
                key: m.key.as_deref(),
                headers: m
                    .headers
                    .iter()
                    .map(|h| (h.name.as_str(), h.value.as_slice()))
                    .collect(),
                value: &m.value,
                topic: &m.topic,
                partition: m.partition,
                offset: m.offset,
            })
            .collect();
        process::process(&Files::new(ROOT), &Host, &Host, &ctx, &msgs)
            .into_iter()
            .map(|r| r.map_err(Into::into))
            .collect()
    }

    fn maintain(ctx: Context, max_age_seconds: u64) -> Result<MaintenanceReport, ProcessError> {
        let files = Files::new(ROOT);
        // Files a batch killed before its journal entry was putting in place.
        let renamed = batch::recover(&files, &Host)?;
        if renamed > 0 {
            log_info(format!(
                "put {renamed} file(s) in place that a batch stopped short of renaming"
            ));
        }
        // Sets a transfer left when a crash came between its journal entry and their removal.
        for name in journal::Journal::read(files.root())?.cleanup {
            store::chunks::discard(&files, &name)?;
        }
        let done = files.maintain(ctx.now, max_age_seconds)?;
        Ok(MaintenanceReport {
            temporaries_removed: done.temporaries_removed,
            chunk_sets_expired: done.chunk_sets_expired,
            chunk_sets_kept: done.chunk_sets_kept,
        })
    }

    fn check_config(_ctx: Context, name: String, content: Vec<u8>) -> Result<(), ProcessError> {
        let name = name::check(&name)?;
        if judge::is_zone(name) {
            return Ok(judge::judge_zone(name, &content)?);
        }
        process::check_config_size(name, content.len() as u64)?;
        judge::judge(&Host, name, &content)?;
        Ok(())
    }

    fn skip_before(positions: Vec<(String, i64)>) -> Result<(), ProcessError> {
        let files = Files::new(ROOT);
        let positions: Vec<journal::Position> = positions
            .into_iter()
            .map(|(partition, offset)| journal::Position { partition, offset })
            .collect();
        journal::Journal::read(files.root())?.skip_before(files.root(), &positions)?;
        Ok(())
    }

    fn restore(_ctx: Context, files: Vec<String>) -> Vec<Result<Restored, ProcessError>> {
        let store = Files::new(ROOT);
        files
            .iter()
            .map(|file| {
                let name = name::check(file)?;
                let done = store.restore(name)?;
                log_info(format!("restored {name:?}: {done:?}"));
                Ok(match done {
                    store::Restored::FromBackup => Restored::FromBackup,
                    store::Restored::Removed => Restored::Removed,
                    store::Restored::Absent => Restored::Absent,
                })
            })
            .collect()
    }
}

/// The host, as the resolver's schema and validator, and as the platform.
struct Host;

impl process::Value for bindings::kres::kafka::types::Payload {
    fn size(&self) -> u64 {
        bindings::kres::kafka::types::Payload::size(self)
    }

    fn read(&self) -> Vec<u8> {
        bindings::kres::kafka::types::Payload::read(self)
    }

    /// The host writes and hashes its own copy: the value never enters the guest.
    fn write_to(
        &self,
        _files: &Files,
        rel: &str,
        offset: u64,
        hashed: &mut digest::Sha256State,
        _compress: digest::Compress<'_>,
    ) -> std::io::Result<()> {
        use bindings::kres::kafka::digest::Sha256State as Wit;
        let (words, length, tail) = hashed.parts();
        let state = Wit {
            words: words.to_vec(),
            length,
            tail: tail.to_vec(),
        };
        let next = bindings::kres::kafka::types::Payload::write_to(self, rel, offset, &state)
            .map_err(std::io::Error::other)?;
        let words = <[u32; 8]>::try_from(next.words.as_slice()).ok();
        *hashed = words
            .and_then(|w| digest::Sha256State::from_parts(w, next.length, next.tail))
            .ok_or_else(|| std::io::Error::other("the host returned a malformed SHA-256 state"))?;
        Ok(())
    }
}

impl batch::Platform for Host {
    #[cfg(target_arch = "wasm32")]
    fn compress(&self, state: &mut [u32; 8], blocks: &[u8]) {
        let next = bindings::kres::kafka::digest::sha256_blocks(state, blocks);
        state.copy_from_slice(&next);
    }

    #[cfg(target_arch = "wasm32")]
    fn sync(&self) -> Result<(), String> {
        bindings::kres::kafka::files::sync()
    }

    /// The host judges natively, with this crate's own `zone` module: several times faster
    /// than under WebAssembly, and on a thread of its own while the chunks are written.
    #[cfg(target_arch = "wasm32")]
    fn judge_zone(&self, rel: &str, sha256: &[u8; 32]) -> Option<Result<(), judge::HostRefusal>> {
        use bindings::kres::kafka::files::{ZoneRefusal, judge_zone};
        Some(judge_zone(rel, sha256).map_err(|e| match e {
            ZoneRefusal::Refused(why) => judge::HostRefusal::Refused(why),
            ZoneRefusal::Unreadable(why) => judge::HostRefusal::Unreadable(why),
        }))
    }

    #[cfg(target_arch = "wasm32")]
    fn judge_as_written(&self, rel: &str) {
        bindings::kres::kafka::files::judge_as_written(rel);
    }

    /// Three times faster than under WebAssembly; the guest still decides which key and what
    /// text, and what a failure means.
    #[cfg(target_arch = "wasm32")]
    fn verify_ed25519(&self, key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        bindings::kres::kafka::signatures::verify_ed25519(key, message, signature)
    }

    // Natively there is no host: `sha2`, and no flush (unit tests crash nothing).
    #[cfg(not(target_arch = "wasm32"))]
    fn compress(&self, state: &mut [u32; 8], blocks: &[u8]) {
        batch::Unsynced.compress(state, blocks);
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn sync(&self) -> Result<(), String> {
        Ok(())
    }
}

impl Resolver for Host {
    /// Asked of the host once per instance (one batch): its answer is the same throughout.
    #[cfg(target_arch = "wasm32")]
    fn schema(&self) -> Option<std::sync::Arc<[u8]>> {
        static SCHEMA: std::sync::OnceLock<Option<std::sync::Arc<[u8]>>> =
            std::sync::OnceLock::new();
        SCHEMA
            .get_or_init(|| bindings::kres::kafka::resolver::schema().map(Into::into))
            .clone()
    }

    #[cfg(target_arch = "wasm32")]
    fn owe(&self, call: bindings::kres::kafka::types::Action) -> Result<(), String> {
        bindings::kres::kafka::resolver::owe(call)
    }

    #[cfg(target_arch = "wasm32")]
    fn validate(&self, name: &str, content: &[u8]) -> Result<(), Validation> {
        use bindings::kres::kafka::resolver::ValidateError;
        bindings::kres::kafka::resolver::validate(name, content).map_err(|e| match e {
            ValidateError::Refused(why) => Validation::Refused(why),
            ValidateError::Unavailable(why) => Validation::Unavailable(why),
        })
    }

    // Natively there is no host (the import symbols do not link): the embedded schema.
    #[cfg(not(target_arch = "wasm32"))]
    fn schema(&self) -> Option<std::sync::Arc<[u8]>> {
        None
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn validate(&self, _: &str, _: &[u8]) -> Result<(), Validation> {
        Ok(())
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn owe(&self, _: bindings::kres::kafka::types::Action) -> Result<(), String> {
        Ok(())
    }
}

// Natively the crate is only a library for tests: the export symbols (`kres:kafka/...`) are
// not valid native linker names.
#[cfg(target_arch = "wasm32")]
bindings::export!(Component with_types_in bindings);

impl From<Error> for ProcessError {
    fn from(e: Error) -> Self {
        let reason = e.to_string();
        match e {
            Error::BadHeader(_) => ProcessError::BadHeader(reason),
            Error::BadName(_) => ProcessError::BadName(reason),
            Error::InvalidConfig(_) => ProcessError::InvalidConfig(reason),
            Error::ChecksumMismatch(_) => ProcessError::ChecksumMismatch(reason),
            Error::InvalidZone(_) => ProcessError::InvalidZone(reason),
            Error::TooLarge(_) => ProcessError::TooLarge(reason),
            Error::Unsigned(_) => ProcessError::Unsigned(reason),
            Error::UnknownKey(_) => ProcessError::UnknownKey(reason),
            Error::BadSignature(_) => ProcessError::BadSignature(reason),
            Error::WrongRecipient(_) => ProcessError::WrongRecipient(reason),
            Error::Stale(_) => ProcessError::Stale(reason),
            Error::Io { .. } | Error::Cut => ProcessError::Io(reason),
        }
    }
}

/// Log through the host. Natively (unit tests) there is no host: the line is dropped.
pub(crate) fn log_info(message: String) {
    log(Level::Info, message);
}

/// Log a warning through the host.
pub(crate) fn log_warn(message: String) {
    log(Level::Warn, message);
}

fn log(level: Level, message: String) {
    #[cfg(target_arch = "wasm32")]
    bindings::kres::kafka::log::emit(level, &message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}
