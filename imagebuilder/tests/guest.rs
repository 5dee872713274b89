//! Image tier: guest tarballs, judged by GNU tar (listing and extracting
//! with xattrs), sha256sum and a second build.
// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use contracts::guest::GuestMeta;

/// A file capability (VFS_CAP_REVISION_2, effective) of cap_net_raw (13).
const CAP_NET_RAW: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn tree(root: &Path) {
    let rel = "6.1.0-1-test";
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::create_dir_all(root.join(format!("usr/lib/modules/{rel}"))).unwrap();
    fs::write(root.join(format!("boot/vmlinuz-{rel}")), b"kernel").unwrap();
    fs::write(root.join(format!("boot/initrd.img-{rel}")), b"initrd").unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/shadow"), b"root:*:1::::::\n").unwrap();
    chmod(&root.join("etc/shadow"), 0o640);
    std::os::unix::fs::chown(root.join("etc/shadow"), Some(0), Some(42)).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("usr/bin/ping"), b"\x7fELF ping").unwrap();
    chmod(&root.join("usr/bin/ping"), 0o755);
    xattr::set(
        root.join("usr/bin/ping"),
        "security.capability",
        &CAP_NET_RAW,
    )
    .unwrap();
    xattr::set(root.join("usr/bin/ping"), "user.vlx", b"kept").unwrap();
    fs::write(root.join("usr/bin/su"), b"su").unwrap();
    chmod(&root.join("usr/bin/su"), 0o4755);
    fs::write(root.join("usr/bin/a"), b"same inode").unwrap();
    fs::hard_link(root.join("usr/bin/a"), root.join("usr/bin/b")).unwrap();
    symlink("usr/bin", root.join("bin")).unwrap();
    symlink("/usr/bin/ping", root.join("usr/bin/ping6")).unwrap();
    symlink("/nowhere/at/all", root.join("etc/dangling")).unwrap();
    fs::create_dir_all(root.join("tmp")).unwrap();
    chmod(&root.join("tmp"), 0o1777);
    fs::create_dir_all(root.join("home/user")).unwrap();
    std::os::unix::fs::chown(root.join("home/user"), Some(1000), Some(1000)).unwrap();
    let long = format!("usr/share/{}/{}", "d".repeat(80), "f".repeat(90));
    fs::create_dir_all(root.join(&long).parent().unwrap()).unwrap();
    fs::write(root.join(&long), b"long name").unwrap();
    run(Command::new("mkfifo").arg(root.join("run-fifo")));
    // Several parallel-gzip blocks of not-too-compressible data.
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u32 = 1;
    while big.len() < 3 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big.extend_from_slice(format!("{:08x} line\n", x % 65536).as_bytes());
    }
    fs::write(root.join("usr/share/big"), &big).unwrap();
    // An old file keeps its mtime; a new one is clamped.
    run(Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06 UTC"])
        .arg(root.join("etc/shadow")));
}

fn profile(dir: &Path, rootfs: &str) -> PathBuf {
    let p = dir.join("guest.toml");
    fs::write(
        &p,
        format!(
            "[guest]\nname = \"fixture\"\ndistribution = \"Fixture 1\"\nvcpus = 2\nmemory = \"512MiB\"\n\
             [rootfs]\n{rootfs}"
        ),
    )
    .unwrap();
    p
}

fn guest(profile: &Path, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vlx-image"))
        .arg("guest")
        .arg("--profile")
        .arg(profile)
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .output()
        .unwrap()
}

#[test]
fn guest_tarball_keeps_owners_modes_links_and_xattrs() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    tree(&root);
    let p = profile(d.path(), "source = \"directory\"\npath = \"root\"\n");
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    for out in [&a, &b] {
        let o = guest(&p, out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(names(&a), ["fixture.tar.gz", "guest.toml"]);
    let tarball = a.join("fixture.tar.gz");
    assert!(
        fs::read(&tarball).unwrap() == fs::read(b.join("fixture.tar.gz")).unwrap(),
        "two builds differ"
    );

    let meta = GuestMeta::read(&a.join("guest.toml")).unwrap();
    let sum = run(Command::new("sha256sum").arg(&tarball));
    assert_eq!(
        sum.split_whitespace().next(),
        Some(meta.tarball_sha256.as_str())
    );
    assert_eq!(meta.kernel, "boot/vmlinuz-6.1.0-1-test");
    assert_eq!(
        meta.initramfs.as_deref(),
        Some("boot/initrd.img-6.1.0-1-test")
    );
    assert_eq!(
        (meta.vcpus, meta.memory, meta.disk),
        (2, 512 << 20, 8 << 30)
    );

    let list = run(Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(&tarball));
    let line = |name: &str| -> Vec<String> {
        let l = list
            .lines()
            .find(|l| l.ends_with(name) || l.contains(&format!(" {name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"));
        l.split_whitespace().map(str::to_owned).collect()
    };
    assert_eq!(line("etc/shadow")[..2], ["-rw-r-----", "0/42"]);
    assert_eq!(line("etc/shadow")[3], "2001-02-03");
    assert_eq!(line("usr/bin/su")[0], "-rwsr-xr-x");
    assert_eq!(line("tmp/")[0], "drwxrwxrwt");
    assert_eq!(line("home/user/")[1], "1000/1000");
    assert_eq!(line("bin -> usr/bin")[0], "lrwxrwxrwx");
    assert!(list.contains("usr/bin/ping6 -> /usr/bin/ping"), "{list}");
    assert!(list.contains("etc/dangling -> /nowhere/at/all"), "{list}");
    assert!(list.contains("usr/bin/b link to usr/bin/a"), "{list}");
    assert_eq!(line("run-fifo")[0], "prw-r--r--");
    assert!(list.contains(&"f".repeat(90)), "long name missing");
    // Every mtime is at most SOURCE_DATE_EPOCH (2023-11-14 22:13:20 UTC).
    for l in list.lines() {
        let date = l.split_whitespace().nth(3).unwrap();
        assert!(date <= "2023-11-14", "{l}");
    }
    // Sorted, each folder before what it holds.
    let paths: Vec<String> = list
        .lines()
        .map(|l| l.split_whitespace().nth(5).unwrap().to_owned())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort_by(|x, y| {
        x.trim_end_matches('/')
            .as_bytes()
            .cmp(y.trim_end_matches('/').as_bytes())
    });
    assert_eq!(paths, sorted);

    // GNU tar restores the xattrs, the file capability among them.
    let x = d.path().join("x");
    fs::create_dir(&x).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpzf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&x));
    assert_eq!(
        xattr::get(x.join("usr/bin/ping"), "security.capability")
            .unwrap()
            .as_deref(),
        Some(&CAP_NET_RAW[..])
    );
    assert_eq!(
        xattr::get(x.join("usr/bin/ping"), "user.vlx")
            .unwrap()
            .as_deref(),
        Some(&b"kept"[..])
    );
    assert_eq!(
        fs::read(x.join("usr/share/big")).unwrap(),
        fs::read(root.join("usr/share/big")).unwrap()
    );
}

/// A tar holding one empty file under `name`, written byte by byte (tar
/// libraries refuse to write such names).
fn evil_tar(name: &str) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(&[0u8; 1024]);
    v
}

#[test]
fn guest_tarball_source_refuses_paths_that_escape() {
    for name in ["../escape", "/etc/passwd", "ok/../../escape"] {
        let d = tempfile::tempdir().unwrap();
        let data = evil_tar(name);
        fs::write(d.path().join("evil.tar"), &data).unwrap();
        let sha = contracts::hash::sha256_bytes(&data);
        let p = profile(
            d.path(),
            &format!("source = \"tarball\"\ntarball = \"evil.tar\"\nsha256 = \"{sha}\"\n"),
        );
        let out = d.path().join("out");
        let o = guest(&p, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(name) && err.contains("escapes the root"),
            "{name}: {err}"
        );
        assert_eq!(names(&out), Vec::<String>::new());
    }
}

#[test]
fn guest_from_a_tarball_matches_the_same_tree_from_a_folder() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    tree(&root);
    let p = profile(d.path(), "source = \"directory\"\npath = \"root\"\n");
    let a = d.path().join("a");
    assert!(guest(&p, &a).status.success());
    // Feed the guest tarball back in as a tarball source.
    let sum = GuestMeta::read(&a.join("guest.toml"))
        .unwrap()
        .tarball_sha256;
    fs::copy(a.join("fixture.tar.gz"), d.path().join("in.tar.gz")).unwrap();
    let p = profile(
        d.path(),
        &format!("source = \"tarball\"\ntarball = \"in.tar.gz\"\nsha256 = \"{sum}\"\n"),
    );
    let b = d.path().join("b");
    let o = guest(&p, &b);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let again = GuestMeta::read(&b.join("guest.toml")).unwrap();
    if again.tarball_sha256 != sum {
        let l1 = run(Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-tvvzf"])
            .arg(a.join("fixture.tar.gz")));
        let l2 = run(Command::new("tar")
            .args(["--numeric-owner", "--xattrs", "-tvvzf"])
            .arg(b.join("fixture.tar.gz")));
        panic!("extract + re-archive is not the identity:\n{l1}\n----\n{l2}");
    }
}
