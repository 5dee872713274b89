//! Streaming an image onto the target: read and write overlapped in two
//! threads, then sync, drop the cache, and read back: the read back's
//! sha256 is compared with the manifest's.
//!
//! The bytes are hashed once, as they come back from the target, not on
//! their way to it: a read back that matches the manifest proves both the
//! source and the write, and a hash on the write path would cost the copy
//! its speed wherever the CPU hashes slower than the target writes (an
//! emulated guest, a fast SAN). The source file is hashed only when the
//! read back does not match, to say which side was wrong (see
//! [`StreamError::SourceHash`] and [`StreamError::ReadBack`]). Before
//! anything is written the installer has checked the whole image against
//! its manifest ([`crate::image::HostImage::open`]), so a mismatch here
//! means the source changed since or the target returned other bytes.
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

use crate::device::TargetKind;
use crate::target::{Target, TargetError};

/// Size of one pipeline buffer.
pub const BLOCK: usize = 4 << 20;
/// Buffers in flight: one being read, one queued, one written, and one
/// spare, so that the reader can start the next block while a written
/// buffer is on its way back.
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
    /// The read back did not match the manifest, and neither does the
    /// source: the image file is damaged or was changed after it was
    /// checked.
    #[error(
        "{path} has sha256 {got}, but the manifest says {want}: the image file is damaged or was \
         changed after it was checked, so {target} at byte {offset} does not hold the image"
    )]
    SourceHash {
        path: PathBuf,
        got: String,
        want: String,
        target: PathBuf,
        offset: u64,
    },
    /// The read back did not match the manifest, but the source does now:
    /// the target returned other bytes than were written, or (the copy no
    /// longer hashes on its way) the source read differently during the
    /// copy, as failing install media can; the message says both.
    #[error(
        "{target} at byte {offset} reads back as sha256 {got}, but {path} was written there and \
         hashes to {want}, as the manifest says: {}",
        difference(*first_difference, *offset)
    )]
    ReadBack {
        target: PathBuf,
        offset: u64,
        path: PathBuf,
        got: String,
        want: String,
        /// Bytes into the copy of the first byte that differs from the
        /// source on a second read; `None` when the second read matched.
        first_difference: Option<u64>,
    },
    #[error("{path} is {size} bytes, more than the {room}-byte partition")]
    TooLarge { path: PathBuf, size: u64, room: u64 },
}

fn difference(first: Option<u64>, offset: u64) -> String {
    match first {
        Some(d) => format!(
            "the first byte that differs is at byte {} of the target ({d} into the image): the \
             target stored or returned other bytes, or the source read differently during the \
             copy (failing media)",
            offset + d
        ),
        None => "a second read matched the source byte for byte, so the target's reads are not \
                 stable"
            .into(),
    }
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub bytes: u64,
    /// sha256 of what the target holds, read back: the manifest's.
    pub sha256: String,
    /// The copy until the data is synced (no hashing).
    pub write_time: Duration,
    /// The read back and its hash, from the device (page cache dropped).
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

/// Copies `src` to `target` at `offset` (at most `room` bytes), syncs it,
/// and reads it back: Ok only when what the target returns hashes to
/// `want`, the manifest's sha256. All-zero blocks are written as zeros on
/// a device and punched as holes in an image file ([`Target::zero`]).
/// `progress` is told the bytes written so far.
///
/// On a mismatch the source is hashed too, and the error says which side
/// was wrong: [`StreamError::SourceHash`] or [`StreamError::ReadBack`].
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
    pipeline(&file, src, size, target, offset, progress)?;
    target.sync()?;
    let write_time = start.elapsed();
    let start = Instant::now();
    target.drop_cache(offset, size)?;
    let back = hash_range(target, offset, size)?;
    if back != want {
        return Err(mismatch(&file, src, size, target, offset, want, back));
    }
    Ok(Copied {
        bytes: size,
        sha256: back,
        write_time,
        verify_time: start.elapsed(),
    })
}

/// The error of a read back `back` that is not the manifest's `want`: the
/// source hashed, and when it is right, the first byte where the target
/// differs from it (a second read, cache dropped). Only this failure path
/// reads the source twice.
fn mismatch(
    file: &File,
    src: &Path,
    size: u64,
    target: &Target,
    offset: u64,
    want: &str,
    back: String,
) -> StreamError {
    // The error names the source file, whose path it carries.
    let source = match hash_file_range(file, src, 0, size) {
        Ok(h) => h,
        Err(e) => return e.into(),
    };
    if source != want {
        return StreamError::SourceHash {
            path: src.to_owned(),
            got: source,
            want: want.to_owned(),
            target: target.path().to_owned(),
            offset,
        };
    }
    let first_difference = match target
        .drop_cache(offset, size)
        .map_err(StreamError::from)
        .and_then(|()| first_difference(file, src, target, offset, size))
    {
        Ok(d) => d,
        Err(e) => return e,
    };
    StreamError::ReadBack {
        target: target.path().to_owned(),
        offset,
        path: src.to_owned(),
        got: back,
        want: want.to_owned(),
        first_difference,
    }
}

/// Bytes into the copy of the first byte where the target at `offset`
/// differs from `file`, comparing `size` bytes a block at a time.
fn first_difference(
    file: &File,
    src: &Path,
    target: &Target,
    offset: u64,
    size: u64,
) -> Result<Option<u64>, StreamError> {
    let mut pos = 0u64;
    while pos < size {
        let n = BLOCK.min((size - pos) as usize);
        let a = crate::device::read_at(file, pos, n).map_err(|source| StreamError::Source {
            path: src.to_owned(),
            source,
        })?;
        let b = target.read_at(offset + pos, n)?;
        if let Some(i) = a.iter().zip(&b).position(|(x, y)| x != y) {
            return Ok(Some(pos + i as u64));
        }
        if a.len() != b.len() {
            return Ok(Some(pos + a.len().min(b.len()) as u64));
        }
        pos += n as u64;
    }
    Ok(None)
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

/// Reader → writer, each in its own thread, buffers recycled: the file is
/// read while the previous block is written.
fn pipeline(
    file: &File,
    src: &Path,
    size: u64,
    target: &Target,
    offset: u64,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), StreamError> {
    let (free_tx, free_rx): (SyncSender<Buf>, Receiver<Buf>) = sync_channel(BUFFERS);
    for _ in 0..BUFFERS {
        // The channel holds exactly BUFFERS items, so this cannot block.
        let _ = free_tx.send(Buf::new());
    }
    let (write_tx, write_rx) = sync_channel::<Block>(1);

    std::thread::scope(|s| {
        let reader = s.spawn(move || -> Result<(), StreamError> {
            let mut file = file;
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
                if write_tx.send((pos, buf)).is_err() {
                    return Ok(()); // the writer failed and says why
                }
                pos += want as u64;
            }
            Ok(())
        });
        // On an image file an all-zero block becomes a hole (no space
        // used). On a device it is written like any other block, direct,
        // as dd writes it: through the page cache its zeros would all wait
        // for the final sync (most blocks of a fresh ext4 origin are zero).
        let holes = target.facts().kind == TargetKind::RegularFile;
        let writer = s.spawn(move || -> Result<(), StreamError> {
            let mut done = 0;
            for (pos, buf) in write_rx {
                let data = buf.bytes();
                if holes && all_zero(data) {
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
        r?;
        w
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
mod tests;
