//! Laying rendered overlays onto a root in a staging folder. Every entry is
//! written relative to a handle of its folder, found beneath the root
//! ([`beneath::Links::InRoot`]): a link among the folders on the way (even
//! an absolute one, or one the root's tarball planted) is followed as the
//! booted system would follow it, with `/` at the root, never out into the
//! build machine. The entry itself is never followed: a file or link
//! replaces what is at its name by a rename, so nothing half-written
//! carries a final name.

use std::path::{Path, PathBuf};

use beneath::{Kind, Links, Root};

use crate::error::{Error, Result};
use crate::profile::HostProfile;

/// Writes `entries` (in path order) onto `root`, replacing what is there
/// (a folder stays a folder, and a link to a folder in the root stays a
/// link: only a folder's owner and mode change), with owners and modes
/// from the overlay.
pub fn apply(root: &Path, entries: &[templating::Entry]) -> Result<()> {
    let r = Root::open(root)?;
    for e in entries {
        let (dir, name) = r.parent_of(&e.path, Links::InRoot, None)?;
        let existing = dir.stat(&name)?.map(|s| s.kind);
        match &e.kind {
            templating::Kind::Dir => {
                if existing == Some(Kind::Symlink) {
                    // A link to a folder (lib -> usr/lib) stays a link.
                    if r.dir(&e.path, Links::InRoot).is_ok() {
                        continue;
                    }
                    dir.remove_file(&name)?;
                }
                match existing {
                    Some(Kind::Dir) => {}
                    Some(Kind::Symlink) | None => dir.mkdir(&name, 0o700)?,
                    Some(_) => {
                        dir.remove_file(&name)?;
                        dir.mkdir(&name, 0o700)?;
                    }
                }
                dir.chown(&name, e.uid, e.gid)?;
                dir.chmod(&name, e.mode)?;
            }
            templating::Kind::File(_) | templating::Kind::Symlink(_) => {
                let tmp = dir.temp_name();
                let made = (|| -> Result<()> {
                    match &e.kind {
                        templating::Kind::File(bytes) => {
                            let mut f = dir.create_file(&tmp, 0o600)?;
                            std::io::Write::write_all(&mut f, bytes)
                                .map_err(crate::error::io(&dir.at(&tmp)))?;
                            dir.chown(&tmp, e.uid, e.gid)?;
                            dir.chmod(&tmp, e.mode)?;
                        }
                        templating::Kind::Symlink(target) => {
                            dir.symlink(target, &tmp)?;
                            dir.chown(&tmp, e.uid, e.gid)?;
                        }
                        templating::Kind::Dir => {}
                    }
                    if existing == Some(Kind::Dir) {
                        // A file or link where the root has a folder: the
                        // overlay wins.
                        dir.remove_dir_all(&name)?;
                    }
                    dir.rename(&tmp, &name)?;
                    Ok(())
                })();
                if let Err(err) = made {
                    // The entry's error is the one to report; the
                    // temporary name is removed when it can be.
                    let _ = dir.remove_dir_all(&tmp);
                    return Err(err);
                }
            }
        }
    }
    Ok(())
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
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn absolute_links_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        fs::create_dir_all(outside.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib", root.join("abs")).unwrap();
        // A link out of the root, by an absolute path: inside the root it
        // names <root>/<outside>, which is not there.
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", root.join("up")).unwrap();
        fs::write(outside.join("victim"), b"intact").unwrap();
        let entry = |path: &str, kind, mode, gid| templating::Entry {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid,
        };
        let entries = vec![
            entry("abs", templating::Kind::Dir, 0o700, 0),
            entry("abs/key", templating::Kind::File(b"k".to_vec()), 0o600, 5),
            entry("lib/x", templating::Kind::File(b"x".to_vec()), 0o644, 0),
        ];
        apply(&root, &entries).unwrap();
        let md = fs::metadata(root.join("usr/lib/key")).unwrap();
        assert_eq!((md.mode() & 0o7777, md.gid()), (0o600, 5));
        assert!(root.join("usr/lib/x").is_file());
        assert!(
            fs::symlink_metadata(root.join("abs"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // `up` climbs to the root and stops there: up/victim is <root>/outside/victim.
        fs::create_dir(root.join("outside")).unwrap();
        apply(
            &root,
            &[entry(
                "up/victim",
                templating::Kind::File(b"mine".to_vec()),
                0o644,
                0,
            )],
        )
        .unwrap();
        assert_eq!(fs::read(root.join("outside/victim")).unwrap(), b"mine");
        let e = apply(
            &root,
            &[entry(
                "out/victim",
                templating::Kind::File(b"pwned".to_vec()),
                0o644,
                0,
            )],
        )
        .unwrap_err();
        assert!(e.to_string().contains("out"), "{e}");
        // A file over a link to a file outside replaces the link.
        std::os::unix::fs::symlink(outside.join("victim"), root.join("motd")).unwrap();
        apply(
            &root,
            &[entry(
                "motd",
                templating::Kind::File(b"hello".to_vec()),
                0o644,
                0,
            )],
        )
        .unwrap();
        assert_eq!(fs::read(outside.join("victim")).unwrap(), b"intact");
        assert_eq!(fs::read(root.join("motd")).unwrap(), b"hello");
    }
}
