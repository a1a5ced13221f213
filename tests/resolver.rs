//! Knot Resolver as it really is: upstream's newest addressing (key = zone-id), a manager that
//! answers 200 to a reload it refused, and the resolver's own validator. The real binary
//! against an in-process broker and the stand-in manager, which behaves as the 6.4.2 manager
//! does (it merges its `--config` files, validates them, keeps its configuration on failure
//! and answers 200 either way).

mod common;

use common::daemon::{Broker, Host};
use std::path::{Path, PathBuf};
use std::process::Command;

const ME: &str = "resolver1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_zone_publisher_reaches_every_resolver_of_the_zone_and_no_other() {
    // 1. Two resolvers in zone dns-group1, one in dns-group2; the publisher puts its own
    //    hostname in the `hostname` header, as upstream's newest publisher does.
    // 2. A 1.2 MiB RPZ file (three chunks) and a configuration, keyed by dns-group1.
    // 3. Both arrive at the two resolvers of the zone; the third skips them (counted by
    //    reason) and never touches its directory.
    let broker = Broker::start(1);
    let mut group1 = [
        Host::with(&broker.server(), "r1", "zone-id: dns-group1\n", &[]),
        Host::with(&broker.server(), "r2", "zone-id: dns-group1\n", &[]),
    ];
    let mut other = Host::with(&broker.server(), "r3", "zone-id: dns-group2\n", &[]);
    for host in group1.iter_mut().chain([&mut other]) {
        host.start();
    }
    let rpz = kres_kafka::demo::sample_rpz(1_200_000);
    // Relative to the directory of the manager's first --config file, as the manager reads it.
    let config = b"local-data:\n  rpz:\n    - file: files/block.rpz\n".to_vec();
    broker
        .publish_to_zone("dns-group1", "publisher.example", "block.rpz", &rpz)
        .await;
    broker
        .publish_to_zone("dns-group1", "publisher.example", "config.yaml", &config)
        .await;
    for host in &mut group1 {
        host.wait_for("the zone's files and a reload", |h| {
            h.holds("block.rpz", &rpz)
                && h.holds("config.yaml", &config)
                && h.manager.paths() == ["/reload"]
        })
        .await;
        assert_eq!(
            host.manager.running()["local-data"]["rpz"][0]["file"],
            "files/block.rpz",
            "the manager runs the delivered configuration"
        );
    }
    other
        .wait_for("the other zone's messages skipped", |h| {
            h.logs().matches("why=\"other-zone\"").count() == 4
        })
        .await;
    assert!(common::tree(&other.files()).is_empty());
    assert!(other.manager.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_to_a_zone_is_delivered_by_key() {
    let broker = Broker::start(1);
    let mut host = Host::with(&broker.server(), ME, "zone-id: edge\n", &[]);
    host.start();
    let outbox = host.dir.path().join("outbox");
    std::fs::create_dir(&outbox).unwrap();
    std::fs::write(outbox.join("zone.dat"), b"by zone\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(["send", "--server", &broker.server(), "--topic"])
        .arg(common::daemon::TOPIC)
        .args(["--zone-id", "edge"])
        .arg(outbox.join("zone.dat"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("to zone edge"));
    host.wait_for("the file", |h| h.holds("zone.dat", b"by zone\n"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_the_manager_silently_refused_is_rolled_back() {
    // 1. A configuration the manager takes: it runs it.
    // 2. A second one that is valid alone but sets `hostname`, which the resolver's own file
    //    sets too: the manager refuses the merge ("duplicity key"), keeps the first, and
    //    answers 200, as Knot Resolver 6.4.2 does.
    // 3. kres-kafka sees that the running configuration did not change, restores the first
    //    version, reloads again, and says so; the files on disk are what the resolver runs.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    let good = b"logging:\n  level: info\n".to_vec();
    broker.publish_upstream(ME, "config.yaml", &good).await;
    host.wait_for("the first configuration running", |h| {
        h.manager.running()["logging"]["level"] == "info"
    })
    .await;

    let refused = b"logging:\n  level: debug\nhostname: elsewhere\n".to_vec();
    broker.publish_upstream(ME, "config.yaml", &refused).await;
    host.wait_for("the rollback and the second reload", |h| {
        h.manager.paths() == ["/reload", "/reload", "/reload"] && h.holds("config.yaml", &good)
    })
    .await;
    assert_eq!(
        host.manager.refusals().len(),
        1,
        "{:?}",
        host.manager.refusals()
    );
    assert!(host.manager.refusals()[0].contains("duplicity key /hostname"));
    assert_eq!(host.manager.running()["logging"]["level"], "info");
    let logs = host.logs();
    assert!(
        logs.contains("still runs its previous configuration")
            && logs.contains("restored from its backup"),
        "{logs}"
    );
    assert!(
        !host.path("config.yaml.backup").exists(),
        "the backup was used up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_the_manager_does_not_see_is_not_rolled_back() {
    // The same configuration, reformatted (a comment, `yes` for `true`): the manager's
    // running configuration does not change, and that is no refusal.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    let first = b"logging:\n  level: info\ndnssec:\n  log-bogus: true\n".to_vec();
    broker.publish_upstream(ME, "config.yaml", &first).await;
    host.wait_for("the first configuration", |h| h.manager.paths().len() == 1)
        .await;
    let reformatted =
        b"# the same, reformatted\nlogging: {level: info}\ndnssec: {log-bogus: yes}\n".to_vec();
    broker
        .publish_upstream(ME, "config.yaml", &reformatted)
        .await;
    host.wait_for("the second reload", |h| h.manager.paths().len() == 2)
        .await;
    // The reload's outcome is judged (and a rollback made) before the call counts as served.
    host.wait_for("no call owed", Host::owes_no_call).await;
    assert!(host.holds("config.yaml", &reformatted));
    assert_eq!(host.manager.paths(), ["/reload", "/reload"]);
    assert!(!host.logs().contains("restored"), "{}", host.logs());
}

/// A stand-in `kresctl` in `dir`: it logs its arguments and the files' content to `calls`,
/// and refuses (first line of stderr) any file that says `refuse-me`.
fn stand_in_kresctl(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("kresctl");
    let calls = dir.join("kresctl-calls");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> {calls}\nshift\nfor f in \"$@\"; do cat \"$f\" >> {calls}; done\n\
             if grep -q refuse-me \"$@\"; then echo 'validation error: /logging/level: refuse-me is not a level' >&2; echo more >&2; exit 1; fi\n",
            calls = calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolvers_own_validator_judges_the_merged_files() {
    // 1. `kresctl` on PATH: it becomes the validator by default.
    // 2. A configuration it accepts is committed; it was called with the resolver's own file
    //    and the new content, in the manager's order.
    // 3. One it refuses is not committed; the reason is its first line of error output.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    let bin = stand_in_kresctl(host.dir.path());
    host.env(
        "PATH",
        &format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
    );
    host.start();
    let good = b"logging:\n  level: info\n".to_vec();
    broker.publish_upstream(ME, "config.yaml", &good).await;
    host.wait_for("the accepted configuration", |h| {
        h.holds("config.yaml", &good)
    })
    .await;
    let calls = std::fs::read_to_string(host.dir.path().join("kresctl-calls")).unwrap();
    let first = calls.lines().next().unwrap();
    let resolver_file = host.dir.path().join("config.yaml").display().to_string();
    assert!(
        first.starts_with(&format!("validate {resolver_file} ")) && first.ends_with("/config.yaml"),
        "{first}"
    );
    assert!(
        calls.contains("hostname: resolver1") && calls.contains("level: info"),
        "{calls}"
    );

    broker
        .publish_upstream(ME, "config.yaml", b"logging:\n  level: info # refuse-me\n")
        .await;
    host.wait_for("the refusal", |h| h.logs().contains("outcome=\"rejected\""))
        .await;
    let logs = host.logs();
    assert!(
        logs.contains("is refused by the resolver's validator: validation error: /logging/level: refuse-me is not a level"),
        "{logs}"
    );
    assert!(host.holds("config.yaml", &good));
}

/// The datamodel cases and example configs of Knot Resolver 6.4.2, with their verdicts
/// (`tests/fixtures/kresconf`, whose README says where each comes from).
fn kresconf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kresconf/v6.4.2")
}

fn validate(files: &[PathBuf]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .arg("validate")
        .args(files)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn validate_accepts_every_valid_upstream_case_and_refuses_what_the_closed_schema_sees() {
    // 1. Every example config upstream validates, and the full config of every datamodel case
    //    upstream's own tests hold valid: `validate` accepts them all (exit 0).
    // 2. The invalid ones: each refused case names the file and the place; the three the
    //    schema can see are among them (the others break cross-field rules only the
    //    resolver's own validator knows).
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(kresconf().join("datamodel-test-cases/cases.json")).unwrap(),
    )
    .unwrap();
    let (mut valid, mut invalid) = (Vec::new(), Vec::new());
    for (i, case) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case-{i:02}.json"));
        std::fs::write(&path, case["full_config"].to_string()).unwrap();
        if case["valid_in_upstream_test"] == true {
            valid.push(path);
        } else {
            invalid.push((path, case["json_schema_v6.4.2_accepts"] == false));
        }
    }
    for example in [
        "config.example.docker.yaml",
        "config.example.internal.yaml",
        "config.example.isp.yaml",
        "config.example.personal.yaml",
        "config.yaml",
        "config.dev.yaml",
        "config.test-defer.yaml",
        "config.test-forward.yaml",
        "config.test-local-data.yaml",
        "config.test-rate-limiting.yaml",
    ] {
        valid.push(kresconf().join("etc-config").join(example));
    }
    let started = std::time::Instant::now();
    let (status, out) = validate(&valid);
    let per_file = started.elapsed() / valid.len() as u32;
    assert_eq!(status, Some(0), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": valid")).count(),
        valid.len(),
        "{out}"
    );
    eprintln!(
        "validate: {} valid files judged, {per_file:?} per file",
        valid.len()
    );

    let paths: Vec<PathBuf> = invalid.iter().map(|(p, _)| p.clone()).collect();
    let (status, out) = validate(&paths);
    assert_eq!(status, Some(1), "{out}");
    let refused: Vec<&str> = out.lines().filter(|l| l.contains(": invalid: ")).collect();
    for (path, schema_sees_it) in &invalid {
        let line = out
            .lines()
            .find(|l| l.starts_with(&path.display().to_string()))
            .unwrap();
        if *schema_sees_it {
            assert!(line.contains(": invalid: configuration"), "{line}");
            assert!(
                line.contains("refused by the resolver's schema at /"),
                "{line}"
            );
        }
    }
    eprintln!(
        "validate: {} of {} invalid datamodel cases refused by the closed schema alone",
        refused.len(),
        invalid.len()
    );
    let (status, out) = validate(&[
        kresconf().join("etc-config/config.migrate-test.yaml"),
        kresconf().join("etc-config/config.migrate-test2.yaml"),
    ]);
    assert_eq!(status, Some(1), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains(": invalid: ")).count(),
        2,
        "{out}"
    );
}

#[test]
fn validate_says_what_it_cannot_judge() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.yaml");
    let rpz = dir.path().join("block.dat");
    std::fs::write(&rpz, b"x").unwrap();
    let (status, out) = validate(&[rpz, missing]);
    assert_eq!(status, Some(2), "{out}");
    assert!(
        out.contains("block.dat: neither a configuration file"),
        "{out}"
    );
    assert!(
        out.contains("missing.yaml: cannot judge: reading it"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_never_undoes_a_newer_configuration() {
    // 1. v1 runs. The manager goes away; v2 is committed and its reload waits, retrying.
    // 2. v3 is committed meanwhile (its own reload comes after).
    // 3. The manager comes back and refuses v2's reload with an error status: the rollback
    //    must not put v2's backup over v3, which is another batch's to judge.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    let v1 = b"logging:\n  level: info\n".to_vec();
    broker.publish_upstream(ME, "config.yaml", &v1).await;
    host.wait_for("v1 running", |h| {
        h.manager.running()["logging"]["level"] == "info"
    })
    .await;
    host.manager_down();
    let v2 = b"logging:\n  level: notice\n".to_vec();
    broker.publish_upstream(ME, "config.yaml", &v2).await;
    host.wait_for("v2's reload retrying", |h| {
        h.holds("config.yaml", &v2) && h.logs().contains("unreachable")
    })
    .await;
    let v3 = b"logging:\n  level: debug\n".to_vec();
    broker.publish_upstream(ME, "config.yaml", &v3).await;
    host.wait_for("v3 committed", |h| h.holds("config.yaml", &v3))
        .await;
    host.manager.answer_next(500);
    host.manager_up();
    host.wait_for("v3 running", |h| {
        h.manager.running()["logging"]["level"] == "debug"
    })
    .await;
    assert!(host.holds("config.yaml", &v3), "{}", host.logs());
    assert!(
        host.logs()
            .contains("not restored: a newer version was committed since"),
        "{}",
        host.logs()
    );
}

#[test]
fn validate_judges_kres_kafkas_own_file_as_run_reads_it() {
    // A file with a `kafka` section is kres-kafka's own: judged as `run` reads it (the key,
    // the line and the column of a mistake), not as a resolver configuration.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    let good = dir.path().join("kres-kafka.yaml");
    std::fs::write(
        &good,
        format!(
            "kafka:\n  enable: yes\n  server: kafka1.example:9093\n  files-dir: {}\n",
            dir.path().join("files").display()
        ),
    )
    .unwrap();
    let bad = dir.path().join("typo.yaml");
    std::fs::write(
        &bad,
        "kafka:\n  enable: true\n  sever: kafka1.example:9093\n",
    )
    .unwrap();
    let (status, out) = validate(&[good, bad]);
    assert_eq!(status, Some(1), "{out}");
    assert!(
        out.contains("kres-kafka.yaml: valid (kres-kafka's own configuration"),
        "{out}"
    );
    assert!(
        out.contains("typo.yaml: invalid: ")
            && out.contains("typo.yaml:3:3: kafka.sever: unknown key; did you mean server?"),
        "{out}"
    );
    assert!(!out.contains("unknown key \"kafka\""), "{out}");
}
