//! The SASL password in `kafka.sasl-password-file`, watched from before the first connection:
//! a daemon started with a wrong password, whose logins the broker refuses, takes the fixed
//! one without a restart, as does one whose password is rotated while it runs.
//!
//! Started before any Kafka client is made (the order [`super::run`] keeps: watchers first,
//! then clients), so that no change falls between a client reading the file and the watch.

use crate::config::Settings;
use crate::kafka;
use crate::status::Status;
use tokio::sync::mpsc;

/// The watch on the password file, and the password the clients were last given.
pub(super) struct Passwords {
    /// `None` without SASL.
    _watcher: Option<notify::RecommendedWatcher>,
    changes: mpsc::UnboundedReceiver<()>,
    /// A change was seen: the file is read once its writer had this long to finish.
    settled_at: Option<tokio::time::Instant>,
    current: Option<String>,
}

impl Passwords {
    /// Start watching `kafka.sasl-password-file`, then read the password the clients about to
    /// be made will use.
    pub(super) fn watch(kafka: &Settings) -> anyhow::Result<Passwords> {
        let (tx, changes) = mpsc::unbounded_channel();
        let watcher = match &kafka.sasl {
            Some(sasl) => Some(crate::watch::file(
                &sasl.password_file,
                "kafka.sasl-password-file",
                tx,
            )?),
            None => None,
        };
        Ok(Passwords {
            _watcher: watcher,
            changes,
            settled_at: None,
            current: kafka.sasl.as_ref().and_then(|s| s.password().ok()),
        })
    }

    /// Wait until the file changed (forever without SASL), then a moment for its writer to
    /// finish; the events meanwhile count as one. Cancel-safe: the daemon's loop drops it
    /// whenever another branch comes first (a consumer error, while logins fail, comes every
    /// few hundred milliseconds), and a change seen before that is kept, not lost with it.
    pub(super) async fn changed(&mut self) {
        if self.settled_at.is_none() {
            if self.changes.recv().await.is_none() {
                return std::future::pending().await;
            }
            self.settled_at = Some(tokio::time::Instant::now() + crate::swap::SETTLE);
        }
        if let Some(at) = self.settled_at {
            tokio::time::sleep_until(at).await;
        }
        self.settled_at = None;
        while self.changes.try_recv().is_ok() {}
    }

    /// Whether the file changed since last asked, without waiting: for a loop that cannot
    /// await [`Passwords::changed`] (the consumer's wait for the broker).
    pub(super) fn changed_now(&mut self) -> bool {
        let mut changed = self.settled_at.take().is_some();
        while self.changes.try_recv().is_ok() {
            changed = true;
        }
        changed
    }

    /// Give the consumer and the status producer the password now in the file, if it changed:
    /// their next connections authenticate with it. A file that cannot be read, or is empty
    /// (half-written), keeps the password in use.
    pub(super) fn take_new(
        &mut self,
        kafka: &Settings,
        consumer: &kafka::Consumer,
        status: &Status,
    ) {
        use rdkafka::consumer::Consumer as _;
        let Some(sasl) = &kafka.sasl else { return };
        let file = sasl.password_file.display();
        let new = match sasl.changed_password(self.current.as_deref()) {
            Ok(Some(new)) => new,
            Ok(None) => {
                tracing::debug!(%file, "kafka.sasl-password-file changed, not the password (or it is empty)");
                return;
            }
            Err(e) => {
                tracing::warn!(%file, "reading kafka.sasl-password-file: {e}; keeping the password in use");
                return;
            }
        };
        let consumer = kafka::set_sasl_credentials(consumer.client(), &sasl.username, &new);
        let producer = status.set_sasl_credentials(&sasl.username, &new);
        match consumer.and(producer) {
            Ok(()) => {
                tracing::info!(%file, username = %sasl.username, "new SASL password: the next connections authenticate with it");
                self.current = Some(new);
            }
            Err(e) => tracing::error!(%file, "taking the new SASL password: {e}"),
        }
    }

    /// The password the clients were last given.
    #[cfg(test)]
    fn current(&self) -> Option<&str> {
        self.current.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test(start_paused = true)]
    async fn a_change_seen_by_a_wait_that_was_dropped_is_not_lost() {
        // The daemon's loop drops the wait whenever another branch is ready first; one dropped
        // while it lets the writer finish must not take the change with it.
        let (tx, changes) = mpsc::unbounded_channel();
        let mut passwords = Passwords {
            _watcher: None,
            changes,
            settled_at: None,
            current: None,
        };
        tx.send(()).unwrap();
        let dropped = tokio::time::timeout(crate::swap::SETTLE / 2, passwords.changed()).await;
        assert!(
            dropped.is_err(),
            "the wait ended before the writer had time"
        );
        tokio::time::timeout(crate::swap::SETTLE, passwords.changed())
            .await
            .expect("the change seen before the drop was lost");
    }

    #[tokio::test]
    async fn a_password_fixed_before_the_broker_ever_answered_is_taken() {
        // 1. SASL to a broker that is not there (a closed port): no login ever succeeds.
        // 2. The watch starts first, then the consumer is made with the wrong password.
        // 3. The file is fixed: the change is seen without waiting for the broker, and the
        //    consumer is given the new password.
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "wrong\n").unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "hostname: r1\nkafka:\n  server: 127.0.0.1@9\n  files-dir: {}\n  security-protocol: sasl_plaintext\n  sasl-mechanism: SCRAM-SHA-512\n  sasl-username: r1\n  sasl-password-file: {}\n",
                dir.path().display(),
                password.display()
            ),
        )
        .unwrap();
        let config = crate::config::Config::load(&[config]).unwrap();
        let kafka = &config.kafka;
        let mut passwords = Passwords::watch(kafka).unwrap();
        assert_eq!(passwords.current(), Some("wrong"));
        let consumer: kafka::Consumer = {
            let context = kafka::ReaderContext::new(crate::metrics::Metrics::default());
            kafka::consumer_config(kafka, "c")
                .create_with_context(context)
                .unwrap()
        };
        std::fs::write(&password, "right\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !passwords.changed_now() {
            assert!(Instant::now() < deadline, "the change was not seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        passwords.take_new(kafka, &consumer, &Status::off());
        assert_eq!(passwords.current(), Some("right"));
    }
}
