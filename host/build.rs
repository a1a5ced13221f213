//! Builds the guest (`guest/`) for `wasm32-wasip2` and hands it to the host as the embedded
//! default guest, so that `cargo build` alone yields a working `kres-kafka`.
//!
//! The guest is built by a nested cargo into its own target directory (`target/wasm`): the
//! outer cargo holds the lock of the main one. `KRES_KAFKA_GUEST_WASM=/path/guest.wasm` embeds
//! a prebuilt guest instead (for packagers who build it separately).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("guest.wasm");

    println!("cargo::rerun-if-env-changed=KRES_KAFKA_GUEST_WASM");
    println!("cargo::rerun-if-changed=src/sandbox/engine.rs");
    if let Some(prebuilt) = env::var_os("KRES_KAFKA_GUEST_WASM") {
        println!("cargo::rerun-if-changed={}", Path::new(&prebuilt).display());
        std::fs::copy(&prebuilt, &out).expect("copying KRES_KAFKA_GUEST_WASM");
        precompile(&out);
        return;
    }
    for watched in ["guest", "wit", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo::rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    ensure_target();

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("wasm");
    let mut build = Command::new(&cargo);
    build
        .current_dir(&workspace)
        .args([
            "build",
            "--package",
            "kres-kafka-guest",
            "--target",
            TARGET,
            "--profile",
            "guest",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the native build must not leak into the WASM one.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        build.env_remove(var);
    }
    let status = build.status().expect("running cargo to build the guest");
    assert!(
        status.success(),
        "building the guest for {TARGET} failed (see the errors above)"
    );

    let wasm = target_dir
        .join(TARGET)
        .join("guest")
        .join("kres_kafka_guest.wasm");
    std::fs::copy(&wasm, &out).unwrap_or_else(|e| panic!("copying {}: {e}", wasm.display()));
    precompile(&out);
}

include!("src/sandbox/engine.rs");

/// Compile the guest at `wasm` for the target's baseline CPU into `guest.cwasm` beside it, so
/// that the daemon's first start does not compile it (2 to 3 s and about 120 MiB). A target
/// wasmtime cannot compile for gets an empty file: the daemon then compiles at start-up.
fn precompile(wasm: &Path) {
    let out = wasm.with_file_name("guest.cwasm");
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let compiled = engine_config(Some(&target))
        .and_then(|config| wasmtime::Engine::new(&config))
        .and_then(|engine| {
            let bytes = std::fs::read(wasm)?;
            engine.precompile_component(&bytes)
        });
    let artifact = compiled.unwrap_or_else(|e| {
        println!("cargo::warning=the embedded guest is not compiled ahead for {target}: {e:#}");
        Vec::new()
    });
    std::fs::write(&out, artifact).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// Install the guest's target with rustup when it is missing, or stop with the command to run.
fn ensure_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|d| d.join("libstd.rlib").exists() || has_std(&d)) {
        return;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if !added.is_ok_and(|s| s.success()) {
        panic!(
            "the Rust target {TARGET} is missing and rustup could not add it: run `rustup target add {TARGET}`"
        );
    }
}

fn has_std(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
    })
}
