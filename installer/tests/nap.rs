//! The node overlay's `nap`, sourced by the polling scripts (follow,
//! publish, store-watch): under busybox sh (the tiny image's shell) it
//! waits without starting a program, under dash (the Debian image's
//! /bin/sh, whose `read` has no timeout) it runs `sleep`; either way the
//! wait lasts its seconds, and nothing is left behind in the run folder.

#![allow(clippy::unwrap_used)]

mod nodes;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Runs `nap 1` twice under `shell` with `path` as PATH, and checks that
/// the naps took their two seconds, that `$nap_fifo` read `fifo` after
/// each, and that nothing was left in the run folder (the FIFO is
/// unlinked once open).
fn two_naps(shell: &[&str], path: &Path, root: &Path, fifo: &str) {
    let (took, out) = naps(
        shell,
        path,
        root,
        "nap 1; echo \"fifo=$nap_fifo\"\nnap 1; echo \"fifo=$nap_fifo\"\n",
    );
    assert_eq!(out, format!("fifo={fifo}\nfifo={fifo}\n"));
    assert!(
        took >= Duration::from_secs(2),
        "two naps of 1 s took {took:?}"
    );
    let left: Vec<_> = std::fs::read_dir(root.join("run/vlx")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Runs `body` under `shell` with `path` as PATH, after sourcing nap;
/// returns how long it took and what it printed.
fn naps(shell: &[&str], path: &Path, root: &Path, body: &str) -> (Duration, String) {
    let nap = nodes::overlays_dir().join("node/usr/lib/vlx/nap");
    let script = format!(". '{}'\n{body}", nap.display());
    let t = Instant::now();
    let o = Command::new(shell[0])
        .args(&shell[1..])
        .args(["-c", &script])
        .env("PATH", path)
        .env("VLX_ROOT", root)
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (took, String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn busybox_sh_naps_without_starting_a_program() {
    let d = tempfile::tempdir().unwrap();
    // A PATH with `mkfifo` and nothing else: a nap that ran `sleep` would
    // find none and end at once.
    let bin = d.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mkfifo = Command::new("sh")
        .args(["-c", "command -v mkfifo"])
        .output()
        .unwrap();
    let mkfifo = String::from_utf8_lossy(&mkfifo.stdout).trim().to_owned();
    std::os::unix::fs::symlink(&mkfifo, bin.join("mkfifo")).unwrap();
    let root = d.path().join("root");
    two_naps(&["/bin/busybox", "sh"], &bin, &root, "yes");
}

#[test]
fn dash_naps_with_sleep() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    two_naps(&["dash"], Path::new("/usr/bin:/bin"), &root, "no");
}

#[test]
fn busybox_sh_naps_with_sleep_once_the_fifo_is_closed() {
    // busybox's read ends at once with the status of a timeout on a
    // closed descriptor: taken for a nap, that would poll without pause.
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let (took, out) = naps(
        &["/bin/busybox", "sh"],
        Path::new("/usr/bin:/bin"),
        &root,
        "exec 9<&-\nnap 1; echo \"fifo=$nap_fifo\"\n",
    );
    assert_eq!(out, "fifo=no\n");
    assert!(took >= Duration::from_secs(1), "a nap of 1 s took {took:?}");
}
