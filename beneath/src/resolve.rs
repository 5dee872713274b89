//! Looking up a folder beneath the root: `openat2`, and the walk that does
//! the same one component at a time.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::dir::{Dir, Kind, open_nofollow};
use crate::error::{Error, Result, Why};
use crate::{Links, Root};

/// How many links one lookup may pass through, as the kernel allows.
const MAX_LINKS: usize = 40;

/// `struct open_how` of `linux/openat2.h` (libc's is `non_exhaustive`).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens the folder `rel` beneath `root` with `openat2`, refusing links
/// and `..` ([`Links::Refuse`]) or keeping them in the root
/// ([`Links::InRoot`]).
pub(crate) fn openat2_dir(root: BorrowedFd<'_>, rel: &Path, links: Links) -> io::Result<OwnedFd> {
    let c = CString::new(rel.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let how = OpenHow {
        flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: match links {
            Links::Refuse => {
                libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS
            }
            Links::InRoot => libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        },
    };
    // SAFETY: `root` is an open descriptor, `c` a NUL-terminated string and
    // `how` a live `struct open_how` whose size is passed with it; all
    // outlive the call, and the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The walk: each component opened with `O_NOFOLLOW` relative to the
/// folder before it. A link is refused ([`Links::Refuse`]) or read and
/// its target walked from the root or the folder it is in
/// ([`Links::InRoot`]); `..` (in-root only) goes back one folder and
/// never above the root. With `create`, missing folders are made.
pub(crate) fn walk(
    root: &Root,
    rel: &Path,
    comps: &[&OsStr],
    links: Links,
    create: Option<u32>,
) -> Result<Dir> {
    let mut todo: Vec<OsString> = comps.iter().rev().map(|c| (*c).to_owned()).collect();
    // The folders below the root, and their path relative to it.
    let mut stack: Vec<Dir> = Vec::new();
    let mut at = PathBuf::new();
    let mut seen = 0;
    let mut made = false;
    while let Some(name) = todo.pop() {
        if name == ".." {
            stack.pop();
            at.pop();
            continue;
        }
        let cur = stack.last().map_or(root.fd(), |d| d.as_fd());
        let next = at.join(&name);
        match open_nofollow(cur, &name) {
            Ok(fd) => {
                made = false;
                stack.push(Dir::new(fd, root.path().join(&next)));
                at = next;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && create.is_some() && !made => {
                let dir = stack.last().unwrap_or(root.as_dir());
                match dir.mkdir(&name, create.unwrap_or(0o755)) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(e),
                }
                made = true;
                todo.push(name);
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let dir = stack.last().unwrap_or(root.as_dir());
                let st = dir
                    .stat(&name)?
                    .ok_or_else(|| Error::io("opening", &root.path().join(&next), e))?;
                if st.kind != Kind::Symlink {
                    return Err(Error::Escape {
                        path: rel.to_owned(),
                        why: Why::NotADirectory(next),
                    });
                }
                if links == Links::Refuse {
                    return Err(Error::Escape {
                        path: rel.to_owned(),
                        why: Why::Symlink(next),
                    });
                }
                seen += 1;
                if seen > MAX_LINKS {
                    return Err(Error::Escape {
                        path: rel.to_owned(),
                        why: Why::TooManyLinks,
                    });
                }
                let target = dir.read_link(&name)?;
                if target.is_absolute() {
                    stack.clear();
                    at = PathBuf::new();
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push(n.to_owned()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            Err(e) => {
                // In the root's own terms a followed link's target is not
                // what the caller asked for: name the path asked for then.
                let named = match links {
                    Links::Refuse => root.path().join(&next),
                    Links::InRoot => root.path().join(rel),
                };
                return Err(Error::io("opening the folder", &named, e));
            }
        }
    }
    match stack.pop() {
        Some(d) => Ok(d),
        None => root.as_dir().try_clone(),
    }
}
