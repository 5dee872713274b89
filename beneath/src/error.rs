//! What can go wrong beneath a root: a path that would leave it (or cross a
//! link), and I/O on a named entry.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// It starts with `/`.
    Absolute,
    /// It has a `..` component.
    ParentDir,
    /// This folder on the way (relative to the root) is a symbolic link.
    Symlink(PathBuf),
    /// This component on the way (relative to the root) is not a folder.
    NotADirectory(PathBuf),
    /// More links on the way than the kernel follows.
    TooManyLinks,
    /// It names no entry (empty, `.` or `..` at its end).
    NoName,
}

#[derive(Debug)]
pub enum Error {
    /// `path` (relative to the root) would leave the root or cross a link.
    Escape { path: PathBuf, why: Why },
    /// `op` on `path` failed.
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// Names the whole path `rel` in a refusal that named a part of it.
    pub(crate) fn on(self, rel: &Path) -> Error {
        match self {
            Error::Escape { why, .. } => Error::Escape {
                path: rel.to_owned(),
                why,
            },
            e => e,
        }
    }

    /// Is this a refusal (the path leaves the root or crosses a link),
    /// rather than an I/O failure?
    pub fn is_escape(&self) -> bool {
        matches!(self, Error::Escape { .. })
    }

    /// The OS error of an I/O failure.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } => source.raw_os_error(),
            Error::Escape { .. } => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Escape { path, why } => {
                let p = shown(path);
                match why {
                    Why::Absolute => write!(f, "{p}: an absolute path"),
                    Why::ParentDir => write!(f, "{p}: a `..` component"),
                    Why::Symlink(at) => {
                        write!(f, "{p}: `{}` on the way is a symbolic link", shown(at))
                    }
                    Why::NotADirectory(at) => {
                        write!(f, "{p}: `{}` on the way is not a folder", shown(at))
                    }
                    Why::TooManyLinks => write!(f, "{p}: too many symbolic links on the way"),
                    Why::NoName => write!(f, "{p}: names no entry"),
                }
            }
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", shown(path)),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Escape { .. } => None,
        }
    }
}

/// A path for messages: control characters (a newline in a member name)
/// escaped, so that a name cannot forge a line of its own.
pub fn shown(p: &Path) -> String {
    let s = p.to_string_lossy();
    if s.chars().any(char::is_control) {
        s.escape_debug().to_string()
    } else {
        s.into_owned()
    }
}
