//! A stand-in for the Knot Resolver manager on a unix socket: it records every call and answers
//! `200`, or the statuses it was told to. The demo shows kres-kafka working without a resolver;
//! the end-to-end tests use it to see the calls and to make the manager fail or disappear.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
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
}

/// What the stand-in saw and will answer; survives stopping and restarting the server.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<State>>);

impl Recorder {
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

    fn record(&self, method: &str, path: &str) -> u16 {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let status = state.answers.pop_front().unwrap_or(200);
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

async fn serve<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(stream: S, recorder: Recorder) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let status = recorder.record(req.method().as_str(), req.uri().path());
        let body = if status == 200 {
            ""
        } else {
            "stand-in manager told to fail"
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
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
