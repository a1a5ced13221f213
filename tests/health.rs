//! What an operator's monitoring sees: `/health` and `/ready` through a daemon's life, and the
//! alert rules and dashboard in `deploy/` naming only metrics a live daemon exports.

mod common;

use common::Tmpfs;
use common::daemon::{Broker, Host, SIGTERM, free_port, get, metric, scrape};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ME: &str = "resolver1";

/// How long `/ready` may take to follow a change: the daemon's probe looks every 5 s.
const FOLLOWS_WITHIN: Duration = Duration::from_secs(20);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A host whose daemon serves metrics, health and readiness on the port returned.
fn host_with_listener(broker: &Broker) -> (Host, u16) {
    let port = free_port();
    let host = Host::with(
        &broker.server(),
        ME,
        &format!("metrics-address: 127.0.0.1@{port}\n"),
        &[],
    );
    (host, port)
}

/// Wait until `GET path` answers `status` with a body for which `body` holds; fail with the
/// last answer and the daemon's log.
async fn wait_for_answer(
    host: &mut Host,
    port: u16,
    path: &str,
    status: u16,
    body: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + FOLLOWS_WITHIN;
    let mut last = None;
    loop {
        let answer = get(port, path);
        if let Some((s, b)) = &answer
            && *s == status
            && body(b)
        {
            return b.clone();
        }
        last = answer.or(last);
        assert!(
            Instant::now() < deadline,
            "GET {path}: waited {FOLLOWS_WITHIN:?} for {status}; last answer {last:?}\n{}",
            host.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_follow_the_daemon_from_start_to_stop() {
    // 1. Starting: the broker is down. `/health` is 200 (alive, starting), `/ready` 503
    //    saying it is starting.
    // 2. The broker comes up: `/ready` is 200 `ready`. It goes away: 503 naming it; back: 200.
    // 3. The manager goes away: `/ready` 503 names its socket, the gauge says 0; it comes
    //    back: 200, gauge 1.
    // 4. The files directory goes read-only: 503 saying so, `/health` still 200; writable
    //    again: 200.
    // 5. Stopping: SIGTERM while a manager call of 3 s is owed. Until the daemon is gone,
    //    `/ready` says "stopping" and never 200 after it, `/health` stays 200; then the
    //    listener is closed and the daemon exits 0, the owed call served.
    let broker = Broker::start(2);
    let (mut host, port) = host_with_listener(&broker);
    let files = host.files();
    let tmpfs = Tmpfs::mount(&files, "size=4m");
    broker.cluster.broker_down(1).unwrap();
    host.start();

    let alive = wait_for_answer(&mut host, port, "/health", 200, |_| true).await;
    assert!(alive.starts_with("alive: starting"), "{alive}");
    let starting = wait_for_answer(&mut host, port, "/ready", 503, |_| true).await;
    assert!(
        starting.starts_with("not ready\n")
            && starting.contains("starting: the broker has not described the topic yet"),
        "{starting}"
    );

    // 2.
    broker.cluster.broker_up(1).unwrap();
    let ready = wait_for_answer(&mut host, port, "/ready", 200, |_| true).await;
    assert_eq!(ready, "ready\n");
    let alive = get(port, "/health").unwrap();
    assert!(
        alive.0 == 200 && alive.1.starts_with("alive: consuming"),
        "{alive:?}"
    );
    assert_eq!(metric(port, "kres_kafka_manager_reachable"), 1);
    // The broker goes away after the start: 503 naming it, `/health` still 200; back: 200.
    broker.cluster.broker_down(1).unwrap();
    let away = wait_for_answer(&mut host, port, "/ready", 503, |_| true).await;
    assert!(
        away.starts_with("not ready\nbroker unreachable: no broker connected (")
            && away.contains(&broker.server().replace('@', ":")),
        "{away}"
    );
    assert_eq!(
        get(port, "/health").unwrap().0,
        200,
        "a broker away is not a stuck daemon"
    );
    broker.cluster.broker_up(1).unwrap();
    wait_for_answer(&mut host, port, "/ready", 200, |_| true).await;

    // 3.
    host.manager_down();
    let socket = host.dir.path().join("kres-api.sock");
    let down = wait_for_answer(&mut host, port, "/ready", 503, |b| b.contains("manager")).await;
    assert!(
        down.contains(&format!(
            "manager unreachable: management.unix-socket {}: ",
            socket.display()
        )),
        "{down}"
    );
    assert_eq!(
        get(port, "/health").unwrap().0,
        200,
        "a manager away is not a stuck daemon"
    );
    assert_eq!(metric(port, "kres_kafka_manager_reachable"), 0);
    host.manager_up();
    wait_for_answer(&mut host, port, "/ready", 200, |_| true).await;
    assert_eq!(metric(port, "kres_kafka_manager_reachable"), 1);

    // 4.
    tmpfs.remount("ro");
    let read_only = wait_for_answer(&mut host, port, "/ready", 503, |_| true).await;
    assert!(
        read_only.contains(&format!(
            "files directory not writable: kafka.files-dir {}: Read-only file system",
            host.files().display()
        )),
        "{read_only}"
    );
    assert_eq!(get(port, "/health").unwrap().0, 200);
    tmpfs.remount("rw");
    wait_for_answer(&mut host, port, "/ready", 200, |_| true).await;

    // 5.
    host.manager.set_call_time(Duration::from_secs(3));
    let rpz = kres_kafka::demo::sample_rpz(1000);
    broker.publish_upstream(ME, "block.rpz", &rpz).await;
    host.wait_for("the file", |h| h.holds("block.rpz", &rpz))
        .await;
    host.signal(SIGTERM);
    // The signal takes a moment to arrive: `ready` may come before the first `stopping`,
    // never after it.
    let (mut saw_stopping, mut answers) = (false, Vec::new());
    let deadline = Instant::now() + FOLLOWS_WITHIN;
    while let Some((status, body)) = get(port, "/ready") {
        if body.contains("stopping") {
            saw_stopping = true;
            let live = get(port, "/health");
            assert!(live.as_ref().is_none_or(|(s, _)| *s == 200), "{live:?}");
        }
        assert!(
            !(saw_stopping && status == 200),
            "ready again while stopping: {answers:?} {body}\n{}",
            host.logs()
        );
        answers.push(body);
        assert!(
            Instant::now() < deadline,
            "the listener stayed open\n{}",
            host.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        saw_stopping,
        "never said stopping: {answers:?}\n{}",
        host.logs()
    );
    // Signal 0: only waited for, not signalled again (a second SIGTERM exits at once).
    assert!(host.stop(0).await.success(), "{}", host.logs());
    assert_eq!(
        host.manager.paths(),
        ["/renew"],
        "the owed call was served at stop"
    );
}

/// The metric names in `text` (`kres_kafka_...`), as the rules and dashboard write them.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("kres_kafka_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

/// `promtool`, from Debian's `prometheus` package; `.ci/run` installs it.
fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("promtool is missing: .ci/run installs Debian's prometheus package, which has it");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_rules_and_dashboard_name_only_metrics_a_live_daemon_exports() {
    // 1. `promtool check rules` accepts deploy/prometheus/kres-kafka.rules.yml.
    // 2. The dashboard is JSON, with panels.
    // 3. A daemon that has delivered nothing yet exports every metric either names (labelled
    //    counters start at zero; the lag once the partitions are read).
    let rules = workspace().join("deploy/prometheus/kres-kafka.rules.yml");
    let dashboard = workspace().join("deploy/grafana/kres-kafka.json");
    match promtool() {
        Some(promtool) => {
            let out = std::process::Command::new(promtool)
                .args(["check", "rules"])
                .arg(&rules)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "promtool check rules:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => eprintln!("promtool is not installed: the rules' syntax is not checked here"),
    }
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let dashboard_text = std::fs::read_to_string(&dashboard).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard_text).unwrap();
    assert!(
        parsed["panels"].as_array().is_some_and(|p| !p.is_empty()),
        "no panels in {}",
        dashboard.display()
    );

    let broker = Broker::start(2);
    let (mut host, port) = host_with_listener(&broker);
    host.start();
    host.wait_for("the lag of each partition", |_| {
        scrape(port).contains("kres_kafka_consumer_lag{partition=\"1\"}")
    })
    .await;
    let exported: BTreeSet<String> = scrape(port)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect();
    for (what, text) in [("rules", &rules_text), ("dashboard", &dashboard_text)] {
        let named = names_in(text);
        assert!(named.len() >= 5, "{what} name {named:?}");
        let missing: Vec<_> = named.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "the {what} name metrics the daemon does not export: {missing:?}\nexported: {exported:?}"
        );
    }
    assert!(host.stop(SIGTERM).await.success());
}
