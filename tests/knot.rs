//! Against the real Knot Resolver 6: its manager, kresd and policy-loader, run from a build
//! (`KNOT_RESOLVER_DIR`) or an install on the `PATH`. Without one these tests say why and pass,
//! except on CI (`CI=true`), where they fail.

mod common;

const ME: &str = "resolver1";

use common::daemon::{Broker, Host, TOPIC};
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

/// The status topic the daemons report on by default.
const STATUS_TOPIC: &str = "knot-resolver-status";

/// A resolver host wired as the README tells operators: the real manager started with
/// `--config config.yaml --config <files-dir>/config.json` (the delivered file, `{}` at first),
/// RPZ files in the files directory named by absolute path, and kres-kafka beside it reading
/// the resolver's own file, its `kresctl` on the `PATH`.
struct Wired {
    host: Host,
    resolver: KnotResolver,
}

impl Wired {
    /// `kafka` holds extra lines for the `kafka` section.
    fn start(install: &knot::Install, broker: &Broker, kafka: &str) -> Wired {
        let mut host = Host::with(&broker.server(), ME, kafka, &[]);
        host.manager_down();
        let files = host.files();
        let delivered = files.join("config.json");
        std::fs::write(&delivered, "{}").unwrap();
        let mut opts = Options::new(&files);
        opts.extra = vec![delivered.clone()];
        let kr_dir = host.dir.path().join("kr");
        std::fs::create_dir(&kr_dir).unwrap();
        let resolver = KnotResolver::start(install, &kr_dir, opts).unwrap();
        // kres-kafka reads the resolver's file (management socket, rundir) and its own.
        let main = std::fs::read_to_string(resolver.config()).unwrap();
        std::fs::write(
            host.dir.path().join("config.yaml"),
            format!("{main}hostname: {ME}\n"),
        )
        .unwrap();
        let own = host.dir.path().join("kres-kafka.yaml");
        let settings = std::fs::read_to_string(&own).unwrap();
        let line = settings
            .lines()
            .find(|l| l.trim_start().starts_with("resolver-config:"))
            .unwrap()
            .to_owned();
        let wired = format!(
            "  resolver-config: [{}, {}]",
            resolver.config().display(),
            delivered.display()
        );
        std::fs::write(&own, settings.replace(&line, &wired)).unwrap();
        let path = install.path();
        host.env("PATH", path.to_str().unwrap());
        host.start();
        Wired { host, resolver }
    }

    fn port(&self) -> u16 {
        self.resolver.port()
    }

    /// The newest transaction of the resolver's rule database.
    fn rules(&self) -> u64 {
        knot::lmdb_txnid(&self.resolver.ruledb()).expect("the rule database")
    }

    /// Everything both sides logged, for a failure message.
    fn logs(&self) -> String {
        format!(
            "{}\n--- manager ---\n{}",
            self.host.logs(),
            self.resolver.log_tail()
        )
    }
}

/// `kres-kafka send --wait` of `files` (name, content) to this resolver; exit status and output.
fn send_wait(broker: &Broker, dir: &Path, files: &[(&str, &[u8])]) -> (bool, String) {
    let outbox = tempfile::tempdir_in(dir).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"));
    command.args([
        "send",
        "--server",
        &broker.server(),
        "--topic",
        TOPIC,
        "--hostname",
        ME,
        "--wait",
        "--wait-timeout",
        "60s",
    ]);
    for (name, content) in files {
        let path = outbox.path().join(name);
        std::fs::write(&path, content).unwrap();
        command.arg(path);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The delivered configuration: the RPZ files at `rpz` (absolute paths; none: no `rpz` key, as
/// the manager refuses an empty list), and local data.
fn config_json(rpz: &[&Path], records: &str) -> Vec<u8> {
    let mut local = serde_json::json!({ "records": records });
    if !rpz.is_empty() {
        let rpz: Vec<_> = rpz
            .iter()
            .map(|p| serde_json::json!({ "file": p.display().to_string() }))
            .collect();
        local["rpz"] = rpz.into();
    }
    serde_json::to_vec(&serde_json::json!({ "local-data": local })).unwrap()
}

fn answers(port: u16, name: &str) -> (String, Vec<String>) {
    let a = knot::query(port, name, "A");
    (a.rcode, a.answers)
}

fn nxdomain() -> (String, Vec<String>) {
    ("NXDOMAIN".into(), vec![])
}

fn address(a: &str) -> (String, Vec<String>) {
    ("NOERROR".into(), vec![a.into()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_kres_kafka_delivers_takes_effect_and_nothing_the_resolver_would_refuse_reaches_it() {
    // 1. A resolver wired as the README says, and kres-kafka beside it. An RPZ, then a
    //    configuration naming it with local data, each sent with `send --wait`: kresd answers
    //    NXDOMAIN for the RPZ's names and the configuration's address for its record.
    // 2. While clients ask 20 times a second (names every version answers), a new RPZ (a name
    //    moves from NXDOMAIN to an address) and a new configuration (a new address): both take
    //    effect, nothing stale stays, and no client sees SERVFAIL or no answer.
    // 3. An RPZ with a record type the resolver's loader refuses: rejected by the guest before
    //    anything is renamed, `send --wait` fails naming the line; the file on disk, the rule
    //    database and the answers are unchanged.
    // 4. A block list under a name kres-kafka does not judge (`.txt`), named by the
    //    configuration and broken: the resolver's policy-loader refuses it behind a 200; the
    //    daemon sees the rule database unchanged, restores the file, renews again, and reports
    //    it refused; `send --wait` fails saying so.
    // 5. A configuration that no longer names the block list: its rules are gone, none stale.
    // 6. The resolver restarted from the files on disk: it starts, and answers as before.
    let Some(install) = knot::require() else {
        return;
    };
    let broker = Broker::start(1);
    broker.cluster.create_topic(STATUS_TOPIC, 1, 1).unwrap();
    let mut wired = Wired::start(&install, &broker, "");
    let (port, files) = (wired.port(), wired.host.files());
    let scratch = wired.host.dir.path().to_owned();
    let block = files.join("block.rpz");
    let list = files.join("list.txt");

    // 1.
    let v1 = rpz(
        "stream.example CNAME .\nads.example CNAME .\n*.ads.example CNAME .\nold.example CNAME .\n",
    );
    let (ok, out) = send_wait(&broker, &scratch, &[("block.rpz", v1.as_bytes())]);
    assert!(ok, "{out}\n{}", wired.logs());
    let records = "always.example. 300 A 192.0.2.9\ncfg.example. 300 A 192.0.2.1\n";
    let (ok, out) = send_wait(
        &broker,
        &scratch,
        &[("config.json", &config_json(&[&block], records))],
    );
    assert!(ok, "{out}\n{}", wired.logs());
    assert!(out.contains("reload served"), "{out}");
    assert_eq!(answers(port, "ads.example"), nxdomain(), "{}", wired.logs());
    assert_eq!(answers(port, "www.ads.example"), nxdomain());
    assert_eq!(answers(port, "cfg.example"), address("192.0.2.1"));

    // 2.
    let stream = QueryStream::start(
        port,
        &[("stream.example", "A"), ("always.example", "A")],
        20,
    );
    let v2 = rpz(
        "stream.example CNAME .\nads.example CNAME .\nold.example A 192.0.2.7\nnew.example CNAME .\n",
    );
    let (ok, out) = send_wait(&broker, &scratch, &[("block.rpz", v2.as_bytes())]);
    assert!(
        ok && out.contains("renew served"),
        "{out}\n{}",
        wired.logs()
    );
    assert_eq!(
        answers(port, "old.example"),
        address("192.0.2.7"),
        "no stale NXDOMAIN"
    );
    assert_eq!(answers(port, "new.example"), nxdomain());
    assert_eq!(
        answers(port, "www.ads.example").0,
        "NXDOMAIN",
        "the subtree rule is kept"
    );
    let records = "always.example. 300 A 192.0.2.9\ncfg.example. 300 A 192.0.2.2\n";
    let (ok, out) = send_wait(
        &broker,
        &scratch,
        &[("config.json", &config_json(&[&block], records))],
    );
    assert!(ok, "{out}\n{}", wired.logs());
    assert_eq!(answers(port, "cfg.example"), address("192.0.2.2"));

    // 3.
    let rules = wired.rules();
    let bad = rpz("stream.example CNAME .\nnew.example A 192.0.2.8\nx WKS 192.0.2.1 6 25\n");
    let (ok, out) = send_wait(&broker, &scratch, &[("block.rpz", bad.as_bytes())]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("invalid-zone") && out.contains("line 6"),
        "{out}"
    );
    assert!(wired.host.holds("block.rpz", v2.as_bytes()));
    assert_eq!(wired.rules(), rules, "no call was made");
    assert_eq!(answers(port, "new.example"), nxdomain());

    // 4.
    let good_list = rpz("listed.example CNAME .\n");
    let (ok, out) = send_wait(&broker, &scratch, &[("list.txt", good_list.as_bytes())]);
    assert!(ok, "{out}\n{}", wired.logs());
    let config = config_json(&[&block, &list], records);
    let (ok, out) = send_wait(&broker, &scratch, &[("config.json", &config)]);
    assert!(ok, "{out}\n{}", wired.logs());
    assert_eq!(answers(port, "listed.example"), nxdomain());
    let broken = rpz("listed.example A 192.0.2.3\nx WKS 192.0.2.1 6 25\n");
    let (ok, out) = send_wait(&broker, &scratch, &[("list.txt", broken.as_bytes())]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("refused and rolled back") && out.contains("refused by the resolver"),
        "{out}\n{}",
        wired.logs()
    );
    assert!(
        wired.host.holds("list.txt", good_list.as_bytes()),
        "restored"
    );
    assert!(
        wired
            .host
            .logs()
            .contains("the resolver took the restored files"),
        "{}",
        wired.logs()
    );
    assert_eq!(answers(port, "listed.example"), nxdomain());
    let report = stream.stop();
    assert!(report.answered > 0, "{report:?}");
    assert_eq!((report.servfail, report.timeouts), (0, 0), "{report:?}");

    // 5.
    let config = config_json(&[&block], records);
    let (ok, out) = send_wait(&broker, &scratch, &[("config.json", &config)]);
    assert!(ok, "{out}\n{}", wired.logs());
    // Without its rule the name is looked up (no network here: no NXDOMAIN can come back).
    assert_ne!(
        answers(port, "listed.example").0,
        "NXDOMAIN",
        "no stale rule"
    );
    assert_eq!(answers(port, "ads.example"), nxdomain());

    // 6.
    wired.resolver.restart().unwrap();
    assert_ne!(answers(port, "listed.example").0, "NXDOMAIN");
    assert_eq!(answers(port, "ads.example"), nxdomain());
    assert_eq!(answers(port, "old.example"), address("192.0.2.7"));
    assert_eq!(answers(port, "cfg.example"), address("192.0.2.2"));
}

/// The RPZ corpus, `tests/fixtures/rpz`: each file with the verdict recorded for it.
fn corpus() -> Vec<(std::path::PathBuf, bool)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rpz");
    let table = std::fs::read_to_string(dir.join("verdicts.tsv")).unwrap();
    table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut fields = l.split('\t');
            let file = dir.join(fields.next().unwrap());
            let accept = match fields.next() {
                Some("accept") => true,
                Some("refuse") => false,
                other => panic!("verdicts.tsv: {other:?} in {l:?}"),
            };
            (file, accept)
        })
        .collect()
}

/// Whether the resolver's policy-loader loads `file`: kresd running `loader.lua`, which does
/// what the manager's policy-loader template does for one `local-data.rpz` entry.
fn loader_accepts(install: &knot::Install, file: &Path) -> bool {
    let scratch = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rpz/loader.lua");
    let out = std::process::Command::new(&install.kresd)
        .args(["-n", "-c"])
        .arg(&script)
        .env("KR_RPZ_FILE", file)
        .env("KR_RPZ_CACHE", scratch.path().join("cache"))
        .current_dir(scratch.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match (out.status.code(), stdout.contains("verdict accept")) {
        (Some(0), true) => true,
        (Some(1), false) if stdout.contains("verdict refuse") => false,
        _ => panic!(
            "loader.lua on {}: {:?}\n{stdout}{}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn every_rpz_of_the_corpus_gets_the_real_loaders_verdict_from_kres_kafka() {
    // 1. The real policy-loader's verdict on each file (kresd running loader.lua) is the one
    //    recorded in verdicts.tsv.
    // 2. `kres-kafka validate` (the guest, in its sandbox, as the daemon judges a delivery)
    //    gives the same verdict on every file: no false accept, no false refusal, and every
    //    refusal names the line.
    let Some(install) = knot::require() else {
        return;
    };
    let corpus = corpus();
    assert!(corpus.len() >= 60, "{} files", corpus.len());
    let mut table = Vec::new();
    for (file, recorded) in &corpus {
        let loader = loader_accepts(&install, file);
        table.push((
            file.file_name().unwrap().to_string_lossy().into_owned(),
            loader,
        ));
        assert_eq!(
            loader,
            *recorded,
            "verdicts.tsv is wrong about {}",
            file.display()
        );
    }
    let scratch = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .arg("validate")
        .args(corpus.iter().map(|(f, _)| f))
        // No configuration of this host: the defaults, with no manager to ask.
        .current_dir(scratch.path())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut disagreements = Vec::new();
    for ((file, _), (name, loader)) in corpus.iter().zip(&table) {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{}: ", file.display())))
            .unwrap_or_else(|| panic!("no verdict for {name}\n{stdout}"));
        let ours = line.ends_with(": valid");
        if ours != *loader {
            disagreements.push(format!("{name}: loader {loader}, kres-kafka: {line}"));
        }
        if !ours {
            assert!(
                line.contains("invalid: ") && line.contains("line "),
                "{line}"
            );
        }
    }
    eprintln!(
        "{} RPZ files: {} accepted and {} refused by the real loader; disagreements: {}",
        table.len(),
        table.iter().filter(|(_, a)| *a).count(),
        table.iter().filter(|(_, a)| !*a).count(),
        disagreements.len()
    );
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_the_manager_refuses_behind_a_200_is_rolled_back_and_the_resolver_restarts()
{
    // 1. A resolver wired as the README says; kres-kafka judges configurations by the schema
    //    alone (no `kresctl`), which cannot express every rule of the manager's.
    // 2. A configuration with local data: served, answered.
    // 3. A configuration the schema accepts and the manager refuses (a local-data rule with
    //    `subtree` and no name): the manager answers the reload 200 and keeps running the old
    //    one; kres-kafka sees `GET /v1/config` unchanged, restores the previous file, reloads,
    //    and reports it refused; `send --wait` fails saying so.
    // 4. The resolver restarted from the files on disk: it starts, with the old answers.
    let Some(install) = knot::require() else {
        return;
    };
    let broker = Broker::start(1);
    broker.cluster.create_topic(STATUS_TOPIC, 1, 1).unwrap();
    let mut wired = Wired::start(&install, &broker, "validate-command: []\n");
    let port = wired.port();
    let scratch = wired.host.dir.path().to_owned();

    // 2.
    let good = config_json(&[], "cfg.example. 300 A 192.0.2.1\n");
    let (ok, out) = send_wait(&broker, &scratch, &[("config.json", &good)]);
    assert!(
        ok && out.contains("reload served"),
        "{out}\n{}",
        wired.logs()
    );
    assert_eq!(answers(port, "cfg.example"), address("192.0.2.1"));

    // 3.
    let stream = QueryStream::start(port, &[("cfg.example", "A")], 20);
    let refused = serde_json::to_vec(&serde_json::json!({
        "local-data": {
            "records": "cfg.example. 300 A 192.0.2.2\n",
            "rules": [{ "subtree": "empty" }]
        }
    }))
    .unwrap();
    let (ok, out) = send_wait(&broker, &scratch, &[("config.json", &refused)]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("reload refused and rolled back")
            && out.contains("still runs its previous configuration"),
        "{out}\n{}",
        wired.logs()
    );
    assert!(wired.host.holds("config.json", &good), "restored");
    wired
        .resolver
        .wait_for_log(
            "Configuration has NOT been changed",
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(answers(port, "cfg.example"), address("192.0.2.1"));
    let report = stream.stop();
    assert!(report.answered > 0, "{report:?}");
    assert_eq!((report.servfail, report.timeouts), (0, 0), "{report:?}");

    // 4.
    wired.resolver.restart().unwrap();
    assert_eq!(answers(port, "cfg.example"), address("192.0.2.1"));
}

#[test]
fn every_configuration_of_upstreams_cases_gets_kresctls_verdict_from_kres_kafka() {
    // Upstream's 61 datamodel cases (each a whole configuration) and its example
    // configurations: `kres-kafka validate`, with the real `kresctl` on the PATH as a resolver
    // host has it, judges each as `kresctl validate` does alone. (Without `kresctl`, the
    // schema alone accepts 15 of the 18 invalid cases: README, "What a configuration must
    // pass".)
    let Some(install) = knot::require() else {
        return;
    };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kresconf/v6.4.2");
    let cases: Vec<serde_json::Value> = serde_json::from_slice(
        &std::fs::read(fixtures.join("datamodel-test-cases/cases.json")).unwrap(),
    )
    .unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let file = scratch.path().join(format!("case-{n:02}.json"));
        std::fs::write(&file, serde_json::to_vec(&case["full_config"]).unwrap()).unwrap();
        files.push(file);
    }
    for entry in std::fs::read_dir(fixtures.join("etc-config")).unwrap() {
        files.push(entry.unwrap().path());
    }
    files.sort();
    let path = install.path();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .arg("validate")
        .args(&files)
        .current_dir(scratch.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (mut valid, mut disagreements) = (0, Vec::new());
    for file in &files {
        let kresctl = std::process::Command::new(install.kresctl())
            .arg("validate")
            .arg(file)
            .current_dir(scratch.path())
            .output()
            .unwrap();
        let theirs = kresctl.status.success();
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{}: ", file.display())))
            .unwrap_or_else(|| panic!("no verdict for {}\n{stdout}", file.display()));
        let ours = line.ends_with(": valid");
        valid += usize::from(theirs);
        if ours != theirs {
            disagreements.push(format!(
                "{line}\n  kresctl: {}",
                String::from_utf8_lossy(&kresctl.stderr)
                    .lines()
                    .last()
                    .unwrap_or("valid")
            ));
        }
    }
    eprintln!(
        "{} configurations, {valid} valid for kresctl; disagreements: {}",
        files.len(),
        disagreements.len()
    );
    assert!(files.len() >= 61 + 7, "{} files", files.len());
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[test]
fn the_demo_shows_a_name_blocked_by_the_real_resolver() {
    // The README's first command, with a Knot Resolver at hand: it runs it, delivers the RPZ
    // and the configuration naming it, and asks it for a blocked name.
    let Some(install) = knot::require() else {
        return;
    };
    let path = install.path();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .arg("demo")
        .env_remove("KNOT_RESOLVER_DIR")
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ads-0000000.tracker.example -> NXDOMAIN"),
        "{stdout}"
    );
}
