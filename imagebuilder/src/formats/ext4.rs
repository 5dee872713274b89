//! The golden root as an ext4 image: `mke2fs -d STAGING`, with everything
//! that would differ between two builds pinned down: UUID and directory
//! hash seed derived from the profile's hash, `E2FSPROGS_FAKE_TIME` for the
//! superblock times, mtimes clamped in staging, and a debugfs pass that
//! sets every inode's ctime and atime (mke2fs 1.47.0 copies them from the
//! staging files' stat, where the kernel set them to "now").

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cluster::Bytes;

use crate::error::{Error, Result, io};
use crate::tool;

const BLOCK: u64 = 4096;
/// Bytes per on-disk inode (mke2fs's default for ext4).
const INODE_SIZE: u64 = 256;
/// Label of the file system.
pub const LABEL: &str = contracts::names::label::ORIGIN;

/// What a staging tree holds, as mke2fs will need room for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Blocks of file, folder and long-link data.
    pub blocks: u64,
    pub inodes: u64,
}

/// Walks `root` (without following links) and counts blocks and inodes.
pub fn measure(root: &Path) -> Result<Usage> {
    let mut u = Usage::default();
    measure_into(root, &mut u)?;
    Ok(u)
}

fn measure_into(p: &Path, u: &mut Usage) -> Result<()> {
    let md = fs::symlink_metadata(p).map_err(io(p))?;
    u.inodes += 1;
    if md.is_dir() {
        let mut names = 0u64;
        for e in fs::read_dir(p).map_err(io(p))? {
            let e = e.map_err(io(p))?;
            names += e.file_name().len() as u64 + 16;
            measure_into(&e.path(), u)?;
        }
        u.blocks += names.div_ceil(BLOCK).max(1);
    } else if md.file_type().is_symlink() {
        // Targets up to 60 bytes live in the inode itself.
        if md.size() > 60 {
            u.blocks += 1;
        }
    } else {
        u.blocks += md.size().div_ceil(BLOCK);
    }
    Ok(())
}

/// mke2fs's journal size for a file system of `blocks` 4 KiB blocks
/// (ext2fs_default_journal_size in e2fsprogs 1.47).
fn journal_blocks(blocks: u64) -> u64 {
    match blocks {
        b if b < 2048 => 0,
        b if b < 32_768 => 1024,
        b if b < 256 * 1024 => 4096,
        b if b < 512 * 1024 => 8192,
        b if b < 4096 * 1024 => 16_384,
        b if b < 8192 * 1024 => 32_768,
        b if b < 16_384 * 1024 => 65_536,
        b if b < 32_768 * 1024 => 131_072,
        _ => 262_144,
    }
}

/// The image size and inode count for `usage` plus `headroom`, rounded up
/// to whole MiB: content with 5% for extent and metadata blocks, inode
/// tables, group overhead, the journal, then the headroom.
pub fn plan_size(usage: Usage, headroom: Bytes) -> (Bytes, u64) {
    // Room for files written later on the node's snapshot, too.
    let inodes = (usage.inodes + usage.inodes / 4 + 2048).max(headroom.get() / 16_384);
    let content = usage.blocks * BLOCK;
    let base = content + content / 20 + inodes * INODE_SIZE + (8 << 20) + headroom.get();
    let journal = journal_blocks(base / BLOCK) * BLOCK;
    let total = (base + journal).next_multiple_of(1 << 20);
    (Bytes(total), inodes)
}

/// Makes `out` an ext4 image of `staging`.
pub fn make(
    staging: &Path,
    out: &Path,
    size: Bytes,
    inodes: u64,
    uuid: uuid::Uuid,
    hash_seed: uuid::Uuid,
    epoch: u64,
) -> Result<()> {
    let f = File::create(out).map_err(io(out))?;
    f.set_len(size.get()).map_err(io(out))?;
    drop(f);
    let fake = epoch.to_string();
    tool::run(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-I", "256"])
            .args(["-L", LABEL])
            .arg("-N")
            .arg(inodes.to_string())
            .arg("-U")
            .arg(uuid.to_string())
            .arg("-E")
            .arg(format!(
                "root_owner=0:0,hash_seed={hash_seed},lazy_itable_init=0,lazy_journal_init=0,nodiscard"
            ))
            .arg("-d")
            .arg(staging)
            .arg(out)
            .env("E2FSPROGS_FAKE_TIME", &fake)
            .env("MKE2FS_DEVICE_SECTSIZE", "512"),
        &format!("making {} from {}", out.display(), staging.display()),
    )?;
    fix_times(staging, out, epoch)
}

/// Sets ctime and atime of every inode copied from `staging` (and of the
/// root and lost+found) to `epoch`, through one debugfs script.
fn fix_times(staging: &Path, image: &Path, epoch: u64) -> Result<()> {
    let mut paths = vec![PathBuf::from("/"), PathBuf::from("/lost+found")];
    collect(staging, Path::new("/"), &mut paths)?;
    let script_path = image.with_extension("debugfs");
    let mut script = Vec::new();
    for p in &paths {
        let bytes = p.as_os_str().as_bytes();
        if bytes.contains(&b'\n') {
            return Err(Error::Other(format!(
                "{}: a name with a newline cannot be fixed up by debugfs",
                staging.join(p.strip_prefix("/").unwrap_or(p)).display()
            )));
        }
        // debugfs's parser takes a quote inside quotes as two quotes.
        let quoted: Vec<u8> = bytes
            .iter()
            .flat_map(|b| {
                if *b == b'"' {
                    vec![b'"', b'"']
                } else {
                    vec![*b]
                }
            })
            .collect();
        for field in ["ctime", "atime"] {
            script.extend_from_slice(b"sif \"");
            script.extend_from_slice(&quoted);
            script.extend_from_slice(format!("\" {field} @{epoch}\n").as_bytes());
        }
    }
    let mut f = File::create(&script_path).map_err(io(&script_path))?;
    f.write_all(&script).map_err(io(&script_path))?;
    drop(f);
    let out = tool::run(
        Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script_path)
            .arg(image)
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string()),
        &format!("setting inode times in {}", image.display()),
    );
    let _ = fs::remove_file(&script_path);
    let out = out?;
    // debugfs reports a failed command on stderr but still exits 0.
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(line) = stderr
        .lines()
        .find(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
    {
        return Err(Error::Other(format!(
            "debugfs on {}: {line}",
            image.display()
        )));
    }
    Ok(())
}

fn collect(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::result::Result<_, _>>()
        .map_err(io(dir))?;
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let r = rel.join(&n);
        out.push(r.clone());
        if fs::symlink_metadata(&p).map_err(io(&p))?.is_dir() {
            collect(&p, &r, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_grow_with_content_and_headroom() {
        let small = plan_size(
            Usage {
                blocks: 1000,
                inodes: 100,
            },
            Bytes::mib(16),
        );
        let big = plan_size(
            Usage {
                blocks: 100_000,
                inodes: 100,
            },
            Bytes::mib(16),
        );
        assert!(small.0 < big.0);
        assert_eq!(small.0.get() % (1 << 20), 0);
        assert!(big.0.get() >= 100_000 * 4096 + (16 << 20));
    }
}
