//! Copying a node's rendered files from `vlx-meta` onto its root.
//!
//! The root is the image plus what the node wrote since (its snapshot
//! store), so nothing in it is trusted: every entry is written relative to
//! the handle of its folder, found beneath the root without crossing a
//! symbolic link ([`beneath`]). Regular files and symbolic links are copied
//! with their modes (set-id bits included) and owners; a file replaces
//! whatever was at its path (a file, or a symbolic link such as Debian's
//! `/etc/resolv.conf`) by a rename, so that no half-written file is left
//! and no link of the image is followed. Directories are created with the
//! mode and owner of the source; directories the image has already keep
//! theirs: the image defines its folders, the rendered tree supplies files.
//! A link where the tree has a folder is replaced by the folder. Other file
//! types (devices, FIFOs, sockets) have no business in a rendered tree and
//! are refused.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use beneath::{Dir, Kind, Root};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A write beneath the root failed, or would have crossed a link.
    #[error("writing onto the root: {0}")]
    Place(#[from] beneath::Error),
    #[error("{src} is a {kind}, which a rendered tree may not hold")]
    Special { src: PathBuf, kind: &'static str },
    #[error("{src} is a file, but {dst} is a directory")]
    FileOverDir { src: PathBuf, dst: PathBuf },
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Read {
        path: path.to_owned(),
        source,
    }
}

/// Copies the contents of `src` over the root folder `dst`; returns how
/// many files and links were written.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<usize, CopyError> {
    // The source is read first, so that a missing one is named as such.
    fs::read_dir(src).map_err(read_err(src))?;
    let root = Root::open(dst)?;
    copy_dir(src, root.as_dir())
}

fn copy_dir(src: &Path, to: &Dir) -> Result<usize, CopyError> {
    let mut names: Vec<_> = fs::read_dir(src)
        .map_err(read_err(src))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read_err(src))?;
    names.sort();
    let mut count = 0;
    for name in names {
        let from = src.join(&name);
        let meta = fs::symlink_metadata(&from).map_err(read_err(&from))?;
        let ft = meta.file_type();
        let existing = to.stat(&name)?.map(|s| s.kind);
        if ft.is_dir() {
            match existing {
                Some(Kind::Dir) => {}
                Some(_) => {
                    // A file or link where the tree has a folder: the tree wins.
                    to.remove_file(&name)?;
                    make_dir(to, &name, &meta)?;
                }
                None => make_dir(to, &name, &meta)?,
            }
            count += copy_dir(&from, &to.open_dir(&name)?)?;
        } else if ft.is_file() || ft.is_symlink() {
            if existing == Some(Kind::Dir) {
                return Err(CopyError::FileOverDir {
                    src: from,
                    dst: to.at(&name),
                });
            }
            let tmp = to.temp_name();
            let made = (|| -> Result<(), CopyError> {
                if ft.is_symlink() {
                    let target = fs::read_link(&from).map_err(read_err(&from))?;
                    to.symlink(&target, &tmp)?;
                } else {
                    let mut f = to.create_file(&tmp, 0o600)?;
                    let mut r = fs::File::open(&from).map_err(read_err(&from))?;
                    io::copy(&mut r, &mut f).map_err(|source| CopyError::Write {
                        path: to.at(&name),
                        source,
                    })?;
                }
                to.chown(&tmp, meta.uid(), meta.gid())?;
                if ft.is_file() {
                    // After the chown, which clears set-id bits.
                    to.chmod(&tmp, meta.permissions().mode() & 0o7777)?;
                }
                to.rename(&tmp, &name)?;
                Ok(())
            })();
            if let Err(e) = made {
                // The entry's error is the one to report; the temporary
                // name goes when it can.
                let _ = to.remove_file(&tmp);
                return Err(e);
            }
            count += 1;
        } else {
            let kind = if ft_is(&meta, libc::S_IFIFO) {
                "FIFO"
            } else if ft_is(&meta, libc::S_IFSOCK) {
                "socket"
            } else {
                "device node"
            };
            return Err(CopyError::Special { src: from, kind });
        }
    }
    Ok(count)
}

fn ft_is(meta: &fs::Metadata, kind: libc::mode_t) -> bool {
    meta.mode() & libc::S_IFMT == kind
}

fn make_dir(to: &Dir, name: &std::ffi::OsStr, like: &fs::Metadata) -> Result<(), CopyError> {
    to.mkdir(name, 0o700)?;
    to.chown(name, like.uid(), like.gid())?;
    to.chmod(name, like.mode() & 0o7777)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{lchown, symlink};

    fn write(path: &Path, text: &str, mode: u32, owner: (u32, u32)) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        lchown(path, Some(owner.0), Some(owner.1)).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn is_root() -> bool {
        // SAFETY: getuid cannot fail.
        unsafe { libc::getuid() == 0 }
    }

    #[test]
    fn copies_modes_owners_and_links_over_the_image() {
        // Owners other than our own need root; the tests run as root here
        // and in CI, and otherwise check with our own ids.
        let (uid, gid) = if is_root() {
            (1234, 5678)
        } else {
            // SAFETY: getuid and getgid cannot fail.
            unsafe { (libc::getuid(), libc::getgid()) }
        };
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        write(&src.join("etc/hostname"), "n1\n", 0o644, (0, 0));
        write(
            &src.join("etc/ssh/ssh_host_ed25519_key"),
            "key",
            0o600,
            (uid, gid),
        );
        write(&src.join("usr/bin/tool"), "#!/bin/sh\n", 0o4755, (0, 0));
        fs::create_dir_all(src.join("var/lib/new")).unwrap();
        fs::set_permissions(src.join("var/lib/new"), fs::Permissions::from_mode(0o700)).unwrap();
        symlink("../run/resolv.conf", src.join("etc/resolv.conf")).unwrap();

        // The image: an old hostname, resolv.conf as a link into /run
        // (which must be replaced, not followed), /etc with its own mode.
        write(&dst.join("etc/hostname"), "image\n", 0o644, (0, 0));
        fs::set_permissions(dst.join("etc"), fs::Permissions::from_mode(0o751)).unwrap();
        fs::create_dir_all(dst.join("run")).unwrap();
        symlink("/run/image-resolv.conf", dst.join("etc/resolv.conf")).unwrap();
        write(&dst.join("run/image-resolv.conf"), "image", 0o644, (0, 0));

        assert_eq!(copy_tree(&src, &dst).unwrap(), 4);

        assert_eq!(
            fs::read_to_string(dst.join("etc/hostname")).unwrap(),
            "n1\n"
        );
        let key = fs::metadata(dst.join("etc/ssh/ssh_host_ed25519_key")).unwrap();
        assert_eq!(
            (key.mode() & 0o7777, key.uid(), key.gid()),
            (0o600, uid, gid)
        );
        let tool = fs::metadata(dst.join("usr/bin/tool")).unwrap();
        assert_eq!(tool.mode() & 0o7777, 0o4755);
        let new = fs::metadata(dst.join("var/lib/new")).unwrap();
        assert_eq!(new.mode() & 0o7777, 0o700);
        assert_eq!(
            fs::read_link(dst.join("etc/resolv.conf")).unwrap(),
            Path::new("../run/resolv.conf")
        );
        assert_eq!(
            fs::read_to_string(dst.join("run/image-resolv.conf")).unwrap(),
            "image"
        );
        let etc = fs::metadata(dst.join("etc")).unwrap();
        assert_eq!(
            etc.mode() & 0o7777,
            0o751,
            "existing folders keep their mode"
        );
        let leftovers: Vec<_> = fs::read_dir(dst.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".vlx-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn refuses_a_file_over_a_folder_and_special_files() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst) = (t.path().join("src"), t.path().join("dst"));
        write(&src.join("etc"), "not a folder", 0o644, (0, 0));
        fs::create_dir_all(dst.join("etc")).unwrap();
        let err = copy_tree(&src, &dst).unwrap_err();
        assert!(matches!(err, CopyError::FileOverDir { .. }), "{err}");

        let src2 = t.path().join("src2");
        fs::create_dir_all(&src2).unwrap();
        let fifo = std::ffi::CString::new(src2.join("pipe").to_str().unwrap()).unwrap();
        // SAFETY: a valid path string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let err = copy_tree(&src2, &dst).unwrap_err();
        assert!(err.to_string().contains("FIFO"), "{err}");
    }

    #[test]
    fn links_the_root_holds_are_replaced_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let (src, dst, out) = (
            t.path().join("src"),
            t.path().join("dst"),
            t.path().join("outside"),
        );
        write(&src.join("etc/ssh/key"), "new", 0o600, (0, 0));
        write(&src.join("etc/motd"), "hello", 0o644, (0, 0));
        write(&out.join("key"), "intact", 0o644, (0, 0));
        write(&out.join("motd"), "intact", 0o644, (0, 0));
        fs::create_dir_all(dst.join("etc")).unwrap();
        // Planted by whoever used the node before: links out of the root.
        symlink(&out, dst.join("etc/ssh")).unwrap();
        symlink(out.join("motd"), dst.join("etc/motd")).unwrap();
        assert_eq!(copy_tree(&src, &dst).unwrap(), 2);
        assert_eq!(fs::read_to_string(out.join("key")).unwrap(), "intact");
        assert_eq!(fs::read_to_string(out.join("motd")).unwrap(), "intact");
        assert!(fs::symlink_metadata(dst.join("etc/ssh")).unwrap().is_dir());
        assert_eq!(fs::read_to_string(dst.join("etc/ssh/key")).unwrap(), "new");
        assert_eq!(fs::read_to_string(dst.join("etc/motd")).unwrap(), "hello");
    }

    #[test]
    fn names_a_missing_source() {
        let t = tempfile::tempdir().unwrap();
        let err = copy_tree(&t.path().join("nope"), t.path()).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
