//! Lookups beneath a root, with openat2 and with the O_NOFOLLOW walk: the
//! same answers, the same refusals.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use beneath::{Links, Resolver, Root, Why};

/// A root with `usr/lib`, `lib -> usr/lib`, `abs -> /usr/lib`,
/// `out -> <a folder outside>`, `up -> ../..`, a file `f`; and the
/// folder outside it.
fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let outside = t.path().join("outside");
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    symlink("usr/lib", root.join("lib")).unwrap();
    symlink("/usr/lib", root.join("abs")).unwrap();
    symlink(&outside, root.join("out")).unwrap();
    symlink("../..", root.join("up")).unwrap();
    fs::write(root.join("f"), b"x").unwrap();
    (t, root, outside)
}

fn why(r: beneath::Result<beneath::Dir>) -> Why {
    match r.unwrap_err() {
        beneath::Error::Escape { why, .. } => why,
        e => panic!("not a refusal: {e}"),
    }
}

#[test]
fn refuse_mode_refuses_links_dots_and_absolute_paths() {
    for resolver in [Resolver::Openat2, Resolver::Walk] {
        let (_t, root, _) = setup();
        let r = Root::open_with(&root, resolver).unwrap();
        assert_eq!(
            r.dir(Path::new("usr/lib"), Links::Refuse).unwrap().path(),
            root.join("usr/lib")
        );
        for (rel, link) in [
            ("lib", "lib"),
            ("out/x", "out"),
            ("abs", "abs"),
            ("up", "up"),
        ] {
            assert_eq!(
                why(r.dir(Path::new(rel), Links::Refuse)),
                Why::Symlink(PathBuf::from(link)),
                "{resolver:?} {rel}"
            );
        }
        assert_eq!(
            why(r.dir(Path::new("usr/../usr"), Links::Refuse)),
            Why::ParentDir
        );
        assert_eq!(why(r.dir(Path::new("/usr"), Links::Refuse)), Why::Absolute);
        assert_eq!(
            why(r.dir(Path::new("f/x"), Links::Refuse)),
            Why::NotADirectory(PathBuf::from("f"))
        );
        // Creating does not cross a link either, and makes nothing beyond it.
        assert_eq!(
            why(r.create_dirs(Path::new("out/new"), Links::Refuse, 0o755)),
            Why::Symlink(PathBuf::from("out"))
        );
        let d = r
            .create_dirs(Path::new("a/b/c"), Links::Refuse, 0o755)
            .unwrap();
        assert_eq!(d.path(), root.join("a/b/c"));
        assert!(root.join("a/b/c").is_dir());
        let e = r
            .parent_of(Path::new("out/passwd"), Links::Refuse, Some(0o755))
            .unwrap_err();
        assert!(e.is_escape(), "{e}");
        assert!(e.to_string().contains("out/passwd"), "{e}");
    }
}

#[test]
fn in_root_mode_keeps_links_inside() {
    for resolver in [Resolver::Openat2, Resolver::Walk] {
        let (_t, root, _) = setup();
        let r = Root::open_with(&root, resolver).unwrap();
        for rel in ["lib", "abs", "../../usr/lib", "up/usr/lib"] {
            let dir = r.dir(Path::new(rel), Links::InRoot).unwrap();
            let name = OsStr::new("probe");
            dir.mkdir(name, 0o755).unwrap();
            assert!(root.join("usr/lib/probe").is_dir(), "{resolver:?} {rel}");
            dir.remove_dir(name).unwrap();
        }
        // A link to a folder outside resolves to that path inside the root,
        // which is not there.
        assert!(r.dir(Path::new("out"), Links::InRoot).is_err());
    }
}

#[test]
fn entries_by_name_never_follow_the_last_link() {
    let (_t, root, outside) = setup();
    fs::write(outside.join("keep"), b"k").unwrap();
    let r = Root::open(&root).unwrap();
    let d = r.as_dir();
    d.remove_dir_all(OsStr::new("out")).unwrap();
    assert!(outside.join("keep").is_file(), "the link's target stays");
    assert!(fs::symlink_metadata(root.join("out")).is_err());
    assert!(d.chmod(OsStr::new("lib"), 0o700).is_err());
    assert!(d.create_file(OsStr::new("abs"), 0o644).is_err());
    assert!(d.stat(OsStr::new("a/b")).is_err(), "one component only");
    assert!(d.stat(OsStr::new("..")).is_err(), "one component only");
}
