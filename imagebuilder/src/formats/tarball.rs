//! A root tree as a reproducible tar stream: entries sorted by name with
//! each folder before its contents, mtimes clamped to SOURCE_DATE_EPOCH,
//! numeric owners and modes kept, symbolic links stored (never followed),
//! hard links stored as links, device nodes and FIFOs kept, and every
//! extended attribute (file capabilities among them) in a PAX header as
//! `SCHILY.xattr.<name>`, the form GNU tar reads with `--xattrs`.
//!
//! The walk holds only the sorted names of the folders on its current
//! path, so memory does not grow with the tree.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::error::{Error, Result, io};
use crate::progress::{Event, Progress};

/// Bytes between two progress reports.
const REPORT_EVERY: u64 = 64 << 20;

/// Writes trees into one tar stream.
pub struct TarWriter<'a, W: Write> {
    builder: tar::Builder<W>,
    epoch: u64,
    /// First path of each multiply-linked file, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
    progress: &'a dyn Progress,
    done: u64,
    reported: u64,
    /// Entries written.
    pub count: u64,
}

impl<W: Write> std::fmt::Debug for TarWriter<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarWriter")
            .field("count", &self.count)
            .finish()
    }
}

/// Reads exactly `len` bytes from a file, failing if it has fewer (a file
/// that shrank while being archived would corrupt the stream).
struct Exact<R> {
    inner: R,
    left: u64,
    path: PathBuf,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being archived", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

impl<'a, W: Write> TarWriter<'a, W> {
    pub fn new(w: W, epoch: u64, progress: &'a dyn Progress) -> TarWriter<'a, W> {
        let mut builder = tar::Builder::new(w);
        builder.follow_symlinks(false);
        builder.mode(tar::HeaderMode::Complete);
        TarWriter {
            builder,
            epoch,
            links: HashMap::new(),
            progress,
            done: 0,
            reported: 0,
            count: 0,
        }
    }

    /// Archives everything under `root` (names relative to it; the root
    /// itself is `./`).
    pub fn append_tree(&mut self, root: &Path) -> Result<()> {
        let md = fs::symlink_metadata(root).map_err(io(root))?;
        if !md.is_dir() {
            return Err(Error::Other(format!("{}: not a folder", root.display())));
        }
        self.entry(root, Path::new("./"), &md)?;
        self.walk(root, Path::new(""))
    }

    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(dir)
            .map_err(io(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::result::Result<_, _>>()
            .map_err(io(dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            let p = dir.join(&n);
            let r = rel.join(&n);
            let md = fs::symlink_metadata(&p).map_err(io(&p))?;
            self.entry(&p, &r, &md)?;
            if md.is_dir() {
                self.walk(&p, &r)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, p: &Path, rel: &Path, md: &fs::Metadata) -> Result<()> {
        let err = |e: io::Error| Error::Other(format!("archiving {}: {e}", p.display()));
        let ft = md.file_type();
        let mut h = Header::new_gnu();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(u64::from(md.uid()));
        h.set_gid(u64::from(md.gid()));
        h.set_mtime(u64::try_from(md.mtime()).unwrap_or(0).min(self.epoch));
        h.set_size(0);
        let xattrs = read_xattrs(p)?;
        if !xattrs.is_empty() {
            self.builder
                .append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(err)?;
        }
        self.count += 1;
        let dir_name;
        let rel = if ft.is_dir() && rel != Path::new("./") {
            let mut s = rel.as_os_str().to_owned();
            s.push("/");
            dir_name = PathBuf::from(s);
            dir_name.as_path()
        } else {
            rel
        };
        if ft.is_symlink() {
            let target = fs::read_link(p).map_err(io(p))?;
            h.set_entry_type(EntryType::Symlink);
            return self.builder.append_link(&mut h, rel, &target).map_err(err);
        }
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            return self
                .builder
                .append_data(&mut h, rel, io::empty())
                .map_err(err);
        }
        if ft.is_file() {
            if md.nlink() > 1 {
                let key = (md.dev(), md.ino());
                if let Some(first) = self.links.get(&key) {
                    h.set_entry_type(EntryType::Link);
                    let first = first.clone();
                    return self.builder.append_link(&mut h, rel, &first).map_err(err);
                }
                self.links.insert(key, rel.to_owned());
            }
            h.set_entry_type(EntryType::Regular);
            h.set_size(md.size());
            let f = File::open(p).map_err(io(p))?;
            let data = Exact {
                inner: f,
                left: md.size(),
                path: p.to_owned(),
            };
            self.builder.append_data(&mut h, rel, data).map_err(err)?;
            self.done += md.size();
            if self.done - self.reported >= REPORT_EVERY {
                self.reported = self.done;
                self.progress.event(Event::Bytes {
                    done: self.done,
                    total: None,
                });
            }
            return Ok(());
        }
        let (kind, rdev) = if ft.is_char_device() {
            (EntryType::Char, md.rdev())
        } else if ft.is_block_device() {
            (EntryType::Block, md.rdev())
        } else if ft.is_fifo() {
            (EntryType::Fifo, 0)
        } else {
            // Sockets only exist while their server runs; tar has no type.
            self.count -= 1;
            return Ok(());
        };
        h.set_entry_type(kind);
        h.set_device_major(libc::major(rdev)).map_err(err)?;
        h.set_device_minor(libc::minor(rdev)).map_err(err)?;
        self.builder
            .append_data(&mut h, rel, io::empty())
            .map_err(err)
    }

    /// Ends the archive and returns the writer.
    pub fn finish(self) -> Result<W> {
        self.builder
            .into_inner()
            .map_err(|e| Error::Other(format!("finishing the tar stream: {e}")))
    }
}

/// Every extended attribute of `p` (not following a link), as PAX keys.
fn read_xattrs(p: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(p) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(io(p)(e)),
    };
    let mut out = Vec::new();
    for n in names {
        let Some(value) = xattr::get(p, &n).map_err(io(p))? else {
            continue;
        };
        out.push((format!("SCHILY.xattr.{}", n.to_string_lossy()), value));
    }
    out.sort();
    Ok(out)
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: sha2::Sha256,
    pub len: u64,
}

impl<W> std::fmt::Debug for HashingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingWriter")
            .field("len", &self.len)
            .finish()
    }
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        use sha2::Digest;
        HashingWriter {
            inner,
            hasher: sha2::Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the byte count and the sha256 (hex).
    pub fn finish(self) -> (W, u64, String) {
        use sha2::Digest;
        (
            self.inner,
            self.len,
            crate::hash::hex(&self.hasher.finalize()),
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
