//! What an operator scrapes: counters of messages by outcome, rejections by kind, guest
//! failures, manager calls, rollbacks and guest swaps, in the Prometheus text format on
//! `GET /metrics` at `kafka.metrics-address` (off by default).
//!
//! Other modules only call the recording methods; this module owns the registry and the HTTP
//! endpoint, and never blocks the consumer.

use crate::outcome::Outcome;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
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
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
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
            registry: Registry::default(),
        };
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
        let mut out = String::new();
        encode(&mut out, &self.inner.registry).expect("writing to a String does not fail");
        out
    }
}

/// Serve `GET /metrics` on `address` until `shutdown`, on a task of `tasks`. Returns the bound
/// address.
pub async fn serve(
    address: (String, u16),
    metrics: Metrics,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind((address.0.as_str(), address.1))
        .await
        .map_err(|e| anyhow::anyhow!("kafka.metrics-address {}@{}: {e}", address.0, address.1))?;
    let bound = listener.local_addr()?;
    tasks.spawn(async move {
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let response = if req.uri().path() == "/metrics" {
                        let mut r = Response::new(Full::new(Bytes::from(metrics.render())));
                        r.headers_mut().insert(
                            hyper::header::CONTENT_TYPE,
                            hyper::header::HeaderValue::from_static(
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            ),
                        );
                        r
                    } else {
                        let mut r = Response::new(Full::new(Bytes::from_static(
                            b"not found: try /metrics\n",
                        )));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    };
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
}
