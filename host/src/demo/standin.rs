//! A stand-in for the Knot Resolver 6.4.2 manager, on a unix socket or TCP: the demo shows
//! kres-kafka working without a resolver, and the end-to-end tests see its calls and make it
//! refuse, fail or disappear.
//!
//! It behaves as the real manager does where kres-kafka depends on it. It is started with a
//! `--config` list ([`Recorder::manager`]); `POST /reload` re-reads and merges those files
//! (mappings recursively; a key set in two files is an error, as the manager's "duplicity
//! key"), validates the result against Knot Resolver's schema treated as closed, and on any
//! error logs it and keeps the configuration it ran: it answers `200 Reloading...` either way.
//! `POST /renew` answers 200. `GET /v1/config` returns the configuration it runs (the raw merged
//! mapping), `GET /schema` the schema. A status set with [`Recorder::answer_next`] replaces the
//! next answer, for faults the real manager can also produce (a 500 while it restarts).

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
    /// Why each refused reload was refused, in order.
    refusals: Vec<String>,
}

impl State {
    /// Re-read, merge and validate the files; run them if they pass.
    fn reload(&mut self) {
        match load(&self.configs) {
            Ok(merged) => self.running = merged,
            Err(e) => self.refusals.push(e),
        }
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

    /// Why each refused reload was refused (what the real manager logs).
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

    /// Record a call and carry it out. A reload is done before the call is visible: the real
    /// manager answers `/reload` once it runs the result, so whoever sees the call sees the
    /// configuration it made.
    fn record(&self, method: &str, path: &str) -> u16 {
        let mut state = self.lock();
        let status = state.answers.pop_front().unwrap_or(200);
        if status == 200 && matches!(path, "/reload" | "/reload/force") {
            state.reload();
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
        let (method, path) = (req.method().as_str(), req.uri().path());
        let (status, body) = match (method, path) {
            // Queries are answered, not recorded: the calls are what kres-kafka asks it to do.
            ("GET", "/v1/config") => (200, Bytes::from(recorder.running().to_string())),
            ("GET", "/schema") => (200, Bytes::from_static(config::EMBEDDED_SCHEMA)),
            ("GET", _) => (404, Bytes::from_static(b"not found")),
            _ => match recorder.record(method, path) {
                200 if matches!(path, "/reload" | "/reload/force") => {
                    (200, Bytes::from_static(b"Reloading..."))
                }
                200 => (200, Bytes::new()),
                status => (status, Bytes::from_static(b"stand-in manager told to fail")),
            },
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        async move { Ok::<_, std::convert::Infallible>(response) }
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
