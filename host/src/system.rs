//! Facts about the machine the host runs on: its clock and its hostname. The guest gets both
//! from the host, never from WASI.

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The machine's hostname, which Knot Resolver uses when its config sets none.
pub fn machine_hostname() -> anyhow::Result<String> {
    gethostname::gethostname().into_string().map_err(|name| {
        anyhow::anyhow!("the machine's hostname {name:?} is not UTF-8: pass --hostname")
    })
}

/// Whether an executable named `program` is on `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}
