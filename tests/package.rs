//! The Debian package, as an operator installs it: built by the documented command
//! (`host/packaging/build-deb`), from the debug binary the tests already built (a release build
//! would take CI's 2 cores a quarter of an hour; the package's contents do not depend on it).
//!
//! Tools: `dpkg-deb` (Debian's own), `man` (`man-db`) and `systemd-analyze` (`systemd`), both
//! installed by `.ci/run`: under CI a missing one fails the test, elsewhere its check is left
//! out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `command`, which must succeed; its standard output.
fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(out.status.success(), "{command:?}\n{}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `tool` is on `PATH`; under CI, a missing one fails naming the package that has it.
fn installed(tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()));
    if !found && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{tool} is missing: .ci/run installs Debian's {package} package, which has it");
    }
    found
}

/// One entry of `dpkg-deb --contents`: mode string and owner.
#[derive(Debug)]
struct Entry {
    mode: String,
    owner: String,
}

/// The package's entries by path (without the leading `.`).
fn contents(deb: &Path) -> BTreeMap<String, Entry> {
    run(Command::new("dpkg-deb").arg("--contents").arg(deb))
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields.get(5)?.trim_start_matches('.').to_owned();
            Some((
                path,
                Entry {
                    mode: fields[0].to_owned(),
                    owner: fields[1].to_owned(),
                },
            ))
        })
        .collect()
}

#[test]
fn the_debian_package_installs_a_working_daemon_with_its_unit_pages_and_configuration() {
    // 1. `host/packaging/build-deb --no-build --profile dev` makes the package from the
    //    debug binary.
    // 2. Its files, their modes and owners; the example configuration is its only conffile.
    // 3. Its maintainer scripts: the state directory for the unit's user; an upgrade restarts
    //    a running daemon and stops nothing before; a purge removes only the state directory.
    // 4. Extracted into a temporary root, the binary runs (`--version`, `--help`), the man page
    //    renders with `man -l`, the unit passes `systemd-analyze verify` where it is installed.
    let binary = env!("CARGO_BIN_EXE_kres-kafka");
    assert!(Path::new(binary).exists());
    let out_dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    run(Command::new(workspace().join("host/packaging/build-deb"))
        .args(["--no-build", "--profile", "dev", "--fast", "--output"])
        .arg(out_dir.path()));
    eprintln!("package built in {:?}", started.elapsed());
    let debs: Vec<PathBuf> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = &debs[0];

    // 2.
    let fields = run(Command::new("dpkg-deb").arg("--field").arg(deb));
    for field in [
        "Package: kres-kafka",
        "Version: 0.1.0-1",
        "Section: net",
        "Recommends: knot-resolver6",
    ] {
        assert!(fields.lines().any(|l| l == field), "{field}\n{fields}");
    }
    assert!(
        fields
            .lines()
            .any(|l| l.starts_with("Depends: ") && l.contains("libc6")),
        "{fields}"
    );
    let entries = contents(deb);
    let unit = "/usr/lib/systemd/system/kres-kafka.service";
    let unit = if entries.contains_key(unit) {
        unit
    } else {
        "/lib/systemd/system/kres-kafka.service"
    };
    for (path, mode) in [
        ("/usr/bin/kres-kafka", "-rwxr-xr-x"),
        (unit, "-rw-r--r--"),
        ("/etc/knot-resolver/kres-kafka.yaml", "-rw-r--r--"),
        (
            "/usr/share/kres-kafka/knot-resolver-kafka.conf",
            "-rw-r--r--",
        ),
        ("/usr/share/kres-kafka/kres-kafka.rules.yml", "-rw-r--r--"),
        ("/usr/share/kres-kafka/grafana-dashboard.json", "-rw-r--r--"),
        ("/usr/share/man/man1/kres-kafka.1.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/kres-kafka-run.1.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/kres-kafka-send.1.gz", "-rw-r--r--"),
        (
            "/usr/share/bash-completion/completions/kres-kafka",
            "-rw-r--r--",
        ),
        (
            "/usr/share/zsh/vendor-completions/_kres-kafka",
            "-rw-r--r--",
        ),
        (
            "/usr/share/fish/vendor_completions.d/kres-kafka.fish",
            "-rw-r--r--",
        ),
        (
            "/usr/share/doc/kres-kafka/changelog.Debian.gz",
            "-rw-r--r--",
        ),
        ("/usr/share/doc/kres-kafka/copyright", "-rw-r--r--"),
    ] {
        let entry = entries
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the package: {entries:#?}"));
        assert_eq!(entry.mode, mode, "{path}");
        assert!(
            ["0/0", "root/root"].contains(&entry.owner.as_str()),
            "{path} is owned by {}",
            entry.owner
        );
    }
    assert!(
        !entries.keys().any(|p| p.contains("generate")),
        "the hidden command has no page"
    );
    assert!(
        !entries.keys().any(|p| p.starts_with("/var/lib/")),
        "the package ships nothing under /var/lib: delivered files and state are the daemon's"
    );

    let control = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(control.path()));
    let read = |name: &str| std::fs::read_to_string(control.path().join(name)).unwrap_or_default();
    assert_eq!(
        read("conffiles").lines().collect::<Vec<_>>(),
        ["/etc/knot-resolver/kres-kafka.yaml"]
    );

    // 3.
    let postinst = read("postinst");
    assert!(
        postinst
            .contains("install -d -m 0700 -o knot-resolver -g knot-resolver /var/lib/kres-kafka"),
        "{postinst}"
    );
    assert!(
        postinst.contains("deb-systemd-invoke try-restart kres-kafka.service"),
        "an upgrade restarts a running daemon:\n{postinst}"
    );
    assert!(
        postinst.contains("if deb-systemd-helper debian-installed kres-kafka.service; then")
            && !postinst.contains("new installations run enable"),
        "a fresh install enables nothing; an upgrade keeps it enabled if it was:\n{postinst}"
    );
    let prerm = read("prerm");
    assert!(
        prerm.contains("\"$1\" = remove") && !prerm.contains("upgrade"),
        "only a removal stops the daemon:\n{prerm}"
    );
    let postrm = read("postrm");
    assert!(postrm.contains("rm -rf /var/lib/kres-kafka\n"), "{postrm}");
    assert!(
        !postrm.contains("/var/lib/knot-resolver"),
        "delivered files are never removed:\n{postrm}"
    );

    // 4.
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("--extract")
        .arg(deb)
        .arg(root.path()));
    let installed_binary = root.path().join("usr/bin/kres-kafka");
    let version = run(Command::new(&installed_binary).arg("--version"));
    assert_eq!(version, "kres-kafka 0.1.0\n");
    let help = run(Command::new(&installed_binary).arg("--help"));
    for command in ["run", "send", "status", "validate"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command}\n{help}"
        );
    }
    let example = root.path().join("etc/knot-resolver/kres-kafka.yaml");
    let settings: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    assert_eq!(
        settings["kafka"]["enable"],
        serde_yaml_ng::Value::Bool(false)
    );

    if installed("man", "man-db") {
        let page = run(Command::new("man")
            .arg("-l")
            .arg(root.path().join("usr/share/man/man1/kres-kafka-run.1.gz"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100"));
        assert!(
            page.contains("kres-kafka-run") && page.contains("--check"),
            "{page}"
        );
    }

    let unit_text =
        std::fs::read_to_string(root.path().join(unit.trim_start_matches('/'))).unwrap();
    assert!(
        unit_text.contains("\nDocumentation=man:kres-kafka(1)")
            && unit_text.contains("\nExecStart=/usr/bin/kres-kafka run ")
            && !unit_text.contains("/usr/local"),
        "{unit_text}"
    );
    if installed("systemd-analyze", "systemd") {
        // The root holds the package alone: the units every service depends on
        // (sysinit.target...) come from this machine's systemd, without replacing any file of
        // the package; the man pages `Documentation=` names are looked for in the root.
        let units = root.path().join("usr/lib/systemd/system");
        run(Command::new("cp")
            .arg("-rn")
            .arg("/usr/lib/systemd/system/.")
            .arg(&units));
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .arg(unit)
            .env("MANPATH", root.path().join("usr/share/man"))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify\n{}",
            show(&out)
        );
    }
}
