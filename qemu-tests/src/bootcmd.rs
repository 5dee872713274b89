//! `vlx-rig boot`: a few blades booting one kernel and initramfs on a
//! private segment, until Ctrl-C. For trying a kernel or an initramfs on
//! the rig's machines without a cluster.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use cluster::MacAddr;

use crate::blade::{self, Logs, Powered};
use crate::qemu::{BootFrom, Firmware, Machine, Sockets, UefiFiles};
use crate::run::{self, Run};
use crate::switch::Switch;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    #[error(transparent)]
    Switch(#[from] crate::switch::SwitchError),
    #[error(transparent)]
    Blade(#[from] crate::blade::BladeError),
    #[error("UEFI blades need OVMF (Debian package ovmf), which is not installed")]
    NoOvmf,
    #[error("blade {0}'s MAC would run past ff:ff:ff:ff:ff:ff")]
    Mac(usize),
    #[error("writing to standard output: {0}")]
    Stdout(#[source] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct BootOptions {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The command line; `{name}` becomes the blade's name.
    pub append: String,
    pub blades: usize,
    /// Printed by a blade when it is up; `{name}` becomes its name.
    pub wait: String,
    pub firmware: Firmware,
    pub memory_mib: u32,
    pub timeout: Duration,
    /// The first blade's MAC; the others count up from it.
    pub first_mac: MacAddr,
    pub keep: bool,
}

/// Boots the blades, prints a line for each once it is up, then keeps them
/// running until they all power off or the rig is interrupted.
pub fn boot(opts: &BootOptions) -> Result<(), BootError> {
    let run = Run::start(opts.keep)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "run directory: {}", run.dir().display()).map_err(BootError::Stdout)?;
    out.flush().map_err(BootError::Stdout)?;
    let probe = crate::accel::choose(&run, Some(&opts.kernel));
    writeln!(out, "acceleration: {} ({})", probe.accel, probe.why).map_err(BootError::Stdout)?;
    let switch = Switch::start(&run, &run.dir().join("switch"), opts.blades + 2)?;
    let logs = Logs {
        dir: run.dir().join("logs"),
    };
    let ovmf = match opts.firmware {
        Firmware::Uefi => Some(crate::firmware::ovmf().ok_or(BootError::NoOvmf)?),
        Firmware::Bios => None,
    };
    let mut blades: Vec<(String, Powered)> = Vec::new();
    for i in 0..opts.blades {
        let name = format!("blade{}", i + 1);
        let mac = opts
            .first_mac
            .offset(i as u64)
            .ok_or(BootError::Mac(i + 1))?;
        let dir = run.dir().join(&name);
        let m = Machine {
            name: name.clone(),
            accel: probe.accel,
            firmware: opts.firmware,
            uefi: ovmf.as_ref().map(|o| UefiFiles {
                code: o.code.clone(),
                vars: dir.join("vars.fd"),
            }),
            memory_mib: opts.memory_mib,
            cpus: 1,
            mac,
            switch: switch.sock().to_owned(),
            disks: Vec::new(),
            storage: None,
            storage2: None,
            boot: BootFrom::Kernel {
                kernel: opts.kernel.clone(),
                initrd: opts.initrd.clone(),
                append: opts.append.replace("{name}", &name),
            },
            sockets: Sockets::in_dir(&dir),
        };
        blades.push((name, blade::power_on(&run, &m, &logs)?));
    }
    for (name, b) in &blades {
        let line = b
            .wait(&opts.wait.replace("{name}", name), opts.timeout)
            .map_err(BootError::Blade)?;
        writeln!(
            out,
            "{name} ready at {:.1} s: {}",
            line.at.as_secs_f64(),
            line.text
        )
        .map_err(BootError::Stdout)?;
        out.flush().map_err(BootError::Stdout)?;
    }
    writeln!(
        out,
        "consoles in {}; Ctrl-C powers every blade off",
        logs.dir.display()
    )
    .map_err(BootError::Stdout)?;
    out.flush().map_err(BootError::Stdout)?;
    drop(out);
    while !run::interrupted() && blades.iter_mut().any(|(_, b)| b.is_running()) {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
