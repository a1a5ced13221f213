//! A restart resumes at once, on the defaults (no test here sets a group option): the real
//! `kres-kafka run` binary against librdkafka's mock broker, stopped as an operator's system
//! would stop it, started again, and timed from its start to its first new file.
//!
//! The mock offers the consumer protocol (KIP-848), so `group-protocol: auto` picks it: a
//! daemon that stopped cleanly has left the group, and its successor is assigned the partition
//! at once. One that was killed did not leave; its partition is the broker's to give back
//! when the killed member's session times out, which is a broker setting
//! (`group.consumer.session.timeout.ms`: 45 s on Kafka, 30 s on the mock). The kill test sets
//! the mock's to a few seconds, so that "one session timeout, not two" shows in seconds.

mod common;

use common::daemon::{Broker, Host, SIGKILL, SIGTERM, broker_with_session_timeout};
use std::time::{Duration, Instant};

const ME: &str = "resolver1";

/// The bound after a clean stop, from the daemon's start to the new file on disk.
const AFTER_SIGTERM: Duration = Duration::from_secs(3);

/// The mock's session timeout and heartbeat interval (consumer protocol) in the kill test.
const MOCK_SESSION_TIMEOUT: Duration = Duration::from_secs(5);
const MOCK_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// kres-kafka's default `session-timeout`, the classic protocol's.
const CLASSIC_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Added to a session timeout in the kill test's bound: the successor's first heartbeats, its
/// start-up, and a loaded CI machine. Less than a session timeout, so that two would fail.
const MARGIN: Duration = Duration::from_secs(2);

/// The group protocol run `run` of `host` chose, as its log says.
fn protocol(host: &Host, run: usize) -> &'static str {
    let log = host.log_of(run);
    if log.contains("group protocol: consumer") {
        "consumer"
    } else if log.contains("group protocol: classic") {
        "classic"
    } else {
        panic!("run {run} did not log its group protocol\n{log}")
    }
}

/// Start the daemon again, publish a new file, and return how long it took from the start to
/// the file being on disk.
async fn restart_and_time(broker: &Broker, host: &mut Host, name: &str) -> Duration {
    let started = Instant::now();
    host.start();
    broker
        .publish_upstream(ME, name, b"after the restart")
        .await;
    host.wait_for(name, |h| h.holds(name, b"after the restart"))
        .await;
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_a_restart_consumes_a_new_message_within_3_s() {
    // 1. The daemon, on the defaults, consumes a first file: it holds the partition.
    // 2. SIGTERM: it exits 0, having left the group.
    // 3. Started again, it consumes a newly published file within 3 s of starting.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    broker.publish_upstream(ME, "before.rpz", b"before").await;
    host.wait_for("the first file", |h| h.holds("before.rpz", b"before"))
        .await;
    assert!(host.stop(SIGTERM).await.success(), "{}", host.logs());
    assert!(
        host.log_of(1).contains("left the consumer group"),
        "{}",
        host.logs()
    );

    let took = restart_and_time(&broker, &mut host, "after.rpz").await;
    eprintln!(
        "SIGTERM, {} protocol: the restarted daemon consumed a new message {took:?} after starting",
        protocol(&host, 2)
    );
    assert!(
        took <= AFTER_SIGTERM,
        "after SIGTERM the restarted daemon ({} protocol) took {took:?} to consume a new message, more than {AFTER_SIGTERM:?}\n{}",
        protocol(&host, 2),
        host.logs()
    );
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_a_restart_consumes_within_one_session_timeout() {
    // 1. The daemon, on the defaults, consumes a first file: it holds the partition.
    // 2. SIGKILL: it leaves nothing behind but its membership.
    // 3. Started again at once, it consumes a newly published file within one session timeout
    //    of the protocol it uses (the broker's for the consumer protocol, kres-kafka's for the
    //    classic one), plus a margin smaller than a session timeout.
    let broker = broker_with_session_timeout(MOCK_SESSION_TIMEOUT, MOCK_HEARTBEAT_INTERVAL);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    broker.publish_upstream(ME, "before.rpz", b"before").await;
    host.wait_for("the first file", |h| h.holds("before.rpz", b"before"))
        .await;
    host.stop(SIGKILL).await;

    let took = restart_and_time(&broker, &mut host, "after.rpz").await;
    let protocol = protocol(&host, 2);
    // With the consumer protocol the successor learns of its assignment at its next heartbeat.
    let (session, bound) = match protocol {
        "consumer" => (
            MOCK_SESSION_TIMEOUT,
            MOCK_SESSION_TIMEOUT + MOCK_HEARTBEAT_INTERVAL + MARGIN,
        ),
        _ => (CLASSIC_SESSION_TIMEOUT, CLASSIC_SESSION_TIMEOUT + MARGIN),
    };
    eprintln!(
        "SIGKILL, {protocol} protocol, session timeout {session:?}: the restarted daemon consumed a new message {took:?} after starting"
    );
    assert!(
        took <= bound,
        "after SIGKILL the restarted daemon ({protocol} protocol, session timeout {session:?}) took {took:?} to consume a new message, more than {bound:?}\n{}",
        host.logs()
    );
    assert!(host.stop(SIGTERM).await.success());
}
