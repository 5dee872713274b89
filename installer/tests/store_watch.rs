//! The node overlay's `store-watch` under busybox sh, fed the kernel's
//! status lines of a filling snapshot by a stand-in `dmsetup`: a warning
//! at 80 % and one at 95 % (each once), the fill file, and the end of the
//! watch when the store is invalid; and, over a stand-in sysfs entry of the
//! root, that the status is read again only once the root was written (or
//! after a few polls without). The rig sees the same script on a real
//! snapshot (qemu-tests).

#![allow(clippy::unwrap_used)]

mod nodes;

use std::path::Path;
use std::process::Command;

/// Runs store-watch until it ends, with `dmsetup status` answering the
/// given lines one per poll; returns (exit code, console, fill file).
fn watch(dir: &Path, lines: &[&str]) -> (Option<i32>, String, String) {
    let seq = dir.join("status");
    std::fs::write(&seq, lines.join("\n") + "\n").unwrap();
    // Prints the next line each call, as the kernel's status changes
    // between polls.
    let code = run_with(
        dir,
        &format!(
            "[ \"$1 $2\" = 'status vlx-root' ] || exit 9\n\
             sed -n \"${{n}}p\" {seq} | grep . || exit 1\n",
            seq = seq.display()
        ),
    );
    (
        code,
        std::fs::read_to_string(dir.join("console")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("fill")).unwrap_or_default(),
    )
}

/// Runs store-watch under busybox sh until it ends (see [`store_watch`]);
/// returns the exit code.
fn run_with(dir: &Path, body: &str) -> Option<i32> {
    store_watch(dir, body).output().unwrap().status.code()
}

/// store-watch under busybox sh for node n2 (root `dir/root`), its fill
/// file `dir/fill` and its console `dir/console`, polling without pause,
/// with a stand-in `dmsetup` whose shell `body` knows its call's number as
/// `$n` (counted in `dir/calls`).
fn store_watch(dir: &Path, body: &str) -> Command {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc/vlx")).unwrap();
    std::fs::write(root.join("etc/vlx/node.env"), "VLX_NODE='n2'\n").unwrap();
    let stub = dir.join("dmsetup");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\nn=$(cat {d}/calls 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {d}/calls\n{body}",
            d = dir.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = nodes::overlays_dir().join("node/usr/lib/vlx/store-watch");
    let mut c = Command::new("busybox");
    c.arg("sh")
        .arg(&script)
        .env("VLX_ROOT", &root)
        .env("VLX_DMSETUP", &stub)
        .env("VLX_CONSOLE", dir.join("console"))
        .env("VLX_STORE_FILL", dir.join("fill"))
        .env("VLX_WATCH_INTERVAL", "0");
    c
}

#[test]
fn warns_once_at_80_and_at_95_percent_and_ends_when_the_store_is_invalid() {
    let d = tempfile::tempdir().unwrap();
    // A 64 MiB store (131072 sectors) filling up.
    let (code, console, fill) = watch(
        d.path(),
        &[
            "0 2097152 snapshot 24/131072 16",
            "0 2097152 snapshot 100000/131072 200",
            "0 2097152 snapshot 105000/131072 210",
            "0 2097152 snapshot 110000/131072 220",
            "0 2097152 snapshot 125000/131072 250",
            "0 2097152 snapshot 130000/131072 254",
            "0 2097152 snapshot Invalid",
        ],
    );
    assert_eq!(code, Some(0), "{console}");
    let warnings: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("vlx: warning:"))
        .collect();
    assert_eq!(warnings.len(), 3, "{console}");
    assert!(
        warnings[0].contains("the snapshot store of n2 is 80% full (51 of 64 MiB)"),
        "{console}"
    );
    assert!(
        warnings[1].contains("the snapshot store of n2 is 95% full (61 of 64 MiB)"),
        "{console}"
    );
    assert!(
        warnings[2].contains("overflowed and is invalid") && warnings[2].contains("reset-node n2"),
        "{console}"
    );
    assert_eq!(fill.lines().next(), Some("invalid"), "{fill}");
    assert_eq!(
        fill.lines().nth(1),
        Some(&warnings[2]["vlx: ".len()..]),
        "{fill}"
    );
}

#[test]
fn below_80_percent_the_file_has_the_fill_and_the_console_nothing() {
    let d = tempfile::tempdir().unwrap();
    // The stand-in fails after its one line: the watch says so and ends.
    let (code, console, fill) = watch(d.path(), &["0 2097152 snapshot 100000/131072 200"]);
    assert_eq!(code, Some(1), "{console}");
    assert_eq!(fill, "76% (100000 of 131072 sectors)\n");
    assert!(!console.contains("warning"), "{console}");
    assert!(
        console.contains("dmsetup status vlx-root failed"),
        "{console}"
    );
}

#[test]
fn a_root_that_is_no_snapshot_is_said_and_not_watched() {
    let d = tempfile::tempdir().unwrap();
    let (code, console, _) = watch(d.path(), &["0 2097152 linear 8:3 0"]);
    assert_eq!(code, Some(1), "{console}");
    assert!(console.contains("vlx-root is not a snapshot"), "{console}");
}

#[test]
fn the_fill_file_is_written_when_the_percentage_changes_or_the_file_is_gone() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let fill = dir.join("fill");
    // Call 2 puts a mark in the file and reads as call 1 did; call 3 keeps
    // what the file then holds (not written again) and reads more sectors
    // at the same whole percentage; call 4 keeps the file (still not
    // written), removes it and reads the same (written again); call 5 keeps
    // it and reads 1 %; call 6 keeps that and fails, which ends the watch.
    let code = run_with(
        dir,
        &format!(
            "s=24\n\
             case $n in\n\
             2) echo mark > {f} ;;\n\
             3) cp {f} {d}/seen3; s=40 ;;\n\
             4) cp {f} {d}/seen4; rm {f}; s=40 ;;\n\
             5) cp {f} {d}/seen5; s=2000 ;;\n\
             6) cp {f} {d}/seen6; exit 1 ;;\n\
             esac\n\
             echo \"0 2097152 snapshot $s/131072 16\"\n",
            d = dir.display(),
            f = fill.display(),
        ),
    );
    assert_eq!(code, Some(1));
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(
        read("seen3"),
        "mark\n",
        "an unchanged reading was written again"
    );
    assert_eq!(
        read("seen4"),
        "mark\n",
        "a reading at the same percentage was written again"
    );
    assert_eq!(read("seen5"), "0% (40 of 131072 sectors)\n");
    assert_eq!(read("seen6"), "1% (2000 of 131072 sectors)\n");
}

/// A running store-watch over a root with a sysfs entry (`dm-3`, named
/// vlx-root, beside `dm-1`, another device): the stand-in `dmsetup`
/// counts its calls and always reports the same fill.
struct Watching {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Watching {
    fn start(full: u32) -> Watching {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (dm, name, writes) in [("dm-1", "vlx-cow", 5), ("dm-3", "vlx-root", 7)] {
            let at = d.join("root/sys/block").join(dm);
            std::fs::create_dir_all(at.join("dm")).unwrap();
            std::fs::write(at.join("dm/name"), format!("{name}\n")).unwrap();
            stat(d, dm, writes);
        }
        let child = store_watch(d, "echo '0 2097152 snapshot 24/131072 16'\n")
            .env("VLX_WATCH_INTERVAL", "0.02")
            .env("VLX_WATCH_FULL", full.to_string())
            .spawn()
            .unwrap();
        Watching { dir, child }
    }

    fn stat(&self, dm: &str, writes: u64) {
        stat(self.dir.path(), dm, writes);
    }

    fn calls(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits (20 s at most) until dmsetup ran `n` times or more.
    fn until_calls(&self, n: u32) -> u32 {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.calls() < n && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        self.calls()
    }
}

/// The kernel's stat line of `dm` (under `dir/root/sys/block`) after
/// `writes` writes of 8 sectors, written beside and renamed over.
fn stat(dir: &Path, dm: &str, writes: u64) {
    let path = dir.join("root/sys/block").join(dm).join("stat");
    let line = format!(
        "     120        0     4410       35 {writes:>8}        0 {:>8}       12        0       60       47        0        0        0        0        3        1\n",
        writes * 8
    );
    std::fs::write(path.with_extension("new"), line).unwrap();
    std::fs::rename(path.with_extension("new"), path).unwrap();
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_status_is_read_again_only_after_the_root_was_written() {
    let w = Watching::start(1_000_000);
    assert_eq!(w.until_calls(1), 1);
    // Dozens of polls (20 ms apart) with the root's counters unmoved, and
    // another device written: no reading.
    w.stat("dm-1", 50);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(w.calls(), 1, "the status was read with the root unwritten");
    assert_eq!(
        std::fs::read_to_string(w.dir.path().join("fill")).unwrap(),
        "0% (24 of 131072 sectors)\n"
    );
    // The root written: read at the next poll, then quiet again.
    w.stat("dm-3", 9);
    assert_eq!(w.until_calls(2), 2);
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        w.calls(),
        2,
        "the status was read again with the root unwritten"
    );
}

#[test]
fn an_unwritten_root_is_still_read_every_few_polls() {
    // A reading at least every 3 polls, the root never written.
    let w = Watching::start(3);
    assert!(w.until_calls(4) >= 4, "{} readings", w.calls());
}
