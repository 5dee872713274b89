//! Streaming an image onto the target: read, hash and write overlapped in
//! three threads, then sync, drop the cache and read back to compare.
//!
//! Buffers are 4 MiB: large enough that each write is one big request to
//! the device (what `dd bs=4M` does), small enough that the pipeline's few
//! buffers stay far below the 64 MiB memory budget whatever the image size.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::target::{Target, TargetError};

/// Size of one pipeline buffer.
pub const BLOCK: usize = 4 << 20;
/// Buffers in flight: one being read, one hashed, one written, one spare.
const BUFFERS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading {path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("{path} has sha256 {got}, but the manifest says {want}")]
    SourceHash {
        path: PathBuf,
        got: String,
        want: String,
    },
    #[error("read back from {target} at byte {offset}: sha256 {got}, but {want} was written")]
    ReadBack {
        target: PathBuf,
        offset: u64,
        got: String,
        want: String,
    },
    #[error("{path} is {size} bytes, more than the {room}-byte partition")]
    TooLarge { path: PathBuf, size: u64, room: u64 },
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub bytes: u64,
    pub sha256: String,
    /// Copy with hashing, until the data is synced.
    pub write_time: Duration,
    pub verify_time: Duration,
}

fn hex(d: &[u8]) -> String {
    cluster::plan::hex(d)
}

/// True when every byte is zero (compared a word at a time).
fn all_zero(b: &[u8]) -> bool {
    // SAFETY: u128 has no invalid bit patterns; align_to only reinterprets.
    let (head, mid, tail) = unsafe { b.align_to::<u128>() };
    head.iter().all(|x| *x == 0) && mid.iter().all(|x| *x == 0) && tail.iter().all(|x| *x == 0)
}

/// Copies `src` to `target` at `offset` (at most `room` bytes), checking it
/// hashes to `want` on the way and reading it back afterwards. `progress` is
/// told the bytes done so far.
pub fn copy_verified(
    src: &Path,
    want: &str,
    target: &Target,
    offset: u64,
    room: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Copied, StreamError> {
    let file = File::open(src).map_err(|source| StreamError::Source {
        path: src.to_owned(),
        source,
    })?;
    let size = file
        .metadata()
        .map_err(|source| StreamError::Source {
            path: src.to_owned(),
            source,
        })?
        .len();
    if size > room {
        return Err(StreamError::TooLarge {
            path: src.to_owned(),
            size,
            room,
        });
    }
    let start = Instant::now();
    let sha = pipeline(file, src, size, target, offset, progress)?;
    if sha != want {
        return Err(StreamError::SourceHash {
            path: src.to_owned(),
            got: sha,
            want: want.to_owned(),
        });
    }
    target.sync()?;
    let write_time = start.elapsed();
    let start = Instant::now();
    target.drop_cache(offset, size)?;
    let back = hash_range(target, offset, size)?;
    if back != sha {
        return Err(StreamError::ReadBack {
            target: target.path().to_owned(),
            offset,
            got: back,
            want: sha,
        });
    }
    Ok(Copied {
        bytes: size,
        sha256: sha,
        write_time,
        verify_time: start.elapsed(),
    })
}

/// One page of a pipeline buffer; the alignment lets writes bypass the
/// page cache (`O_DIRECT` needs aligned memory).
#[derive(Clone, Copy)]
#[repr(C, align(4096))]
struct Page([u8; crate::target::DIRECT_ALIGN]);

/// A page-aligned buffer of up to [`BLOCK`] bytes.
struct Buf {
    pages: Vec<Page>,
    len: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            pages: vec![
                Page([0; crate::target::DIRECT_ALIGN]);
                BLOCK / crate::target::DIRECT_ALIGN
            ],
            len: 0,
        }
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the pages are plain bytes, contiguous, and len never
        // exceeds their total size (set_len clamps it).
        unsafe { std::slice::from_raw_parts(self.pages.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with the unique borrow of the pages.
        unsafe { std::slice::from_raw_parts_mut(self.pages.as_mut_ptr().cast::<u8>(), self.len) }
    }

    fn set_len(&mut self, len: usize) {
        self.len = len.min(self.pages.len() * crate::target::DIRECT_ALIGN);
    }
}

type Block = (u64, Buf);

/// Reader → hasher → writer, each in its own thread, buffers recycled.
fn pipeline(
    mut file: File,
    src: &Path,
    size: u64,
    target: &Target,
    offset: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<String, StreamError> {
    let (free_tx, free_rx): (SyncSender<Buf>, Receiver<Buf>) = sync_channel(BUFFERS);
    for _ in 0..BUFFERS {
        // The channel holds exactly BUFFERS items, so this cannot block.
        let _ = free_tx.send(Buf::new());
    }
    let (hash_tx, hash_rx) = sync_channel::<Block>(1);
    let (write_tx, write_rx) = sync_channel::<Block>(1);

    std::thread::scope(|s| {
        let reader = s.spawn(move || -> Result<(), StreamError> {
            let mut pos = 0u64;
            while pos < size {
                let Ok(mut buf) = free_rx.recv() else {
                    return Ok(());
                };
                let want = BLOCK.min((size - pos) as usize);
                buf.set_len(want);
                file.read_exact(buf.bytes_mut())
                    .map_err(|source| StreamError::Source {
                        path: src.to_owned(),
                        source,
                    })?;
                if hash_tx.send((pos, buf)).is_err() {
                    return Ok(()); // a later stage failed and says why
                }
                pos += want as u64;
            }
            Ok(())
        });
        let hasher = s.spawn(move || {
            let mut h = Sha256::new();
            for (pos, buf) in hash_rx {
                h.update(buf.bytes());
                if write_tx.send((pos, buf)).is_err() {
                    break;
                }
            }
            hex(&h.finalize())
        });
        let writer = s.spawn(move || -> Result<(), StreamError> {
            let mut done = 0;
            for (pos, buf) in write_rx {
                let data = buf.bytes();
                if all_zero(data) {
                    target.zero(offset + pos, data.len() as u64)?;
                } else {
                    target.write_direct_at(offset + pos, data)?;
                }
                done += data.len() as u64;
                progress(done);
                // The reader may have stopped; then the buffer is not needed.
                let _ = free_tx.send(buf);
            }
            Ok(())
        });
        let w = writer
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let r = reader
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let sha = hasher
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        r?;
        w?;
        Ok(sha)
    })
}

/// sha256 of `len` bytes of the target at `offset`, read in blocks.
pub fn hash_range(target: &Target, offset: u64, len: u64) -> Result<String, TargetError> {
    hash_file_range(target.file(), target.path(), offset, len)
}

/// sha256 of `len` bytes of `file` at `offset`, reading and hashing in two
/// threads.
pub fn hash_file_range(
    file: &std::fs::File,
    path: &Path,
    offset: u64,
    len: u64,
) -> Result<String, TargetError> {
    let (tx, rx) = sync_channel::<Vec<u8>>(2);
    std::thread::scope(|s| {
        let hasher = s.spawn(move || {
            let mut h = Sha256::new();
            for b in rx {
                h.update(&b);
            }
            hex(&h.finalize())
        });
        let mut pos = 0u64;
        let mut result = Ok(());
        while pos < len {
            let n = BLOCK.min((len - pos) as usize);
            let read =
                crate::device::read_at(file, offset + pos, n).map_err(|source| TargetError {
                    op: "reading",
                    path: path.to_owned(),
                    offset: offset + pos,
                    source,
                });
            match read {
                Ok(b) if b.len() == n => {
                    if tx.send(b).is_err() {
                        break;
                    }
                }
                Ok(b) => {
                    result = Err(TargetError {
                        op: "reading (short read)",
                        path: path.to_owned(),
                        offset: offset + pos + b.len() as u64,
                        source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                    });
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            pos += n as u64;
        }
        drop(tx);
        let sha = hasher
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        result.map(|()| sha)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_detection() {
        let mut v = vec![0u8; 4099];
        assert!(all_zero(&v));
        v[4098] = 1;
        assert!(!all_zero(&v));
        v[4098] = 0;
        v[1] = 1;
        assert!(!all_zero(&v[1..]));
    }
}
