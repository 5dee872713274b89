//! Paths taken from inputs (archive members, overlay entries, rendered
//! trees), resolved and written beneath one root directory, never by
//! joining strings.
//!
//! A [`Root`] holds a directory handle. Every path is resolved relative to
//! it with `openat2(2)` (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS` for [`Links::Refuse`], `RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS` for [`Links::InRoot`]), or, where the kernel has
//! no `openat2` (`ENOSYS`, before Linux 5.6), by an equivalent walk that
//! opens one component at a time with `O_NOFOLLOW`. What comes out is a
//! [`Dir`], the handle of a folder beneath the root; every write
//! (`mkdirat`, `mknodat`, `symlinkat`, `linkat`, `renameat`, `unlinkat`,
//! `fchownat`, `fchmodat`, `utimensat`) names a single component relative to
//! that handle, so no link and no `..` is ever crossed after the check.
//!
//! Nothing here removes anything but a single entry of a [`Dir`] (or a
//! folder tree below it, not following links), so nothing outside the
//! root is ever removed. New entries are made under a temporary name
//! ([`Dir::temp_name`]) and renamed into place by the callers, so that
//! nothing half-written ever carries a final name.
//!
//! Entries named by a [`Dir`] whose contents are needed as a path (xattrs
//! of device nodes, removing a folder tree) go through
//! `/proc/self/fd/N/NAME`: the magic link is the held handle itself, and
//! `NAME` is one component, never followed at the end.

mod dir;
mod error;
mod resolve;

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

pub use dir::{Dir, Kind, Stat};
pub use error::{Error, Result, Why, shown};

/// How symbolic links on the way to an entry are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Any link among the folders on the way is refused, as are `..` and
    /// absolute paths: for archives and other untrusted trees.
    Refuse,
    /// Links are followed as if the root were `/` (absolute targets start
    /// at the root, `..` stops at it), as the booted system would follow
    /// them: for overlays laid onto an image that has `lib -> usr/lib`.
    InRoot,
}

/// How folders are looked up: `openat2`, or the `O_NOFOLLOW` walk (the
/// fallback for kernels without `openat2`, which tests can ask for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2`, falling back to the walk on `ENOSYS`.
    Openat2,
    /// Always the component-by-component walk.
    Walk,
}

/// The handle of a root folder, and what resolves beneath it.
#[derive(Debug)]
pub struct Root {
    dir: Dir,
    resolver: Resolver,
}

impl Root {
    /// Opens the folder `path` (which is trusted: it may itself be reached
    /// through links) as a root.
    pub fn open(path: &Path) -> Result<Root> {
        Root::open_with(path, Resolver::Openat2)
    }

    /// As [`Root::open`], choosing how folders are looked up.
    pub fn open_with(path: &Path, resolver: Resolver) -> Result<Root> {
        let fd =
            std::fs::File::open(path).map_err(|e| Error::io("opening the root folder", path, e))?;
        let md = fd
            .metadata()
            .map_err(|e| Error::io("opening the root folder", path, e))?;
        if !md.is_dir() {
            return Err(Error::io(
                "opening the root folder",
                path,
                std::io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        Ok(Root {
            dir: Dir::new(OwnedFd::from(fd), path.to_owned()),
            resolver,
        })
    }

    /// The root's path, as given (for messages).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The root folder itself.
    pub fn as_dir(&self) -> &Dir {
        &self.dir
    }

    /// Opens the folder `rel` beneath the root, every component a folder
    /// reached as `links` says. An empty `rel` (or `.`) is the root.
    pub fn dir(&self, rel: &Path, links: Links) -> Result<Dir> {
        self.open_dir(rel, links, None)
    }

    /// As [`Root::dir`], creating missing folders with `mode` (permission
    /// bits, before the umask) on the way.
    pub fn create_dirs(&self, rel: &Path, links: Links, mode: u32) -> Result<Dir> {
        self.open_dir(rel, links, Some(mode))
    }

    /// The folder holding `rel` (opened as [`Root::dir`] does, creating it
    /// with `create` as the mode when given) and `rel`'s last component,
    /// which is not resolved: the caller makes, replaces or inspects it.
    pub fn parent_of(
        &self,
        rel: &Path,
        links: Links,
        create: Option<u32>,
    ) -> Result<(Dir, std::ffi::OsString)> {
        let comps = components(rel, links)?;
        let Some((last, parents)) = comps.split_last() else {
            return Err(Error::Escape {
                path: rel.to_owned(),
                why: Why::NoName,
            });
        };
        if *last == OsStr::new("..") {
            return Err(Error::Escape {
                path: rel.to_owned(),
                why: Why::NoName,
            });
        }
        let parent: PathBuf = parents.iter().collect();
        let dir = self
            .open_dir(&parent, links, create)
            .map_err(|e| e.on(rel))?;
        Ok((dir, (*last).to_owned()))
    }

    fn open_dir(&self, rel: &Path, links: Links, create: Option<u32>) -> Result<Dir> {
        let comps = components(rel, links)?;
        if comps.is_empty() {
            return self.dir.try_clone();
        }
        if self.resolver == Resolver::Openat2 {
            match resolve::openat2_dir(self.dir.as_fd(), rel, links) {
                Ok(fd) => return Ok(Dir::new(fd, self.path().join(rel))),
                // Old kernels: the walk does the same.
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
                // Refusals and missing folders: the walk names the
                // component that made it so, and makes what `create` asks.
                Err(_) => {}
            }
        }
        resolve::walk(self, rel, &comps, links, create)
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }
}

impl AsRawFd for Root {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.dir.as_raw_fd()
    }
}

/// The components of `rel` for a lookup. With [`Links::Refuse`], an
/// absolute path or a `..` is refused; with [`Links::InRoot`] both are
/// kept (`..` as a component, a leading `/` dropped), the walk keeps them
/// at the root.
fn components(rel: &Path, links: Links) -> Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                if links == Links::Refuse {
                    return Err(Error::Escape {
                        path: rel.to_owned(),
                        why: Why::Absolute,
                    });
                }
            }
            Component::ParentDir => {
                if links == Links::Refuse {
                    return Err(Error::Escape {
                        path: rel.to_owned(),
                        why: Why::ParentDir,
                    });
                }
                out.push(OsStr::new(".."));
            }
        }
    }
    Ok(out)
}

/// Is `name` one plain component (no `/`, not `.` or `..`, not empty)?
pub fn is_one_component(name: &OsStr) -> bool {
    let b = std::os::unix::ffi::OsStrExt::as_bytes(name);
    !b.is_empty() && b != b"." && b != b".." && !b.contains(&b'/') && !b.contains(&0)
}
