//! File systems at an offset of the SAN target, made and read with the real
//! e2fsprogs and util-linux tools, so that what lands on the SAN is what
//! those tools make and check.
//!
//! Everything is deterministic for one plan and epoch: UUIDs and hash seeds
//! are derived from the cluster, and `E2FSPROGS_FAKE_TIME` pins the times
//! mke2fs writes.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::Bytes;
use uuid::Uuid;

use crate::tool::{ToolError, run};

/// An ext4 file system to make.
#[derive(Debug, Clone)]
pub struct Ext4<'a> {
    pub label: &'a str,
    pub uuid: Uuid,
    /// Byte offset of the partition on the target.
    pub offset: Bytes,
    pub size: Bytes,
    /// Files to put in it (`mke2fs -d`); owners, modes and mtimes are taken
    /// from this tree as it is.
    pub contents: Option<&'a Path>,
    /// Seconds since the epoch for every time mke2fs writes.
    pub epoch: u64,
}

/// Makes an ext4 file system in place on `target` (a device or an image).
pub fn mke2fs(target: &Path, fs: &Ext4<'_>) -> Result<(), ToolError> {
    let mut cmd = Command::new("mke2fs");
    cmd.env("E2FSPROGS_FAKE_TIME", fs.epoch.to_string())
        .args([
            "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-L", fs.label,
        ])
        .arg("-U")
        .arg(fs.uuid.to_string())
        // One -E only: a second one replaces the first.
        .arg("-E")
        .arg(format!(
            "offset={},hash_seed={},root_owner=0:0,nodiscard,lazy_itable_init=1",
            fs.offset.get(),
            fs.uuid,
        ));
    if let Some(dir) = fs.contents {
        cmd.arg("-d").arg(dir);
    }
    cmd.arg(target).arg(format!("{}k", fs.size.get() / 1024));
    run(&mut cmd).map(drop)
}

/// `PATH?offset=N`: how e2fsprogs tools open a file system inside a disk.
pub fn at_offset(target: &Path, offset: Bytes) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(format!("?offset={}", offset.get()));
    PathBuf::from(s)
}

/// Reads one file out of an ext4 file system with debugfs; `None` when it
/// is not there (or the file system is unreadable).
pub fn read_file(target: &Path, offset: Bytes, path: &str) -> Result<Option<Vec<u8>>, ToolError> {
    let dir = tempfile::tempdir().map_err(|source| ToolError::Start {
        program: "debugfs (temporary folder)".into(),
        source,
    })?;
    let out = dir.path().join("out");
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump {path} {}", out.display()))
        .arg(at_offset(target, offset)))?;
    match std::fs::read(&out) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ToolError::Start {
            program: "debugfs (reading its output)".into(),
            source,
        }),
    }
}

/// Copies folder `path` of an ext4 file system, with owners, modes and
/// links, into folder `dest` (debugfs `rdump`: `dest/<name of path>`).
/// debugfs reports a missing folder only on its output, so the copy is
/// looked for.
pub fn dump_tree(target: &Path, offset: Bytes, path: &str, dest: &Path) -> Result<(), ToolError> {
    run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump {path} {}", dest.display()))
        .arg(at_offset(target, offset)))?;
    let name = path.rsplit('/').next().unwrap_or(path);
    if !dest.join(name).is_dir() {
        return Err(ToolError::Failed {
            command: format!("debugfs rdump {path} on {}", target.display()),
            status: "nothing copied".into(),
            stderr: format!("{path} is not a folder of the file system"),
        });
    }
    Ok(())
}

/// Replaces one top-level file of an ext4 file system (debugfs `rm` and
/// `write`), then reads it back: debugfs reports failed commands only on
/// its output, so the read-back is the check.
pub fn replace_file(
    target: &Path,
    offset: Bytes,
    name: &str,
    data: &[u8],
    epoch: u64,
) -> Result<(), ToolError> {
    let dir = tempfile::tempdir().map_err(|source| ToolError::Start {
        program: "debugfs (temporary folder)".into(),
        source,
    })?;
    let src = dir.path().join("in");
    let io = |source| ToolError::Start {
        program: "debugfs (staging its input)".into(),
        source,
    };
    std::fs::write(&src, data).map_err(io)?;
    let cmds = dir.path().join("cmds");
    // debugfs reads a bare number as a date first (strptime "%Y%m%d%H%M%S",
    // which is lax: 1796523686 became the year 2340) and as seconds only
    // when that fails; "@N" is seconds always.
    let script = format!(
        "rm /{name}\nwrite {} /{name}\nsif /{name} mode 0100644\nsif /{name} uid 0\nsif /{name} gid 0\nsif /{name} mtime @{epoch}\nsif /{name} ctime @{epoch}\nsif /{name} atime @{epoch}\nsif /{name} crtime @{epoch}\n",
        src.display()
    );
    std::fs::write(&cmds, script).map_err(io)?;
    run(Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(at_offset(target, offset)))?;
    match read_file(target, offset, &format!("/{name}"))? {
        Some(back) if back == data => Ok(()),
        _ => Err(ToolError::Failed {
            command: format!("debugfs write /{name} on {}", target.display()),
            status: "read-back differs".into(),
            stderr: "the file read back is not what was written".into(),
        }),
    }
}

/// The first page of a swap area made by `mkswap` (all it writes besides
/// wiping old signatures), for a partition of `size` bytes.
pub fn swap_header(size: Bytes, label: &str, uuid: Uuid) -> Result<Vec<u8>, ToolError> {
    let dir = tempfile::tempdir().map_err(|source| ToolError::Start {
        program: "mkswap (temporary folder)".into(),
        source,
    })?;
    let img = dir.path().join("swap");
    let io = |source| ToolError::Start {
        program: "mkswap (scratch file)".into(),
        source,
    };
    let f = std::fs::File::create(&img).map_err(io)?;
    f.set_len(size.get()).map_err(io)?;
    drop(f);
    run(Command::new("mkswap")
        .args(["-q", "-L", label, "-U"])
        .arg(uuid.to_string())
        .arg(&img))?;
    // Only the first page: the scratch file is as large as the swap area
    // (sparse), and reading it whole needs that much memory, which an
    // installer environment in RAM does not have for a swap of gigabytes.
    let page = page_size();
    let mut head = Vec::with_capacity(page);
    std::fs::File::open(&img)
        .and_then(|f| f.take(page as u64).read_to_end(&mut head))
        .map_err(io)?;
    head.resize(page, 0);
    Ok(head)
}

/// The swap page size, which is where mkswap puts its signature.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(4096)
}

/// `SWAPSPACE2` sits in the last ten bytes of the first page.
pub fn is_swap(page: &[u8]) -> bool {
    page.len() >= 10 && &page[page.len() - 10..] == b"SWAPSPACE2"
}

/// The ext4 superblock at byte 1024 of a file system: magic and UUID.
pub use cluster::locate::ext4_uuid;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The seconds debugfs `stat` prints for one time field of `path`.
    fn stat_time(img: &Path, path: &str, field: &str) -> u64 {
        let out = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat {path}"))
            .arg(img))
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in debugfs stat: {text}"));
        // " mtime: 0x6b14caa6:00000000 -- ...": seconds, then the extra
        // field whose low two bits extend them past 2038.
        let hex = line.split_whitespace().nth(1).unwrap();
        let (lo, extra) = hex.trim_start_matches("0x").split_once(':').unwrap();
        let lo = u64::from_str_radix(lo, 16).unwrap();
        let extra = u64::from_str_radix(extra, 16).unwrap();
        lo + ((extra & 3) << 32)
    }

    #[test]
    fn a_replaced_file_has_the_epoch_as_every_time() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("meta.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        // An epoch that debugfs would misread as a date without "@".
        let epoch = 1_796_523_686;
        mke2fs(
            &img,
            &Ext4 {
                label: "t",
                uuid: Uuid::from_u128(1),
                offset: Bytes(0),
                size: Bytes(16 << 20),
                contents: None,
                epoch,
            },
        )
        .unwrap();
        replace_file(&img, Bytes(0), "journal.json", b"{}\n", epoch).unwrap();
        for field in ["mtime", "ctime", "atime", "crtime"] {
            assert_eq!(stat_time(&img, "/journal.json", field), epoch, "{field}");
        }
    }
}
