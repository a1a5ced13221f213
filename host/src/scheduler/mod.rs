//! The debounced action scheduler (SPEC section 2, step 6).
//!
//! Commits ask for a renew or a reload; the scheduler turns a burst of them into one call:
//!
//! - a call is made once no request has come for the debounce delay;
//! - a reload covers a pending renew (the manager re-reads every file on reload);
//! - a request that arrives while a call is in flight is kept and served after it, debounced
//!   again: never dropped;
//! - when every [`Scheduler`] handle is dropped (the daemon's shutdown), what is pending is
//!   served at once rather than after the delay, then the task ends.
//!
//! - a call owed survives a hard kill: `request` records the strongest action owed in a
//!   [`PendingMarker`] (fsynced) before the caller stores the message's offset, and the task
//!   clears it once every request has been served; the daemon asks again at start-up.
//!
//! The marker lives in `marker`. The scheduler knows nothing of HTTP: it hands [`Batch`]es to an [`Executor`].

use crate::outcome::{Action, Outcome};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant, sleep_until};
use tokio_util::task::TaskTracker;

mod marker;

pub use marker::PendingMarker;

/// One request: what a commit needs, and which configuration file it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    /// The configuration file committed, for a reload (the daemon restores its backup if the
    /// manager refuses the reload).
    pub config_file: Option<String>,
    /// Whether that commit must change the manager's running configuration.
    pub config_changed: bool,
    /// The commit's transfer (its `transfer-id` header), reported with the call that serves it.
    pub transfer_id: Option<String>,
    /// The file committed and the hex SHA-256 of its new content (empty for a file withdrawn):
    /// a rollback restores the
    /// file only while it still holds that version.
    pub committed: Option<(String, String)>,
}

/// What one call must do: the strongest action requested, and every configuration file
/// committed since the last call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub action: Action,
    pub config_files: Vec<String>,
    /// The configuration files whose commit must change the manager's running configuration
    /// (when the manager loads them): a reload that leaves it unchanged was refused.
    pub changed_configs: Vec<String>,
    /// How many requests this batch serves.
    pub requests: usize,
    /// The transfers whose commits this batch serves, for the status topic.
    pub transfer_ids: Vec<String>,
    /// Each file committed (configurations, RPZ and any other), with the digest of its last
    /// commit in the batch: what a rollback puts back.
    pub committed: Vec<(String, String)>,
}

impl Batch {
    fn add(&mut self, request: Request) {
        self.requests += 1;
        self.action = self.action.max(request.action);
        if let Some(id) = request.transfer_id
            && !self.transfer_ids.contains(&id)
        {
            self.transfer_ids.push(id);
        }
        if let Some((file, sha256)) = request.committed {
            match self.committed.iter_mut().find(|(f, _)| *f == file) {
                Some(entry) => entry.1 = sha256,
                None => self.committed.push((file, sha256)),
            }
        }
        if let Some(file) = request.config_file {
            if request.config_changed && !self.changed_configs.contains(&file) {
                self.changed_configs.push(file.clone());
            }
            if !self.config_files.contains(&file) {
                self.config_files.push(file);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.requests == 0
    }
}

/// Makes the calls. It may take as long as it needs (retries included); requests that arrive
/// meanwhile wait for the next batch. Returns whether the batch was served (the manager
/// answered); `false` (given up at shutdown) keeps the call owed.
pub trait Executor: Send + 'static {
    fn execute(&mut self, batch: Batch) -> impl Future<Output = bool> + Send;
}

/// What is owed to the manager, recorded durably: shared by [`Scheduler::request`], the
/// scheduler's task (which clears it once every request has been served) and the guest, which
/// raises it before a commit becomes visible ([`Ledger::owe`]). Requests are sent under its
/// lock, so the task's "nothing left, clear the marker" cannot race a new request.
pub struct Ledger {
    state: Mutex<Owed>,
}

struct Owed {
    marker: Option<PendingMarker>,
    recorded: Action,
    /// Raised by `owe` since the last request was sent: the commit it announced has not
    /// reached the scheduler yet, so the marker must stay.
    announced: bool,
}

impl Ledger {
    pub fn new(marker: Option<PendingMarker>) -> Arc<Ledger> {
        let recorded = marker.as_ref().map_or(Action::None, PendingMarker::read);
        Arc::new(Ledger {
            state: Mutex::new(Owed {
                marker,
                recorded,
                announced: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Owed> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record durably that `action` is owed, never weakening what is already owed. The guest
    /// calls it before a commit becomes visible.
    pub fn owe(&self, action: Action) -> std::io::Result<()> {
        let mut owed = self.lock();
        owed.raise(action)?;
        owed.announced = true;
        Ok(())
    }
}

impl Owed {
    fn raise(&mut self, action: Action) -> std::io::Result<()> {
        if self.recorded < action {
            if let Some(marker) = &self.marker {
                marker.write(action)?;
            }
            self.recorded = action;
        }
        Ok(())
    }
}

/// The sending side: cheap to clone, never blocks on the scheduler (it may write the marker).
#[derive(Clone)]
pub struct Scheduler {
    tx: mpsc::UnboundedSender<Request>,
    ledger: Arc<Ledger>,
}

impl Scheduler {
    /// Start the scheduler task. It ends once every `Scheduler` handle is dropped and what was
    /// pending has been served.
    pub fn spawn(
        delay: Duration,
        executor: impl Executor,
        marker: Option<PendingMarker>,
        tasks: &TaskTracker,
    ) -> (Scheduler, JoinHandle<()>) {
        Self::spawn_with(delay, executor, Ledger::new(marker), tasks)
    }

    /// [`Scheduler::spawn`] with a ledger the guest shares.
    pub fn spawn_with(
        delay: Duration,
        executor: impl Executor,
        ledger: Arc<Ledger>,
        tasks: &TaskTracker,
    ) -> (Scheduler, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tasks.spawn(run(rx, delay, executor, Arc::clone(&ledger)));
        (Scheduler { tx, ledger }, task)
    }

    /// Ask for what `outcome` needs: nothing, a renew, or a reload of the configuration file it
    /// committed. `transfer_id` is its message's, when it had one.
    pub fn request_for(&self, outcome: &Outcome, transfer_id: Option<String>) {
        let action = outcome.action();
        if action == Action::None {
            // A commit the guest announced (it owed the call, then renamed) whose message
            // ended otherwise: the journal could not be written and the retry found the file
            // in place, or the guest trapped after the rename. The call it owed is asked for
            // now, or it would wait for an unrelated request, and could be cleared by a weaker
            // one.
            let owed = {
                let owed = self.ledger.lock();
                owed.announced.then_some(owed.recorded)
            };
            if let Some(owed) = owed {
                self.request(owed, None);
            }
            return;
        }
        let config_file = outcome
            .file()
            .filter(|_| action == Action::Reload)
            .map(str::to_owned);
        let config_changed = matches!(
            outcome,
            Outcome::Committed {
                config_changed: true,
                ..
            }
        );
        let committed = match outcome {
            Outcome::Committed { file, sha256, .. } => Some((file.clone(), sha256.clone())),
            // No digest: the version the batch put there is the file's absence.
            Outcome::Removed { file, .. } => Some((file.clone(), String::new())),
            _ => None,
        };
        self.send(Request {
            action,
            config_file,
            config_changed,
            transfer_id,
            committed,
        });
    }

    /// Ask for `action`. Requests for `Action::None` are ignored. When it returns, the call is
    /// recorded as owed (durably, with a marker), so the caller may store its offset.
    pub fn request(&self, action: Action, config_file: Option<String>) {
        self.send(Request {
            action,
            config_file,
            config_changed: false,
            transfer_id: None,
            committed: None,
        });
    }

    fn send(&self, request: Request) {
        let action = request.action;
        if action == Action::None {
            return;
        }
        let mut owed = self.ledger.lock();
        if let Err(e) = owed.raise(action) {
            tracing::error!("recording the owed manager call: {e}; a crash now would lose it");
        }
        owed.announced = false;
        // The task runs as long as a handle exists.
        let _ = self.tx.send(request);
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Request>,
    delay: Duration,
    mut executor: impl Executor,
    ledger: Arc<Ledger>,
) {
    let mut batch = Batch::default();
    let mut open = true;
    loop {
        // Idle: wait for a first request.
        if batch.is_empty() {
            match rx.recv().await {
                Some(request) => batch.add(request),
                None => return,
            }
        }

        // Debounce: every request restarts the quiet period. A closed channel (shutdown)
        // ends it at once: what is pending is served now.
        let mut deadline = Instant::now() + delay;
        while open {
            tokio::select! {
                // Requests first: a request and the deadline at the same instant extend it.
                biased;
                request = rx.recv() => match request {
                    Some(request) => {
                        batch.add(request);
                        deadline = Instant::now() + delay;
                    }
                    None => open = false,
                },
                () = sleep_until(deadline) => break,
            }
        }

        // Call, keeping what arrives meanwhile for the next batch.
        let mut next = Batch::default();
        let served;
        let served_action = batch.action;
        {
            let call = executor.execute(std::mem::take(&mut batch));
            tokio::pin!(call);
            loop {
                tokio::select! {
                    // The call first: once it is done, what came meanwhile is the next batch.
                    biased;
                    done = &mut call => {
                        served = done;
                        break;
                    }
                    request = rx.recv(), if open => match request {
                        Some(request) => next.add(request),
                        None => open = false,
                    },
                }
            }
        }
        batch = next;
        if served && batch.is_empty() {
            let mut owed = ledger.lock();
            // Under the lock no request is being sent: an empty channel, and no commit
            // announced by the guest since the last request, means nothing is owed.
            if rx.is_empty() && !owed.announced {
                if served_action >= owed.recorded {
                    if let Some(marker) = &owed.marker
                        && let Err(e) = marker.clear()
                    {
                        tracing::warn!("clearing the owed-call marker: {e}");
                    }
                    owed.recorded = Action::None;
                } else {
                    // A stronger call is owed than the one just served (the guest owed a
                    // reload whose request never came): make it, never drop it.
                    batch.add(Request {
                        action: owed.recorded,
                        config_file: None,
                        config_changed: false,
                        transfer_id: None,
                        committed: None,
                    });
                }
            }
        }
        if batch.is_empty() && !open {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records each batch with the (paused) time it was executed; each call takes `takes`.
    #[derive(Clone, Default)]
    struct Recorder {
        calls: Arc<Mutex<Vec<(Duration, Batch)>>>,
        takes: Duration,
        start: Option<Instant>,
        give_up: bool,
    }

    impl Executor for Recorder {
        async fn execute(&mut self, batch: Batch) -> bool {
            let at = Instant::now() - self.start.unwrap();
            self.calls.lock().unwrap().push((at, batch));
            tokio::time::sleep(self.takes).await;
            !self.give_up
        }
    }

    fn recorder(takes: Duration) -> Recorder {
        Recorder {
            takes,
            start: Some(Instant::now()),
            ..Recorder::default()
        }
    }

    fn calls(r: &Recorder) -> Vec<(Duration, Action, usize)> {
        r.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(t, b)| (*t, b.action, b.requests))
            .collect()
    }

    const DELAY: Duration = Duration::from_secs(5);
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[tokio::test(start_paused = true)]
    async fn fifty_files_within_a_second_give_one_call() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone(), None, &TaskTracker::new());
        for _ in 0..50 {
            scheduler.request(Action::Renew, None);
            tokio::time::sleep(MS(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        // The last request came at 980 ms; the call 5 s after it.
        assert_eq!(calls(&rec), [(MS(980) + DELAY, Action::Renew, 50)]);
    }

    #[tokio::test(start_paused = true)]
    async fn reload_covers_a_pending_renew_and_keeps_the_config_names() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone(), None, &TaskTracker::new());
        scheduler.request(Action::Renew, None);
        scheduler.request(Action::Reload, Some("config.yaml".into()));
        scheduler.request(Action::Renew, None);
        scheduler.request(Action::Reload, Some("config.yaml".into()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        let batches = rec.calls.lock().unwrap().clone();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].1.action, Action::Reload);
        assert_eq!(batches[0].1.config_files, ["config.yaml"]);
    }

    #[tokio::test(start_paused = true)]
    async fn request_during_a_call_is_served_after_it() {
        let rec = recorder(Duration::from_secs(10));
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone(), None, &TaskTracker::new());
        scheduler.request(Action::Renew, None);
        // The call starts at 5 s and lasts until 15 s; this request comes in the middle.
        tokio::time::sleep(Duration::from_secs(7)).await;
        scheduler.request(Action::Reload, Some("c.yaml".into()));
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Served after the first call ends (15 s), debounced from there: 20 s.
        assert_eq!(
            calls(&rec),
            [
                (DELAY, Action::Renew, 1),
                (Duration::from_secs(20), Action::Reload, 1)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn separate_bursts_give_separate_calls() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone(), None, &TaskTracker::new());
        scheduler.request(Action::Renew, None);
        tokio::time::sleep(Duration::from_secs(10)).await;
        scheduler.request(Action::Renew, None);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            calls(&rec),
            [
                (DELAY, Action::Renew, 1),
                (Duration::from_secs(15), Action::Renew, 1)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_serves_what_is_pending_at_once() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, task) = Scheduler::spawn(DELAY, rec.clone(), None, &TaskTracker::new());
        scheduler.request(Action::Reload, Some("c.yaml".into()));
        tokio::time::sleep(MS(100)).await;
        drop(scheduler);
        task.await.unwrap();
        assert_eq!(calls(&rec), [(MS(100), Action::Reload, 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_call_still_serves_what_came_meanwhile() {
        let rec = recorder(Duration::from_secs(10));
        let (scheduler, task) = Scheduler::spawn(DELAY, rec.clone(), None, &TaskTracker::new());
        scheduler.request(Action::Renew, None);
        tokio::time::sleep(Duration::from_secs(6)).await;
        scheduler.request(Action::Reload, Some("c.yaml".into()));
        drop(scheduler);
        task.await.unwrap();
        assert_eq!(
            calls(&rec),
            [
                (DELAY, Action::Renew, 1),
                (Duration::from_secs(15), Action::Reload, 1)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_with_nothing_pending_makes_no_call() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, task) = Scheduler::spawn(DELAY, rec.clone(), None, &TaskTracker::new());
        drop(scheduler);
        task.await.unwrap();
        assert!(calls(&rec).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_for_nothing_are_ignored() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone(), None, &TaskTracker::new());
        scheduler.request(Action::None, None);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(calls(&rec).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_owed_call_is_recorded_until_served() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pending-action");
        let marker = || Some(PendingMarker::new(path.clone()));
        let rec = recorder(Duration::ZERO);
        let (scheduler, _task) =
            Scheduler::spawn(DELAY, rec.clone(), marker(), &TaskTracker::new());
        scheduler.request(Action::Renew, None);
        assert_eq!(PendingMarker::new(path.clone()).read(), Action::Renew);
        scheduler.request(Action::Reload, Some("c.yaml".into()));
        assert_eq!(PendingMarker::new(path.clone()).read(), Action::Reload);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(calls(&rec).len(), 1);
        assert!(!path.exists(), "served: nothing is owed");

        // A call given up (the manager unreachable at shutdown) stays owed for the next start.
        let rec = Recorder {
            give_up: true,
            ..recorder(Duration::ZERO)
        };
        let (scheduler, task) = Scheduler::spawn(DELAY, rec.clone(), marker(), &TaskTracker::new());
        scheduler.request(Action::Renew, None);
        drop(scheduler);
        task.await.unwrap();
        assert_eq!(PendingMarker::new(path.clone()).read(), Action::Renew);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_the_guest_owed_survives_a_batch_served_before_its_request() {
        // The guest raises the marker before its commit shows; the batch in flight is served
        // before the commit's request reaches the scheduler: the marker must stay, and weaker
        // requests never lower it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pending-action");
        let rec = recorder(Duration::from_secs(1));
        let ledger = Ledger::new(Some(PendingMarker::new(path.clone())));
        let (scheduler, _task) =
            Scheduler::spawn_with(DELAY, rec.clone(), Arc::clone(&ledger), &TaskTracker::new());
        scheduler.request(Action::Renew, None);
        tokio::time::sleep(DELAY + Duration::from_millis(500)).await;
        // The renew's call is in flight; the guest owes a reload meanwhile.
        ledger.owe(Action::Reload).unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(calls(&rec).len(), 1, "the renew was served");
        assert_eq!(
            PendingMarker::new(path.clone()).read(),
            Action::Reload,
            "the reload the guest owed is still recorded"
        );
        scheduler.request(Action::Renew, None);
        assert_eq!(PendingMarker::new(path.clone()).read(), Action::Reload);
        scheduler.request(Action::Reload, Some("c.yaml".into()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!path.exists(), "served: nothing is owed");
    }

    #[tokio::test(start_paused = true)]
    async fn an_owed_reload_whose_request_never_came_is_made_not_cleared_by_a_renew() {
        // The guest owed a reload and renamed, but its message ended as unchanged (the journal
        // could not be written, and the retry found the file in place): no request came. A
        // later renew is served; the reload owed must follow, not be cleared.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pending-action");
        let rec = recorder(Duration::ZERO);
        let ledger = Ledger::new(Some(PendingMarker::new(path.clone())));
        let (scheduler, _task) =
            Scheduler::spawn_with(DELAY, rec.clone(), Arc::clone(&ledger), &TaskTracker::new());
        ledger.owe(Action::Reload).unwrap();
        scheduler.request_for(
            &Outcome::Unchanged {
                file: "c.yaml".into(),
            },
            None,
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(calls(&rec), [(DELAY, Action::Reload, 1)]);
        assert!(!path.exists(), "served: nothing is owed");

        // The same when a renew's request overtakes it.
        ledger.owe(Action::Reload).unwrap();
        scheduler.request(Action::Renew, None);
        tokio::time::sleep(Duration::from_secs(30)).await;
        let calls = calls(&rec);
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert_eq!((calls[1].1, calls[2].1), (Action::Renew, Action::Reload));
        assert!(!path.exists(), "served: nothing is owed");
    }
}
