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
}

/// Creates `path` as a sparse file of `size` bytes (it must not exist: a
/// rehearsal never reuses a SAN).
pub fn create(path: &Path, size: Bytes) -> Result<(), SanError> {
    let io = |what| {
        move |source| SanError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
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
    let io = |what| {
        move |source| SanError::Io {
            what,
            path: san.to_owned(),
            source,
        }
    };
    let mut f = File::open(san).map_err(io("opening the SAN image"))?;
    f.seek(SeekFrom::Start(p.offset(layout.sector_size).get()))
        .map_err(io("seeking to vlx-origin in"))?;
    let mut left = p.size.get();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let want = left.min(CHUNK as u64) as usize;
        f.read_exact(&mut buf[..want])
            .map_err(io("reading vlx-origin from"))?;
        h.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(cluster::plan::hex(&h.finalize()))
}

/// The first offset in `path` where one of `needles` occurs, reading only
/// the file's data (its holes are zeros, and a SAN image is mostly holes).
pub fn find_any(path: &Path, needles: &[&[u8]]) -> Result<Option<(usize, u64)>, SanError> {
    use std::os::fd::AsRawFd;
    let io = |what| {
        move |source| SanError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    let mut f = File::open(path).map_err(io("opening the SAN image"))?;
    let len = f
        .metadata()
        .map_err(io("reading the SAN image's size"))?
        .len();
    let keep = needles.iter().map(|n| n.len()).max().unwrap_or(1).max(1) - 1;
    let mut buf = vec![0u8; 8 << 20];
    let mut at: u64 = 0;
    while at < len {
        // SEEK_DATA: the next byte at or after `at` that is not in a hole
        // (ENXIO: none is left).
        let off = i64::try_from(at).unwrap_or(i64::MAX);
        // SAFETY: lseek on a descriptor this function owns; no memory is
        // touched.
        let data = unsafe { libc::lseek(f.as_raw_fd(), off, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                return Ok(None);
            }
            return Err(io("finding the SAN image's data")(e));
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(f.as_raw_fd(), data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io("finding the SAN image's holes")(
                std::io::Error::last_os_error(),
            ));
        }
        let (data, hole) = (data.unsigned_abs(), hole.unsigned_abs());
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
