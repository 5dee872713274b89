//! A staging tree for `mke2fs -d`: files with the owners, modes and times
//! they must have on the SAN, whoever runs the installer.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};

/// A temporary tree; removed when dropped.
#[derive(Debug)]
pub struct Staging {
    dir: tempfile::TempDir,
    epoch: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("staging {path}: {source}")]
pub struct StageError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl Staging {
    /// A new empty tree; `epoch` becomes every mtime in it when sealed.
    pub fn new(epoch: u64) -> Result<Staging, StageError> {
        let dir = tempfile::Builder::new()
            .prefix("vlx-stage-")
            .tempdir()
            .map_err(|source| StageError {
                path: std::env::temp_dir(),
                source,
            })?;
        Ok(Staging { dir, epoch })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn full(&self, rel: &Path) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn own(&self, path: &Path, uid: u32, gid: u32) -> Result<(), StageError> {
        lchown(path, Some(uid), Some(gid)).map_err(|source| StageError {
            path: path.to_owned(),
            source,
        })
    }

    fn parents(&self, rel: &Path) -> Result<(), StageError> {
        if let Some(parent) = self.full(rel).parent() {
            std::fs::create_dir_all(parent).map_err(|source| StageError {
                path: parent.to_owned(),
                source,
            })?;
        }
        Ok(())
    }

    pub fn dir(&self, rel: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), StageError> {
        let p = self.full(rel);
        std::fs::create_dir_all(&p).map_err(|source| StageError {
            path: p.clone(),
            source,
        })?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(|source| {
            StageError {
                path: p.clone(),
                source,
            }
        })?;
        self.own(&p, uid, gid)
    }

    pub fn file(
        &self,
        rel: &Path,
        data: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), StageError> {
        self.parents(rel)?;
        let p = self.full(rel);
        std::fs::write(&p, data).map_err(|source| StageError {
            path: p.clone(),
            source,
        })?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(|source| {
            StageError {
                path: p.clone(),
                source,
            }
        })?;
        self.own(&p, uid, gid)
    }

    /// Copies a file from outside (e.g. the kernel) with the given mode.
    pub fn copy(&self, rel: &Path, src: &Path, mode: u32) -> Result<(), StageError> {
        self.parents(rel)?;
        let p = self.full(rel);
        std::fs::copy(src, &p).map_err(|source| StageError {
            path: src.to_owned(),
            source,
        })?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).map_err(|source| {
            StageError {
                path: p.clone(),
                source,
            }
        })?;
        self.own(&p, 0, 0)
    }

    /// Sets every time in the tree to the epoch (children before parents,
    /// since writing into a folder changes its mtime).
    pub fn seal(&self) -> Result<(), StageError> {
        let mut all = Vec::new();
        collect(self.dir.path(), &mut all)?;
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        all.push(self.dir.path().to_owned());
        let t = libc::timespec {
            tv_sec: self.epoch as libc::time_t,
            tv_nsec: 0,
        };
        for p in all {
            let c = CString::new(p.as_os_str().as_bytes()).map_err(|e| StageError {
                path: p.clone(),
                source: std::io::Error::other(e),
            })?;
            // SAFETY: c is a valid NUL-terminated path and the array holds two timespecs.
            let rc = unsafe {
                libc::utimensat(
                    libc::AT_FDCWD,
                    c.as_ptr(),
                    [t, t].as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc != 0 {
                return Err(StageError {
                    path: p,
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        Ok(())
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), StageError> {
    let rd = std::fs::read_dir(dir).map_err(|source| StageError {
        path: dir.to_owned(),
        source,
    })?;
    for e in rd {
        let e = e.map_err(|source| StageError {
            path: dir.to_owned(),
            source,
        })?;
        let p = e.path();
        let ft = e.file_type().map_err(|source| StageError {
            path: p.clone(),
            source,
        })?;
        if ft.is_dir() {
            collect(&p, out)?;
        }
        out.push(p);
    }
    Ok(())
}
