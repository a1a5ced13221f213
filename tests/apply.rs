//! The real `kres-kafka apply` binary: what an operator injecting a file by hand sees.

mod common;

use common::{HOST, Scratch, hostile_guest, tree};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn apply(files: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .arg("apply")
        .arg("--files-dir")
        .arg(files)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn report(out: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON line expected: {stdout}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn committed_file_prints_its_report_and_exits_zero() {
    let scratch = Scratch::new();
    let out = apply(
        &scratch.files(),
        &[
            "--hostname",
            HOST,
            "-H",
            "hostname=resolver1",
            "-H",
            "file-name=zones/a.dat",
        ],
        b"data\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        report(&out),
        json!({
            "status": "committed", "file": "zones/a.dat", "action": "renew", "kind": null, "reason": null,
            "size": 5, "sha256": "6667b2d1aab6a00caa5aee5af8ad9f1465e567abf1c209d15727d57b3e8f6e5f"
        })
    );
    assert_eq!(
        std::fs::read(scratch.files().join("zones/a.dat")).unwrap(),
        b"data\n"
    );
}

#[test]
fn value_file_config_reload_then_unchanged() {
    let scratch = Scratch::new();
    let value = scratch.dir.path().join("config.yaml");
    std::fs::write(&value, "workers: 4\n").unwrap();
    let args = [
        "--hostname",
        HOST,
        "-H",
        "hostname=resolver1",
        "-H",
        "file-name=config.yaml",
        value.to_str().unwrap(),
    ];
    let first = report(&apply(&scratch.files(), &args, b""));
    assert_eq!(
        (first["status"].as_str(), first["action"].as_str()),
        (Some("committed"), Some("reload"))
    );
    let again = apply(&scratch.files(), &args, b"");
    assert!(again.status.success());
    assert_eq!(report(&again)["status"], "unchanged");
    assert_eq!(report(&again)["action"], "none");
}

#[test]
fn rejected_message_exits_one_naming_kind_file_and_reason() {
    let scratch = Scratch::new();
    let out = apply(
        &scratch.files(),
        &[
            "--hostname",
            HOST,
            "-H",
            "hostname=resolver1",
            "-H",
            "file-name=../escape",
        ],
        b"x",
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r = report(&out);
    assert_eq!(r["status"], "rejected");
    assert_eq!(r["kind"], "bad-name");
    assert_eq!(r["file"], "../escape");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("escapes the files directory"),
        "{r}"
    );
    scratch.assert_nothing_outside();
    assert!(tree(&scratch.files()).is_empty());
}

#[test]
fn chunk_is_reported_stored_and_foreign_message_skipped() {
    let scratch = Scratch::new();
    let chunk = [
        "--hostname",
        HOST,
        "-H",
        "hostname=resolver1",
        "-H",
        "file-name=a.dat",
        "-H",
        "total-chunks=2",
        "-H",
        "chunk-index=1",
    ];
    let r = report(&apply(&scratch.files(), &chunk, b"half"));
    assert_eq!(
        (r["status"].as_str(), &r["chunk"]),
        (Some("stored"), &json!([1, 2, 1]))
    );

    let out = apply(
        &scratch.files(),
        &[
            "--hostname",
            HOST,
            "-H",
            "hostname=other",
            "-H",
            "file-name=b.dat",
        ],
        b"x",
    );
    assert!(out.status.success());
    assert_eq!(report(&out)["status"], "skipped");
    assert!(!scratch.files().join("b.dat").exists());
}

#[test]
fn hostname_defaults_to_the_machines() {
    let scratch = Scratch::new();
    let machine = gethostname::gethostname().into_string().unwrap();
    let header = format!("hostname={machine}");
    let r = report(&apply(
        &scratch.files(),
        &["-H", &header, "-H", "file-name=mine.dat"],
        b"x",
    ));
    assert_eq!(r["status"], "committed", "{r}");
}

#[test]
fn looping_guest_given_by_path_is_reported_rejected_at_the_time_limit() {
    let scratch = Scratch::new();
    let guest = hostile_guest().to_str().unwrap();
    let out = apply(
        &scratch.files(),
        &[
            "--guest",
            guest,
            "--guest-time-limit",
            "100ms",
            "--hostname",
            HOST,
            "-H",
            "file-name=loop",
            "-H",
            "hostname=resolver1",
        ],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let r = report(&out);
    assert_eq!(r["kind"], "time-limit", "{r}");
}

#[test]
fn unusable_guest_or_directory_exits_two_naming_it() {
    let scratch = Scratch::new();
    let garbage = scratch.dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"\0asm garbage").unwrap();
    let out = apply(
        &scratch.files(),
        &["--guest", garbage.to_str().unwrap(), "--hostname", HOST],
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("garbage.wasm") && stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let missing = scratch.dir.path().join("nope");
    let out = apply(&missing, &["--hostname", HOST], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{out:?}"
    );
}

#[test]
fn malformed_header_argument_is_a_usage_error() {
    let scratch = Scratch::new();
    let out = apply(&scratch.files(), &["-H", "no-equals-sign"], b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not NAME=VALUE"),
        "{out:?}"
    );
}

#[test]
fn a_replay_of_a_committed_transfer_changes_nothing_and_the_next_version_is_whole() {
    // The reproduction, with positions as Kafka gives them: v1 chunks 1-8, a replay of
    // 6-8, then v2 (no transfer-id) with as many chunks. v2 arrives whole; nothing mixes.
    let scratch = Scratch::new();
    let send = |offset: i64, index: u32, content: &str| {
        let (i, pos) = (
            format!("chunk-index={index}"),
            format!("knot-resolver/0@{offset}"),
        );
        report(&apply(
            &scratch.files(),
            &[
                "--hostname",
                HOST,
                "--position",
                &pos,
                "-H",
                "hostname=resolver1",
                "-H",
                "file-name=a.dat",
                "-H",
                "total-chunks=8",
                "-H",
                &i,
            ],
            content.as_bytes(),
        ))
    };
    let v1: Vec<String> = (1..=8).map(|i| format!("v1 part {i}\n")).collect();
    let v2: Vec<String> = (1..=8).map(|i| format!("v2 part {i}\n")).collect();
    for (i, part) in v1.iter().enumerate() {
        send(i as i64, i as u32 + 1, part);
    }
    for (i, part) in v1.iter().enumerate().skip(5) {
        let r = send(i as i64, i as u32 + 1, part);
        assert_eq!(r["status"], "skipped", "{r}");
        assert!(r["reason"].as_str().unwrap().starts_with("replayed"), "{r}");
    }
    let mut last = Value::Null;
    for (i, part) in v2.iter().enumerate() {
        last = send(8 + i as i64, i as u32 + 1, part);
    }
    assert_eq!(last["status"], "committed", "{last}");
    assert_eq!(
        std::fs::read_to_string(scratch.files().join("a.dat")).unwrap(),
        v2.concat()
    );
    assert_eq!(
        tree(&scratch.files()),
        [".kres-kafka-state", "a.dat", "a.dat.backup"]
    );
}
