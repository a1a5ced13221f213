//! The real Knot Resolver 6 in a test: finding a build of it, running its manager (which runs
//! supervisord, kresd, the policy-loader and kres-cache-gc) on a generated configuration, asking
//! it over its management socket, and querying it over DNS.
//!
//! The resolver is found through `KNOT_RESOLVER_DIR` (a build made by
//! `shared/kr6/build.sh DEST`: `DEST/venv/bin/knot-resolver`, `DEST/prefix/sbin/kresd`), else
//! on the `PATH` as upstream's Debian packages install it. This module never builds it and
//! never reads anything of the build scripts at run time: a test without a resolver says so
//! and passes, except on CI, where it fails (see [`require`]).
//!
//! The sandbox the tests run in has no network beyond loopback: a query for a name not
//! answered by local data (RPZ rules, local records) makes the resolver recurse to the
//! internet and fail slowly. Query only names the resolver answers locally.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the manager may take to start answering on its socket and over DNS. Measured here:
/// about 2-3 s; the rest is room for a loaded CI machine.
pub const START_WITHIN: Duration = Duration::from_secs(60);

/// How long the manager may take to stop after SIGTERM before what is left of it is killed.
/// supervisord stops its children one after the other; measured here: about 3.5 s in all.
pub const STOP_WITHIN: Duration = Duration::from_secs(30);

/// How long one DNS query may wait for its answer (dig's `+time`, the query stream's timeout).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one request to the management API may take. `/reload` and `/renew` answer after
/// about 1 s (they wait for the policy-loader); a trial kresd may take a few more.
pub const API_TIMEOUT: Duration = Duration::from_secs(30);

/// `sun_path` of `struct sockaddr_un` on Linux is 108 bytes, with the terminating NUL.
const UNIX_PATH_MAX: usize = 108;

/// The longest socket name the manager puts in its rundir (`supervisord.sock`, `control/NN`,
/// `kres-api.sock`), with its separator and some room.
const LONGEST_SOCKET_NAME: usize = 24;

/// Where Knot Resolver 6 is installed.
#[derive(Clone, Debug)]
pub struct Install {
    /// The directory holding `knot-resolver`, `kresctl` and, in a build, `supervisord` (put
    /// first on the manager's `PATH`: it execs supervisord, found there).
    pub bin: PathBuf,
    /// `kresd`, which the manager runs from the path it was built with; kept to say which
    /// install was found.
    pub kresd: PathBuf,
}

impl Install {
    /// The manager's command.
    pub fn manager(&self) -> PathBuf {
        self.bin.join("knot-resolver")
    }

    /// The management client.
    pub fn kresctl(&self) -> PathBuf {
        self.bin.join("kresctl")
    }

    /// This process's `PATH` with the install's directory first: what a resolver host's
    /// programs (the manager, which execs supervisord; kres-kafka, which finds `kresctl`) see.
    pub fn path(&self) -> std::ffi::OsString {
        std::env::join_paths(
            std::iter::once(self.bin.clone()).chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
        )
        .expect("PATH entries without ':'")
    }
}

/// The Knot Resolver 6 to test against: `KNOT_RESOLVER_DIR` if set (and then it must hold a
/// build), else `knot-resolver` and `kresd` installed on the `PATH` (or `kresd` in
/// `/usr/sbin`, where Debian puts it); the error says why none was found.
pub fn installed() -> Result<Install, String> {
    if let Some(dir) = std::env::var_os("KNOT_RESOLVER_DIR") {
        let dir = PathBuf::from(dir);
        let install = Install {
            bin: dir.join("venv/bin"),
            kresd: dir.join("prefix/sbin/kresd"),
        };
        for needed in [install.manager(), install.kresd.clone()] {
            if !needed.is_file() {
                return Err(format!(
                    "KNOT_RESOLVER_DIR={} holds no {}",
                    dir.display(),
                    needed.display()
                ));
            }
        }
        return Ok(install);
    }
    let manager = on_path("knot-resolver")
        .ok_or("KNOT_RESOLVER_DIR is not set and no knot-resolver is on the PATH")?;
    let kresd = on_path("kresd")
        .or_else(|| Some(PathBuf::from("/usr/sbin/kresd")).filter(|p| p.is_file()))
        .ok_or_else(|| format!("{} is on the PATH but no kresd", manager.display()))?;
    Ok(Install {
        bin: manager.parent().unwrap().to_owned(),
        kresd,
    })
}

/// The install for a test that needs the real resolver. Without one the test is skipped: this
/// says why on stderr and returns `None`, except when `CI=true`, where it panics (CI must run
/// these tests).
pub fn require() -> Option<Install> {
    match installed() {
        Ok(install) => Some(install),
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but the real Knot Resolver is missing: {why}")
        }
        Err(why) => {
            eprintln!(
                "real Knot Resolver tests did not run: {why}; set KNOT_RESOLVER_DIR to a build \
                 of Knot Resolver 6 (shared/kr6/build.sh DEST prints it; Debian 12 packages \
                 only 5.6)"
            );
            None
        }
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// How to run the resolver.
#[derive(Clone, Debug)]
pub struct Options {
    /// The DNS port on 127.0.0.1.
    pub port: u16,
    /// The files directory: where relative `rpz` paths are taken from.
    pub files: PathBuf,
    /// The RPZ files listed in `local-data.rpz`, in order.
    pub rpz: Vec<PathBuf>,
    /// Each RPZ entry's `watchdog`; `None` leaves the manager's default (`auto`: on when the
    /// Python `watchdog` package is installed, as in a build and in upstream's packages).
    pub watchdog: Option<bool>,
    /// Further configuration files given to the manager after the main one, as upstream's
    /// packaging gives `/etc/knot-resolver/config.yaml` then other files.
    pub extra: Vec<PathBuf>,
    /// `logging.level` (`crit`, `err`, `warning`, `notice`, `info`, `debug`).
    pub log_level: String,
}

impl Options {
    /// A resolver on a free port, its RPZ files in `files`, none listed yet, watchdog left to
    /// the manager, logging at `info` (which shows each policy-loader run).
    pub fn new(files: &Path) -> Options {
        Options {
            port: super::daemon::free_port(),
            files: files.to_owned(),
            rpz: Vec::new(),
            watchdog: None,
            extra: Vec::new(),
            log_level: "info".into(),
        }
    }

    fn rpz_paths(&self) -> Vec<PathBuf> {
        self.rpz.iter().map(|p| self.files.join(p)).collect()
    }
}

/// A running manager and what it runs, stopped on drop.
pub struct KnotResolver {
    install: Install,
    opts: Options,
    dir: PathBuf,
    /// The rundir (holding the management socket): in `dir` when its path is short enough
    /// for unix sockets, else in this short-named temporary directory.
    short: Option<tempfile::TempDir>,
    rundir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    /// Where the current run's output starts in the log.
    log_from: u64,
    /// How long the last start took until the API and DNS answered.
    pub started_in: Duration,
}

impl KnotResolver {
    /// Write a main configuration into `dir` (`config.yaml`, with `cache/` and, when the path
    /// allows, `run/` beside it), start the manager on it and the extra files, and wait until
    /// its API and DNS answer. The error holds the end of the manager's log.
    pub fn start(install: &Install, dir: &Path, opts: Options) -> Result<KnotResolver, String> {
        let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut short = None;
        let mut rundir = dir.join("run");
        if rundir.as_os_str().len() + LONGEST_SOCKET_NAME >= UNIX_PATH_MAX {
            let temp = tempfile::Builder::new()
                .prefix("kr6-")
                .tempdir_in("/tmp")
                .map_err(|e| format!("a short rundir in /tmp: {e}"))?;
            rundir = temp.path().join("run");
            short = Some(temp);
        }
        for d in [&rundir, &dir.join("cache")] {
            std::fs::create_dir_all(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
        }
        let mut resolver = KnotResolver {
            install: install.clone(),
            config: dir.join("config.yaml"),
            dir,
            short,
            rundir,
            opts,
            child: None,
            log_from: 0,
            started_in: Duration::ZERO,
        };
        std::fs::write(&resolver.config, resolver.main_config())
            .map_err(|e| format!("writing {}: {e}", resolver.config.display()))?;
        resolver.run()?;
        Ok(resolver)
    }

    /// The main configuration: what the resolver needs to run in a test, and the RPZ files.
    fn main_config(&self) -> String {
        let mut yaml = format!(
            "# written by tests/common/knot.rs\n\
             rundir: {rundir}\n\
             workers: 1\n\
             management:\n  unix-socket: {socket}\n\
             cache:\n  storage: {cache}\n\
             network:\n  listen:\n    - interface: 127.0.0.1@{port}\n\
             logging:\n  level: {level}\n",
            rundir = self.rundir.display(),
            socket = self.socket().display(),
            cache = self.dir.join("cache").display(),
            port = self.opts.port,
            level = self.opts.log_level,
        );
        let rpz = self.opts.rpz_paths();
        if !rpz.is_empty() {
            yaml.push_str("local-data:\n  rpz:\n");
            for file in rpz {
                yaml.push_str(&format!("    - file: {}\n", file.display()));
                if let Some(on) = self.opts.watchdog {
                    yaml.push_str(&format!("      watchdog: {on}\n"));
                }
            }
        }
        yaml
    }

    /// Start the manager on the files as they are and wait until it answers.
    fn run(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the resolver is running already");
        let log_path = self.log_path();
        let mut log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        self.log_from = log.metadata().map_or(0, |m| m.len());
        let _ = writeln!(log, "--- started by the test harness ---");
        let path = self.install.path();
        let began = Instant::now();
        let mut command = Command::new(self.install.manager());
        command
            .arg("-c")
            .arg(&self.config)
            .args(&self.opts.extra)
            .env("PATH", path)
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null());
        // Its own session, as run.sh and systemd start it: supervisord puts each child in a
        // process group of its own (setpgrp), but they all stay in this session, which is how
        // they are found to be stopped.
        // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::setsid();
                Ok(())
            })
        };
        let child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.install.manager().display()))?;
        self.child = Some(child);
        let deadline = began + START_WITHIN;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                // What it started may outlive it: supervisord's children.
                let session = self.child.take().unwrap().id() as i32;
                kill_session(session, libc::SIGKILL);
                return Err(format!(
                    "the manager exited ({status}) before it answered\n{}",
                    self.log_tail()
                ));
            }
            if self
                .api("GET", "/v1/config", None)
                .is_ok_and(|(s, _)| s == 200)
                && probe(self.opts.port)
            {
                self.started_in = began.elapsed();
                return Ok(());
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(format!(
                    "the resolver did not answer on {} and port {} within {START_WITHIN:?}\n{}",
                    self.socket().display(),
                    self.opts.port,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the manager and everything it runs: SIGTERM to supervisord (which stops its
    /// children in order), then SIGKILL to every process left in its session after
    /// [`STOP_WITHIN`]. Returns at once when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let session = child.id() as i32;
        // SAFETY: kill(2) on the process we started; no memory is involved.
        unsafe { libc::kill(session, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() && session_members(session).is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_session(session, libc::SIGKILL);
        let _ = child.wait();
        let deadline = Instant::now() + STOP_WITHIN;
        while !session_members(session).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stop, then start again from the files on disk (the main configuration, the extra files
    /// and the RPZ files as they are now). `Err` (with the end of the log) when it does not
    /// come up: what a test of a broken file expects to see.
    pub fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.run()
    }

    /// Whether the manager (supervisord) is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// The management API's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.rundir.join("kres-api.sock")
    }

    /// The rundir: the working directory of kresd and the policy-loader, holding the rule
    /// database (`ruledb/data.mdb`).
    pub fn rundir(&self) -> &Path {
        &self.rundir
    }

    /// The rule database the policy-loader writes and kresd reads.
    pub fn ruledb(&self) -> PathBuf {
        self.rundir.join("ruledb/data.mdb")
    }

    pub fn port(&self) -> u16 {
        self.opts.port
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The main configuration file the manager is started with.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The manager's stdout and stderr, every run (supervisord sends its children's there).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("manager.log")
    }

    /// The manager's log so far, every run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The current run's part of the log.
    pub fn run_log(&self) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(log.get(self.log_from as usize..).unwrap_or_default()).into()
    }

    /// Wait until the current run's log holds `needle` (the manager's lines reach the log
    /// through supervisord, a little after its HTTP answers); `Err` with the log's end after
    /// `within`.
    pub fn wait_for_log(&self, needle: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while !self.run_log().contains(needle) {
            if Instant::now() > deadline {
                return Err(format!("no {needle:?} in the log\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// The last lines of the current run's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.run_log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- end of {} ---\n{}",
            self.log_path().display(),
            lines[from..].join("\n")
        )
    }

    pub fn kresctl(&self) -> PathBuf {
        self.install.kresctl()
    }

    /// One request to the management API: its status and body, or why there is none.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, String), String> {
        http(&self.socket(), method, path, body)
    }

    /// `POST /renew` (re-read the RPZ files), which answers 200 even when the policy-loader
    /// fails: the outcome is only in the log.
    pub fn renew(&self) -> Result<(u16, String), String> {
        self.api("POST", "/renew", None)
    }

    /// `POST /reload` (re-read the configuration files), which answers 200 even when they are
    /// invalid: the outcome is only in the log.
    pub fn reload(&self) -> Result<(u16, String), String> {
        self.api("POST", "/reload", None)
    }
}

impl Drop for KnotResolver {
    fn drop(&mut self) {
        // Before the fields go: the short rundir (if any) is removed with `self.short`.
        self.stop();
    }
}

/// The live processes (not zombies) of session `session`: a container's init may never reap
/// orphans, so `kill(pid, 0)` would count zombies as alive.
fn session_members(session: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
            let (_, rest) = stat.rsplit_once(") ")?;
            let fields: Vec<&str> = rest.split(' ').take(4).collect();
            let alive = !matches!(fields.first(), Some(&"Z" | &"X"));
            (alive && fields.get(3)?.parse() == Ok(session)).then_some(pid)
        })
        .collect()
}

/// Send `signal` to every live process of `session`.
fn kill_session(session: i32, signal: i32) {
    for pid in session_members(session) {
        // SAFETY: kill(2) on a process of the session the manager was started in.
        unsafe { libc::kill(pid, signal) };
    }
}

/// A blocking HTTP/1.1 request over a unix socket (`Connection: close`): status and body.
pub fn http(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("{method} {path} on {}: {e}", socket.display());
    let mut stream = UnixStream::connect(socket).map_err(fail)?;
    stream.set_read_timeout(Some(API_TIMEOUT)).map_err(fail)?;
    stream.set_write_timeout(Some(API_TIMEOUT)).map_err(fail)?;
    let body = body.unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(fail)?;
    stream.write_all(body).map_err(fail)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(fail)?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP response: {response:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: no status in {head:?}"))?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((status, body))
}

/// The body of a chunked response, read to its end.
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// What `dig` got for one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The response's status (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...), or `TIMEOUT` when none
    /// came.
    pub rcode: String,
    /// The answer section's rdata, as dig prints it (`192.0.2.1`, `target.example.`).
    pub answers: Vec<String>,
    /// dig's whole output, for failure messages.
    pub dig: String,
}

/// Ask the resolver on 127.0.0.1:`port` for `name` `rtype` with dig (recursion desired, as any
/// client asks; one try of [`QUERY_TIMEOUT`]).
pub fn query(port: u16, name: &str, rtype: &str) -> Answer {
    let out = Command::new("dig")
        .arg("@127.0.0.1")
        .args(["-p", &port.to_string()])
        .arg("+tries=1")
        .arg(format!("+time={}", QUERY_TIMEOUT.as_secs()))
        .args(["+noall", "+comments", "+answer", "+nottlunits", "+nocl"])
        .args([name, rtype])
        .output()
        .expect("running dig (Debian's bind9-dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let rcode = text
        .lines()
        .find_map(|l| l.split_once("status: "))
        .and_then(|(_, rest)| rest.split(',').next())
        .map_or("TIMEOUT".into(), |s| s.trim().to_owned());
    // Records: `owner TTL TYPE rdata...` (class left out by +nocl); everything else is a
    // comment (`;`) or blank.
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            fields.nth(2)?;
            Some(fields.collect::<Vec<_>>().join(" "))
        })
        .collect();
    Answer {
        rcode,
        answers,
        dig: text + &String::from_utf8_lossy(&out.stderr),
    }
}

/// Ask again until the answer satisfies `done` (`Ok` with it), or `within` has passed (`Err`
/// with the last answer).
pub fn wait_for(
    port: u16,
    name: &str,
    rtype: &str,
    done: impl Fn(&Answer) -> bool,
    within: Duration,
) -> Result<Answer, Answer> {
    let deadline = Instant::now() + within;
    loop {
        let answer = query(port, name, rtype);
        if done(&answer) {
            return Ok(answer);
        }
        if Instant::now() > deadline {
            return Err(answer);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether anything answers DNS on 127.0.0.1:`port` (any rcode: `version.bind CH TXT` needs no
/// recursion).
fn probe(port: u16) -> bool {
    Dns::connect(port, Duration::from_secs(1))
        .and_then(|dns| dns.ask(&encode_query(1, "version.bind", 16, 3)))
        .is_ok()
}

/// A UDP socket connected to the resolver.
struct Dns {
    socket: UdpSocket,
}

impl Dns {
    fn connect(port: u16, timeout: Duration) -> std::io::Result<Dns> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(("127.0.0.1", port))?;
        socket.set_read_timeout(Some(timeout))?;
        Ok(Dns { socket })
    }

    /// Send `query` and wait for the response with its id (late responses to earlier queries
    /// are skipped): the response's rcode, or the error (`WouldBlock`/`TimedOut`: no answer).
    fn ask(&self, query: &[u8]) -> std::io::Result<u8> {
        self.socket.send(query)?;
        let deadline = Instant::now() + self.socket.read_timeout()?.unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = self.socket.recv(&mut buf)?;
            // Same id, and QR set: the response to this query.
            if n >= 12 && buf[..2] == query[..2] && buf[2] & 0x80 != 0 {
                return Ok(buf[3] & 0x0f);
            }
        }
    }
}

/// A DNS query for `name` (`rtype`, `class`) with id `id` and RD set.
fn encode_query(id: u16, name: &str, rtype: u16, class: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00]); // RD
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&rtype.to_be_bytes());
    q.extend_from_slice(&class.to_be_bytes());
    q
}

/// The number of a record type named as dig names it (`A`, `AAAA`, `TXT`, `TYPE65`, ...).
pub fn rtype_code(rtype: &str) -> u16 {
    match rtype.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "HTTPS" => 65,
        "ANY" => 255,
        other => other
            .strip_prefix("TYPE")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unknown record type {rtype:?}")),
    }
}

/// The name of an rcode, as dig prints it.
pub fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => format!("RCODE{n}"),
    }
}

/// What a [`QueryStream`] saw.
#[derive(Clone, Debug, Default)]
pub struct StreamReport {
    pub sent: u64,
    pub answered: u64,
    pub servfail: u64,
    pub timeouts: u64,
    pub by_rcode: BTreeMap<String, u64>,
    /// Each SERVFAIL, timeout or send error: when (since the start), which name, what.
    pub failures: Vec<String>,
}

/// Clients asking the resolver all along: a thread sending `per_second` queries a second,
/// round-robin over the names, each waiting up to [`QUERY_TIMEOUT`] for its answer.
pub struct QueryStream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<StreamReport>>,
}

impl QueryStream {
    /// Start asking 127.0.0.1:`port` for `names` (name, record type as dig names it).
    pub fn start(port: u16, names: &[(&str, &str)], per_second: u32) -> QueryStream {
        assert!(!names.is_empty() && per_second > 0);
        let questions: Vec<(String, u16)> = names
            .iter()
            .map(|(name, rtype)| ((*name).to_owned(), rtype_code(rtype)))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let every = Duration::from_secs(1) / per_second;
        let thread = std::thread::spawn(move || {
            let dns = Dns::connect(port, QUERY_TIMEOUT).expect("a UDP socket on 127.0.0.1");
            let mut report = StreamReport::default();
            let began = Instant::now();
            let mut next = began;
            while !stopped.load(Ordering::Relaxed) {
                let (name, rtype) = &questions[report.sent as usize % questions.len()];
                let id = getrandom::u32().unwrap() as u16;
                report.sent += 1;
                match dns.ask(&encode_query(id, name, *rtype, 1)) {
                    Ok(rcode) => {
                        report.answered += 1;
                        let rcode = rcode_name(rcode);
                        if rcode == "SERVFAIL" {
                            report.servfail += 1;
                            report
                                .failures
                                .push(format!("{:?} {name}: SERVFAIL", began.elapsed()));
                        }
                        *report.by_rcode.entry(rcode).or_default() += 1;
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        report.timeouts += 1;
                        report
                            .failures
                            .push(format!("{:?} {name}: no answer", began.elapsed()));
                    }
                    Err(e) => {
                        // ECONNREFUSED (nothing listening), as a client would see it: no answer.
                        report.timeouts += 1;
                        report
                            .failures
                            .push(format!("{:?} {name}: {e}", began.elapsed()));
                    }
                }
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            report
        });
        QueryStream {
            stop,
            thread: Some(thread),
        }
    }

    /// Stop asking; what was seen.
    pub fn stop(mut self) -> StreamReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for QueryStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The transaction id of an LMDB environment's data file (`data.mdb`): the newer of its two
/// meta pages' `mm_txnid`, which every committed write transaction increases. `None` when the
/// file is missing or not LMDB.
///
/// The layout (LMDB's `mdb.c`, 64-bit): a page header of 16 bytes, then `MDB_meta`: `mm_magic`
/// (u32 0xBEEFC0DE) at 16, `mm_version` at 20, `mm_address` at 24, `mm_mapsize` at 32, two
/// `MDB_db` of 48 bytes at 40 and 88 (the first one's `md_pad` holds the page size), `mm_last_pg`
/// at 136, `mm_txnid` at 144. Meta page 1 starts one page in.
pub fn lmdb_txnid(data_mdb: &Path) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    const MAGIC: u32 = 0xBEEF_C0DE;
    let file = File::open(data_mdb).ok()?;
    // Only the two meta pages: the file may be as large as the map.
    let meta = |at: u64| {
        let mut page = [0u8; 152];
        file.read_exact_at(&mut page, at).ok()?;
        let u32_at = |i: usize| u32::from_ne_bytes(page[i..i + 4].try_into().unwrap());
        let txnid = u64::from_ne_bytes(page[144..152].try_into().unwrap());
        (u32_at(16) == MAGIC).then_some((u32_at(40), txnid))
    };
    let (page_size, first) = meta(0)?;
    let (_, second) = meta(page_size.into())?;
    Some(first.max(second))
}
