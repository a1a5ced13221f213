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
//! The scheduler knows nothing of HTTP or files: it hands [`Batch`]es to an [`Executor`].

use crate::types::Action;
use std::future::Future;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant, sleep_until};

/// One request: what a commit needs, and which configuration file it committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub action: Action,
    /// The configuration file committed, for a reload (the daemon restores its backup if the
    /// manager refuses the reload).
    pub config_file: Option<String>,
}

/// What one call must do: the strongest action requested, and every configuration file
/// committed since the last call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub action: Option<Action>,
    pub config_files: Vec<String>,
    /// How many requests this batch serves.
    pub requests: usize,
}

impl Batch {
    fn add(&mut self, request: Request) {
        self.requests += 1;
        self.action = self.action.max(Some(request.action));
        if let Some(file) = request.config_file
            && !self.config_files.contains(&file)
        {
            self.config_files.push(file);
        }
    }

    fn is_empty(&self) -> bool {
        self.requests == 0
    }
}

/// Makes the calls. It may take as long as it needs (retries included); requests that arrive
/// meanwhile wait for the next batch.
pub trait Executor: Send + 'static {
    fn execute(&mut self, batch: Batch) -> impl Future<Output = ()> + Send;
}

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct Scheduler {
    tx: mpsc::UnboundedSender<Request>,
}

impl Scheduler {
    /// Start the scheduler task. It ends once every `Scheduler` handle is dropped and what was
    /// pending has been served.
    pub fn spawn(delay: Duration, executor: impl Executor) -> (Scheduler, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(rx, delay, executor));
        (Scheduler { tx }, task)
    }

    /// Ask for `action`. Requests for `Action::None` are ignored.
    pub fn request(&self, action: Action, config_file: Option<String>) {
        if action != Action::None {
            // The task runs as long as a handle exists.
            let _ = self.tx.send(Request {
                action,
                config_file,
            });
        }
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Request>,
    delay: Duration,
    mut executor: impl Executor,
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
        {
            let call = executor.execute(std::mem::take(&mut batch));
            tokio::pin!(call);
            loop {
                tokio::select! {
                    // The call first: once it is done, what came meanwhile is the next batch.
                    biased;
                    () = &mut call => break,
                    request = rx.recv(), if open => match request {
                        Some(request) => next.add(request),
                        None => open = false,
                    },
                }
            }
        }
        batch = next;
        if batch.is_empty() && !open {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Records each batch with the (paused) time it was executed; each call takes `takes`.
    #[derive(Clone, Default)]
    struct Recorder {
        calls: Arc<Mutex<Vec<(Duration, Batch)>>>,
        takes: Duration,
        start: Option<Instant>,
    }

    impl Executor for Recorder {
        async fn execute(&mut self, batch: Batch) {
            let at = Instant::now() - self.start.unwrap();
            self.calls.lock().unwrap().push((at, batch));
            tokio::time::sleep(self.takes).await;
        }
    }

    fn recorder(takes: Duration) -> Recorder {
        Recorder {
            takes,
            start: Some(Instant::now()),
            ..Recorder::default()
        }
    }

    fn calls(r: &Recorder) -> Vec<(Duration, Option<Action>, usize)> {
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
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone());
        for _ in 0..50 {
            scheduler.request(Action::Renew, None);
            tokio::time::sleep(MS(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        // The last request came at 980 ms; the call 5 s after it.
        assert_eq!(calls(&rec), [(MS(980) + DELAY, Some(Action::Renew), 50)]);
    }

    #[tokio::test(start_paused = true)]
    async fn reload_covers_a_pending_renew_and_keeps_the_config_names() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone());
        scheduler.request(Action::Renew, None);
        scheduler.request(Action::Reload, Some("config.yaml".into()));
        scheduler.request(Action::Renew, None);
        scheduler.request(Action::Reload, Some("config.yaml".into()));
        tokio::time::sleep(Duration::from_secs(30)).await;
        let batches = rec.calls.lock().unwrap().clone();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].1.action, Some(Action::Reload));
        assert_eq!(batches[0].1.config_files, ["config.yaml"]);
    }

    #[tokio::test(start_paused = true)]
    async fn request_during_a_call_is_served_after_it() {
        let rec = recorder(Duration::from_secs(10));
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone());
        scheduler.request(Action::Renew, None);
        // The call starts at 5 s and lasts until 15 s; this request comes in the middle.
        tokio::time::sleep(Duration::from_secs(7)).await;
        scheduler.request(Action::Reload, Some("c.yaml".into()));
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Served after the first call ends (15 s), debounced from there: 20 s.
        assert_eq!(
            calls(&rec),
            [
                (DELAY, Some(Action::Renew), 1),
                (Duration::from_secs(20), Some(Action::Reload), 1)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn separate_bursts_give_separate_calls() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone());
        scheduler.request(Action::Renew, None);
        tokio::time::sleep(Duration::from_secs(10)).await;
        scheduler.request(Action::Renew, None);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            calls(&rec),
            [
                (DELAY, Some(Action::Renew), 1),
                (Duration::from_secs(15), Some(Action::Renew), 1)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_serves_what_is_pending_at_once() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, task) = Scheduler::spawn(DELAY, rec.clone());
        scheduler.request(Action::Reload, Some("c.yaml".into()));
        tokio::time::sleep(MS(100)).await;
        drop(scheduler);
        task.await.unwrap();
        assert_eq!(calls(&rec), [(MS(100), Some(Action::Reload), 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_call_still_serves_what_came_meanwhile() {
        let rec = recorder(Duration::from_secs(10));
        let (scheduler, task) = Scheduler::spawn(DELAY, rec.clone());
        scheduler.request(Action::Renew, None);
        tokio::time::sleep(Duration::from_secs(6)).await;
        scheduler.request(Action::Reload, Some("c.yaml".into()));
        drop(scheduler);
        task.await.unwrap();
        assert_eq!(
            calls(&rec),
            [
                (DELAY, Some(Action::Renew), 1),
                (Duration::from_secs(15), Some(Action::Reload), 1)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_with_nothing_pending_makes_no_call() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, task) = Scheduler::spawn(DELAY, rec.clone());
        drop(scheduler);
        task.await.unwrap();
        assert!(calls(&rec).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_for_nothing_are_ignored() {
        let rec = recorder(Duration::ZERO);
        let (scheduler, _task) = Scheduler::spawn(DELAY, rec.clone());
        scheduler.request(Action::None, None);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(calls(&rec).is_empty());
    }
}
