//! The exclusive lock an install holds on its target for its whole run, so
//! that a second `apply` (or `reset-node`) on the same target refuses
//! instead of redoing steps under the first one's writes.
//!
//! The lock is a non-blocking `flock(LOCK_EX)` on the open target: for a
//! block device it is taken on the device node, which every process that
//! opens `/dev/sdX` (or a link to it) shares; for an image file on the
//! file. A loop device over an image file is another inode, so when the
//! target is a loop device its backing file is locked as well: an install
//! on the file and one on the loop device exclude each other. The lock goes
//! with the process (a crash or SIGKILL releases it); nothing is written to
//! take it. Who holds it is read from `/proc/locks`.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{path} is locked by another install ({holder})")]
    Held { path: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}")]
    Failed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Takes an exclusive lock on `file` (opened from `path`) without waiting.
pub fn exclusive(file: &File, path: &Path) -> Result<(), LockError> {
    // SAFETY: flock only takes the descriptor, which `file` keeps open.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
        return Err(LockError::Failed {
            path: path.to_owned(),
            source: err,
        });
    }
    let holder = file
        .metadata()
        .ok()
        .and_then(|m| {
            let locks = std::fs::read_to_string("/proc/locks").ok()?;
            holder_pid(&locks, m.dev(), m.ino())
        })
        .map(describe_pid)
        .unwrap_or_else(|| "holder unknown: not in /proc/locks of this namespace".into());
    Err(LockError::Held {
        path: path.to_owned(),
        holder,
    })
}

/// The pid of the process that holds an exclusive `flock` on the inode
/// `ino` of the file system `dev`, from the text of `/proc/locks`, whose
/// lines read `1: FLOCK  ADVISORY  WRITE 26673 fe:00:10011409 0 EOF`
/// (major and minor in hex, the inode in decimal; fs/locks.c).
pub fn holder_pid(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    locks.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // A blocked waiter's line has "->" after the number: not a holder.
        (f.get(1) == Some(&"FLOCK")
            && f.get(3) == Some(&"WRITE")
            && f.get(5) == Some(&want.as_str()))
        .then(|| f.get(4)?.parse().ok())
        .flatten()
    })
}

/// `pid 1234 (vlx-install apply --cluster ...)`.
fn describe_pid(pid: u32) -> String {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(b) if !b.is_empty() => {
            let args: Vec<String> = b
                .split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            format!("pid {pid}: {}", args.join(" "))
        }
        _ => format!("pid {pid}"),
    }
}

/// The backing file of a loop device `major:minor`, if it is one.
pub fn loop_backing_file(rdev: (u32, u32)) -> Option<PathBuf> {
    let s = std::fs::read_to_string(format!(
        "/sys/dev/block/{}:{}/loop/backing_file",
        rdev.0, rdev.1
    ))
    .ok()?;
    let s = s.trim().trim_end_matches(" (deleted)");
    (!s.is_empty()).then(|| PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_by_device_and_inode() {
        let locks = "1: POSIX  ADVISORY  WRITE 11 fe:00:10011409 0 EOF\n\
                     2: FLOCK  ADVISORY  READ 12 fe:00:10011409 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 13 08:01:77 0 EOF\n\
                     3: -> FLOCK  ADVISORY  WRITE 15 fe:00:10011409 0 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 14 fe:00:10011409 0 EOF\n";
        let dev = libc::makedev(0xfe, 0);
        assert_eq!(holder_pid(locks, dev, 10011409), Some(14));
        assert_eq!(holder_pid(locks, libc::makedev(8, 1), 77), Some(13));
        assert_eq!(holder_pid(locks, dev, 1), None);
    }
}
