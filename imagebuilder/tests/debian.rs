//! The Debian images through mmdebstrap (slow: minutes). Skipped only when
//! the Debian mirror cannot be reached, and then it says so.

// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

use common::*;
use imagebuilder::guest::GuestMeta;
use imagebuilder::manifest;

/// Whether the profiles' mirror answers on its HTTP port.
fn mirror_reachable() -> bool {
    let Ok(addrs) = ("deb.debian.org", 80).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(10)).is_ok())
}

fn vlx_image(args: &[&str], profile: &str, out: &std::path::Path) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vlx-image"));
    cmd.args(args)
        .arg("--profile")
        .arg(workspace().join(profile))
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string());
    run(&mut cmd);
}

#[test]
fn debian_bookworm_host_and_guest_through_mmdebstrap() {
    if !mirror_reachable() {
        eprintln!("SKIPPED: the Debian mirror deb.debian.org cannot be reached");
        return;
    }
    let d = tempfile::tempdir().unwrap();

    let host = d.path().join("host");
    let agent = agent();
    vlx_image(
        &["build", "--agent", agent.to_str().unwrap()],
        "profiles/hosts/debian-bookworm.toml",
        &host,
    );
    let m = manifest::verify_dir(&host).unwrap();
    assert!(
        m.kernel_release.ends_with("-cloud-amd64"),
        "{}",
        m.kernel_release
    );
    let origin = host.join("origin.ext4");
    run(Command::new("e2fsck").arg("-fn").arg(&origin));
    for path in [
        "/usr/sbin/sshd",
        "/usr/sbin/dnsmasq",
        "/usr/sbin/chronyd",
        "/usr/sbin/keepalived",
        "/sbin/init",
    ] {
        let s = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("stat {path}"))
            .arg(&origin));
        assert!(
            s.contains("Inode:"),
            "{path} is not in the Debian root: {s}"
        );
    }
    let list = run(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {} | cpio -t --quiet",
        host.join("initramfs.img").display()
    )));
    assert!(
        list.lines().any(|l| l == "init") && list.contains("dm-snapshot.ko"),
        "{list}"
    );

    let guest = d.path().join("guest");
    vlx_image(&["guest"], "profiles/guests/debian-bookworm.toml", &guest);
    let meta = GuestMeta::read(&guest.join("guest.toml")).unwrap();
    let tarball = guest.join(&meta.tarball);
    let sum = run(Command::new("sha256sum").arg(&tarball));
    assert_eq!(
        sum.split_whitespace().next(),
        Some(meta.tarball_sha256.as_str())
    );
    let list = run(Command::new("tar").arg("-tvzf").arg(&tarball));
    assert!(
        list.contains(&meta.kernel),
        "{} not in the tarball",
        meta.kernel
    );
    let initrd = meta.initramfs.as_deref().unwrap();
    assert!(list.contains(initrd), "{initrd} not in the tarball");
    assert!(
        list.lines()
            .any(|l| l.starts_with('l') && l.contains("sbin/init -> ")),
        "no /sbin/init link"
    );
}
