//! The node overlay's `paths` (the checker of the SAN's multipath map)
//! under busybox sh, fed the kernel's status lines of `vlx-san` by a
//! stand-in `dmsetup`: a failed path is said once, tried until it reads,
//! and then reinstated with `dmsetup message`. The iSCSI rehearsal sees the
//! same script on a real map (qemu-tests).

#![allow(clippy::unwrap_used)]

mod nodes;

use std::path::Path;
use std::process::Command;

/// Runs `paths` until the stand-in runs out of status lines; `probe_ok`
/// lists, per call of the path probe, whether the read succeeds. Returns
/// (exit code, console, the `dmsetup message` calls, the probes).
fn watch(dir: &Path, lines: &[&str], probe_ok: &[bool]) -> (Option<i32>, String, String, String) {
    let seq = dir.join("status");
    std::fs::write(&seq, lines.join("\n") + "\n").unwrap();
    let d = dir.display();
    let stub = dir.join("dmsetup");
    // `status vlx-san` prints the next line each call, as the kernel's
    // status changes between polls; `message` calls are recorded.
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = message ]; then echo \"$*\" >> {d}/messages; exit 0; fi\n\
             [ \"$1 $2\" = 'status vlx-san' ] || exit 9\n\
             n=$(cat {d}/calls 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {d}/calls\n\
             sed -n \"${{n}}p\" {seq} | grep . || exit 1\n",
            seq = seq.display()
        ),
    )
    .unwrap();
    let answers: String = probe_ok
        .iter()
        .map(|ok| if *ok { "0\n" } else { "1\n" })
        .collect();
    std::fs::write(dir.join("answers"), answers).unwrap();
    let probe = dir.join("probe");
    std::fs::write(
        &probe,
        format!(
            "#!/bin/sh\necho \"$1\" >> {d}/probes\n\
             n=$(wc -l < {d}/probes)\n\
             exit $(sed -n \"${{n}}p\" {d}/answers)\n"
        ),
    )
    .unwrap();
    for f in [&stub, &probe] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let console = dir.join("console");
    let script = nodes::overlays_dir().join("node/usr/lib/vlx/paths");
    let out = Command::new("busybox")
        .arg("sh")
        .arg(&script)
        .env("VLX_DMSETUP", &stub)
        .env("VLX_PROBE", &probe)
        .env("VLX_CONSOLE", &console)
        .env("VLX_PATHS_INTERVAL", "0")
        .output()
        .unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    (
        out.status.code(),
        read("console"),
        read("messages"),
        read("probes"),
    )
}

const BOTH: &str = "0 2097152 multipath 2 0 0 0 1 1 A 0 2 0 8:16 A 0 8:32 A 0";
const CUT: &str = "0 2097152 multipath 2 0 0 0 1 1 A 0 2 0 8:16 A 0 8:32 F 1";
const BACK: &str = "0 2097152 multipath 2 0 0 0 1 1 A 0 2 0 8:16 A 0 8:32 A 1";

#[test]
fn a_failed_path_is_tried_until_it_reads_then_reinstated_once() {
    let d = tempfile::tempdir().unwrap();
    // The first status is the check that a map exists.
    let (code, console, messages, probes) =
        watch(d.path(), &[BOTH, BOTH, CUT, CUT, BACK], &[false, true]);
    // The stand-in runs out of lines: the watch says so and ends.
    assert_eq!(code, Some(1), "{console}");
    assert_eq!(probes, "8:32\n8:32\n", "{console}");
    assert_eq!(messages, "message vlx-san 0 reinstate_path 8:32\n");
    let said: Vec<&str> = console.lines().collect();
    assert_eq!(
        said[..2],
        [
            "vlx: SAN path 8:32 of vlx-san failed; trying it every 0 s",
            "vlx: SAN path 8:32 works again: reinstated in vlx-san",
        ],
        "{console}"
    );
    assert!(
        said[2].contains("dmsetup status vlx-san failed"),
        "{console}"
    );
    assert_eq!(said.len(), 3, "{console}");
}

#[test]
fn without_a_map_it_ends_quietly() {
    let d = tempfile::tempdir().unwrap();
    let (code, console, messages, _) = watch(d.path(), &[], &[]);
    assert_eq!(code, Some(0), "{console}");
    assert_eq!((console.as_str(), messages.as_str()), ("", ""));
    let (code, console, _, _) = watch(
        tempfile::tempdir().unwrap().path(),
        &["0 8 linear 8:3 0", "0 8 linear 8:3 0"],
        &[],
    );
    assert_eq!(code, Some(1), "{console}");
    assert!(
        console.contains("vlx-san is not a multipath map"),
        "{console}"
    );
}
