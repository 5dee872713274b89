//! Image tier, run as root: a corpus of hostile root tarballs. Each plants
//! a symbolic link (to a folder outside the root, through other links, with
//! absolute and `..` targets) and then a member of every type under it, or
//! replaces a checked entry with another type. Each is refused with exit
//! code 2 and a message naming the member; a sentinel tree outside the root
//! hashes the same before and after; nothing is left under a temporary
//! name. GNU tar's FIFOs (empty device fields) extract as FIFOs.
// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use imagebuilder::formats::untar;
use tar::EntryType;

/// One raw tar member.
#[derive(Clone)]
struct Member {
    name: Vec<u8>,
    kind: EntryType,
    link: Vec<u8>,
    data: Vec<u8>,
    mode: u32,
    dev: (u32, u32),
}

fn member(name: &str, kind: EntryType) -> Member {
    Member {
        name: name.as_bytes().to_vec(),
        kind,
        link: Vec::new(),
        data: Vec::new(),
        mode: if kind == EntryType::Directory {
            0o755
        } else {
            0o666
        },
        dev: (0, 0),
    }
}
fn dir(name: &str) -> Member {
    member(name, EntryType::Directory)
}
fn file(name: &str, data: &str) -> Member {
    Member {
        data: data.as_bytes().to_vec(),
        ..member(name, EntryType::Regular)
    }
}
fn symlink(name: &str, target: &str) -> Member {
    Member {
        link: target.as_bytes().to_vec(),
        ..member(name, EntryType::Symlink)
    }
}
fn hardlink(name: &str, target: &str) -> Member {
    Member {
        link: target.as_bytes().to_vec(),
        ..member(name, EntryType::Link)
    }
}
fn node(name: &str, kind: EntryType, dev: (u32, u32)) -> Member {
    Member {
        dev,
        ..member(name, kind)
    }
}

/// The archive, header by header (tar libraries refuse to write most of
/// these names and links, so the fields are filled directly).
fn archive(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut h = tar::Header::new_ustar();
        assert!(
            m.name.len() <= 100 && m.link.len() <= 100,
            "short names only"
        );
        h.as_old_mut().name[..m.name.len()].copy_from_slice(&m.name);
        h.as_old_mut().linkname[..m.link.len()].copy_from_slice(&m.link);
        h.set_entry_type(m.kind);
        h.set_mode(m.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(m.data.len() as u64);
        h.set_device_major(m.dev.0).unwrap();
        h.set_device_minor(m.dev.1).unwrap();
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A hostile archive, the member it must be refused at (as the message
/// shows it) and words of the reason.
struct Case {
    what: &'static str,
    members: Vec<Member>,
    refused: String,
    why: &'static str,
}

/// The corpus. `out` is the sentinel folder outside the root (absolute);
/// `up` climbs from the root to the folder that holds both.
fn corpus(out: &Path, up: &str) -> Vec<Case> {
    let o = out.to_str().unwrap();
    let link = "symbolic link";
    let case = |what, members: Vec<Member>, refused: &str, why| Case {
        what,
        members,
        refused: refused.to_owned(),
        why,
    };
    // From any depth: climb to `/`, then down to the sentinel.
    let climb = format!("{}{}", "../".repeat(12), o.trim_start_matches('/'));
    vec![
        case(
            "file under a link",
            vec![symlink("l", o), file("l/victim", "pwned")],
            "l/victim",
            link,
        ),
        case(
            "folder under a link",
            vec![symlink("l", o), dir("l/newdir/")],
            "l/newdir/",
            link,
        ),
        case(
            "character device under a link",
            vec![
                symlink("l", &format!("{o}/etc")),
                node("l/passwd", EntryType::Char, (1, 3)),
            ],
            "l/passwd",
            link,
        ),
        case(
            "block device under a link",
            vec![
                symlink("l", &format!("{o}/etc")),
                node("l/passwd", EntryType::Block, (8, 0)),
            ],
            "l/passwd",
            link,
        ),
        case(
            "FIFO under a link",
            vec![
                symlink("l", &format!("{o}/etc")),
                node("l/passwd", EntryType::Fifo, (0, 0)),
            ],
            "l/passwd",
            link,
        ),
        case(
            "symbolic link under a link",
            vec![symlink("l", o), symlink("l/victim", "/etc/shadow")],
            "l/victim",
            link,
        ),
        case(
            "hard link under a link",
            vec![file("f", "x"), symlink("l", o), hardlink("l/victim", "f")],
            "l/victim",
            link,
        ),
        case(
            "hard link to a file under a link",
            vec![symlink("l", o), hardlink("hl", "l/victim")],
            "hl",
            "hard link target",
        ),
        case(
            "hard link climbing out",
            vec![hardlink("hl", "../outside/victim")],
            "hl",
            "escapes the root",
        ),
        case(
            "links chained through other links",
            vec![
                symlink("c", o),
                symlink("b", "c"),
                symlink("a", "b"),
                file("a/victim", "pwned"),
            ],
            "a/victim",
            link,
        ),
        case(
            "a link inside a folder of the archive",
            vec![dir("d/"), symlink("d/l", o), file("d/l/victim", "pwned")],
            "d/l/victim",
            link,
        ),
        case(
            "relative `..` target",
            vec![
                symlink("l", &format!("{up}outside")),
                file("l/victim", "pwned"),
            ],
            "l/victim",
            link,
        ),
        case(
            "`..` target climbing to / and down",
            vec![
                dir("d/"),
                symlink("d/l", &climb),
                node("d/l/etc/passwd", EntryType::Char, (1, 3)),
            ],
            "d/l/etc/passwd",
            link,
        ),
        case(
            "a link replaced by a folder later in the archive",
            vec![symlink("l", o), dir("l/"), file("l/victim", "pwned")],
            "l/",
            "replace a symbolic link",
        ),
        case(
            "a folder replaced by a link later in the archive",
            vec![
                dir("d/"),
                file("d/a", "a"),
                symlink("d", o),
                file("d/victim", "pwned"),
            ],
            "d",
            "replace a folder",
        ),
        case(
            "a name with a newline under a link",
            vec![symlink("l", o), file("l/x\nvlx-image: built fine", "pwned")],
            "l/x\\nvlx-image: built fine",
            link,
        ),
        case(
            "an absolute name",
            vec![file(&format!("{o}/victim"), "pwned")],
            &format!("{o}/victim"),
            "escapes the root",
        ),
        case(
            "a `..` name",
            vec![file(&format!("{up}outside/victim"), "pwned")],
            &format!("{up}outside/victim"),
            "escapes the root",
        ),
    ]
}

/// Every path under `dir` with its type, mode, owner, device, size, mtime
/// and content (sha256) or link target, links not followed.
fn fingerprint(dir: &Path) -> String {
    fn walk(base: &Path, p: &Path, out: &mut String) {
        let md = fs::symlink_metadata(p).unwrap();
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("-> {}", fs::read_link(p).unwrap().display())
        } else if ft.is_file() {
            imagebuilder::hash::sha256_bytes(&fs::read(p).unwrap())
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:?} {:o} {}:{} rdev {} size {} mtime {} {what}\n",
            p.strip_prefix(base).unwrap(),
            md.mode(),
            md.uid(),
            md.gid(),
            md.rdev(),
            md.size(),
            // The base's own mtime moves whenever a test makes or removes a
            // root beside the sentinel; what lands in it shows as a new line.
            if p == base { 0 } else { md.mtime() },
        ));
        if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(base, &p.join(n), out);
            }
        }
    }
    let mut out = String::new();
    walk(dir, dir, &mut out);
    out
}

/// The sentinel tree: what a system folder would hold.
fn sentinel(out: &Path) {
    fs::create_dir_all(out.join("etc")).unwrap();
    fs::write(out.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(out.join("etc/shadow"), b"root:*:1::::::\n").unwrap();
    fs::write(out.join("victim"), b"intact\n").unwrap();
    fs::create_dir_all(out.join("dir/sub")).unwrap();
    fs::write(out.join("dir/sub/file"), b"intact\n").unwrap();
}

/// Names under `root` (links not followed) left by an unfinished member.
fn temp_names(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if untar::is_temp_name(&e.file_name()) {
                found.push(e.path());
            }
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
        }
    }
    found
}

fn require_root() {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "the hostile-archive tests make device nodes and owners: run them as root"
    );
}

#[test]
fn hostile_archives_are_refused_and_change_nothing_outside() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("outside");
    sentinel(&out);
    let before = fingerprint(t.path());
    for (i, c) in corpus(&out, "../").into_iter().enumerate() {
        let root = t.path().join(format!("root{i}"));
        fs::create_dir(&root).unwrap();
        let data = archive(&c.members);
        let err = match untar::extract(&data[..], &root, Path::new("hostile.tar")) {
            Ok(s) => panic!("{}: extracted {s:?}", c.what),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("member `{}`", c.refused)) && err.contains(c.why),
            "{}: {err}",
            c.what
        );
        assert!(!err.contains('\n'), "{}: one line: {err}", c.what);
        assert_eq!(temp_names(&root), Vec::<PathBuf>::new(), "{}", c.what);
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(fingerprint(t.path()), before, "{}: outside changed", c.what);
    }
}

/// Runs `vlx-image guest` on a profile in `work` whose root is `tarball`
/// (in `work`, with that sha256), into `dest`.
fn vlx_image_guest(work: &Path, tarball: &str, sha: &str, dest: &Path) -> std::process::Output {
    let profile = work.join("guest.toml");
    fs::write(
        &profile,
        format!(
            "[guest]\nname = \"hostile\"\ndistribution = \"Hostile 1\"\n\
             [rootfs]\nsource = \"tarball\"\ntarball = \"{tarball}\"\nsha256 = \"{sha}\"\n"
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_vlx-image"))
        .arg("guest")
        .arg("--profile")
        .arg(&profile)
        .arg("--out")
        .arg(dest)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap()
}

#[test]
fn vlx_image_guest_exits_2_on_every_hostile_archive() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("outside");
    sentinel(&out);
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let before = fingerprint(&out);
    // The root is work/out/.staging-*/root: three folders below t.
    for c in corpus(&out, "../../../") {
        let data = archive(&c.members);
        fs::write(work.join("hostile.tar"), &data).unwrap();
        let sha = imagebuilder::hash::sha256_bytes(&data);
        let dest = work.join("out");
        let o = vlx_image_guest(&work, "hostile.tar", &sha, &dest);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{}: {err}", c.what);
        assert!(
            err.contains(&format!("member `{}`", c.refused)) && err.contains(c.why),
            "{}: {err}",
            c.what
        );
        assert_eq!(names(&dest), Vec::<String>::new(), "{}", c.what);
        assert_eq!(fingerprint(&out), before, "{}: outside changed", c.what);
    }
}

#[test]
fn a_member_replaces_a_link_instead_of_writing_through_it() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("outside");
    sentinel(&out);
    let before = fingerprint(&out);
    let root = t.path().join("root");
    fs::create_dir(&root).unwrap();
    let o = out.to_str().unwrap();
    let members = vec![
        symlink("f", &format!("{o}/victim")),
        file("f", "mine"),
        symlink("c", &format!("{o}/etc/passwd")),
        node("c", EntryType::Char, (1, 3)),
        symlink("h", &format!("{o}/etc/shadow")),
        hardlink("h", "f"),
    ];
    untar::extract(&archive(&members)[..], &root, Path::new("t.tar")).unwrap();
    assert_eq!(fs::read(root.join("f")).unwrap(), b"mine");
    assert!(
        fs::symlink_metadata(root.join("c"))
            .unwrap()
            .file_type()
            .is_char_device()
    );
    assert_eq!(
        fs::metadata(root.join("h")).unwrap().ino(),
        fs::metadata(root.join("f")).unwrap().ino()
    );
    assert_eq!(fingerprint(&out), before);
    assert_eq!(temp_names(&root), Vec::<PathBuf>::new());
}

#[test]
fn fifos_from_gnu_tar_extract_as_fifos() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    fs::create_dir_all(src.join("run")).unwrap();
    run(Command::new("mkfifo")
        .args(["-m", "0620"])
        .arg(src.join("run/initctl")));
    fs::write(src.join("run/file"), b"x").unwrap();
    for format in ["gnu", "posix", "ustar"] {
        let tarball = t.path().join(format!("{format}.tar"));
        run(Command::new("tar")
            .arg(format!("--format={format}"))
            .arg("-C")
            .arg(&src)
            .arg("-cf")
            .arg(&tarball)
            .arg("."));
        let root = t.path().join(format!("root-{format}"));
        fs::create_dir(&root).unwrap();
        untar::extract(fs::File::open(&tarball).unwrap(), &root, &tarball)
            .unwrap_or_else(|e| panic!("{format}: {e}"));
        let md = fs::symlink_metadata(root.join("run/initctl")).unwrap();
        assert!(md.file_type().is_fifo(), "{format}");
        assert_eq!(md.mode() & 0o7777, 0o620, "{format}");
        assert_eq!(fs::read(root.join("run/file")).unwrap(), b"x");
    }
    // GNU tar leaves the FIFO's device fields empty: the case that was
    // refused with "numeric field was not a number".
    let gnu = fs::read(t.path().join("gnu.tar")).unwrap();
    let at = gnu.chunks(512).position(|h| h[156] == b'6').unwrap();
    assert!(
        gnu[at * 512 + 329..at * 512 + 345].iter().all(|b| *b == 0),
        "GNU tar wrote device fields for its FIFO: this test no longer covers empty ones"
    );
}

/// A legal tarball whose links point out of the root where the build
/// writes after extracting: `lib -> /usr/lib` (absolute), the kernel's
/// module folder a link to the sentinel, `etc -> <sentinel>/etc`. The
/// modules, depmod's indexes and the overlay land inside the root.
#[test]
fn vlx_image_build_writes_nothing_through_the_roots_links() {
    require_root();
    let release = imagebuilder::image::kernel::fetch("linux-image-cloud-amd64")
        .unwrap()
        .release;
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("outside");
    sentinel(&out);
    fs::create_dir_all(out.join("modules")).unwrap();
    fs::write(out.join("modules/modules.dep"), b"intact\n").unwrap();
    let before = fingerprint(&out);
    let o = out.to_str().unwrap();
    let members = vec![
        dir("usr/"),
        dir("usr/lib/"),
        dir("usr/lib/modules/"),
        symlink("lib", "/usr/lib"),
        symlink(
            &format!("usr/lib/modules/{release}"),
            &format!("{o}/modules"),
        ),
        symlink("etc", &format!("{o}/etc")),
    ];
    let work = t.path().join("work");
    fs::create_dir(&work).unwrap();
    let data = archive(&members);
    fs::write(work.join("root.tar"), &data).unwrap();
    let ov = work.join("ov");
    fs::create_dir_all(ov.join("etc")).unwrap();
    fs::write(ov.join("etc/passwd"), b"overlay\n").unwrap();
    let sha = imagebuilder::hash::sha256_bytes(&data);
    let profile = work.join("t.toml");
    fs::write(
        &profile,
        format!(
            "[image]\nname = \"t\"\nversion = \"1\"\noverlays = [{:?}]\n\
             [rootfs]\nsource = \"tarball\"\ntarball = \"root.tar\"\nsha256 = \"{sha}\"\nheadroom = \"8MiB\"\n\
             [kernel]\npackage = \"linux-image-cloud-amd64\"\nroot_modules = [\"loop\"]\n",
            ov.display().to_string()
        ),
    )
    .unwrap();
    let dest = work.join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_vlx-image"))
        .arg("build")
        .arg("--profile")
        .arg(&profile)
        .arg("--out")
        .arg(&dest)
        .arg("--agent")
        .arg(agent())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(fingerprint(&out), before, "outside changed");
    let origin = dest.join("origin.ext4");
    run(Command::new("e2fsck").arg("-fn").arg(&origin));
    let ls = run(Command::new("debugfs")
        .arg("-R")
        .arg(format!("ls -p /usr/lib/modules/{release}"))
        .arg(&origin));
    assert!(ls.contains("/modules.dep/"), "{ls}");
    // The overlay's folder `etc` replaced the link, which led nowhere
    // inside the root.
    let cat = run(Command::new("debugfs")
        .arg("-R")
        .arg("cat /etc/passwd")
        .arg(&origin));
    assert_eq!(cat, "overlay\n");
}

/// A root tarball whose compressed stream is damaged (its sha256 is the
/// damaged file's, so that the stream itself is what is judged): refused
/// as bad input, exit 2, and nothing is left in the output folder.
#[test]
fn vlx_image_guest_exits_2_on_a_damaged_compressed_stream() {
    require_root();
    let t = tempfile::tempdir().unwrap();
    let work = t.path();
    let data = archive(&[dir("etc"), file("etc/hostname", "guest\n")]);
    for (ext, tool) in [("xz", "xz"), ("gz", "gzip"), ("zst", "zstd")] {
        let tar = work.join(format!("root-{ext}.tar"));
        fs::write(&tar, &data).unwrap();
        let st = Command::new(tool)
            .args(["-q", "-f"])
            .arg(&tar)
            .status()
            .unwrap();
        assert!(st.success(), "{tool}");
        let packed = work.join(format!("root-{ext}.tar.{ext}"));
        let mut bytes = fs::read(&packed).unwrap();
        // The last bytes hold each format's check of the whole stream.
        let n = bytes.len();
        bytes[n - 6] ^= 0xff;
        fs::write(&packed, &bytes).unwrap();
        let sha = imagebuilder::hash::sha256_bytes(&bytes);
        let dest = work.join(format!("out-{ext}"));
        let o = vlx_image_guest(work, &format!("root-{ext}.tar.{ext}"), &sha, &dest);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{ext}: {err}");
        assert!(
            err.contains(&format!("root-{ext}.tar.{ext}")),
            "{ext}: {err}"
        );
        assert_eq!(names(&dest), Vec::<String>::new(), "{ext}");
    }
}
