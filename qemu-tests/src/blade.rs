//! A powered blade: its QEMU process, its two serial consoles and its
//! monitor, and the times of its boot.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::console::{Console, ConsoleError, Line, Listening, WaitError};
use crate::qemu::{BootFrom, Machine, QEMU};
use crate::qmp::{Qmp, QmpError};
use crate::run::{Run, RunError};
use crate::shell::Shell;

/// The node agent's line when the node's root is assembled (contract).
pub const AGENT_READY: &str = contracts::console::AGENT_READY;
/// The image's line when its services run (contract).
pub const SERVICES_READY: &str = contracts::console::SERVICES_READY;
/// The kernel's first message.
pub const KERNEL_BANNER: &str = "Linux version";
/// Lines after which the awaited line will not come: a kernel panic, the
/// node agent's failure and the image's services failing (contract),
/// SeaBIOS and OVMF out of boot options.
pub const FATAL: &[&str] = &[
    "Kernel panic - not syncing",
    contracts::console::AGENT_ERROR,
    contracts::console::SERVICES_FAILED,
    "No bootable device.",
    "UEFI Interactive Shell",
];

/// The installer environment of install media says what failed (and then
/// waits at a shell).
pub const INSTALL_FAILED: &str = contracts::console::INSTALL_ERROR;
/// The installer environment's last line before it powers off.
pub const INSTALL_DONE: &str = contracts::console::INSTALL_DONE;

/// A network boot that gave up: iPXE tried every NIC (the firmware then
/// falls through to the disk, which a network-booted blade must not need).
pub const NETBOOT_FAILED: &str = "No more network devices";

/// How long QEMU gets to exit after `quit` before it is killed.
const EXIT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum BladeError {
    #[error("{blade}: cannot prepare {path}: {source}")]
    Prepare {
        blade: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{blade}: {source}")]
    Console {
        blade: String,
        #[source]
        source: ConsoleError,
    },
    #[error("{blade}: {source}")]
    Qmp {
        blade: String,
        #[source]
        source: QmpError,
    },
    #[error("{blade}: {source}")]
    Spawn {
        blade: String,
        #[source]
        source: RunError,
    },
    #[error(transparent)]
    Wait(#[from] WaitError),
}

/// Where a blade's logs go: `<dir>/<blade>.ttyS0.log`, `.ttyS1.log` and
/// `.qemu.log` (QEMU's own messages), appended on each power on.
#[derive(Debug, Clone)]
pub struct Logs {
    pub dir: PathBuf,
}

impl Logs {
    pub fn console(&self, blade: &str) -> PathBuf {
        self.dir.join(format!("{blade}.ttyS0.log"))
    }
    pub fn shell(&self, blade: &str) -> PathBuf {
        self.dir.join(format!("{blade}.ttyS1.log"))
    }
    pub fn qemu(&self, blade: &str) -> PathBuf {
        self.dir.join(format!("{blade}.qemu.log"))
    }
}

/// The times of one boot of one blade, in seconds since the run started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Boot {
    /// What it booted from.
    pub from: String,
    pub power_on: f64,
    /// First output on its console.
    pub firmware: Option<f64>,
    pub kernel: Option<f64>,
    pub agent_ready: Option<f64>,
    pub services_ready: Option<f64>,
    pub power_off: Option<f64>,
}

impl Boot {
    /// Power on to services ready, when it got there.
    pub fn to_ready(&self) -> Option<f64> {
        self.services_ready.map(|r| r - self.power_on)
    }
}

/// When the kernel started (rig time, seconds). The kernel holds its first
/// messages back until its serial console is up, so the arrival of
/// `Linux version` is late; but every message carries the kernel's own
/// timestamp, and a message printed live arrives at kernel start plus that
/// timestamp. So the start is the least of (arrival - timestamp) over the
/// kernel's messages before the agent runs, and not before the firmware.
/// Without timestamps (`printk.time=0`), the arrival of `Linux version`.
pub fn kernel_start(lines: &[Line], firmware: Option<f64>) -> Option<f64> {
    let banner = lines.iter().position(|l| l.text.contains(KERNEL_BANNER))?;
    let end = lines
        .iter()
        .position(|l| l.text.contains("vlx-node:"))
        .unwrap_or(lines.len());
    let start = lines[banner..end.max(banner)]
        .iter()
        .filter_map(|l| printk_time(&l.text).map(|t| l.at.as_secs_f64() - t))
        .fold(f64::INFINITY, f64::min);
    let start = if start.is_finite() {
        start
    } else {
        lines[banner].at.as_secs_f64()
    };
    Some(firmware.map_or(start, |f| start.max(f)))
}

/// The timestamp of a kernel message: `[   12.345678] ...`, anywhere in the
/// line (the firmware may have left text before it).
fn printk_time(text: &str) -> Option<f64> {
    let open = text.find('[')?;
    let rest = &text[open + 1..];
    let close = rest.find(']')?;
    let inner = rest[..close].trim();
    let (whole, frac) = inner.split_once('.')?;
    if whole.is_empty()
        || frac.len() != 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    inner.parse().ok()
}

/// A blade with power.
#[derive(Debug)]
pub struct Powered {
    name: String,
    child: Child,
    console: Console,
    shell: Shell,
    qmp: Qmp,
    t0: Instant,
    boot: Boot,
    /// Lines that end the wait for this boot early.
    fatal: Vec<&'static str>,
}

/// Powers a blade on: listens on its sockets, starts QEMU in the run's
/// process group, and starts reading its consoles.
pub fn power_on(run: &Run, machine: &Machine, logs: &Logs) -> Result<Powered, BladeError> {
    let name = machine.name.clone();
    let prep = |path: &Path| {
        let name = name.clone();
        let path = path.to_owned();
        move |source| BladeError::Prepare {
            blade: name,
            path,
            source,
        }
    };
    let s = &machine.sockets;
    for dir in [s.console.parent(), Some(logs.dir.as_path())]
        .into_iter()
        .flatten()
    {
        std::fs::create_dir_all(dir).map_err(prep(dir))?;
    }
    // Sockets of an earlier power on of this blade.
    for p in [&s.console, &s.shell, &s.qmp] {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(prep(p)(e)),
            _ => {}
        }
    }
    if let Some(u) = &machine.uefi
        && !u.vars.exists()
    {
        // The blade's NVRAM: its own copy, kept across its power cycles.
        let template = crate::firmware::ovmf()
            .map(|o| o.vars_template)
            .ok_or_else(|| prep(&u.vars)(std::io::Error::other("OVMF is not installed")))?;
        std::fs::copy(&template, &u.vars).map_err(prep(&u.vars))?;
    }
    let console_err = |source| BladeError::Console {
        blade: name.clone(),
        source,
    };
    let con = Listening::bind(&s.console).map_err(console_err)?;
    let sh = Listening::bind(&s.shell).map_err(console_err)?;
    let qmp = Qmp::bind(&s.qmp).map_err(|source| BladeError::Qmp {
        blade: name.clone(),
        source,
    })?;
    let qemu_log = logs.qemu(&name);
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(&qemu_log)
        .map_err(prep(&qemu_log))?;

    let t0 = run.started();
    let console = con
        .attach(&format!("{name} ttyS0"), &logs.console(&name), t0)
        .map_err(console_err)?;
    let shell_console = sh
        .attach(&format!("{name} ttyS1"), &logs.shell(&name), t0)
        .map_err(console_err)?;
    let power_on = t0.elapsed().as_secs_f64();
    let line = machine.command_line();
    console.note(&format!("power on, booting from {}: {line}", machine.boot));
    shell_console.note("power on");

    let mut cmd = Command::new(QEMU);
    cmd.args(machine.argv())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let child = run
        .spawn(&mut cmd, &format!("blade {name}"))
        .map_err(|source| BladeError::Spawn {
            blade: name.clone(),
            source,
        })?;
    Ok(Powered {
        name: name.clone(),
        child,
        console,
        shell: Shell::new(shell_console),
        qmp,
        t0,
        boot: Boot {
            from: machine.boot.to_string(),
            power_on,
            ..Boot::default()
        },
        fatal: match machine.boot {
            BootFrom::Network => FATAL.iter().copied().chain([NETBOOT_FAILED]).collect(),
            BootFrom::Media(_) => FATAL.iter().copied().chain([INSTALL_FAILED]).collect(),
            _ => FATAL.to_vec(),
        },
    })
}

impl Powered {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// ttyS0: firmware, kernel, agent and init.
    pub fn console(&self) -> &Console {
        &self.console
    }

    /// The check shell on ttyS1.
    pub fn shell(&self) -> &Shell {
        &self.shell
    }

    pub fn shell_mut(&mut self) -> &mut Shell {
        &mut self.shell
    }

    /// Whether QEMU still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for `marker` on ttyS0 from the start of this boot, failing
    /// early on a line of [`FATAL`] (and [`NETBOOT_FAILED`] for a network
    /// boot).
    pub fn wait(&self, marker: &str, limit: Duration) -> Result<Line, BladeError> {
        Ok(self.console.wait_marker(marker, &self.fatal, 0, limit)?.0)
    }

    /// Waits for the agent's and the services' ready lines for `node`;
    /// `limit` counts from the blade's power on.
    pub fn wait_ready(&mut self, node: &str, limit: Duration) -> Result<(), BladeError> {
        let deadline = self.t0 + Duration::from_secs_f64(self.boot.power_on) + limit;
        let left = || deadline.saturating_duration_since(Instant::now());
        let agent = self.wait(&format!("{AGENT_READY} {node}"), left())?;
        self.boot.agent_ready = Some(agent.at.as_secs_f64());
        let services = self.wait(&format!("{SERVICES_READY} {node}"), left())?;
        self.boot.services_ready = Some(services.at.as_secs_f64());
        Ok(())
    }

    /// The times of this boot, as far as it got.
    pub fn boot(&self) -> Boot {
        let mut b = self.boot.clone();
        b.firmware = self.console.first_byte().map(|d| d.as_secs_f64());
        let lines = self.console.lines();
        let find = |m: &str| {
            lines
                .iter()
                .find(|l| l.text.contains(m))
                .map(|l| l.at.as_secs_f64())
        };
        b.kernel = kernel_start(&lines, b.firmware);
        b.agent_ready = b.agent_ready.or_else(|| find(AGENT_READY));
        b.services_ready = b.services_ready.or_else(|| find(SERVICES_READY));
        b
    }

    /// Pulls the plug (QMP `quit`; SIGKILL if QEMU does not exit) and
    /// returns the times of the boot that ends.
    pub fn power_off(mut self) -> Boot {
        let at = self.t0.elapsed().as_secs_f64();
        self.console.note("power off");
        if self.qmp.quit().is_err() {
            let _ = self.child.kill();
        }
        let deadline = Instant::now() + EXIT_LIMIT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut b = self.boot();
        b.power_off = Some(at);
        b
    }
}

impl Drop for Powered {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at: f64, text: &str) -> Line {
        Line {
            at: Duration::from_secs_f64(at),
            text: text.into(),
        }
    }

    #[test]
    fn the_kernel_starts_when_its_live_messages_say() {
        // From a SeaBIOS + syslinux boot: the held-back banner arrives at
        // 20.3 s, live messages show the kernel started at about 15.1 s.
        let lines = [
            line(12.7, "Booting from Hard Disk..."),
            line(15.0, "Loading /vlx/vlx/initramfs.img... ok"),
            line(
                20.3,
                "Probing EDD (edd=off to disable)... o[    0.000000] Linux version 6.1.0",
            ),
            line(20.4, "[    0.912000] smp: Bringing up secondary CPUs ..."),
            line(21.0, "[    5.910000] Freeing unused kernel image"),
            line(21.2, "[    6.100000] Run /init as init process"),
            line(21.3, "vlx-node: starting on kernel 6.1.0"),
            line(40.0, "[   25.000000] late message, after the agent"),
        ];
        let k = kernel_start(&lines, Some(12.5)).unwrap();
        assert!((k - 15.09).abs() < 1e-6, "{k}");
        // Never before the firmware.
        assert_eq!(kernel_start(&lines, Some(16.0)), Some(16.0));
        // Without timestamps: the banner.
        let plain = [
            line(3.0, "x"),
            line(4.0, "Linux version 6.1.0"),
            line(5.0, "vlx-node: x"),
        ];
        assert_eq!(kernel_start(&plain, Some(1.0)), Some(4.0));
        assert_eq!(kernel_start(&plain[..1], Some(1.0)), None);
    }

    #[test]
    fn printk_times_are_found_anywhere_in_a_line() {
        assert_eq!(printk_time("[    5.131161] Freeing"), Some(5.131161));
        assert_eq!(printk_time("EDD... o[    0.000000] Linux"), Some(0.0));
        assert_eq!(printk_time("[ 42] not the kernel"), None);
        assert_eq!(printk_time("[    1.5] no"), None);
        assert_eq!(printk_time("no brackets"), None);
    }
}
