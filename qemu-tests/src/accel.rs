//! KVM or TCG: found by booting, not by the presence of `/dev/kvm`.
//!
//! Some hosts offer `/dev/kvm` but cannot run ordinary guests with it (a
//! nested, paravirtual flavour): QEMU starts, SeaBIOS prints its banner,
//! then the guest hangs on an emulation failure. So the probe boots the
//! firmware under KVM and wants it to finish its boot menu ("No bootable
//! device.") quickly, then, when a kernel is at hand, wants that kernel to
//! reach its panic for lack of a root. Anything else means TCG.
//!
//! The answer is kept in `$VLX_CACHE/accel` for this boot of the host and
//! this QEMU, so that the next process (each rig test is one) does not
//! probe again: a host whose KVM does not work costs each probe 8 s.
//! `VLX_RIG_ACCEL` still decides over it.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::qemu::{Accel, QEMU};
use crate::run::Run;

/// Environment variable that skips the probe: `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "VLX_RIG_ACCEL";

/// Under working KVM, SeaBIOS gives up on an empty machine in well under
/// a second and a kernel panics without a root in about one; a broken KVM
/// never gets there. Generous for a loaded host, short enough not to cost
/// much where KVM does not work.
const FIRMWARE_PROBE: Duration = Duration::from_secs(4);
const KERNEL_PROBE: Duration = Duration::from_secs(8);

/// The answer and why, once per process.
static ANSWER: Mutex<Option<Probe>> = Mutex::new(None);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub accel: Accel,
    pub why: String,
}

/// KVM when it boots a guest here, else TCG; asked once per process (a
/// later call with a kernel probes again if the first had none).
pub fn choose(run: &Run, kernel: Option<&Path>) -> Probe {
    match std::env::var(ACCEL_ENV).as_deref() {
        Ok("kvm") => {
            return Probe {
                accel: Accel::Kvm,
                why: format!("{ACCEL_ENV}=kvm"),
            };
        }
        Ok("tcg") => {
            return Probe {
                accel: Accel::Tcg,
                why: format!("{ACCEL_ENV}=tcg"),
            };
        }
        _ => {}
    }
    let mut answer = ANSWER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(a) = answer.as_ref() {
        return a.clone();
    }
    let key = cache_key();
    if let Some(cached) = key.as_ref().and_then(|k| cached(&cache_file(), k)) {
        *answer = Some(cached.clone());
        return cached;
    }
    let probe = probe(run, kernel);
    // A KVM answer without a kernel tried is not final (a later call with
    // one probes again); every other answer holds until the host reboots.
    let last = probe.accel == Accel::Tcg || kernel.is_some();
    if let (Some(k), true) = (key, last) {
        remember(&cache_file(), &k, &probe);
    }
    *answer = Some(probe.clone());
    probe
}

/// Where a probe's answer is kept for the next process: each rig test is
/// a process of its own, and the KVM probe costs a dead KVM its 8 s.
fn cache_file() -> std::path::PathBuf {
    imagebuilder::image::kernel::cache_root().join("accel")
}

/// What an answer holds for: this boot of the host (`boot_id`: KVM does
/// not start or stop working within one) and this QEMU (`--version`).
fn cache_key() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let out = Command::new(QEMU)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let version = String::from_utf8_lossy(&out.stdout);
    let version = version.lines().next()?.trim();
    (out.status.success() && !version.is_empty()).then(|| format!("{} {version}", boot.trim()))
}

/// The answer kept in `file` for `key`, when there is one: three lines,
/// the key, `kvm` or `tcg`, and why (anything else is no answer).
fn cached(file: &Path, key: &str) -> Option<Probe> {
    let text = std::fs::read_to_string(file).ok()?;
    let mut lines = text.lines();
    if lines.next()? != key {
        return None;
    }
    let accel = match lines.next()? {
        "kvm" => Accel::Kvm,
        "tcg" => Accel::Tcg,
        _ => return None,
    };
    let why = lines.next()?;
    Some(Probe {
        accel,
        why: format!(
            "{why} (probed earlier in this boot of the host: {})",
            file.display()
        ),
    })
}

/// Keeps `probe` in `file` for `key`; written whole, then renamed, so that
/// tests starting at once read an answer or none. A cache that cannot be
/// written costs the next process its probe, nothing else.
fn remember(file: &Path, key: &str, probe: &Probe) {
    let Some(dir) = file.parent() else {
        return;
    };
    let accel = match probe.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let why = probe.why.replace('\n', " ");
    let tmp = dir.join(format!(".accel.{}", std::process::id()));
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, format!("{key}\n{accel}\n{why}\n")))
        .and_then(|()| std::fs::rename(&tmp, file));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn probe(run: &Run, kernel: Option<&Path>) -> Probe {
    if !Path::new("/dev/kvm").exists() {
        return tcg("no /dev/kvm");
    }
    let firmware = boot(run, &[], "No bootable device", FIRMWARE_PROBE);
    if let Err(why) = firmware {
        return tcg(&format!("KVM did not boot the firmware: {why}"));
    }
    let Some(kernel) = kernel else {
        return Probe {
            accel: Accel::Kvm,
            why: "KVM booted the firmware (no kernel at hand to try)".into(),
        };
    };
    let args = [
        "-kernel".to_string(),
        kernel.to_string_lossy().into_owned(),
        "-append".into(),
        "console=ttyS0 panic=-1".into(),
    ];
    match boot(run, &args, "Kernel panic", KERNEL_PROBE) {
        Ok(()) => Probe {
            accel: Accel::Kvm,
            why: format!("KVM booted {}", kernel.display()),
        },
        Err(why) => tcg(&format!("KVM did not boot {}: {why}", kernel.display())),
    }
}

fn tcg(why: &str) -> Probe {
    Probe {
        accel: Accel::Tcg,
        why: why.to_string(),
    }
}

/// Boots a bare machine under KVM and waits for `marker` on its serial
/// console.
fn boot(run: &Run, extra: &[String], marker: &str, limit: Duration) -> Result<(), String> {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-accel", "kvm", "-machine", "pc,graphics=off", "-m", "128"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-vga", "none", "-no-reboot", "-serial", "stdio"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = run
        .spawn(&mut cmd, "the KVM probe")
        .map_err(|e| e.to_string())?;
    let Some(mut out) = child.stdout.take() else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("no console pipe".into());
    };
    let marker = marker.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&seen).contains(&marker) {
                        let _ = tx.send(true);
                        return;
                    }
                }
            }
        }
        let _ = tx.send(false);
    });
    let start = Instant::now();
    let result = match rx.recv_timeout(limit) {
        Ok(true) => Ok(()),
        Ok(false) => Err("QEMU exited first".to_string()),
        Err(_) => Err(format!(
            "nothing after {:.0} s",
            start.elapsed().as_secs_f64()
        )),
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_answer_holds_for_its_key_only() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("sub/accel");
        let probe = Probe {
            accel: Accel::Tcg,
            why: "KVM did not boot k: nothing\nafter 8 s".into(),
        };
        remember(&file, "boot-1 QEMU 8.2", &probe);
        let got = cached(&file, "boot-1 QEMU 8.2").expect("kept");
        assert_eq!(got.accel, Accel::Tcg);
        assert!(
            got.why
                .starts_with("KVM did not boot k: nothing after 8 s (probed earlier")
        );
        assert_eq!(cached(&file, "boot-2 QEMU 8.2"), None);
        assert_eq!(cached(&file, "boot-1 QEMU 9.0"), None);
        let names: Vec<_> = std::fs::read_dir(d.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["accel"], "no temporary file left");
    }

    #[test]
    fn a_damaged_cache_is_no_answer() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("accel");
        for text in ["", "k\n", "k\nmaybe\nwhy\n", "k\nkvm\n"] {
            std::fs::write(&file, text).unwrap();
            assert_eq!(cached(&file, "k"), None, "{text:?}");
        }
        assert_eq!(cached(&d.path().join("none"), "k"), None);
    }
}
