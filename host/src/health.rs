//! What `GET /health` and `GET /ready` answer, for systemd, load balancers and monitoring.
//!
//! - **Live** (`/health`): the process answers and its main loop went round within the stall
//!   limit. Only a stuck daemon fails it, so a liveness check that restarts on failure restarts
//!   nothing that would have recovered: a broker or a manager away, a paused delivery and a stop
//!   in progress are all live.
//! - **Ready** (`/ready`): delivering now. Consuming (the broker described the topic and the
//!   partitions are assigned, a broker connected, and no stop has begun), the manager reachable (its last call or
//!   probe got an answer), delivery not paused, the files directory writable, and live. Each
//!   condition that fails is one line of the answer, saying why.
//!
//! This module only keeps the state and judges it; the daemon tells it what happens, and the
//! metrics listener serves the verdicts. It never blocks and never does I/O.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Shortest stall limit: longer than any wait the loop makes on purpose between two turns
/// (a paused delivery waits up to 30 s between tries; the commit timer turns it every 5 s).
pub const MIN_STALL_LIMIT: Duration = Duration::from_secs(120);

/// The stall limit for a guest given `guest_time_limit` per message: [`MIN_STALL_LIMIT`], or
/// four messages at the time limit if that is longer, so that a batch of slow messages is not
/// taken for a stuck loop.
pub fn stall_limit(guest_time_limit: Duration) -> Duration {
    MIN_STALL_LIMIT.max(guest_time_limit * 4)
}

/// Where a start is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the broker to describe the topic.
    Starting,
    /// Partitions assigned, the loop serving.
    Consuming,
}

/// The daemon's health, cheap to clone (a handle).
#[derive(Clone)]
pub struct Health {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    stall_limit: Duration,
    /// Cancelled when the daemon stops: from then on it is not ready.
    shutdown: CancellationToken,
    state: Mutex<State>,
}

struct State {
    phase: Phase,
    /// When the main loop (or the wait for the broker before it) last went round.
    turned: Instant,
    /// `None` until the first call or probe; then whether the manager answered, or why not.
    manager: Option<Result<(), String>>,
    /// Why delivery is paused, while it is.
    paused: Option<String>,
    /// `None` until the first probe; then whether the files directory can be written.
    files_dir: Option<Result<(), String>>,
    /// Why no broker is connected, while none is (after the start: before it, `Starting`
    /// says why).
    broker: Option<String>,
}

/// A verdict: the status line's body, and whether it is good (200) or not (503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub ok: bool,
    /// One line per finding, each ending in a newline.
    pub body: String,
}

impl Health {
    /// A daemon starting now, that stops at `shutdown`; stuck once its loop has not turned
    /// for `stall_limit`.
    pub fn new(stall_limit: Duration, shutdown: CancellationToken) -> Health {
        Health {
            inner: std::sync::Arc::new(Inner {
                stall_limit,
                shutdown,
                state: Mutex::new(State {
                    phase: Phase::Starting,
                    turned: Instant::now(),
                    manager: None,
                    paused: None,
                    files_dir: None,
                    broker: None,
                }),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The loop went round.
    pub fn turned(&self) {
        self.state().turned = Instant::now();
    }

    /// Partitions are assigned: the daemon consumes.
    pub fn consuming(&self) {
        let mut state = self.state();
        state.phase = Phase::Consuming;
        state.turned = Instant::now();
    }

    /// The manager answered (a call or a probe, whatever its status), or did not, and why.
    pub fn manager(&self, answered: Result<(), String>) {
        self.state().manager = Some(answered);
    }

    /// Delivery paused, and why; or going on (`None`).
    pub fn paused(&self, why: Option<String>) {
        self.state().paused = why;
    }

    /// Whether the files directory can be written, or why not.
    pub fn files_dir(&self, writable: Result<(), String>) {
        self.state().files_dir = Some(writable);
    }

    /// Whether a broker is connected (`None`), or why not.
    pub fn broker(&self, down: Option<String>) {
        self.state().broker = down;
    }

    /// `/health`: live unless the loop has not turned for the stall limit.
    pub fn live(&self) -> Verdict {
        let since = self.state().turned.elapsed();
        if since > self.inner.stall_limit {
            return Verdict {
                ok: false,
                body: format!(
                    "stuck: the main loop last turned {:.0} s ago (limit {} s)\n",
                    since.as_secs_f64(),
                    self.inner.stall_limit.as_secs()
                ),
            };
        }
        let doing = if self.inner.shutdown.is_cancelled() {
            "stopping"
        } else {
            match self.state().phase {
                Phase::Starting => "starting",
                Phase::Consuming => "consuming",
            }
        };
        Verdict {
            ok: true,
            body: format!(
                "alive: {doing}, the main loop turned {:.1} s ago\n",
                since.as_secs_f64()
            ),
        }
    }

    /// `/ready`: ready when nothing below keeps it from delivering; else one line per reason.
    pub fn ready(&self) -> Verdict {
        let mut not = Vec::new();
        let live = self.live();
        if self.inner.shutdown.is_cancelled() {
            not.push("stopping".to_owned());
        }
        if !live.ok {
            not.push(live.body.trim_end().to_owned());
        }
        let state = self.state();
        if state.phase == Phase::Starting && !self.inner.shutdown.is_cancelled() {
            not.push("starting: the broker has not described the topic yet".to_owned());
        }
        match &state.manager {
            None => not.push("manager: not reached yet".to_owned()),
            Some(Err(why)) => not.push(format!("manager unreachable: {why}")),
            Some(Ok(())) => {}
        }
        if let (Phase::Consuming, Some(why)) = (state.phase, &state.broker) {
            not.push(format!("broker unreachable: {why}"));
        }
        if let Some(why) = &state.paused {
            not.push(format!("delivery paused: {why}"));
        }
        match &state.files_dir {
            None => not.push("files directory: not checked yet".to_owned()),
            Some(Err(why)) => not.push(format!("files directory not writable: {why}")),
            Some(Ok(())) => {}
        }
        if not.is_empty() {
            return Verdict {
                ok: true,
                body: "ready\n".to_owned(),
            };
        }
        Verdict {
            ok: false,
            body: std::iter::once("not ready".to_owned())
                .chain(not)
                .map(|l| l + "\n")
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready_health() -> (Health, CancellationToken) {
        let shutdown = CancellationToken::new();
        let health = Health::new(Duration::from_secs(120), shutdown.clone());
        health.consuming();
        health.manager(Ok(()));
        health.files_dir(Ok(()));
        (health, shutdown)
    }

    #[tokio::test(start_paused = true)]
    async fn ready_only_when_consuming_with_a_manager_a_writable_directory_and_no_pause() {
        let shutdown = CancellationToken::new();
        let health = Health::new(Duration::from_secs(120), shutdown.clone());
        let starting = health.ready();
        assert!(!starting.ok);
        for line in [
            "not ready\n",
            "starting: the broker has not described the topic yet\n",
            "manager: not reached yet\n",
            "files directory: not checked yet\n",
        ] {
            assert!(starting.body.contains(line), "{line}: {}", starting.body);
        }
        assert!(health.live().ok, "starting is alive");

        let (health, shutdown) = ready_health();
        assert_eq!(
            health.ready(),
            Verdict {
                ok: true,
                body: "ready\n".into()
            }
        );
        health.manager(Err(
            "management.unix-socket /run/x: connection refused".into()
        ));
        health.paused(Some("files dir not writable: disk full".into()));
        let not = health.ready();
        assert!(!not.ok);
        assert!(
            not.body.contains(
                "manager unreachable: management.unix-socket /run/x: connection refused\n"
            ) && not
                .body
                .contains("delivery paused: files dir not writable: disk full\n"),
            "{}",
            not.body
        );
        health.manager(Ok(()));
        health.paused(None);
        health.files_dir(Err("kafka.files-dir /f: Read-only file system".into()));
        assert_eq!(
            health.ready().body,
            "not ready\nfiles directory not writable: kafka.files-dir /f: Read-only file system\n"
        );
        health.files_dir(Ok(()));
        assert!(health.ready().ok);
        health.broker(Some("no broker connected (b:9092/1 DOWN)".into()));
        assert_eq!(
            health.ready().body,
            "not ready\nbroker unreachable: no broker connected (b:9092/1 DOWN)\n"
        );
        assert!(health.live().ok, "a broker away is no reason to restart");
        health.broker(None);
        assert!(health.ready().ok);

        shutdown.cancel();
        assert_eq!(health.ready().body, "not ready\nstopping\n");
        let live = health.live();
        assert!(
            live.ok && live.body.starts_with("alive: stopping"),
            "{live:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_turning_is_neither_live_nor_ready() {
        let (health, _shutdown) = ready_health();
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(health.live().ok);
        health.turned();
        tokio::time::advance(Duration::from_secs(119)).await;
        assert!(
            health.live().ok && health.ready().ok,
            "it turned in between"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let live = health.live();
        assert!(!live.ok);
        assert!(
            live.body
                .starts_with("stuck: the main loop last turned 121 s ago (limit 120 s)"),
            "{}",
            live.body
        );
        assert!(health.ready().body.contains("stuck:"));
    }

    #[test]
    fn the_stall_limit_covers_slow_guests() {
        assert_eq!(stall_limit(Duration::from_secs(30)), MIN_STALL_LIMIT);
        assert_eq!(
            stall_limit(Duration::from_secs(60)),
            Duration::from_secs(240)
        );
    }
}
