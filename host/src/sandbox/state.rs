//! What one instance's store holds: WASI over the files directory (its only preopen), the
//! memory limiter, and the host side of the guest's imports.

use super::bindings;
use super::zones::{Refusal, Zones};
use super::{MAX_TABLE_ELEMENTS, Resolver, ValidateError};
use crate::outcome::GuestFailure;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Per-instance state: WASI, its resources, and the memory limiter.
pub(super) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    resolver: Arc<dyn Resolver>,
    /// The files directory (the preopen), for `files.sync`.
    dir: PathBuf,
    /// The same, as a capability, for `payload.write-to` and `files.judge-zone`.
    files: Option<cap_std::fs::Dir>,
    /// The guest's zone judge, shared by its instances: it judges ahead what is written.
    zones: Zones,
    /// Time spent in the host on the guest's behalf (the resolver's validator, writes,
    /// flushes, the owed-call marker), and how much of it the time limit has given back.
    host_time: Duration,
    credited: Duration,
}

/// A message's value, held by the host for the guest (the WIT `payload` resource). Shared, not
/// copied: the guest's `read` is the only copy.
pub struct Payload(pub Arc<[u8]>);

impl State {
    /// WASI with `dir` as the only preopen (read-write) and nothing else: no sockets, no name
    /// lookups, no environment, arguments or standard streams.
    pub(super) fn new(
        dir: &Path,
        memory_cap: u64,
        resolver: Arc<dyn Resolver>,
        zones: Zones,
    ) -> Result<State, GuestFailure> {
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
        Ok(State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory_cap,
                refused: None,
            },
            resolver,
            dir: dir.to_owned(),
            files: None,
            zones,
            host_time: Duration::ZERO,
            credited: Duration::ZERO,
        })
    }

    /// The files directory as a capability: paths opened through it cannot leave it (the
    /// same confinement WASI gives the guest's own paths). Opened on first use.
    fn files(&mut self) -> std::io::Result<&cap_std::fs::Dir> {
        if self.files.is_none() {
            let dir = cap_std::fs::Dir::open_ambient_dir(&self.dir, cap_std::ambient_authority())?;
            self.files = Some(dir);
        }
        Ok(self.files.as_ref().expect("opened above"))
    }

    /// Run host work for the guest, counting its time apart from the guest's own.
    fn timed<R>(&mut self, work: impl FnOnce(&mut Self) -> R) -> R {
        let started = Instant::now();
        let result = work(self);
        self.host_time += started.elapsed();
        result
    }

    /// The host time not yet given back to the guest's time limit, given back now.
    pub(super) fn take_host_time(&mut self) -> Duration {
        let owed = self.host_time.saturating_sub(self.credited);
        self.credited = self.host_time;
        owed
    }

    /// Hand `value` to the guest as a `payload`.
    pub(super) fn payload(&mut self, value: Arc<[u8]>) -> wasmtime::Result<Resource<Payload>> {
        Ok(self.table.push(Payload(value))?)
    }

    pub(super) fn limiter(&mut self) -> &mut dyn ResourceLimiter {
        &mut self.limiter
    }

    /// The memory growth the limiter refused, if it refused one: why the guest trapped.
    pub(super) fn memory_refused(&self) -> Option<u64> {
        self.limiter.refused
    }
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

impl bindings::kres::kafka::types::HostPayload for State {
    fn size(&mut self, payload: Resource<Payload>) -> u64 {
        self.table.get(&payload).map_or(0, |p| p.0.len() as u64)
    }

    fn read(&mut self, payload: Resource<Payload>) -> Vec<u8> {
        self.table
            .get(&payload)
            .map(|p| p.0.to_vec())
            .unwrap_or_default()
    }

    fn write_to(
        &mut self,
        payload: Resource<Payload>,
        file: String,
        offset: u64,
        hashed: bindings::kres::kafka::digest::Sha256State,
    ) -> Result<bindings::kres::kafka::digest::Sha256State, String> {
        use kres_kafka_guest::digest::{Sha256State, native_compress};
        let value = match self.table.get(&payload) {
            Ok(p) => Arc::clone(&p.0),
            Err(e) => return Err(e.to_string()),
        };
        let words = <[u32; 8]>::try_from(hashed.words.as_slice()).ok();
        let Some(mut state) =
            words.and_then(|w| Sha256State::from_parts(w, hashed.length, hashed.tail))
        else {
            return Err("a malformed SHA-256 state".into());
        };
        self.timed(|s| {
            s.files()
                .and_then(|dir| write_at(dir, &file, offset, &value))
                .map_err(|e| {
                    s.zones.forget(&file);
                    format!("writing {file}: {e}")
                })?;
            let before = state.clone();
            state.update(&native_compress, &value);
            s.zones.written(&file, offset, &value, &before, &state);
            Ok::<_, String>(())
        })?;
        let (words, length, tail) = state.parts();
        Ok(bindings::kres::kafka::digest::Sha256State {
            words: words.to_vec(),
            length,
            tail: tail.to_vec(),
        })
    }

    fn drop(&mut self, payload: Resource<Payload>) -> wasmtime::Result<()> {
        self.table.delete(payload)?;
        Ok(())
    }
}

impl bindings::kres::kafka::digest::Host for State {
    fn sha256_blocks(&mut self, state: Vec<u32>, blocks: Vec<u8>) -> wasmtime::Result<Vec<u32>> {
        let Ok(mut words) = <[u32; 8]>::try_from(state.as_slice()) else {
            wasmtime::bail!("sha256-blocks: a state of {} words, not 8", state.len());
        };
        if !blocks.len().is_multiple_of(64) {
            wasmtime::bail!("sha256-blocks: {} bytes are not whole blocks", blocks.len());
        }
        kres_kafka_guest::digest::native_compress(&mut words, &blocks);
        Ok(words.to_vec())
    }
}

impl bindings::kres::kafka::signatures::Host for State {
    fn verify_ed25519(&mut self, key: Vec<u8>, message: Vec<u8>, signature: Vec<u8>) -> bool {
        kres_kafka_guest::signature::verify_ed25519_bytes(&key, &message, &signature)
    }
}

impl bindings::kres::kafka::files::Host for State {
    fn sync(&mut self) -> Result<(), String> {
        self.timed(|s| {
            crate::system::sync_filesystem(&s.dir)
                .map_err(|e| format!("flushing the filesystem of {}: {e}", s.dir.display()))
        })
    }

    fn judge_zone(
        &mut self,
        file: String,
        sha256: Vec<u8>,
    ) -> Result<(), bindings::kres::kafka::files::ZoneRefusal> {
        use bindings::kres::kafka::files::ZoneRefusal;
        self.timed(|s| {
            let zones = s.zones.clone();
            let dir = s
                .files()
                .map_err(|e| Refusal::Unreadable(format!("opening the files directory: {e}")))?;
            zones.judge(dir, &file, &sha256)
        })
        .map_err(|refusal| match refusal {
            Refusal::Refused(why) => ZoneRefusal::Refused(why),
            Refusal::Unreadable(why) => ZoneRefusal::Unreadable(why),
        })
    }

    fn judge_as_written(&mut self, file: String) {
        self.zones.watch(&file);
    }
}

impl bindings::kres::kafka::resolver::Host for State {
    fn owe(&mut self, call: bindings::kres::kafka::types::Action) -> Result<(), String> {
        self.timed(|s| s.resolver.owe(super::convert::action(call)))
    }

    fn schema(&mut self) -> Option<Vec<u8>> {
        self.resolver.schema().map(|s| s.to_vec())
    }

    fn validate(
        &mut self,
        name: String,
        content: Vec<u8>,
    ) -> Result<(), bindings::kres::kafka::resolver::ValidateError> {
        use bindings::kres::kafka::resolver::ValidateError as Wit;
        self.timed(|s| s.resolver.validate(&name, &content))
            .map_err(|e| match e {
                ValidateError::Refused(why) => Wit::Refused(why),
                ValidateError::Unavailable(why) => Wit::Unavailable(why),
            })
    }
}

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

/// Values at least this large are sent on to the disk as soon as they are written, so that the
/// batch's flush finds most of its work done.
const START_WRITEBACK: usize = 256 << 10;

/// Write `value` into `file` under `dir` at `offset`, creating it if needed and ending it
/// right after the value.
fn write_at(dir: &cap_std::fs::Dir, file: &str, offset: u64, value: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut options = cap_std::fs::OpenOptions::new();
    options.write(true).create(true);
    let file = dir.open_with(file, &options)?.into_std();
    file.write_all_at(value, offset)?;
    file.set_len(offset + value.len() as u64)?;
    if value.len() >= START_WRITEBACK {
        crate::system::start_writeback(&file, offset, value.len() as u64);
    }
    Ok(())
}
