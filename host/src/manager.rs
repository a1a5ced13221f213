//! The resolver's management API: `POST /reload` and `POST /renew` (or their `/force`
//! variants) to the Knot Resolver manager, over its unix socket or TCP interface, with hyper.
//!
//! This module makes calls, retries them while the manager is unreachable (with backoff, until
//! shutdown), and says how they failed; rolling back is the daemon's decision. It never touches
//! the files directory.

use crate::config::Management;
use crate::outcome::Action;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::sync::CancellationToken;

/// How long one call may take. A reload makes the manager validate the configuration and
/// restart workers, which can take long with large RPZ files; past this the outcome is unknown
/// and the call is treated as unreachable (retried: reload and renew are idempotent).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a query (`GET /v1/config`, `GET /schema`) may take: the manager answers these
/// from memory.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the manager serves the configuration it runs.
pub const CONFIG_PATH: &str = "/v1/config";
/// Where the manager serves its JSON Schema.
pub const SCHEMA_PATH: &str = "/schema";

/// First wait before calling an unreachable manager again; doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two calls to an unreachable manager: it comes back within seconds
/// after a restart, and an operator waiting for a reload should not wait much longer.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Longest error body kept for logs.
const MAX_BODY_IN_LOG: usize = 2048;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No answer: connection refused, socket missing, timeout. Worth retrying.
    #[error("the manager at {endpoint} is unreachable: {reason}")]
    Unreachable { endpoint: String, reason: String },
    /// The manager answered with an error status: it refused the request.
    #[error("the manager at {endpoint} answered {status} to POST {path}: {body}")]
    Refused {
        endpoint: String,
        path: String,
        status: u16,
        body: String,
    },
    /// The manager answered with success, but what it was asked for did not happen: a 6.x
    /// manager answers 200 to a reload or renew it refused. `why` says what was seen.
    #[error("the manager at {endpoint} answered POST {path}, but it did not take effect: {why}")]
    NoEffect {
        endpoint: String,
        path: String,
        why: String,
    },
}

/// A client of one resolver's manager.
#[derive(Debug, Clone)]
pub struct Manager {
    endpoint: Management,
    force: bool,
    timeout: Duration,
}

impl CallError {
    /// Every result of a call as in metrics: `ok`, or a [`CallError::kind`].
    pub const RESULTS: [&'static str; 3] = ["ok", "refused", "unreachable"];

    /// The result as in metrics: `refused` or `unreachable`.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Unreachable { .. } => "unreachable",
            CallError::Refused { .. } | CallError::NoEffect { .. } => "refused",
        }
    }
}

impl Manager {
    pub fn new(endpoint: Management, force: bool) -> Self {
        Manager {
            endpoint,
            force,
            timeout: CALL_TIMEOUT,
        }
    }

    /// What a call that did not take effect is: [`CallError::NoEffect`] naming this manager.
    pub fn no_effect(&self, action: Action, why: String) -> CallError {
        CallError::NoEffect {
            endpoint: self.endpoint.to_string(),
            path: self.path(action).unwrap_or("none").to_owned(),
            why,
        }
    }

    /// The API path for `action`.
    pub fn path(&self, action: Action) -> Option<&'static str> {
        match (action, self.force) {
            (Action::None, _) => None,
            (Action::Renew, false) => Some("/renew"),
            (Action::Renew, true) => Some("/renew/force"),
            (Action::Reload, false) => Some("/reload"),
            (Action::Reload, true) => Some("/reload/force"),
        }
    }

    /// Ask the manager for `action`.
    pub async fn call(&self, action: Action) -> Result<(), CallError> {
        let Some(path) = self.path(action) else {
            return Ok(());
        };
        let unreachable = |reason: String| CallError::Unreachable {
            endpoint: self.endpoint.to_string(),
            reason,
        };
        let (status, body) = tokio::time::timeout(self.timeout, self.request(Method::POST, path))
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(unreachable)?;
        if status.is_success() {
            return Ok(());
        }
        let mut body = String::from_utf8_lossy(&body).trim().to_owned();
        if body.len() > MAX_BODY_IN_LOG {
            body.truncate(body.floor_char_boundary(MAX_BODY_IN_LOG));
            body.push_str("...");
        }
        Err(CallError::Refused {
            endpoint: self.endpoint.to_string(),
            path: path.to_owned(),
            status: status.as_u16(),
            body,
        })
    }

    /// Ask for `action` until the manager answers, waiting longer after each failure to reach
    /// it; give up only at `shutdown`. `attempted` sees every attempt's result (for metrics).
    pub async fn call_with_retry(
        &self,
        action: Action,
        shutdown: &CancellationToken,
        mut attempted: impl FnMut(&Result<(), CallError>),
    ) -> Result<(), CallError> {
        let mut wait = RETRY_FIRST;
        loop {
            let result = self.call(action).await;
            attempted(&result);
            match result {
                Err(e @ CallError::Unreachable { .. }) => {
                    if shutdown.is_cancelled() {
                        tracing::error!(
                            "{e}: giving up at shutdown; the resolver does not run the files on disk yet"
                        );
                        return Err(e);
                    }
                    tracing::warn!("{e}; retrying in {wait:?}");
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                }
                other => return other,
            }
        }
    }

    /// Whether the manager answers at all: `GET /`, any status (a 6.x manager says its
    /// version there). Neither a call nor a query: the health probe's.
    pub async fn answers(&self) -> Result<(), String> {
        self.request(Method::GET, "/").await.map(|_| ())
    }

    /// The configuration the manager runs (`GET /v1/config`: the raw merged mapping of its
    /// files as it last accepted them). The only way to see whether a reload took effect: a
    /// 6.x manager answers 200 to a reload it refused.
    pub async fn running_config(&self) -> Result<serde_json::Value, String> {
        let body = self.get(CONFIG_PATH).await?;
        serde_json::from_slice(&body).map_err(|e| format!("GET {CONFIG_PATH}: not JSON: {e}"))
    }

    /// The JSON Schema the manager validates against (`GET /schema`), checked to be JSON.
    pub async fn schema(&self) -> Result<Bytes, String> {
        let body = self.get(SCHEMA_PATH).await?;
        serde_json::from_slice::<serde::de::IgnoredAny>(&body)
            .map_err(|e| format!("GET {SCHEMA_PATH}: not JSON: {e}"))?;
        Ok(body)
    }

    /// `GET path`, its body when the answer is 200, within [`QUERY_TIMEOUT`].
    async fn get(&self, path: &str) -> Result<Bytes, String> {
        let (status, body) = tokio::time::timeout(QUERY_TIMEOUT, self.request(Method::GET, path))
            .await
            .map_err(|_| format!("GET {path}: no answer within {QUERY_TIMEOUT:?}"))?
            .map_err(|e| format!("GET {path} from the manager at {}: {e}", self.endpoint))?;
        if status != StatusCode::OK {
            return Err(format!("GET {path}: the manager answered {status}"));
        }
        Ok(body)
    }

    async fn request(&self, method: Method, path: &str) -> Result<(StatusCode, Bytes), String> {
        match &self.endpoint {
            Management::UnixSocket(socket) => {
                let stream = UnixStream::connect(socket)
                    .await
                    .map_err(|e| e.to_string())?;
                exchange(stream, "localhost", method, path).await
            }
            Management::Interface { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(|e| e.to_string())?;
                exchange(stream, host, method, path).await
            }
        }
    }
}

/// One HTTP/1.1 request on a fresh connection.
async fn exchange<S>(
    stream: S,
    host: &str,
    method: Method,
    path: &str,
) -> Result<(StatusCode, Bytes), String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::standin::{Recorder, StandIn};

    #[tokio::test]
    async fn calls_reach_the_manager_over_a_unix_socket_and_tcp() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kres-api.sock");
        let recorder = Recorder::default();
        let _unix = StandIn::start(&socket, recorder.clone()).unwrap();
        let (_tcp, port) = StandIn::start_tcp(recorder.clone()).await.unwrap();

        Manager::new(Management::UnixSocket(socket), false)
            .call(Action::Reload)
            .await
            .unwrap();
        let tcp = Management::Interface {
            host: "127.0.0.1".into(),
            port,
        };
        Manager::new(tcp, true).call(Action::Renew).await.unwrap();
        Manager::new(Management::UnixSocket(dir.path().join("x")), false)
            .call(Action::None)
            .await
            .unwrap();
        let calls: Vec<_> = recorder
            .calls()
            .into_iter()
            .map(|c| (c.method, c.path))
            .collect();
        assert_eq!(
            calls,
            [
                ("POST".into(), "/reload".into()),
                ("POST".into(), "/renew/force".into())
            ]
        );
    }

    #[tokio::test]
    async fn error_status_is_a_refusal_and_no_socket_is_unreachable() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("kres-api.sock");
        let recorder = Recorder::default();
        let _unix = StandIn::start(&socket, recorder.clone()).unwrap();
        recorder.answer_next(500);
        let err = Manager::new(Management::UnixSocket(socket.clone()), false)
            .call(Action::Reload)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CallError::Refused { status: 500, path, body, .. } if path == "/reload" && body.contains("told to fail")),
            "{err}"
        );

        let missing = dir.path().join("missing.sock");
        let err = Manager::new(Management::UnixSocket(missing), false)
            .call(Action::Renew)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CallError::Unreachable { endpoint, .. } if endpoint.contains("missing.sock")),
            "{err}"
        );
    }
}
