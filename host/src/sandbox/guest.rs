//! A loaded guest: its self-test at load, and the calls the host makes, each in a fresh
//! instance over the files directory under the memory cap and the time limit.

use super::bindings;
use super::convert;
use super::state::State;
use super::{EPOCH_TICK, NoResolver, Resolver, SandboxConfig};
use crate::outcome::{
    Context, GuestError, GuestFailure, Limits, Maintenance, Message, Outcome, Rejection, Restored,
};
use kres_kafka_guest::headers::FILE_NAME;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Engine, Store, Trap};

/// A guest that passed its checks, ready to process messages. Cheap to share behind an `Arc`:
/// every call gets its own store and instance.
pub struct Guest {
    engine: Engine,
    pre: bindings::ConsumerPre<State>,
    config: SandboxConfig,
    origin: String,
    version: String,
    digest: String,
    cached: bool,
}

/// Hostname used by the self-test: no resolver is called that (it is not a valid DNS name).
const SELF_TEST_HOSTNAME: &str = "kres-kafka self-test";

impl Guest {
    /// A guest made from `pre`, once it passed its self-test.
    pub(super) fn checked(
        engine: Engine,
        pre: bindings::ConsumerPre<State>,
        config: SandboxConfig,
        origin: &str,
        digest: String,
        cached: bool,
    ) -> Result<Guest, GuestFailure> {
        let mut guest = Guest {
            engine,
            pre,
            config,
            origin: origin.to_owned(),
            version: String::new(),
            digest,
            cached,
        };
        guest.version = guest.self_test()?;
        Ok(guest)
    }

    /// Hex SHA-256 of the guest's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether its compiled code came from the cache.
    pub fn cached(&self) -> bool {
        self.cached
    }

    /// Call each export once in a scratch directory of its own; return the version. A guest
    /// must report a version, skip a message that is not for its resolver, and maintain an
    /// empty directory.
    fn self_test(&self) -> Result<String, GuestFailure> {
        let scratch = tempfile::tempdir()
            .map_err(|e| GuestFailure::Start(format!("creating a scratch directory: {e}")))?;
        let dir = scratch.path();
        let ctx = convert::context(&Context {
            hostname: SELF_TEST_HOSTNAME.into(),
            zone_id: None,
            limits: Limits {
                max_file_size: 1024,
                max_chunks: 1,
            },
            now: 0,
        });
        let msg = convert::message(Message {
            headers: vec![(FILE_NAME.into(), b"self-test".to_vec())],
            partition: -1,
            offset: -1,
            ..Message::default()
        });
        // The three calls share one instance: the self-test checks the exports, not isolation.
        let (version, processed, maintained) =
            self.call_in(dir, Arc::new(NoResolver), |c, store| {
                let processor = c.kres_kafka_processor();
                let version = processor.call_version(&mut *store)?;
                let processed = processor.call_process(&mut *store, &ctx, &msg)?;
                let maintained = processor.call_maintain(&mut *store, &ctx, 0)?;
                Ok((version, processed, maintained))
            })?;
        if version.trim().is_empty() {
            return Err(GuestFailure::Trap("its version is empty".into()));
        }
        if !matches!(
            processed,
            Ok(bindings::kres::kafka::types::Outcome::Skipped(_))
        ) {
            return Err(GuestFailure::Trap(format!(
                "it did not skip a message without a hostname header: {processed:?}"
            )));
        }
        if let Err(e) = maintained {
            return Err(GuestFailure::Trap(format!(
                "maintenance of an empty directory failed: {e:?}"
            )));
        }
        Ok(version)
    }

    /// The version string the guest reported at load.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Where the guest came from (a path, or `embedded`).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Process one message. Blocks for as long as the guest runs (up to the time limit).
    pub fn process(&self, ctx: &Context, msg: Message) -> Outcome {
        let (ctx, msg) = (convert::context(ctx), convert::message(msg));
        match self.call(|c, store| c.kres_kafka_processor().call_process(store, &ctx, &msg)) {
            Ok(Ok(done)) => convert::outcome(done),
            Ok(Err(refused)) => Outcome::Rejected(convert::rejection(refused)),
            Err(failure) => Outcome::Failed(failure),
        }
    }

    /// Run the guest's maintenance: remove temporaries, expire chunk sets older than `max_age`.
    pub fn maintain(&self, ctx: &Context, max_age: Duration) -> Result<Maintenance, GuestError> {
        let ctx = convert::context(ctx);
        let result = self.call(|c, store| {
            c.kres_kafka_processor()
                .call_maintain(store, &ctx, max_age.as_secs())
        });
        match result {
            Ok(Ok(report)) => Ok(convert::maintenance(report)),
            Ok(Err(refused)) => Err(GuestError::Refused(convert::rejection(refused))),
            Err(failure) => Err(GuestError::Failed(failure)),
        }
    }

    /// Judge the configuration `name` as `process` would before committing it.
    pub fn check_config(
        &self,
        ctx: &Context,
        name: &str,
        content: &[u8],
    ) -> Result<(), GuestError> {
        let ctx = convert::context(ctx);
        match self.call(|c, store| {
            c.kres_kafka_processor()
                .call_check_config(store, &ctx, name, content)
        }) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refused)) => Err(GuestError::Refused(convert::rejection(refused))),
            Err(failure) => Err(GuestError::Failed(failure)),
        }
    }

    /// Put back the previous version of each configuration file in `files`.
    pub fn restore(
        &self,
        ctx: &Context,
        files: &[String],
    ) -> Result<Vec<Result<Restored, Rejection>>, GuestFailure> {
        let ctx = convert::context(ctx);
        let results =
            self.call(|c, store| c.kres_kafka_processor().call_restore(store, &ctx, files))?;
        Ok(results
            .into_iter()
            .map(|r| r.map(convert::restored).map_err(convert::rejection))
            .collect())
    }

    /// Instantiate afresh over the files directory and make one call under the limits.
    fn call<R>(
        &self,
        f: impl FnOnce(&bindings::Consumer, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestFailure> {
        self.call_in(&self.config.files_dir, Arc::clone(&self.config.resolver), f)
    }

    /// Instantiate afresh with `dir` as the only preopen and make one call under the limits.
    fn call_in<R>(
        &self,
        dir: &Path,
        resolver: Arc<dyn Resolver>,
        f: impl FnOnce(&bindings::Consumer, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestFailure> {
        let state = State::new(dir, self.config.memory_limit, resolver)?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s.limiter());
        store.epoch_deadline_trap();
        store.set_epoch_deadline(
            self.config.time_limit.div_duration_f64(EPOCH_TICK).ceil() as u64 + 1,
        );

        let consumer = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.failure(&store, e, GuestFailure::Start))?;
        f(&consumer, &mut store).map_err(|e| self.failure(&store, e, GuestFailure::Trap))
    }

    fn failure(
        &self,
        store: &Store<State>,
        error: wasmtime::Error,
        otherwise: fn(String) -> GuestFailure,
    ) -> GuestFailure {
        if let Some(requested) = store.data().memory_refused() {
            return GuestFailure::MemoryCap {
                cap: self.config.memory_limit,
                requested,
            };
        }
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return GuestFailure::TimeLimit(self.config.time_limit);
        }
        otherwise(format!("{error:?}"))
    }
}
