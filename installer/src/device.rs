//! Facts about the SAN target: a block device or a regular file.

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use cluster::{Bytes, SectorSize};

/// What kind of target a SAN path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    BlockDevice,
    RegularFile,
}

/// Size and sector size of a SAN target, read without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFacts {
    pub path: PathBuf,
    pub kind: TargetKind,
    pub size: Bytes,
    /// Logical sector size the kernel reports; `None` for a regular file,
    /// whose sector size is whatever the plan says.
    pub sector_size: Option<SectorSize>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither a block device nor a regular file")]
    NotATarget { path: PathBuf },
    #[error("cannot read the size of {path}: {source}")]
    Size {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} reports a logical sector size of {size} bytes; vlx supports 512 and 4096")]
    SectorSize { path: PathBuf, size: u32 },
}

// From <linux/fs.h>: _IOR(0x12, 114, size_t) and _IO(0x12, 104).
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;

/// Reads the facts of `path` (opening it read-only).
pub fn inspect(path: &Path) -> Result<TargetFacts, DeviceError> {
    let file = File::open(path).map_err(|source| DeviceError::Open {
        path: path.to_owned(),
        source,
    })?;
    let meta = file.metadata().map_err(|source| DeviceError::Size {
        path: path.to_owned(),
        source,
    })?;
    let ft = meta.file_type();
    if ft.is_file() {
        return Ok(TargetFacts {
            path: path.to_owned(),
            kind: TargetKind::RegularFile,
            size: Bytes(meta.len()),
            sector_size: None,
        });
    }
    if !ft.is_block_device() {
        return Err(DeviceError::NotATarget {
            path: path.to_owned(),
        });
    }
    let fd = file.as_raw_fd();
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid.
    if unsafe { libc::ioctl(fd, BLKGETSIZE64, &mut size as *mut u64) } != 0 {
        return Err(DeviceError::Size {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    let mut ssz: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which is valid.
    if unsafe { libc::ioctl(fd, BLKSSZGET, &mut ssz as *mut libc::c_int) } != 0 {
        return Err(DeviceError::Size {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    let sector = SectorSize::try_from(ssz as u32).map_err(|_| DeviceError::SectorSize {
        path: path.to_owned(),
        size: ssz as u32,
    })?;
    Ok(TargetFacts {
        path: path.to_owned(),
        kind: TargetKind::BlockDevice,
        size: Bytes(size),
        sector_size: Some(sector),
    })
}
