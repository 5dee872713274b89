//! cpio "newc" (SVR4 without CRC), the format the kernel unpacks an
//! initramfs from. Written here so that every field is under control:
//! unique inode numbers (the kernel links entries that share one), entries
//! in path order, one mtime for all.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result, io};
use crate::image::tree::{Content, Node, Tree, path_bytes};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const TRAILER: &str = "TRAILER!!!";

struct Header<'a> {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    name: &'a [u8],
}

fn pad4(w: &mut impl Write, written: u64) -> io::Result<()> {
    let pad = (4 - (written % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..pad])
}

fn header(w: &mut impl Write, h: &Header<'_>) -> io::Result<()> {
    let namesize = h.name.len() + 1;
    let fields = [
        h.ino,
        h.mode,
        h.uid,
        h.gid,
        h.nlink,
        h.mtime,
        h.size,
        0,
        0,
        0,
        0,
        namesize as u32,
        0,
    ];
    let mut s = String::with_capacity(110);
    s.push_str("070701");
    for f in fields {
        s.push_str(&format!("{f:08x}"));
    }
    w.write_all(s.as_bytes())?;
    w.write_all(h.name)?;
    w.write_all(&[0])?;
    pad4(w, (110 + namesize) as u64)
}

/// Writes `tree` as a newc archive to `w`, every mtime `mtime`.
pub fn write(tree: &Tree, w: &mut impl Write, mtime: u32) -> Result<()> {
    let err = |e: io::Error| Error::Other(format!("writing cpio archive: {e}"));
    for (i, (path, e)) in tree.iter().enumerate() {
        let ino = u32::try_from(i + 1)
            .map_err(|_| Error::Other("more entries than cpio inode numbers".into()))?;
        let name = path_bytes(path);
        let base = Header {
            ino,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            nlink: 1,
            mtime,
            size: 0,
            name,
        };
        match &e.node {
            Node::Dir => header(
                w,
                &Header {
                    mode: S_IFDIR | e.mode,
                    nlink: 2,
                    ..base
                },
            )
            .map_err(err)?,
            Node::Symlink(t) => {
                let t = path_bytes(t);
                header(
                    w,
                    &Header {
                        mode: S_IFLNK | 0o777,
                        size: t.len() as u32,
                        ..base
                    },
                )
                .map_err(err)?;
                w.write_all(t).map_err(err)?;
                pad4(w, t.len() as u64).map_err(err)?;
            }
            Node::File(c) => {
                let too_big = || Error::Other(format!("{}: too large for cpio", path.display()));
                match c {
                    Content::Bytes(b) => {
                        let size = u32::try_from(b.len()).map_err(|_| too_big())?;
                        header(
                            w,
                            &Header {
                                mode: S_IFREG | e.mode,
                                size,
                                ..base
                            },
                        )
                        .map_err(err)?;
                        w.write_all(b).map_err(err)?;
                        pad4(w, b.len() as u64).map_err(err)?;
                    }
                    Content::Host(h) => {
                        let mut f = File::open(h).map_err(io(h))?;
                        let len = f.metadata().map_err(io(h))?.size();
                        let size = u32::try_from(len).map_err(|_| too_big())?;
                        header(
                            w,
                            &Header {
                                mode: S_IFREG | e.mode,
                                size,
                                ..base
                            },
                        )
                        .map_err(err)?;
                        let copied = io::copy(&mut f, w).map_err(io(h))?;
                        if copied != len {
                            return Err(Error::Other(format!(
                                "{}: changed size while being archived",
                                h.display()
                            )));
                        }
                        pad4(w, len).map_err(err)?;
                    }
                }
            }
        }
    }
    header(
        w,
        &Header {
            ino: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            size: 0,
            name: TRAILER.as_bytes(),
        },
    )
    .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tree::Entry;
    use std::path::Path;
    use std::process::{Command, Stdio};

    #[test]
    fn gnu_cpio_lists_it() {
        let mut t = Tree::new();
        t.insert(
            Path::new("bin/busybox"),
            Entry::file(Content::Bytes(b"12345".to_vec()), 0o755),
        )
        .unwrap();
        t.insert(Path::new("bin/sh"), Entry::symlink("busybox"))
            .unwrap();
        let mut secret = Entry::file(Content::Bytes(b"s".to_vec()), 0o600);
        secret.uid = 3;
        t.insert(Path::new("etc/secret"), secret).unwrap();
        let mut buf = Vec::new();
        write(&t, &mut buf, 1_700_000_000).unwrap();
        let mut child = Command::new("cpio")
            .args(["-t", "-v", "--quiet", "--numeric-uid-gid"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&buf).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" bin"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("-rwxr-xr-x") && lines[1].contains(" 5 "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("lrwxrwxrwx") && lines[2].ends_with("bin/sh -> busybox"),
            "{text}"
        );
        let secret: Vec<&str> = lines[4].split_whitespace().collect();
        assert_eq!(
            (secret[0], secret[2], secret[3]),
            ("-rw-------", "3", "0"),
            "{text}"
        );
    }
}
