//! The kres-kafka guest: what to do with each Kafka message, run by the host inside a
//! WebAssembly sandbox whose only view of the world is the files directory.
//!
//! # Layout
//!
//! - `headers`: strict parsing of the wire format's headers (pure).
//! - `name`: the rules a `file-name` must follow (pure).
//! - `config`: parsing and validation of configuration files (pure).
//! - `store`: the files directory: chunk sets, streaming assembly, atomic commit (`std::fs`).
//! - `process`: one message from headers to outcome, built from the modules above.
//! - `durable`: whole-or-absent file writes, directory fsync, hex (`std::fs`; the host uses it too).
//! - `error`: the error type, one variant per WIT `process-error` case.
//!
//! Everything but this file compiles natively and is unit-tested with `cargo test`; this file
//! only binds the logic to the WIT world `kres:kafka/consumer`.

pub mod config;
pub mod durable;
pub mod error;
pub mod headers;
pub mod name;
pub mod process;
pub mod store;

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
use bindings::kres::kafka::types::{Context, MaintenanceReport, Message, Outcome, ProcessError};
use error::Error;
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

    fn process(ctx: Context, msg: Message) -> Result<Outcome, ProcessError> {
        process::process(&Files::new(ROOT), &ctx, &msg).map_err(Into::into)
    }

    fn maintain(ctx: Context, max_age_seconds: u64) -> Result<MaintenanceReport, ProcessError> {
        let done = Files::new(ROOT).maintain(ctx.now, max_age_seconds)?;
        Ok(MaintenanceReport {
            temporaries_removed: done.temporaries_removed,
            chunk_sets_expired: done.chunk_sets_expired,
            chunk_sets_kept: done.chunk_sets_kept,
        })
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
            Error::TooLarge(_) => ProcessError::TooLarge(reason),
            Error::Io { .. } => ProcessError::Io(reason),
        }
    }
}

/// Log through the host. Natively (unit tests) there is no host: the line is dropped.
pub(crate) fn log_info(message: String) {
    log(Level::Info, message);
}

fn log(level: Level, message: String) {
    #[cfg(target_arch = "wasm32")]
    bindings::kres::kafka::log::emit(level, &message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}
