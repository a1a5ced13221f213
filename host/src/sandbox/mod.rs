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
//! - the `log` import;
//! - the host's primitives: message values (read only when the guest needs them), native
//!   SHA-256, one flush (`syncfs`) of the files directory, and a zone file judged natively.
//!
//! It gets no environment variables, no arguments, no stdin, no stdout/stderr (they are
//! discarded), no sockets and no name lookups.
//!
//! # Layout
//!
//! - this file: the engine, its epoch ticker and linker; compiling (or taking from `cache`) and
//!   loading a guest.
//! - `guest`: a loaded guest: its self-test and the calls, each in a fresh instance.
//! - `state`: what one instance's store holds: WASI over the files directory, the memory
//!   limiter, the host side of the guest's imports.
//! - `zones`: zone files judged natively for the guest, ahead as they are written.
//! - `convert`: between the WIT bindings and the host's own types (`crate::outcome`).
//! - `cache`: compiled guests on disk, tagged so that only kres-kafka's own are loaded.
//!
//! Loading a guest compiles it (or takes its compiled code from the cache, see `cache`), checks
//! it against the world, and runs a self-test in a scratch directory of its own: a guest that
//! fails any step is refused before it can touch the files directory.
//!
//! Calls block the calling thread: wasmtime-wasi's synchronous bindings block on their own
//! runtime internally, so async callers must use `spawn_blocking` (or a thread of their own),
//! never call in from an async worker.

use crate::outcome::{Action, GuestFailure};
use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

mod cache;
mod convert;
mod engine;
mod guest;
mod state;
mod zones;

pub use cache::{digest, digest_file};
pub use guest::Guest;
use state::State;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "consumer",
        with: {
            "kres:kafka/types.payload": super::state::Payload,
        },
        imports: { "kres:kafka/digest.sha256-blocks": trappable },
    });
}

/// The guest built from `guest/` by `build.rs`, used when no guest path is configured.
pub const DEFAULT_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.wasm"));

/// The embedded guest compiled at build time (by `host/build.rs`, for the target's baseline
/// CPU), so that a first start does not compile it; empty when the build could not.
const DEFAULT_GUEST_COMPILED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guest.cwasm"));

/// Default cap on a guest instance's linear memory (reasons with the constant).
pub const DEFAULT_MEMORY_LIMIT: u64 = crate::config::DEFAULT_GUEST_MEMORY_LIMIT;

/// Default time limit for one call (reasons with the constant).
pub const DEFAULT_TIME_LIMIT: Duration = crate::config::DEFAULT_GUEST_TIME_LIMIT;

/// Granularity of the time limit: the epoch ticks this often.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Most table elements an instance may have (function tables of a Rust guest hold hundreds).
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

/// What the guest may ask about the resolver while it judges a configuration (the WIT
/// `resolver` import). Calls come from the guest's thread and block it: they must finish well
/// within the guest's time limit.
pub trait Resolver: Send + Sync {
    /// The resolver's JSON Schema, or `None` for the guest's embedded one.
    fn schema(&self) -> Option<Arc<[u8]>>;
    /// Run the resolver's own validator with `content` as the configuration `name`.
    fn validate(&self, name: &str, content: &[u8]) -> Result<(), ValidateError>;
    /// Record durably that the manager must be asked for `call`.
    fn owe(&self, call: Action) -> Result<(), String>;
}

/// Why the resolver's validator did not accept a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidateError {
    /// It ran and refused: its first line of error output.
    #[error("{0}")]
    Refused(String),
    /// It could not judge: not started, or not finished in time.
    #[error("{0}")]
    Unavailable(String),
}

/// A resolver with nothing to offer: the embedded schema, no validator. Used by the self-test
/// and wherever no resolver is configured.
pub struct NoResolver;

impl Resolver for NoResolver {
    fn schema(&self) -> Option<Arc<[u8]>> {
        None
    }
    fn validate(&self, _: &str, _: &[u8]) -> Result<(), ValidateError> {
        Ok(())
    }
    fn owe(&self, _: Action) -> Result<(), String> {
        Ok(())
    }
}

/// How the sandbox runs a guest.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The files directory: the guest's only preopen.
    pub files_dir: PathBuf,
    /// Cap on each instance's linear memory, in bytes.
    pub memory_limit: u64,
    /// Time limit for one call into the guest.
    pub time_limit: Duration,
    /// Where compiled guests are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// What the guest may ask about the resolver.
    pub resolver: Arc<dyn Resolver>,
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("files_dir", &self.files_dir)
            .field("memory_limit", &self.memory_limit)
            .field("time_limit", &self.time_limit)
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl SandboxConfig {
    /// The default limits for `files_dir`.
    pub fn new(files_dir: impl Into<PathBuf>) -> Self {
        SandboxConfig {
            files_dir: files_dir.into(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            time_limit: DEFAULT_TIME_LIMIT,
            cache_dir: None,
            resolver: Arc::new(NoResolver),
        }
    }
}

/// Why a guest was refused at load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading guest {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
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
        let wasm = engine::engine_config(None).map_err(engine_error)?;
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
        let read_error = |error| LoadError::Read {
            path: path.to_owned(),
            error,
        };
        let file = File::open(path).map_err(read_error)?;
        let digest = cache::digest_file(&file).map_err(read_error)?;
        self.load_file_digested(&file, path, digest)
    }

    /// [`Sandbox::load_file`] when the caller already has the digest of `file` (opened from
    /// `path`, which names it in messages): the file is read again only when its compiled code
    /// is not in the cache, through the same descriptor, so that a guest file replaced in the
    /// meantime is not mistaken for it.
    pub fn load_file_digested(
        &self,
        file: &File,
        path: &Path,
        digest: String,
    ) -> Result<Guest, LoadError> {
        self.load_wasm(Wasm::File(file, path), digest, &path.display().to_string())
    }

    /// Load the guest at `path` when one is configured, else the embedded one.
    pub fn load_configured(&self, path: Option<&Path>) -> Result<Guest, LoadError> {
        match path {
            Some(path) => self.load_file(path),
            None => self.load_embedded(),
        }
    }

    /// The embedded guest: from the cache, else compiled at build time (then cached), else (an
    /// engine that cannot take that artifact) compiled here, as any guest. Its bytes are read
    /// once: their pages are then dropped from memory (see [`crate::system::drop_resident`]).
    fn load_embedded(&self) -> Result<Guest, LoadError> {
        let started = Instant::now();
        let digest = cache::digest(DEFAULT_GUEST);
        let precompiled = Some(DEFAULT_GUEST_COMPILED).filter(|a| !a.is_empty());
        let guest = self.compile(Wasm::Bytes(DEFAULT_GUEST), &digest, "embedded", precompiled);
        // SAFETY: both are `include_bytes!` data of this executable.
        unsafe {
            crate::system::drop_resident(DEFAULT_GUEST_COMPILED);
            crate::system::drop_resident(DEFAULT_GUEST);
        }
        let (component, cached) = guest?;
        if !cached {
            crate::system::release_free_memory();
        }
        self.check(component, cached, started, digest, "embedded")
    }

    /// Compile `bytes` (or take their compiled code from the cache), check them against the
    /// world and run the self-test. `origin` names the guest in messages.
    pub fn load(&self, bytes: &[u8], origin: &str) -> Result<Guest, LoadError> {
        self.load_wasm(Wasm::Bytes(bytes), cache::digest(bytes), origin)
    }

    fn load_wasm(&self, wasm: Wasm<'_>, digest: String, origin: &str) -> Result<Guest, LoadError> {
        let started = Instant::now();
        let (component, cached) = self.compile(wasm, &digest, origin, None)?;
        if !cached {
            crate::system::release_free_memory();
        }
        self.check(component, cached, started, digest, origin)
    }

    /// Link `component` and run its self-test.
    fn check(
        &self,
        component: Component,
        cached: bool,
        started: Instant,
        digest: String,
        origin: &str,
    ) -> Result<Guest, LoadError> {
        let compiled = started.elapsed();
        let world = |e: wasmtime::Error| LoadError::World {
            origin: origin.to_owned(),
            reason: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(world)?;
        let pre = bindings::ConsumerPre::new(pre).map_err(world)?;
        let linked = started.elapsed();
        let guest = Guest::checked(
            self.engine.clone(),
            pre,
            self.config.clone(),
            origin,
            digest,
            cached,
        )
        .map_err(|failure| LoadError::SelfTest {
            origin: origin.to_owned(),
            failure,
        })?;
        tracing::debug!(%origin, version = %guest.version(), cached, ?compiled, ?linked, elapsed = ?started.elapsed(), "guest loaded");
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
        self.compile(Wasm::Bytes(bytes), &digest, origin, None)?;
        let path = cache.path(&digest, &self.engine_id);
        if !path.exists() {
            return Err(cache_error(format!(
                "{} was not written (see the warnings above)",
                path.display()
            )));
        }
        Ok(path)
    }

    /// The compiled code of `wasm`, and whether it was ready (not compiled now): from the cache,
    /// else `precompiled` (the embedded guest's, compiled at build time) if this engine takes
    /// it, else compiled. What was not in the cache is put there and mapped from there: the
    /// daemon then holds file pages the kernel can drop, not 10 MB of its own for its life.
    fn compile(
        &self,
        wasm: Wasm<'_>,
        digest: &str,
        origin: &str,
        precompiled: Option<&[u8]>,
    ) -> Result<(Component, bool), LoadError> {
        let compile_error = |e: wasmtime::Error| LoadError::Compile {
            origin: origin.to_owned(),
            reason: format!("{e:#}"),
        };
        let path = self
            .cache
            .as_ref()
            .map(|cache| cache.path(digest, &self.engine_id));
        if let Some(component) = path.as_deref().and_then(|path| self.mapped(path)) {
            return Ok((component, true));
        }
        let checked = precompiled.and_then(|artifact| {
            // SAFETY: written by `precompile_component` at build time, from the embedded guest,
            // with this engine's configuration (`engine::engine_config`); wasmtime checks the
            // version, configuration and CPU features it needs before using it.
            match unsafe { Component::deserialize(&self.engine, artifact) } {
                Ok(component) => Some((component, artifact)),
                Err(e) => {
                    tracing::debug!(
                        "compiling the {origin} guest: its build-time compilation does not fit this engine: {e:#}"
                    );
                    None
                }
            }
        });
        let compiled;
        let (checked, artifact, ready) = match checked {
            Some((component, artifact)) => (Some(component), artifact, true),
            None => {
                let bytes = wasm.read(digest)?;
                compiled = self
                    .engine
                    .precompile_component(&bytes)
                    .map_err(compile_error)?;
                (None, compiled.as_slice(), false)
            }
        };
        if let (Some(cache), Some(path)) = (&self.cache, &path) {
            match cache.put(path, artifact) {
                Ok(()) => {
                    if let Some(component) = self.mapped(path) {
                        return Ok((component, ready));
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "could not cache the compiled guest: {e}");
                }
            }
        }
        let component = match checked {
            Some(component) => component,
            // SAFETY: produced just above by this engine.
            None => {
                unsafe { Component::deserialize(&self.engine, artifact) }.map_err(compile_error)?
            }
        };
        Ok((component, ready))
    }

    /// The cached artifact at `path`, mapped, if it is ours and usable.
    fn mapped(&self, path: &Path) -> Option<Component> {
        let artifact = self.cache.as_ref()?.get(path)?;
        // Mapped, not copied. Through the descriptor's own path: the file whose tag was
        // checked, even if another took its name since.
        let mapped = format!("/proc/self/fd/{}", artifact.as_raw_fd());
        // SAFETY: `cache.get` returns only artifacts carrying our MAC, that is written by
        // `precompile_component` of an engine with this configuration (the name says so), and
        // never written to once in place.
        match unsafe { Component::deserialize_file(&self.engine, &mapped) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "recompiling: the cached artifact is unusable: {e:#}");
                None
            }
        }
    }
}

/// A guest's WebAssembly: in memory, or in a file read only if its compiled code is not cached.
enum Wasm<'a> {
    Bytes(&'a [u8]),
    File(&'a File, &'a Path),
}

impl Wasm<'_> {
    /// The bytes, which must still have `digest`: the digest names the compiled code.
    fn read(&self, digest: &str) -> Result<Cow<'_, [u8]>, LoadError> {
        match *self {
            Wasm::Bytes(bytes) => Ok(Cow::Borrowed(bytes)),
            Wasm::File(mut file, path) => {
                let read_error = |error| LoadError::Read {
                    path: path.to_owned(),
                    error,
                };
                let mut bytes = Vec::new();
                file.rewind().map_err(read_error)?;
                file.read_to_end(&mut bytes).map_err(read_error)?;
                if cache::digest(&bytes) != digest {
                    // Written over in place (a replacement by rename is not seen here).
                    return Err(read_error(std::io::Error::other(
                        "it changed while it was being loaded",
                    )));
                }
                Ok(Cow::Owned(bytes))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's resident pages mapped from files (the executable among them), in KiB.
    fn resident_file_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("RssFile:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_embedded_guest_leaves_memory_once_read() {
        // Built for this target, so compiled ahead: 10 MB the daemon reads once at start-up.
        assert!(DEFAULT_GUEST_COMPILED.len() > 4 << 20);
        let sum = DEFAULT_GUEST_COMPILED
            .iter()
            .step_by(4096)
            .fold(0u64, |a, &b| a.wrapping_add(u64::from(b)));
        let before = resident_file_kib();
        // SAFETY: `include_bytes!` data of this executable.
        unsafe { crate::system::drop_resident(DEFAULT_GUEST_COMPILED) };
        let after = resident_file_kib();
        let dropped = before.saturating_sub(after);
        assert!(
            // Half: other tests running meanwhile may fault in pages of their own.
            dropped * 1024 >= DEFAULT_GUEST_COMPILED.len() as u64 / 2,
            "dropped {dropped} KiB of {} KiB (RssFile {before} -> {after} KiB)",
            DEFAULT_GUEST_COMPILED.len() / 1024
        );
        // Still readable, the same bytes, read again from the executable.
        let again = DEFAULT_GUEST_COMPILED
            .iter()
            .step_by(4096)
            .fold(0u64, |a, &b| a.wrapping_add(u64::from(b)));
        assert_eq!(sum, again);
    }
}
