//! A refused install leaves the target byte-identical: an existing
//! partition table without --wipe, a mounted loop device, a too-small
//! target, a tampered artifact, another cluster's install.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const MIB: u64 = 1 << 20;

fn refused(o: &std::process::Output) -> bool {
    o.status.code() == Some(3) || o.status.code() == Some(1)
}

#[test]
fn an_existing_partition_table_is_kept_without_wipe() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    // A foreign GPT, made by sgdisk.
    assert!(
        Command::new("sgdisk")
            .args(["-n", "1:2048:+100M", "-c", "1:data"])
            .arg(&san)
            .output()
            .unwrap()
            .status
            .success()
    );
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, &san, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("without --wipe"), "{}", text(&o));
    assert_eq!(sha256_file(&san), before, "the refused target changed");
}

#[test]
fn a_file_system_signature_is_kept_without_wipe() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    assert!(
        Command::new("mkfs.vfat")
            .arg(&san)
            .output()
            .unwrap()
            .status
            .success()
    );
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, &san, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("vfat"), "{}", text(&o));
    assert_eq!(sha256_file(&san), before);
}

#[test]
fn a_too_small_target_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 300 * MIB);
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, &san, &[]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("smaller than") || text(&o).contains("the layout needs"),
        "{}",
        text(&o)
    );
    assert_eq!(sha256_file(&san), before);
}

#[test]
fn a_tampered_artifact_is_refused_before_any_write() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    // One flipped byte in the origin, manifest unchanged.
    let origin = img.join("origin.ext4");
    let mut bytes = std::fs::read(&origin).unwrap();
    bytes[4096] ^= 0x40;
    std::fs::write(&origin, bytes).unwrap();
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, &san, &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("origin.ext4") && text(&o).contains("manifest"),
        "{}",
        text(&o)
    );
    assert_eq!(sha256_file(&san), before);
}

/// Detaches the loop device and unmounts, whatever happens in the test.
struct Loop {
    dev: String,
    mnt: Option<PathBuf>,
}

impl Drop for Loop {
    fn drop(&mut self) {
        if let Some(m) = &self.mnt {
            let _ = Command::new("umount").arg(m).status();
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

fn attach(file: &Path) -> Loop {
    let o = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Loop {
        dev: String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        mnt: None,
    }
}

#[test]
fn a_mounted_loop_device_over_the_file_is_refused_even_with_wipe() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    assert!(
        Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext4"])
            .arg(&san)
            .status()
            .unwrap()
            .success()
    );
    let mut lp = attach(&san);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // Read-only and without journal replay, so that the kernel itself
    // writes nothing to the file.
    assert!(
        Command::new("mount")
            .args(["-o", "ro,noload"])
            .arg(&lp.dev)
            .arg(&mnt)
            .status()
            .unwrap()
            .success()
    );
    lp.mnt = Some(mnt.clone());
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, &san, &["--wipe"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("is mounted on"), "{}", text(&o));
    // Also through the loop device itself.
    let o = apply(
        &fixture("small.toml"),
        &img,
        Path::new(&lp.dev),
        &["--wipe"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    drop(lp);
    assert_eq!(sha256_file(&san), before);
}

#[test]
fn another_clusters_install_is_kept_without_wipe() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    // Lay the other cluster's partition table and meta volume.
    let o = Command::new(env!("CARGO_BIN_EXE_vlx-install"))
        .env("VLX_INSTALL_FAULT", "after:content")
        .args(["apply", "--yes", "--cluster"])
        .arg(fixture("other.toml"))
        .arg("--image")
        .arg(&img)
        .arg("--san")
        .arg(&san)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "the fault switch did not stop the install"
    );
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, &san, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("another disk or cluster"), "{}", text(&o));
    assert_eq!(sha256_file(&san), before);
    assert!(refused(&o));
}
