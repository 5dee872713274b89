//! A planned file tree: every path of an initramfs or a small root file
//! system with its type, content source, owner and mode, before anything is
//! written. Writers turn the same value into a staging folder (for
//! `mke2fs -d`) or a cpio archive.
//!
//! Paths are relative (no leading `/`). Parents always exist as entries, and
//! iteration runs in path order, so a parent comes before its children.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result, io};

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Read from this file of the build machine at write time.
    Host(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir,
    File(Content),
    Symlink(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub node: Node,
    /// Permission bits only (with setuid, setgid and sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Entry {
    pub fn dir(mode: u32) -> Entry {
        Entry {
            node: Node::Dir,
            mode,
            uid: 0,
            gid: 0,
        }
    }
    pub fn file(content: Content, mode: u32) -> Entry {
        Entry {
            node: Node::File(content),
            mode,
            uid: 0,
            gid: 0,
        }
    }
    pub fn symlink(target: impl Into<PathBuf>) -> Entry {
        Entry {
            node: Node::Symlink(target.into()),
            mode: 0o777,
            uid: 0,
            gid: 0,
        }
    }
}

/// How many symbolic links a path may pass through, as the kernel allows.
const MAX_LINKS: usize = 40;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<PathBuf, Entry>,
}

/// `path` without a leading `/` and without `.`; `None` when it has `..`.
fn relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Path, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_path(), e))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &Path) -> Option<&Entry> {
        self.entries.get(&self.resolve(path, false).ok()?)
    }

    /// Resolves `path` inside the tree, following the tree's own symbolic
    /// links in every folder component (and in the last one when `follow`).
    /// Absolute link targets resolve from the tree's root; `..` never climbs
    /// above it.
    pub fn resolve(&self, path: &Path, follow: bool) -> Result<PathBuf> {
        let mut todo: Vec<PathBuf> = Vec::new();
        for c in path.components().rev() {
            if let Component::Normal(n) = c {
                todo.push(PathBuf::from(n));
            } else if c == Component::ParentDir {
                todo.push(PathBuf::from(".."));
            }
        }
        let mut at = PathBuf::new();
        let mut links = 0;
        while let Some(name) = todo.pop() {
            if name.as_os_str() == ".." {
                at.pop();
                continue;
            }
            let next = at.join(&name);
            let last = todo.is_empty();
            match self.entries.get(&next) {
                Some(Entry {
                    node: Node::Symlink(target),
                    ..
                }) if !last || follow => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(Error::Other(format!(
                            "{}: too many levels of symbolic links in the image",
                            path.display()
                        )));
                    }
                    if target.is_absolute() {
                        at = PathBuf::new();
                    }
                    for c in target.components().rev() {
                        match c {
                            Component::Normal(n) => todo.push(PathBuf::from(n)),
                            Component::ParentDir => todo.push(PathBuf::from("..")),
                            _ => {}
                        }
                    }
                }
                _ => at = next,
            }
        }
        Ok(at)
    }

    /// Makes `path` and its parents folders (0755, root) where missing.
    pub fn mkdir_p(&mut self, path: &Path) -> Result<PathBuf> {
        let real = self.resolve(path, true)?;
        let mut at = PathBuf::new();
        for c in real.components() {
            at.push(c);
            match self.entries.get(&at) {
                Some(Entry {
                    node: Node::Dir, ..
                }) => {}
                Some(_) => {
                    return Err(Error::Other(format!(
                        "{}: `{}` is already in the image and is not a folder",
                        path.display(),
                        at.display()
                    )));
                }
                None => {
                    self.entries.insert(at.clone(), Entry::dir(0o755));
                }
            }
        }
        Ok(real)
    }

    /// Puts `entry` at `path` (through the tree's links in its parents),
    /// creating missing parents and replacing what was there, unless both
    /// are folders: then only owner and mode change.
    pub fn insert(&mut self, path: &Path, entry: Entry) -> Result<PathBuf> {
        let rel = relative(path)
            .ok_or_else(|| Error::Other(format!("{}: `..` is not allowed here", path.display())))?;
        let name = rel
            .file_name()
            .ok_or_else(|| Error::Other(format!("`{}` names no file", path.display())))?
            .to_owned();
        let parent = self.mkdir_p(rel.parent().unwrap_or(Path::new("")))?;
        let at = parent.join(name);
        if let (
            Some(Entry {
                node: Node::Dir, ..
            }),
            Node::Dir,
        ) = (self.entries.get(&at), &entry.node)
        {
            self.entries.insert(at.clone(), entry);
            return Ok(at);
        }
        if let Some(old) = self.entries.get(&at)
            && old.node == Node::Dir
        {
            // A folder replaced by a file or link takes its children along.
            let gone: Vec<PathBuf> = self
                .entries
                .range(at.clone()..)
                .take_while(|(p, _)| p.starts_with(&at))
                .map(|(p, _)| p.clone())
                .collect();
            for p in gone {
                self.entries.remove(&p);
            }
        }
        self.entries.insert(at.clone(), entry);
        Ok(at)
    }

    /// Adds the build machine's file `host` at the same path, mirroring
    /// every symbolic link on the way (so `/lib64/ld-linux-x86-64.so.2`
    /// arrives as the links and the file the loader walks through). The
    /// file keeps its permission bits; owners are root.
    pub fn add_host_path(&mut self, host: &Path) -> Result<()> {
        self.add_host_path_depth(host, 0)
    }

    fn add_host_path_depth(&mut self, host: &Path, depth: usize) -> Result<()> {
        if depth > MAX_LINKS {
            return Err(Error::Other(format!(
                "{}: too many levels of symbolic links",
                host.display()
            )));
        }
        let rel = relative(host).ok_or_else(|| {
            Error::Other(format!("{}: not a plain absolute path", host.display()))
        })?;
        let mut at = PathBuf::from("/");
        let comps: Vec<&OsStr> = rel.iter().collect();
        for (i, c) in comps.iter().enumerate() {
            at.push(c);
            let md = fs::symlink_metadata(&at).map_err(io(&at))?;
            let rest: PathBuf = comps[i + 1..].iter().collect();
            if md.file_type().is_symlink() {
                let target = fs::read_link(&at).map_err(io(&at))?;
                self.insert(&at, Entry::symlink(&target))?;
                let base = at.parent().unwrap_or(Path::new("/"));
                let resolved = normalize(&base.join(&target).join(&rest));
                return self.add_host_path_depth(&resolved, depth + 1);
            }
            if md.is_dir() {
                if rest.as_os_str().is_empty() {
                    let mode = md.permissions().mode() & 0o7777;
                    self.insert(&at, Entry::dir(mode))?;
                } else {
                    self.mkdir_p(&at)?;
                }
            } else if md.is_file() {
                if !rest.as_os_str().is_empty() {
                    return Err(Error::Other(format!(
                        "{}: `{}` is a file, not a folder",
                        host.display(),
                        at.display()
                    )));
                }
                let mode = md.permissions().mode() & 0o7777;
                self.insert(&at, Entry::file(Content::Host(at.clone()), mode))?;
            } else {
                return Err(Error::Other(format!(
                    "{}: only files, folders and links can be copied from the build machine",
                    at.display()
                )));
            }
        }
        Ok(())
    }

    /// Adds a host folder and everything below it (links kept as links).
    pub fn add_host_tree(&mut self, host: &Path) -> Result<()> {
        self.add_host_path(host)?;
        let md = fs::symlink_metadata(host).map_err(io(host))?;
        if !md.is_dir() {
            return Ok(());
        }
        let mut names: Vec<_> = fs::read_dir(host)
            .map_err(io(host))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::result::Result<_, _>>()
            .map_err(io(host))?;
        names.sort();
        for n in names {
            let p = host.join(n);
            let md = fs::symlink_metadata(&p).map_err(io(&p))?;
            if md.file_type().is_symlink() {
                let target = fs::read_link(&p).map_err(io(&p))?;
                self.insert(&p, Entry::symlink(target))?;
            } else {
                self.add_host_tree(&p)?;
            }
        }
        Ok(())
    }

    /// The size of every file's content, and the entry count.
    pub fn content_size(&self) -> Result<(u64, usize)> {
        let mut total = 0;
        for e in self.entries.values() {
            if let Node::File(c) = &e.node {
                total += match c {
                    Content::Bytes(b) => b.len() as u64,
                    Content::Host(p) => fs::metadata(p).map_err(io(p))?.size(),
                };
            }
        }
        Ok((total, self.entries.len()))
    }

    /// Writes the tree under `dir` (which must exist): owners, modes, and
    /// every mtime set to `mtime` (seconds since the epoch). Each entry is
    /// made relative to its folder's handle beneath `dir`, never through a
    /// link (the tree's own links are resolved when planning, so no entry
    /// lies under one).
    pub fn write_to(&self, dir: &Path, mtime: i64) -> Result<()> {
        use beneath::{Links, Root};
        let root = Root::open(dir)?;
        for (rel, e) in &self.entries {
            let (d, name) = root.parent_of(rel, Links::Refuse, None)?;
            match &e.node {
                Node::Dir => match d.mkdir(&name, 0o700) {
                    Ok(()) => {}
                    Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(err) => return Err(err.into()),
                },
                Node::File(c) => {
                    let mut f = d.create_file(&name, 0o600)?;
                    let at = d.at(&name);
                    match c {
                        Content::Bytes(b) => {
                            std::io::Write::write_all(&mut f, b).map_err(io(&at))?
                        }
                        Content::Host(h) => {
                            let mut from = fs::File::open(h).map_err(io(h))?;
                            std::io::copy(&mut from, &mut f).map_err(io(h))?;
                        }
                    }
                }
                Node::Symlink(t) => d.symlink(t, &name)?,
            }
            d.chown(&name, e.uid, e.gid)?;
            if !matches!(e.node, Node::Symlink(_)) {
                d.chmod(&name, e.mode)?;
            }
        }
        // Children first, so that writing a child does not move its
        // folder's mtime afterwards.
        for rel in self.entries.keys().rev() {
            let (d, name) = root.parent_of(rel, Links::Refuse, None)?;
            d.set_mtime(&name, mtime)?;
        }
        Ok(())
    }
}

/// Removes `.` and folds `..` lexically (for host paths built from link
/// targets, which the walk then checks component by component).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The bytes of a path, for archive headers.
pub fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_parents_are_followed() {
        let mut t = Tree::new();
        t.insert(Path::new("/lib"), Entry::symlink("usr/lib"))
            .unwrap();
        t.insert(
            Path::new("lib/x/libc.so"),
            Entry::file(Content::Bytes(vec![1]), 0o644),
        )
        .unwrap();
        assert!(t.entries.contains_key(Path::new("usr/lib/x/libc.so")));
        assert!(t.get(Path::new("lib/x/libc.so")).is_some());
        t.insert(Path::new("/bin"), Entry::symlink("/usr/bin"))
            .unwrap();
        t.insert(Path::new("bin/sh"), Entry::symlink("busybox"))
            .unwrap();
        assert_eq!(
            t.resolve(Path::new("bin/sh"), true).unwrap(),
            Path::new("usr/bin/busybox")
        );
        let order: Vec<_> = t.iter().map(|(p, _)| p.to_owned()).collect();
        for (i, p) in order.iter().enumerate() {
            if let Some(parent) = p.parent().filter(|p| !p.as_os_str().is_empty()) {
                assert!(order[..i].iter().any(|q| q == parent), "{p:?}");
            }
        }
        assert!(t.insert(Path::new("../x"), Entry::dir(0o755)).is_err());
    }

    #[test]
    fn mirrors_host_links() {
        let mut t = Tree::new();
        t.add_host_path(Path::new("/lib64/ld-linux-x86-64.so.2"))
            .unwrap();
        let real = fs::canonicalize("/lib64/ld-linux-x86-64.so.2").unwrap();
        let rel = real.strip_prefix("/").unwrap();
        assert!(matches!(
            t.entries.get(rel).map(|e| &e.node),
            Some(Node::File(Content::Host(_)))
        ));
        assert!(t.get(Path::new("lib64/ld-linux-x86-64.so.2")).is_some());
        assert_eq!(
            t.resolve(Path::new("lib64/ld-linux-x86-64.so.2"), true)
                .unwrap(),
            rel
        );
    }

    #[test]
    fn writes_owners_modes_and_times() {
        let d = tempfile::tempdir().unwrap();
        let mut t = Tree::new();
        let mut secret = Entry::file(Content::Bytes(b"k".to_vec()), 0o600);
        secret.uid = 7;
        t.insert(Path::new("etc/ssh/key"), secret).unwrap();
        t.insert(Path::new("etc/link"), Entry::symlink("ssh/key"))
            .unwrap();
        t.write_to(d.path(), 1_000_000).unwrap();
        let md = fs::metadata(d.path().join("etc/ssh/key")).unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.mtime()),
            (0o600, 7, 1_000_000)
        );
        let md = fs::symlink_metadata(d.path().join("etc")).unwrap();
        assert_eq!(md.mtime(), 1_000_000);
        let md = fs::symlink_metadata(d.path().join("etc/link")).unwrap();
        assert_eq!(md.mtime(), 1_000_000);
    }
}
