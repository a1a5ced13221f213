//! The real Knot Resolver 6, run for the demo and `bench resolver` when one is at hand: a build
//! named by `KNOT_RESOLVER_DIR` (its `venv/bin/knot-resolver`), else `knot-resolver` on the
//! `PATH`. Its manager is started on a generated configuration wired as
//! docs/operator-guide.md ("Wiring to a stock Knot Resolver 6") tells operators (`--config
//! config.yaml <files>/config.json`), answers DNS on 127.0.0.1, and is stopped with everything
//! it started when dropped. And a DNS query, to see what it answers.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the manager may take to answer after its start (about 5 s on 2 cores).
const START_WITHIN: Duration = Duration::from_secs(60);

/// A Knot Resolver 6 installation: the directory of `knot-resolver` (and, in a build, of the
/// `supervisord` it runs, so it goes first on its `PATH`).
#[derive(Debug, Clone)]
pub struct Install {
    pub bin: PathBuf,
}

impl Install {
    /// The one `KNOT_RESOLVER_DIR` names, else the one on the `PATH`; `None` says why not.
    pub fn find() -> Result<Install, String> {
        if let Some(dir) = std::env::var_os("KNOT_RESOLVER_DIR") {
            let bin = PathBuf::from(dir).join("venv/bin");
            return match bin.join("knot-resolver").is_file() {
                true => Ok(Install { bin }),
                false => Err(format!("KNOT_RESOLVER_DIR holds no {}", bin.display())),
            };
        }
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .find(|dir| dir.join("knot-resolver").is_file())
            .map(|bin| Install { bin })
            .ok_or_else(|| {
                "KNOT_RESOLVER_DIR is not set and knot-resolver is not on the PATH".into()
            })
    }

    /// This process's `PATH` with the install's directory first: the manager execs the
    /// `supervisord` found there.
    pub fn path(&self) -> Result<std::ffi::OsString, std::env::JoinPathsError> {
        std::env::join_paths(
            std::iter::once(self.bin.clone()).chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            )),
        )
    }
}

/// A running manager (supervisord, kresd, policy-loader, cache-gc), stopped on drop.
pub struct KnotResolver {
    child: Child,
    /// The resolver's main configuration file (its first `--config`).
    pub config: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
    pub log: PathBuf,
}

impl KnotResolver {
    /// Start it in `dir` (rundir, cache, log) on DNS port `port`, with `files` as the files
    /// directory whose `config.json` (created as `{}` if missing) is its second `--config`.
    pub fn start(install: &Install, dir: &Path, files: &Path, port: u16) -> anyhow::Result<Self> {
        let (rundir, cache) = (dir.join("run"), dir.join("cache"));
        std::fs::create_dir_all(&rundir)?;
        std::fs::create_dir_all(&cache)?;
        let delivered = files.join("config.json");
        if !delivered.exists() {
            std::fs::write(&delivered, "{}")?;
        }
        let config = dir.join("config.yaml");
        let socket = rundir.join("kres-api.sock");
        std::fs::write(
            &config,
            format!(
                "rundir: {}\nworkers: 1\nmanagement:\n  unix-socket: {}\ncache:\n  storage: {}\n\
                 network:\n  listen:\n    - interface: 127.0.0.1@{port}\nlogging:\n  level: notice\n",
                rundir.display(),
                socket.display(),
                cache.display()
            ),
        )?;
        let log = dir.join("manager.log");
        let out = std::fs::File::create(&log)?;
        let path = install.path()?;
        let mut command = Command::new(install.bin.join("knot-resolver"));
        command
            .arg("--config")
            .args([&config, &delivered])
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // A session of its own: supervisord puts each child in a process group of its own, and
        // the session is how they are all found again to be stopped.
        // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::setsid();
                Ok(())
            })
        };
        let child = command.spawn().context("starting knot-resolver")?;
        let mut resolver = KnotResolver {
            child,
            config,
            socket,
            port,
            log,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = resolver.child.try_wait()? {
                bail!(
                    "knot-resolver exited ({status}) before it answered: see {}",
                    resolver.log.display()
                );
            }
            if resolver.socket.exists() && query(port, "version.bind").is_ok() {
                return Ok(resolver);
            }
            if started.elapsed() > START_WITHIN {
                bail!(
                    "knot-resolver did not answer within {START_WITHIN:?}: see {}",
                    resolver.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl KnotResolver {
    /// The resolver's own configuration as kres-kafka reads it on this host: the manager's
    /// main file (management socket, rundir) with `hostname` set, written to `path`.
    pub fn write_host_config(&self, path: &Path, hostname: &str) -> std::io::Result<()> {
        let main = std::fs::read_to_string(&self.config)?;
        std::fs::write(path, format!("{main}hostname: {hostname}\n"))
    }
}

impl Drop for KnotResolver {
    /// SIGTERM to supervisord, which stops its children in order; then SIGKILL to whatever is
    /// left of its session.
    fn drop(&mut self) {
        let session = self.child.id() as i32;
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(session, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in session_members(session) {
            // SAFETY: kill(2) on a process of the session this child started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The processes of session `sid` still alive.
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            // Field 6 of /proc/PID/stat is the session, after the command in parentheses.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = &stat[stat.rfind(')')? + 2..];
                    rest.split(' ').nth(3)?.parse::<i32>().ok()
                })
                == Some(sid)
        })
        .collect()
}

/// The response code of a query for `name` (type A, class IN, recursion desired) to
/// 127.0.0.1 at `port`: `0` NOERROR, `3` NXDOMAIN, ...; and the number of answers.
pub fn query(port: u16, name: &str) -> std::io::Result<(u8, u16)> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let id = (std::process::id() as u16) ^ (nanos as u16);
    let mut packet = Vec::with_capacity(64);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        packet.push(label.len() as u8);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    socket.send_to(&packet, ("127.0.0.1", port))?;
    let mut answer = [0u8; 4096];
    loop {
        let n = socket.recv(&mut answer)?;
        if n >= 12 && answer[..2] == id.to_be_bytes() {
            return Ok((answer[3] & 0x0f, u16::from_be_bytes([answer[6], answer[7]])));
        }
    }
}
