//! Rig tier sanity check: a real kernel unpacks the initramfs, busybox's
//! shell runs from it (`rdinit=/bin/sh`, not the agent), every module of
//! `/etc/vlx/modules.load` loads in that order, dmsetup reaches the
//! kernel's device-mapper, and the origin mounts and runs its daemons.

// Helpers outside #[test] functions panic on purpose too.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Generous: TCG on a loaded two-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

fn wait_for(buf: &Arc<Mutex<Vec<u8>>>, needle: &str, timeout: Duration) -> String {
    let start = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
        if text.contains(needle) {
            return text;
        }
        assert!(
            start.elapsed() < timeout,
            "no `{needle}` on the console within {timeout:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn rig_initramfs_boots_and_loads_its_modules() {
    let d = tempfile::tempdir().unwrap();
    let profile = d.path().join("tiny.toml");
    std::fs::write(&profile, tiny_profile_text(&[], "")).unwrap();
    let out = d.path().join("img");
    run(Command::new(env!("CARGO_BIN_EXE_vlx-image"))
        .args(["build", "--profile"])
        .arg(&profile)
        .arg("--out")
        .arg(&out)
        .arg("--agent")
        .arg(agent())
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string()));

    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-nographic",
            "-no-reboot",
            "-serial",
            "mon:stdio",
        ])
        .arg("-kernel")
        .arg(out.join("vmlinuz"))
        .arg("-initrd")
        .arg(out.join("initramfs.img"))
        .args(["-append", "console=ttyS0 rdinit=/bin/sh panic=-1"])
        .arg("-drive")
        .arg(format!(
            "file={},format=raw,if=virtio,readonly=on",
            out.join("origin.ext4").display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let buf = Arc::clone(&buf);
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(&buf, "# ", BOOT_TIMEOUT);
        // Markers are split in the commands (`VLX""OK`) so that the
        // console's echo of the command itself does not match.
        let script = "mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
            for m in $(cat /etc/vlx/modules.load); do modprobe $m || echo VLX\"\"FAIL $m; done\n\
            echo VLX\"\"MODULES $(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ,)\n\
            /sbin/dmsetup version\n\
            sleep 1; mount -o ro /dev/vda /newroot && chroot /newroot /usr/sbin/keepalived -v 2>&1\n\
            echo VLX\"\"DONE\n";
        stdin.write_all(script.as_bytes()).unwrap();
        stdin.flush().unwrap();
        wait_for(&buf, "VLXDONE", BOOT_TIMEOUT)
    }));
    let _ = stdin.write_all(b"poweroff -f\n");
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let text = match result {
        Ok(t) => t,
        Err(e) => std::panic::resume_unwind(e),
    };
    assert!(!text.contains("VLXFAIL"), "a module did not load:\n{text}");
    let modules = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("VLXMODULES "))
        .unwrap_or_else(|| panic!("no module list:\n{text}"));
    for m in [
        "dm_snapshot",
        "dm_mod",
        "virtio_net",
        "virtio_blk",
        "failover",
    ] {
        assert!(
            modules.split(',').any(|x| x == m),
            "{m} not loaded: {modules}"
        );
    }
    assert!(
        text.contains("Driver version:"),
        "dmsetup did not reach device-mapper:\n{text}"
    );
    assert!(
        text.contains("Keepalived v"),
        "keepalived did not run from the origin:\n{text}"
    );
}
