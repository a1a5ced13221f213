//! What an operator scrapes: counters of messages by outcome, rejections by kind, guest
//! failures, manager calls, rollbacks and guest swaps, and gauges of consumer lag, the time
//! since the last commit, a paused delivery and the manager's reachability, in the Prometheus
//! text format on `GET /metrics` at `kafka.metrics-address` (off by default). The same listener
//! answers `GET /health` and `GET /ready` ([`crate::health`]).
//!
//! Every labelled counter is present at zero from the start for each label it can take (the
//! outcomes, skip reasons, rejection and failure kinds; the broker error kinds and manager
//! paths once the daemon names them), so that an alert on it can be written, and tried, before
//! the first failure.
//!
//! Other modules only call the recording methods; this module owns the registry and the HTTP
//! endpoint, and never blocks the consumer.

use crate::health::Health;
use crate::outcome::{GuestFailure, Outcome, RejectKind, SkipReason};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type Labels = Vec<(String, String)>;

/// The daemon's counters; cheap to clone (a handle).
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    messages: Family<Labels, Counter>,
    received: Counter,
    received_bytes: Counter,
    batches: Counter,
    skipped: Family<Labels, Counter>,
    skipped_bytes: Family<Labels, Counter>,
    commit_failures: Counter,
    broker_errors: Family<Labels, Counter>,
    rejections: Family<Labels, Counter>,
    guest_failures: Family<Labels, Counter>,
    manager_calls: Family<Labels, Counter>,
    rollbacks: Counter,
    committed_bytes: Counter,
    swaps: Counter,
    swap_refusals: Counter,
    io_retries: Counter,
    status_failures: Counter,
    guest: Family<Labels, Gauge>,
    delivery_paused: Gauge,
    bootstraps: Counter,
    bootstrap_files: Counter,
    offsets_lost: Counter,
    consumer_lag: Family<Labels, Gauge>,
    manager_reachable: Gauge,
    since_commit: Gauge<f64, AtomicU64>,
    /// When a file was last committed (the start, before the first).
    last_commit: Mutex<std::time::Instant>,
    /// The partitions `consumer_lag` has a value for.
    lag_partitions: Mutex<std::collections::BTreeSet<i32>>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Make the series of `labels` exist, at zero unless it had a value.
fn at_zero<M: Default>(family: &Family<Labels, M>, labels: &Labels) {
    let _series = family.get_or_create(labels);
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kres_kafka");
        let inner = Inner {
            messages: Family::default(),
            received: Counter::default(),
            received_bytes: Counter::default(),
            batches: Counter::default(),
            skipped: Family::default(),
            skipped_bytes: Family::default(),
            commit_failures: Counter::default(),
            broker_errors: Family::default(),
            rejections: Family::default(),
            guest_failures: Family::default(),
            manager_calls: Family::default(),
            rollbacks: Counter::default(),
            committed_bytes: Counter::default(),
            swaps: Counter::default(),
            swap_refusals: Counter::default(),
            io_retries: Counter::default(),
            bootstraps: Counter::default(),
            bootstrap_files: Counter::default(),
            offsets_lost: Counter::default(),
            status_failures: Counter::default(),
            guest: Family::default(),
            delivery_paused: Gauge::default(),
            consumer_lag: Family::default(),
            manager_reachable: Gauge::default(),
            since_commit: Gauge::default(),
            last_commit: Mutex::new(std::time::Instant::now()),
            lag_partitions: Mutex::default(),
            registry: Registry::default(),
        };
        for outcome in Outcome::NAMES {
            at_zero(&inner.messages, &labels(&[("outcome", outcome)]));
        }
        for why in SkipReason::ALL {
            at_zero(&inner.skipped, &labels(&[("reason", why.as_str())]));
            // Replayed messages were fetched for this resolver: not counted as fetched for
            // nothing.
            if why != SkipReason::Replayed {
                at_zero(&inner.skipped_bytes, &labels(&[("reason", why.as_str())]));
            }
        }
        for kind in RejectKind::ALL {
            at_zero(&inner.rejections, &labels(&[("kind", kind.as_str())]));
        }
        for kind in GuestFailure::KINDS {
            at_zero(&inner.guest_failures, &labels(&[("kind", kind)]));
        }
        registry.register(
            "messages",
            "Messages processed, by outcome",
            inner.messages.clone(),
        );
        registry.register(
            "received",
            "Messages received from Kafka (before processing)",
            inner.received.clone(),
        );
        registry.register(
            "received_bytes",
            "Bytes of message values received from Kafka",
            inner.received_bytes.clone(),
        );
        registry.register(
            "batches",
            "Batches handed to the guest (each one group commit)",
            inner.batches.clone(),
        );
        registry.register(
            "skipped",
            "Messages not for this resolver, by reason (other-host, other-zone, no-recipient)",
            inner.skipped.clone(),
        );
        registry.register(
            "skipped_bytes",
            "Bytes of message values not for this resolver, by reason: with received_bytes, what was fetched for nothing",
            inner.skipped_bytes.clone(),
        );
        registry.register(
            "commit_failures",
            "Offset commits to the group that the broker refused or did not answer (the journal holds the positions)",
            inner.commit_failures.clone(),
        );
        registry.register(
            "broker_errors",
            "Errors of the Kafka clients (consumer, status producer) by kind (authentication, tls, transport, other); each is retried",
            inner.broker_errors.clone(),
        );
        registry.register(
            "rejections",
            "Messages rejected by the guest, by kind",
            inner.rejections.clone(),
        );
        registry.register(
            "guest_failures",
            "Calls into the guest that failed (time limit, memory cap, trap)",
            inner.guest_failures.clone(),
        );
        registry.register(
            "manager_calls",
            "Calls to the resolver's manager, by path and result",
            inner.manager_calls.clone(),
        );
        registry.register(
            "rollbacks",
            "Configuration files restored after the manager refused a reload",
            inner.rollbacks.clone(),
        );
        registry.register(
            "committed_bytes",
            "Bytes of files committed",
            inner.committed_bytes.clone(),
        );
        registry.register(
            "guest_swaps",
            "Guests switched to while running",
            inner.swaps.clone(),
        );
        registry.register(
            "guest_swap_refusals",
            "New guests refused (failed to compile, check or self-test)",
            inner.swap_refusals.clone(),
        );
        registry.register(
            "io_retries",
            "Messages offered again because the files directory could not be written",
            inner.io_retries.clone(),
        );
        registry.register(
            "status_failures",
            "Status records that could not be queued or delivered to the status topic",
            inner.status_failures.clone(),
        );
        registry.register(
            "guest_info",
            "The guest in use (value 1), by version and SHA-256",
            inner.guest.clone(),
        );
        registry.register(
            "delivery_paused",
            "1 while delivery is paused because the files directory cannot be written, else 0",
            inner.delivery_paused.clone(),
        );
        registry.register(
            "bootstraps",
            "Starts that read the state topic first (an empty journal, or offsets lost)",
            inner.bootstraps.clone(),
        );
        registry.register(
            "bootstrap_files",
            "Files whose current version (or removal) the state topic gave at a start",
            inner.bootstrap_files.clone(),
        );
        registry.register(
            "offsets_lost",
            "Messages the broker no longer held when the journal's position needed them",
            inner.offsets_lost.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages on each partition read that are not done yet: the high watermark librdkafka last saw minus the next offset to finish",
            inner.consumer_lag.clone(),
        );
        registry.register(
            "manager_reachable",
            "1 when the resolver's manager answered its last call or probe, else 0",
            inner.manager_reachable.clone(),
        );
        registry.register(
            "seconds_since_last_commit",
            "Seconds since a file was last committed to the files directory (since the start, before the first)",
            inner.since_commit.clone(),
        );
        Metrics {
            inner: Arc::new(Inner { registry, ..inner }),
        }
    }
}

impl Metrics {
    /// Count a message received from Kafka, of `bytes` bytes of value.
    pub fn received(&self, bytes: usize) {
        self.inner.received.inc();
        self.inner.received_bytes.inc_by(bytes as u64);
    }

    /// Count `bytes` of a message that was not for this resolver, skipped for `reason`.
    pub fn skipped_bytes(&self, reason: &str, bytes: usize) {
        self.inner
            .skipped_bytes
            .get_or_create(&labels(&[("reason", reason)]))
            .inc_by(bytes as u64);
    }

    /// Count an offset commit that failed.
    pub fn commit_failed(&self) {
        self.inner.commit_failures.inc();
    }

    /// Count an error a Kafka client (`consumer` or `status`) reported, by `kind`
    /// (authentication, tls, transport, other); librdkafka retries each on its own.
    pub fn broker_error(&self, client: &str, kind: &str) {
        self.inner
            .broker_errors
            .get_or_create(&labels(&[("client", client), ("kind", kind)]))
            .inc();
    }

    /// Bytes of values received, and how many of them were for this resolver.
    pub fn addressed_share(&self) -> (u64, u64) {
        let received = self.inner.received_bytes.get();
        let skipped: u64 = ["other-host", "other-zone", "no-recipient"]
            .iter()
            .map(|r| {
                self.inner
                    .skipped_bytes
                    .get_or_create(&labels(&[("reason", r)]))
                    .get()
            })
            .sum();
        (received, received.saturating_sub(skipped))
    }

    /// Start the counter of each broker error kind of each Kafka client at zero.
    pub fn expect_broker_errors(&self, clients: &[&str], kinds: &[&str]) {
        for client in clients {
            for kind in kinds {
                at_zero(
                    &self.inner.broker_errors,
                    &labels(&[("client", client), ("kind", kind)]),
                );
            }
        }
    }

    /// Start the counter of each manager call path and result at zero.
    pub fn expect_manager_calls(&self, paths: &[&str], results: &[&str]) {
        for path in paths {
            for result in results {
                at_zero(
                    &self.inner.manager_calls,
                    &labels(&[("path", path), ("result", result)]),
                );
            }
        }
    }

    /// The lag of each partition read, replacing the last: a partition no longer read goes.
    pub fn consumer_lag(&self, lags: &std::collections::BTreeMap<i32, i64>) {
        let mut shown = self
            .inner
            .lag_partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for gone in shown.difference(&lags.keys().copied().collect()) {
            self.inner
                .consumer_lag
                .remove(&labels(&[("partition", &gone.to_string())]));
        }
        *shown = lags.keys().copied().collect();
        for (partition, lag) in lags {
            self.inner
                .consumer_lag
                .get_or_create(&labels(&[("partition", &partition.to_string())]))
                .set(*lag);
        }
    }

    /// Whether the manager answered its last call or probe.
    pub fn manager_reachable(&self, reachable: bool) {
        self.inner.manager_reachable.set(i64::from(reachable));
    }

    /// Count a batch handed to the guest.
    pub fn batch(&self) {
        self.inner.batches.inc();
    }

    /// Count what happened to one message.
    pub fn record(&self, outcome: &Outcome) {
        if !outcome.is_durable() {
            self.inner.io_retries.inc();
            return;
        }
        self.message(outcome.name());
        match outcome {
            Outcome::Committed { size, .. } => {
                self.inner.committed_bytes.inc_by(*size);
                *self
                    .inner
                    .last_commit
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
            }
            Outcome::Rejected(r) => self.rejection(r.kind.as_str()),
            Outcome::Failed(f) => self.guest_failure(f.kind()),
            Outcome::Skipped { why, .. } => {
                self.inner
                    .skipped
                    .get_or_create(&labels(&[("reason", why.as_str())]))
                    .inc();
            }
            Outcome::Stored { .. } | Outcome::Unchanged { .. } | Outcome::Removed { .. } => {}
        }
    }
    fn message(&self, outcome: &str) {
        self.inner
            .messages
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc();
    }
    fn rejection(&self, kind: &str) {
        self.inner
            .rejections
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
    }
    fn guest_failure(&self, kind: &str) {
        self.inner
            .guest_failures
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
    }
    pub fn manager_call(&self, path: &str, result: &str) {
        self.inner
            .manager_calls
            .get_or_create(&labels(&[("path", path), ("result", result)]))
            .inc();
    }
    pub fn rollback(&self) {
        self.inner.rollbacks.inc();
    }
    /// Count a start that read the state topic, and the files it gave.
    pub fn bootstrapped(&self, files: usize) {
        self.inner.bootstraps.inc();
        self.inner.bootstrap_files.inc_by(files as u64);
    }

    /// Count `count` messages gone from the broker before they were read.
    pub fn offsets_lost(&self, count: u64) {
        self.inner.offsets_lost.inc_by(count);
    }

    /// Delivery paused (the files directory cannot be written) or going on.
    pub fn delivery_paused(&self, paused: bool) {
        self.inner.delivery_paused.set(i64::from(paused));
    }

    pub fn status_failure(&self) {
        self.inner.status_failures.inc();
    }
    pub fn swap_refused(&self) {
        self.inner.swap_refusals.inc();
    }
    /// The guest in use changed (or was loaded at start-up, with `swapped` false).
    pub fn guest(&self, version: &str, sha256: &str, swapped: bool) {
        if swapped {
            self.inner.swaps.inc();
        }
        self.inner.guest.clear();
        self.inner
            .guest
            .get_or_create(&labels(&[("version", version), ("sha256", sha256)]))
            .set(1);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let since = self
            .inner
            .last_commit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        self.inner.since_commit.set(since.as_secs_f64());
        let mut out = String::new();
        encode(&mut out, &self.inner.registry).expect("writing to a String does not fail");
        out
    }
}

/// What the listener answers to `GET path`: status, content type and body.
fn answer(path: &str, metrics: &Metrics, health: &Health) -> (StatusCode, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let verdict = |v: crate::health::Verdict| {
        let status = if v.ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, TEXT, v.body)
    };
    match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.render(),
        ),
        "/health" => verdict(health.live()),
        "/ready" => verdict(health.ready()),
        _ => (
            StatusCode::NOT_FOUND,
            TEXT,
            "not found: try /metrics, /health or /ready\n".to_owned(),
        ),
    }
}

/// Serve `GET /metrics`, `/health` and `/ready` on `address` until `closed`, on a task of
/// `tasks`. Returns the bound address. The daemon closes it last, after its stop's work, so
/// that `/ready` says "stopping" while the stop goes on.
pub async fn serve(
    address: (String, u16),
    metrics: Metrics,
    health: Health,
    closed: CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind((address.0.as_str(), address.1))
        .await
        .map_err(|e| anyhow::anyhow!("kafka.metrics-address {}@{}: {e}", address.0, address.1))?;
    let bound = listener.local_addr()?;
    tasks.spawn(async move {
        loop {
            let stream = tokio::select! {
                () = closed.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let (metrics, health) = (metrics.clone(), health.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (status, content_type, body) = answer(req.uri().path(), &metrics, &health);
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static(content_type),
                    );
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_prometheus_format() {
        let m = Metrics::default();
        let committed = Outcome::Committed {
            file: "a.rpz".into(),
            action: crate::outcome::Action::Renew,
            size: 10,
            sha256: "ab".into(),
            config_changed: false,
        };
        m.record(&committed);
        m.record(&committed);
        m.record(&Outcome::Skipped {
            why: crate::outcome::SkipReason::OtherZone,
            reason: "for zone z2".into(),
        });
        m.record(&Outcome::Rejected(crate::outcome::Rejection {
            kind: crate::outcome::RejectKind::BadName,
            reason: "x".into(),
        }));
        m.manager_call("/reload", "ok");
        m.status_failure();
        m.guest("kres-kafka-guest 0.1.0", "abc", false);
        m.guest("kres-kafka-guest 0.2.0", "def", true);
        let text = m.render();
        assert!(
            text.contains("kres_kafka_messages_total{outcome=\"committed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("kres_kafka_rejections_total{kind=\"bad-name\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kres_kafka_skipped_total{reason=\"other-zone\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("kres_kafka_manager_calls_total{path=\"/reload\",result=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.contains("kres_kafka_guest_swaps_total 1"), "{text}");
        assert!(
            text.contains("kres_kafka_status_failures_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "kres_kafka_guest_info{version=\"kres-kafka-guest 0.2.0\",sha256=\"def\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("0.1.0"),
            "only the guest in use is listed: {text}"
        );
    }

    #[test]
    fn every_labelled_counter_is_there_at_zero_before_anything_happens() {
        let m = Metrics::default();
        m.expect_broker_errors(&["consumer"], &crate::kafka::ERROR_KINDS);
        m.expect_manager_calls(&["/reload", "/renew"], &crate::manager::CallError::RESULTS);
        let text = m.render();
        for line in [
            "kres_kafka_messages_total{outcome=\"rejected\"} 0",
            "kres_kafka_skipped_total{reason=\"replayed\"} 0",
            "kres_kafka_skipped_bytes_total{reason=\"other-host\"} 0",
            "kres_kafka_rejections_total{kind=\"bad-signature\"} 0",
            "kres_kafka_guest_failures_total{kind=\"memory-cap\"} 0",
            "kres_kafka_broker_errors_total{client=\"consumer\",kind=\"authentication\"} 0",
            "kres_kafka_manager_calls_total{path=\"/renew\",result=\"unreachable\"} 0",
            "kres_kafka_manager_reachable 0",
            "kres_kafka_delivery_paused 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
        assert!(!text.contains("skipped_bytes_total{reason=\"replayed\"}"));
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("kres_kafka_rejections_total{"))
                .count(),
            crate::outcome::RejectKind::ALL.len()
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("kres_kafka_seconds_since_last_commit ")),
            "{text}"
        );
    }

    #[test]
    fn lag_follows_the_partitions_read() {
        let m = Metrics::default();
        m.consumer_lag(&[(0, 5), (1, 0)].into());
        let text = m.render();
        assert!(
            text.contains("kres_kafka_consumer_lag{partition=\"0\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("kres_kafka_consumer_lag{partition=\"1\"} 0"),
            "{text}"
        );
        m.consumer_lag(&[(1, 2)].into());
        let text = m.render();
        assert!(
            !text.contains("partition=\"0\""),
            "partition 0 no longer read: {text}"
        );
        assert!(
            text.contains("kres_kafka_consumer_lag{partition=\"1\"} 2"),
            "{text}"
        );
    }
}
