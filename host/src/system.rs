//! Facts about the machine the host runs on: its clock and its hostname (the guest gets both
//! from the host, never from WASI), the user the process runs as, who holds a lock, and one
//! flush of a whole filesystem.

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

/// The user id the process acts as: the one whose permissions the files directory's checks
/// try.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The pid of another process holding a `flock` on `path`, as `/proc/locks` tells (Linux); a
/// lock on a directory has no room for a pid file, and the kernel knows the holder anyway.
/// `None` when it cannot be told.
pub fn flock_holder(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let (dev, ino) = (meta.dev(), meta.ino());
    // glibc's encoding of a dev_t; /proc/locks prints it as `major:minor:inode`, in hex.
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let ours = std::process::id();
    let holders = |exact: bool| {
        locks
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; a waiter's line has `->`.
                let at = fields.iter().position(|f| *f == "FLOCK")?;
                let pid: u32 = fields.get(at + 3)?.parse().ok()?;
                let mut id = fields.get(at + 4)?.rsplitn(3, ':');
                let inode: u64 = id.next()?.parse().ok()?;
                let minor_of = u64::from_str_radix(id.next()?, 16).ok()?;
                let major_of = u64::from_str_radix(id.next()?, 16).ok()?;
                (inode == ino && pid != ours && (!exact || (major_of, minor_of) == (major, minor)))
                    .then_some(pid)
            })
            .collect::<Vec<u32>>()
    };
    // Some filesystems (btrfs subvolumes) show another device there than stat does: the
    // inode alone then, when only one lock matches it.
    match holders(true).as_slice() {
        [pid, ..] => Some(*pid),
        [] => match holders(false).as_slice() {
            [pid] => Some(*pid),
            _ => None,
        },
    }
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

/// Make every write to the filesystem holding `dir` durable, file contents and directory
/// entries alike, in one call (`syncfs`). A batch of files costs one journal commit this way,
/// where an fsync per file costs one each.
#[cfg(target_os = "linux")]
pub fn sync_filesystem(dir: &std::path::Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(dir)?;
    rustix::fs::syncfs(&dir)?;
    Ok(())
}

/// Elsewhere, `sync`: every filesystem.
#[cfg(not(target_os = "linux"))]
pub fn sync_filesystem(_dir: &std::path::Path) -> std::io::Result<()> {
    rustix::fs::sync();
    Ok(())
}

/// Give the memory the allocator holds free back to the system. Compiling a guest touches
/// about 100 MiB for a moment, on several threads; glibc would keep it all in its per-thread
/// arenas for the life of the process.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drop this process's resident copy of `bytes`, a part of the executable's own read-only data
/// (`include_bytes!`), once it has been used: the pages stay mapped, and are read again from
/// the executable if touched again. The embedded guest (13 MB, wasm and compiled code) is read
/// once at start-up; kept resident, it would count in the daemon's memory for its whole life.
/// Elsewhere than Linux, nothing.
///
/// # Safety
///
/// `bytes` must lie in a read-only mapping of a file nothing writes (`include_bytes!` data of
/// this executable): on anonymous memory the pages would read back as zeros.
pub unsafe fn drop_resident(bytes: &'static [u8]) {
    #[cfg(target_os = "linux")]
    {
        let page = rustix::param::page_size();
        let start = (bytes.as_ptr() as usize).next_multiple_of(page);
        let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
        if end <= start {
            return;
        }
        // SAFETY: the range lies within `bytes`, a read-only mapping of a file nothing writes
        // (the caller's promise): MADV_DONTNEED only drops the resident pages, which read
        // back the same bytes from the file on the next access.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = bytes;
}

/// Serve allocations of up to 4 MiB from the heap, and keep up to 32 MiB of it free, instead of
/// mapping and unmapping each large one. Every message's value is copied out of librdkafka into
/// such an allocation (a chunk is 512 KiB); glibc maps anything over 128 KiB afresh, and a fresh
/// mapping costs a page fault per 4 KiB written. glibc raises that threshold by itself after the
/// first large free, so without this the daemon's speed depended on what it happened to free
/// first: `bench throughput` A and S went 20 to 30% slower when loading a cached guest stopped
/// freeing a 10 MB buffer. A batch (8 MiB) and the next one being read are freed together: with
/// 8 MiB kept, the heap gave them back and faulted them in again for every batch (a tenth of
/// the daemon's CPU on one large file, `bench throughput` O); the peak does not move, as what
/// is kept was in use at the peak.
pub fn keep_large_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes the allocator's thresholds; it may be called at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

/// Start writing `len` bytes of `file` from `offset` to the disk, without waiting for it
/// (Linux `sync_file_range` with `SYNC_FILE_RANGE_WRITE`). Not a durability guarantee (the
/// batch's flush is): it lets the disk work while the guest goes on, instead of all at the
/// flush. Elsewhere, and on failure, nothing.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range reads no memory of ours; the descriptor is open for the
        // duration of the call.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

#[cfg(test)]
mod tests {
    #[cfg(target_os = "linux")]
    #[test]
    fn the_holder_of_a_directory_lock_is_found_by_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        {
            let ours = std::fs::File::open(dir.path()).unwrap();
            ours.lock().unwrap();
            assert_eq!(
                super::flock_holder(dir.path()),
                None,
                "ours is not another's"
            );
        }
        // flock(1) holds the lock itself while its command runs.
        let Ok(mut holder) = std::process::Command::new("flock")
            .arg(dir.path())
            .args(["sleep", "30"])
            .spawn()
        else {
            return;
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = None;
        while seen.is_none() && std::time::Instant::now() < deadline {
            seen = super::flock_holder(dir.path());
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = holder.kill();
        let _ = holder.wait();
        assert_eq!(seen, Some(holder.id()));
    }
}
