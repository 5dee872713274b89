//! Image tier: the tiny host image built by `vlx-image build`, judged by
//! e2fsck, cpio, debugfs and the manifest; built twice for reproducibility.
// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;
use contracts::image as manifest;

fn build(profile: &Path, out: &Path) {
    build_with(
        &mut Command::new(env!("CARGO_BIN_EXE_vlx-image")),
        profile,
        out,
    );
}

/// Builds with `cmd` (vlx-image itself, or a wrapper running it).
fn build_with(cmd: &mut Command, profile: &Path, out: &Path) {
    run(cmd
        .arg("build")
        .arg("--profile")
        .arg(profile)
        .arg("--out")
        .arg(out)
        .arg("--agent")
        .arg(agent())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string()));
}

fn debugfs(image: &Path, request: &str) -> String {
    run(Command::new("debugfs").arg("-R").arg(request).arg(image))
}

#[test]
fn tiny_image_is_clean_complete_and_reproducible() {
    let d = tempfile::tempdir().unwrap();
    let profile = d.path().join("tiny.toml");
    fs::write(
        &profile,
        tiny_profile_text(
            &[
                workspace().join("overlays/tiny"),
                fixtures().join("overlay"),
            ],
            "",
        ),
    )
    .unwrap();
    let a = d.path().join("a");
    let b = d.path().join("b");
    build(&profile, &a);
    // The second build runs without any network (a fresh network
    // namespace): once the kernel is cached, builds are offline.
    build_with(
        Command::new("unshare")
            .arg("--net")
            .arg(env!("CARGO_BIN_EXE_vlx-image")),
        &profile,
        &b,
    );

    // Only the four artifacts, nothing temporary left behind.
    assert_eq!(
        names(&a),
        [
            "initramfs.img",
            "manifest.json",
            "origin.ext4",
            "sbom.spdx.json",
            "vmlinuz"
        ]
    );
    for f in names(&a) {
        let (x, y) = (fs::read(a.join(&f)).unwrap(), fs::read(b.join(&f)).unwrap());
        assert!(x == y, "{f} differs between two builds");
    }

    // Every sha256 of the manifest matches; so does sha256sum's.
    let m = manifest::verify_dir(&a).unwrap();
    assert_eq!((m.name.as_str(), m.source_date_epoch), ("tiny", EPOCH));
    for art in &m.artifacts {
        let out = run(Command::new("sha256sum").arg(a.join(&art.file)));
        assert_eq!(
            out.split_whitespace().next(),
            Some(art.sha256.as_str()),
            "{}",
            art.file
        );
    }

    let origin = a.join("origin.ext4");
    run(Command::new("e2fsck").arg("-fn").arg(&origin));

    // The overlay's file: content, owner and mode from overlay.toml.
    assert_eq!(debugfs(&origin, "cat /etc/vlx/image"), "image tiny 0.1.0\n");
    let stat = debugfs(&origin, "stat /etc/vlx/image");
    assert!(stat.contains("Mode:  0640"), "{stat}");
    assert!(stat.contains("User:     1   Group:     2"), "{stat}");
    let stat = debugfs(&origin, "stat /etc/vlx/secret");
    assert!(stat.contains("Mode:  0600"), "{stat}");
    assert!(stat.contains("User:     0   Group:     0"), "{stat}");
    assert!(
        stat.contains("mtime: 0x6553f100"),
        "mtime not clamped: {stat}"
    );
    // busybox is init; the daemons are there.
    let init = debugfs(&origin, "stat /sbin/init");
    assert!(
        init.contains("Fast link dest: \"/usr/bin/busybox\""),
        "{init}"
    );
    for bin in [
        "/usr/sbin/dnsmasq",
        "/usr/sbin/chronyd",
        "/usr/sbin/keepalived",
        "/usr/sbin/dmsetup",
        "/usr/sbin/mke2fs",
    ] {
        let s = debugfs(&origin, &format!("stat {bin}"));
        assert!(s.contains("Type: regular"), "{bin}: {s}");
    }

    // The root's own modules (kernel.root_modules), depmod'ed for modprobe.
    let modules = format!("/usr/lib/modules/{}", m.kernel_release);
    for f in [
        "kernel/fs/nfsd/nfsd.ko",
        "kernel/net/sunrpc/sunrpc.ko",
        "modules.dep",
        "modules.alias",
    ] {
        let s = debugfs(&origin, &format!("stat {modules}/{f}"));
        assert!(s.contains("Type: regular"), "{f}: {s}");
    }
    let dep = debugfs(&origin, &format!("cat {modules}/modules.dep"));
    assert!(
        dep.contains("kernel/fs/nfsd/nfsd.ko:") && dep.contains("kernel/net/sunrpc/sunrpc.ko"),
        "{dep}"
    );

    // The initramfs as GNU cpio lists it.
    let list = run(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {} | cpio -t --quiet",
        a.join("initramfs.img").display()
    )));
    let entries: Vec<&str> = list.lines().collect();
    let release = &m.kernel_release;
    for want in [
        "init".to_owned(),
        "bin/busybox".into(),
        "bin/sh".into(),
        "sbin/switch_root".into(),
        "sbin/dmsetup".into(),
        "etc/vlx/modules.load".into(),
        "usr/lib/x86_64-linux-gnu/libdevmapper.so.1.02.1".into(),
        "usr/lib/x86_64-linux-gnu/libc.so.6".into(),
        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".into(),
        "lib64".into(),
        format!("usr/lib/modules/{release}/modules.dep"),
        format!("usr/lib/modules/{release}/kernel/drivers/block/virtio_blk.ko"),
        format!("usr/lib/modules/{release}/kernel/drivers/md/dm-snapshot.ko"),
        format!("usr/lib/modules/{release}/kernel/net/core/failover.ko"),
    ] {
        assert!(
            entries.contains(&want.as_str()),
            "{want} not in the initramfs:\n{list}"
        );
    }
    let mut sorted = entries.clone();
    sorted.sort_by(|x, y| Path::new(x).cmp(Path::new(y)));
    assert_eq!(entries, sorted, "entries are not in path order");

    // modules.load: dependencies before the modules that need them.
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("sh")
        .current_dir(dir.path())
        .arg("-c")
        .arg(format!(
            "gzip -dc {} | cpio -id --quiet etc/vlx/modules.load",
            a.join("initramfs.img").display()
        )));
    let load = fs::read_to_string(dir.path().join("etc/vlx/modules.load")).unwrap();
    let order: Vec<&str> = load.lines().collect();
    let pos = |m: &str| {
        order
            .iter()
            .position(|x| *x == m)
            .unwrap_or_else(|| panic!("{m} not in {order:?}"))
    };
    assert!(pos("failover") < pos("net_failover") && pos("net_failover") < pos("virtio_net"));
    assert!(pos("dm_mod") < pos("dm_snapshot"));
    assert!(pos("virtio") < pos("virtio_blk"));
}

#[test]
fn tarball_root_keeps_owners_modes_and_capabilities_in_the_ext4() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("usr/bin/ping"), b"ping").unwrap();
    // cap_net_raw, effective (VFS_CAP_REVISION_2).
    let cap = [
        1u8, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    xattr::set(root.join("usr/bin/ping"), "security.capability", &cap).unwrap();
    fs::write(root.join("etc/shadow"), b"root:*:1::::::\n").unwrap();
    std::os::unix::fs::chown(root.join("etc/shadow"), Some(0), Some(42)).unwrap();
    run(Command::new("chmod")
        .arg("0640")
        .arg(root.join("etc/shadow")));
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    let tarball = d.path().join("root.tar.xz");
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-cJf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&root)
        .arg("."));
    let sha = contracts::hash::sha256_file(&tarball).unwrap().1;
    let profile = d.path().join("t.toml");
    fs::write(
        &profile,
        format!(
            "[image]\nname = \"t\"\nversion = \"1\"\n[rootfs]\nsource = \"tarball\"\ntarball = \"root.tar.xz\"\nsha256 = \"{sha}\"\nheadroom = \"8MiB\"\n[kernel]\npackage = \"linux-image-cloud-amd64\"\n"
        ),
    )
    .unwrap();
    let out = d.path().join("out");
    build(&profile, &out);
    let origin = out.join("origin.ext4");
    run(Command::new("e2fsck").arg("-fn").arg(&origin));
    let stat = debugfs(&origin, "stat /etc/shadow");
    assert!(
        stat.contains("Mode:  0640") && stat.contains("Group:    42"),
        "{stat}"
    );
    let ea = debugfs(&origin, "ea_list /usr/bin/ping");
    assert!(ea.contains("security.capability"), "{ea}");
    assert!(debugfs(&origin, "stat /bin").contains("Fast link dest: \"usr/bin\""));
}
