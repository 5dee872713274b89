//! The rig's SAN: a sparse raw image every blade attaches, and the
//! fingerprint of its golden root.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use cluster::{Bytes, DiskLayout, Role};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SanError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the plan's layout has no vlx-origin partition")]
    NoOrigin,
    #[error("the plan's layout has no vlx-meta partition")]
    NoMeta,
}

/// The error of `what` done to `path`, for `map_err`.
fn io_error(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> SanError {
    let path = path.to_owned();
    move |source| SanError::Io { what, path, source }
}

/// Creates `path` as a sparse file of `size` bytes (it must not exist: a
/// rehearsal never reuses a SAN).
pub fn create(path: &Path, size: Bytes) -> Result<(), SanError> {
    let io = |what| io_error(path, what);
    let f = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io("creating the SAN image"))?;
    f.set_len(size.get()).map_err(io("sizing the SAN image"))
}

/// Read size for hashing: large enough to keep the hash, not the system
/// calls, the cost.
const CHUNK: usize = 1 << 20;

/// sha256 of the `vlx-origin` partition, as lower-case hex.
pub fn origin_sha256(san: &Path, layout: &DiskLayout) -> Result<String, SanError> {
    let p = layout.by_role(&Role::Origin).ok_or(SanError::NoOrigin)?;
    sha256_range(san, p.offset(layout.sector_size).get(), p.size.get())
}

/// The meta volume's generation as a blade's `meta-generation` prints it:
/// the UUID of its ext4 file system; `None` while it holds none (the
/// installer zeroes the old superblock first when it makes it again).
pub fn meta_generation(san: &Path, layout: &DiskLayout) -> Result<Option<String>, SanError> {
    let p = layout.by_role(&Role::Meta).ok_or(SanError::NoMeta)?;
    let io = |what| io_error(san, what);
    let mut f = File::open(san).map_err(io("opening"))?;
    f.seek(SeekFrom::Start(p.offset(layout.sector_size).get()))
        .map_err(io("seeking in"))?;
    ext4_uuid(&mut f).map_err(io("reading the meta volume's superblock on"))
}

/// The UUID of the ext4 file system that starts where `f` is, as text.
fn ext4_uuid(f: &mut impl Read) -> std::io::Result<Option<String>> {
    let mut head = [0u8; cluster::locate::EXT4_HEAD];
    f.read_exact(&mut head)?;
    Ok(cluster::locate::ext4_uuid(&head).map(|u| u.to_string()))
}

/// sha256 of the `len` bytes of `path` from `start`, as lower-case hex.
/// Only the file's data is read: its holes are hashed as the zeros they
/// read as (the installer writes an image's zero blocks as holes, so most
/// of a golden root is holes, and reading a gibibyte of them took seconds).
fn sha256_range(path: &Path, start: u64, len: u64) -> Result<String, SanError> {
    let io = |what| io_error(path, what);
    let mut f = File::open(path).map_err(io("opening the SAN image"))?;
    let end = start.saturating_add(len);
    let mut h = Sha256::new();
    let zeros = vec![0u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    let zero = |h: &mut Sha256, mut n: u64| {
        while n > 0 {
            let k = n.min(CHUNK as u64);
            h.update(&zeros[..k as usize]);
            n -= k;
        }
    };
    let mut pos = start;
    while pos < end {
        let (data, hole) = match next_data(&f, pos).map_err(io("finding the data of"))? {
            Some((data, hole)) if data < end => (data, hole.min(end)),
            // Holes to the end (a file that ends before the range does is
            // refused below, as a plain read would fail).
            _ => (end, end),
        };
        zero(&mut h, data - pos);
        f.seek(SeekFrom::Start(data)).map_err(io("seeking in"))?;
        let mut at = data;
        while at < hole {
            let want = (hole - at).min(CHUNK as u64) as usize;
            f.read_exact(&mut buf[..want])
                .map_err(io("reading vlx-origin from"))?;
            h.update(&buf[..want]);
            at += want as u64;
        }
        pos = hole.max(data);
    }
    let file_len = f.metadata().map_err(io("reading the size of"))?.len();
    if file_len < end {
        return Err(io("reading vlx-origin from")(std::io::Error::from(
            std::io::ErrorKind::UnexpectedEof,
        )));
    }
    Ok(cluster::plan::hex(&h.finalize()))
}

/// The data run of `f` at or after `at`: its first byte and the hole that
/// ends it (`SEEK_DATA`, `SEEK_HOLE`); `None` when only holes are left.
fn next_data(f: &File, at: u64) -> std::io::Result<Option<(u64, u64)>> {
    use std::os::fd::AsRawFd;
    let off = i64::try_from(at).unwrap_or(i64::MAX);
    // SAFETY: lseek on a descriptor the caller owns; no memory is touched.
    let data = unsafe { libc::lseek(f.as_raw_fd(), off, libc::SEEK_DATA) };
    if data < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    // SAFETY: as above.
    let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
    if hole < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Some((data.unsigned_abs(), hole.unsigned_abs())))
}

/// The first offset in `path` where one of `needles` occurs, reading only
/// the file's data (its holes are zeros, and a SAN image is mostly holes).
pub fn find_any(path: &Path, needles: &[&[u8]]) -> Result<Option<(usize, u64)>, SanError> {
    let io = |what| io_error(path, what);
    let mut f = File::open(path).map_err(io("opening the SAN image"))?;
    let len = f
        .metadata()
        .map_err(io("reading the SAN image's size"))?
        .len();
    let keep = needles.iter().map(|n| n.len()).max().unwrap_or(1).max(1) - 1;
    let mut buf = vec![0u8; 8 << 20];
    let mut at: u64 = 0;
    while at < len {
        let Some((data, hole)) = next_data(&f, at).map_err(io("finding the data of"))? else {
            return Ok(None);
        };
        // No needle holds a zero byte, so none lies across a hole.
        let mut pos = data;
        f.seek(SeekFrom::Start(pos))
            .map_err(io("seeking in the SAN image"))?;
        while pos < hole {
            let want = usize::try_from((hole - pos).min(buf.len() as u64)).unwrap_or(buf.len());
            f.read_exact(&mut buf[..want])
                .map_err(io("reading the SAN image"))?;
            for (i, n) in needles.iter().enumerate() {
                if let Some(k) = buf[..want].windows(n.len()).position(|w| w == *n) {
                    return Ok(Some((i, pos + k as u64)));
                }
            }
            if hole - pos <= want as u64 {
                break;
            }
            // Step back so that a needle across two reads is seen.
            pos += (want - keep) as u64;
            f.seek(SeekFrom::Start(pos))
                .map_err(io("seeking in the SAN image"))?;
        }
        at = hole;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write;

    #[test]
    fn the_generation_is_the_uuid_blkid_reads_and_none_without_a_superblock() {
        let img = sparse_with(&[], 8 << 20);
        let out = std::process::Command::new("mke2fs")
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-U",
                "0a4eb9ef-d527-5059-903b-b3f7b5ab8e36",
            ])
            .arg(img.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let blkid = std::process::Command::new("blkid")
            .args(["-o", "value", "-s", "UUID"])
            .arg(img.path())
            .output()
            .unwrap();
        let want = String::from_utf8_lossy(&blkid.stdout).trim().to_owned();
        assert_eq!(want, "0a4eb9ef-d527-5059-903b-b3f7b5ab8e36");
        let read = |f: &Path| ext4_uuid(&mut File::open(f).unwrap()).unwrap();
        assert_eq!(read(img.path()), Some(want));
        // mke2fs's first write when it makes a volume again.
        let mut f = File::options().write(true).open(img.path()).unwrap();
        f.seek(SeekFrom::Start(1024)).unwrap();
        f.write_all(&[0u8; 3072]).unwrap();
        assert_eq!(read(img.path()), None);
    }

    fn sparse_with(at: &[(u64, &[u8])], len: u64) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(len).unwrap();
        for (off, bytes) in at {
            f.seek(SeekFrom::Start(*off)).unwrap();
            f.write_all(bytes).unwrap();
        }
        f.flush().unwrap();
        f
    }

    #[test]
    fn finds_a_needle_in_data_far_into_a_sparse_file_and_across_reads() {
        let needles: [&[u8]; 2] = [b"Rig-Blade-0413", b"Rig-Target-0731"];
        // Past 1 GiB, after other data, and across the first two 8 MiB
        // reads of a data run that begins at 1 GiB.
        let run = vec![7u8; (8 << 20) + 8192];
        let f = sparse_with(
            &[
                (4096, &[7u8; 9000]),
                (1 << 30, &run),
                ((1 << 30) + (8 << 20) - 5, b"xxRig-Target-0731yy"),
            ],
            2 << 30,
        );
        assert_eq!(
            find_any(f.path(), &needles).unwrap(),
            Some((1, (1 << 30) + (8 << 20) - 3))
        );
    }

    /// The hash of the range read plainly, holes and all.
    fn plain_sha256(path: &Path, start: u64, len: u64) -> String {
        let mut f = File::open(path).unwrap();
        f.seek(SeekFrom::Start(start)).unwrap();
        let mut all = vec![0u8; len as usize];
        f.read_exact(&mut all).unwrap();
        cluster::plan::hex(&Sha256::digest(&all))
    }

    #[test]
    fn a_range_hashes_its_holes_as_zeros_and_its_data_as_read() {
        // Data across the range's start, inside it (one run longer than a
        // read) and across its end; holes between them and at the ends.
        let long = vec![9u8; CHUNK + 12345];
        let f = sparse_with(
            &[
                ((3 << 20) - 100, &[1u8; 300]),
                (5 << 20, &long),
                ((20 << 20) - 7, b"end-of-range-data"),
                (30 << 20, b"past the range"),
            ],
            32 << 20,
        );
        let (start, len) = (3 << 20, 17 << 20);
        assert_eq!(
            sha256_range(f.path(), start, len).unwrap(),
            plain_sha256(f.path(), start, len)
        );
        // sha256sum, which reads every byte, agrees.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "dd if={} bs=1M skip=3 count=17 status=none | sha256sum",
                f.path().display()
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.split_whitespace().next(),
            Some(sha256_range(f.path(), start, len).unwrap().as_str())
        );
        // A range of holes only, and one past the file's end.
        let holes = sparse_with(&[], 8 << 20);
        assert_eq!(
            sha256_range(holes.path(), 1 << 20, 4 << 20).unwrap(),
            plain_sha256(holes.path(), 1 << 20, 4 << 20)
        );
        assert!(sha256_range(holes.path(), 6 << 20, 4 << 20).is_err());
        // A change anywhere in the range changes the hash.
        let before = sha256_range(f.path(), start, len).unwrap();
        let changed = sparse_with(
            &[
                ((3 << 20) - 100, &[1u8; 300]),
                (5 << 20, &long),
                ((20 << 20) - 7, b"end-of-range-data"),
                (12 << 20, &[0u8; 1]),
                (12 << 20, &[1u8; 1]),
            ],
            32 << 20,
        );
        assert_ne!(sha256_range(changed.path(), start, len).unwrap(), before);
    }

    #[test]
    fn nothing_found_in_data_without_the_needles_or_in_an_empty_file() {
        let needles: [&[u8]; 1] = [b"Rig-Blade-0413"];
        let f = sparse_with(
            &[(1 << 20, b"Rig-Blade-041"), (3 << 20, b"ig-Blade-0413")],
            64 << 20,
        );
        assert_eq!(find_any(f.path(), &needles).unwrap(), None);
        let empty = sparse_with(&[], 0);
        assert_eq!(find_any(empty.path(), &needles).unwrap(), None);
    }
}
