//! Against the real Knot Resolver 6: its manager, kresd and policy-loader, run from a build
//! (`KNOT_RESOLVER_DIR`) or an install on the `PATH`. Without one these tests say why and pass,
//! except on CI (`CI=true`), where they fail.

mod common;

use common::knot::{self, KnotResolver, Options, QueryStream};
use std::path::Path;
use std::time::Duration;

/// An RPZ zone as an operator writes one: TTL, SOA and NS, then `rules`.
fn rpz(rules: &str) -> String {
    format!(
        "$TTL 300\n\
         @ IN SOA localhost. root.localhost. 1 3600 900 604800 300\n\
         @ IN NS localhost.\n\
         {rules}"
    )
}

/// Replace `path` as a delivery does: a temporary file beside it, then a rename.
fn replace(path: &Path, content: &str) {
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, content).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[test]
fn the_real_resolver_answers_from_an_rpz_file_and_restarts() {
    // 1. An RPZ blocking one name and giving another an address; the resolver started on it
    //    answers both from the file.
    // 2. The file replaced (local.example now 192.0.2.2), then `POST /renew` while clients
    //    ask all along: the new answer arrives, no client sees SERVFAIL or no answer, and the
    //    rule database records a new transaction.
    // 3. Stopped and started again from the files on disk: the same answers.
    let Some(install) = knot::require() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let zone = files.join("blocklist.rpz");
    std::fs::write(
        &zone,
        rpz("blocked.example CNAME .\nlocal.example A 192.0.2.1\n"),
    )
    .unwrap();
    let mut opts = Options::new(&files);
    opts.rpz = vec![zone.clone()];
    opts.watchdog = Some(false);
    let mut resolver = KnotResolver::start(&install, dir.path(), opts).unwrap();
    let port = resolver.port();
    eprintln!("started in {:?}", resolver.started_in);

    let blocked = knot::query(port, "blocked.example", "A");
    assert_eq!(blocked.rcode, "NXDOMAIN", "{}", blocked.dig);
    let local = knot::query(port, "local.example", "A");
    assert_eq!(
        (local.rcode.as_str(), local.answers.clone()),
        ("NOERROR", vec!["192.0.2.1".to_owned()]),
        "{}",
        local.dig
    );

    // 2.
    let before = knot::lmdb_txnid(&resolver.ruledb()).expect("the rule database");
    let stream = QueryStream::start(
        port,
        &[("blocked.example", "A"), ("local.example", "A")],
        20,
    );
    std::thread::sleep(Duration::from_millis(500));
    replace(
        &zone,
        &rpz("blocked.example CNAME .\nlocal.example A 192.0.2.2\n"),
    );
    let renewed = std::time::Instant::now();
    let (status, body) = resolver.renew().unwrap();
    assert_eq!(status, 200, "{body}\n{}", resolver.log_tail());
    eprintln!("POST /renew answered in {:?}", renewed.elapsed());
    let changed = knot::wait_for(
        port,
        "local.example",
        "A",
        |a| a.answers == ["192.0.2.2"],
        Duration::from_secs(30),
    );
    eprintln!("new answer after {:?}", renewed.elapsed());
    std::thread::sleep(Duration::from_millis(500));
    let report = stream.stop();
    if let Err(last) = changed {
        panic!("still {last:?}\n{}", resolver.log_tail());
    }
    assert!(report.answered > 0, "{report:?}");
    assert_eq!((report.servfail, report.timeouts), (0, 0), "{report:?}");
    let after = knot::lmdb_txnid(&resolver.ruledb()).unwrap();
    assert!(after > before, "txnid {before} -> {after}");

    // 3.
    resolver.restart().unwrap();
    let blocked = knot::query(port, "blocked.example", "A");
    assert_eq!(blocked.rcode, "NXDOMAIN", "{}", blocked.dig);
    let local = knot::query(port, "local.example", "A");
    assert_eq!(local.answers, ["192.0.2.2"], "{}", local.dig);
}

#[test]
fn a_refused_rpz_changes_no_rule_and_keeps_the_resolver_from_starting_again() {
    // 1. The resolver started on a valid RPZ.
    // 2. The file replaced by one with a record its loader refuses (WKS) and a new address,
    //    then `POST /renew`: 200 all the same, the old answer stays, and the rule database
    //    records no transaction.
    // 3. Started again with that file on disk: the manager gives up (its first policy-loader
    //    run fails) and the start fails.
    // 4. The valid file back: it starts again.
    let Some(install) = knot::require() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let zone = files.join("blocklist.rpz");
    let good = rpz("local.example A 192.0.2.1\n");
    std::fs::write(&zone, &good).unwrap();
    let mut opts = Options::new(&files);
    opts.rpz = vec![zone.clone()];
    opts.watchdog = Some(false);
    let mut resolver = KnotResolver::start(&install, dir.path(), opts).unwrap();
    let port = resolver.port();

    // 2.
    let before = knot::lmdb_txnid(&resolver.ruledb()).expect("the rule database");
    replace(
        &zone,
        &rpz("local.example A 192.0.2.2\nx WKS 1.2.3.4 6 25\n"),
    );
    let (status, body) = resolver.renew().unwrap();
    assert_eq!(status, 200, "{body}");
    for line in [
        "unsupported record type",
        "Configuration has NOT been renewed",
    ] {
        resolver
            .wait_for_log(line, Duration::from_secs(10))
            .unwrap();
    }
    assert_eq!(knot::lmdb_txnid(&resolver.ruledb()), Some(before));
    let local = knot::query(port, "local.example", "A");
    assert_eq!(local.answers, ["192.0.2.1"], "{}", local.dig);

    // 3.
    let refused = resolver.restart().unwrap_err();
    assert!(refused.contains("unsupported record type"), "{refused}");
    assert!(!resolver.running());

    // 4.
    replace(&zone, &good);
    resolver.restart().unwrap();
    let local = knot::query(port, "local.example", "A");
    assert_eq!(local.answers, ["192.0.2.1"], "{}", local.dig);
}
