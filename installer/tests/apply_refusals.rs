//! A refused install exits 3 and leaves the target byte-identical: an
//! existing partition table without --wipe, a mounted loop device, a
//! too-small target, a tampered artifact, another cluster's install, a
//! target that is not a block device or regular file, one that cannot be
//! written, one of another sector size, and one an install already holds.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

const MIB: u64 = 1 << 20;

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
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
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
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
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
    // abort(3): SIGABRT, no exit code.
    assert_eq!(
        o.status.code(),
        None,
        "the fault switch did not stop the install: {}",
        text(&o)
    );
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, &san, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("another disk or cluster"), "{}", text(&o));
    assert_eq!(sha256_file(&san), before);
}

/// `vlx-install ARGS` under `timeout 10`, so that a command that blocks
/// ends with 124 instead of hanging the test.
fn bounded(args: &[&str]) -> std::process::Output {
    Command::new("timeout")
        .arg("10")
        .arg(env!("CARGO_BIN_EXE_vlx-install"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_fifo_socket_character_device_or_directory_is_refused_without_blocking() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let fifo = d.path().join("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success(), "mkfifo failed");
    let sock = d.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let dir = d.path().join("dir");
    std::fs::create_dir(&dir).unwrap();
    let profile = fixture("small.toml");
    for (path, what) in [
        (fifo.as_path(), "is a FIFO"),
        (sock.as_path(), "is a socket"),
        (Path::new("/dev/null"), "is a character device"),
        (dir.as_path(), "is a directory"),
    ] {
        let p = path.to_str().unwrap();
        let runs: [Vec<&str>; 4] = [
            vec![
                "apply",
                "--yes",
                "--cluster",
                profile.to_str().unwrap(),
                "--image",
                img.to_str().unwrap(),
                "--san",
                p,
            ],
            vec!["plan", "--cluster", profile.to_str().unwrap(), "--san", p],
            vec!["status", "--san", p],
            vec!["verify", "--san", p],
        ];
        for args in runs {
            let o = bounded(&args);
            assert_eq!(o.status.code(), Some(3), "{args:?}: {}", text(&o));
            assert!(text(&o).contains(what), "{args:?}: {}", text(&o));
        }
    }
}

/// Clears the immutable flag, whatever happens in the test.
struct Immutable(PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

/// Unmounts, whatever happens in the test.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn an_immutable_file_or_a_read_only_mount_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    let st = Command::new("chattr").arg("+i").arg(&san).status().unwrap();
    assert!(st.success(), "chattr +i failed");
    let guard = Immutable(san.clone());
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, &san, &["--wipe"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("cannot be opened for writing") && text(&o).contains("immutable"),
        "{}",
        text(&o)
    );
    drop(guard);
    assert_eq!(sha256_file(&san), before);

    let mnt = d.path().join("ro");
    std::fs::create_dir(&mnt).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=700m", "vlx-test"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs failed");
    let _m = Mounted(mnt.clone());
    let ro_san = mnt.join("san.img");
    std::fs::File::create(&ro_san)
        .unwrap()
        .set_len(600 * MIB)
        .unwrap();
    let st = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success(), "remount ro failed");
    let o = apply(&fixture("small.toml"), &img, &ro_san, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("read-only"), "{}", text(&o));
}

#[test]
fn a_target_of_another_sector_size_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    let o = Command::new("losetup")
        .args(["--find", "--show", "--sector-size", "4096"])
        .arg(&san)
        .output()
        .unwrap();
    assert!(o.status.success(), "losetup: {}", text(&o));
    let lp = Loop {
        dev: String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        mnt: None,
    };
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, Path::new(&lp.dev), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("4096-byte logical sectors"),
        "{}",
        text(&o)
    );
    drop(lp);
    assert_eq!(sha256_file(&san), before);
}

/// Kills and reaps a child process, whatever happens in the test.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-CONT", &self.0.id().to_string()])
                .status();
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until process `pid` holds an exclusive flock (as /proc/locks
/// shows), or fails saying it never did.
fn wait_for_lock(child: &mut std::process::Child) {
    let pid = child.id().to_string();
    for _ in 0..2000 {
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        let held = locks.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"FLOCK")
                && f.get(3) == Some(&"WRITE")
                && f.get(4) == Some(&pid.as_str())
        });
        if held {
            return;
        }
        if let Some(st) = child.try_wait().unwrap() {
            panic!("process {pid} ended ({st}) before it held a lock");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("process {pid} never took a lock (20 s)");
}

#[test]
fn a_locked_target_is_refused_naming_the_holder_also_through_a_loop_device() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    // --no-fork: the lock's holder is the one process the test kills (a
    // forked `sleep` would outlive it, holding the test's output open).
    let mut holder = Child(
        Command::new("flock")
            .args(["--exclusive", "--no-fork"])
            .arg(&san)
            .args(["sleep", "600"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_lock(&mut holder.0);
    let pid = holder.0.id();
    let before = sha256_file(&san);
    let o = apply(&fixture("small.toml"), &img, &san, &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains("is locked by another install")
            && text(&o).contains(&format!("pid {pid}: sleep 600")),
        "{}",
        text(&o)
    );
    // A loop device over the file is another inode; its backing file is
    // locked too.
    let lp = attach(&san);
    let o = apply(&fixture("small.toml"), &img, Path::new(&lp.dev), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("pid {pid}: sleep 600")),
        "{}",
        text(&o)
    );
    drop(lp);
    drop(holder);
    assert_eq!(sha256_file(&san), before);
}

#[test]
fn of_two_installs_at_once_one_runs_and_the_other_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let img = image_dir(d.path(), "a");
    let san = san(d.path(), 600 * MIB);
    let profile = fixture("small.toml");
    let mut first = Child(
        Command::new(env!("CARGO_BIN_EXE_vlx-install"))
            .args(["apply", "--yes", "--cluster"])
            .arg(&profile)
            .arg("--image")
            .arg(&img)
            .arg("--san")
            .arg(&san)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_lock(&mut first.0);
    // Stopped while it holds the lock, so that the second one surely runs
    // while the first is mid-install.
    let pid = first.0.id().to_string();
    let st = Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    assert!(st.success(), "kill -STOP failed");
    let second = apply(&profile, &img, &san, &[]);
    assert_eq!(second.status.code(), Some(3), "{}", text(&second));
    assert!(
        text(&second).contains(&format!("pid {pid}: "))
            && text(&second).contains("vlx-install apply"),
        "{}",
        text(&second)
    );
    let st = Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    assert!(st.success(), "kill -CONT failed");
    let st = first.0.wait().unwrap();
    assert!(st.success(), "the first install failed: {st}");
    let o = vlx_install(&["verify", "--san", san.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
