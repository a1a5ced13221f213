//! The WebAssembly sandbox: the only module that touches wasmtime.
//!
//! It narrows wasmtime to what kres-kafka uses: one engine with epoch interruption, a linker
//! holding WASI preview 2 and the guest's `log` import, loading (compile, check against the
//! world, self-test) and calling a guest. Every call runs in a fresh instance made from an
//! `InstancePre` prepared once at load, so a trap, a timeout or a memory blow-up costs that one
//! call and nothing else, and no state leaks from one message to the next.
//!
//! What a guest can reach, and nothing more:
//!
//! - the files directory, preopened as `/`, read-write (its only path);
//! - WASI clocks and random numbers (harmless; the host still passes its clock explicitly);
//! - the `log` import.
//!
//! It gets no environment variables, no arguments, no stdin, no stdout/stderr (they are
//! discarded), no sockets and no name lookups.
//!
//! Loading a guest compiles it (or takes its compiled code from the cache, see `cache`), checks
//! it against the world, and runs a self-test in a scratch directory of its own: a guest that
//! fails any step is refused before it can touch the files directory.
//!
//! Calls block the calling thread: wasmtime-wasi's synchronous bindings block on their own
//! runtime internally, so async callers must use `spawn_blocking` (or a thread of their own),
//! never call in from an async worker.

use crate::types::{Action, Context, Limits, Maintenance, Message, Outcome, RejectKind, Rejection};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

mod cache;

pub use cache::digest;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "consumer",
    });
}

use bindings::kres::kafka::types as wit;

/// The guest built from `guest/` by `build.rs`, used when no guest path is configured.
pub const DEFAULT_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.wasm"));

/// Default cap on a guest instance's linear memory: 256 MiB. A message's value is copied into
/// guest memory and a configuration file is parsed whole, so this must exceed the largest
/// message (Kafka's default `message.max.bytes` is 1 MiB; the publisher's chunks are 512 KiB)
/// and a large configuration's parse tree, while keeping a runaway guest from taking the host.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;

/// Default time limit for one call: 30 s. Storing a chunk takes milliseconds; assembling a
/// file of the default maximum size, hashed and fsynced, takes seconds. A guest that loops is
/// stopped after this and the consumer moves on.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(30);

/// Granularity of the time limit: the epoch ticks this often.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Most table elements an instance may have (function tables of a Rust guest hold hundreds).
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// How the sandbox runs a guest.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The files directory: the guest's only preopen.
    pub files_dir: PathBuf,
    /// Cap on each instance's linear memory, in bytes.
    pub memory_limit: u64,
    /// Time limit for one call into the guest.
    pub time_limit: Duration,
    /// Where compiled guests are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
}

impl SandboxConfig {
    /// The default limits for `files_dir`.
    pub fn new(files_dir: impl Into<PathBuf>) -> Self {
        SandboxConfig {
            files_dir: files_dir.into(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            time_limit: DEFAULT_TIME_LIMIT,
            cache_dir: None,
        }
    }
}

/// Why a guest was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading guest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("guest {origin} is not a valid WebAssembly component: {reason}")]
    Compile { origin: String, reason: String },
    #[error("guest {origin} does not implement the world kres:kafka/consumer: {reason}")]
    World { origin: String, reason: String },
    #[error("guest {origin} failed its self-test: {failure}")]
    SelfTest {
        origin: String,
        failure: GuestFailure,
    },
    #[error("setting up the WebAssembly engine: {0}")]
    Engine(String),
    #[error("caching the compiled guest {origin}: {reason}")]
    Cache { origin: String, reason: String },
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

/// The engine and linker shared by every guest loaded from it, plus the epoch ticker that
/// enforces time limits.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<State>,
    config: SandboxConfig,
    ticker: Arc<AtomicBool>,
    cache: Option<cache::Cache>,
    /// Names this engine's configuration and wasmtime version in artifact file names.
    engine_id: String,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker.store(true, Ordering::Relaxed);
    }
}

impl Sandbox {
    /// An engine configured for kres-kafka guests.
    pub fn new(config: SandboxConfig) -> Result<Self, LoadError> {
        let engine_error = |e: wasmtime::Error| LoadError::Engine(format!("{e:#}"));
        let mut wasm = Config::new();
        wasm.epoch_interruption(true).wasm_component_model(true);
        let engine = Engine::new(&wasm).map_err(engine_error)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_error)?;
        bindings::Consumer::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(engine_error)?;

        let ticker = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&ticker);
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("kres-kafka-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(engine) = weak.upgrade() else { break };
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| LoadError::Engine(format!("starting the epoch ticker: {e}")))?;

        let engine_id = {
            use std::hash::Hash;
            let mut hasher = cache::Sha256Hasher(Default::default());
            engine.precompile_compatibility_hash().hash(&mut hasher);
            format!("{:016x}", std::hash::Hasher::finish(&hasher))
        };
        let cache = config
            .cache_dir
            .as_deref()
            .and_then(|dir| match cache::Cache::open(dir) {
                Ok(cache) => Some(cache),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "compiled guests will not be cached: {e}");
                    None
                }
            });
        Ok(Sandbox {
            engine,
            linker,
            config,
            ticker,
            cache,
            engine_id,
        })
    }

    /// Load the guest at `path`.
    pub fn load_file(&self, path: &Path) -> Result<Guest, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load(&bytes, &path.display().to_string())
    }

    /// Compile `bytes` (or take their compiled code from the cache), check them against the
    /// world and run the self-test. `origin` names the guest in messages.
    pub fn load(&self, bytes: &[u8], origin: &str) -> Result<Guest, LoadError> {
        self.load_digested(bytes, cache::digest(bytes), origin)
    }

    /// [`Sandbox::load`] when the caller already has the bytes' digest.
    pub fn load_digested(
        &self,
        bytes: &[u8],
        digest: String,
        origin: &str,
    ) -> Result<Guest, LoadError> {
        let started = Instant::now();
        let (component, cached) = self.compile(bytes, &digest, origin)?;
        let compiled = started.elapsed();
        let world = |e: wasmtime::Error| LoadError::World {
            origin: origin.to_owned(),
            reason: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(world)?;
        let pre = bindings::ConsumerPre::new(pre).map_err(world)?;
        let mut guest = Guest {
            engine: self.engine.clone(),
            pre,
            config: self.config.clone(),
            origin: origin.to_owned(),
            version: String::new(),
            digest,
            cached,
        };
        let linked = started.elapsed();
        guest.version = guest.self_test().map_err(|failure| LoadError::SelfTest {
            origin: origin.to_owned(),
            failure,
        })?;
        tracing::debug!(%origin, version = %guest.version, cached, ?compiled, ?linked, elapsed = ?started.elapsed(), "guest loaded");
        Ok(guest)
    }

    /// Compile `bytes` into the cache ahead of a deployment; return where the artifact is.
    pub fn precompile(&self, bytes: &[u8], origin: &str) -> Result<PathBuf, LoadError> {
        let cache_error = |reason: String| LoadError::Cache {
            origin: origin.to_owned(),
            reason,
        };
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| cache_error("no cache directory is configured".into()))?;
        let digest = cache::digest(bytes);
        self.compile(bytes, &digest, origin)?;
        let path = cache.path(&digest, &self.engine_id);
        if !path.exists() {
            return Err(cache_error(format!(
                "{} was not written (see the warnings above)",
                path.display()
            )));
        }
        Ok(path)
    }

    /// The compiled component, and whether it came from the cache.
    fn compile(
        &self,
        bytes: &[u8],
        digest: &str,
        origin: &str,
    ) -> Result<(Component, bool), LoadError> {
        let compile_error = |e: wasmtime::Error| LoadError::Compile {
            origin: origin.to_owned(),
            reason: format!("{e:#}"),
        };
        let Some(cache) = &self.cache else {
            return Ok((
                Component::new(&self.engine, bytes).map_err(compile_error)?,
                false,
            ));
        };
        let path = cache.path(digest, &self.engine_id);
        if let Some(artifact) = cache.get(&path) {
            // SAFETY: `cache.get` returns only artifacts carrying our MAC, that is written by
            // `precompile_component` of an engine with this configuration (the name says so).
            match unsafe { Component::deserialize(&self.engine, &artifact) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "recompiling: the cached artifact is unusable: {e:#}")
                }
            }
        }
        let artifact = self
            .engine
            .precompile_component(bytes)
            .map_err(compile_error)?;
        if let Err(e) = cache.put(&path, &artifact) {
            tracing::warn!(path = %path.display(), "could not cache the compiled guest: {e}");
        }
        // SAFETY: produced just above by this engine.
        let component =
            unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(compile_error)?;
        Ok((component, false))
    }
}

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
        let ctx = wit::Context {
            hostname: SELF_TEST_HOSTNAME.into(),
            limits: wit::Limits {
                max_file_size: 1024,
                max_chunks: 1,
            },
            now: 0,
        };
        let msg = wit::Message {
            key: None,
            headers: vec![wit::Header {
                name: "file-name".into(),
                value: b"self-test".to_vec(),
            }],
            value: Vec::new(),
            topic: String::new(),
            partition: -1,
            offset: -1,
        };
        // The three calls share one instance: the self-test checks the exports, not isolation.
        let (version, processed, maintained) = self.call_in(dir, |c, store| {
            let processor = c.kres_kafka_processor();
            let version = processor.call_version(&mut *store)?;
            let processed = processor.call_process(&mut *store, &ctx, &msg)?;
            let maintained = processor.call_maintain(&mut *store, &ctx, 0)?;
            Ok((version, processed, maintained))
        })?;
        if version.trim().is_empty() {
            return Err(GuestFailure::Trap("its version is empty".into()));
        }
        if !matches!(processed, Ok(wit::Outcome::Skipped(_))) {
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
    pub fn process(
        &self,
        ctx: &Context,
        msg: Message,
    ) -> Result<Result<Outcome, Rejection>, GuestFailure> {
        let ctx = wit_context(ctx);
        let msg = wit::Message {
            key: msg.key,
            headers: msg
                .headers
                .into_iter()
                .map(|(name, value)| wit::Header { name, value })
                .collect(),
            value: msg.value,
            topic: msg.topic,
            partition: msg.partition,
            offset: msg.offset,
        };
        let result =
            self.call(|c, store| c.kres_kafka_processor().call_process(store, &ctx, &msg))?;
        Ok(result.map(outcome).map_err(rejection))
    }

    /// Run the guest's maintenance: remove temporaries, expire chunk sets older than `max_age`.
    pub fn maintain(
        &self,
        ctx: &Context,
        max_age: Duration,
    ) -> Result<Result<Maintenance, Rejection>, GuestFailure> {
        let ctx = wit_context(ctx);
        let result = self.call(|c, store| {
            c.kres_kafka_processor()
                .call_maintain(store, &ctx, max_age.as_secs())
        })?;
        Ok(result
            .map(|r| Maintenance {
                temporaries_removed: r.temporaries_removed,
                chunk_sets_expired: r.chunk_sets_expired,
                chunk_sets_kept: r.chunk_sets_kept,
            })
            .map_err(rejection))
    }

    /// Instantiate afresh over the files directory and make one call under the limits.
    fn call<R>(
        &self,
        f: impl FnOnce(&bindings::Consumer, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestFailure> {
        self.call_in(&self.config.files_dir, f)
    }

    /// Instantiate afresh with `dir` as the only preopen and make one call under the limits.
    fn call_in<R>(
        &self,
        dir: &Path,
        f: impl FnOnce(&bindings::Consumer, &mut Store<State>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestFailure> {
        let mut wasi = WasiCtxBuilder::new();
        // Calls already run on a thread that may block: no round trip through a runtime.
        wasi.allow_blocking_current_thread(true)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        wasi.preopened_dir(dir, "/", FsPerms::ReadWrite)
            .map_err(|e| {
                GuestFailure::Start(format!(
                    "opening the files directory {}: {e:#}",
                    dir.display()
                ))
            })?;
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_cap: self.config.memory_limit,
                refused: None,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
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
        if let Some(requested) = store.data().limiter.refused {
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

/// Per-instance state: WASI, its resources, and the memory limiter.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::kres::kafka::types::Host for State {}

impl bindings::kres::kafka::log::Host for State {
    fn emit(&mut self, level: bindings::kres::kafka::log::Level, message: String) {
        use bindings::kres::kafka::log::Level;
        match level {
            Level::Debug => tracing::debug!(target: "guest", "{message}"),
            Level::Info => tracing::info!(target: "guest", "{message}"),
            Level::Warn => tracing::warn!(target: "guest", "{message}"),
        }
    }
}

/// Refuses memory growth past the cap, trapping the guest (a Rust guest would otherwise abort
/// with an opaque `unreachable`), and records the refusal so the failure can say why.
struct Limiter {
    memory_cap: u64,
    refused: Option<u64>,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_cap {
            self.refused = Some(desired as u64);
            wasmtime::bail!("memory cap of {} bytes reached", self.memory_cap);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

fn wit_context(ctx: &Context) -> wit::Context {
    let Limits {
        max_file_size,
        max_chunks,
    } = ctx.limits;
    wit::Context {
        hostname: ctx.hostname.clone(),
        limits: wit::Limits {
            max_file_size,
            max_chunks,
        },
        now: ctx.now,
    }
}

fn outcome(o: wit::Outcome) -> Outcome {
    match o {
        wit::Outcome::Skipped(reason) => Outcome::Skipped { reason },
        wit::Outcome::Stored(s) => Outcome::Stored {
            file: s.file,
            index: s.index,
            total: s.total,
            received: s.received,
        },
        wit::Outcome::Committed(c) => Outcome::Committed {
            file: c.file,
            action: match c.action {
                wit::Action::None => Action::None,
                wit::Action::Renew => Action::Renew,
                wit::Action::Reload => Action::Reload,
            },
            size: c.size,
            sha256: c.sha256,
        },
        wit::Outcome::Unchanged(file) => Outcome::Unchanged { file },
    }
}

fn rejection(e: wit::ProcessError) -> Rejection {
    let (kind, reason) = match e {
        wit::ProcessError::BadHeader(r) => (RejectKind::BadHeader, r),
        wit::ProcessError::BadName(r) => (RejectKind::BadName, r),
        wit::ProcessError::InvalidConfig(r) => (RejectKind::InvalidConfig, r),
        wit::ProcessError::ChecksumMismatch(r) => (RejectKind::ChecksumMismatch, r),
        wit::ProcessError::TooLarge(r) => (RejectKind::TooLarge, r),
        wit::ProcessError::Io(r) => (RejectKind::Io, r),
    };
    Rejection { kind, reason }
}
