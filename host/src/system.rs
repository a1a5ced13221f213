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
