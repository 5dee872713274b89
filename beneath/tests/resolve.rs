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

mod agree {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::MetadataExt;

    /// Device and inode of a folder handle.
    fn id(d: &beneath::Dir) -> (u64, u64) {
        let md = fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(d)
        ))
        .unwrap();
        (md.dev(), md.ino())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// openat2 and the walk find the same folder, or both fail, and a
        /// folder found is always inside the root.
        #[test]
        fn openat2_and_the_walk_agree(
            parts in proptest::collection::vec(
                prop::sample::select(vec!["usr", "lib", "abs", "out", "up", "f", "..", ".", "a", "b"]),
                0..6,
            ),
            absolute in any::<bool>(),
            in_root in any::<bool>(),
        ) {
            let (_t, root, _) = setup();
            fs::create_dir_all(root.join("a/b")).unwrap();
            symlink("../usr", root.join("a/b/u")).unwrap();
            let mut rel = PathBuf::from(if absolute { "/" } else { "" });
            for p in &parts {
                rel.push(p);
            }
            let links = if in_root { Links::InRoot } else { Links::Refuse };
            let fast = Root::open_with(&root, Resolver::Openat2).unwrap();
            let slow = Root::open_with(&root, Resolver::Walk).unwrap();
            let (a, b) = (fast.dir(&rel, links), slow.dir(&rel, links));
            prop_assert_eq!(a.is_ok(), b.is_ok(), "{:?}", rel);
            if let (Ok(a), Ok(b)) = (a, b) {
                prop_assert_eq!(id(&a), id(&b), "{:?}", rel);
                let inside = fs::canonicalize(format!(
                    "/proc/self/fd/{}",
                    std::os::fd::AsRawFd::as_raw_fd(&a)
                ))
                .unwrap();
                prop_assert!(inside.starts_with(fs::canonicalize(&root).unwrap()), "{:?} -> {:?}", rel, inside);
            }
        }
    }
}
