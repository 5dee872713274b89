//! KVM or TCG: found by booting, not by the presence of `/dev/kvm`.
//!
//! Some hosts offer `/dev/kvm` but cannot run ordinary guests with it (a
//! nested, paravirtual flavour): QEMU starts, SeaBIOS prints its banner,
//! then the guest hangs on an emulation failure. So the probe boots the
//! firmware under KVM and wants it to finish its boot menu ("No bootable
//! device.") quickly, then, when a kernel is at hand, wants that kernel to
//! reach its panic for lack of a root. Anything else means TCG.

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
    let probe = probe(run, kernel);
    *answer = Some(probe.clone());
    probe
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
