//! The SAN target opened for writing, which only a [`Checked`] target can
//! become.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use cluster::Bytes;

use crate::device::{Checked, TargetFacts, TargetKind};

/// An open, checked SAN target. Every write goes through here.
#[derive(Debug)]
pub struct Target {
    file: File,
    /// The same target opened with `O_DIRECT` for large aligned writes,
    /// when the file system or device allows it.
    direct: Option<File>,
    facts: TargetFacts,
    /// The locked backing file of a loop-device target (see [`crate::lock`]).
    _backing_lock: Option<File>,
}

/// Alignment of `O_DIRECT` buffers, offsets and lengths: the largest
/// logical sector size vlx supports.
pub const DIRECT_ALIGN: usize = 4096;

#[derive(Debug, thiserror::Error)]
#[error("{op} {path} at byte {offset}: {source}")]
pub struct TargetError {
    pub op: &'static str,
    pub path: PathBuf,
    pub offset: u64,
    #[source]
    pub source: std::io::Error,
}

impl Target {
    /// Takes over the checked target, open for reading and writing (never
    /// truncated) under the install lock, which it holds until dropped.
    pub fn open(checked: Checked) -> Result<Target, TargetError> {
        let (facts, file, backing) = checked.into_parts();
        // tmpfs and some network file systems refuse O_DIRECT; then every
        // write goes through the page cache. O_NONBLOCK: the path was a
        // block device or regular file when checked; should it have become
        // a FIFO since, this open must not hang (and O_DIRECT fails there).
        let direct = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT | libc::O_NONBLOCK)
                .open(&facts.path)
                .ok()
        };
        Ok(Target {
            file,
            direct,
            facts,
            _backing_lock: backing,
        })
    }

    pub fn path(&self) -> &Path {
        &self.facts.path
    }

    pub fn facts(&self) -> &TargetFacts {
        &self.facts
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    fn err(
        &self,
        op: &'static str,
        offset: u64,
    ) -> impl FnOnce(std::io::Error) -> TargetError + '_ {
        move |source| TargetError {
            op,
            path: self.facts.path.clone(),
            offset,
            source,
        }
    }

    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), TargetError> {
        self.file
            .write_all_at(data, offset)
            .map_err(self.err("writing", offset))
    }

    /// Writes around the page cache when `data`, its address and `offset`
    /// are all aligned to [`DIRECT_ALIGN`] (as `dd oflag=direct` does), and
    /// through it otherwise.
    pub fn write_direct_at(&self, offset: u64, data: &[u8]) -> Result<(), TargetError> {
        let aligned = offset % DIRECT_ALIGN as u64 == 0
            && data.len() % DIRECT_ALIGN == 0
            && (data.as_ptr() as usize) % DIRECT_ALIGN == 0;
        match &self.direct {
            Some(d) if aligned => d
                .write_all_at(data, offset)
                .map_err(self.err("writing", offset)),
            _ => self.write_at(offset, data),
        }
    }

    pub fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, TargetError> {
        crate::device::read_at(&self.file, offset, len).map_err(self.err("reading", offset))
    }

    /// Flushes written data to stable storage.
    pub fn sync(&self) -> Result<(), TargetError> {
        self.file.sync_all().map_err(self.err("syncing", 0))
    }

    /// Drops cached pages of a range, so that the next read comes from the
    /// device rather than from memory (a read-back that checks something).
    pub fn drop_cache(&self, offset: u64, len: u64) -> Result<(), TargetError> {
        // SAFETY: posix_fadvise only takes the descriptor and plain integers.
        let rc = unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                offset as i64,
                len as i64,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(self.err("dropping the cache of", offset)(
                std::io::Error::from_raw_os_error(rc),
            ));
        }
        Ok(())
    }

    /// Makes `len` bytes at `offset` read as zeros: a hole in an image file
    /// (no space used), zeros written on a device.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), TargetError> {
        if len == 0 {
            return Ok(());
        }
        if self.facts.kind == TargetKind::RegularFile {
            // SAFETY: fallocate only takes the descriptor and plain integers.
            let rc = unsafe {
                libc::fallocate(
                    self.file.as_raw_fd(),
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                    offset as i64,
                    len as i64,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            // Some file systems cannot punch holes: write the zeros instead.
        }
        const CHUNK: u64 = 1 << 20;
        let zeros = vec![0u8; CHUNK.min(len) as usize];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK);
            self.write_at(offset + done, &zeros[..n as usize])?;
            done += n;
        }
        Ok(())
    }

    pub fn size(&self) -> Bytes {
        self.facts.size
    }
}
