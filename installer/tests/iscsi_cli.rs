//! `--san iscsi://...` and `--chap` as a user gets them wrong: each is bad
//! input (exit 2) named before any login is tried. The logins themselves
//! run in a QEMU guest (`agent/tests/rig_install_iscsi.rs`): this host's
//! kernel is no iSCSI initiator.

#![allow(clippy::unwrap_used)] // test helpers may panic on setup errors

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

fn vlx_install(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlx-install"))
        .args(args)
        .output()
        .expect("vlx-install runs")
}

fn assert_bad_input(args: &[&str], want: &str) {
    let out = vlx_install(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(want), "{args:?}: want `{want}` in:\n{err}");
}

#[test]
fn bad_san_urls_are_named() {
    for cmd in ["status", "verify"] {
        for (san, want) in [
            (
                "iscsi://san.example/iqn.2026-01.test:x",
                "portal san.example is not an IP address",
            ),
            ("iscsi://10.0.0.1", "no target name"),
            (
                "iscsi://10.0.0.1:99999/iqn.2026-01.test:x",
                "99999 is not a port",
            ),
            (
                "iscsi://10.0.0.1/iqn.2026-01.test:x/first",
                "LUN first is not a decimal number",
            ),
            (
                "iscsi:10.0.0.1/iqn.2026-01.test:x",
                "write iscsi://PORTAL[:PORT]/IQN[/LUN]",
            ),
        ] {
            assert_bad_input(&[cmd, "--san", san], want);
        }
    }
    assert_bad_input(
        &["reset-node", "n1", "--san", "iscsi://[fd00::1/iqn.x"],
        "closing ]",
    );
}

#[test]
fn chap_files_are_checked_before_any_login() {
    let t = tempfile::tempdir().unwrap();
    let chap = t.path().join("chap");
    std::fs::write(&chap, "username=blade\npassword=Sekrit-0042\n").unwrap();
    std::fs::set_permissions(&chap, std::fs::Permissions::from_mode(0o644)).unwrap();
    let chap = chap.to_str().unwrap();
    let url = "iscsi://192.0.2.1/iqn.2026-01.test:x/1";
    assert_bad_input(
        &["status", "--san", url, "--chap", chap],
        "mode 644 lets others read it: chmod 600",
    );
    std::fs::set_permissions(chap, std::fs::Permissions::from_mode(0o600)).unwrap();
    let image = t.path().join("san.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    assert_bad_input(
        &["status", "--san", image.to_str().unwrap(), "--chap", chap],
        "is for an iscsi:// SAN",
    );
    let bad = t.path().join("bad");
    std::fs::write(&bad, "username=blade\npasswd=Sekrit-0042\n").unwrap();
    std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = vlx_install(&["status", "--san", url, "--chap", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 2: passwd is not a key"), "{err}");
    assert!(!err.contains("Sekrit"), "the secret was printed: {err}");
}
