//! Helpers shared by the image and rig tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs a program, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// `fsck.vfat -n` on a volume at `offset` of `file` (fsck.vfat has no
/// offset option, so a volume inside a disk image goes through a loop
/// device... or, simpler and rootless, a copy of its bytes).
pub fn fsck_vfat(file: &Path, offset: u64, size: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let part = dir.path().join("part.img");
    if offset == 0 {
        std::fs::copy(file, &part).unwrap();
    } else {
        run(Command::new("dd")
            .arg(format!("if={}", file.display()))
            .arg(format!("of={}", part.display()))
            .args([
                "bs=1M",
                "conv=sparse",
                "status=none",
                "iflag=skip_bytes,count_bytes",
            ])
            .arg(format!("skip={offset}"))
            .arg(format!("count={size}")));
    }
    stdout(Command::new("fsck.vfat").arg("-n").arg(&part))
}

/// An mtools image argument: `file@@offset`.
pub fn mimg(file: &Path, offset: u64) -> String {
    format!("{}@@{offset}", file.display())
}

/// `mdir -/ -a -b`: every path on the volume, one a line.
pub fn mdir_all(file: &Path, offset: u64) -> Vec<String> {
    let out = stdout(
        Command::new("mdir")
            .args(["-/", "-a", "-b", "-i", &mimg(file, offset), "::/"])
            .env("MTOOLS_SKIP_CHECK", "0"),
    );
    let mut v: Vec<String> = out
        .lines()
        .map(|l| l.trim_start_matches("::").to_owned())
        .collect();
    v.sort();
    v
}

/// A file's bytes as mtools reads them.
pub fn mread(file: &Path, offset: u64, path: &str) -> Vec<u8> {
    run(Command::new("mtype")
        .args(["-i", &mimg(file, offset)])
        .arg(format!("::{path}")))
    .stdout
}
