//! What the end-to-end tests share: the hostile guest fixture, message builders, and a look at
//! a directory tree.

#![allow(dead_code)]

pub mod daemon;
pub mod knot;
pub mod nisshi;
pub mod tls;

use kres_kafka::outcome::{Context, Limits, Message};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const HOST: &str = "resolver1";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The hostile guest (tests/fixtures/hostile-guest), built for wasm32-wasip2 on first use.
pub fn hostile_guest() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_hostile("wasm", &[]))
}

/// The hostile guest built to trap in the host's self-test.
pub fn trapping_guest() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_hostile("wasm-trap", &["--features", "trap-in-self-test"]))
}

fn build_hostile(target: &str, extra: &[&str]) -> PathBuf {
    let target_dir = workspace().join("target").join(target);
    let status = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args([
            "build",
            "--package",
            "kres-kafka-hostile-guest",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "guest",
        ])
        .args(extra)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("running cargo to build the hostile guest");
    assert!(status.success(), "building the hostile guest failed");
    target_dir.join("wasm32-wasip2/guest/kres_kafka_hostile_guest.wasm")
}

pub fn ctx() -> Context {
    Context {
        hostname: HOST.into(),
        zone_id: None,
        limits: Limits::default(),
        now: 1_700_000_000,
        trust: Default::default(),
    }
}

pub fn message(headers: &[(&str, &str)], value: &[u8]) -> Message {
    Message {
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
            .collect(),
        value: value.into(),
        // Injected by hand (no Kafka position): never recorded, never skipped as replayed.
        topic: String::new(),
        partition: -1,
        offset: -1,
        ..Message::default()
    }
}

/// A whole file for this resolver.
pub fn whole(name: &str, value: &[u8]) -> Message {
    message(&[("hostname", HOST), ("file-name", name)], value)
}

/// Chunk `index` of `total`, with extra headers.
pub fn chunk(name: &str, index: u32, total: u32, value: &[u8], extra: &[(&str, &str)]) -> Message {
    let (i, t) = (index.to_string(), total.to_string());
    let mut headers = vec![
        ("hostname", HOST),
        ("file-name", name),
        ("chunk-index", &*i),
        ("total-chunks", &*t),
    ];
    headers.extend_from_slice(extra);
    message(&headers, value)
}

/// Every path under `root`, relative and sorted: what an operator would see with `find`.
pub fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// A scratch directory holding `files/` (the files directory) and a `secret` beside it that no
/// guest may reach.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        Scratch { dir }
    }

    pub fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    /// The scratch directory holds only `files/...` and `secret`: nothing was written outside.
    pub fn assert_nothing_outside(&self) {
        let outside: Vec<_> = tree(self.dir.path())
            .into_iter()
            .filter(|p| p != "secret" && !p.starts_with("files"))
            .collect();
        assert!(
            outside.is_empty(),
            "written outside the files directory: {outside:?}"
        );
        assert_eq!(
            std::fs::read(self.dir.path().join("secret")).unwrap(),
            b"outside"
        );
    }
}

/// `kres-kafka ARGS...` under coreutils `timeout`, so a daemon that wrongly starts fails the
/// test (exit status 124) instead of hanging it.
pub fn kres_kafka_bounded(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(args)
        .output()
        .expect("running kres-kafka under timeout")
}

/// The tests run as root, whom no mode bits keep out: a directory that cannot be written is a
/// read-only tmpfs mounted on it (`EROFS`, which root gets too).
/// A tmpfs mounted on a directory for as long as this lives.
pub struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    pub fn mount(dir: &'a Path, options: &str) -> Tmpfs<'a> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs on {} (root needed)",
            dir.display()
        );
        Tmpfs(dir)
    }

    /// Remount it read-only (`ro`) or writable (`rw`).
    pub fn remount(&self, mode: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remounting {} {mode}", self.0.display());
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}
