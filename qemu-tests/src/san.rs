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
