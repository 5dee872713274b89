//! `vlx-rig`: parses the command line and dispatches to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cluster::MacAddr;
use qemu_tests::bootcmd::{self, BootOptions};
use qemu_tests::qemu::Firmware;
use qemu_tests::run;

/// Rehearse a whole vlx cluster under QEMU before touching metal.
#[derive(Debug, Parser)]
#[command(name = "vlx-rig", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Boot blades with a kernel and initramfs on a private segment, until
    /// Ctrl-C (to try a kernel or initramfs on the rig's machines).
    Boot(BootArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FirmwareArg {
    Bios,
    Uefi,
}

impl From<FirmwareArg> for Firmware {
    fn from(f: FirmwareArg) -> Firmware {
        match f {
            FirmwareArg::Bios => Firmware::Bios,
            FirmwareArg::Uefi => Firmware::Uefi,
        }
    }
}

#[derive(Debug, Args)]
struct BootArgs {
    /// The kernel every blade boots.
    #[arg(long, value_name = "FILE")]
    kernel: PathBuf,
    /// The initramfs every blade boots.
    #[arg(long, value_name = "FILE")]
    initrd: PathBuf,
    /// The kernel command line; `{name}` becomes the blade's name.
    #[arg(long, default_value = "console=ttyS0,115200 rig.name={name}")]
    append: String,
    /// How many blades.
    #[arg(long, default_value_t = 1)]
    blades: usize,
    /// What a blade prints on ttyS0 when it is up; `{name}` as above.
    #[arg(long, default_value = "vlx: services ready {name}")]
    wait: String,
    #[arg(long, value_enum, default_value = "bios")]
    firmware: FirmwareArg,
    /// Memory of each blade, in MiB.
    #[arg(long, default_value_t = 256)]
    memory: u32,
    /// Seconds a blade may take to come up.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// The first blade's MAC; the others count up from it.
    #[arg(long, default_value = "52:54:00:99:00:01")]
    mac: MacAddr,
    /// Keep the run's directory (consoles, sockets) after it ends.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Boot(a) => bootcmd::boot(&BootOptions {
            kernel: a.kernel,
            initrd: a.initrd,
            append: a.append,
            blades: a.blades,
            wait: a.wait,
            firmware: a.firmware.into(),
            memory_mib: a.memory,
            timeout: Duration::from_secs(a.timeout),
            first_mac: a.mac,
            keep: a.keep,
        })
        .map_err(anyhow::Error::from),
    };
    if let Some(sig) = run::interrupted_by() {
        return ExitCode::from((128 + sig).clamp(0, 255) as u8);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vlx-rig: {e:#}");
            ExitCode::FAILURE
        }
    }
}
