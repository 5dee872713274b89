//! Laying rendered overlays onto a root in a staging folder. Paths resolve
//! inside the root: a link in the root (even an absolute one) is followed
//! as the booted system would follow it, never out into the build machine.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result, io};
use crate::profile::HostProfile;

/// How many links one path may pass through.
const MAX_LINKS: usize = 40;

/// Resolves `rel` under `root` as if `root` were `/`: links in every
/// parent component are followed within the root; the last component is
/// not followed. Returns the path relative to `root`.
pub fn resolve_in(root: &Path, rel: &Path) -> Result<PathBuf> {
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    for c in rel.components().rev() {
        match c {
            Component::Normal(n) => todo.push(n.to_owned()),
            Component::ParentDir => todo.push("..".into()),
            _ => {}
        }
    }
    let mut at = PathBuf::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&name);
        let host = root.join(&next);
        let last = todo.is_empty();
        match fs::symlink_metadata(&host) {
            Ok(md) if md.file_type().is_symlink() && !last => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Error::Other(format!(
                        "{}: too many levels of symbolic links",
                        host.display()
                    )));
                }
                let target = fs::read_link(&host).map_err(io(&host))?;
                if target.is_absolute() {
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
            _ => at = next,
        }
    }
    Ok(at)
}

/// Writes `entries` (in path order) onto `root`, replacing what is there
/// (a folder stays a folder: only its owner and mode change), with owners
/// and modes from the overlay.
pub fn apply(root: &Path, entries: &[templating::Entry]) -> Result<()> {
    for e in entries {
        let rel = resolve_in(root, &e.path)?;
        let p = root.join(&rel);
        let existing = fs::symlink_metadata(&p).ok();
        let is_dir_now = fs::metadata(&p).map(|m| m.is_dir()).unwrap_or(false);
        match &e.kind {
            templating::Kind::Dir => {
                if is_dir_now
                    && existing
                        .as_ref()
                        .is_some_and(|m| m.file_type().is_symlink())
                {
                    // A link to a folder (lib -> usr/lib) stays a link.
                    continue;
                }
                if !is_dir_now {
                    remove(&p, existing.as_ref())?;
                    fs::create_dir(&p).map_err(io(&p))?;
                }
            }
            templating::Kind::File(bytes) => {
                remove(&p, existing.as_ref())?;
                fs::write(&p, bytes).map_err(io(&p))?;
            }
            templating::Kind::Symlink(target) => {
                remove(&p, existing.as_ref())?;
                std::os::unix::fs::symlink(target, &p).map_err(io(&p))?;
            }
        }
        std::os::unix::fs::lchown(&p, Some(e.uid), Some(e.gid)).map_err(io(&p))?;
        if !matches!(e.kind, templating::Kind::Symlink(_)) {
            fs::set_permissions(&p, fs::Permissions::from_mode(e.mode)).map_err(io(&p))?;
        }
    }
    Ok(())
}

fn remove(p: &Path, md: Option<&fs::Metadata>) -> Result<()> {
    match md {
        None => Ok(()),
        Some(m) if m.is_dir() => fs::remove_dir_all(p).map_err(io(p)),
        Some(_) => fs::remove_file(p).map_err(io(p)),
    }
}

/// The variables host-image overlays are rendered with.
pub fn host_context(profile: &HostProfile, epoch: u64) -> serde_json::Value {
    serde_json::json!({
        "image": {
            "name": profile.name,
            "version": profile.version,
            "source_date_epoch": epoch,
        }
    })
}

/// Loads and renders every overlay of `paths`, in order (a later overlay's
/// file wins).
pub fn render_all(
    paths: &[PathBuf],
    context: &serde_json::Value,
) -> Result<Vec<Vec<templating::Entry>>> {
    paths
        .iter()
        .map(|p| {
            if !p.is_dir() {
                return Err(Error::Other(format!(
                    "overlay {}: no such folder",
                    p.display()
                )));
            }
            templating::Overlay::load(p)
                .and_then(|o| o.render(context))
                .map_err(|source| Error::Overlay {
                    path: p.clone(),
                    source,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn absolute_links_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.join("abs")).unwrap();
        assert_eq!(
            resolve_in(root, Path::new("lib/x")).unwrap(),
            Path::new("usr/lib/x")
        );
        assert_eq!(
            resolve_in(root, Path::new("abs/x")).unwrap(),
            Path::new("usr/lib/x")
        );
        assert_eq!(
            resolve_in(root, Path::new("../../x")).unwrap(),
            Path::new("x")
        );
        let entries = vec![
            templating::Entry {
                path: "abs".into(),
                kind: templating::Kind::Dir,
                mode: 0o700,
                uid: 0,
                gid: 0,
            },
            templating::Entry {
                path: "abs/key".into(),
                kind: templating::Kind::File(b"k".to_vec()),
                mode: 0o600,
                uid: 0,
                gid: 5,
            },
        ];
        apply(root, &entries).unwrap();
        let md = fs::metadata(root.join("usr/lib/key")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.gid()), (0o600, 5));
        assert!(
            fs::symlink_metadata(root.join("abs"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }
}
