//! A folder's handle, and every operation on one entry of it, by name.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result, Why};
use crate::is_one_component;

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
    Socket,
}

/// What `fstatat` (not following a link) says of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub kind: Kind,
    /// Permission bits (with set-id and sticky bits).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub size: u64,
}

/// The handle of a folder beneath a root, with its path for messages.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Makes temporary names unique within this process.
static TEMP: AtomicU64 = AtomicU64::new(0);

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

impl Dir {
    pub(crate) fn new(fd: OwnedFd, path: PathBuf) -> Dir {
        Dir { fd, path }
    }

    /// The folder's path (for messages only: nothing is looked up by it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another handle of the same folder.
    pub fn try_clone(&self) -> Result<Dir> {
        Ok(Dir {
            fd: self
                .fd
                .try_clone()
                .map_err(|e| Error::io("duplicating the handle of", &self.path, e))?,
            path: self.path.clone(),
        })
    }

    /// The path of `name` in this folder, for messages.
    pub fn at(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    fn cname(&self, name: &OsStr) -> Result<CString> {
        if !is_one_component(name) {
            return Err(Error::Escape {
                path: self.at(name),
                why: Why::NoName,
            });
        }
        CString::new(name.as_bytes()).map_err(|_| Error::Escape {
            path: self.at(name),
            why: Why::NoName,
        })
    }

    fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// `/proc/self/fd/N/NAME`: this handle's folder and one name in it.
    fn proc_path(&self, name: &OsStr) -> Result<CString> {
        self.cname(name)?;
        let mut p = format!("/proc/self/fd/{}/", self.raw()).into_bytes();
        p.extend_from_slice(name.as_bytes());
        CString::new(p).map_err(|_| Error::Escape {
            path: self.at(name),
            why: Why::NoName,
        })
    }

    /// The entry `name`, not following a link; `None` when there is none.
    pub fn stat(&self, name: &OsStr) -> Result<Option<Stat>> {
        let c = self.cname(name)?;
        // SAFETY: an all-zero `stat` is a valid value for the kernel to fill.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: the handle is open, `c` NUL-terminated and `st` writable;
        // all outlive the call.
        let rc =
            unsafe { libc::fstatat(self.raw(), c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENOENT) {
                return Ok(None);
            }
            return Err(Error::io("inspecting", &self.at(name), e));
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFCHR => Kind::Char,
            libc::S_IFBLK => Kind::Block,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            _ => Kind::File,
        };
        Ok(Some(Stat {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            dev: st.st_dev,
            ino: st.st_ino,
            nlink: st.st_nlink,
            size: u64::try_from(st.st_size).unwrap_or(0),
        }))
    }

    /// Opens the folder `name` of this folder, refusing a link.
    pub fn open_dir(&self, name: &OsStr) -> Result<Dir> {
        self.cname(name)?;
        match open_nofollow(self.fd.as_fd(), name) {
            Ok(fd) => Ok(Dir::new(fd, self.at(name))),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let why = match self.stat(name)? {
                    Some(Stat {
                        kind: Kind::Symlink,
                        ..
                    }) => Why::Symlink(self.at(name)),
                    _ => Why::NotADirectory(self.at(name)),
                };
                Err(Error::Escape {
                    path: self.at(name),
                    why,
                })
            }
            Err(e) => Err(Error::io("opening", &self.at(name), e)),
        }
    }

    /// The target of the link `name`.
    pub fn read_link(&self, name: &OsStr) -> Result<PathBuf> {
        let c = self.cname(name)?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: the handle is open, `c` NUL-terminated, and `buf` has the
        // length passed; all outlive the call.
        let n = unsafe {
            libc::readlinkat(
                self.raw(),
                c.as_ptr(),
                buf.as_mut_ptr().cast::<libc::c_char>(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(Error::io(
                "reading the link",
                &self.at(name),
                io::Error::last_os_error(),
            ));
        }
        buf.truncate(usize::try_from(n).unwrap_or(0));
        Ok(PathBuf::from(OsString::from_vec(buf)))
    }

    /// Makes the folder `name` with `mode` (before the umask).
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> Result<()> {
        let c = self.cname(name)?;
        // SAFETY: open handle, NUL-terminated name.
        check(unsafe { libc::mkdirat(self.raw(), c.as_ptr(), mode) })
            .map_err(|e| Error::io("making the folder", &self.at(name), e))
    }

    /// Makes a device node or FIFO `name` (`kind` Char, Block or Fifo).
    pub fn mknod(&self, name: &OsStr, kind: Kind, mode: u32, rdev: u64) -> Result<()> {
        let c = self.cname(name)?;
        let fmt = match kind {
            Kind::Char => libc::S_IFCHR,
            Kind::Block => libc::S_IFBLK,
            Kind::Fifo => libc::S_IFIFO,
            _ => {
                return Err(Error::io(
                    "making the node",
                    &self.at(name),
                    io::Error::from_raw_os_error(libc::EINVAL),
                ));
            }
        };
        // SAFETY: open handle, NUL-terminated name.
        check(unsafe { libc::mknodat(self.raw(), c.as_ptr(), fmt | (mode & 0o7777), rdev) })
            .map_err(|e| Error::io("making the node", &self.at(name), e))
    }

    /// Makes the link `name` pointing at `target` (which is stored, never
    /// resolved here).
    pub fn symlink(&self, target: &Path, name: &OsStr) -> Result<()> {
        let c = self.cname(name)?;
        let t = CString::new(target.as_os_str().as_bytes()).map_err(|_| {
            Error::io(
                "making the link",
                &self.at(name),
                io::Error::from_raw_os_error(libc::EINVAL),
            )
        })?;
        // SAFETY: open handle, NUL-terminated strings.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.raw(), c.as_ptr()) })
            .map_err(|e| Error::io("making the link", &self.at(name), e))
    }

    /// Makes `name` a hard link of `from_name` in `from` (a link there is
    /// linked itself, not followed).
    pub fn hard_link(&self, from: &Dir, from_name: &OsStr, name: &OsStr) -> Result<()> {
        let f = from.cname(from_name)?;
        let c = self.cname(name)?;
        // SAFETY: open handles, NUL-terminated names; flags 0 does not
        // follow a link at `from_name`.
        check(unsafe { libc::linkat(from.raw(), f.as_ptr(), self.raw(), c.as_ptr(), 0) })
            .map_err(|e| Error::io("making the hard link", &self.at(name), e))
    }

    /// Creates the new file `name` (never an existing one, never through
    /// a link) for writing, with `mode` (before the umask).
    pub fn create_file(&self, name: &OsStr, mode: u32) -> Result<File> {
        let c = self.cname(name)?;
        // SAFETY: open handle, NUL-terminated name.
        let fd = unsafe {
            libc::openat(
                self.raw(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        };
        if fd < 0 {
            return Err(Error::io(
                "creating",
                &self.at(name),
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: a new descriptor that nothing else owns.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Renames `from` to `to` within this folder, replacing what `to` is
    /// (a link there is replaced, not followed).
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<()> {
        let f = self.cname(from)?;
        let t = self.cname(to)?;
        // SAFETY: open handle, NUL-terminated names.
        check(unsafe { libc::renameat(self.raw(), f.as_ptr(), self.raw(), t.as_ptr()) })
            .map_err(|e| Error::io("renaming into place", &self.at(to), e))
    }

    /// Moves `from_name` of the folder `from` (on the same file system) to
    /// `name` here, replacing what `name` is unless that is a folder.
    pub fn rename_from(&self, from: &Dir, from_name: &OsStr, name: &OsStr) -> Result<()> {
        let f = from.cname(from_name)?;
        let t = self.cname(name)?;
        // SAFETY: open handles, NUL-terminated names.
        check(unsafe { libc::renameat(from.raw(), f.as_ptr(), self.raw(), t.as_ptr()) })
            .map_err(|e| Error::io("moving into place", &self.at(name), e))
    }

    /// Removes the entry `name` (not a folder).
    pub fn remove_file(&self, name: &OsStr) -> Result<()> {
        let c = self.cname(name)?;
        // SAFETY: open handle, NUL-terminated name.
        check(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), 0) })
            .map_err(|e| Error::io("removing", &self.at(name), e))
    }

    /// Removes the empty folder `name`.
    pub fn remove_dir(&self, name: &OsStr) -> Result<()> {
        let c = self.cname(name)?;
        // SAFETY: open handle, NUL-terminated name.
        check(unsafe { libc::unlinkat(self.raw(), c.as_ptr(), libc::AT_REMOVEDIR) })
            .map_err(|e| Error::io("removing the folder", &self.at(name), e))
    }

    /// Removes the folder `name` and everything below it, following no
    /// link (std's `remove_dir_all` walks by handles and unlinks links).
    pub fn remove_dir_all(&self, name: &OsStr) -> Result<()> {
        match self.stat(name)? {
            Some(Stat {
                kind: Kind::Dir, ..
            }) => {}
            _ => return self.remove_file(name),
        }
        let p = self.proc_path(name)?;
        let p = PathBuf::from(OsStr::from_bytes(p.as_bytes()));
        std::fs::remove_dir_all(&p).map_err(|e| Error::io("removing the folder", &self.at(name), e))
    }

    /// Sets the owner of `name`, not following a link.
    pub fn chown(&self, name: &OsStr, uid: u32, gid: u32) -> Result<()> {
        let c = self.cname(name)?;
        // SAFETY: open handle, NUL-terminated name.
        check(unsafe {
            libc::fchownat(self.raw(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
        })
        .map_err(|e| Error::io("setting the owner of", &self.at(name), e))
    }

    /// Sets the permission bits of `name`, which must not be a link (a
    /// link has none of its own, and `fchmodat` would follow it).
    pub fn chmod(&self, name: &OsStr, mode: u32) -> Result<()> {
        let c = self.cname(name)?;
        if let Some(Stat {
            kind: Kind::Symlink,
            ..
        }) = self.stat(name)?
        {
            return Err(Error::Escape {
                path: self.at(name),
                why: Why::Symlink(self.at(name)),
            });
        }
        // SAFETY: open handle, NUL-terminated name.
        check(unsafe { libc::fchmodat(self.raw(), c.as_ptr(), mode & 0o7777, 0) })
            .map_err(|e| Error::io("setting the mode of", &self.at(name), e))
    }

    /// Sets the access and modification times of `name` to `secs`, not
    /// following a link.
    pub fn set_mtime(&self, name: &OsStr, secs: i64) -> Result<()> {
        let c = self.cname(name)?;
        let t = libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let times = [t, t];
        // SAFETY: open handle, NUL-terminated name, two timespecs.
        check(unsafe {
            libc::utimensat(
                self.raw(),
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })
        .map_err(|e| Error::io("setting the times of", &self.at(name), e))
    }

    /// Sets an extended attribute of `name`, not following a link.
    pub fn set_xattr(&self, name: &OsStr, key: &OsStr, value: &[u8]) -> Result<()> {
        let p = self.proc_path(name)?;
        let k = CString::new(key.as_bytes()).map_err(|_| {
            Error::io(
                "setting an attribute of",
                &self.at(name),
                io::Error::from_raw_os_error(libc::EINVAL),
            )
        })?;
        // SAFETY: NUL-terminated strings and a value of the length passed.
        check(unsafe {
            libc::lsetxattr(
                p.as_ptr(),
                k.as_ptr(),
                value.as_ptr().cast::<libc::c_void>(),
                value.len(),
                0,
            )
        })
        .map_err(|e| Error::io("setting an attribute of", &self.at(name), e))
    }

    /// Sets this folder's own owner, mode and times (for a root that an
    /// archive names as `./`).
    pub fn set_own(&self, uid: u32, gid: u32, mode: u32) -> Result<()> {
        // SAFETY: an open handle.
        check(unsafe { libc::fchown(self.raw(), uid, gid) })
            .map_err(|e| Error::io("setting the owner of", &self.path, e))?;
        // SAFETY: an open handle.
        check(unsafe { libc::fchmod(self.raw(), mode & 0o7777) })
            .map_err(|e| Error::io("setting the mode of", &self.path, e))
    }

    /// Sets this folder's own times.
    pub fn set_own_mtime(&self, secs: i64) -> Result<()> {
        let t = libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        };
        let times = [t, t];
        // SAFETY: an open handle and two timespecs.
        check(unsafe { libc::futimens(self.raw(), times.as_ptr()) })
            .map_err(|e| Error::io("setting the times of", &self.path, e))
    }

    /// A name for a new entry that nothing else in this process uses and
    /// that a tree is unlikely to have: new entries are made under it and
    /// renamed to their final name once complete.
    pub fn temp_name(&self) -> OsString {
        let n = TEMP.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!(".vlx-tmp.{}.{n}", std::process::id()))
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Dir {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Opens `name` in `dir` as a folder without following a link.
pub(crate) fn open_nofollow(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    let c =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `dir` is open and `c` is NUL-terminated; both outlive the call.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
