//! The node overlay's `store-watch` under busybox sh, fed the kernel's
//! status lines of a filling snapshot by a stand-in `dmsetup`: a warning
//! at 80 % and one at 95 % (each once), the fill file, and the end of the
//! watch when the store is invalid. The rig sees the same script on a real
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

/// Runs store-watch under busybox sh until it ends, node n2, its fill
/// file `dir/fill` and its console `dir/console`, with a stand-in
/// `dmsetup` whose shell `body` knows its call's number as `$n` (counted
/// in a file); returns the exit code.
fn run_with(dir: &Path, body: &str) -> Option<i32> {
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
    Command::new("busybox")
        .arg("sh")
        .arg(&script)
        .env("VLX_ROOT", &root)
        .env("VLX_DMSETUP", &stub)
        .env("VLX_CONSOLE", dir.join("console"))
        .env("VLX_STORE_FILL", dir.join("fill"))
        .env("VLX_WATCH_INTERVAL", "0")
        .output()
        .unwrap()
        .status
        .code()
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
fn the_fill_file_is_written_when_the_reading_changes_or_the_file_is_gone() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let fill = dir.join("fill");
    // Call 2 puts a mark in the file; call 3 keeps what the file then
    // holds (the same reading: not written again); call 4 removes it (the
    // same reading: written again); call 5 keeps it and fails, which ends
    // the watch.
    let code = run_with(
        dir,
        &format!(
            "case $n in\n\
             2) echo mark > {f} ;;\n\
             3) cp {f} {d}/seen3 ;;\n\
             4) rm {f} ;;\n\
             5) cp {f} {d}/seen5; exit 1 ;;\n\
             esac\n\
             echo '0 2097152 snapshot 24/131072 16'\n",
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
    assert_eq!(read("seen5"), "0% (24 of 131072 sectors)\n");
}
