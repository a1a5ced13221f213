//! A loaded guest: its self-test at load, and the calls the host makes, each in a fresh
//! instance over the files directory under the memory cap and the time limit.

use super::bindings;
use super::convert;
use super::state::State;
use super::zones::Zones;
use super::{EPOCH_TICK, NoResolver, Resolver, SandboxConfig};
use crate::outcome::{
    Context, GuestError, GuestFailure, Limits, Maintenance, Message, Outcome, Rejection, Restored,
};
use kres_kafka_guest::headers::FILE_NAME;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

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
    /// Its zone judge, shared by its instances (`files.judge-zone`).
    zones: Zones,
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
            zones: Zones::default(),
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
            trust: Default::default(),
        });
        let msg = Message {
            headers: vec![(FILE_NAME.into(), b"self-test".to_vec())],
            partition: -1,
            offset: -1,
            ..Message::default()
        };
        // The three calls share one instance: the self-test checks the exports, not isolation.
        let (version, processed, maintained) =
            self.call_in(dir, Arc::new(NoResolver), |c, store| {
                let processor = c.kres_kafka_processor();
                let version = processor.call_version(&mut *store)?;
                let value = store.data_mut().payload(Arc::clone(&msg.value))?;
                let msgs = [convert::message(&msg, value)];
                let processed = processor.call_process(&mut *store, &ctx, &msgs)?;
                let maintained = processor.call_maintain(&mut *store, &ctx, 0)?;
                Ok((version, processed, maintained))
            })?;
        if version.trim().is_empty() {
            return Err(GuestFailure::Trap("its version is empty".into()));
        }
        if !matches!(
            processed.as_slice(),
            [Ok(bindings::kres::kafka::types::Outcome::Skipped(_))]
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

    /// Process one message as a batch of its own. Blocks for as long as the guest runs.
    pub fn process(&self, ctx: &Context, msg: Message) -> Outcome {
        self.process_batch(ctx, std::slice::from_ref(&msg))
            .pop()
            .expect("one outcome at least for a message")
    }

    /// Process `msgs` as one batch (one group commit). Returns the outcomes of a prefix of
    /// them, at least one: all of them; or fewer when the guest ended the batch early; or up to
    /// a last outcome that is not durable (see [`Outcome::is_durable`]), after which the host
    /// offers the rest again. Blocks for as long as the guest runs (up to the time limit).
    ///
    /// A batch that makes the guest fail (a trap, the time limit, the memory cap) is done again
    /// one message at a time, each in an instance of its own, so that the failure costs the
    /// message that causes it and no other.
    pub fn process_batch(&self, ctx: &Context, msgs: &[Message]) -> Vec<Outcome> {
        if msgs.is_empty() {
            return Vec::new();
        }
        let wit_ctx = convert::context(ctx);
        let called = self.call(|c, store| {
            let mut batch = Vec::with_capacity(msgs.len());
            for msg in msgs {
                let value = store.data_mut().payload(Arc::clone(&msg.value))?;
                batch.push(convert::message(msg, value));
            }
            c.kres_kafka_processor()
                .call_process(store, &wit_ctx, &batch)
        });
        match called {
            Ok(results) if !results.is_empty() && results.len() <= msgs.len() => {
                results.into_iter().map(convert::result).collect()
            }
            Ok(results) => vec![Outcome::Failed(GuestFailure::Trap(format!(
                "it returned {} outcomes for a batch of {} messages",
                results.len(),
                msgs.len()
            )))],
            Err(failure @ GuestFailure::Start(_)) => vec![Outcome::Failed(failure)],
            Err(failure) if msgs.len() > 1 => {
                tracing::warn!(
                    messages = msgs.len(),
                    "the guest failed on a batch ({failure}): processing its messages one at a time"
                );
                let mut outcomes = Vec::with_capacity(msgs.len());
                for msg in msgs {
                    let outcome = self.process(ctx, msg.clone());
                    let durable = outcome.is_durable();
                    outcomes.push(outcome);
                    if !durable {
                        break;
                    }
                }
                outcomes
            }
            Err(failure) => vec![Outcome::Failed(failure)],
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

    /// Record in the journal that on each `(topic/partition, offset)` every message before
    /// the offset is done (a resolver that took the state reads the stream on from there).
    pub fn skip_before(&self, positions: &[(String, i64)]) -> Result<(), GuestError> {
        let result =
            self.call(|c, store| c.kres_kafka_processor().call_skip_before(store, positions));
        match result {
            Ok(done) => done.map_err(|e| GuestError::Refused(convert::rejection(e))),
            Err(failure) => Err(GuestError::Failed(failure)),
        }
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
        let state = State::new(dir, self.config.memory_limit, resolver, self.zones.clone())?;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s.limiter());
        // The time limit is the guest's own time: what the host spent on its behalf (the
        // resolver's validator, with its own timeout; writes; flushes) moves the deadline on.
        let ticks = |d: Duration| d.div_duration_f64(EPOCH_TICK).ceil() as u64;
        store.set_epoch_deadline(ticks(self.config.time_limit) + 1);
        store.epoch_deadline_callback(move |mut ctx| {
            let owed = ctx.data_mut().take_host_time();
            Ok(match ticks(owed) {
                0 => UpdateDeadline::Interrupt,
                extra => UpdateDeadline::Continue(extra),
            })
        });

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
