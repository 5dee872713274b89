//! Copying a node's rendered files from `vlx-meta` onto its root.
//!
//! Regular files and symbolic links are copied with their modes (set-id
//! bits included) and owners; a file replaces whatever was at its path (a
//! file, or a symbolic link such as Debian's `/etc/resolv.conf`) by a rename,
//! so that no half-written file is left and no link of the image is
//! followed. Directories are created with the mode and owner of the source;
//! directories the image has already keep theirs: the image defines its
//! folders, the rendered tree supplies files. Other file types (devices,
//! FIFOs, sockets) have no business in a rendered tree and are refused.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

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

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
    move |source| CopyError::Write {
        path: path.to_owned(),
        source,
    }
}

/// Copies the contents of `src` over `dst`; returns how many files and links
/// were written.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<usize, CopyError> {
    let mut names: Vec<_> = fs::read_dir(src)
        .map_err(read_err(src))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read_err(src))?;
    names.sort();
    let mut count = 0;
    for name in names {
        let from = src.join(&name);
        let to = dst.join(&name);
        let meta = fs::symlink_metadata(&from).map_err(read_err(&from))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            match fs::symlink_metadata(&to) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    // A file or link where the tree has a folder: the tree wins.
                    fs::remove_file(&to).map_err(write_err(&to))?;
                    make_dir(&to, &meta)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => make_dir(&to, &meta)?,
                Err(e) => return Err(write_err(&to)(e)),
            }
            count += copy_tree(&from, &to)?;
        } else if ft.is_file() || ft.is_symlink() {
            if fs::symlink_metadata(&to).is_ok_and(|m| m.is_dir()) {
                return Err(CopyError::FileOverDir { src: from, dst: to });
            }
            let tmp = dst.join(format!(".vlx-node.{}", name.to_string_lossy()));
            let _ = fs::remove_file(&tmp);
            if ft.is_symlink() {
                let target = fs::read_link(&from).map_err(read_err(&from))?;
                symlink(&target, &tmp).map_err(write_err(&tmp))?;
            } else {
                fs::copy(&from, &tmp).map_err(read_err(&from))?;
            }
            lchown(&tmp, Some(meta.uid()), Some(meta.gid())).map_err(write_err(&tmp))?;
            if ft.is_file() {
                // After the chown, which clears set-id bits.
                fs::set_permissions(&tmp, fs::Permissions::from_mode(meta.mode() & 0o7777))
                    .map_err(write_err(&tmp))?;
            }
            fs::rename(&tmp, &to).map_err(write_err(&to))?;
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

fn make_dir(path: &Path, like: &fs::Metadata) -> Result<(), CopyError> {
    fs::create_dir(path).map_err(write_err(path))?;
    lchown(path, Some(like.uid()), Some(like.gid())).map_err(write_err(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(like.mode() & 0o7777))
        .map_err(write_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            .filter(|n| n.starts_with(".vlx-node"))
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
    fn names_a_missing_source() {
        let t = tempfile::tempdir().unwrap();
        let err = copy_tree(&t.path().join("nope"), t.path()).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
