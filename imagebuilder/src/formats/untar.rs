//! Reading a tar stream into a root folder, every member beneath it.
//!
//! Members come from an archive nobody here wrote, so each one is made
//! relative to the handle of its folder, found beneath the root without
//! crossing a symbolic link or `..` ([`beneath::Links::Refuse`]): a member
//! under a link the archive planted (to `/etc`, or to another link) is
//! refused, whatever its type, and nothing outside the root is created,
//! changed or removed. Each member is made under a temporary name, gets its
//! owner, mode, extended attributes and times there, and is then renamed
//! to its name, so nothing half-written carries a final name.
//!
//! What an existing entry becomes when a later member has its name (tar
//! archives may repeat names): a file, link or node is replaced by the
//! rename; a folder stays and takes the member's owner and mode when the
//! member is a folder. A folder member over a symbolic link, and any other
//! member over a folder, are refused: replacing them is how an archive
//! turns a checked path into a different one.
//!
//! Supported member types: folders, regular (also contiguous and GNU
//! sparse) files, symbolic and hard links, character and block devices,
//! FIFOs. Other types are refused by name. Folder times are set at the end,
//! deepest first, since creating entries in a folder moves its mtime.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use beneath::{Dir, Kind, Links, Root};
use tar::EntryType;

use crate::error::{Error, Result};

/// The mode of folders made for members whose parents the archive does
/// not list (as GNU tar makes them).
const IMPLIED_DIR_MODE: u32 = 0o755;

/// What one extraction made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub members: u64,
}

/// One member's metadata, read from its header.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// Extracts the tar stream `reader` (uncompressed) into the folder `dest`.
/// `archive` names the archive in messages. Every refusal and every
/// malformed member is an [`Error::Archive`] naming the member.
pub fn extract(reader: impl Read, dest: &Path, archive: &Path) -> Result<Summary> {
    let root = Root::open(dest)?;
    let mut ar = tar::Archive::new(reader);
    let mut summary = Summary::default();
    // Folders and their mtimes, set last (children first).
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let entries = ar.entries().map_err(|e| bad(archive, "member 1", e))?;
    for (i, entry) in entries.enumerate() {
        let at = format!("member {}", i + 1);
        let mut entry = entry.map_err(|e| bad(archive, &at, e))?;
        let raw: PathBuf = entry.path().map_err(|e| bad(archive, &at, e))?.into_owned();
        let shown = beneath::shown(&raw);
        let fail = |message: String| Error::Archive {
            archive: archive.to_owned(),
            member: shown.clone(),
            message: one_line(&message),
        };
        let name = member_name(&raw).map_err(|why| fail(why.into()))?;
        let kind = entry.header().entry_type();
        let meta = read_meta(&mut entry).map_err(|e| fail(e.to_string()))?;
        summary.members += 1;
        if name.as_os_str().is_empty() {
            // The archive's `./`: the root itself, only as a folder.
            if !kind.is_dir() {
                return Err(fail("names the root, and is not a folder".into()));
            }
            let d = root.as_dir();
            d.set_own(meta.uid, meta.gid, meta.mode)
                .map_err(|e| fail(e.to_string()))?;
            dir_times.push((name, meta.mtime));
            continue;
        }
        let (dir, last) = root
            .parent_of(&name, Links::Refuse, Some(IMPLIED_DIR_MODE))
            .map_err(|e| fail(refusal(&e)))?;
        let existing = dir.stat(&last).map_err(|e| fail(e.to_string()))?;
        match kind {
            EntryType::Directory => {
                match existing.map(|s| s.kind) {
                    Some(Kind::Dir) => {
                        apply_meta(&dir, &last, &meta).map_err(|e| fail(e.to_string()))?;
                    }
                    Some(Kind::Symlink) => {
                        return Err(fail(
                            "would replace a symbolic link with a folder (refused: a folder in \
                             its place changes where later members land)"
                                .into(),
                        ));
                    }
                    other => {
                        let tmp = Temp::new(&dir);
                        dir.mkdir(&tmp.name, 0o700)
                            .map_err(|e| fail(e.to_string()))?;
                        apply_meta(&dir, &tmp.name, &meta).map_err(|e| fail(e.to_string()))?;
                        if other.is_some() {
                            dir.remove_file(&last).map_err(|e| fail(e.to_string()))?;
                        }
                        tmp.commit(&last).map_err(|e| fail(e.to_string()))?;
                    }
                }
                dir_times.push((name, meta.mtime));
                continue;
            }
            _ if existing.is_some_and(|s| s.kind == Kind::Dir) => {
                return Err(fail("would replace a folder (refused)".into()));
            }
            _ => {}
        }
        let tmp = Temp::new(&dir);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut f = dir
                    .create_file(&tmp.name, 0o600)
                    .map_err(|e| fail(e.to_string()))?;
                std::io::copy(&mut entry, &mut f).map_err(|e| fail(format!("reading: {e}")))?;
                drop(f);
                apply_meta(&dir, &tmp.name, &meta).map_err(|e| fail(e.to_string()))?;
            }
            EntryType::Symlink => {
                let target = link_target(&mut entry).map_err(&fail)?;
                dir.symlink(&target, &tmp.name)
                    .map_err(|e| fail(e.to_string()))?;
                dir.chown(&tmp.name, meta.uid, meta.gid)
                    .map_err(|e| fail(e.to_string()))?;
                dir.set_mtime(&tmp.name, meta.mtime)
                    .map_err(|e| fail(e.to_string()))?;
            }
            EntryType::Link => {
                let target = link_target(&mut entry).map_err(&fail)?;
                let target = member_name(&target).map_err(|why| {
                    fail(format!("hard link to `{}`: {why}", beneath::shown(&target)))
                })?;
                let (tdir, tlast) = root
                    .parent_of(&target, Links::Refuse, None)
                    .map_err(|e| fail(format!("hard link target: {}", refusal(&e))))?;
                let t = tdir
                    .stat(&tlast)
                    .map_err(|e| fail(e.to_string()))?
                    .ok_or_else(|| {
                        fail(format!(
                            "hard link to `{}`, which is not in the archive before it",
                            beneath::shown(&target)
                        ))
                    })?;
                if t.kind == Kind::Dir {
                    return Err(fail(format!(
                        "hard link to the folder `{}`",
                        beneath::shown(&target)
                    )));
                }
                if existing.is_some_and(|s| (s.dev, s.ino) == (t.dev, t.ino)) {
                    // Already this file: a rename onto it would do nothing
                    // and leave the temporary name behind.
                    continue;
                }
                dir.hard_link(&tdir, &tlast, &tmp.name)
                    .map_err(|e| fail(e.to_string()))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (k, rdev) = match kind {
                    EntryType::Char => (Kind::Char, device(entry.header()).map_err(&fail)?),
                    EntryType::Block => (Kind::Block, device(entry.header()).map_err(&fail)?),
                    // GNU tar leaves a FIFO's device fields empty.
                    _ => (Kind::Fifo, 0),
                };
                dir.mknod(&tmp.name, k, 0o600, rdev)
                    .map_err(|e| fail(e.to_string()))?;
                apply_meta(&dir, &tmp.name, &meta).map_err(|e| fail(e.to_string()))?;
            }
            other => {
                return Err(fail(format!(
                    "member type {:?} is not supported in a root tarball",
                    other
                )));
            }
        }
        tmp.commit(&last).map_err(|e| fail(e.to_string()))?;
    }
    for (name, mtime) in dir_times.iter().rev() {
        let shown = beneath::shown(name);
        let fail = |e: beneath::Error| Error::Archive {
            archive: archive.to_owned(),
            member: shown.clone(),
            message: e.to_string(),
        };
        if name.as_os_str().is_empty() {
            root.as_dir().set_own_mtime(*mtime).map_err(fail)?;
        } else {
            let (dir, last) = root.parent_of(name, Links::Refuse, None).map_err(fail)?;
            dir.set_mtime(&last, *mtime).map_err(fail)?;
        }
    }
    Ok(summary)
}

/// A tar reading error at `at` (no member name is known yet).
fn bad(archive: &Path, at: &str, e: std::io::Error) -> Error {
    Error::Archive {
        archive: archive.to_owned(),
        member: at.to_owned(),
        message: one_line(&format!("not a readable tar member: {e}")),
    }
}

/// `text` with control characters escaped: the tar reader's messages quote
/// raw header bytes, and a newline among them would forge a line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The text of a refusal by the resolver, for a member's error.
fn refusal(e: &beneath::Error) -> String {
    match e {
        beneath::Error::Escape { why, .. } => match why {
            beneath::Why::Symlink(at) => format!(
                "`{}` on its way is a symbolic link; members are never written through one",
                beneath::shown(at)
            ),
            beneath::Why::NotADirectory(at) => {
                format!("`{}` on its way is not a folder", beneath::shown(at))
            }
            _ => e.to_string(),
        },
        e => e.to_string(),
    }
}

/// A member name as a path relative to the root (`./` and `.` dropped; an
/// empty result is the root). Absolute names and `..` are refused.
pub fn member_name(raw: &Path) -> std::result::Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("an absolute name (refused: it escapes the root)");
            }
            Component::ParentDir => return Err("a `..` component (refused: it escapes the root)"),
        }
    }
    Ok(out)
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Meta> {
    let h = entry.header();
    let too_big = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what} does not fit 32 bits"),
        )
    };
    let mode = h.mode()? & 0o7777;
    let uid = u32::try_from(h.uid()?).map_err(|_| too_big("uid"))?;
    let gid = u32::try_from(h.gid()?).map_err(|_| too_big("gid"))?;
    let mtime = i64::try_from(h.mtime()?).map_err(|_| too_big("mtime"))?;
    let mut xattrs = Vec::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let key = ext.key().map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "a PAX key is not UTF-8")
            })?;
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.push((OsString::from(name), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

fn link_target<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::result::Result<PathBuf, String> {
    match entry.link_name() {
        Ok(Some(t)) if !t.as_os_str().is_empty() => Ok(t.into_owned()),
        Ok(_) => Err("a link without a target".into()),
        Err(e) => Err(format!("its link target: {e}")),
    }
}

/// The device number of a character or block device member. Empty fields
/// (all NUL or spaces, as some writers leave them) are 0.
fn device(h: &tar::Header) -> std::result::Result<u64, String> {
    let b = h.as_bytes();
    let empty = |f: &[u8]| f.iter().all(|c| *c == 0 || *c == b' ');
    let field = |range: std::ops::Range<usize>, v: std::io::Result<Option<u32>>| {
        if empty(&b[range]) {
            return Ok(0);
        }
        v.map(|v| v.unwrap_or(0))
            .map_err(|e| format!("device number: {e}"))
    };
    let major = field(329..337, h.device_major())?;
    let minor = field(337..345, h.device_minor())?;
    Ok(libc::makedev(major, minor))
}

/// Owner, then mode (a chown clears set-id bits), extended attributes
/// (a chown also drops file capabilities), then times (folders get theirs
/// at the end).
fn apply_meta(dir: &Dir, name: &OsStr, meta: &Meta) -> beneath::Result<()> {
    dir.chown(name, meta.uid, meta.gid)?;
    dir.chmod(name, meta.mode)?;
    for (k, v) in &meta.xattrs {
        dir.set_xattr(name, k, v)?;
    }
    if dir.stat(name)?.is_some_and(|s| s.kind != Kind::Dir) {
        dir.set_mtime(name, meta.mtime)?;
    }
    Ok(())
}

/// A temporary entry of a folder, removed unless committed.
struct Temp<'a> {
    dir: &'a Dir,
    name: OsString,
    done: bool,
}

impl<'a> Temp<'a> {
    fn new(dir: &'a Dir) -> Temp<'a> {
        Temp {
            dir,
            name: dir.temp_name(),
            done: false,
        }
    }

    /// Renames it to `last`.
    fn commit(mut self, last: &OsStr) -> beneath::Result<()> {
        self.dir.rename(&self.name, last)?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // On the error path only: the member's own error is what is
        // reported; a temporary entry that cannot be removed stays under
        // its temporary name, never under a final one.
        if let Ok(Some(_)) = self.dir.stat(&self.name) {
            let _ = self.dir.remove_dir_all(&self.name);
        }
    }
}

/// Is `name` (bytes) one that [`Dir::temp_name`] makes?
pub fn is_temp_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(b".vlx-tmp.")
}
