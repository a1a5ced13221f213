//! A real Kafka-protocol broker for what librdkafka's mock cluster cannot show (SASL/SCRAM
//! logins): nisshi, a broker written in Rust, run from its binary with SQLite storage in a
//! temporary directory.
//!
//! The binary is `$NISSHI` if set, else `target/tools/bin/nisshi`, else `nisshi` on the
//! `PATH`; when none exists it is installed into `target/tools` first (once, under a lock:
//! about 20 minutes on two cores; `.ci/run` does it before the tests). Version 0.6.0 is the
//! newest that builds with the pinned toolchain.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The version installed when none is found.
pub const VERSION: &str = "0.6.0";

/// The cluster id the broker is started with.
const CLUSTER: &str = "kres-kafka-tests";

/// How long a start may take before the test fails.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// The broker's binary, installed first if it is nowhere to be found.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NISSHI") {
        return PathBuf::from(path);
    }
    let tools = target_dir().join("tools");
    let installed = tools.join("bin/nisshi");
    if installed.exists() {
        return installed;
    }
    if let Some(found) = on_path("nisshi") {
        return found;
    }
    std::fs::create_dir_all(&tools).unwrap();
    let lock = File::create(tools.join("install.lock")).unwrap();
    lock.lock().unwrap();
    if !installed.exists() {
        eprintln!(
            "installing nisshi {VERSION} into {} (once)",
            tools.display()
        );
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["install", "--locked", "nisshi", "--version", VERSION])
            .args(["--no-default-features", "--features", "dynostore,libsql"])
            .arg("--root")
            .arg(&tools)
            // Its build kept beside it (not cargo's temporary directory, removed when the
            // install is interrupted): a second try goes on where the first stopped.
            .arg("--target-dir")
            .arg(tools.join("build"))
            .status()
            .unwrap();
        assert!(status.success(), "installing nisshi failed");
    }
    installed
}

/// The workspace's `target` directory (the tests' scratch directory is `target/tmp`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// One broker on 127.0.0.1, its data in a temporary directory.
pub struct Nisshi {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
    runs: usize,
    authentication: bool,
}

impl Nisshi {
    /// Start a broker that takes every client (no authentication).
    pub fn start() -> Nisshi {
        let mut broker = Nisshi {
            dir: tempfile::tempdir().unwrap(),
            port: super::daemon::free_port(),
            child: None,
            runs: 0,
            authentication: false,
        };
        broker.run(false);
        broker
    }

    /// The broker as the `kafka.server` config value.
    pub fn server(&self) -> String {
        format!("127.0.0.1@{}", self.port)
    }

    /// The broker as librdkafka's `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Stop the broker and start it again on the same port and data, requiring SASL/SCRAM
    /// logins or not.
    pub fn restart(&mut self, authentication: bool) {
        self.stop();
        self.run(authentication);
    }

    /// Create or replace the SCRAM-SHA-`bits` (256 or 512) credentials of `user` (the broker
    /// must be running without authentication: nisshi's own client does not log in).
    pub fn set_user(&self, user: &str, password: &str, bits: u16) {
        let out = Command::new(binary())
            .args(["user", "create", "--broker", &self.url(), user, password])
            .args(["--mechanism", &format!("scram{bits}")])
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nisshi user create {user}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Create `topic` with `partitions` partitions (without authentication).
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        let topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        // On a thread of its own: the tests call this from inside their runtime.
        let results = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
                })
                .join()
                .unwrap()
        })
        .unwrap();
        for result in results {
            result.unwrap();
        }
    }

    /// Grow `topic` to `partitions` partitions, as Kafka's CreatePartitions would (nisshi 0.6.0
    /// does not offer it): the broker stopped, its database given the new partitions (the
    /// count, and a row and a watermark for each new one, as its CreateTopics writes them),
    /// then started again.
    pub fn grow(&mut self, topic: &str, partitions: i32) {
        const GROW: &str = r#"
import sqlite3, sys
db, cluster, topic, new = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
con = sqlite3.connect(db)
cur = con.cursor()
(old,) = cur.execute(
    "select t.partitions from topic t join cluster c on t.cluster = c.id"
    " where c.name = ? and t.name = ?", (cluster, topic)).fetchone()
assert new > old, f"{topic} has {old} partitions already"
cur.execute("update topic set partitions = ? where name = ?"
            " and cluster = (select id from cluster where name = ?)", (new, topic, cluster))
for p in range(old, new):
    cur.execute("insert into topition (topic, partition) select t.id, ? from cluster c, topic t"
                " where c.name = ? and t.name = ? and t.cluster = c.id", (p, cluster, topic))
    cur.execute("insert into watermark (topition) select tp.id from cluster c, topic t, topition tp"
                " where c.name = ? and t.name = ? and tp.partition = ? and t.cluster = c.id"
                " and tp.topic = t.id", (cluster, topic, p))
con.commit()
"#;
        let authentication = self.authentication;
        self.stop();
        let out = Command::new("python3")
            .args(["-c", GROW])
            .arg(self.dir.path().join("nisshi.db"))
            .args([CLUSTER, topic, &partitions.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "growing {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.run(authentication);
    }

    fn run(&mut self, authentication: bool) {
        assert!(self.child.is_none(), "already running");
        self.authentication = authentication;
        self.runs += 1;
        let log_path = self.log(self.runs);
        let log = File::create(&log_path).unwrap();
        let mut command = Command::new(binary());
        command
            .args(["--listener-url", &self.url()])
            .args(["--advertised-listener-url", &self.url()])
            // Relative to the working directory: the broker's temporary directory.
            .args(["--storage-engine", "sqlite:///nisshi.db"])
            .args(["--cluster-id", CLUSTER])
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .current_dir(self.dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if authentication {
            command.arg("--authentication");
        }
        self.child = Some(command.spawn().unwrap());
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("ready in") {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("nisshi exited ({status}) before it was ready:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "nisshi was not ready within {READY_WITHIN:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("nisshi-{run}.log"))
    }

    /// Stop the broker (SIGKILL: its data is in SQLite, written before each answer).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nisshi {
    fn drop(&mut self) {
        self.stop();
    }
}
