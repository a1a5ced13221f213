//! A stand-in for the Knot Resolver 6.4.2 manager, on a unix socket or TCP: the demo shows
//! kres-kafka working without a resolver, and the end-to-end tests see its calls and make it
//! refuse, fail or disappear.
//!
//! It behaves as the real manager does where kres-kafka depends on it (measured against
//! 6.4.2). It is started with a `--config` list ([`Recorder::manager`]).
//!
//! - `POST /reload` re-reads and merges those files (mappings recursively; a key set in two
//!   files is an error, as the manager's "duplicity key"), validates the result against Knot
//!   Resolver's schema treated as closed, then runs its policy-loader; on any error it logs it
//!   and keeps the configuration and rules it ran. `POST /renew` runs the policy-loader on the
//!   configuration it runs. Both answer **200 either way**, as the real one does.
//! - Its policy-loader judges every `local-data.rpz[].file` with the zone judge kres-kafka's
//!   guest uses (a missing file fails too) and, when all load, commits its rule database
//!   under the configuration's `rundir`, as the real one's LMDB does ([`crate::ruledb`]).
//! - Every call takes [`CALL_TIME`] by default (the real one polls its policy-loader once a
//!   second); `GET /v1/config` returns the configuration it runs (the raw merged mapping),
//!   `GET /schema` the schema, at once.
//! - A status set with [`Recorder::answer_next`] replaces the next answer, for faults the real
//!   manager can also produce (a 500 while it restarts).

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kres_kafka_guest::config;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;

/// One call the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `POST /reload`, ...
    pub method: String,
    pub path: String,
    /// The status it answered.
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    answers: VecDeque<u16>,
    /// The manager's `--config` files, in order.
    configs: Vec<PathBuf>,
    /// The configuration it runs: the merged files as last accepted.
    running: serde_json::Value,
    /// Why each refused reload or renew was refused, in order.
    refusals: Vec<String>,
    /// The newest transaction of its rule database.
    rules: u64,
    /// How long each call takes.
    call_time: Option<std::time::Duration>,
}

/// How long the real manager takes to answer a reload or renew: about a second, most of it
/// its wait for the policy-loader, which it polls once a second.
pub const CALL_TIME: std::time::Duration = std::time::Duration::from_millis(1000);

impl State {
    /// Re-read, merge and validate the files, then load their rules; run them if all pass.
    fn reload(&mut self) {
        match load(&self.configs).and_then(|merged| {
            self.load_rules(&merged)?;
            Ok(merged)
        }) {
            Ok(merged) => self.running = merged,
            Err(e) => self.refusals.push(e),
        }
    }

    /// Load the rules of the configuration it runs again.
    fn renew(&mut self) {
        let running = self.running.clone();
        if let Err(e) = self.load_rules(&running) {
            self.refusals.push(e);
        }
    }

    /// The policy-loader: every RPZ file of `config` judged as the resolver's zone loader
    /// judges it; the rule database committed only when all load.
    fn load_rules(&mut self, config: &serde_json::Value) -> Result<(), String> {
        let files = config
            .pointer("/local-data/rpz")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|rpz| rpz.get("file").and_then(serde_json::Value::as_str));
        // Relative to the directory of the first `--config` file, as the manager resolves them.
        let base = self
            .configs
            .first()
            .and_then(|c| c.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for file in files {
            let content = std::fs::read(base.join(file))
                .map_err(|e| format!("policy-loader: error opening zone file `{file}`: {e}"))?;
            kres_kafka_guest::zone::judge_rpz(&content)
                .map_err(|e| format!("policy-loader: error parsing zone file `{file}`: {e}"))?;
        }
        self.rules += 1;
        if let Some(rundir) = config.get("rundir").and_then(serde_json::Value::as_str) {
            crate::ruledb::RuleDb::in_rundir(Path::new(rundir))
                .write_meta_pages(self.rules)
                .map_err(|e| format!("policy-loader: writing the rule database: {e}"))?;
        }
        Ok(())
    }
}

/// What the stand-in saw and will answer; survives stopping and restarting the server.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<State>>);

impl Recorder {
    /// A manager started with `--config` for each of `configs`, in order (missing files are
    /// left out). It loads them now, as the real one does at start-up.
    pub fn manager(configs: Vec<PathBuf>) -> Recorder {
        let recorder = Recorder::default();
        let mut state = recorder.lock();
        state.configs = configs;
        state.reload();
        drop(state);
        recorder
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The configuration the manager runs.
    pub fn running(&self) -> serde_json::Value {
        self.lock().running.clone()
    }

    /// Make every call take `time` (default [`CALL_TIME`]).
    pub fn set_call_time(&self, time: std::time::Duration) {
        self.lock().call_time = Some(time);
    }

    fn call_time(&self) -> std::time::Duration {
        self.lock().call_time.unwrap_or(CALL_TIME)
    }

    /// Why each refused reload or renew was refused (what the real manager logs).
    pub fn refusals(&self) -> Vec<String> {
        self.lock().refusals.clone()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .calls
            .clone()
    }

    /// The paths called so far, in order.
    pub fn paths(&self) -> Vec<String> {
        self.calls().into_iter().map(|c| c.path).collect()
    }

    /// Answer the next call with `status` (queued: several can be set).
    pub fn answer_next(&self, status: u16) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .answers
            .push_back(status);
    }

    /// Record a call and carry it out. It is done before the call is visible: the real
    /// manager answers once it runs the result, so whoever sees the call sees what it made.
    fn record(&self, method: &str, path: &str) -> u16 {
        let mut state = self.lock();
        let status = state.answers.pop_front().unwrap_or(200);
        if status == 200 {
            match path {
                "/reload" | "/reload/force" => state.reload(),
                "/renew" | "/renew/force" => state.renew(),
                _ => {}
            }
        }
        state.calls.push(Call {
            method: method.into(),
            path: path.into(),
            status,
            at: Instant::now(),
        });
        status
    }
}

/// A running stand-in; stops (and removes its socket) when dropped.
pub struct StandIn {
    socket: Option<PathBuf>,
    task: JoinHandle<()>,
}

impl StandIn {
    /// Listen on the unix socket `socket` and record into `recorder`.
    pub fn start(socket: &Path, recorder: Recorder) -> std::io::Result<StandIn> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, recorder.clone()));
            }
        });
        Ok(StandIn {
            socket: Some(socket.to_owned()),
            task,
        })
    }

    /// Listen on TCP `127.0.0.1:0`; returns the port.
    pub async fn start_tcp(recorder: Recorder) -> std::io::Result<(StandIn, u16)> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, recorder.clone()));
            }
        });
        Ok((StandIn { socket: None, task }, port))
    }
}

/// The configuration `configs` make: each parsed as the manager parses (JSON, then YAML),
/// merged, and checked against the closed schema.
fn load(configs: &[PathBuf]) -> Result<serde_json::Value, String> {
    let mut merged = serde_json::Map::new();
    for path in configs.iter().filter(|p| p.exists()) {
        let content = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let doc =
            config::parse(&path.display().to_string(), &content).map_err(|e| e.to_string())?;
        let serde_json::Value::Object(doc) = doc else {
            unreachable!("parse returns a mapping");
        };
        merge(&mut merged, doc, "")?;
    }
    let merged = serde_json::Value::Object(merged);
    schema().check(&merged).map_err(|e| {
        format!(
            "the merged configuration is invalid at {}: {}",
            e.pointer, e.message
        )
    })?;
    Ok(merged)
}

fn merge(
    into: &mut serde_json::Map<String, serde_json::Value>,
    from: serde_json::Map<String, serde_json::Value>,
    at: &str,
) -> Result<(), String> {
    for (key, value) in from {
        let path = format!("{at}/{key}");
        match (into.get_mut(&key), value) {
            (Some(serde_json::Value::Object(old)), serde_json::Value::Object(new)) => {
                merge(old, new, &path)?
            }
            (Some(_), _) => return Err(format!("duplicity key {path}")),
            (None, value) => {
                into.insert(key, value);
            }
        }
    }
    Ok(())
}

fn schema() -> &'static config::Schema {
    static SCHEMA: std::sync::OnceLock<config::Schema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        config::Schema::compile(config::EMBEDDED_SCHEMA).expect("the embedded schema compiles")
    })
}

async fn serve<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(stream: S, recorder: Recorder) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let recorder = recorder.clone();
        let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
        async move {
            let (status, body) = match (method.as_str(), path.as_str()) {
                // Queries are answered at once, not recorded: the calls are what kres-kafka
                // asks it to do.
                ("GET", "/v1/config") => (200, Bytes::from(recorder.running().to_string())),
                ("GET", "/schema") => (200, Bytes::from_static(config::EMBEDDED_SCHEMA)),
                ("GET", _) => (404, Bytes::from_static(b"not found")),
                (method, path) => {
                    tokio::time::sleep(recorder.call_time()).await;
                    match recorder.record(method, path) {
                        200 if matches!(path, "/reload" | "/reload/force") => {
                            (200, Bytes::from_static(b"Reloading..."))
                        }
                        200 => (200, Bytes::from_static(b"Renewing configuration...")),
                        status => (status, Bytes::from_static(b"stand-in manager told to fail")),
                    }
                }
            };
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(socket) = &self.socket {
            let _ = std::fs::remove_file(socket);
        }
    }
}
